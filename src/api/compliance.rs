//! Compliance status and findings.

use actix_web::{get, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{Caller, DecisionReaders};
use super::State;
use crate::error::{AppError, Problem};
use crate::register::compliance::{self, Finding, Severity};
use crate::register::{rfc3339, systems};

pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(one).service(all);
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ComplianceStatus {
    pub system_id: String,
    /// `compliant`, `attention` (medium or low findings only) or `action_required` (a high finding).
    pub status: String,
    pub as_of: String,
    pub compliance_owner: String,
    pub deployed_version: Option<String>,
    pub findings: Vec<Finding>,
}

fn status_of(state: &State, sys: systems::SystemRecord) -> Result<ComplianceStatus, AppError> {
    let now = crate::log::sequencer::now_micros();
    let findings = compliance::findings(&**state.ledger.store(), &sys, now)?;
    let status = match findings.iter().map(|f| f.severity).max() {
        None => "compliant",
        Some(Severity::High) => "action_required",
        Some(_) => "attention",
    };
    Ok(ComplianceStatus {
        system_id: sys.spec.id.clone(),
        status: status.into(),
        as_of: rfc3339(now),
        compliance_owner: format!("{} <{}>", sys.spec.owner.name, sys.spec.owner.email),
        deployed_version: sys.deployed.clone(),
        findings,
    })
}

/// One system's compliance status and findings (officer, auditor).
#[utoipa::path(tag = "compliance", security(("bearer" = [])), params(("system_id" = String, Path)), responses(
    (status = 200, body = ComplianceStatus),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/systems/{system_id}/compliance")]
async fn one(
    state: State,
    _caller: Caller<DecisionReaders>,
    id: actix_web::web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let sys = systems::read(&**state.ledger.store(), &id)?;
    Ok(HttpResponse::Ok().json(status_of(&state, sys)?))
}

/// Every system's compliance status (officer, auditor).
#[utoipa::path(tag = "compliance", security(("bearer" = [])), responses((status = 200, body = Vec<ComplianceStatus>)))]
#[get("/v1/compliance")]
async fn all(state: State, _caller: Caller<DecisionReaders>) -> Result<HttpResponse, AppError> {
    let out = systems::list(&**state.ledger.store())?
        .into_iter()
        .map(|s| status_of(&state, s))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(out))
}
