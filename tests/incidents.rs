//! Serious incidents (AI Act Art. 73): the deadline each category sets, the finding
//! that warns with a third of the time left and turns high past the deadline, the
//! report that clears it.

mod common;

use serde_json::{json, Value};

const HOUR: u64 = 3_600_000_000;

fn ago(hours: f64) -> String {
    let now = veritrail::log::sequencer::now_micros() as i64;
    veritrail::register::rfc3339((now - (hours * HOUR as f64) as i64) as u64)
}

async fn declare<S: common::AppService<B>, B: actix_web::body::MessageBody>(
    app: &common::TestApp<S>,
    officer: &str,
    category: &str,
    aware_at: &str,
) -> Value {
    let r = app
        .post(
            "/v1/systems/credit/incidents",
            officer,
            json!({"category": category, "aware_at": aware_at, "description": "a wrong denial pattern in one branch"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["incident"].clone()
}

async fn findings_of<S: common::AppService<B>, B: actix_web::body::MessageBody>(
    app: &common::TestApp<S>,
    auditor: &str,
) -> Vec<Value> {
    let c = app
        .get("/v1/systems/credit/compliance", Some(auditor))
        .await
        .json();
    c["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "incident_report_due")
        .cloned()
        .collect()
}

#[actix_web::test]
async fn each_category_sets_its_reporting_deadline() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    common::register_system(&app, &crew.officer, "credit").await;
    let at = "2026-11-20T10:00:00Z";
    for (category, deadline) in [
        ("death", "2026-11-30T10:00:00.000000Z"),
        ("critical_infrastructure", "2026-11-22T10:00:00.000000Z"),
        ("widespread_infringement", "2026-11-22T10:00:00.000000Z"),
        ("other", "2026-12-05T10:00:00.000000Z"),
    ] {
        let i = declare(&app, &crew.officer, category, at).await;
        assert_eq!(i["deadline"], deadline, "{category}");
        assert_eq!(i["category"], category);
    }
    let list = app
        .get("/v1/systems/credit/incidents", Some(&crew.auditor))
        .await
        .json();
    assert_eq!(list["incidents"].as_array().unwrap().len(), 4);
}

#[actix_web::test]
async fn the_deadline_finding_opens_with_a_third_left_and_turns_high_once_passed() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    common::register_system(&app, &crew.officer, "credit").await;
    // Critical infrastructure: 48 h. 30 h ago: more than a third (16 h) is left.
    declare(&app, &crew.officer, "critical_infrastructure", &ago(30.0)).await;
    assert!(findings_of(&app, &crew.auditor).await.is_empty());
    // 34 h ago: 14 h left, under a third: due, medium.
    let due = declare(&app, &crew.officer, "critical_infrastructure", &ago(34.0)).await;
    // 50 h ago: past the deadline, high.
    let late = declare(&app, &crew.officer, "critical_infrastructure", &ago(50.0)).await;
    let f = findings_of(&app, &crew.auditor).await;
    assert_eq!(f.len(), 2, "{f:?}");
    let of = |i: &Value| {
        let id = json!(i["id"].to_string());
        f.iter().find(|x| x["subject"] == id).cloned().unwrap()
    };
    assert_eq!(of(&due)["severity"], "medium");
    assert_eq!(of(&late)["severity"], "high");
    assert_eq!(of(&late)["evidence"], json!([late["id"]]));
    let c = app
        .get("/v1/systems/credit/compliance", Some(&crew.auditor))
        .await
        .json();
    assert_eq!(c["status"], "action_required");
}

#[actix_web::test]
async fn recording_the_report_clears_the_finding_once() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    common::register_system(&app, &crew.officer, "credit").await;
    let i = declare(&app, &crew.officer, "death", &ago(24.0 * 9.0)).await;
    veritrail::register::reports::findings::reconcile(
        &app.state.ledger,
        None,
        veritrail::log::sequencer::now_micros(),
    )
    .await
    .unwrap();
    let report = format!("/v1/systems/credit/incidents/{}/report", i["id"]);
    let body =
        json!({"authority": "national MSA", "reference": "AI-2026-0042", "reported_at": ago(1.0)});
    let r = app.post(&report, &crew.officer, body.clone()).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["incident"]["status"], "reported");
    assert!(findings_of(&app, &crew.auditor).await.is_empty());
    let again = app.post(&report, &crew.officer, body).await;
    assert_eq!(again.status, 409, "{}", again.text());
    veritrail::register::reports::findings::reconcile(
        &app.state.ledger,
        None,
        veritrail::log::sequencer::now_micros(),
    )
    .await
    .unwrap();
    let log = app
        .get("/v1/log/entries?start=0&limit=1000", Some(&crew.auditor))
        .await
        .json();
    let kinds: Vec<(String, Value)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["entry"]["body"]["code"] == "incident_report_due")
        .map(|e| {
            (
                e["entry"]["kind"].as_str().unwrap().to_owned(),
                e["entry"]["body"]["subject"].clone(),
            )
        })
        .collect();
    let id = json!(i["id"].to_string());
    assert_eq!(
        kinds,
        [
            ("finding.opened".to_owned(), id.clone()),
            ("finding.resolved".to_owned(), id)
        ]
    );
}

#[actix_web::test]
async fn an_incident_cites_only_an_opened_finding_of_its_system() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    common::register_system(&app, &crew.officer, "credit").await;
    let r = app
        .post(
            "/v1/systems/credit/incidents",
            &crew.officer,
            json!({"finding_index": 0, "category": "other", "aware_at": ago(1.0), "description": "x"}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["field"], "finding_index");
    let r = app
        .post(
            "/v1/systems/credit/incidents",
            &crew.officer,
            json!({"category": "other", "aware_at": ago(-24.0 * 30.0), "description": "x"}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["field"], "aware_at");
    let r = app
        .post(
            "/v1/systems/credit/incidents/999/report",
            &crew.officer,
            json!({"authority": "a", "reference": "r", "reported_at": ago(0.1)}),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
}
