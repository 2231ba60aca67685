//! Operations: liveness, readiness, Prometheus metrics, and the API description.

use actix_web::{get, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::State;
use crate::error::AppError;

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
    let status = if !state.ledger.writer_alive() {
        Some("writer stopped".to_owned())
    } else {
        // A statvfs per directory: cheap enough to ask on every probe.
        state.ledger.store().writable().err().map(|e| e.to_string())
    };
    match status {
        None => HttpResponse::Ok().json(Health {
            status: "ready".into(),
            tree_size: size,
        }),
        Some(why) => HttpResponse::ServiceUnavailable().json(Health {
            status: why,
            tree_size: size,
        }),
    }
}

/// Prometheus text exposition: requests and latencies per route, appends, batch sizes,
/// log size, checkpoint age; with a witness policy, the size each witness last cosigned,
/// the newest quorum-cosigned size and how long ago the quorum was last met.
#[utoipa::path(tag = "operations", responses((status = 200, body = String, content_type = "text/plain; version=0.0.4")))]
#[get("/metrics")]
async fn metrics(state: State) -> Result<HttpResponse, AppError> {
    let latest = state.ledger.latest();
    let mut body = state.metrics.render(&latest);
    if let Some(policy) = state.witness_policy.clone() {
        let store = state.ledger.store().clone();
        let size = latest.size;
        body += &actix_web::web::block(move || {
            crate::witness::submit::metrics(
                &*store,
                &policy,
                size,
                crate::log::sequencer::now_micros(),
            )
        })
        .await
        .map_err(AppError::internal)??;
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(body))
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
