//! Outcomes and contests through the API: bound to the decision's entry, idempotent, a
//! second outcome only as a correction, bad input refused with nothing appended, shown
//! beside the decision (trail, subject access, audit bundle), personal texts off the log
//! and erased with the subject.

mod common;

use common::ground_truth::{self as gt, now, outcome, time};
use serde_json::{json, Value};

const DAY: u64 = 86_400_000_000;

/// A system with an outcome policy, version 1 deployed and decision `d-1` logged an
/// hour ago; the crew.
async fn with_decision<S, B>(app: &common::TestApp<S>) -> common::Crew
where
    S: common::AppService<B>,
    B: actix_web::body::MessageBody,
{
    let crew = common::crew(app).await;
    let r = app
        .post(
            "/v1/systems",
            &crew.officer,
            gt::outcome_system("credit", 500),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    common::deploy_version(app, &crew.pipeline, &crew.officer, "credit", "1", None).await;
    let d = gt::decision("d-1", "1", now() - 3_600_000_000, true, 0.9);
    let r = app
        .post("/v1/systems/credit/decisions", &crew.pipeline, d)
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    crew
}

fn size<S>(app: &common::TestApp<S>) -> u64 {
    app.state.ledger.latest().size
}

const OUTCOMES: &str = "/v1/systems/credit/decisions/d-1/outcomes";

#[actix_web::test]
async fn an_outcome_is_bound_to_its_decisions_entry() {
    let app = common::spawn().await;
    let crew = with_decision(&app).await;
    let decision = app
        .get("/v1/systems/credit/decisions/d-1", Some(&crew.auditor))
        .await
        .json();
    let mut o = outcome(true, now());
    o["business"] = json!({"revenue": 1200.5});
    let r = app.post(OUTCOMES, &crew.pipeline, o).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["status"], "recorded");
    let index = r.json()["receipt"]["index"].as_u64().unwrap();
    let e = app
        .get(&format!("/v1/log/entries/{index}"), Some(&crew.auditor))
        .await
        .json();
    assert_eq!(e["entry"]["kind"], "decision.outcome");
    assert_eq!(e["entry"]["body"]["decision"], decision["index"]);
    assert_eq!(e["entry"]["body"]["decision_id"], "d-1");
    assert_eq!(e["entry"]["body"]["label"], "true");
    assert_eq!(e["entry"]["body"]["business"]["revenue"], 1200.5);
}

#[actix_web::test]
async fn an_outcome_of_an_unknown_decision_is_refused_and_appends_nothing() {
    let app = common::spawn().await;
    let crew = with_decision(&app).await;
    let before = size(&app);
    let r = app
        .post(
            "/v1/systems/credit/decisions/nope/outcomes",
            &crew.pipeline,
            outcome(true, now()),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(common::ptype(&r), "decision-not-found");
    assert_eq!(size(&app), before);
}

#[actix_web::test]
async fn an_outcome_observed_in_the_future_is_refused_naming_observed_at() {
    let app = common::spawn().await;
    let crew = with_decision(&app).await;
    let before = size(&app);
    let r = app
        .post(OUTCOMES, &crew.pipeline, outcome(true, now() + DAY))
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["field"], "observed_at");
    assert_eq!(size(&app), before);
}

#[actix_web::test]
async fn an_outcome_observed_before_its_decision_is_refused() {
    let app = common::spawn().await;
    let crew = with_decision(&app).await;
    let before = size(&app);
    let r = app
        .post(OUTCOMES, &crew.pipeline, outcome(true, now() - DAY))
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["field"], "observed_at");
    assert_eq!(size(&app), before);
}

#[actix_web::test]
async fn bad_outcome_fields_are_refused_by_name() {
    let app = common::spawn().await;
    let crew = with_decision(&app).await;
    let before = size(&app);
    let cases = [
        (json!({"business": {"revenue": 2e9}}), "business.revenue"),
        (json!({"business": {"bad name": 1}}), "business.bad name"),
        (json!({"business": {"revenue": "12"}}), "business.revenue"),
        (json!({"source": ""}), "source"),
        (json!({"label": "x".repeat(2000)}), "label"),
        (json!({"extra": 1}), ""),
    ];
    for (change, field) in cases {
        let mut o = outcome(true, now());
        for (k, v) in change.as_object().unwrap() {
            o[k] = v.clone();
        }
        let r = app.post(OUTCOMES, &crew.pipeline, o).await;
        assert_eq!(r.status, 400, "{change}: {}", r.text());
        if !field.is_empty() {
            assert_eq!(r.json()["field"], field, "{change}");
        }
    }
    assert_eq!(size(&app), before);
}

#[actix_web::test]
async fn the_same_outcome_sent_again_gets_its_original_receipt() {
    let app = common::spawn().await;
    let crew = with_decision(&app).await;
    let mut o = outcome(true, now());
    o["note"] = json!("paid on the second reminder");
    let first = app.post(OUTCOMES, &crew.pipeline, o.clone()).await;
    assert_eq!(first.status, 201, "{}", first.text());
    let before = size(&app);
    let again = app.post(OUTCOMES, &crew.pipeline, o).await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.json()["status"], "duplicate");
    assert_eq!(
        again.json()["receipt"]["index"],
        first.json()["receipt"]["index"]
    );
    assert_eq!(size(&app), before);
}

#[actix_web::test]
async fn a_second_outcome_without_correction_is_a_conflict_and_appends_nothing() {
    let app = common::spawn().await;
    let crew = with_decision(&app).await;
    let t = now();
    assert_eq!(
        app.post(OUTCOMES, &crew.pipeline, outcome(true, t))
            .await
            .status,
        201
    );
    let before = size(&app);
    let r = app.post(OUTCOMES, &crew.pipeline, outcome(false, t)).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(common::ptype(&r), "outcome-conflict");
    assert_eq!(r.json()["field"], "correction");
    // The same label with another note is another outcome too.
    let mut o = outcome(true, t);
    o["note"] = json!("a different note");
    assert_eq!(app.post(OUTCOMES, &crew.pipeline, o).await.status, 409);
    assert_eq!(size(&app), before);
}

#[actix_web::test]
async fn a_correction_supersedes_and_says_so() {
    let app = common::spawn().await;
    let crew = with_decision(&app).await;
    let first = app
        .post(OUTCOMES, &crew.pipeline, outcome(true, now()))
        .await;
    let first = first.json()["receipt"]["index"].as_u64().unwrap();
    let mut c = outcome(false, now());
    c["correction"] = json!(true);
    let r = app.post(OUTCOMES, &crew.pipeline, c).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let index = r.json()["receipt"]["index"].as_u64().unwrap();
    let e = app
        .get(&format!("/v1/log/entries/{index}"), Some(&crew.auditor))
        .await
        .json();
    assert_eq!(e["entry"]["body"]["supersedes"], first);
    let d = app
        .get("/v1/systems/credit/decisions/d-1", Some(&crew.auditor))
        .await
        .json();
    let outcomes = d["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), 2);
    assert_eq!(outcomes[0]["in_force"], false);
    assert_eq!(outcomes[1]["in_force"], true);
    assert_eq!(outcomes[1]["label"], false);
    assert_eq!(outcomes[1]["supersedes"], first);
}

#[actix_web::test]
async fn a_correction_without_an_outcome_is_refused() {
    let app = common::spawn().await;
    let crew = with_decision(&app).await;
    let before = size(&app);
    let mut c = outcome(false, now());
    c["correction"] = json!(true);
    let r = app.post(OUTCOMES, &crew.pipeline, c).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.json()["field"], "correction");
    assert_eq!(size(&app), before);
}

#[actix_web::test]
async fn a_batch_of_outcomes_answers_each_item_in_order() {
    let app = common::spawn().await;
    let crew = with_decision(&app).await;
    let d = gt::decision("d-2", "1", now() - 3_600_000_000, false, 0.6);
    assert_eq!(
        app.post("/v1/systems/credit/decisions", &crew.pipeline, d)
            .await
            .status,
        201
    );
    let item = |id: &str, label: bool| {
        let mut o = outcome(label, now());
        o["decision_id"] = json!(id);
        o
    };
    let mut future = item("d-2", true);
    future["observed_at"] = json!(time(now() + DAY));
    let batch = json!({"outcomes": [item("d-1", true), item("nope", true), future, item("d-2", false), {"label": true}]});
    let r = app
        .post("/v1/systems/credit/outcomes/batch", &crew.pipeline, batch)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let b = r.json();
    let status: Vec<&str> = b["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        status,
        ["recorded", "rejected", "rejected", "recorded", "rejected"]
    );
    assert_eq!(
        b["results"][2]["problem"]["field"],
        "outcomes[2].observed_at"
    );
    assert_eq!(
        b["results"][4]["problem"]["field"],
        "outcomes[4].decision_id"
    );
    assert_eq!(
        b["results"][1]["problem"]["type"],
        "urn:veritrail:problem:decision-not-found"
    );
    let empty = app
        .post(
            "/v1/systems/credit/outcomes/batch",
            &crew.pipeline,
            json!({"outcomes": []}),
        )
        .await;
    assert_eq!(empty.status, 400);
    assert_eq!(empty.json()["field"], "outcomes");
}

#[actix_web::test]
async fn a_contest_and_its_resolution_show_beside_the_decision() {
    let app = common::spawn().await;
    let crew = with_decision(&app).await;
    gt::overturn(&app, &crew, "credit", "d-1").await;
    let d = app
        .get("/v1/systems/credit/decisions/d-1", Some(&crew.officer))
        .await
        .json();
    let c = &d["contests"][0];
    assert_eq!(c["grounds"]["value"], "my income was misread");
    assert_eq!(c["recorded_by"], "officer-ana");
    assert_eq!(c["resolution"]["outcome"], "overturned");
    assert_eq!(c["resolution"]["resolved_by"], "officer-ben");
    // Subject access shows it too.
    let s = app
        .get("/v1/subjects/subject-d-1/decisions", Some(&crew.auditor))
        .await
        .json();
    assert_eq!(
        s["decisions"][0]["contests"][0]["resolution"]["outcome"],
        "overturned"
    );
}

#[actix_web::test]
async fn a_contest_is_resolved_once() {
    let app = common::spawn().await;
    let crew = with_decision(&app).await;
    let c = app
        .post(
            "/v1/systems/credit/decisions/d-1/contests",
            &crew.officer,
            json!({"grounds": "wrong address used", "received_at": time(now())}),
        )
        .await;
    assert_eq!(c.status, 201, "{}", c.text());
    let path = format!("/v1/systems/credit/contests/{}/resolution", c.json()["id"]);
    let upheld = json!({"outcome": "upheld", "rationale": "address confirmed"});
    assert_eq!(
        app.post(&path, &crew.officer, upheld.clone()).await.status,
        201
    );
    let before = size(&app);
    let again = app.post(&path, &crew.officer, upheld).await;
    assert_eq!(again.status, 409, "{}", again.text());
    let unknown = app
        .post(
            "/v1/systems/credit/contests/999999/resolution",
            &crew.officer,
            json!({"outcome": "overturned", "rationale": "x"}),
        )
        .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(common::ptype(&unknown), "contest-not-found");
    assert_eq!(size(&app), before);
}

#[actix_web::test]
async fn notes_and_grounds_stay_off_the_log() {
    let app = common::spawn().await;
    let crew = with_decision(&app).await;
    let mut o = outcome(true, now());
    o["note"] = json!("borrower-note-7f3a lost her job");
    assert_eq!(app.post(OUTCOMES, &crew.pipeline, o).await.status, 201);
    let c = app
        .post(
            "/v1/systems/credit/decisions/d-1/contests",
            &crew.officer,
            json!({"grounds": "grounds-91c2 medical leave", "received_at": time(now())}),
        )
        .await;
    assert_eq!(c.status, 201);
    let all = app
        .state
        .ledger
        .store()
        .entries(0, size(&app))
        .unwrap()
        .concat();
    for secret in ["borrower-note-7f3a", "grounds-91c2"] {
        assert!(
            !all.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} is in the log"
        );
    }
    // Both are in the decision's view, opened from the vault.
    let d = app
        .get("/v1/systems/credit/decisions/d-1", Some(&crew.auditor))
        .await
        .json();
    assert_eq!(
        d["outcomes"][0]["note"]["value"],
        "borrower-note-7f3a lost her job"
    );
    assert_eq!(
        d["contests"][0]["grounds"]["value"],
        "grounds-91c2 medical leave"
    );
}

#[actix_web::test]
async fn erasing_the_subject_erases_notes_and_grounds() {
    let app = common::spawn().await;
    let crew = with_decision(&app).await;
    let mut o = outcome(true, now());
    o["note"] = json!("paid late");
    assert_eq!(app.post(OUTCOMES, &crew.pipeline, o).await.status, 201);
    gt::overturn(&app, &crew, "credit", "d-1").await;
    let r = app
        .post(
            "/v1/subjects/subject-d-1/erasure",
            &crew.officer,
            json!({"reason": "GDPR Art. 17 request"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let d = app
        .get("/v1/systems/credit/decisions/d-1", Some(&crew.auditor))
        .await
        .json();
    assert_eq!(d["outcomes"][0]["note"]["erased"], true);
    assert!(d["outcomes"][0]["note"]["value"].is_null());
    assert_eq!(d["contests"][0]["grounds"]["erased"], true);
}

#[actix_web::test]
async fn the_trail_filters_by_labelled() {
    let app = common::spawn().await;
    let crew = with_decision(&app).await;
    let d = gt::decision("d-2", "1", now() - 3_600_000_000, false, 0.6);
    assert_eq!(
        app.post("/v1/systems/credit/decisions", &crew.pipeline, d)
            .await
            .status,
        201
    );
    assert_eq!(
        app.post(OUTCOMES, &crew.pipeline, outcome(true, now()))
            .await
            .status,
        201
    );
    let ids = |q: &str| {
        let q = q.to_owned();
        let app = &app;
        let token = crew.auditor.clone();
        async move {
            let r = app
                .get(&format!("/v1/systems/credit/decisions?{q}"), Some(&token))
                .await;
            assert_eq!(r.status, 200, "{}", r.text());
            r.json()["decisions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["decision_id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(ids("labelled=true").await, ["d-1"]);
    assert_eq!(ids("labelled=false").await, ["d-2"]);
    assert_eq!(ids("labelled=true&subject=subject-d-1").await, ["d-1"]);
    assert_eq!(
        ids("labelled=true&subject=subject-d-2").await,
        Vec::<String>::new()
    );
    // The outcome filter keeps matching the decision's output.
    assert_eq!(ids("outcome=%7B%22approved%22%3Afalse%7D").await, ["d-2"]);
}

#[actix_web::test]
async fn audit_bundles_carry_outcomes_and_contests_and_verify_offline() {
    let app = common::spawn().await;
    let crew = with_decision(&app).await;
    let mut o = outcome(true, now());
    o["note"] = json!("repaid");
    assert_eq!(app.post(OUTCOMES, &crew.pipeline, o).await.status, 201);
    gt::overturn(&app, &crew, "credit", "d-1").await;
    let r = app
        .get(
            "/v1/systems/credit/decisions/d-1/audit",
            Some(&crew.auditor),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let bundle: veritrail::audit::Bundle = serde_json::from_value(r.json()).unwrap();
    let roles: Vec<&str> = bundle.entries.iter().map(|e| e.role.as_str()).collect();
    for role in ["outcome", "contest", "contest_resolution"] {
        assert!(roles.contains(&role), "{roles:?}");
    }
    assert_eq!(bundle.openings.texts.len(), 2);
    let key = app.state.ledger.verifier().clone();
    let rep = veritrail::audit::verify(&bundle, &key);
    assert!(rep.ok(), "{:?}", rep.failures());
    // A note that does not open its commitment fails by name.
    let mut forged = bundle.clone();
    forged.openings.texts[0].value = Value::String("something else".into());
    let rep = veritrail::audit::verify(&forged, &key);
    assert!(!rep.ok());
    assert!(
        rep.failures()
            .iter()
            .any(|f| f.contains("opens its commitment")),
        "{:?}",
        rep.failures()
    );
}

#[actix_web::test]
async fn proxy_metrics_are_kept_as_sent() {
    let app = common::spawn().await;
    let crew = with_decision(&app).await;
    let mut d = gt::decision("d-p", "1", now() - 60_000_000, true, 0.7);
    d["proxy"] = json!({"click_probability": 0.8125, "dwell_seconds": 42});
    assert_eq!(
        app.post("/v1/systems/credit/decisions", &crew.pipeline, d.clone())
            .await
            .status,
        201
    );
    let v = app
        .get("/v1/systems/credit/decisions/d-p", Some(&crew.auditor))
        .await
        .json();
    assert_eq!(
        v["proxy"],
        json!({"click_probability": 0.8125, "dwell_seconds": 42.0})
    );
    // The same decision again is a duplicate, the proxy part of its content.
    let r = app
        .post("/v1/systems/credit/decisions", &crew.pipeline, d.clone())
        .await;
    assert_eq!(r.status, 200);
    d["proxy"]["click_probability"] = json!(0.9);
    let r = app
        .post("/v1/systems/credit/decisions", &crew.pipeline, d)
        .await;
    assert_eq!(r.status, 409);
    let mut bad = gt::decision("d-q", "1", now() - 60_000_000, true, 0.7);
    bad["proxy"] = json!({"ctr": 1e10});
    let r = app
        .post("/v1/systems/credit/decisions", &crew.pipeline, bad)
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["field"], "proxy.ctr");
}

#[actix_web::test]
async fn no_note_or_grounds_is_kept_once_the_subject_is_erased() {
    let app = common::spawn().await;
    let crew = with_decision(&app).await;
    let t = now();
    assert_eq!(
        app.post(OUTCOMES, &crew.pipeline, outcome(true, t))
            .await
            .status,
        201
    );
    let r = app
        .post(
            "/v1/subjects/subject-d-1/erasure",
            &crew.officer,
            json!({"reason": "GDPR Art. 17 request"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let before = size(&app);
    let mut corrected = outcome(false, t);
    corrected["correction"] = json!(true);
    corrected["note"] = json!("written after the erasure");
    let r = app.post(OUTCOMES, &crew.pipeline, corrected.clone()).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.json()["field"], "note");
    let c = app
        .post(
            "/v1/systems/credit/decisions/d-1/contests",
            &crew.officer,
            json!({"grounds": "after the erasure", "received_at": time(now())}),
        )
        .await;
    assert_eq!(c.status, 409, "{}", c.text());
    assert_eq!(c.json()["field"], "grounds");
    assert_eq!(size(&app), before);
    // Without the text, the correction is recorded; its replay is a duplicate.
    corrected.as_object_mut().unwrap().remove("note");
    assert_eq!(
        app.post(OUTCOMES, &crew.pipeline, corrected.clone())
            .await
            .status,
        201
    );
    assert_eq!(
        app.post(OUTCOMES, &crew.pipeline, corrected).await.status,
        200
    );
}

#[actix_web::test]
async fn a_contest_received_before_its_decision_is_refused() {
    let app = common::spawn().await;
    let crew = with_decision(&app).await;
    let before = size(&app);
    let r = app
        .post(
            "/v1/systems/credit/decisions/d-1/contests",
            &crew.officer,
            json!({"grounds": "wrong address used", "received_at": "1970-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["field"], "received_at", "{}", r.text());
    assert_eq!(size(&app), before, "nothing appended");
}
