//! The system page's charts (SVG drawn on the server, each with its figures in a table):
//! decisions per day by version, test figures against their thresholds, human
//! oversight per week. Over HTTP (actix's test service), signed in as an auditor.

mod common;

use common::console::{get, session};
use serde_json::json;

/// The system page as the auditor sees it.
async fn system_page<S: common::AppService<B>, B: actix_web::body::MessageBody>(
    app: &common::TestApp<S>,
    crew: &common::Crew,
) -> String {
    let cookie = session(app, &crew.auditor).await;
    let r = get(app, &cookie, "/console/systems/credit").await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

/// A table row of a chart's figures, as rendered.
fn row(cells: &[&str]) -> String {
    cells.iter().map(|c| format!("<td>{c}</td>")).collect()
}

async fn decide<S: common::AppService<B>, B: actix_web::body::MessageBody>(
    app: &common::TestApp<S>,
    crew: &common::Crew,
    id: &str,
    version: &str,
    at: &str,
    review: serde_json::Value,
) {
    let mut d = common::decision(id, version, "subject-1");
    d["occurred_at"] = json!(at);
    d["human_review"] = review;
    let r = app
        .post("/v1/systems/credit/decisions", &crew.pipeline, d)
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
}

#[actix_web::test]
async fn decisions_per_day_are_charted_by_model_version() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    common::deployed_system(&app, &crew, "credit", "1").await;
    for (id, at) in [
        ("a", "2026-11-24T09:00:00Z"),
        ("b", "2026-11-24T23:59:59Z"),
        ("c", "2026-11-25T00:00:00Z"),
    ] {
        decide(&app, &crew, id, "1", at, json!(null)).await;
    }
    common::deploy_version(
        &app,
        &crew.pipeline,
        &crew.officer,
        "credit",
        "2",
        Some("1"),
    )
    .await;
    decide(&app, &crew, "d", "2", "2026-11-25T12:00:00Z", json!(null)).await;
    let page = system_page(&app, &crew).await;
    assert!(
        page.contains(r#"<svg role="img" aria-label="Decisions per day, by model version""#),
        "no chart of decisions per day"
    );
    for cells in [
        ["2026-11-24", "1", "2"],
        ["2026-11-25", "1", "1"],
        ["2026-11-25", "2", "1"],
    ] {
        assert!(page.contains(&row(&cells)), "no row {cells:?}");
    }
}

#[actix_web::test]
async fn human_oversight_is_charted_per_week() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    common::deployed_system(&app, &crew, "credit", "1").await;
    // The week from Monday 2026-11-23: three reviews, two accepted; median 30 s.
    let review =
        |action: &str, ms: u64| json!({"reviewer": "analyst-7", "action": action, "review_ms": ms});
    decide(
        &app,
        &crew,
        "a",
        "1",
        "2026-11-23T08:00:00Z",
        review("accepted", 45_000),
    )
    .await;
    decide(
        &app,
        &crew,
        "b",
        "1",
        "2026-11-25T08:00:00Z",
        review("accepted", 30_000),
    )
    .await;
    decide(
        &app,
        &crew,
        "c",
        "1",
        "2026-11-29T23:00:00Z",
        review("overridden", 12_000),
    )
    .await;
    // The next week: one decision nobody reviewed.
    decide(&app, &crew, "d", "1", "2026-11-30T08:00:00Z", json!(null)).await;
    let page = system_page(&app, &crew).await;
    assert!(page.contains(r#"aria-label="Human oversight per week: share accepted as proposed""#));
    assert!(page
        .contains(r#"aria-label="Human oversight per week: median review time (within 3.2 %)""#));
    let at = page
        .find(&row(&["2026-11-23", "3", "66.7 %"]))
        .expect("the week of 2026-11-23: 3 reviewed, 66.7 % accepted");
    let rest = &page[at..];
    let median: f64 = rest[rest.find("%</td><td>").unwrap() + 10..]
        .split(" s</td>")
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((median - 30.0).abs() / 30.0 <= 0.032, "median {median} s");
    assert!(
        !page.contains(&row(&["2026-11-30", "0"])),
        "a week without reviews has no oversight row"
    );
}

#[actix_web::test]
async fn test_figures_are_charted_against_the_threshold_each_test_applied() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    common::deployed_system(&app, &crew, "credit", "1").await;
    let tests = "/v1/systems/credit/models/1/tests";
    let stable = json!({"baseline_counts": [50, 50], "current_counts": [50, 50]});
    let shifted = json!({"baseline_counts": [50, 50], "current_counts": [90, 10]});
    let mut ids = Vec::new();
    for (input, params) in [(stable, json!({})), (shifted, json!({"fail_at": 0.1}))] {
        let r = app
            .post(
                tests,
                &crew.officer,
                json!({"evaluator": "psi", "input": input, "params": params}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        ids.push(r.json());
    }
    let page = system_page(&app, &crew).await;
    assert!(page.contains(
        r#"aria-label="psi: psi per test, passing below the threshold the test applied (fail_at)""#
    ));
    for (t, threshold, verdict) in [(&ids[0], "0.25", "passed"), (&ids[1], "0.1", "failed")] {
        let psi = t["figures"]["psi"].as_f64().unwrap().to_string();
        let cells = [threshold, verdict];
        let tail = row(&cells);
        let head = format!("<td>{}</td>", t["id"]);
        let at = page
            .find(&head)
            .unwrap_or_else(|| panic!("no row for test {}", t["id"]));
        let line = &page[at..at + page[at..].find("</tr>").unwrap()];
        assert!(
            line.contains(&format!("<td>{psi}</td>")) && line.ends_with(&tail),
            "{line}"
        );
    }
}

#[actix_web::test]
async fn figures_another_tool_reported_are_charted_with_its_verdicts() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    common::deployed_system(&app, &crew, "credit", "1").await;
    let page = system_page(&app, &crew).await;
    assert!(page.contains(
        r#"aria-label="external: demographic_parity_difference per test, with the reporting tool&#39;s verdicts""#
    ));
    assert!(page.contains(&row(&["0.03", "the tool's", "passed"])));
}
