//! The life of an AI system through HTTP, one rule per test: registration, the review
//! gate, idempotent decisions, retirement, time travel, and `reindex` reproducing every
//! projection.

mod common;

use common::ptype;

use actix_web::body::MessageBody;
use serde_json::{json, Value};

use common::{decision, external_test, system, version, AppService, Crew, TestApp};

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

// Fixtures for this file. Each brings the register to a state one or more rules need.

/// "credit" registered, and its version 1.0.0 registered by an officer (so that four
/// eyes can bite) with a failing required test on record: the failing test's id.
async fn pending_version<S: AppService<B>, B: MessageBody>(app: &TestApp<S>, c: &Crew) -> u64 {
    common::register_system(app, &c.officer, "credit").await;
    let r = app
        .post(
            "/v1/systems/credit/models",
            &c.officer,
            version("1.0.0", None),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["model_version"]["status"], "pending_review");
    let r = app
        .post(
            "/v1/systems/credit/models/1.0.0/tests",
            &c.pipeline,
            external_test(false),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["id"].as_u64().unwrap()
}

/// The approval the second officer gives 1.0.0, citing the failing test.
fn approval(failing: u64) -> Value {
    json!({"outcome": "approved", "rationale": "bias within tolerance", "evidence": [failing], "checklist": {"dpia_done": true}})
}

/// `pending_version`, approved by the other officer: the failing test's id.
async fn approved_version<S: AppService<B>, B: MessageBody>(app: &TestApp<S>, c: &Crew) -> u64 {
    let failing = pending_version(app, c).await;
    let r = app
        .post(
            "/v1/systems/credit/models/1.0.0/reviews",
            &c.officer2,
            approval(failing),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["status"], "approved");
    failing
}

/// A passing test of 1.0.0, and the second officer's approval of the evidence as it now
/// stands (a test recorded after an approval needs a new review): the test's id.
async fn passing_test_reviewed<S: AppService<B>, B: MessageBody>(
    app: &TestApp<S>,
    c: &Crew,
) -> u64 {
    let r = app
        .post(
            "/v1/systems/credit/models/1.0.0/tests",
            &c.pipeline,
            external_test(true),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let passing = r.json()["id"].as_u64().unwrap();
    let r = app
        .post(
            "/v1/systems/credit/models/1.0.0/reviews",
            &c.officer2,
            approval(passing),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    passing
}

/// `approved_version`, then a passing test, reviewed again, then deployed: the
/// deployment's JSON.
async fn deployed_the_long_way<S: AppService<B>, B: MessageBody>(
    app: &TestApp<S>,
    c: &Crew,
) -> Value {
    approved_version(app, c).await;
    passing_test_reviewed(app, c).await;
    let r = app
        .post(
            "/v1/systems/credit/models/1.0.0/deployments",
            &c.pipeline,
            json!({"environment": "production", "note": "go"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

/// A fresh app, its crew, and "credit" with 1.0.0 deployed.
async fn deployed() -> (
    TestApp<
        impl actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<impl MessageBody>,
            Error = actix_web::Error,
        >,
    >,
    Crew,
) {
    let app = common::spawn().await;
    let c = common::crew(&app).await;
    common::deployed_system(&app, &c, "credit", "1.0.0").await;
    (app, c)
}

/// Record `decision(id, v, subject)` on "credit"; it must be new. The answer's JSON.
async fn record<S: AppService<B>, B: MessageBody>(
    app: &TestApp<S>,
    c: &Crew,
    id: &str,
    v: &str,
    subject: &str,
) -> Value {
    let r = app
        .post(
            "/v1/systems/credit/decisions",
            &c.pipeline,
            decision(id, v, subject),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

/// 1.1.0 (child of 1.0.0) through the gate and deployed: the deployment's JSON.
async fn supersede<S: AppService<B>, B: MessageBody>(app: &TestApp<S>, c: &Crew) -> Value {
    common::deploy_version(
        app,
        &c.pipeline,
        &c.officer,
        "credit",
        "1.1.0",
        Some("1.0.0"),
    )
    .await
}

/// Version 2.0.0 registered and rejected.
async fn rejected_version<S: AppService<B>, B: MessageBody>(app: &TestApp<S>, c: &Crew) {
    assert_eq!(
        app.post(
            "/v1/systems/credit/models",
            &c.pipeline,
            version("2.0.0", None)
        )
        .await
        .status,
        201
    );
    assert_eq!(
        app.post(
            "/v1/systems/credit/models/2.0.0/reviews",
            &c.officer,
            json!({"outcome": "rejected", "rationale": "no"})
        )
        .await
        .status,
        201
    );
}

const REVISED_PURPOSE: &str = "Scores consumer and SME credit applications";

/// Revise "credit" (new purpose, and `status` if given): the answer.
async fn revise<S: AppService<B>, B: MessageBody>(
    app: &TestApp<S>,
    c: &Crew,
    status: Option<&str>,
) -> common::Resp {
    let mut revised = system("credit");
    revised["purpose"] = json!(REVISED_PURPOSE);
    if let Some(s) = status {
        revised["status"] = json!(s);
    }
    app.put("/v1/systems/credit", &c.officer, revised).await
}

/// The register's own review of "credit", confirmed.
async fn confirm_register<S: AppService<B>, B: MessageBody>(app: &TestApp<S>, c: &Crew) {
    let r = app
        .post(
            "/v1/systems/credit/register-reviews",
            &c.officer,
            json!({"outcome": "confirmed", "notes": "Q4 review"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
}

// Registration.

#[actix_web::test]
async fn a_prohibited_practice_cannot_be_registered() {
    let app = common::spawn().await;
    let officer = app.token("officer-ana", "officer").await;
    let mut bad = system("social-scoring");
    bad["risk_class"] = json!("prohibited");
    let r = app.post("/v1/systems", &officer, bad).await;
    assert_eq!(
        (r.status, ptype(&r).as_str(), r.json()["field"].as_str()),
        (422, "prohibited-system", Some("risk_class"))
    );
}

#[actix_web::test]
async fn the_pipeline_cannot_register_systems() {
    let app = common::spawn().await;
    let pipeline = app.token("deploy-bot", "pipeline").await;
    assert_eq!(
        app.post("/v1/systems", &pipeline, system("credit"))
            .await
            .status,
        403
    );
}

#[actix_web::test]
async fn an_owner_needs_a_valid_email() {
    let app = common::spawn().await;
    let officer = app.token("officer-ana", "officer").await;
    let mut noowner = system("credit");
    noowner["owner"]["email"] = json!("not-an-email");
    let r = app.post("/v1/systems", &officer, noowner).await;
    assert_eq!(
        (r.status, r.json()["field"].as_str()),
        (400, Some("owner.email"))
    );
}

#[actix_web::test]
async fn registration_is_receipted_at_revision_one() {
    let app = common::spawn().await;
    let v = app.state.ledger.verifier().clone();
    let officer = app.token("officer-ana", "officer").await;
    let r = app.post("/v1/systems", &officer, system("credit")).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let reg = r.json();
    common::check_receipt(&reg["receipt"], &v);
    assert_eq!(reg["system"]["revision"], 1);
    assert_eq!(reg["system"]["review_interval_days"], 90);
    assert!(reg["system"]["registered_at"].as_str().is_some());
}

#[actix_web::test]
async fn a_system_id_registers_once() {
    let app = common::spawn().await;
    let officer = app.token("officer-ana", "officer").await;
    common::register_system(&app, &officer, "credit").await;
    assert_eq!(
        app.post("/v1/systems", &officer, system("credit"))
            .await
            .status,
        409
    );
}

// The review gate.

#[actix_web::test]
async fn a_new_version_awaits_review() {
    let app = common::spawn().await;
    let c = common::crew(&app).await;
    common::register_system(&app, &c.officer, "credit").await;
    let r = app
        .post(
            "/v1/systems/credit/models",
            &c.officer,
            version("1.0.0", None),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["model_version"]["status"], "pending_review");
}

#[actix_web::test]
async fn decisions_need_a_deployed_version() {
    let app = common::spawn().await;
    let c = common::crew(&app).await;
    pending_version(&app, &c).await;
    // Not deployed, unknown system, unknown version: refused, and nothing is appended.
    let size = app.state.ledger.latest().size;
    let r = app
        .post(
            "/v1/systems/credit/decisions",
            &c.pipeline,
            decision("d-0", "1.0.0", "subj-1"),
        )
        .await;
    assert_eq!(
        (r.status, ptype(&r).as_str()),
        (409, "model-version-not-deployed"),
        "{}",
        r.text()
    );
    let r = app
        .post(
            "/v1/systems/nope/decisions",
            &c.pipeline,
            decision("d-0", "1.0.0", "subj-1"),
        )
        .await;
    assert_eq!(
        (r.status, ptype(&r).as_str()),
        (409, "system-not-registered")
    );
    let r = app
        .post(
            "/v1/systems/credit/decisions",
            &c.pipeline,
            decision("d-0", "9.9", "subj-1"),
        )
        .await;
    assert_eq!(
        (r.status, ptype(&r).as_str()),
        (409, "model-version-not-registered")
    );
    assert_eq!(
        app.state.ledger.latest().size,
        size,
        "refused writes append nothing"
    );
}

#[actix_web::test]
async fn deployment_needs_an_approval() {
    let app = common::spawn().await;
    let c = common::crew(&app).await;
    pending_version(&app, &c).await;
    let r = app
        .post(
            "/v1/systems/credit/models/1.0.0/deployments",
            &c.pipeline,
            json!({"environment": "production"}),
        )
        .await;
    assert_eq!(
        (r.status, ptype(&r).as_str()),
        (409, "model-version-not-approved")
    );
}

#[actix_web::test]
async fn four_eyes_refuses_the_registrant() {
    let app = common::spawn().await;
    let c = common::crew(&app).await;
    let failing = pending_version(&app, &c).await;
    let r = app
        .post(
            "/v1/systems/credit/models/1.0.0/reviews",
            &c.officer,
            approval(failing),
        )
        .await;
    assert_eq!((r.status, ptype(&r).as_str()), (409, "self-approval"));
    // Another officer's approval is recorded.
    let r = app
        .post(
            "/v1/systems/credit/models/1.0.0/reviews",
            &c.officer2,
            approval(failing),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["status"], "approved");
}

#[actix_web::test]
async fn review_evidence_must_be_on_record() {
    let app = common::spawn().await;
    let c = common::crew(&app).await;
    pending_version(&app, &c).await;
    let r = app
        .post(
            "/v1/systems/credit/models/1.0.0/reviews",
            &c.officer2,
            json!({"outcome": "approved", "rationale": "ok", "evidence": [99999]}),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["field"].as_str()),
        (400, Some("evidence[0]"))
    );
}

#[actix_web::test]
async fn a_review_needs_a_rationale() {
    let app = common::spawn().await;
    let c = common::crew(&app).await;
    pending_version(&app, &c).await;
    let r = app
        .post(
            "/v1/systems/credit/models/1.0.0/reviews",
            &c.officer2,
            json!({"outcome": "approved", "rationale": ""}),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["field"].as_str()),
        (400, Some("rationale"))
    );
}

#[actix_web::test]
async fn the_pipeline_cannot_review() {
    let app = common::spawn().await;
    let c = common::crew(&app).await;
    let failing = approved_version(&app, &c).await;
    assert_eq!(
        app.post(
            "/v1/systems/credit/models/1.0.0/reviews",
            &c.pipeline,
            approval(failing)
        )
        .await
        .status,
        403
    );
}

#[actix_web::test]
async fn required_tests_must_pass_before_deployment() {
    let app = common::spawn().await;
    let c = common::crew(&app).await;
    approved_version(&app, &c).await;
    // The required test failed: the gate refuses. A passing test opens it.
    let r = app
        .post(
            "/v1/systems/credit/models/1.0.0/deployments",
            &c.pipeline,
            json!({}),
        )
        .await;
    assert_eq!(
        (r.status, ptype(&r).as_str()),
        (409, "required-tests-failing"),
        "{}",
        r.text()
    );
    passing_test_reviewed(&app, &c).await;
    let r = app
        .post(
            "/v1/systems/credit/models/1.0.0/deployments",
            &c.pipeline,
            json!({"environment": "production", "note": "go"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(r.json()["replaces"].is_null());
}

#[actix_web::test]
async fn a_test_recorded_after_the_approval_needs_a_new_review() {
    let app = common::spawn().await;
    let c = common::crew(&app).await;
    approved_version(&app, &c).await;
    // The pipeline records a passing (self-attested) test after the approval: the
    // approval was not of it, so the gate refuses until an officer reviews again.
    let r = app
        .post(
            "/v1/systems/credit/models/1.0.0/tests",
            &c.pipeline,
            external_test(true),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let passing = r.json()["id"].as_u64().unwrap();
    let deploy = || {
        app.post(
            "/v1/systems/credit/models/1.0.0/deployments",
            &c.pipeline,
            json!({"environment": "production", "note": "go"}),
        )
    };
    let r = deploy().await;
    assert_eq!(
        (r.status, ptype(&r).as_str()),
        (409, "evidence-after-review"),
        "{}",
        r.text()
    );
    assert!(
        r.text().contains(&format!("test {passing}")),
        "{}",
        r.text()
    );
    let r = app
        .post(
            "/v1/systems/credit/models/1.0.0/reviews",
            &c.officer2,
            approval(passing),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(deploy().await.status, 201);
}

#[actix_web::test]
async fn test_records_read_back_from_the_log() {
    let app = common::spawn().await;
    let c = common::crew(&app).await;
    deployed_the_long_way(&app, &c).await;
    let tests = app
        .get("/v1/systems/credit/models/1.0.0/tests", Some(&c.auditor))
        .await
        .json();
    assert_eq!(tests.as_array().unwrap().len(), 2);
    assert_eq!(tests[0]["external"]["tool"], "fairlearn");
    assert_eq!(tests[0]["figures"]["demographic_parity_difference"], 0.03);
}

// Decisions.

#[actix_web::test]
async fn decision_receipts_verify_and_keep_personal_data_out_of_the_log() {
    let (app, c) = deployed().await;
    let v = app.state.ledger.verifier().clone();
    let d1 = record(&app, &c, "d-1", "1.0.0", "subj-1").await;
    common::check_receipt(&d1["receipt"], &v);
    let idx = d1["receipt"]["index"].as_u64().unwrap();
    let raw = app.state.ledger.entry(idx).unwrap().unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(
        !text.contains("subj-1") && !text.contains("52000") && !text.contains("30-39"),
        "personal data leaked into the entry"
    );
}

#[actix_web::test]
async fn decision_ids_are_idempotent() {
    let (app, c) = deployed().await;
    let d1 = record(&app, &c, "d-1", "1.0.0", "subj-1").await;
    let idx = d1["receipt"]["index"].as_u64().unwrap();
    // Replay: the original receipt. A different decision under the id: 409.
    let r = app
        .post(
            "/v1/systems/credit/decisions",
            &c.pipeline,
            decision("d-1", "1.0.0", "subj-1"),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["status"].as_str()),
        (200, Some("duplicate"))
    );
    assert_eq!(r.json()["receipt"]["index"].as_u64().unwrap(), idx);
    assert_eq!(r.json()["receipt"]["leaf_hash"], d1["receipt"]["leaf_hash"]);
    let r = app
        .post(
            "/v1/systems/credit/decisions",
            &c.pipeline,
            decision("d-1", "1.0.0", "subj-2"),
        )
        .await;
    assert_eq!((r.status, ptype(&r).as_str()), (409, "decision-conflict"));
}

#[actix_web::test]
async fn a_decision_reads_back_with_its_commitments_opened() {
    let (app, c) = deployed().await;
    record(&app, &c, "d-1", "1.0.0", "subj-1").await;
    let got = app
        .get("/v1/systems/credit/decisions/d-1", Some(&c.auditor))
        .await
        .json();
    assert_eq!(got["subject_ref"]["value"], "subj-1");
    let salt: [u8; 32] = hex::decode(got["subject_ref"]["salt"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let commitment =
        veritrail::register::projections::vault::commit(&salt, &json!("subj-1")).unwrap();
    assert_eq!(
        hex::encode(commitment),
        got["subject_ref"]["commitment"].as_str().unwrap()
    );
    assert_eq!(got["confidence"], 0.87);
    assert_eq!(got["output"]["score"], 0.41);
    assert_eq!(got["human_review"]["action"], "accepted");
}

#[actix_web::test]
async fn the_pipeline_cannot_read_decisions() {
    let (app, c) = deployed().await;
    record(&app, &c, "d-1", "1.0.0", "subj-1").await;
    assert_eq!(
        app.get("/v1/systems/credit/decisions/d-1", Some(&c.pipeline))
            .await
            .status,
        403
    );
}

#[actix_web::test]
async fn a_batch_records_valid_items_and_refuses_the_rest() {
    let (app, c) = deployed().await;
    record(&app, &c, "d-1", "1.0.0", "subj-1").await;
    let batch = json!({"decisions": [
        decision("b-1", "1.0.0", "subj-3"),
        decision("b-2", "0.0.1", "subj-3"),
        {"decision_id": "b-3"},
        decision("d-1", "1.0.0", "subj-1"),
    ]});
    let r = app
        .post("/v1/systems/credit/decisions/batch", &c.pipeline, batch)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let b = r.json();
    let st: Vec<&str> = b["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["status"].as_str().unwrap())
        .collect();
    assert_eq!(st, ["recorded", "rejected", "rejected", "duplicate"]);
    assert_eq!(
        b["results"][1]["problem"]["type"],
        "urn:veritrail:problem:model-version-not-registered"
    );
    assert!(b["results"][2]["problem"]["field"]
        .as_str()
        .unwrap()
        .starts_with("decisions[2]"));
}

// Succession and retirement.

#[actix_web::test]
async fn a_new_deployment_retires_the_old_version() {
    let (app, c) = deployed().await;
    let r = supersede(&app, &c).await;
    assert_eq!(r["replaces"].as_str(), Some("1.0.0"));
    // The old one is retired by its own entry, just before the deployment.
    let deploy_index = r["receipt"]["index"].as_u64().unwrap();
    let retired = app
        .get(
            &format!("/v1/log/entries/{}", deploy_index - 1),
            Some(&c.auditor),
        )
        .await
        .json();
    assert_eq!(retired["entry"]["kind"], "model_version.retired");
    let old = app
        .get("/v1/systems/credit/models/1.0.0", Some(&c.auditor))
        .await
        .json();
    assert_eq!(old["status"], "retired");
}

#[actix_web::test]
async fn a_retired_version_takes_no_decisions() {
    let (app, c) = deployed().await;
    supersede(&app, &c).await;
    let r = app
        .post(
            "/v1/systems/credit/decisions",
            &c.pipeline,
            decision("d-2", "1.0.0", "subj-1"),
        )
        .await;
    assert_eq!(
        (r.status, ptype(&r).as_str()),
        (409, "model-version-retired")
    );
    assert_eq!(
        app.post(
            "/v1/systems/credit/decisions",
            &c.pipeline,
            decision("d-2", "1.1.0", "subj-1")
        )
        .await
        .status,
        201
    );
}

#[actix_web::test]
async fn a_rejected_version_is_final() {
    let (app, c) = deployed().await;
    rejected_version(&app, &c).await;
    // Never reviewed again...
    let r = app
        .post(
            "/v1/systems/credit/models/2.0.0/reviews",
            &c.officer2,
            json!({"outcome": "approved", "rationale": "pls"}),
        )
        .await;
    assert_eq!(
        (r.status, ptype(&r).as_str()),
        (409, "model-version-rejected")
    );
    // ...nor deployed.
    let r = app
        .post(
            "/v1/systems/credit/models/2.0.0/deployments",
            &c.pipeline,
            json!({}),
        )
        .await;
    assert_eq!(
        (r.status, ptype(&r).as_str()),
        (409, "model-version-rejected")
    );
}

#[actix_web::test]
async fn a_retired_system_takes_no_decisions() {
    let (app, c) = deployed().await;
    assert_eq!(revise(&app, &c, Some("retired")).await.status, 200);
    let r = app
        .post(
            "/v1/systems/credit/decisions",
            &c.pipeline,
            decision("d-3", "1.0.0", "subj-1"),
        )
        .await;
    assert_eq!((r.status, ptype(&r).as_str()), (409, "system-retired"));
}

// The register's own history.

#[actix_web::test]
async fn a_revision_keeps_the_register_review_and_the_deployment() {
    let (app, c) = deployed().await;
    supersede(&app, &c).await;
    confirm_register(&app, &c).await;
    let r = revise(&app, &c, None).await;
    assert_eq!(
        (r.status, r.json()["system"]["revision"].as_u64()),
        (200, Some(2)),
        "{}",
        r.text()
    );
    let now = app.get("/v1/systems/credit", Some(&c.auditor)).await.json();
    assert_eq!(now["purpose"], REVISED_PURPOSE);
    assert_eq!(now["last_review"]["outcome"], "confirmed");
    assert_eq!(now["deployed_version"], "1.1.0");
}

#[actix_web::test]
async fn the_register_answers_as_it_stood_at() {
    let app = common::spawn().await;
    let c = common::crew(&app).await;
    common::register_system(&app, &c.officer, "credit").await;
    let before_revision = chrono::Utc::now().to_rfc3339();
    std::thread::sleep(std::time::Duration::from_millis(5));
    let r = revise(&app, &c, None).await;
    assert_eq!(
        (r.status, r.json()["system"]["revision"].as_u64()),
        (200, Some(2)),
        "{}",
        r.text()
    );
    let then = app
        .get(
            &format!("/v1/systems/credit?at={}", urlencode(&before_revision)),
            Some(&c.auditor),
        )
        .await
        .json();
    assert_eq!(
        (then["revision"].as_u64(), then["purpose"].as_str()),
        (Some(1), Some("Scores consumer credit applications"))
    );
    // Before it was registered there is nothing to answer.
    let r = app
        .get(
            &format!(
                "/v1/systems/credit?at={}",
                urlencode("2000-01-01T00:00:00Z")
            ),
            Some(&c.auditor),
        )
        .await;
    assert_eq!(r.status, 404);
}

// Projections.

#[actix_web::test]
async fn reindex_reproduces_every_projection() {
    let app = common::spawn().await;
    let c = common::crew(&app).await;
    // A whole life: the gate the long way, decisions, succession, a rejection, the
    // register reviewed and revised, and the system retired.
    deployed_the_long_way(&app, &c).await;
    record(&app, &c, "d-1", "1.0.0", "subj-1").await;
    let batch = json!({"decisions": [decision("b-1", "1.0.0", "subj-3")]});
    let r = app
        .post("/v1/systems/credit/decisions/batch", &c.pipeline, batch)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    supersede(&app, &c).await;
    record(&app, &c, "d-2", "1.1.0", "subj-1").await;
    rejected_version(&app, &c).await;
    confirm_register(&app, &c).await;
    assert_eq!(revise(&app, &c, None).await.status, 200);
    assert_eq!(revise(&app, &c, Some("retired")).await.status, 200);

    let store = app.state.ledger.store().clone();
    let live = common::reindex_reproduces(&*store);
    assert!(live.len() > 20);
    // And the personal data is still readable: the vault is not a projection.
    assert_eq!(
        app.get("/v1/systems/credit/decisions/d-1", Some(&c.auditor))
            .await
            .json()["subject_ref"]["value"],
        "subj-1"
    );
}

#[actix_web::test]
async fn concurrent_decision_writers_lose_nothing_and_duplicate_nothing() {
    let app = common::spawn().await;
    let pipeline = app.token("deploy-bot", "pipeline").await;
    let officer = app.token("officer-ana", "officer").await;
    let mut sys = system("fraud");
    sys["policy"] = json!({});
    assert_eq!(app.post("/v1/systems", &officer, sys).await.status, 201);
    assert_eq!(
        app.post("/v1/systems/fraud/models", &pipeline, version("1", None))
            .await
            .status,
        201
    );
    assert_eq!(
        app.post(
            "/v1/systems/fraud/models/1/reviews",
            &officer,
            json!({"outcome": "approved", "rationale": "ok"})
        )
        .await
        .status,
        201
    );
    assert_eq!(
        app.post(
            "/v1/systems/fraud/models/1/deployments",
            &pipeline,
            json!({})
        )
        .await
        .status,
        201
    );
    let state = app.state.clone();
    // Drive the command path directly from many tasks, with deliberate id collisions.
    let mut tasks = Vec::new();
    for t in 0..16 {
        let state = state.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..40 {
                let id = format!("d-{}", (t * 40 + i) % 500); // 640 sends, 500 distinct ids
                let d: veritrail::register::commands::decisions::DecisionRequest =
                    serde_json::from_value(decision(
                        &id,
                        "1",
                        &format!("s-{}", (t * 40 + i) % 500),
                    ))
                    .unwrap();
                let cmd = veritrail::register::commands::decisions::record_command(
                    "fraud".into(),
                    d.validate(u64::MAX).unwrap(),
                    veritrail::register::commands::decisions::Salts::fresh(),
                );
                let r = state.ledger.append("deploy-bot", cmd).await.unwrap();
                out.push((id, r.index, r.appended));
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let mut by_id = std::collections::HashMap::new();
    for (id, index, _) in &all {
        let prev = by_id.insert(id.clone(), *index);
        assert!(
            prev.is_none() || prev == Some(*index),
            "{id} got two entries"
        );
    }
    assert_eq!(by_id.len(), 500);
    assert_eq!(
        all.iter().filter(|x| x.2).count(),
        500,
        "exactly one append per distinct decision"
    );
    // Every one is in the log once.
    let entries = state.ledger.entries(0, 10_000).unwrap();
    let n = entries
        .iter()
        .filter(|b| veritrail::log::entry::decode_header(b).unwrap().kind == "decision.recorded")
        .count();
    assert_eq!(n, 500);
}

/// Every entry the code writes matches the CDDL of its envelope and of its kind's body.
#[actix_web::test]
async fn written_entries_match_the_schemas() {
    let app = common::spawn().await;
    let pipeline = app.token("deploy-bot", "pipeline").await;
    let officer = app.token("officer-ana", "officer").await;
    assert_eq!(
        app.post("/v1/systems", &officer, system("credit"))
            .await
            .status,
        201
    );
    assert_eq!(
        app.post("/v1/systems/credit/models", &pipeline, version("1", None))
            .await
            .status,
        201
    );
    let t = app
        .post(
            "/v1/systems/credit/models/1/tests",
            &pipeline,
            external_test(true),
        )
        .await
        .json()["id"]
        .clone();
    let r = app.post("/v1/systems/credit/models/1/reviews", &officer, json!({"outcome": "approved", "rationale": "ok", "evidence": [t], "checklist": {"conformity_assessment": "CA-7", "dpia": true}})).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        app.post(
            "/v1/systems/credit/models/1/deployments",
            &pipeline,
            json!({})
        )
        .await
        .status,
        201
    );
    assert_eq!(
        app.post(
            "/v1/systems/credit/models",
            &pipeline,
            version("2", Some("1"))
        )
        .await
        .status,
        201
    );
    // Version 2 awaits review: a finding opens (and resolves once it is approved).
    let now = veritrail::log::sequencer::now_micros;
    veritrail::register::reports::findings::reconcile(&app.state.ledger, None, now())
        .await
        .unwrap();
    let incident = app
        .post(
            "/v1/systems/credit/incidents",
            &officer,
            json!({"category": "other", "aware_at": "2026-11-30T08:00:00Z", "description": "scores shifted for one region"}),
        )
        .await;
    assert_eq!(incident.status, 201, "{}", incident.text());
    let r = app
        .post(
            &format!("/v1/systems/credit/incidents/{}/report", incident.json()["incident"]["id"]),
            &officer,
            json!({"authority": "BNetzA", "reference": "R-1", "reported_at": "2026-11-30T09:00:00Z"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        app.post(
            "/v1/systems/credit/models/2/tests",
            &pipeline,
            external_test(true)
        )
        .await
        .status,
        201
    );
    assert_eq!(
        app.post(
            "/v1/systems/credit/models/2/reviews",
            &officer,
            json!({"outcome": "approved", "rationale": "ok"})
        )
        .await
        .status,
        201
    );
    veritrail::register::reports::findings::reconcile(&app.state.ledger, None, now())
        .await
        .unwrap();
    assert_eq!(
        app.post(
            "/v1/systems/credit/models/2/deployments",
            &pipeline,
            json!({})
        )
        .await
        .status,
        201
    );
    assert_eq!(
        app.post(
            "/v1/systems/credit/decisions",
            &pipeline,
            decision("d-1", "2", "s")
        )
        .await
        .status,
        201
    );
    let mut d = decision("d-2", "2", "s");
    d["inputs"] = Value::Null;
    d["confidence"] = Value::Null;
    d["human_review"] = Value::Null;
    assert_eq!(
        app.post("/v1/systems/credit/decisions", &pipeline, d)
            .await
            .status,
        201
    );
    assert_eq!(
        app.post(
            "/v1/systems/credit/register-reviews",
            &officer,
            json!({"outcome": "changes_required"})
        )
        .await
        .status,
        201
    );
    let mut rev = system("credit");
    rev["name"] = json!("Credit scoring v2");
    rev["policy"]["outcomes"] =
        json!({"prediction_field": "approved", "window": 50, "max_ece": 0.15});
    assert_eq!(
        app.put("/v1/systems/credit", &officer, rev).await.status,
        200
    );
    // Ground truth: a decision with proxy metrics, its outcome (with a note) and a
    // correction, and a contest overturned.
    let mut d = decision("d-4", "2", "s");
    d["proxy"] = json!({"click_probability": 0.82, "score": 3});
    assert_eq!(
        app.post("/v1/systems/credit/decisions", &pipeline, d)
            .await
            .status,
        201
    );
    let outcome = json!({"observed_at": "2026-11-30T10:00:00Z", "label": true, "business": {"revenue": 12.5}, "source": "loan-ledger", "note": "repaid late"});
    let r = app
        .post(
            "/v1/systems/credit/decisions/d-4/outcomes",
            &pipeline,
            outcome.clone(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let mut corrected = outcome;
    corrected["label"] = json!(false);
    corrected["correction"] = json!(true);
    let r = app
        .post(
            "/v1/systems/credit/decisions/d-4/outcomes",
            &pipeline,
            corrected,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let c = app
        .post(
            "/v1/systems/credit/decisions/d-4/contests",
            &officer,
            json!({"grounds": "income was misread", "received_at": "2026-11-30T11:00:00Z"}),
        )
        .await;
    assert_eq!(c.status, 201, "{}", c.text());
    let r = app
        .post(
            &format!("/v1/systems/credit/contests/{}/resolution", c.json()["id"]),
            &officer,
            json!({"outcome": "overturned", "rationale": "income verified from payslips"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    // The decision-window modes: every policy key, a decision with every field, drawn
    // for blind review (rate 1) and judged, and a boundary event.
    let mut rev2 = system("credit");
    rev2["name"] = json!("Credit scoring v2");
    rev2["policy"]["outcomes"] = json!({"prediction_field": "approved", "window": 50});
    rev2["policy"]["blind_review"] = json!({"rate": 1, "min_review_ms": 2000, "max_backlog_days": 7, "min_human_accuracy": 0.75, "max_below_min_review_share": 0.1});
    rev2["policy"]["feedback"] = json!({"min_exploration_share": 0.05, "max_entropy_drop": 0.15});
    rev2["policy"]["integration"] = json!({"max_error_rate": 0.01, "max_timeout_rate": 0.01, "max_fallback_rate": 0.1, "contract": {"input_schema_sha256": "ab".repeat(32), "input_schema_version": "v3", "output_schema_version": "v2", "timeout_ms": 800, "fallback": "manual review"}});
    rev2["policy"]["consistency"] =
        json!({"max_inconsistency_rate": 0.02, "max_unvalidated_share": 0.01});
    let r = app.put("/v1/systems/credit", &officer, rev2).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut d = decision("d-5", "2", "s");
    d["exploration"] = json!(true);
    d["counterfactual_output"] = json!({"approved": false});
    d["equivalence_key"] = json!("q-17");
    d["validation"] = json!({"method": "rule-check", "passed": true, "sources": ["rule-9"]});
    d["integration"] = json!({"upstream": "intake", "downstream": "credit", "contract_version": "v3", "status": "ok", "latency_ms": 42});
    let r = app.post("/v1/systems/credit/decisions", &pipeline, d).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let reviewer = app.token("reviewer-rita", "reviewer").await;
    let r = app
        .post(
            "/v1/systems/credit/blind-reviews/d-5",
            &reviewer,
            json!({"judgment": {"approved": true}, "review_ms": 45000}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = app
        .post(
            "/v1/systems/credit/boundary-events",
            &pipeline,
            json!({"occurred_at": common::ground_truth::time(common::ground_truth::now()), "upstream": "intake", "downstream": "credit", "contract_version": "v3", "status": "timeout", "latency_ms": 800, "detail": "no answer in 800 ms"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = app
        .post(
            "/v1/subjects/s/erasure",
            &officer,
            json!({"reason": "Art. 17"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        app.post(
            "/v1/systems/credit/decisions",
            &pipeline,
            decision("d-3", "2", "t")
        )
        .await
        .status,
        201
    );
    let later = veritrail::log::sequencer::now_micros() + 400 * 86_400_000_000;
    assert_eq!(
        veritrail::register::commands::erasure::run_retention(&app.state.ledger, later)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        app.delete("/v1/tokens/deploy-bot", &app.admin.clone())
            .await
            .status,
        200
    );

    let sub = app
        .post(
            "/v1/subscriptions",
            &officer,
            json!({"url": "https://hooks.example.com/veritrail", "types": ["finding.*"]}),
        )
        .await;
    assert_eq!(sub.status, 201, "{}", sub.text());
    let id = sub.json()["subscription"]["id"].clone();
    assert_eq!(
        app.delete(&format!("/v1/subscriptions/{id}"), &officer)
            .await
            .status,
        200
    );
    let envelope = std::fs::read_to_string("schemas/entry.cddl").unwrap();
    let bodies = std::fs::read_to_string("schemas/body.cddl").unwrap();
    let mut kinds_seen = std::collections::BTreeSet::new();
    for bytes in app.state.ledger.entries(0, 1000).unwrap() {
        cddl::validate_cbor_from_slice(&envelope, &bytes, None)
            .unwrap_or_else(|e| panic!("envelope: {e:?}"));
        let e: veritrail::log::entry::RawEntry = veritrail::log::entry::decode(&bytes).unwrap();
        // Validate the body under its kind: {kind: body} against the `kinds` rule.
        let mut m = std::collections::BTreeMap::new();
        m.insert(serde_cbor::Value::Text(e.kind.clone()), e.body.clone());
        let wrapped = serde_cbor::to_vec(&serde_cbor::Value::Map(m)).unwrap();
        cddl::validate_cbor_from_slice(&bodies, &wrapped, None)
            .unwrap_or_else(|err| panic!("{} body: {err:?}", e.kind));
        kinds_seen.insert(e.kind);
    }
    for k in veritrail::register::projections::KINDS.iter().chain(&[
        "token.created",
        "token.revoked",
        "subscription.created",
        "subscription.deleted",
    ]) {
        assert!(kinds_seen.contains(*k), "no {k} entry was checked");
    }
    // The schema really checks bodies: a decision with a personal value in clear fails.
    let mut m = std::collections::BTreeMap::new();
    m.insert(
        serde_cbor::Value::Text("decision.recorded".into()),
        serde_cbor::Value::Map(
            [(
                serde_cbor::Value::Text("subject".into()),
                serde_cbor::Value::Text("alice".into()),
            )]
            .into_iter()
            .collect(),
        ),
    );
    assert!(cddl::validate_cbor_from_slice(
        &bodies,
        &serde_cbor::to_vec(&serde_cbor::Value::Map(m)).unwrap(),
        None
    )
    .is_err());
}
