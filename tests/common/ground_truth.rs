//! Systems with ground truth: a system whose policy names the prediction field, and the
//! seeded synthetic cases of `tests/data/failure_mode_reference.json` (written by
//! `scripts/reference/failure_modes.py`) logged into one: decisions, outcomes,
//! corrections and overturned contests, through the API.

use std::collections::BTreeMap;

use actix_web::body::MessageBody;
use serde_json::{json, Value};

use super::{deploy_version, system, AppService, Crew, TestApp};

const DAY: u64 = 86_400_000_000;

/// How close a figure must come to the reference's.
pub const EPS: f64 = 1e-9;

/// A figure against the reference's: both numbers within [`EPS`], or both null.
pub fn close(got: &Value, want: &Value, what: &str) {
    match (got.as_f64(), want.as_f64()) {
        (Some(g), Some(w)) => assert!((g - w).abs() <= EPS, "{what}: {g} against {w}"),
        _ => assert!(
            got.is_null() && want.is_null(),
            "{what}: {got} against {want}"
        ),
    }
}

/// The reference fixture.
pub fn reference() -> &'static Value {
    static R: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    R.get_or_init(|| {
        serde_json::from_str(
            &std::fs::read_to_string("tests/data/failure_mode_reference.json").unwrap(),
        )
        .unwrap()
    })
}

/// One case of the fixture.
pub fn case(name: &str) -> &'static Value {
    &reference()["cases"][name]
}

/// `system(id)` with an outcome policy naming `approved` as the prediction field and
/// windows of `window` outcomes.
pub fn outcome_system(id: &str, window: u64) -> Value {
    let mut s = system(id);
    s["policy"]["outcomes"] = json!({"prediction_field": "approved", "window": window});
    s
}

pub fn time(micros: u64) -> String {
    veritrail::register::rfc3339(micros)
}

pub fn now() -> u64 {
    veritrail::log::sequencer::now_micros()
}

/// A decision of version `v` about subject `subject` predicting `approved`.
pub fn decision(id: &str, v: &str, occurred_at: u64, approved: bool, confidence: f64) -> Value {
    json!({
        "decision_id": id,
        "model_version": v,
        "occurred_at": time(occurred_at),
        "subject_ref": format!("subject-{id}"),
        "input_sha256": "c".repeat(64),
        "output": {"approved": approved},
        "confidence": confidence,
        "reasons": []
    })
}

/// An outcome body.
pub fn outcome(label: bool, observed_at: u64) -> Value {
    json!({"observed_at": time(observed_at), "label": label, "source": "loan-ledger"})
}

/// Post `items` under `field` to `path` in batches of 1,000; every item must be
/// recorded. The entry index of each item, by decision id.
pub async fn post_batches<S, B>(
    app: &TestApp<S>,
    token: &str,
    path: &str,
    field: &str,
    items: Vec<Value>,
) -> BTreeMap<String, u64>
where
    S: AppService<B>,
    B: MessageBody,
{
    let mut out = BTreeMap::new();
    for chunk in items.chunks(1000) {
        let r = app.post(path, token, json!({ field: chunk })).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let body = r.json();
        assert_eq!(body["rejected"], 0, "{}", r.text());
        for item in body["results"].as_array().unwrap() {
            out.insert(
                item["decision_id"].as_str().unwrap().to_owned(),
                item["receipt"]["index"].as_u64().unwrap(),
            );
        }
    }
    out
}

/// Log a fixture case into system `id` (registered here with the fixture's window):
/// each version deployed in turn, its decisions 20 days old, its outcomes observed a
/// day ago in the fixture's order, then its corrections and overturned contests. The
/// entry index of every decision, by id.
pub async fn seed_case<S, B>(
    app: &TestApp<S>,
    crew: &Crew,
    id: &str,
    case: &Value,
) -> BTreeMap<String, u64>
where
    S: AppService<B>,
    B: MessageBody,
{
    let window = reference()["window"].as_u64().unwrap();
    let r = app
        .post("/v1/systems", &crew.officer, outcome_system(id, window))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let start = now() - 20 * DAY;
    let observed = now() - DAY;
    let mut indices = BTreeMap::new();
    let mut previous: Option<String> = None;
    let mut k = 0u64;
    for v in case["versions"].as_array().unwrap() {
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
                let mut body = decision(
                    d["id"].as_str().unwrap(),
                    name,
                    start + k * 1_000_000,
                    d["prediction"].as_bool().unwrap(),
                    d["confidence"].as_f64().unwrap(),
                );
                if let Some(p) = d.get("proxy") {
                    body["proxy"] = p.clone();
                }
                body
            })
            .collect();
        let path = format!("/v1/systems/{id}/decisions/batch");
        indices.extend(post_batches(app, &crew.pipeline, &path, "decisions", decisions).await);
        let outcomes: Vec<Value> = v["outcomes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                let mut body = outcome(o["label"].as_bool().unwrap(), observed);
                body["decision_id"] = o["id"].clone();
                if let Some(b) = o.get("business") {
                    body["business"] = b.clone();
                }
                body
            })
            .collect();
        if !outcomes.is_empty() {
            let path = format!("/v1/systems/{id}/outcomes/batch");
            post_batches(app, &crew.pipeline, &path, "outcomes", outcomes).await;
        }
        for c in v["corrections"].as_array().unwrap() {
            let mut body = outcome(c["label"].as_bool().unwrap(), observed);
            body["business"] = c["business"].clone();
            body["correction"] = json!(true);
            let path = format!(
                "/v1/systems/{id}/decisions/{}/outcomes",
                c["id"].as_str().unwrap()
            );
            let r = app.post(&path, &crew.pipeline, body).await;
            assert_eq!(r.status, 201, "{}", r.text());
        }
        for d in v["overturned"].as_array().unwrap() {
            overturn(app, crew, id, d.as_str().unwrap()).await;
        }
        previous = Some(name.to_owned());
    }
    indices
}

/// Record a contest of `decision_id` and resolve it overturned.
pub async fn overturn<S, B>(app: &TestApp<S>, crew: &Crew, id: &str, decision_id: &str)
where
    S: AppService<B>,
    B: MessageBody,
{
    let c = app
        .post(
            &format!("/v1/systems/{id}/decisions/{decision_id}/contests"),
            &crew.officer,
            json!({"grounds": "my income was misread", "received_at": time(now())}),
        )
        .await;
    assert_eq!(c.status, 201, "{}", c.text());
    let r = app
        .post(
            &format!("/v1/systems/{id}/contests/{}/resolution", c.json()["id"]),
            &crew.officer2,
            json!({"outcome": "overturned", "rationale": "the income was verified from payslips"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
}

/// The failure-mode report of system `id` (as `token`), and its mode `code`.
pub async fn report<S, B>(app: &TestApp<S>, token: &str, id: &str, query: &str) -> Value
where
    S: AppService<B>,
    B: MessageBody,
{
    let r = app
        .get(
            &format!("/v1/systems/{id}/failure-modes{query}"),
            Some(token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Mode `code` (`FM-01` …) of a report.
pub fn mode<'a>(report: &'a Value, code: &str) -> &'a Value {
    report["modes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["code"] == code)
        .unwrap()
}

/// The finding codes of a report, sorted.
pub fn codes(report: &Value) -> Vec<String> {
    let mut c: Vec<String> = report["modes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| ["FM-01", "FM-04", "FM-07"].contains(&m["code"].as_str().unwrap()))
        .flat_map(|m| m["findings"].as_array().unwrap().clone())
        .map(|f| f["code"].as_str().unwrap().to_owned())
        .collect();
    c.sort();
    c
}
