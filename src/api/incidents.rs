//! Serious incidents (AI Act Art. 73): declare one, record its report, list them.

use actix_web::{get, post, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{Caller, DecisionReaders, Officers};
use super::body::Json;
use super::{ReceiptView, State};
use crate::error::{AppError, Problem};
use crate::register::commands::incidents::IncidentRequest;
use crate::register::commands::incidents::ReportRequest;
use crate::register::projections::incidents::Category;
use crate::register::projections::incidents::IncidentRow;
use crate::register::rfc3339;
use crate::register::{commands, projections};

pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(declare).service(report).service(list);
}

/// A reported incident's report.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReportView {
    /// The `incident.reported` entry.
    pub index: u64,
    pub authority: String,
    pub reference: String,
    pub reported_at: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IncidentView {
    /// The `incident.declared` entry's index.
    pub id: u64,
    pub system_id: String,
    pub category: Category,
    pub aware_at: String,
    /// The reporting deadline: `aware_at` plus 10 days (death), 2 days (critical
    /// infrastructure, widespread infringement) or 15 days (other).
    pub deadline: String,
    pub description: String,
    pub finding_index: Option<u64>,
    pub declared_by: String,
    /// `due`, `overdue` (the deadline passed unreported) or `reported`.
    pub status: String,
    pub report: Option<ReportView>,
}

fn view(system: &str, r: IncidentRow, now: u64) -> IncidentView {
    let status = match (&r.reported, now > r.declared.deadline) {
        (Some(_), _) => "reported",
        (None, true) => "overdue",
        (None, false) => "due",
    };
    IncidentView {
        id: r.id,
        system_id: system.to_owned(),
        category: r.declared.category,
        aware_at: rfc3339(r.declared.aware_at),
        deadline: rfc3339(r.declared.deadline),
        description: r.declared.description,
        finding_index: r.declared.finding_index,
        declared_by: r.declared_by,
        status: status.into(),
        report: r.reported.map(|(index, b)| ReportView {
            index,
            authority: b.authority,
            reference: b.reference,
            reported_at: rfc3339(b.reported_at),
        }),
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IncidentRecorded {
    pub incident: IncidentView,
    pub receipt: ReceiptView,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IncidentList {
    pub incidents: Vec<IncidentView>,
}

fn find(state: &State, system: &str, id: u64) -> Result<IncidentRow, AppError> {
    projections::incidents::get_one(&**state.ledger.store(), system, id)
}

/// Declare a serious incident (officer; AI Act Art. 73). The entry holds the reporting
/// deadline; until the report is recorded, `incident_report_due` opens when a third of
/// the time is left and turns high once it has passed. The description goes into the
/// immutable log: no personal data.
#[utoipa::path(tag = "incidents", security(("bearer" = [])), params(("system_id" = String, Path)), request_body = IncidentRequest, responses(
    (status = 201, body = IncidentRecorded),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/systems/{system_id}/incidents")]
async fn declare(
    state: State,
    caller: Caller<Officers>,
    id: actix_web::web::Path<String>,
    body: Json<IncidentRequest>,
) -> Result<HttpResponse, AppError> {
    let declared = commands::incidents::validate(body.0, state.latest_caller_time())?;
    let id = id.into_inner();
    let receipt = state
        .ledger
        .append(
            &caller.name,
            commands::incidents::declare_command(id.clone(), declared),
        )
        .await?;
    let row = find(&state, &id, receipt.index)?;
    let now = crate::log::sequencer::now_micros();
    Ok(HttpResponse::Created().json(IncidentRecorded {
        incident: view(&id, row, now),
        receipt: receipt.into(),
    }))
}

/// Record that an incident was reported to the market surveillance authority
/// (officer): its deadline finding clears.
#[utoipa::path(tag = "incidents", security(("bearer" = [])), params(("system_id" = String, Path), ("incident_id" = u64, Path, minimum = 0)), request_body = ReportRequest, responses(
    (status = 201, body = IncidentRecorded),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/systems/{system_id}/incidents/{incident_id}/report")]
async fn report(
    state: State,
    caller: Caller<Officers>,
    path: actix_web::web::Path<(String, u64)>,
    body: Json<ReportRequest>,
) -> Result<HttpResponse, AppError> {
    let (system, incident) = path.into_inner();
    let reported = commands::incidents::validate_report(body.0, state.latest_caller_time())?;
    let receipt = state
        .ledger
        .append(
            &caller.name,
            commands::incidents::report_command(system.clone(), reported, incident),
        )
        .await?;
    let row = find(&state, &system, incident)?;
    let now = crate::log::sequencer::now_micros();
    Ok(HttpResponse::Created().json(IncidentRecorded {
        incident: view(&system, row, now),
        receipt: receipt.into(),
    }))
}

/// A system's serious incidents, oldest first, with their deadlines and reports
/// (officer, auditor).
#[utoipa::path(tag = "incidents", security(("bearer" = [])), params(("system_id" = String, Path)), responses(
    (status = 200, body = IncidentList),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/systems/{system_id}/incidents")]
async fn list(
    state: State,
    _caller: Caller<DecisionReaders>,
    id: actix_web::web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let store = &**state.ledger.store();
    crate::register::projections::systems::read(store, &id)?;
    let now = crate::log::sequencer::now_micros();
    let incidents = projections::incidents::list(store, &id)?
        .into_iter()
        .map(|r| view(&id, r, now))
        .collect();
    Ok(HttpResponse::Ok().json(IncidentList { incidents }))
}
