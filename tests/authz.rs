//! Who may call what: every route of the API description against every kind of caller
//! (none, each role, a revoked token), from one table that a new route cannot escape,
//! and the role checked before a body is read.

mod common;

use actix_web::test::TestRequest;
use serde_json::Value;

/// Who may call a route.
#[derive(Debug, Clone, Copy)]
enum Who {
    Public,
    Roles(&'static [&'static str]),
}

const READERS: Who = Who::Roles(&["admin", "pipeline", "officer", "auditor"]);
const DECISION_READERS: Who = Who::Roles(&["officer", "auditor"]);
const MODEL_WRITERS: Who = Who::Roles(&["pipeline", "officer"]);
const OFFICER: Who = Who::Roles(&["officer"]);
const PIPELINE: Who = Who::Roles(&["pipeline"]);
const ADMIN: Who = Who::Roles(&["admin"]);
const SUBSCRIBERS: Who = Who::Roles(&["admin", "officer", "pipeline"]);
const REVIEWER: Who = Who::Roles(&["reviewer"]);

/// The authorisation matrix: every operation of the API, and who may call it.
const MATRIX: &[(&str, &str, Who)] = &[
    ("GET", "/docs", Who::Public),
    ("GET", "/healthz", Who::Public),
    ("GET", "/metrics", Who::Public),
    ("GET", "/openapi.json", Who::Public),
    ("GET", "/readyz", Who::Public),
    ("GET", "/v1/log/checkpoint", Who::Public),
    ("GET", "/v1/log/key", Who::Public),
    ("GET", "/v1/log/checkpoints/{size}", READERS),
    ("GET", "/v1/log/entries", READERS),
    ("GET", "/v1/log/entries/{index}", READERS),
    ("GET", "/v1/log/export", READERS),
    ("GET", "/v1/log/proofs/consistency", READERS),
    ("GET", "/v1/log/proofs/inclusion", READERS),
    ("GET", "/v1/evaluators", READERS),
    ("GET", "/v1/events", READERS),
    ("POST", "/v1/subscriptions", SUBSCRIBERS),
    ("GET", "/v1/subscriptions", SUBSCRIBERS),
    ("GET", "/v1/subscriptions/{subscription_id}", SUBSCRIBERS),
    ("DELETE", "/v1/subscriptions/{subscription_id}", SUBSCRIBERS),
    (
        "GET",
        "/v1/subscriptions/{subscription_id}/deliveries",
        SUBSCRIBERS,
    ),
    (
        "POST",
        "/v1/systems/{system_id}/decisions/{decision_id}/outcomes",
        PIPELINE,
    ),
    ("POST", "/v1/systems/{system_id}/outcomes/batch", PIPELINE),
    (
        "POST",
        "/v1/systems/{system_id}/decisions/{decision_id}/contests",
        OFFICER,
    ),
    (
        "POST",
        "/v1/systems/{system_id}/contests/{contest_id}/resolution",
        OFFICER,
    ),
    (
        "GET",
        "/v1/systems/{system_id}/failure-modes",
        DECISION_READERS,
    ),
    ("GET", "/v1/systems/{system_id}/blind-reviews", REVIEWER),
    (
        "POST",
        "/v1/systems/{system_id}/blind-reviews/{decision_id}",
        REVIEWER,
    ),
    ("POST", "/v1/systems/{system_id}/boundary-events", PIPELINE),
    (
        "POST",
        "/v1/systems/{system_id}/boundary-events/batch",
        PIPELINE,
    ),
    ("GET", "/v1/systems/{system_id}/circuit", READERS),
    ("POST", "/v1/systems/{system_id}/incidents", OFFICER),
    ("GET", "/v1/systems/{system_id}/incidents", DECISION_READERS),
    (
        "POST",
        "/v1/systems/{system_id}/incidents/{incident_id}/report",
        OFFICER,
    ),
    ("GET", "/v1/systems", READERS),
    ("POST", "/v1/systems", OFFICER),
    ("GET", "/v1/systems/{system_id}", READERS),
    ("PUT", "/v1/systems/{system_id}", OFFICER),
    ("POST", "/v1/systems/{system_id}/register-reviews", OFFICER),
    ("GET", "/v1/systems/{system_id}/models", READERS),
    ("POST", "/v1/systems/{system_id}/models", MODEL_WRITERS),
    ("GET", "/v1/systems/{system_id}/models/{version}", READERS),
    (
        "POST",
        "/v1/systems/{system_id}/models/{version}/reviews",
        OFFICER,
    ),
    (
        "GET",
        "/v1/systems/{system_id}/models/{version}/tests",
        READERS,
    ),
    (
        "POST",
        "/v1/systems/{system_id}/models/{version}/tests",
        MODEL_WRITERS,
    ),
    (
        "POST",
        "/v1/systems/{system_id}/models/{version}/deployments",
        PIPELINE,
    ),
    ("POST", "/v1/systems/{system_id}/decisions", PIPELINE),
    ("POST", "/v1/systems/{system_id}/decisions/batch", PIPELINE),
    ("GET", "/v1/systems/{system_id}/decisions", DECISION_READERS),
    (
        "GET",
        "/v1/systems/{system_id}/decisions/{decision_id}",
        DECISION_READERS,
    ),
    (
        "GET",
        "/v1/systems/{system_id}/decisions/{decision_id}/audit",
        DECISION_READERS,
    ),
    (
        "GET",
        "/v1/subjects/{subject_ref}/decisions",
        DECISION_READERS,
    ),
    ("POST", "/v1/subjects/{subject_ref}/erasure", OFFICER),
    (
        "GET",
        "/v1/systems/{system_id}/compliance",
        DECISION_READERS,
    ),
    ("GET", "/v1/compliance", DECISION_READERS),
    ("GET", "/v1/tokens", ADMIN),
    ("POST", "/v1/tokens", ADMIN),
    ("DELETE", "/v1/tokens/{name}", ADMIN),
];

/// Every operation of the served API description, as (METHOD, path template).
fn spec_operations() -> Vec<(String, String)> {
    let spec: Value = serde_json::from_str(&veritrail::api::openapi().to_json().unwrap()).unwrap();
    let mut out = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in ["get", "put", "post", "delete", "patch"] {
            if item.get(method).is_some() {
                out.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

/// A concrete path for a template (the parameters need not name anything that exists:
/// the role is decided before anything is looked up).
fn concrete(template: &str) -> String {
    template
        .replace("{system_id}", "credit")
        .replace("{version}", "1.0.0")
        .replace("{decision_id}", "d-1")
        .replace("{subject_ref}", "subj-1")
        .replace("{size}", "1")
        .replace("{index}", "0")
        .replace("{name}", "nobody")
        .replace("{incident_id}", "7")
        .replace("{contest_id}", "7")
        .replace("{subscription_id}", "7")
}

#[test]
fn every_route_is_in_the_authorisation_matrix() {
    let ops = spec_operations();
    for (m, p) in &ops {
        assert!(
            MATRIX.iter().any(|(mm, pp, _)| mm == m && pp == p),
            "{m} {p} is a route with no row in the authorisation matrix: add who may call it"
        );
    }
    for (m, p, _) in MATRIX {
        assert!(
            ops.iter().any(|(mm, pp)| mm == m && pp == p),
            "the matrix names {m} {p}, which the API does not have"
        );
    }
}

#[actix_web::test]
async fn every_route_answers_each_caller_as_the_matrix_says() {
    let app = common::spawn().await;
    let mut callers: Vec<(&str, Option<String>)> = vec![("none", None)];
    for role in ["admin", "pipeline", "officer", "auditor", "reviewer"] {
        let token = if role == "admin" {
            app.admin.clone()
        } else {
            app.token(&format!("matrix-{role}"), role).await
        };
        callers.push((role, Some(token)));
    }
    let revoked = app.token("matrix-revoked", "officer").await;
    assert_eq!(
        app.delete("/v1/tokens/matrix-revoked", &app.admin.clone())
            .await
            .status,
        200
    );
    callers.push(("revoked", Some(revoked)));

    for (method, template, who) in MATRIX {
        let path = concrete(template);
        for (caller, token) in &callers {
            // A body that does not parse: a caller who may not call the route is refused
            // before it is read (so 401/403, never 400).
            let mut req = TestRequest::default()
                .method(method.parse().unwrap())
                .uri(&path);
            if *method == "POST" || *method == "PUT" {
                req = req
                    .insert_header(("content-type", "application/json"))
                    .set_payload("{\"not json");
            }
            if let Some(t) = token {
                req = req.insert_header(("Authorization", format!("Bearer {t}")));
            }
            let status = app.status(req).await;
            let expect: &[u16] = match who {
                Who::Public => &[],
                Who::Roles(_) if *caller == "none" || *caller == "revoked" => &[401],
                Who::Roles(roles) if !roles.contains(caller) => &[403],
                Who::Roles(_) => &[],
            };
            if expect.is_empty() {
                assert!(
                    status != 401 && status != 403,
                    "{method} {path} as {caller}: {status}, but the matrix lets {caller} call it"
                );
            } else {
                assert!(
                    expect.contains(&status),
                    "{method} {path} as {caller}: {status}, the matrix says {expect:?}"
                );
            }
        }
    }
}

#[actix_web::test]
async fn a_caller_without_the_role_is_refused_before_the_body_is_read() {
    let app = common::spawn().await;
    let auditor = app.token("big-body-auditor", "auditor").await;
    // Larger than the body limit: read, it would be refused as too large (413).
    let limit = veritrail::startup::OpenOpts::default().body_limit;
    let body = vec![b' '; limit + 1024];
    let r = app
        .call(
            TestRequest::post()
                .uri("/v1/systems/credit/decisions")
                .insert_header(("Authorization", format!("Bearer {auditor}")))
                .insert_header(("content-type", "application/json"))
                .set_payload(body),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
}
