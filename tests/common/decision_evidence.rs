//! The seeded synthetic cases of `tests/data/decision_mode_reference.json` (written by
//! `scripts/reference/decision_modes.py`) logged into systems through the API: each
//! version deployed in turn with its decisions (prediction `class`, exploration,
//! counterfactual, human review, integration, equivalence key, validation), boundary
//! events halfway through the last version, then blind judgments by a reviewer and the
//! outcomes of the judged decisions.

use std::collections::BTreeMap;

use actix_web::body::MessageBody;
use serde_json::{json, Value};

use super::ground_truth::{now, post_batches, time};
use super::{deploy_version, system, AppService, Crew, TestApp};

/// The reference fixture.
pub fn reference() -> &'static Value {
    static R: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    R.get_or_init(|| {
        serde_json::from_str(
            &std::fs::read_to_string("tests/data/decision_mode_reference.json").unwrap(),
        )
        .unwrap()
    })
}

/// One case of the fixture.
pub fn case(name: &str) -> &'static Value {
    &reference()["cases"][name]
}

/// Every case's name.
pub fn names() -> Vec<String> {
    reference()["cases"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

/// The system `id` of a case: its policy, risk class, the prediction field `class`.
pub fn case_system(id: &str, case: &Value) -> Value {
    let mut s = system(id);
    s["risk_class"] = case["risk_class"].clone();
    s["policy"] = case["policy"].clone();
    s
}

/// A decision body of version `v` from a fixture decision.
pub fn decision(d: &Value, v: &str, occurred_at: u64, k: u64) -> Value {
    let id = d["id"].as_str().unwrap();
    let mut body = json!({
        "decision_id": id,
        "model_version": v,
        "occurred_at": time(occurred_at),
        "subject_ref": format!("subject-{id}"),
        "input_sha256": "c".repeat(64),
        "inputs": {"income": 40_000 + k, "region": "north"},
        "output": {"class": d["prediction"]},
        "reasons": ["reason-code-7"],
    });
    if d.get("exploration").is_some() {
        body["exploration"] = json!(true);
    }
    if let Some(c) = d.get("counterfactual") {
        body["counterfactual_output"] = json!({"class": c});
    }
    if let Some(ms) = d.get("review_ms") {
        // Every third review overrides: oversight is not rubber-stamping here.
        let action = if k % 3 == 0 { "overridden" } else { "accepted" };
        body["human_review"] = json!({"reviewer": "analyst-7", "action": action, "review_ms": ms});
    }
    if let Some(i) = d.get("integration") {
        body["integration"] = i.clone();
    }
    if let Some(e) = d.get("equivalence_key") {
        body["equivalence_key"] = e.clone();
    }
    if let Some(passed) = d.get("validated").and_then(Value::as_bool) {
        body["validation"] =
            json!({"method": "rule-check", "passed": passed, "sources": ["rule-9"]});
    }
    body
}

/// A boundary event body from a fixture event.
pub fn event(e: &Value, occurred_at: u64) -> Value {
    let mut b = e.clone();
    b["occurred_at"] = json!(time(occurred_at));
    b["detail"] = json!("no answer within the contract's timeout");
    b
}

/// Record fixture boundary events (if any) in one batch.
async fn post_events<S, B>(app: &TestApp<S>, crew: &Crew, id: &str, events: &Value, at: u64)
where
    S: AppService<B>,
    B: MessageBody,
{
    let events: Vec<Value> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| event(e, at))
        .collect();
    if events.is_empty() {
        return;
    }
    let r = app
        .post(
            &format!("/v1/systems/{id}/boundary-events/batch"),
            &crew.pipeline,
            json!({ "events": events }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["rejected"], 0, "{}", r.text());
}

/// Log a fixture case into system `id` (registered here); `reviewer` judges its blind
/// cases. The entry index of every decision, by id.
pub async fn seed<S, B>(
    app: &TestApp<S>,
    crew: &Crew,
    reviewer: &str,
    id: &str,
    case: &Value,
) -> BTreeMap<String, u64>
where
    S: AppService<B>,
    B: MessageBody,
{
    let r = app
        .post("/v1/systems", &crew.officer, case_system(id, case))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    // Boundary events may not lie before the system's registration: the history starts
    // now, a millisecond apart.
    let start = now();
    let versions = case["versions"].as_array().unwrap();
    let mut indices = BTreeMap::new();
    let mut previous: Option<String> = None;
    let mut k = 0u64;
    let path = format!("/v1/systems/{id}/decisions/batch");
    for (n, v) in versions.iter().enumerate() {
        let name = v["version"].as_str().unwrap();
        deploy_version(
            app,
            &crew.pipeline,
            &crew.officer,
            id,
            name,
            previous.as_deref(),
        )
        .await;
        let decisions: Vec<Value> = v["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                k += 1;
                decision(d, name, start + k * 1_000, k)
            })
            .collect();
        if n + 1 == versions.len() {
            // Events before the version's first decision lie outside every window.
            post_events(app, crew, id, &case["events_before"], start + k * 1_000).await;
            // The boundary events fall between the window's first and last decision.
            let half = decisions.len() / 2;
            indices.extend(
                post_batches(
                    app,
                    &crew.pipeline,
                    &path,
                    "decisions",
                    decisions[..half].to_vec(),
                )
                .await,
            );
            post_events(app, crew, id, &case["events"], start + k * 1_000).await;
            indices.extend(
                post_batches(
                    app,
                    &crew.pipeline,
                    &path,
                    "decisions",
                    decisions[half..].to_vec(),
                )
                .await,
            );
        } else {
            indices.extend(post_batches(app, &crew.pipeline, &path, "decisions", decisions).await);
        }
        previous = Some(name.to_owned());
    }
    for j in case["judgments"].as_array().unwrap() {
        let r = app
            .post(
                &format!(
                    "/v1/systems/{id}/blind-reviews/{}",
                    j["id"].as_str().unwrap()
                ),
                reviewer,
                json!({"judgment": {"class": j["judgment"]}, "review_ms": j["review_ms"]}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let outcomes: Vec<Value> = case["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            json!({"decision_id": o["id"], "observed_at": time(now()), "label": o["label"], "source": "case-file"})
        })
        .collect();
    if !outcomes.is_empty() {
        post_batches(
            app,
            &crew.pipeline,
            &format!("/v1/systems/{id}/outcomes/batch"),
            "outcomes",
            outcomes,
        )
        .await;
    }
    indices
}
