//! Strict input: a body is one JSON object and nothing else, queries are refused as
//! queries, and text that would display other than it reads is refused. Nothing is
//! recorded for a refused request.

mod common;

use common::ptype;

use actix_web::test::TestRequest;
use serde_json::json;

/// POST a raw body as the admin to `/v1/tokens`.
async fn post_raw<S: common::AppService<B>, B: actix_web::body::MessageBody>(
    app: &common::TestApp<S>,
    body: &str,
) -> common::Resp {
    app.call(
        TestRequest::post()
            .uri("/v1/tokens")
            .insert_header(("Authorization", format!("Bearer {}", app.admin)))
            .insert_header(("content-type", "application/json"))
            .set_payload(body.to_owned()),
    )
    .await
}

#[actix_web::test]
async fn a_second_json_value_after_the_body_is_refused() {
    let app = common::spawn().await;
    let size = app.state.ledger.latest().size;
    let r = post_raw(
        &app,
        r#"{"name":"a","role":"auditor"}{"name":"b","role":"admin"}"#,
    )
    .await;
    assert_eq!(
        (r.status, ptype(&r).as_str()),
        (400, "invalid-body"),
        "{}",
        r.text()
    );
    assert_eq!(app.state.ledger.latest().size, size, "nothing is recorded");
}

#[actix_web::test]
async fn trailing_text_after_the_body_is_refused() {
    let app = common::spawn().await;
    let r = post_raw(&app, r#"{"name":"a","role":"auditor"}<html>"#).await;
    assert_eq!(
        (r.status, ptype(&r).as_str()),
        (400, "invalid-body"),
        "{}",
        r.text()
    );
    // Whitespace after the object is fine.
    let r = post_raw(&app, "{\"name\":\"a\",\"role\":\"auditor\"}\n  ").await;
    assert_eq!(r.status, 201, "{}", r.text());
}

#[actix_web::test]
async fn an_array_in_place_of_the_object_is_refused() {
    let app = common::spawn().await;
    let r = post_raw(&app, r#"["a","auditor"]"#).await;
    assert_eq!(
        (r.status, ptype(&r).as_str()),
        (400, "invalid-body"),
        "{}",
        r.text()
    );
}

#[actix_web::test]
async fn a_bad_time_in_a_query_is_an_invalid_query() {
    let app = common::spawn().await;
    let c = common::crew(&app).await;
    common::register_system(&app, &c.officer, "credit").await;
    for (path, field) in [
        ("/v1/systems/credit?at=yesterday", "at"),
        ("/v1/systems/credit/decisions?from=soon", "from"),
        ("/v1/systems/credit/decisions?to=later", "to"),
    ] {
        let r = app.get(path, Some(&c.officer)).await;
        assert_eq!(
            (r.status, ptype(&r).as_str(), r.json()["field"].as_str()),
            (400, "invalid-query", Some(field)),
            "{path}: {}",
            r.text()
        );
    }
}

#[actix_web::test]
async fn from_after_to_is_refused() {
    let app = common::spawn().await;
    let c = common::crew(&app).await;
    common::register_system(&app, &c.officer, "credit").await;
    let r = app
        .get(
            "/v1/systems/credit/decisions?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
            Some(&c.officer),
        )
        .await;
    assert_eq!(
        (r.status, ptype(&r).as_str(), r.json()["field"].as_str()),
        (400, "invalid-query", Some("from")),
        "{}",
        r.text()
    );
}

#[actix_web::test]
async fn bidirectional_override_characters_are_refused_in_names() {
    let app = common::spawn().await;
    let c = common::crew(&app).await;
    let mut sys = common::system("credit");
    sys["name"] = json!("Credit \u{202E}gnirocs");
    let r = app.post("/v1/systems", &c.officer, sys).await;
    assert_eq!(
        (r.status, r.json()["field"].as_str()),
        (400, Some("name")),
        "{}",
        r.text()
    );
    let r = app
        .post(
            "/v1/tokens",
            &app.admin.clone(),
            json!({"name": "ops\u{202E}", "role": "auditor"}),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["field"].as_str()),
        (400, Some("name")),
        "{}",
        r.text()
    );
}

#[actix_web::test]
async fn a_subject_reference_in_a_path_is_checked_like_the_body_field() {
    let app = common::spawn().await;
    let c = common::crew(&app).await;
    let long = "s".repeat(300);
    for path in [
        format!("/v1/subjects/{long}/decisions"),
        "/v1/subjects/a%00b/decisions".to_owned(),
        "/v1/subjects/a%E2%80%AEb/decisions".to_owned(),
    ] {
        let r = app.get(&path, Some(&c.officer)).await;
        assert_eq!(
            (r.status, ptype(&r).as_str(), r.json()["field"].as_str()),
            (400, "invalid-path", Some("subject_ref")),
            "{}",
            r.text()
        );
    }
    let r = app
        .post(
            "/v1/subjects/a%00b/erasure",
            &c.officer,
            json!({"reason": "request"}),
        )
        .await;
    assert_eq!(
        (r.status, ptype(&r).as_str()),
        (400, "invalid-path"),
        "{}",
        r.text()
    );
}

#[actix_web::test]
async fn a_wrong_method_on_a_route_is_405_with_allow() {
    let app = common::spawn().await;
    let r = app.call(TestRequest::delete().uri("/v1/systems")).await;
    assert_eq!(
        (r.status, ptype(&r).as_str()),
        (405, "method-not-allowed"),
        "{}",
        r.text()
    );
    let allow = r.headers.get("allow").unwrap().to_str().unwrap().to_owned();
    assert_eq!(allow, "GET, POST");
    let r = app.call(TestRequest::get().uri("/v1/nothing-here")).await;
    assert_eq!(r.status, 404);
}

#[actix_web::test]
async fn invented_methods_share_one_metrics_label() {
    let app = common::spawn().await;
    for i in 0..20 {
        let method = actix_web::http::Method::from_bytes(format!("FUZZ{i}").as_bytes()).unwrap();
        app.call(TestRequest::default().method(method).uri("/healthz"))
            .await;
    }
    let metrics = app.get("/metrics", None).await.text();
    assert!(
        !metrics.contains("FUZZ"),
        "an invented method became a label"
    );
    assert!(metrics.contains("method=\"other\""), "{metrics}");
}
