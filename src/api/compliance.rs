//! Compliance status and findings.

use actix_web::{get, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{Caller, DecisionReaders};
use super::State;
use crate::error::{AppError, Problem};
use crate::register::projections::findings::Finding;
use crate::register::projections::findings::Severity;
use crate::register::rfc3339;
use crate::register::{projections, reports};

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

/// A system's status with `findings` as of `as_of` (unix µs).
fn status(
    sys: projections::systems::SystemRecord,
    findings: Vec<Finding>,
    as_of: u64,
) -> ComplianceStatus {
    ComplianceStatus {
        system_id: sys.spec.id.clone(),
        status: status_name(&findings).into(),
        as_of: rfc3339(as_of),
        compliance_owner: format!("{} <{}>", sys.spec.owner.name, sys.spec.owner.email),
        deployed_version: sys.deployed.clone(),
        findings,
    }
}

fn status_of(
    state: &State,
    sys: projections::systems::SystemRecord,
) -> Result<ComplianceStatus, AppError> {
    let now = crate::log::sequencer::now_micros();
    let findings = reports::compliance::findings(&**state.ledger.store(), &sys, now)?;
    Ok(status(sys, findings, now))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ComplianceQuery {
    /// Answer as the findings stood at this time (RFC 3339), from the log's
    /// `finding.opened` / `finding.resolved` entries; absent: the live view.
    pub at: Option<String>,
}

/// The status of a set of findings: the worst severity decides.
fn status_name(findings: &[Finding]) -> &'static str {
    match findings.iter().map(|f| f.severity).max() {
        None => "compliant",
        Some(Severity::High) => "action_required",
        Some(_) => "attention",
    }
}

/// The status as the finding entries recorded it at `at`.
fn status_at(
    state: &State,
    sys: projections::systems::SystemRecord,
    at: u64,
) -> Result<ComplianceStatus, AppError> {
    let findings: Vec<Finding> =
        projections::findings::open_at(&**state.ledger.store(), &sys.spec.id, at)?
            .into_iter()
            .map(|(_, time, b)| Finding {
                code: b.code,
                severity: b.severity,
                explanation: b.explanation,
                evidence: b.evidence,
                since: rfc3339(time),
                model_version: b.model_version,
                subject: b.subject,
            })
            .collect();
    Ok(status(sys, findings, at))
}

/// One system's compliance status and findings (officer, auditor); with `at`, the
/// findings open at that time as the log records them (`deployed_version` and
/// `compliance_owner` are the current ones).
#[utoipa::path(tag = "compliance", security(("bearer" = [])), params(("system_id" = String, Path), ComplianceQuery), responses(
    (status = 200, body = ComplianceStatus),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/systems/{system_id}/compliance")]
async fn one(
    state: State,
    _caller: Caller<DecisionReaders>,
    id: actix_web::web::Path<String>,
    q: super::body::Query<ComplianceQuery>,
) -> Result<HttpResponse, AppError> {
    let sys = projections::systems::read(&**state.ledger.store(), &id)?;
    let answer = match q.at.as_deref() {
        Some(at) => status_at(&state, sys, super::body::query_time("at", at)?)?,
        None => status_of(&state, sys)?,
    };
    Ok(HttpResponse::Ok().json(answer))
}

/// Every system's compliance status (officer, auditor).
#[utoipa::path(tag = "compliance", security(("bearer" = [])), responses((status = 200, body = Vec<ComplianceStatus>)))]
#[get("/v1/compliance")]
async fn all(state: State, _caller: Caller<DecisionReaders>) -> Result<HttpResponse, AppError> {
    let out = projections::systems::list(&**state.ledger.store())?
        .into_iter()
        .map(|s| status_of(&state, s))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(out))
}
