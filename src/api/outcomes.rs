//! Ground truth: outcomes of decisions (one or a batch), contests and their resolution,
//! and the failure-mode report built on them.

use std::collections::BTreeMap;

use actix_web::{get, post, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{Caller, DecisionReaders, Officers, Pipelines};
use super::batch::{batch_size, run_batch, BatchResult};
use super::body::{query_time, Json, Query};
use super::{ReceiptView, State};
use crate::error::{AppError, ErrorCode, Problem};
use crate::log::entry::Entry;
use crate::log::AppendRequest;
use crate::register::commands::outcomes::ContestRequest;
use crate::register::commands::outcomes::OutcomeRequest;
use crate::register::commands::outcomes::ResolutionRequest;
use crate::register::projections::outcomes::ContestBody;
use crate::register::projections::outcomes::OutcomeBody;
use crate::register::projections::outcomes::Resolution;
use crate::register::projections::outcomes::ResolvedBody;
use crate::register::projections::vault::OpenedField;
use crate::register::reports::failure_modes::Report;
use crate::register::{commands, projections, reports};
use crate::register::{rfc3339, validate_slug};
use crate::storage::Store;

pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(record)
        .service(record_batch)
        .service(contest)
        .service(resolve)
        .service(report);
}

/// What was recorded for a decision (an outcome, a blind judgment).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RecordedFor {
    pub decision_id: String,
    /// `recorded`, or `duplicate` when the same was sent again (the original receipt).
    pub status: String,
    pub receipt: ReceiptView,
}

/// The answer to a write about `decision_id`: 201 `recorded`, or 200 `duplicate` with
/// the original receipt when the same was sent again.
pub(super) fn recorded_for(decision_id: String, receipt: crate::log::Receipt) -> HttpResponse {
    let fresh = receipt.appended;
    let status = if fresh {
        actix_web::http::StatusCode::CREATED
    } else {
        actix_web::http::StatusCode::OK
    };
    HttpResponse::build(status).json(RecordedFor {
        decision_id,
        status: if fresh { "recorded" } else { "duplicate" }.into(),
        receipt: receipt.into(),
    })
}

/// Record the outcome of a decision (pipeline): what really happened, bound to the
/// decision's entry (`decision.outcome`). One outcome per decision: another is refused
/// with 409 unless `correction` is true (it supersedes the recorded one and says so);
/// the same outcome sent again gets its original receipt (200).
#[utoipa::path(tag = "outcomes", security(("bearer" = [])), params(("system_id" = String, Path), ("decision_id" = String, Path)), request_body = OutcomeRequest, responses(
    (status = 201, body = RecordedFor),
    (status = 200, description = "A replay of a recorded outcome: its original receipt", body = RecordedFor),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "decision-not-found", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "outcome-conflict", body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/systems/{system_id}/decisions/{decision_id}/outcomes")]
async fn record(
    state: State,
    caller: Caller<Pipelines>,
    path: actix_web::web::Path<(String, String)>,
    body: Json<OutcomeRequest>,
) -> Result<HttpResponse, AppError> {
    let (system, decision_id) = path.into_inner();
    validate_slug("system_id", &system)?;
    let o = body.0.validate(state.latest_caller_time())?;
    let receipt = state
        .ledger
        .append_reading(
            &caller.name,
            commands::outcomes::record_command(
                system.clone(),
                decision_id.clone(),
                o,
                projections::vault::fresh_salt(),
            ),
            commands::outcomes::record_reads(&system, &decision_id),
        )
        .await?;
    Ok(recorded_for(decision_id, receipt))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutcomeBatch {
    /// Up to 10,000 outcomes, each `{decision_id, observed_at, label, business, source,
    /// note?, correction?}`.
    pub outcomes: Vec<serde_json::Value>,
}

/// Record a batch of outcomes (pipeline): a result per item, in order, as decision
/// batches answer. Valid items are recorded even when others are refused.
#[utoipa::path(tag = "outcomes", security(("bearer" = [])), params(("system_id" = String, Path)), request_body = OutcomeBatch, responses(
    (status = 200, body = BatchResult),
    (status = 400, body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/systems/{system_id}/outcomes/batch")]
async fn record_batch(
    state: State,
    caller: Caller<Pipelines>,
    id: actix_web::web::Path<String>,
    body: Json<OutcomeBatch>,
) -> Result<HttpResponse, AppError> {
    let system = id.into_inner();
    validate_slug("system_id", &system)?;
    let items = batch_size("outcomes", body.0.outcomes)?;
    let latest = state.latest_caller_time();
    let items = items
        .into_iter()
        .map(|mut item| {
            let decision_id = item
                .as_object_mut()
                .and_then(|m| m.remove("decision_id"))
                .and_then(|v| v.as_str().map(str::to_owned));
            let request = match &decision_id {
                None => Err(AppError::invalid(
                    "decision_id",
                    "each outcome names its decision_id (a string)",
                )),
                Some(d) => super::body::parse_value::<OutcomeRequest>(item)
                    .and_then(|o| o.validate(latest))
                    .map(|o| AppendRequest {
                        actor: caller.name.clone(),
                        reads: commands::outcomes::record_reads(&system, d),
                        command: commands::outcomes::record_command(
                            system.clone(),
                            d.clone(),
                            o,
                            projections::vault::fresh_salt(),
                        ),
                    }),
            };
            (decision_id, request)
        })
        .collect();
    Ok(HttpResponse::Ok().json(run_batch(&state, "outcomes", items).await))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ContestRecorded {
    /// The contest's id: its `decision.contested` entry's index.
    pub id: u64,
    pub decision_id: String,
    pub receipt: ReceiptView,
}

/// Record that the data subject contested a decision (officer; GDPR Art. 22(3)). The
/// grounds are personal: the entry holds their commitment, the vault their text.
#[utoipa::path(tag = "outcomes", security(("bearer" = [])), params(("system_id" = String, Path), ("decision_id" = String, Path)), request_body = ContestRequest, responses(
    (status = 201, body = ContestRecorded),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/systems/{system_id}/decisions/{decision_id}/contests")]
async fn contest(
    state: State,
    caller: Caller<Officers>,
    path: actix_web::web::Path<(String, String)>,
    body: Json<ContestRequest>,
) -> Result<HttpResponse, AppError> {
    let (system, decision_id) = path.into_inner();
    validate_slug("system_id", &system)?;
    let receipt = state
        .ledger
        .append(
            &caller.name,
            commands::outcomes::contest_command(
                system,
                decision_id.clone(),
                body.0,
                state.latest_caller_time(),
                projections::vault::fresh_salt(),
            ),
        )
        .await?;
    Ok(HttpResponse::Created().json(ContestRecorded {
        id: receipt.index,
        decision_id,
        receipt: receipt.into(),
    }))
}

/// A contest's resolution.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ResolutionView {
    /// The `contest.resolved` entry.
    pub index: u64,
    pub outcome: Resolution,
    pub rationale: String,
    pub resolved_by: String,
    pub resolved_at: String,
}

/// A contest of a decision, its grounds opened from the vault (or erased).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ContestView {
    /// The `decision.contested` entry's index.
    pub id: u64,
    pub received_at: String,
    pub grounds: OpenedField,
    pub recorded_by: String,
    pub resolution: Option<ResolutionView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ContestResolved {
    pub contest: ContestView,
    pub receipt: ReceiptView,
}

/// Resolve a contest (officer): `upheld`, or `overturned` — the decision then counts as
/// wrong in the failure-mode figures. A contest is resolved once (409 after).
#[utoipa::path(tag = "outcomes", security(("bearer" = [])), params(("system_id" = String, Path), ("contest_id" = u64, Path, minimum = 0)), request_body = ResolutionRequest, responses(
    (status = 201, body = ContestResolved),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/systems/{system_id}/contests/{contest_id}/resolution")]
async fn resolve(
    state: State,
    caller: Caller<Officers>,
    path: actix_web::web::Path<(String, u64)>,
    body: Json<ResolutionRequest>,
) -> Result<HttpResponse, AppError> {
    let (system, id) = path.into_inner();
    validate_slug("system_id", &system)?;
    let receipt = state
        .ledger
        .append(
            &caller.name,
            commands::outcomes::resolve_command(system.clone(), id, body.0),
        )
        .await?;
    let store = &**state.ledger.store();
    Ok(HttpResponse::Created().json(ContestResolved {
        contest: contest_view(store, &system, id, state.ledger.latest().size)?,
        receipt: receipt.into(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// RFC 3339 time: the report as it stood then, from the log.
    pub at: Option<String>,
}

/// The seven failure modes of one system (officer, auditor): each with its status
/// (`ok`, `at_risk`, `failing`, `no_data`), figures over its window, the limits in
/// force and its findings with their evidence. With `?at=`, as it stood then.
#[utoipa::path(tag = "outcomes", security(("bearer" = [])), params(("system_id" = String, Path), ReportQuery), responses(
    (status = 200, body = Report),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/systems/{system_id}/failure-modes")]
async fn report(
    state: State,
    _caller: Caller<DecisionReaders>,
    id: actix_web::web::Path<String>,
    q: Query<ReportQuery>,
) -> Result<HttpResponse, AppError> {
    let store = state.ledger.store().clone();
    let system = id.into_inner();
    let at = q.at.as_deref().map(|t| query_time("at", t)).transpose()?;
    let report = actix_web::web::block(move || -> Result<Report, AppError> {
        let store = &*store;
        let current = projections::systems::read(store, &system)?;
        match at {
            None => reports::failure_modes::report(
                store,
                &system,
                &current.spec,
                crate::log::sequencer::now_micros(),
                true,
            ),
            Some(at) => {
                let (_, body) =
                    projections::systems::revision_at(store, &system, at)?.ok_or_else(|| {
                        AppError::new(
                            ErrorCode::SystemNotFound,
                            format!("AI system {system:?} was not yet registered then"),
                        )
                    })?;
                reports::failure_modes::report(store, &system, &body.spec, at, false)
            }
        }
    })
    .await
    .map_err(AppError::internal)??;
    Ok(HttpResponse::Ok().json(report))
}

/// An outcome of a decision as recorded.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OutcomeView {
    /// The `decision.outcome` entry.
    pub index: u64,
    pub observed_at: String,
    pub recorded_at: String,
    pub recorded_by: String,
    pub label: serde_json::Value,
    #[schema(value_type = BTreeMap<String, f64>)]
    pub business: BTreeMap<String, crate::decimal::Decimal>,
    pub source: String,
    /// Opened from the vault (or erased); absent when none was given.
    pub note: Option<OpenedField>,
    /// The outcome this one corrects.
    pub supersedes: Option<u64>,
    /// Whether this is the outcome in force (the latest).
    pub in_force: bool,
}

fn read_entry<B: serde::de::DeserializeOwned>(
    store: &dyn Store,
    index: u64,
) -> Result<Entry<B>, AppError> {
    crate::register::entry_at(store, index)
}

/// Contest `id` as recorded up to the published size `published` (a resolution not
/// yet published is not shown).
fn contest_view(
    store: &dyn Store,
    system: &str,
    id: u64,
    published: u64,
) -> Result<ContestView, AppError> {
    let row = projections::outcomes::contest(store, system, id)?;
    let e: Entry<ContestBody> = read_entry(store, id)?;
    let opening = projections::outcomes::text_opening(store, row.decision, id)?;
    let resolution = match row.resolved.as_ref().filter(|r| r.0 < published) {
        Some((index, outcome, by, time)) => {
            let r: Entry<ResolvedBody> = read_entry(store, *index)?;
            Some(ResolutionView {
                index: *index,
                outcome: *outcome,
                rationale: r.body.rationale,
                resolved_by: by.clone(),
                resolved_at: rfc3339(*time),
            })
        }
        None => None,
    };
    Ok(ContestView {
        id,
        received_at: rfc3339(row.received_at),
        grounds: OpenedField::new(&e.body.grounds, opening.as_ref()),
        recorded_by: row.recorded_by,
        resolution,
    })
}

/// The outcomes and contests of the decision at `index` of `system`, as recorded up to
/// the published size `published`.
pub fn ground_truth(
    store: &dyn Store,
    system: &str,
    index: u64,
    published: u64,
) -> Result<(Vec<OutcomeView>, Vec<ContestView>), AppError> {
    let Some(row) = projections::outcomes::truth(store, system, index)? else {
        return Ok((Vec::new(), Vec::new()));
    };
    let shown: Vec<u64> = row
        .outcomes
        .iter()
        .copied()
        .filter(|i| *i < published)
        .collect();
    let last = shown.last().copied();
    let outcomes = shown
        .iter()
        .map(|&i| {
            let e: Entry<OutcomeBody> = read_entry(store, i)?;
            let b = e.body;
            let note = match &b.note {
                Some(c) => Some(OpenedField::new(
                    c,
                    projections::outcomes::text_opening(store, index, i)?.as_ref(),
                )),
                None => None,
            };
            Ok(OutcomeView {
                index: i,
                observed_at: rfc3339(b.observed_at),
                recorded_at: rfc3339(e.time),
                recorded_by: e.actor,
                label: serde_json::from_str(&b.label).unwrap_or(serde_json::Value::Null),
                business: b.business,
                source: b.source,
                note,
                supersedes: b.supersedes,
                in_force: Some(i) == last,
            })
        })
        .collect::<Result<Vec<_>, AppError>>()?;
    let contests = row
        .contests
        .iter()
        .filter(|i| **i < published)
        .map(|&id| contest_view(store, system, id, published))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((outcomes, contests))
}
