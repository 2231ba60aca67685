//! What enters an entry is bounded: every entry at most 64 KiB (the tlog-tiles entry
//! bundle limit), the fields that could grow without end refused by name, times a
//! caller sends no later than the clock allows, long erasure and retention runs split
//! into several entries, and pages of entries bounded by bytes.

mod common;

use common::ptype;

use actix_web::test::TestRequest;
use serde_json::{json, Value};

const MAX_ENTRY: usize = 65_535;

fn external_with(metrics: Value) -> Value {
    json!({"evaluator": "external", "result": {
        "tool": "fairlearn", "tool_version": "0.12.0", "kind": "bias",
        "metrics": metrics, "passed": true, "report_sha256": "d".repeat(64)}})
}

/// "credit" with 1.0.0 deployed; the crew.
async fn deployed() -> (
    common::TestApp<
        impl actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
            Error = actix_web::Error,
        >,
    >,
    common::Crew,
) {
    let app = common::spawn().await;
    let c = common::crew(&app).await;
    common::deployed_system(&app, &c, "credit", "1.0.0").await;
    (app, c)
}

/// Every entry of the log is within the limit.
fn every_entry_fits<S>(app: &common::TestApp<S>) {
    let size = app.state.ledger.latest().size;
    for (i, e) in app
        .state
        .ledger
        .entries(0, size)
        .unwrap()
        .iter()
        .enumerate()
    {
        assert!(e.len() <= MAX_ENTRY, "entry {i} is {} bytes", e.len());
    }
}

#[actix_web::test]
async fn external_metrics_are_bounded_in_count() {
    let (app, c) = deployed().await;
    let many: serde_json::Map<String, Value> =
        (0..101).map(|i| (format!("m{i}"), json!(0.5))).collect();
    let r = app
        .post(
            "/v1/systems/credit/models/1.0.0/tests",
            &c.pipeline,
            external_with(Value::Object(many)),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["field"].as_str()),
        (400, Some("result.metrics")),
        "{}",
        r.text()
    );
}

#[actix_web::test]
async fn external_metric_names_and_texts_are_bounded_and_printable() {
    let (app, c) = deployed().await;
    for (metrics, field) in [
        (json!({"a\u{0}b": 1}), "result.metrics.a\u{0}b"),
        (json!({"esc\u{1b}[31m": 1}), "result.metrics.esc\u{1b}[31m"),
        (
            json!({"n".repeat(101): 1}),
            &*format!("result.metrics.{}", "n".repeat(101)),
        ),
        (json!({"note": "t".repeat(201)}), "result.metrics.note"),
    ] {
        let r = app
            .post(
                "/v1/systems/credit/models/1.0.0/tests",
                &c.pipeline,
                external_with(metrics),
            )
            .await;
        assert_eq!(
            (r.status, r.json()["field"].as_str()),
            (400, Some(field)),
            "{}",
            r.text()
        );
    }
}

#[actix_web::test]
async fn bias_tests_compare_a_bounded_number_of_groups() {
    let (app, c) = deployed().await;
    let groups: serde_json::Map<String, Value> = (0..201)
        .map(|i| (format!("g{i}"), json!({"selected": 1, "total": 2})))
        .collect();
    let r = app
        .post(
            "/v1/systems/credit/models/1.0.0/tests",
            &c.pipeline,
            json!({"evaluator": "disparate_impact", "input": {"groups": groups}}),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["field"].as_str()),
        (400, Some("input.groups")),
        "{}",
        r.text()
    );
    let sensitive: Vec<String> = (0..201).map(|i| format!("g{i}")).collect();
    let y_pred: Vec<u8> = (0..201).map(|i| (i % 2) as u8).collect();
    let r = app
        .post(
            "/v1/systems/credit/models/1.0.0/tests",
            &c.pipeline,
            json!({"evaluator": "demographic_parity", "input": {"y_pred": y_pred, "sensitive": sensitive}}),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["field"].as_str()),
        (400, Some("input.sensitive")),
        "{}",
        r.text()
    );
}

#[actix_web::test]
async fn an_entry_over_64_kib_is_refused_naming_its_largest_field() {
    let (app, c) = deployed().await;
    let size = app.state.ledger.latest().size;
    // Each field within its own limit, the entry beyond 64 KiB.
    let mut d = common::decision("big-1", "1.0.0", "subj-1");
    d["output"] = json!({"text": "o".repeat(60_000)});
    d["reasons"] = json!(vec!["r".repeat(400); 100]);
    let r = app
        .post("/v1/systems/credit/decisions", &c.pipeline, d)
        .await;
    assert_eq!(
        (r.status, ptype(&r).as_str(), r.json()["field"].as_str()),
        (400, "entry-too-large", Some("output")),
        "{}",
        r.text()
    );
    assert_eq!(app.state.ledger.latest().size, size, "nothing is recorded");
    every_entry_fits(&app);
}

#[actix_web::test]
async fn a_time_beyond_the_allowed_clock_skew_is_refused() {
    let (app, c) = deployed().await;
    let soon = chrono::Utc::now() + chrono::Duration::seconds(60);
    let late = chrono::Utc::now() + chrono::Duration::seconds(3600);
    let mut d = common::decision("t-1", "1.0.0", "subj-1");
    d["occurred_at"] = json!(late.to_rfc3339());
    let r = app
        .post("/v1/systems/credit/decisions", &c.pipeline, d.clone())
        .await;
    assert_eq!(
        (r.status, r.json()["field"].as_str()),
        (400, Some("occurred_at")),
        "{}",
        r.text()
    );
    d["occurred_at"] = json!("9999-12-31T23:59:59Z");
    let r = app
        .post(
            "/v1/systems/credit/decisions/batch",
            &c.pipeline,
            json!({"decisions": [d]}),
        )
        .await;
    assert_eq!(r.json()["results"][0]["status"], "rejected", "{}", r.text());
    let mut d = common::decision("t-2", "1.0.0", "subj-1");
    d["occurred_at"] = json!(soon.to_rfc3339());
    let r = app
        .post("/v1/systems/credit/decisions", &c.pipeline, d)
        .await;
    assert_eq!(r.status, 201, "within the skew: {}", r.text());
}

/// `n` decisions about one subject, logged in batches.
async fn decisions_about<S: common::AppService<B>, B: actix_web::body::MessageBody>(
    app: &common::TestApp<S>,
    pipeline: &str,
    subject: &str,
    n: usize,
) {
    let all: Vec<Value> = (0..n)
        .map(|i| common::decision(&format!("many-{i}"), "1.0.0", subject))
        .collect();
    for chunk in all.chunks(5_000) {
        let r = app
            .post(
                "/v1/systems/credit/decisions/batch",
                pipeline,
                json!({"decisions": chunk}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["recorded"], chunk.len());
    }
}

#[actix_web::test]
async fn a_long_erasure_is_split_into_entries_that_fit() {
    let (app, c) = deployed().await;
    decisions_about(&app, &c.pipeline, "subj-many", 2_345).await;
    let r = app
        .post(
            "/v1/subjects/subj-many/erasure",
            &c.officer,
            json!({"reason": "GDPR Art. 17 request"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let done = r.json();
    assert_eq!(done["erased"], 2_345);
    assert_eq!(done["decisions"].as_array().unwrap().len(), 2_345);
    // Three entries, parts 1..3, consecutive, ending at the receipt's.
    let last = done["receipt"]["index"].as_u64().unwrap();
    for (k, index) in (last - 2..=last).enumerate() {
        let e = app
            .get(&format!("/v1/log/entries/{index}"), Some(&c.auditor))
            .await
            .json();
        assert_eq!(e["entry"]["kind"], "subject.erased");
        assert_eq!(e["entry"]["body"]["part"], k as u64 + 1);
        assert_eq!(e["entry"]["body"]["parts"], 3);
    }
    every_entry_fits(&app);
}

#[actix_web::test]
async fn a_long_retention_run_is_split_into_entries_that_fit() {
    let (app, c) = deployed().await;
    decisions_about(&app, &c.pipeline, "subj-old", 5_001).await;
    // Far past every retention period.
    let later = veritrail::log::sequencer::now_micros() + 100 * 365 * 86_400_000_000;
    let n = veritrail::register::commands::erasure::run_retention(&app.state.ledger, later)
        .await
        .unwrap();
    assert_eq!(n, 5_001);
    let last = app.state.ledger.latest().size - 1;
    let e = app
        .get(&format!("/v1/log/entries/{last}"), Some(&c.auditor))
        .await
        .json();
    assert_eq!(e["entry"]["kind"], "retention.expired");
    assert_eq!(e["entry"]["body"]["parts"], 2);
    every_entry_fits(&app);
}

#[actix_web::test]
async fn a_page_of_entries_is_bounded_by_bytes() {
    let (app, c) = deployed().await;
    let all: Vec<Value> = (0..40)
        .map(|i| {
            let mut d = common::decision(&format!("wide-{i}"), "1.0.0", "subj-1");
            d["output"] = json!({"text": "w".repeat(50_000)});
            d
        })
        .collect();
    let r = app
        .post(
            "/v1/systems/credit/decisions/batch",
            &c.pipeline,
            json!({"decisions": all}),
        )
        .await;
    assert_eq!(r.json()["recorded"], 40, "{}", r.text());
    let page = app
        .get("/v1/log/entries?limit=1000", Some(&c.auditor))
        .await
        .json();
    let n = page["entries"].as_array().unwrap().len() as u64;
    let size = page["tree_size"].as_u64().unwrap();
    assert!(n < size, "one page held all {size} entries");
    assert_eq!(page["next"], n);
    // Following `next` reaches the end, every entry once.
    let mut seen = n;
    let mut next = page["next"].clone();
    while let Some(start) = next.as_u64() {
        let p = app
            .get(
                &format!("/v1/log/entries?start={start}&limit=1000"),
                Some(&c.auditor),
            )
            .await
            .json();
        assert_eq!(p["entries"][0]["index"], start);
        seen += p["entries"].as_array().unwrap().len() as u64;
        next = p["next"].clone();
    }
    assert_eq!(seen, size);
}

#[actix_web::test]
async fn test_records_may_be_eight_times_the_body_limit() {
    let app = common::spawn_with(veritrail::startup::OpenOpts {
        body_limit: 4096,
        ..Default::default()
    })
    .await;
    let c = common::crew(&app).await;
    common::register_system(&app, &c.officer, "credit").await;
    let r = app
        .post(
            "/v1/systems/credit/models",
            &c.pipeline,
            common::version("1.0.0", None),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let baseline: Vec<f64> = (0..800).map(|i| f64::from(i) / 800.0).collect();
    let body = json!({"evaluator": "ks", "input": {"baseline": baseline, "current": baseline}});
    let len = body.to_string().len();
    assert!(len > 4096 && len < 8 * 4096, "{len}");
    let r = app
        .post(
            "/v1/systems/credit/models/1.0.0/tests",
            &c.pipeline,
            body.clone(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    // Other bodies keep the limit.
    let r = app
        .call(
            TestRequest::post()
                .uri("/v1/systems/credit/models")
                .insert_header(("Authorization", format!("Bearer {}", c.pipeline)))
                .set_json(json!({"version": "2", "changelog": "x".repeat(5000)})),
        )
        .await;
    assert_eq!(r.status, 413, "{}", r.text());
}
