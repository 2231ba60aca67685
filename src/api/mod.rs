//! The HTTP surface. Only this module knows about HTTP and JSON: it parses and checks
//! requests at the edge, asks the domain for a command or a read, and renders receipts
//! and RFC 9457 problems.

pub mod auth;
pub mod batch;
pub mod blind;
pub mod body;
pub mod boundaries;
pub mod compliance;
pub mod console;
pub mod decisions;
pub mod events;
pub mod incidents;
pub mod log;
pub mod models;
mod observe;
pub mod ops;
pub mod outcomes;
pub mod reference;
pub mod subscriptions;
pub mod systems;
pub mod tiles;
pub mod tokens;

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::error::{AppError, ErrorCode};
use crate::log::{Ledger, Receipt};
use crate::telemetry::Metrics;

/// What every handler can reach.
pub struct AppState {
    pub ledger: Ledger<AppError>,
    pub metrics: Arc<Metrics>,
    /// Largest accepted request body, bytes.
    pub body_limit: usize,
    /// How far in the future a caller's time may lie, µs.
    pub max_clock_skew_us: u64,
    /// The console's sessions on this node.
    pub sessions: console::session::Sessions,
    /// Where webhook subscriptions may go: the allow-list and the address rule.
    pub webhook_targets: crate::events::targets::Targets,
    /// Set when the service begins to stop: open event feeds end.
    pub stopping: Arc<std::sync::atomic::AtomicBool>,
    /// The witness policy: the checkpoint served is the newest that meets its quorum.
    pub witness_policy: Option<Arc<crate::witness::policy::Policy>>,
    /// Entry bundles without a token.
    pub public_entries: bool,
    /// Full entry bundles, assembled once.
    pub tiles: tiles::BundleCache,
}

impl AppState {
    /// Whether the service is stopping (long-lived answers end).
    pub fn stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The latest time a caller may send now (unix µs): the clock plus the allowed skew.
    pub fn latest_caller_time(&self) -> u64 {
        crate::log::sequencer::now_micros().saturating_add(self.max_clock_skew_us)
    }
}

pub type State = actix_web::web::Data<AppState>;

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code.spec().status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        if self.code == ErrorCode::Internal {
            tracing::error!(detail = %self.detail, "internal error");
        }
        let mut res = HttpResponse::build(self.status_code());
        res.content_type("application/problem+json");
        if self.code == ErrorCode::Unauthenticated {
            res.insert_header(("WWW-Authenticate", "Bearer"));
        }
        res.json(self.problem())
    }
}

/// A write's proof of record: the entry's index and leaf hash, the signed checkpoint
/// it was sequenced under, and the inclusion proof against that checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ReceiptView {
    pub index: u64,
    /// SHA-256(0x00 ‖ entry bytes), lowercase hex.
    pub leaf_hash: String,
    /// The C2SP signed-note checkpoint text.
    pub checkpoint: String,
    /// The tree size of `checkpoint`.
    pub tree_size: u64,
    /// RFC 9162 inclusion proof against `checkpoint`, lowercase hex.
    pub inclusion_proof: Vec<String>,
}

/// Lowercase hex. `hex::encode` collects a `String` char by char, which showed as about
/// a quarter of the HTTP workers' time answering batches (a receipt is ~20 hashes);
/// this writes the bytes through `hex::encode_to_slice`.
pub(crate) fn hex_lower(bytes: impl AsRef<[u8]>) -> String {
    let bytes = bytes.as_ref();
    let mut out = vec![0u8; bytes.len() * 2];
    hex::encode_to_slice(bytes, &mut out).expect("the output is twice the input");
    String::from_utf8(out).expect("hex digits are ASCII")
}

impl From<Receipt> for ReceiptView {
    fn from(r: Receipt) -> Self {
        Self {
            index: r.index,
            leaf_hash: hex_lower(r.leaf_hash),
            checkpoint: r.checkpoint,
            tree_size: r.tree_size,
            inclusion_proof: r.inclusion_proof.iter().map(hex_lower).collect(),
        }
    }
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API token from POST /v1/tokens"))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Veritrail",
        version = "1",
        description = "Compliance register and immutable, verifiable decision ledger for production AI systems. Errors are RFC 9457 problem documents (application/problem+json).",
        license(name = "Apache-2.0")
    ),
    modifiers(&Security),
    components(schemas(crate::error::Problem)),
    tags(
        (name = "log", description = "The verifiable log: checkpoints, entries, proofs"),
        (name = "register", description = "The compliance register: AI systems, revisions, periodic reviews"),
        (name = "models", description = "Model versions, compliance reviews (four eyes) and deployments (the review gate)"),
        (name = "tests", description = "Bias and drift test records and the evaluators"),
        (name = "decisions", description = "Decision logging and reading"),
        (name = "compliance", description = "Compliance status and findings"),
        (name = "tokens", description = "API tokens and roles (admin)"),
        (name = "incidents", description = "Serious incidents and their reporting deadlines (AI Act Art. 73)"),
        (name = "outcomes", description = "Ground truth (outcomes, contests) and the failure-mode report (FM-01 to FM-07)"),
        (name = "blind review", description = "Blind review (FM-03): open cases with the AI's recommendation withheld, and the reviewer's independent judgments (reviewer role only)"),
        (name = "boundaries", description = "Integration boundaries (FM-05): boundary events and the circuit pipelines route by"),
        (name = "events", description = "Log entries as CloudEvents: the live feed (Server-Sent Events) and webhook subscriptions (Standard Webhooks signatures)"),
        (name = "operations", description = "Health, readiness, metrics, the API description")
    )
)]
pub struct ApiDoc;

/// Every error of every route is an RFC 9457 problem: say so once, as each operation's
/// `default` response, beside the statuses each documents. Runs on the merged spec.
fn add_problem_defaults(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let problem = ResponseBuilder::new()
        .description(
            "An RFC 9457 problem document: the error, its stable type and the offending field",
        )
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build();
    for item in openapi.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            op.responses
                .responses
                .entry("default".into())
                .or_insert_with(|| RefOr::T(problem.clone()));
        }
    }
}

/// Register every route. Only `.service(...)` calls are collected into the spec.
pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    log::configure(cfg);
    systems::configure(cfg);
    models::configure(cfg);
    decisions::configure(cfg);
    compliance::configure(cfg);
    tokens::configure(cfg);
    ops::configure(cfg);
    events::configure(cfg);
    incidents::configure(cfg);
    outcomes::configure(cfg);
    blind::configure(cfg);
    boundaries::configure(cfg);
    subscriptions::configure(cfg);
}

/// The OpenAPI document of every route, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa_actix_web::AppExt;
    let (_, mut api) = actix_web::App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(configure)
        .split_for_parts();
    add_problem_defaults(&mut api);
    api
}

/// The whole application, as `serve` runs it and the tests call it.
pub fn app(
    state: State,
) -> actix_web::App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    use utoipa_actix_web::AppExt;
    let (app, mut api) = actix_web::App::new()
        .app_data(state.clone())
        .app_data(
            actix_web::web::PathConfig::default()
                .error_handler(|e, _| AppError::new(ErrorCode::InvalidPath, e.to_string()).into()),
        )
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(configure)
        .split_for_parts();
    add_problem_defaults(&mut api);
    app.app_data(actix_web::web::Data::new(api))
        .configure(console::configure)
        .configure(reference::configure)
        .configure(tiles::configure)
        .default_service(actix_web::web::to(not_found))
        .wrap(actix_web::middleware::from_fn(observe::observe))
}

/// No route answers: 405 (with `Allow`) when the path is a route's under another
/// method, else 404. The routes are those of the API description, so the two agree.
async fn not_found(
    req: actix_web::HttpRequest,
    api: actix_web::web::Data<utoipa::openapi::OpenApi>,
) -> Result<HttpResponse, AppError> {
    let allowed = methods_of(&api, req.path());
    if allowed.is_empty() {
        return Err(AppError::not_found(format!(
            "no route for {}",
            req.method()
        )));
    }
    let allow = allowed.join(", ");
    let problem = AppError::new(
        ErrorCode::MethodNotAllowed,
        format!("{} is not allowed here; allowed: {allow}", req.method()),
    );
    let mut res = problem.error_response();
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&allow) {
        res.headers_mut().insert(actix_web::http::header::ALLOW, v);
    }
    Ok(res)
}

/// The methods the API description has for a concrete path (`{param}` matches any one
/// non-empty segment).
fn methods_of(api: &utoipa::openapi::OpenApi, path: &str) -> Vec<&'static str> {
    let segments: Vec<&str> = path.split('/').collect();
    let matches = |template: &str| {
        let t: Vec<&str> = template.split('/').collect();
        t.len() == segments.len()
            && t.iter()
                .zip(&segments)
                .all(|(t, s)| (t.starts_with('{') && t.ends_with('}') && !s.is_empty()) || t == s)
    };
    let mut out = Vec::new();
    for (template, item) in &api.paths.paths {
        if !matches(template) {
            continue;
        }
        for (method, op) in [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("DELETE", &item.delete),
        ] {
            if op.is_some() && !out.contains(&method) {
                out.push(method);
            }
        }
    }
    out
}
