//! Audit trail on demand: decision trails, subject access, audit bundles verified
//! offline, compliance findings, and log exports. One rule per test.

mod common;

use actix_web::body::MessageBody;
use serde_json::{json, Value};
use veritrail::audit::{self, Bundle};

use common::{AppService, TestApp};

struct World<S> {
    app: common::TestApp<S>,
    pipeline: String,
    officer: String,
    officer2: String,
    auditor: String,
}

async fn world() -> World<
    impl actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
    >,
> {
    let app = common::spawn().await;
    let pipeline = app.token("deploy-bot", "pipeline").await;
    let officer = app.token("officer-ana", "officer").await;
    let officer2 = app.token("officer-ben", "officer").await;
    let auditor = app.token("auditor-eve", "auditor").await;
    World {
        app,
        pipeline,
        officer,
        officer2,
        auditor,
    }
}

fn decision_at(id: &str, v: &str, subject: &str, minute: u32, approved: bool) -> Value {
    let mut d = common::decision(id, v, subject);
    d["occurred_at"] = json!(format!("2026-11-25T10:{minute:02}:00Z"));
    d["output"] = json!({"approved": approved});
    d
}

// Fixtures for this file.

/// Register `sys` with version 1 through the gate (approved by officer-ana).
async fn deployed_system<S: AppService<B>, B: MessageBody>(w: &World<S>, sys: &str) {
    common::register_system(&w.app, &w.officer, sys).await;
    common::deploy_version(&w.app, &w.pipeline, &w.officer, sys, "1", None).await;
}

/// Record `d` on `sys`; it must be new.
async fn record<S: AppService<B>, B: MessageBody>(w: &World<S>, sys: &str, d: Value) {
    let r = w
        .app
        .post(&format!("/v1/systems/{sys}/decisions"), &w.pipeline, d)
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
}

/// Revise the register entry of "credit" (after the decisions, so bundles must name
/// the earlier revision), then let version 2 (approved by officer-ben) supersede 1.
async fn revise_and_supersede<S: AppService<B>, B: MessageBody>(w: &World<S>) {
    let mut rev = common::system("credit");
    rev["purpose"] = json!("changed later");
    assert_eq!(
        w.app
            .put("/v1/systems/credit", &w.officer, rev)
            .await
            .status,
        200
    );
    common::deploy_version(&w.app, &w.pipeline, &w.officer2, "credit", "2", Some("1")).await;
}

/// Systems "credit" and "loans" deployed at version 1. On credit (v1), 40 decisions
/// c-0..c-39 at 10:00..10:39, subject s-(i % 5), approved when i is even; on loans,
/// l-1 for s-3 at 10:50. Then the register revised, v2 deployed on credit, and c-99
/// (v2, s-1, 10:59).
async fn trail_world() -> World<
    impl actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
    >,
> {
    let w = world().await;
    for sys in ["credit", "loans"] {
        deployed_system(&w, sys).await;
    }
    for i in 0..40u32 {
        let d = decision_at(
            &format!("c-{i}"),
            "1",
            &format!("s-{}", i % 5),
            i,
            i % 2 == 0,
        );
        record(&w, "credit", d).await;
    }
    record(&w, "loans", decision_at("l-1", "1", "s-3", 50, true)).await;
    revise_and_supersede(&w).await;
    record(&w, "credit", decision_at("c-99", "2", "s-1", 59, true)).await;
    w
}

/// "credit" deployed at v1, decision c-7 (v1, s-2) recorded, then the register
/// revised and v2 deployed: the world and c-7's audit bundle.
async fn bundle_world() -> (
    World<
        impl actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
            Error = actix_web::Error,
        >,
    >,
    Bundle,
) {
    let w = world().await;
    deployed_system(&w, "credit").await;
    record(&w, "credit", decision_at("c-7", "1", "s-2", 7, false)).await;
    revise_and_supersede(&w).await;
    let r = w
        .app
        .get("/v1/systems/credit/decisions/c-7/audit", Some(&w.auditor))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let b: Bundle = serde_json::from_value(r.json()).unwrap();
    (w, b)
}

/// The decision ids of a trail page.
fn ids(v: &Value) -> Vec<String> {
    v["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["decision_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Follow `next_cursor` from `q` (which has a query string) to the end: every id seen.
async fn all_pages<S: AppService<B>, B: MessageBody>(
    app: &TestApp<S>,
    token: &str,
    q: &str,
) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{q}&cursor={c}"),
            None => q.to_owned(),
        };
        let page = app.get(&url, Some(token)).await.json();
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    seen
}

/// Run `veritrail verify-bundle` on `b` with nothing but the key.
fn verify_bundle_cli(b: &Bundle, key: &str) -> std::process::Output {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec(b).unwrap()).unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_veritrail"))
        .arg("verify-bundle")
        .arg(file.path())
        .args(["--key", key])
        .output()
        .unwrap()
}

// Decision trails.

#[actix_web::test]
async fn a_trail_pages_by_cursor_newest_first() {
    let w = trail_world().await;
    // Pages with cursors cover everything once.
    let seen = all_pages(&w.app, &w.auditor, "/v1/systems/credit/decisions?limit=7").await;
    assert_eq!(seen.len(), 41);
    assert_eq!(seen[0], "c-99");
    assert_eq!(seen[40], "c-0");
}

#[actix_web::test]
async fn a_trail_filters_by_model_version() {
    let w = trail_world().await;
    let r = w
        .app
        .get(
            "/v1/systems/credit/decisions?model_version=2",
            Some(&w.auditor),
        )
        .await
        .json();
    assert_eq!(ids(&r), ["c-99"]);
}

#[actix_web::test]
async fn a_trail_filters_by_subject() {
    let w = trail_world().await;
    let r = w
        .app
        .get(
            "/v1/systems/credit/decisions?subject=s-3&order=oldest",
            Some(&w.officer),
        )
        .await
        .json();
    assert_eq!(
        ids(&r),
        ["c-3", "c-8", "c-13", "c-18", "c-23", "c-28", "c-33", "c-38"]
    );
}

#[actix_web::test]
async fn a_subject_trail_pages_by_the_subjects_own_index() {
    let w = trail_world().await;
    // Newest first with cursors, its row in another system (l-1 on loans) skipped.
    let seen = all_pages(
        &w.app,
        &w.officer,
        "/v1/systems/credit/decisions?subject=s-3&limit=3",
    )
    .await;
    assert_eq!(
        seen,
        ["c-38", "c-33", "c-28", "c-23", "c-18", "c-13", "c-8", "c-3"]
    );
}

#[actix_web::test]
async fn a_subject_trail_filters_by_time_in_either_order() {
    let w = trail_world().await;
    let r = w.app.get("/v1/systems/credit/decisions?subject=s-3&from=2026-11-25T10:10:00Z&to=2026-11-25T10:28:00Z&order=oldest", Some(&w.officer)).await.json();
    assert_eq!(ids(&r), ["c-13", "c-18", "c-23", "c-28"]);
    let r = w.app.get("/v1/systems/credit/decisions?subject=s-3&from=2026-11-25T10:10:00Z&to=2026-11-25T10:28:00Z", Some(&w.officer)).await.json();
    assert_eq!(ids(&r), ["c-28", "c-23", "c-18", "c-13"]);
}

#[actix_web::test]
async fn a_trail_filters_by_time() {
    let w = trail_world().await;
    let r = w.app.get("/v1/systems/credit/decisions?from=2026-11-25T10:10:00Z&to=2026-11-25T10:12:00Z&order=oldest", Some(&w.auditor)).await.json();
    assert_eq!(ids(&r), ["c-10", "c-11", "c-12"]);
}

#[actix_web::test]
async fn a_trail_filters_by_outcome_and_version() {
    let w = trail_world().await;
    let r = w.app.get("/v1/systems/credit/decisions?outcome=%7B%22approved%22%3Afalse%7D&model_version=1&limit=1000", Some(&w.auditor)).await.json();
    assert_eq!(r["decisions"].as_array().unwrap().len(), 20);
}

#[actix_web::test]
async fn the_pipeline_cannot_read_trails() {
    let w = trail_world().await;
    assert_eq!(
        w.app
            .get("/v1/systems/credit/decisions", Some(&w.pipeline))
            .await
            .status,
        403
    );
}

#[actix_web::test]
async fn a_bad_cursor_is_a_bad_request() {
    let w = trail_world().await;
    let r = w
        .app
        .get("/v1/systems/credit/decisions?cursor=zzz", Some(&w.auditor))
        .await;
    assert_eq!(
        (r.status, r.json()["field"].as_str()),
        (400, Some("cursor"))
    );
}

// Subject access (GDPR Art. 15).

#[actix_web::test]
async fn subject_access_spans_systems() {
    let w = trail_world().await;
    let r = w
        .app
        .get("/v1/subjects/s-3/decisions", Some(&w.officer))
        .await
        .json();
    let systems: Vec<&str> = r["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["system_id"].as_str().unwrap())
        .collect();
    assert_eq!(systems.len(), 9);
    assert!(systems.contains(&"loans") && systems.contains(&"credit"));
    assert_eq!(r["decisions"][0]["subject_ref"]["value"], "s-3");
    assert_eq!(r["decisions"][0]["human_review"]["action"], "accepted");
}

#[actix_web::test]
async fn subject_access_pages_by_cursor() {
    let w = trail_world().await;
    let r = w
        .app
        .get("/v1/subjects/s-3/decisions?limit=4", Some(&w.officer))
        .await
        .json();
    let c = r["next_cursor"].as_str().unwrap().to_owned();
    let r2 = w
        .app
        .get(
            &format!("/v1/subjects/s-3/decisions?cursor={c}"),
            Some(&w.officer),
        )
        .await
        .json();
    assert_eq!(r2["decisions"].as_array().unwrap().len(), 5);
}

// Audit bundles.

#[actix_web::test]
async fn an_audit_bundle_verifies_offline() {
    let (w, b) = bundle_world().await;
    let v = w.app.state.ledger.verifier().clone();
    let report = audit::verify(&b, &v);
    assert!(report.ok(), "{:?}", report.failures());
    let roles: Vec<&str> = b.entries.iter().map(|e| e.role.as_str()).collect();
    for r in [
        "decision",
        "model_version",
        "review",
        "test",
        "deployment",
        "retirement",
        "register_revision",
        "next_register_revision",
    ] {
        assert!(roles.contains(&r), "bundle lacks {r}: {roles:?}");
    }
    // It names the register revision in force at the decision, not the later one.
    assert_eq!(b.summary.register_revision, 1);
    assert_eq!(b.summary.approved_by, "officer-ana");
    assert_eq!(b.openings.subject_ref.as_ref().unwrap().value, json!("s-2"));
}

#[actix_web::test]
async fn a_tampered_bundle_names_what_fails() {
    let (w, b) = bundle_world().await;
    let v = w.app.state.ledger.verifier().clone();
    let fails = |b: &Bundle| audit::verify(b, &v).failures().join("; ");
    let mut t = b.clone();
    t.summary.approved_by = "someone-else".into();
    assert!(
        fails(&t).contains("summary names the approval"),
        "{}",
        fails(&t)
    );
    let mut t = b.clone();
    t.openings.subject_ref.as_mut().unwrap().value = json!("s-4");
    assert!(fails(&t).contains("subject_ref opens its commitment"));
    let mut t = b.clone();
    let i = t.entries.iter().position(|e| e.role == "test").unwrap();
    t.entries.remove(i);
    assert!(fails(&t).contains("is in the bundle"), "{}", fails(&t));
    let mut t = b.clone();
    let e = t.entries.iter_mut().find(|e| e.role == "review").unwrap();
    e.inclusion_proof[0] = "00".repeat(32);
    assert!(fails(&t).contains("inclusion proof"), "{}", fails(&t));
    let mut t = b.clone();
    t.checkpoint = t.checkpoint.replacen('\n', "\n1", 1);
    assert!(fails(&t).contains("checkpoint signature"));
}

#[actix_web::test]
async fn another_key_does_not_verify_a_bundle() {
    let (_w, b) = bundle_world().await;
    let other = veritrail::log::note::NoteSigner::new(
        "localhost/veritrail",
        ed25519_dalek::SigningKey::from_bytes(&[9; 32]),
    )
    .unwrap()
    .verifier();
    assert!(
        !audit::verify(&b, &other).ok(),
        "another key must not verify it"
    );
}

#[actix_web::test]
async fn verify_bundle_checks_with_the_key_alone() {
    let (w, b) = bundle_world().await;
    let key = w.app.state.ledger.verifier().to_string();
    let out = verify_bundle_cli(&b, &key);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("VERIFIED"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let mut t = b.clone();
    t.summary.model_version = "9".into();
    let out = verify_bundle_cli(&t, &key);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("FAIL  decision is what the summary says"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[actix_web::test]
async fn a_bundle_with_an_erased_subject_still_verifies() {
    let (w, b) = bundle_world().await;
    let v = w.app.state.ledger.verifier().clone();
    // The field is shown as erased.
    let mut t = b.clone();
    t.openings.subject_ref = None;
    t.summary.subject_ref = "erased".into();
    assert!(
        audit::verify(&t, &v).ok(),
        "{:?}",
        audit::verify(&t, &v).failures()
    );
}

// Exports.

#[actix_web::test]
async fn an_export_verifies_offline() {
    let w = trail_world().await;
    let app = &w.app;
    let v = app.state.ledger.verifier().clone();
    // The whole log and a range, checked offline; a flipped byte is caught.
    for q in ["/v1/log/export", "/v1/log/export?start=17"] {
        let r = app.get(q, Some(&w.auditor)).await;
        assert_eq!(r.status, 200);
        let rep =
            veritrail::log::export::verify(&r.body[..], &v).unwrap_or_else(|e| panic!("{q}: {e}"));
        assert_eq!(rep.end, app.state.ledger.latest().size);
        let mut bad = r.body.clone();
        let n = bad.len();
        bad[n - 10] ^= 1;
        assert!(veritrail::log::export::verify(&bad[..], &v).is_err());
    }
}

#[actix_web::test]
async fn compliance_findings() {
    let w = world().await;
    let app = &w.app;
    let mut sys = common::system("credit");
    sys["policy"] = json!({"required_tests": [], "max_bias_test_age_days": 30, "max_drift_test_age_days": 7, "max_decision_gap_hours": 24});
    assert_eq!(app.post("/v1/systems", &w.officer, sys).await.status, 201);
    let r = app
        .get("/v1/systems/credit/compliance", Some(&w.auditor))
        .await
        .json();
    assert_eq!(r["status"], "compliant", "{r}");
    // A substantial modification approved without a conformity assessment, and deployed.
    let mut v1 = common::version("1", None);
    v1["substantial_modification"] = json!(true);
    assert_eq!(
        app.post("/v1/systems/credit/models", &w.pipeline, v1)
            .await
            .status,
        201
    );
    assert_eq!(
        app.post(
            "/v1/systems/credit/models/1/reviews",
            &w.officer,
            json!({"outcome": "approved", "rationale": "ok"})
        )
        .await
        .status,
        201
    );
    assert_eq!(
        app.post(
            "/v1/systems/credit/models/1/deployments",
            &w.pipeline,
            json!({})
        )
        .await
        .status,
        201
    );
    // A failing drift test on the deployed version; a version awaiting review.
    let drift = json!({"evaluator": "ks", "input": {"baseline": (0..200).map(|i| i as f64).collect::<Vec<_>>(), "current": (0..200).map(|i| i as f64 + 80.0).collect::<Vec<_>>()}});
    let r = app
        .post("/v1/systems/credit/models/1/tests", &w.pipeline, drift)
        .await;
    assert_eq!(
        (r.status, r.json()["passed"].as_bool()),
        (201, Some(false)),
        "{}",
        r.text()
    );
    assert_eq!(
        app.post(
            "/v1/systems/credit/models",
            &w.pipeline,
            common::version("2", Some("1"))
        )
        .await
        .status,
        201
    );
    // Human oversight atrophy: 40 reviewed decisions, all accepted, review time collapsing.
    for i in 0..40u64 {
        let mut d = common::decision(&format!("d-{i}"), "1", "s");
        d["occurred_at"] = json!(format!("2026-11-25T11:{:02}:00Z", i));
        d["human_review"] = json!({"reviewer": "analyst-7", "action": "accepted", "review_ms": if i < 20 { 60_000 } else { 4_000 }});
        assert_eq!(
            app.post("/v1/systems/credit/decisions", &w.pipeline, d)
                .await
                .status,
            201
        );
    }
    let r = app
        .get("/v1/systems/credit/compliance", Some(&w.auditor))
        .await
        .json();
    assert_eq!(r["status"], "action_required");
    let codes: Vec<&str> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    for c in [
        "substantial_modification_without_conformity_assessment",
        "retraining_trigger",
        "model_version_awaiting_review",
        "bias_test_missing",
        "human_oversight_atrophy",
    ] {
        assert!(codes.contains(&c), "missing {c} in {codes:?}");
    }
    for f in r["findings"].as_array().unwrap() {
        assert!(
            !f["evidence"].as_array().unwrap().is_empty()
                && f["since"].as_str().is_some()
                && f["explanation"].as_str().is_some(),
            "{f}"
        );
    }
    // In 100 days: the register review is overdue, the drift test stale, a logging gap.
    let store = app.state.ledger.store().clone();
    let rec = veritrail::register::projections::systems::read(&*store, "credit").unwrap();
    let later = veritrail::log::sequencer::now_micros() + 100 * 86_400_000_000;
    let f = veritrail::register::reports::compliance::findings(&*store, &rec, later).unwrap();
    let codes: Vec<&str> = f.iter().map(|f| f.code.as_str()).collect();
    for c in ["register_review_overdue", "drift_test_stale", "logging_gap"] {
        assert!(codes.contains(&c), "missing {c} in {codes:?}");
    }
    let all = app.get("/v1/compliance", Some(&w.officer)).await.json();
    assert_eq!(all[0]["system_id"], "credit");
    assert_eq!(
        app.get("/v1/compliance", Some(&w.pipeline)).await.status,
        403
    );
}
