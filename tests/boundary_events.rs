//! Integration boundaries (FM-05) and the decision fields of the decision-window modes
//! at the edge: boundary events one by one and in batches, each bad field named in an
//! RFC 9457 problem, nothing appended for a refused item, and the failure-mode policy
//! keys checked.

mod common;

use common::ground_truth::{now, time};
use serde_json::{json, Value};

fn event() -> Value {
    json!({"occurred_at": time(now()), "upstream": "intake", "downstream": "scoring",
           "contract_version": "v3", "status": "timeout", "latency_ms": 800,
           "detail": "no answer within 800 ms"})
}

#[actix_web::test]
async fn a_boundary_event_is_recorded_in_the_log() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    common::deployed_system(&app, &crew, "credit", "1").await;
    let r = app
        .post(
            "/v1/systems/credit/boundary-events",
            &crew.pipeline,
            event(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let index = r.json()["receipt"]["index"].as_u64().unwrap();
    let e = app
        .get(&format!("/v1/log/entries/{index}"), Some(&crew.auditor))
        .await
        .json();
    assert_eq!(e["entry"]["kind"], "boundary.event", "{e}");
    assert_eq!(e["entry"]["body"]["status"], "timeout", "{e}");
}

#[actix_web::test]
async fn each_bad_boundary_field_is_named() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    common::deployed_system(&app, &crew, "credit", "1").await;
    let size = app.state.ledger.latest().size;
    for (field, value) in [
        ("occurred_at", json!(time(now() + 3_600_000_000))),
        ("occurred_at", json!("yesterday")),
        ("upstream", json!("has space")),
        ("contract_version", json!("")),
        ("status", json!("melted")),
        ("latency_ms", json!(86_400_001)),
        ("detail", json!("x".repeat(501))),
    ] {
        let mut e = event();
        e[field] = value;
        let r = app
            .post("/v1/systems/credit/boundary-events", &crew.pipeline, e)
            .await;
        assert_eq!(r.status, 400, "{field}: {}", r.text());
        assert!(r.text().contains(field), "{field}: {}", r.text());
    }
    assert_eq!(app.state.ledger.latest().size, size);
}

#[actix_web::test]
async fn a_boundary_event_needs_a_registered_system() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    let r = app
        .post(
            "/v1/systems/nowhere/boundary-events",
            &crew.pipeline,
            event(),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
}

#[actix_web::test]
async fn a_boundary_batch_answers_each_item() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    common::deployed_system(&app, &crew, "credit", "1").await;
    let mut bad = event();
    bad["status"] = json!("melted");
    let r = app
        .post(
            "/v1/systems/credit/boundary-events/batch",
            &crew.pipeline,
            json!({"events": [event(), bad, event()]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let b = r.json();
    assert_eq!(b["recorded"], 2, "{b}");
    assert_eq!(b["rejected"], 1, "{b}");
    assert_eq!(b["results"][1]["status"], "rejected", "{b}");
    let r = app
        .post(
            "/v1/systems/credit/boundary-events/batch",
            &crew.pipeline,
            json!({"events": []}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("events"));
}

#[actix_web::test]
async fn each_bad_decision_evidence_field_is_named() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    common::deployed_system(&app, &crew, "credit", "1").await;
    let cases = [
        (
            "integration.latency_ms",
            json!({"integration": {"upstream": "a", "downstream": "b", "contract_version": "v1", "status": "ok", "latency_ms": 90_000_000}}),
        ),
        (
            "integration.status",
            json!({"integration": {"upstream": "a", "downstream": "b", "contract_version": "v1", "status": "fine", "latency_ms": 1}}),
        ),
        (
            "integration.upstream",
            json!({"integration": {"upstream": "a b", "downstream": "b", "contract_version": "v1", "status": "ok", "latency_ms": 1}}),
        ),
        ("equivalence_key", json!({"equivalence_key": "not an id"})),
        (
            "validation.method",
            json!({"validation": {"method": "", "passed": true}}),
        ),
        (
            "validation.sources",
            json!({"validation": {"method": "rag", "passed": true, "sources": vec!["s"; 21]}}),
        ),
        ("exploration", json!({"exploration": "yes"})),
        ("blind_review", json!({"blind_review": true})),
    ];
    for (field, extra) in cases {
        let mut d = common::decision("d-1", "1", "s");
        for (k, v) in extra.as_object().unwrap() {
            d[k] = v.clone();
        }
        let r = app
            .post("/v1/systems/credit/decisions", &crew.pipeline, d)
            .await;
        assert_eq!(r.status, 400, "{field}: {}", r.text());
        let leaf = field.rsplit('.').next().unwrap();
        assert!(r.text().contains(leaf), "{field}: {}", r.text());
    }
}

#[actix_web::test]
async fn each_bad_failure_mode_policy_key_is_named() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    for (field, key, value) in [
        (
            "policy.blind_review.rate",
            "blind_review",
            json!({"rate": 1.5}),
        ),
        (
            "policy.blind_review.min_human_accuracy",
            "blind_review",
            json!({"min_human_accuracy": 0.1234567891}),
        ),
        (
            "policy.feedback.max_entropy_drop",
            "feedback",
            json!({"max_entropy_drop": -0.1}),
        ),
        (
            "policy.integration.max_error_rate",
            "integration",
            json!({"max_error_rate": 2}),
        ),
        (
            "policy.integration.contract.input_schema_sha256",
            "integration",
            json!({"contract": {"input_schema_sha256": "xyz", "input_schema_version": "v1", "output_schema_version": "v1", "timeout_ms": 10, "fallback": "none"}}),
        ),
        (
            "policy.consistency.max_unvalidated_share",
            "consistency",
            json!({"max_unvalidated_share": 3}),
        ),
    ] {
        let mut s = common::system("credit");
        s["policy"][key] = value;
        let r = app.post("/v1/systems", &crew.officer, s).await;
        assert_eq!(r.status, 400, "{field}: {}", r.text());
        assert!(r.text().contains(field), "{field}: {}", r.text());
    }
}

#[actix_web::test]
async fn a_boundary_event_before_the_systems_registration_is_refused() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    common::deployed_system(&app, &crew, "credit", "1").await;
    let size = app.state.ledger.latest().size;
    let mut e = event();
    e["occurred_at"] = json!("1970-01-01T00:00:00Z");
    let r = app
        .post("/v1/systems/credit/boundary-events", &crew.pipeline, e)
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["field"], "occurred_at", "{}", r.text());
    assert_eq!(app.state.ledger.latest().size, size, "nothing appended");
}
