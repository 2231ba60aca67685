//! Blind review (FM-03): the open cases a reviewer judges, with the AI's output,
//! confidence, reasons, human review, counterfactual and proxy withheld, and the
//! judgments. Only the `reviewer` role reaches these routes, and it reaches nothing
//! else.

use actix_web::{get, post, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{Caller, Reviewers};
use super::body::{Json, Query};
use super::State;
use crate::error::{AppError, ErrorCode, Problem};
use crate::register::commands::blind::JudgmentRequest;
use crate::register::projections::decisions::DecisionBody;
use crate::register::{commands, projections};
use crate::register::{rfc3339, validate_slug};

pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list).service(judge);
}

/// A blind case: what the reviewer judges from, and nothing of what the AI said.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BlindCase {
    pub decision_id: String,
    pub occurred_at: String,
    /// The decision's inputs, opened from the vault (absent when none were sent or they
    /// were erased).
    pub inputs: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BlindCasePage {
    /// Open cases, oldest first.
    pub cases: Vec<BlindCase>,
    /// Pass as `cursor` for the next page; absent at the end.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CaseQuery {
    /// From a previous page's `cursor`.
    pub cursor: Option<String>,
    /// 1 to 1000 (default 100).
    pub limit: Option<usize>,
}

fn invalid(field: &str, why: &str) -> AppError {
    AppError::field(ErrorCode::InvalidQuery, field, why)
}

/// The open blind-review cases of a system (reviewer), oldest first: each decision's
/// id, time and inputs — never its output, confidence, reasons, human review,
/// counterfactual or proxy metrics.
#[utoipa::path(tag = "blind review", security(("bearer" = [])), params(("system_id" = String, Path), CaseQuery), responses(
    (status = 200, body = BlindCasePage),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/systems/{system_id}/blind-reviews")]
async fn list(
    state: State,
    _caller: Caller<Reviewers>,
    id: actix_web::web::Path<String>,
    q: Query<CaseQuery>,
) -> Result<HttpResponse, AppError> {
    let system = id.into_inner();
    validate_slug("system_id", &system)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(invalid("limit", "must be between 1 and 1000"));
    }
    let after = q
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<u64>()
                .map_err(|_| invalid("cursor", "not a cursor from this API"))
        })
        .transpose()?;
    let store = state.ledger.store().clone();
    let page = actix_web::web::block(move || -> Result<BlindCasePage, AppError> {
        let store = &*store;
        projections::systems::read(store, &system)?;
        let mut open = projections::blind::open_cases(store, &system, after, limit + 1)?;
        let more = open.len() > limit;
        open.truncate(limit);
        let cursor = more
            .then(|| open.last().map(|(i, _)| i.to_string()))
            .flatten();
        let cases = open
            .into_iter()
            .map(|(index, case)| {
                let opening = projections::decisions::opening(store, index)?;
                let occurred_at = match &opening {
                    Some(v) => v.occurred_at,
                    None => occurred_at(store, index)?,
                };
                Ok(BlindCase {
                    decision_id: case.decision_id,
                    occurred_at: rfc3339(occurred_at),
                    inputs: opening.and_then(|v| v.inputs).map(|o| o.json()),
                })
            })
            .collect::<Result<Vec<_>, AppError>>()?;
        Ok(BlindCasePage { cases, cursor })
    })
    .await
    .map_err(AppError::internal)??;
    Ok(HttpResponse::Ok().json(page))
}

/// The time of the decision at `index`, read from its entry (of which nothing else
/// leaves this function).
fn occurred_at(store: &dyn crate::storage::Store, index: u64) -> Result<u64, AppError> {
    let e: crate::log::entry::Entry<DecisionBody> = crate::register::entry_at(store, index)?;
    Ok(e.body.occurred_at)
}

/// Record a blind reviewer's independent judgment of an open case (reviewer):
/// `{judgment: {<prediction field>: value}, review_ms}` (`blind_review.recorded`). The
/// case closes; the same judgment sent again gets its original receipt.
#[utoipa::path(tag = "blind review", security(("bearer" = [])), params(("system_id" = String, Path), ("decision_id" = String, Path)), request_body = JudgmentRequest, responses(
    (status = 201, body = super::outcomes::RecordedFor),
    (status = 200, description = "The same judgment again: its original receipt", body = super::outcomes::RecordedFor),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "blind-case-not-found", body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/systems/{system_id}/blind-reviews/{decision_id}")]
async fn judge(
    state: State,
    caller: Caller<Reviewers>,
    path: actix_web::web::Path<(String, String)>,
    body: Json<JudgmentRequest>,
) -> Result<HttpResponse, AppError> {
    let (system, decision_id) = path.into_inner();
    validate_slug("system_id", &system)?;
    let receipt = state
        .ledger
        .append_reading(
            &caller.name,
            commands::blind::judge_command(system.clone(), decision_id.clone(), body.0),
            commands::blind::judge_reads(&system, &decision_id),
        )
        .await?;
    Ok(super::outcomes::recorded_for(decision_id, receipt))
}
