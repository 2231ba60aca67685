//! Operations: liveness, readiness, Prometheus metrics, and the API description.

use actix_web::{get, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::State;

pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(healthz)
        .service(readyz)
        .service(metrics)
        .service(openapi_json)
        .service(docs);
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    /// Entries in the log at the latest checkpoint.
    pub tree_size: u64,
}

/// Liveness: the process answers.
#[utoipa::path(tag = "operations", responses((status = 200, body = Health)))]
#[get("/healthz")]
async fn healthz(state: State) -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok".into(),
        tree_size: state.ledger.latest().size,
    })
}

/// Readiness: recovery finished (the server binds only after it) and the writer accepts appends.
#[utoipa::path(tag = "operations", responses((status = 200, body = Health), (status = 503, body = Health)))]
#[get("/readyz")]
async fn readyz(state: State) -> HttpResponse {
    let size = state.ledger.latest().size;
    if state.ledger.writer_alive() {
        HttpResponse::Ok().json(Health {
            status: "ready".into(),
            tree_size: size,
        })
    } else {
        HttpResponse::ServiceUnavailable().json(Health {
            status: "writer stopped".into(),
            tree_size: size,
        })
    }
}

/// Prometheus text exposition: requests and latencies per route, appends, batch sizes,
/// log size, checkpoint age.
#[utoipa::path(tag = "operations", responses((status = 200, body = String, content_type = "text/plain; version=0.0.4")))]
#[get("/metrics")]
async fn metrics(state: State) -> HttpResponse {
    let latest = state.ledger.latest();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render(&latest))
}

/// This API's OpenAPI 3.1 description.
#[utoipa::path(tag = "operations", responses((status = 200, body = Object, content_type = "application/json")))]
#[get("/openapi.json")]
async fn openapi_json(api: web::Data<utoipa::openapi::OpenApi>) -> HttpResponse {
    HttpResponse::Ok().json(api.as_ref())
}

/// Interactive API reference: the Scalar viewer, served by this service (nothing is
/// loaded from another origin, so it works offline).
#[utoipa::path(tag = "operations", responses((status = 200, body = String, content_type = "text/html")))]
#[get("/docs")]
async fn docs() -> HttpResponse {
    super::reference::page()
}
