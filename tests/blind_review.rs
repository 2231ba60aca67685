//! Blind review (FM-03) through the API: the writer's draw, recomputable from the
//! subject's salt; open cases that withhold everything the AI said; judgments that close
//! them; and a reviewer token that reads nothing showing a decision, by any route.

mod common;

use common::console::{set_cookie, sign_in};
use common::ground_truth::{now, post_batches, time};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// A system drawing `rate` of its decisions for blind review, its version 1 deployed.
async fn blind_system<S, B>(app: &common::TestApp<S>, crew: &common::Crew, id: &str, rate: f64)
where
    S: common::AppService<B>,
    B: actix_web::body::MessageBody,
{
    let mut s = common::system(id);
    s["policy"]["outcomes"] = json!({"prediction_field": "approved", "window": 100});
    s["policy"]["blind_review"] = json!({"rate": rate, "min_review_ms": 2000});
    let r = app.post("/v1/systems", &crew.officer, s).await;
    assert_eq!(r.status, 201, "{}", r.text());
    common::deploy_version(app, &crew.pipeline, &crew.officer, id, "1", None).await;
}

/// A decision carrying everything the AI said: output, confidence, reasons, a human
/// review, a counterfactual and proxy metrics.
fn telling(id: &str) -> Value {
    json!({
        "decision_id": id,
        "model_version": "1",
        "occurred_at": time(now() - 60_000_000),
        "subject_ref": format!("subject-{id}"),
        "input_sha256": "c".repeat(64),
        "inputs": {"income": 52000, "employment": "permanent"},
        "output": {"approved": true, "score": 0.913579},
        "confidence": 0.8642,
        "reasons": ["reason-ai-said-yes"],
        "human_review": {"reviewer": "analyst-quentin", "action": "accepted", "review_ms": 4000},
        "counterfactual_output": {"approved": false, "score": 0.246801},
        "proxy": {"click_probability": 0.777123}
    })
}

async fn log<S, B>(app: &common::TestApp<S>, crew: &common::Crew, id: &str, n: usize) -> Vec<u64>
where
    S: common::AppService<B>,
    B: actix_web::body::MessageBody,
{
    let items: Vec<Value> = (0..n).map(|i| telling(&format!("d-{i}"))).collect();
    post_batches(
        app,
        &crew.pipeline,
        &format!("/v1/systems/{id}/decisions/batch"),
        "decisions",
        items,
    )
    .await
    .into_values()
    .collect()
}

#[actix_web::test]
async fn blind_cases_withhold_the_recommendation() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    let reviewer = app.token("reviewer-rita", "reviewer").await;
    blind_system(&app, &crew, "credit", 1.0).await;
    log(&app, &crew, "credit", 3).await;
    let r = app
        .get("/v1/systems/credit/blind-reviews", Some(&reviewer))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let cases = r.json()["cases"].as_array().unwrap().clone();
    assert_eq!(cases.len(), 3);
    for c in &cases {
        let keys: Vec<&String> = c.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["decision_id", "inputs", "occurred_at"], "{c}");
        assert_eq!(c["inputs"]["employment"], "permanent");
    }
    for told in [
        "0.913579",
        "0.8642",
        "reason-ai-said-yes",
        "analyst-quentin",
        "0.246801",
        "0.777123",
        "approved",
        "accepted",
    ] {
        assert!(
            !r.text().contains(told),
            "{told} reached the reviewer: {}",
            r.text()
        );
    }
}

#[actix_web::test]
async fn a_reviewer_reads_nothing_that_shows_a_decision() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    let reviewer = app.token("reviewer-rita", "reviewer").await;
    blind_system(&app, &crew, "credit", 1.0).await;
    let index = log(&app, &crew, "credit", 1).await[0];
    for path in [
        "/v1/log/entries".to_owned(),
        format!("/v1/log/entries/{index}"),
        "/v1/log/export".to_owned(),
        "/tile/entries/000".to_owned(),
        "/v1/events".to_owned(),
        "/v1/systems/credit/decisions".to_owned(),
        "/v1/systems/credit/decisions/d-0".to_owned(),
        "/v1/systems/credit/decisions/d-0/audit".to_owned(),
        "/v1/subjects/subject-d-0/decisions".to_owned(),
        "/v1/systems/credit/failure-modes".to_owned(),
        "/v1/systems/credit/compliance".to_owned(),
        "/v1/compliance".to_owned(),
        "/v1/systems/credit".to_owned(),
        "/v1/subscriptions".to_owned(),
    ] {
        let r = app.get(&path, Some(&reviewer)).await;
        assert_eq!(r.status, 403, "{path} answered the reviewer: {}", r.text());
        assert!(!r.text().contains("0.913579"), "{path}");
    }
    // No console screen: the reviewer cannot sign in.
    let r = sign_in(&app, &reviewer).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(set_cookie(&r, "veritrail_session").is_none());
    assert!(
        r.text().contains("reviewer tokens do not sign in"),
        "{}",
        r.text()
    );
}

/// x < rate × 2^64 for x the first 8 bytes of SHA-256("veritrail-blind-review" ‖ salt).
fn drawn(salt_hex: &str, rate: f64) -> bool {
    let salt = hex::decode(salt_hex).unwrap();
    let h = Sha256::new()
        .chain_update(b"veritrail-blind-review")
        .chain_update(&salt)
        .finalize();
    let x = u64::from_be_bytes(h[..8].try_into().unwrap());
    (x as f64) < rate * 2f64.powi(64)
}

#[actix_web::test]
async fn the_draw_is_recomputable_from_the_subject_salt() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    let reviewer = app.token("reviewer-rita", "reviewer").await;
    blind_system(&app, &crew, "credit", 0.3).await;
    log(&app, &crew, "credit", 200).await;
    let mut selected = std::collections::BTreeSet::new();
    for i in 0..200 {
        let r = app
            .get(
                &format!("/v1/systems/credit/decisions/d-{i}"),
                Some(&crew.auditor),
            )
            .await;
        let d = r.json();
        let salt = d["subject_ref"]["salt"].as_str().unwrap();
        assert_eq!(d["blind_review"], json!(drawn(salt, 0.3)), "d-{i}");
        if d["blind_review"] == json!(true) {
            selected.insert(format!("d-{i}"));
        }
    }
    // 200 draws at 0.3: far outside 30..=90 only with probability below 1e-9.
    assert!((30..=90).contains(&selected.len()), "{}", selected.len());
    let listed: std::collections::BTreeSet<String> = app
        .get(
            "/v1/systems/credit/blind-reviews?limit=1000",
            Some(&reviewer),
        )
        .await
        .json()["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["decision_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, selected);
}

#[actix_web::test]
async fn a_decision_sent_again_keeps_its_draw() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    blind_system(&app, &crew, "credit", 0.5).await;
    let d = telling("d-1");
    let first = app
        .post("/v1/systems/credit/decisions", &crew.pipeline, d.clone())
        .await;
    assert_eq!(first.status, 201, "{}", first.text());
    let again = app
        .post("/v1/systems/credit/decisions", &crew.pipeline, d)
        .await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(
        again.json()["receipt"]["index"],
        first.json()["receipt"]["index"]
    );
}

#[actix_web::test]
async fn a_judgment_closes_its_case() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    let reviewer = app.token("reviewer-rita", "reviewer").await;
    blind_system(&app, &crew, "credit", 1.0).await;
    log(&app, &crew, "credit", 2).await;
    let judge = |body: Value| {
        let (app, reviewer) = (&app, &reviewer);
        async move {
            app.post("/v1/systems/credit/blind-reviews/d-0", reviewer, body)
                .await
        }
    };
    let body = json!({"judgment": {"approved": false}, "review_ms": 30000});
    let r = judge(body.clone()).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let index = r.json()["receipt"]["index"].clone();
    let open: Vec<Value> = app
        .get("/v1/systems/credit/blind-reviews", Some(&reviewer))
        .await
        .json()["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["decision_id"].clone())
        .collect();
    assert_eq!(open, [json!("d-1")]);
    // The same judgment again: its original receipt.
    let r = judge(body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["receipt"]["index"], index);
}

#[actix_web::test]
async fn a_case_is_judged_once() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    let reviewer = app.token("reviewer-rita", "reviewer").await;
    blind_system(&app, &crew, "credit", 1.0).await;
    log(&app, &crew, "credit", 1).await;
    let path = "/v1/systems/credit/blind-reviews/d-0";
    let r = app
        .post(
            path,
            &reviewer,
            json!({"judgment": {"approved": false}, "review_ms": 30000}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let size = app.state.ledger.latest().size;
    let r = app
        .post(
            path,
            &reviewer,
            json!({"judgment": {"approved": true}, "review_ms": 30000}),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(
        app.state.ledger.latest().size,
        size,
        "a refused judgment appends nothing"
    );
}

#[actix_web::test]
async fn another_reviewers_repeat_of_a_judgment_is_a_conflict_that_names_no_entry() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    let rita = app.token("reviewer-rita", "reviewer").await;
    let victor = app.token("reviewer-victor", "reviewer").await;
    blind_system(&app, &crew, "credit", 1.0).await;
    log(&app, &crew, "credit", 1).await;
    let path = "/v1/systems/credit/blind-reviews/d-0";
    let body = json!({"judgment": {"approved": false}, "review_ms": 30000});
    let r = app.post(path, &rita, body.clone()).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let index = r.json()["receipt"]["index"].as_u64().unwrap();
    let size = app.state.ledger.latest().size;
    // Whether victor guesses rita's judgment or not, he learns only that the case closed.
    let same = app.post(path, &victor, body).await;
    let other = app
        .post(
            path,
            &victor,
            json!({"judgment": {"approved": true}, "review_ms": 30000}),
        )
        .await;
    for r in [&same, &other] {
        assert_eq!(r.status, 409, "{}", r.text());
        assert!(!r.text().contains(&index.to_string()), "{}", r.text());
        assert!(!r.text().contains("receipt"), "{}", r.text());
    }
    assert_eq!(same.json()["detail"], other.json()["detail"]);
    assert_eq!(app.state.ledger.latest().size, size, "nothing appended");
}

#[actix_web::test]
async fn a_judgment_has_the_json_type_of_the_prediction() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    let reviewer = app.token("reviewer-rita", "reviewer").await;
    blind_system(&app, &crew, "credit", 1.0).await;
    log(&app, &crew, "credit", 1).await;
    let path = "/v1/systems/credit/blind-reviews/d-0";
    for judged in [json!(1e308), json!(1), json!("true")] {
        let r = app
            .post(
                path,
                &reviewer,
                json!({"judgment": {"approved": judged}, "review_ms": 30000}),
            )
            .await;
        assert_eq!(r.status, 400, "{judged}: {}", r.text());
        assert_eq!(r.json()["field"], "judgment", "{}", r.text());
        assert!(r.text().contains("a boolean"), "{}", r.text());
    }
    let r = app
        .post(
            path,
            &reviewer,
            json!({"judgment": {"approved": true}, "review_ms": 30000}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
}

#[actix_web::test]
async fn only_an_open_case_is_judged() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    let reviewer = app.token("reviewer-rita", "reviewer").await;
    blind_system(&app, &crew, "credit", 0.0).await;
    log(&app, &crew, "credit", 1).await;
    let body = json!({"judgment": {"approved": false}, "review_ms": 30000});
    for path in [
        "/v1/systems/credit/blind-reviews/d-0",
        "/v1/systems/credit/blind-reviews/nobody",
    ] {
        let r = app.post(path, &reviewer, body.clone()).await;
        assert_eq!(r.status, 404, "{}", r.text());
        assert_eq!(common::ptype(&r), "blind-case-not-found");
    }
}

#[actix_web::test]
async fn a_judgment_is_a_scalar_of_the_prediction_field_and_nothing_else() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    let reviewer = app.token("reviewer-rita", "reviewer").await;
    blind_system(&app, &crew, "credit", 1.0).await;
    log(&app, &crew, "credit", 1).await;
    for judgment in [
        json!({"score": 1}),
        json!({"approved": true, "score": 1}),
        json!({}),
        // A label, never a note: scalars only, strings of at most 128 characters.
        json!({"approved": {"why": "the applicant said so"}}),
        json!({"approved": "x".repeat(129)}),
    ] {
        let r = app
            .post(
                "/v1/systems/credit/blind-reviews/d-0",
                &reviewer,
                json!({"judgment": judgment, "review_ms": 30000}),
            )
            .await;
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(r.text().contains("\"judgment\""), "{}", r.text());
    }
}

#[actix_web::test]
async fn blind_cases_page_by_cursor() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    let reviewer = app.token("reviewer-rita", "reviewer").await;
    blind_system(&app, &crew, "credit", 1.0).await;
    log(&app, &crew, "credit", 5).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("?limit=2&cursor={c}"),
            None => "?limit=2".into(),
        };
        let page = app
            .get(
                &format!("/v1/systems/credit/blind-reviews{q}"),
                Some(&reviewer),
            )
            .await
            .json();
        seen.extend(
            page["cases"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["decision_id"].clone()),
        );
        match page["cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    let r = app
        .get(
            "/v1/systems/credit/blind-reviews?cursor=xyz",
            Some(&reviewer),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("cursor"));
}
