//! The service through HTTP (actix's test service over a real sled store).

mod common;

use actix_web::test::TestRequest;
use base64::Engine as _;
use serde_json::json;
use veritrail::log::merkle::{self, verify_consistency, verify_inclusion};
use veritrail::log::note::{Checkpoint, NoteVerifier};

fn problem_type(r: &common::Resp) -> String {
    assert_eq!(r.content_type(), "application/problem+json", "{}", r.text());
    r.json()["type"].as_str().unwrap().to_owned()
}

#[actix_web::test]
async fn public_checkpoint_verifies_with_the_published_key() {
    let app = common::spawn().await;
    let key = app.get("/v1/log/key", None).await.json();
    assert_eq!(key["algorithm"], "ed25519");
    let v = NoteVerifier::parse(key["verifier_key"].as_str().unwrap()).unwrap();
    assert_eq!(
        base64::engine::general_purpose::STANDARD.encode(v.public_key().as_bytes()),
        key["public_key"].as_str().unwrap()
    );
    let r = app.get("/v1/log/checkpoint", None).await;
    assert!(r.content_type().starts_with("text/plain"));
    let cp = Checkpoint::open(&r.text(), &v).unwrap();
    assert_eq!(cp.origin, key["origin"].as_str().unwrap());
    assert_eq!(cp.size, 1, "the admin token's creation is the first entry");
}

#[actix_web::test]
async fn tokens_roles_and_revocation() {
    let app = common::spawn().await;
    let admin = app.admin.clone();
    // 401 without a token, with a bad one, with a malformed header.
    for r in [
        app.get("/v1/tokens", None).await,
        app.get("/v1/tokens", Some("vt_nope")).await,
        app.call(
            TestRequest::get()
                .uri("/v1/tokens")
                .insert_header(("Authorization", "Basic x")),
        )
        .await,
    ] {
        assert_eq!(r.status, 401);
        assert_eq!(problem_type(&r), "urn:veritrail:problem:unauthenticated");
        assert_eq!(r.headers.get("www-authenticate").unwrap(), "Bearer");
    }
    let created = app
        .post(
            "/v1/tokens",
            &admin,
            json!({"name": "deploy-bot", "role": "pipeline"}),
        )
        .await;
    assert_eq!(created.status, 201);
    let c = created.json();
    let secret = c["token"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 3 + 43, "256-bit secret, base64url");
    let v = app.state.ledger.verifier().clone();
    common::check_receipt(&c["receipt"], &v);
    // The entry carries the name, role and hash, never the secret; the actor is the admin.
    let idx = c["receipt"]["index"].as_u64().unwrap();
    let e = app
        .get(&format!("/v1/log/entries/{idx}"), Some(&secret))
        .await
        .json();
    assert_eq!(e["entry"]["kind"], "token.created");
    assert_eq!(e["entry"]["actor"], "admin");
    assert_eq!(e["entry"]["body"]["name"], "deploy-bot");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(e["raw"].as_str().unwrap())
        .unwrap();
    assert!(!raw.windows(secret.len()).any(|w| w == secret.as_bytes()));
    // 403 for the wrong role.
    let r = app.get("/v1/tokens", Some(&secret)).await;
    assert_eq!(r.status, 403);
    assert_eq!(problem_type(&r), "urn:veritrail:problem:forbidden");
    // Names are never reused.
    let r = app
        .post(
            "/v1/tokens",
            &admin,
            json!({"name": "deploy-bot", "role": "auditor"}),
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["field"], "name");
    let r = app
        .post(
            "/v1/tokens",
            &admin,
            json!({"name": "Bad Name", "role": "auditor"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["field"], "name");
    // Revocation works at once.
    assert_eq!(
        app.get("/v1/log/entries/0", Some(&secret)).await.status,
        200
    );
    let r = app.delete("/v1/tokens/deploy-bot", &admin).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        app.get("/v1/log/entries/0", Some(&secret)).await.status,
        401
    );
    assert_eq!(
        app.delete("/v1/tokens/deploy-bot", &admin).await.status,
        409
    );
    assert_eq!(app.delete("/v1/tokens/nobody", &admin).await.status, 404);
    let list = app.get("/v1/tokens", Some(&admin)).await.json();
    let bot = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "deploy-bot")
        .unwrap();
    assert_eq!(bot["revoked"], true);
    assert!(
        list.to_string().find("vt_").is_none(),
        "no secrets in the listing"
    );
}

#[actix_web::test]
async fn the_last_admin_token_cannot_be_revoked() {
    let app = common::spawn().await;
    let admin = app.admin.clone();
    let r = app.delete("/v1/tokens/admin", &admin).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(problem_type(&r), "urn:veritrail:problem:last-admin");
    // With a second admin, the first may go; then the second is the last.
    let second = app.token("admin-2", "admin").await;
    assert_eq!(app.delete("/v1/tokens/admin", &second).await.status, 200);
    let r = app.delete("/v1/tokens/admin-2", &second).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(app.get("/v1/tokens", Some(&second)).await.status, 200);
}

#[actix_web::test]
async fn the_services_own_actor_names_are_reserved() {
    let app = common::spawn().await;
    let admin = app.admin.clone();
    for name in ["veritrail", "veritrail-retention", "veritrail-witness"] {
        let r = app
            .post(
                "/v1/tokens",
                &admin,
                json!({"name": name, "role": "officer"}),
            )
            .await;
        assert_eq!(r.status, 400, "{name}: {}", r.text());
        assert_eq!(r.json()["field"], "name");
    }
}

#[actix_web::test]
async fn bad_requests_get_problems_naming_the_field() {
    let app = common::spawn_with(veritrail::startup::OpenOpts {
        body_limit: 1024,
        ..Default::default()
    })
    .await;
    let admin = app.admin.clone();
    let auth = ("Authorization", format!("Bearer {admin}"));
    // Wrong content type.
    let r = app
        .call(
            TestRequest::post()
                .uri("/v1/tokens")
                .insert_header(auth.clone())
                .insert_header(("content-type", "text/plain"))
                .set_payload("x"),
        )
        .await;
    assert_eq!(r.status, 415);
    assert_eq!(
        problem_type(&r),
        "urn:veritrail:problem:unsupported-media-type"
    );
    // Too large.
    let big = json!({"name": "x".repeat(2000), "role": "auditor"});
    let r = app.post("/v1/tokens", &admin, big).await;
    assert_eq!(r.status, 413);
    // Malformed JSON.
    let r = app
        .call(
            TestRequest::post()
                .uri("/v1/tokens")
                .insert_header(auth.clone())
                .insert_header(("content-type", "application/json"))
                .set_payload("{\"name\": "),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(problem_type(&r), "urn:veritrail:problem:invalid-body");
    // Unknown field, wrong type, missing field.
    let r = app
        .post(
            "/v1/tokens",
            &admin,
            json!({"name": "a", "role": "auditor", "colour": 1}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["detail"].as_str().unwrap().contains("colour"),
        "{}",
        r.text()
    );
    let r = app
        .post("/v1/tokens", &admin, json!({"name": 5, "role": "auditor"}))
        .await;
    assert_eq!((r.status, r.json()["field"].as_str()), (400, Some("name")));
    let r = app
        .post("/v1/tokens", &admin, json!({"role": "auditor"}))
        .await;
    assert_eq!(r.status, 400);
    assert!(r.json()["detail"].as_str().unwrap().contains("name"));
    // Query and path parameters.
    let r = app
        .get("/v1/log/proofs/inclusion?index=abc", Some(&admin))
        .await;
    assert_eq!((r.status, r.json()["field"].as_str()), (400, Some("index")));
    let r = app.get("/v1/log/proofs/inclusion", Some(&admin)).await;
    assert_eq!(r.status, 400);
    let r = app.get("/v1/log/entries/minus-one", Some(&admin)).await;
    assert_eq!(
        (r.status, problem_type(&r).as_str()),
        (400, "urn:veritrail:problem:invalid-path")
    );
    let r = app.get("/v1/log/entries?limit=0", Some(&admin)).await;
    assert_eq!((r.status, r.json()["field"].as_str()), (400, Some("limit")));
    // Unknown route.
    let r = app.get("/v2/nothing", None).await;
    assert_eq!(
        (r.status, problem_type(&r).as_str()),
        (404, "urn:veritrail:problem:not-found")
    );
    // Every response carries a request id; a sane caller id is echoed.
    let r = app
        .call(
            TestRequest::get()
                .uri("/healthz")
                .insert_header(("x-request-id", "abc-123")),
        )
        .await;
    assert_eq!(r.headers.get("x-request-id").unwrap(), "abc-123");
    assert!(app
        .get("/v2/nothing", None)
        .await
        .headers
        .get("x-request-id")
        .is_some());
}

#[actix_web::test]
async fn entries_and_proofs_verify_against_checkpoints() {
    let app = common::spawn().await;
    let admin = app.admin.clone();
    let v = app.state.ledger.verifier().clone();
    let mut receipts = Vec::new();
    for i in 0..20 {
        let r = app
            .post(
                "/v1/tokens",
                &admin,
                json!({"name": format!("t{i}"), "role": "auditor"}),
            )
            .await;
        receipts.push(r.json()["receipt"].clone());
    }
    for r in &receipts {
        common::check_receipt(r, &v);
    }
    let latest = Checkpoint::open(&app.get("/v1/log/checkpoint", None).await.text(), &v).unwrap();
    assert_eq!(latest.size, 21);
    // Entry bytes: JSON view and raw CBOR agree, and hash to the proven leaf.
    let j = app.get("/v1/log/entries/5", Some(&admin)).await.json();
    let cbor = app
        .call(
            TestRequest::get()
                .uri("/v1/log/entries/5")
                .insert_header(("Authorization", format!("Bearer {admin}")))
                .insert_header(("Accept", "application/cbor")),
        )
        .await;
    assert_eq!(cbor.content_type(), "application/cbor");
    assert_eq!(
        base64::engine::general_purpose::STANDARD.encode(&cbor.body),
        j["raw"].as_str().unwrap()
    );
    assert_eq!(
        hex::encode(merkle::leaf_hash(&cbor.body)),
        j["leaf_hash"].as_str().unwrap()
    );
    let p = app
        .get("/v1/log/proofs/inclusion?index=5", Some(&admin))
        .await
        .json();
    let hashes = common::hashes(&p["hashes"]);
    let leaf: [u8; 32] = merkle::leaf_hash(&cbor.body);
    verify_inclusion(
        5,
        p["tree_size"].as_u64().unwrap(),
        &leaf,
        &hashes,
        &latest.root,
    )
    .unwrap();
    // Every stored checkpoint is consistent with the latest, via the API.
    for size in 1..=21u64 {
        let r = app
            .get(&format!("/v1/log/checkpoints/{size}"), Some(&admin))
            .await;
        assert_eq!(r.status, 200, "checkpoint {size}");
        let old = Checkpoint::open(&r.text(), &v).unwrap();
        let c = app
            .get(
                &format!("/v1/log/proofs/consistency?from={size}"),
                Some(&admin),
            )
            .await
            .json();
        let hashes = common::hashes(&c["hashes"]);
        verify_consistency(size, 21, &old.root, &latest.root, &hashes).unwrap();
    }
    assert_eq!(
        app.get("/v1/log/checkpoints/99", Some(&admin)).await.status,
        404
    );
    assert_eq!(
        app.get(
            "/v1/log/proofs/inclusion?index=5&tree_size=99",
            Some(&admin)
        )
        .await
        .status,
        404
    );
    assert_eq!(
        app.get("/v1/log/proofs/inclusion?index=30", Some(&admin))
            .await
            .status,
        400
    );
    assert_eq!(
        app.get("/v1/log/proofs/consistency?from=30", Some(&admin))
            .await
            .status,
        400
    );
    assert_eq!(
        app.get("/v1/log/entries/21", Some(&admin)).await.status,
        404
    );
    // Pages.
    let page = app
        .get("/v1/log/entries?start=0&limit=15", Some(&admin))
        .await
        .json();
    assert_eq!(page["entries"].as_array().unwrap().len(), 15);
    assert_eq!(page["next"], 15);
    let page = app
        .get("/v1/log/entries?start=15&limit=15", Some(&admin))
        .await
        .json();
    assert_eq!(page["entries"].as_array().unwrap().len(), 6);
    assert!(page["next"].is_null());
}

#[actix_web::test]
async fn operations_routes() {
    let app = common::spawn().await;
    assert_eq!(app.get("/healthz", None).await.json()["status"], "ok");
    assert_eq!(app.get("/readyz", None).await.json()["status"], "ready");
    let m = app.get("/metrics", None).await.text();
    for name in [
        "veritrail_http_requests_total",
        "veritrail_ledger_appends_total",
        "veritrail_ledger_batch_entries",
        "veritrail_log_size 1",
        "veritrail_checkpoint_age_seconds",
    ] {
        assert!(m.contains(name), "metrics lack {name}:\n{m}");
    }
    let spec = app.get("/openapi.json", None).await.json();
    assert_eq!(spec["openapi"], "3.1.0");
    let docs = app.get("/docs", None).await;
    assert!(docs.content_type().starts_with("text/html"));
    assert!(docs.text().contains("openapi"));
}

/// The committed OpenAPI description is what the code serves. `UPDATE_OPENAPI=1` rewrites it.
#[test]
fn openapi_file_is_current() {
    let spec = veritrail::api::openapi().to_pretty_json().unwrap() + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &spec).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == spec, "openapi/openapi.json is stale: run `UPDATE_OPENAPI=1 cargo test --test api openapi_file_is_current`");
}

#[test]
fn every_route_is_in_the_spec() {
    let spec: serde_json::Value =
        serde_json::from_str(&veritrail::api::openapi().to_json().unwrap()).unwrap();
    let paths = spec["paths"].as_object().unwrap();
    for p in [
        "/v1/log/checkpoint",
        "/v1/log/key",
        "/v1/log/checkpoints/{size}",
        "/v1/log/entries/{index}",
        "/v1/log/entries",
        "/v1/log/proofs/inclusion",
        "/v1/log/proofs/consistency",
        "/v1/tokens",
        "/v1/tokens/{name}",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/docs",
    ] {
        assert!(paths.contains_key(p), "{p} missing from the spec");
    }
}
