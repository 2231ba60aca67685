//! Findings as entries: `finding.opened` when a finding starts to hold,
//! `finding.resolved` when it stops, never two open entries for one finding; the
//! compliance view as it stood (`?at=`), from those entries.

mod common;

use serde_json::{json, Value};
use veritrail::register::projections::findings;
use veritrail::register::reports::findings as reconciliation;

/// Every finding entry of the log, as JSON entry views.
async fn finding_entries<S: common::AppService<B>, B: actix_web::body::MessageBody>(
    app: &common::TestApp<S>,
    auditor: &str,
) -> Vec<Value> {
    let mut out = Vec::new();
    let mut start = 0;
    loop {
        let page = app
            .get(
                &format!("/v1/log/entries?start={start}&limit=1000"),
                Some(auditor),
            )
            .await
            .json();
        let entries = page["entries"].as_array().unwrap().clone();
        if entries.is_empty() {
            return out;
        }
        start += entries.len() as u64;
        out.extend(
            entries
                .into_iter()
                .filter(|e| e["entry"]["kind"].as_str().unwrap().starts_with("finding.")),
        );
    }
}

/// A deployed system with version 2 registered and awaiting review.
async fn awaiting<S: common::AppService<B>, B: actix_web::body::MessageBody>(
    app: &common::TestApp<S>,
) -> common::Crew {
    let crew = common::crew(app).await;
    common::deployed_system(app, &crew, "credit", "1").await;
    let r = app
        .post(
            "/v1/systems/credit/models",
            &crew.pipeline,
            common::version("2", Some("1")),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    crew
}

async fn reconcile<S>(app: &common::TestApp<S>) -> usize {
    reconciliation::reconcile(
        &app.state.ledger,
        None,
        veritrail::log::sequencer::now_micros(),
    )
    .await
    .unwrap()
}

#[actix_web::test]
async fn a_finding_is_opened_by_an_entry_when_it_starts_to_hold() {
    let app = common::spawn().await;
    let crew = awaiting(&app).await;
    assert_eq!(reconcile(&app).await, 1);
    let entries = finding_entries(&app, &crew.auditor).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    let e = &entries[0]["entry"];
    assert_eq!(e["kind"], "finding.opened");
    assert_eq!(e["system"], "credit");
    assert_eq!(e["actor"], "veritrail-findings");
    let b = &e["body"];
    assert_eq!(b["code"], "model_version_awaiting_review");
    assert_eq!(b["severity"], "medium");
    assert_eq!(b["subject"], "2");
    assert_eq!(b["model_version"], "2");
    assert!(!b["evidence"].as_array().unwrap().is_empty());
    assert!(b["explanation"].as_str().unwrap().contains("version 2"));
}

#[actix_web::test]
async fn a_finding_is_resolved_by_an_entry_when_it_stops() {
    let app = common::spawn().await;
    let crew = awaiting(&app).await;
    reconcile(&app).await;
    let opened = finding_entries(&app, &crew.auditor).await[0]["index"].clone();
    let r = app
        .post(
            "/v1/systems/credit/models/2/reviews",
            &crew.officer,
            json!({"outcome": "rejected", "rationale": "no"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(reconcile(&app).await, 1);
    let entries = finding_entries(&app, &crew.auditor).await;
    assert_eq!(entries.len(), 2);
    let e = &entries[1]["entry"];
    assert_eq!(e["kind"], "finding.resolved");
    assert_eq!(e["body"]["code"], "model_version_awaiting_review");
    assert_eq!(e["body"]["subject"], "2");
    assert_eq!(e["body"]["evidence"], json!([opened]));
}

#[actix_web::test]
async fn reconciling_again_appends_nothing() {
    let app = common::spawn().await;
    let crew = awaiting(&app).await;
    reconcile(&app).await;
    let size = app.state.ledger.latest().size;
    assert_eq!(reconcile(&app).await, 0);
    // Even a command computed before the first one landed opens nothing twice: the writer
    // compares with the open findings it holds.
    let now = veritrail::log::sequencer::now_micros();
    let store = app.state.ledger.store().clone();
    let sys = veritrail::register::projections::systems::read(&*store, "credit").unwrap();
    let holding = veritrail::register::reports::compliance::findings(&*store, &sys, now).unwrap();
    let again = app
        .state
        .ledger
        .append(
            "veritrail-findings",
            reconciliation::reconcile_command(Some("credit".into()), holding),
        )
        .await;
    assert!(again.is_err(), "a second opening was appended");
    assert_eq!(app.state.ledger.latest().size, size);
    assert_eq!(finding_entries(&app, &crew.auditor).await.len(), 1);
}

#[actix_web::test]
async fn the_compliance_view_at_a_time_is_the_findings_open_then() {
    let app = common::spawn().await;
    let crew = awaiting(&app).await;
    reconcile(&app).await;
    let between = veritrail::register::rfc3339(veritrail::log::sequencer::now_micros());
    std::thread::sleep(std::time::Duration::from_millis(5));
    app.post(
        "/v1/systems/credit/models/2/reviews",
        &crew.officer,
        json!({"outcome": "rejected", "rationale": "no"}),
    )
    .await;
    reconcile(&app).await;
    let after = veritrail::register::rfc3339(veritrail::log::sequencer::now_micros());
    let at = |t: &str| format!("/v1/systems/credit/compliance?at={}", t.replace('+', "%2B"));
    let then = app.get(&at(&between), Some(&crew.auditor)).await;
    assert_eq!(then.status, 200, "{}", then.text());
    let then = then.json();
    assert_eq!(then["as_of"], between.as_str());
    let codes: Vec<&str> = then["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["model_version_awaiting_review"]);
    let later = app.get(&at(&after), Some(&crew.auditor)).await.json();
    assert_eq!(later["findings"], json!([]));
    assert_eq!(later["status"], "compliant");
}

#[actix_web::test]
async fn reindex_derives_the_open_findings() {
    let app = common::spawn().await;
    awaiting(&app).await;
    reconcile(&app).await;
    let store = app.state.ledger.store().clone();
    let before = findings::open(&*store, Some("credit")).unwrap();
    assert_eq!(before.len(), 1);
    let live = veritrail::projection::dump(&*store).unwrap();
    veritrail::reindex::reindex(&*store).unwrap();
    assert_eq!(veritrail::projection::dump(&*store).unwrap(), live);
    assert_eq!(findings::open(&*store, Some("credit")).unwrap(), before);
}
