//! Shared test harness: a real service (real key, real signatures) on the backend of
//! this run (sled on a temp dir, or a fresh PostgreSQL database: see `backend`),
//! driven through actix's test service.
#![allow(dead_code)]

pub mod backend;
pub mod console;
pub mod decision_evidence;
pub mod ground_truth;
pub mod receiver;
pub mod witness;
pub use backend::Backend;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::test;
use serde_json::{json, Value};
use veritrail::startup::{self, OpenOpts};

pub struct TestApp<S> {
    pub svc: S,
    pub admin: String,
    pub state: veritrail::api::State,
    pub backend: Backend,
}

pub async fn spawn() -> TestApp<
    impl Service<
        actix_http::Request,
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
    >,
> {
    spawn_with(OpenOpts::default()).await
}

pub async fn spawn_with(
    opts: OpenOpts,
) -> TestApp<
    impl Service<
        actix_http::Request,
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
    >,
> {
    let backend = Backend::new();
    let opts = OpenOpts {
        database_url: backend.url.clone(),
        database_connections: 2,
        ..opts
    };
    let svc = startup::open(backend.path(), &opts).await.unwrap();
    let admin = svc.admin_token.clone().unwrap();
    let state = svc.state.clone();
    let app = test::init_service(veritrail::api::app(svc.state.clone())).await;
    // The writer thread lives as long as the ledger handles; tests end with the process.
    std::mem::forget(svc.writer);
    TestApp {
        svc: app,
        admin,
        state,
        backend,
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: actix_web::http::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }
    pub fn content_type(&self) -> String {
        self.headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
}

/// A problem answer's code (its `type` without `urn:veritrail:problem:`).
pub fn ptype(r: &Resp) -> String {
    r.json()["type"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches("urn:veritrail:problem:")
        .to_owned()
}

impl<S, B> TestApp<S>
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    pub async fn call(&self, req: test::TestRequest) -> Resp {
        let res = test::call_service(&self.svc, req.to_request()).await;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = test::read_body(res).await.to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    /// The status of an answer, its body unread (for answers that never end, such as
    /// the event feed).
    pub async fn status(&self, req: test::TestRequest) -> u16 {
        test::call_service(&self.svc, req.to_request())
            .await
            .status()
            .as_u16()
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Resp {
        let mut r = test::TestRequest::get().uri(path);
        if let Some(t) = token {
            r = r.insert_header(("Authorization", format!("Bearer {t}")));
        }
        self.call(r).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(
            test::TestRequest::post()
                .uri(path)
                .insert_header(("Authorization", format!("Bearer {token}")))
                .set_json(body),
        )
        .await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(
            test::TestRequest::put()
                .uri(path)
                .insert_header(("Authorization", format!("Bearer {token}")))
                .set_json(body),
        )
        .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Resp {
        self.call(
            test::TestRequest::delete()
                .uri(path)
                .insert_header(("Authorization", format!("Bearer {token}"))),
        )
        .await
    }

    /// Create a token with `role` and return its secret.
    pub async fn token(&self, name: &str, role: &str) -> String {
        let r = self
            .post(
                "/v1/tokens",
                &self.admin.clone(),
                serde_json::json!({"name": name, "role": role}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["token"].as_str().unwrap().to_owned()
    }
}

/// Check a receipt against the log's public key alone.
pub fn check_receipt(receipt: &Value, verifier: &veritrail::log::note::NoteVerifier) {
    use veritrail::log::merkle::verify_inclusion;
    use veritrail::log::note::Checkpoint;
    let cp = Checkpoint::open(receipt["checkpoint"].as_str().unwrap(), verifier).unwrap();
    assert_eq!(cp.size, receipt["tree_size"].as_u64().unwrap());
    let leaf: [u8; 32] = hex::decode(receipt["leaf_hash"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let proof = hashes(&receipt["inclusion_proof"]);
    verify_inclusion(
        receipt["index"].as_u64().unwrap(),
        cp.size,
        &leaf,
        &proof,
        &cp.root,
    )
    .unwrap();
}

// Request bodies shared by the register, audit and benchmark tests.

pub fn system(id: &str) -> Value {
    json!({
        "id": id,
        "name": "Credit scoring",
        "purpose": "Scores consumer credit applications",
        "provider": "Acme Bank ML",
        "deployer": "Acme Bank",
        "owner": {"name": "Dana Officer", "email": "dana@acme.example"},
        "risk_class": "high",
        "regulations": ["eu-ai-act", "gdpr-art22"],
        "policy": {"required_tests": ["external"], "max_bias_test_age_days": 90}
    })
}

pub fn version(v: &str, parent: Option<&str>) -> Value {
    json!({
        "version": v,
        "artifact_sha256": "a".repeat(64),
        "training_data": {"ref": "s3://data/credit-2026q3", "sha256": "b".repeat(64)},
        "changelog": "retrained",
        "parent_version": parent,
        "substantial_modification": false
    })
}

pub fn decision(id: &str, v: &str, subject: &str) -> Value {
    json!({
        "decision_id": id,
        "model_version": v,
        "occurred_at": "2026-11-25T10:00:00Z",
        "subject_ref": subject,
        "input_sha256": "c".repeat(64),
        "inputs": {"income": 52000, "age_band": "30-39"},
        "output": {"approved": false, "score": 0.41},
        "confidence": 0.87,
        "reasons": ["debt_ratio_high"],
        "human_review": {"reviewer": "analyst-7", "action": "accepted", "review_ms": 45000}
    })
}

pub fn external_test(passed: bool) -> Value {
    json!({"evaluator": "external", "result": {
        "tool": "fairlearn", "tool_version": "0.12.0", "kind": "bias",
        "metrics": {"demographic_parity_difference": 0.03}, "passed": passed,
        "report_sha256": "d".repeat(64)}})
}

/// A JSON array of lowercase hex hashes, as proofs carry them.
pub fn hashes(v: &Value) -> Vec<[u8; 32]> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| {
            hex::decode(h.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect()
}

pub const BIN: &str = env!("CARGO_BIN_EXE_veritrail");

/// Start the real `veritrail serve` on a free port against `backend` (extra
/// environment in `env`); return the child and its base URL.
pub fn start_server(backend: &Backend, env: &[(&str, &str)]) -> (std::process::Child, String) {
    let (child, url, _) = start_server_logging(backend, env);
    (child, url)
}

/// The lines a real server wrote to stderr (its log), as they come.
pub type LogLines = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// [`start_server`], keeping every line the server logs.
pub fn start_server_logging(
    backend: &Backend,
    env: &[(&str, &str)],
) -> (std::process::Child, String, LogLines) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(BIN)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .args(backend.args())
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start veritrail");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut before = Vec::new();
    let url = loop {
        assert!(std::time::Instant::now() < deadline, "server did not start");
        let Some(line) = lines.next() else {
            panic!("server exited before listening:\n{}", before.join("\n"));
        };
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("veritrail listening on ") {
            break rest.trim().to_owned();
        }
        before.push(line);
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    let log: LogLines = std::sync::Arc::new(std::sync::Mutex::new(before));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    (child, url, log)
}

/// Tokens, a system and a deployed version to log decisions against: (pipeline, auditor).
pub fn setup_system_http(url: &str, admin: &str) -> (String, String) {
    let post = |path: &str, token: &str, body: Value| post_json(url, token, path, body);
    let token = |name: &str, role: &str| {
        post("/v1/tokens", admin, json!({"name": name, "role": role}))["token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (pipeline, officer, officer2, auditor) = (
        token("crash-pipeline", "pipeline"),
        token("crash-officer", "officer"),
        token("crash-officer2", "officer"),
        token("crash-auditor", "auditor"),
    );
    let sys = json!({"id": "crash", "name": "Crash", "purpose": "crash test", "owner": {"name": "O", "email": "o@example.com"}, "risk_class": "limited"});
    post("/v1/systems", &officer, sys);
    post(
        "/v1/systems/crash/models",
        &pipeline,
        json!({"version": "1", "artifact_sha256": "a".repeat(64), "training_data": {"ref": "r", "sha256": "b".repeat(64)}}),
    );
    post(
        "/v1/systems/crash/models/1/reviews",
        &officer2,
        json!({"outcome": "approved", "rationale": "ok"}),
    );
    post(
        "/v1/systems/crash/models/1/deployments",
        &pipeline,
        json!({}),
    );
    (pipeline, auditor)
}

/// POST JSON to a real server; the call must succeed. The answer's JSON.
pub fn post_json(url: &str, token: &str, path: &str, body: Value) -> Value {
    let r = reqwest::blocking::Client::new()
        .post(format!("{url}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().unwrap()
}

/// Log decision `id` (version 1, subject `s-1`) of the fixture system `crash` on a real
/// server: its entry's index.
pub fn decide_http(url: &str, pipeline: &str, id: &str) -> u64 {
    post_json(
        url,
        pipeline,
        "/v1/systems/crash/decisions",
        decision(id, "1", "s-1"),
    )["receipt"]["index"]
        .as_u64()
        .unwrap()
}

/// A real `veritrail serve` with the fixture system (see [`setup_system_http`]), killed
/// when dropped (a failing test leaves no server behind).
pub struct RealLog {
    pub backend: Backend,
    pub child: std::process::Child,
    pub url: String,
    pub pipeline: String,
    pub auditor: String,
}

impl RealLog {
    pub fn start(env: &[(&str, &str)]) -> Self {
        let backend = Backend::new();
        let (child, url) = start_server(&backend, env);
        let admin = std::fs::read_to_string(backend.path().join("admin-token"))
            .unwrap()
            .trim()
            .to_owned();
        let (pipeline, auditor) = setup_system_http(&url, &admin);
        Self {
            backend,
            child,
            url,
            pipeline,
            auditor,
        }
    }
}

impl Drop for RealLog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stop a real server with SIGTERM; it must exit cleanly.
pub fn stop_server(child: &mut std::process::Child) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success(), "graceful stop failed");
}

// Fixtures shared by the register and audit tests.

/// The service `spawn()` builds, nameable in helpers' bounds:
/// `fn f<S: AppService<B>, B: MessageBody>(app: &TestApp<S>)`.
pub trait AppService<B>:
    Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>
{
}

impl<T, B> AppService<B> for T where
    T: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>
{
}

/// The four tokens most tests act with.
pub struct Crew {
    /// "deploy-bot", role pipeline.
    pub pipeline: String,
    /// "officer-ana", role officer.
    pub officer: String,
    /// "officer-ben", role officer: the second pair of eyes.
    pub officer2: String,
    /// "auditor-eve", role auditor.
    pub auditor: String,
}

/// Create the usual crew of tokens on `app`.
pub async fn crew<S, B>(app: &TestApp<S>) -> Crew
where
    S: AppService<B>,
    B: MessageBody,
{
    Crew {
        pipeline: app.token("deploy-bot", "pipeline").await,
        officer: app.token("officer-ana", "officer").await,
        officer2: app.token("officer-ben", "officer").await,
        auditor: app.token("auditor-eve", "auditor").await,
    }
}

/// Register `system(id)` as `officer`; it must succeed.
pub async fn register_system<S, B>(app: &TestApp<S>, officer: &str, id: &str)
where
    S: AppService<B>,
    B: MessageBody,
{
    let r = app.post("/v1/systems", officer, system(id)).await;
    assert_eq!(r.status, 201, "{}", r.text());
}

/// Take version `v` (with `parent`) of system `id` through the gate: the pipeline
/// registers it and records a passing external test, `reviewer` approves it citing
/// that test, the pipeline deploys it. Every step must succeed. The deployment's JSON.
pub async fn deploy_version<S, B>(
    app: &TestApp<S>,
    pipeline: &str,
    reviewer: &str,
    id: &str,
    v: &str,
    parent: Option<&str>,
) -> Value
where
    S: AppService<B>,
    B: MessageBody,
{
    let r = app
        .post(
            &format!("/v1/systems/{id}/models"),
            pipeline,
            version(v, parent),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = app
        .post(
            &format!("/v1/systems/{id}/models/{v}/tests"),
            pipeline,
            external_test(true),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let t = r.json()["id"].clone();
    let r = app
        .post(
            &format!("/v1/systems/{id}/models/{v}/reviews"),
            reviewer,
            json!({"outcome": "approved", "rationale": "ok", "evidence": [t]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = app
        .post(
            &format!("/v1/systems/{id}/models/{v}/deployments"),
            pipeline,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

/// Register `system(id)` (by `officer`) with version `v` deployed through the gate
/// (pipeline registers and tests it, `officer` approves it).
pub async fn deployed_system<S, B>(app: &TestApp<S>, crew: &Crew, id: &str, v: &str)
where
    S: AppService<B>,
    B: MessageBody,
{
    register_system(app, &crew.officer, id).await;
    deploy_version(app, &crew.pipeline, &crew.officer, id, v, None).await;
}

/// `reindex` rebuilds every projection row of `store` byte for byte: the rows as they
/// stood before it (for the caller to check which families they hold).
pub fn reindex_reproduces(store: &dyn veritrail::storage::Store) -> veritrail::storage::Rows {
    let live = veritrail::projection::dump(store).unwrap();
    veritrail::reindex::reindex(store).unwrap();
    let rebuilt = veritrail::projection::dump(store).unwrap();
    assert_eq!(
        live.len(),
        rebuilt.len(),
        "reindex must reproduce as many rows"
    );
    for (a, b) in live.iter().zip(&rebuilt) {
        assert!(
            a == b,
            "reindex differs at key {:?}",
            String::from_utf8_lossy(&a.0)
        );
    }
    live
}
