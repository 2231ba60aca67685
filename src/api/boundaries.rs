//! Integration boundaries (FM-05): boundary events (one or a batch) and the circuit
//! pipelines route by.

use actix_web::{get, post, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{Caller, Pipelines, Readers};
use super::batch::{batch_size, run_batch, BatchResult};
use super::body::Json;
use super::{ReceiptView, State};
use crate::error::{AppError, Problem};
use crate::log::AppendRequest;
use crate::register::commands::boundaries::EventRequest;
use crate::register::validate_slug;
use crate::register::{commands, projections, reports};

pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(record).service(record_batch).service(circuit);
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventRecorded {
    pub receipt: ReceiptView,
}

/// Record a failure at an integration boundary that produced no decision (pipeline):
/// a timeout, a circuit opened, a schema rejected (`boundary.event`).
#[utoipa::path(tag = "boundaries", security(("bearer" = [])), params(("system_id" = String, Path)), request_body = EventRequest, responses(
    (status = 201, body = EventRecorded),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "system-retired", body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/systems/{system_id}/boundary-events")]
async fn record(
    state: State,
    caller: Caller<Pipelines>,
    id: actix_web::web::Path<String>,
    body: Json<EventRequest>,
) -> Result<HttpResponse, AppError> {
    let system = id.into_inner();
    validate_slug("system_id", &system)?;
    let e = body.0.validate(state.latest_caller_time())?;
    let receipt = state
        .ledger
        .append_reading(
            &caller.name,
            commands::boundaries::record_command(system.clone(), e),
            commands::boundaries::record_reads(&system),
        )
        .await?;
    Ok(HttpResponse::Created().json(EventRecorded {
        receipt: receipt.into(),
    }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBatch {
    /// Up to 10,000 boundary events, each as `POST …/boundary-events` takes it.
    pub events: Vec<serde_json::Value>,
}

/// Record a batch of boundary events (pipeline): a result per item, in order.
#[utoipa::path(tag = "boundaries", security(("bearer" = [])), params(("system_id" = String, Path)), request_body = EventBatch, responses(
    (status = 200, body = BatchResult),
    (status = 400, body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/systems/{system_id}/boundary-events/batch")]
async fn record_batch(
    state: State,
    caller: Caller<Pipelines>,
    id: actix_web::web::Path<String>,
    body: Json<EventBatch>,
) -> Result<HttpResponse, AppError> {
    let system = id.into_inner();
    validate_slug("system_id", &system)?;
    let items = batch_size("events", body.0.events)?;
    let latest = state.latest_caller_time();
    let items = items
        .into_iter()
        .map(|item| {
            let request = super::body::parse_value::<EventRequest>(item)
                .and_then(|e| e.validate(latest))
                .map(|e| AppendRequest {
                    actor: caller.name.clone(),
                    reads: commands::boundaries::record_reads(&system),
                    command: commands::boundaries::record_command(system.clone(), e),
                });
            (None, request)
        })
        .collect();
    Ok(HttpResponse::Ok().json(run_batch(&state, "events", items).await))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CircuitState {
    Closed,
    Open,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CircuitView {
    /// `open`: stop routing to the system (its error rate crossed
    /// `policy.integration.max_error_rate`).
    pub state: CircuitState,
    /// Records with status `error` ÷ records (null with none).
    pub error_rate: Option<f64>,
    /// The records counted: the latest window's decisions carrying `integration`, and
    /// every boundary event since its first decision.
    pub window_size: u64,
}

/// Whether callers should stop routing to the system, from the ledger's evidence
/// (every reader, pipelines among them).
#[utoipa::path(tag = "boundaries", security(("bearer" = [])), params(("system_id" = String, Path)), responses(
    (status = 200, body = CircuitView),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/systems/{system_id}/circuit")]
async fn circuit(
    state: State,
    _caller: Caller<Readers>,
    id: actix_web::web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let system = id.into_inner();
    validate_slug("system_id", &system)?;
    let store = state.ledger.store().clone();
    let c = actix_web::web::block(move || {
        let store = &*store;
        let sys = projections::systems::read(store, &system)?;
        reports::failure_modes::circuit(store, &system, &sys.spec, sys.deployed.as_deref())
    })
    .await
    .map_err(AppError::internal)??;
    Ok(HttpResponse::Ok().json(CircuitView {
        state: if c.open {
            CircuitState::Open
        } else {
            CircuitState::Closed
        },
        error_rate: c.error_rate,
        window_size: c.window_size,
    }))
}
