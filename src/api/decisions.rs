//! Decisions: logging (one or a batch) and reading one back with its personal fields opened.

use actix_web::{get, post, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::body::Json;
use super::{ReceiptView, State};
use crate::error::{AppError, Problem};
use crate::ledger::entry::{self, cbor_to_json};
use crate::ledger::{AppendRequest, Receipt};
use crate::register::decisions::{self, DecisionBody, DecisionRequest, HumanReview};
use crate::register::vault::{fresh_salt, OpenedField};
use crate::register::{rfc3339, validate_slug};
use crate::tokens::Role;

pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(record).service(record_batch).service(get_one);
}

/// Roles that may read decisions (they hold personal data).
pub const DECISION_READERS: &[Role] = &[Role::Officer, Role::Auditor];

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DecisionWritten {
    pub decision_id: String,
    /// `recorded`, or `duplicate` when the same decision was sent again (the original receipt).
    pub status: String,
    pub receipt: ReceiptView,
}

fn written(decision_id: String, r: Receipt, fresh: bool) -> DecisionWritten {
    DecisionWritten {
        decision_id,
        status: if fresh { "recorded" } else { "duplicate" }.into(),
        receipt: r.into(),
    }
}

/// Log one decision (pipeline). Refused with 409 unless the system is registered and
/// active and `model_version` is the version in service; nothing is appended then.
/// The same decision sent again gets its original receipt (200); a different decision
/// under the same `decision_id` gets 409.
#[utoipa::path(tag = "decisions", security(("bearer" = [])), params(("system_id" = String, Path)), request_body = DecisionRequest, responses(
    (status = 201, body = DecisionWritten),
    (status = 200, description = "A replay of a recorded decision: its original receipt", body = DecisionWritten),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "system-not-registered, system-retired, model-version-not-registered, model-version-not-deployed, model-version-rejected, model-version-retired, decision-conflict", body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/systems/{system_id}/decisions")]
async fn record(
    state: State,
    caller: Caller,
    id: actix_web::web::Path<String>,
    body: Json<DecisionRequest>,
) -> Result<HttpResponse, AppError> {
    caller.require(&[Role::Pipeline])?;
    let id = id.into_inner();
    validate_slug("system_id", &id)?;
    let d = body.0.validate()?;
    let decision_id = d.decision_id().to_owned();
    let receipt = state
        .ledger
        .append(
            &caller.name,
            decisions::record_command(id, d, (fresh_salt(), fresh_salt())),
        )
        .await?;
    let fresh = receipt.appended;
    let status = if fresh {
        actix_web::http::StatusCode::CREATED
    } else {
        actix_web::http::StatusCode::OK
    };
    Ok(HttpResponse::build(status).json(written(decision_id, receipt, fresh)))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBatch {
    /// Up to 10,000 decisions.
    pub decisions: Vec<serde_json::Value>,
}

/// The result of one item of a batch.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchItem {
    pub decision_id: Option<String>,
    /// `recorded`, `duplicate` or `rejected`.
    pub status: String,
    pub receipt: Option<ReceiptView>,
    pub problem: Option<Problem>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchResult {
    pub recorded: usize,
    pub duplicates: usize,
    pub rejected: usize,
    pub results: Vec<BatchItem>,
}

pub const MAX_BATCH: usize = 10_000;

/// Log a batch of decisions (pipeline): a result per item, in order. Valid items are
/// recorded even when others are refused.
#[utoipa::path(tag = "decisions", security(("bearer" = [])), params(("system_id" = String, Path)), request_body = DecisionBatch, responses(
    (status = 200, body = BatchResult),
    (status = 400, body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/systems/{system_id}/decisions/batch")]
async fn record_batch(
    state: State,
    caller: Caller,
    id: actix_web::web::Path<String>,
    body: Json<DecisionBatch>,
) -> Result<HttpResponse, AppError> {
    caller.require(&[Role::Pipeline])?;
    let id = id.into_inner();
    validate_slug("system_id", &id)?;
    let items = body.0.decisions;
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(AppError::invalid(
            "decisions",
            format!("must hold 1 to {MAX_BATCH} decisions"),
        ));
    }
    let mut results: Vec<BatchItem> = Vec::with_capacity(items.len());
    let mut requests = Vec::new();
    let mut slots = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let decision_id = item
            .get("decision_id")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        let valid =
            super::body::parse::<DecisionRequest>(&serde_json::to_vec(&item).unwrap_or_default())
                .and_then(DecisionRequest::validate);
        match valid {
            Ok(d) => {
                slots.push(i);
                requests.push(AppendRequest {
                    actor: caller.name.clone(),
                    command: decisions::record_command(id.clone(), d, (fresh_salt(), fresh_salt())),
                });
                results.push(BatchItem {
                    decision_id,
                    status: String::new(),
                    receipt: None,
                    problem: None,
                });
            }
            Err(e) => results.push(BatchItem {
                decision_id,
                status: "rejected".into(),
                receipt: None,
                problem: Some(e.within(&format!("decisions[{i}]")).problem()),
            }),
        }
    }
    let answers = state.ledger.append_many(requests).await;
    for (slot, answer) in slots.into_iter().zip(answers) {
        let item = &mut results[slot];
        match answer {
            Ok(r) => {
                item.status = if r.appended { "recorded" } else { "duplicate" }.into();
                item.receipt = Some(r.into());
            }
            Err(e) => {
                item.status = "rejected".into();
                item.problem = Some(
                    AppError::from(e)
                        .within(&format!("decisions[{slot}]"))
                        .problem(),
                );
            }
        }
    }
    let count = |s: &str| results.iter().filter(|r| r.status == s).count();
    let (recorded, duplicates, rejected) =
        (count("recorded"), count("duplicate"), count("rejected"));
    Ok(HttpResponse::Ok().json(BatchResult {
        recorded,
        duplicates,
        rejected,
        results,
    }))
}

/// One decision as recorded, with its personal fields opened from the vault (or shown
/// as erased) so anyone can check them against the commitments in the entry.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DecisionView {
    pub system_id: String,
    pub decision_id: String,
    pub model_version: String,
    pub occurred_at: String,
    pub recorded_at: String,
    pub recorded_by: String,
    /// Log index of the `decision.recorded` entry.
    pub index: u64,
    pub leaf_hash: String,
    pub subject_ref: OpenedField,
    pub input_sha256: String,
    pub inputs: Option<OpenedField>,
    #[schema(value_type = Object)]
    pub output: serde_json::Value,
    pub confidence: Option<f64>,
    pub reasons: Vec<String>,
    pub human_review: Option<HumanReview>,
}

pub fn decision_view(state: &State, index: u64) -> Result<DecisionView, AppError> {
    let bytes = state
        .ledger
        .entry(index)?
        .ok_or_else(|| AppError::internal(format!("decision entry {index} missing")))?;
    let e: entry::Entry<DecisionBody> = entry::decode(&bytes).map_err(AppError::internal)?;
    let open = decisions::opening(&**state.ledger.store(), index)?;
    let b = e.body;
    Ok(DecisionView {
        system_id: e.system.unwrap_or_default(),
        decision_id: b.decision_id,
        model_version: b.model_version,
        occurred_at: rfc3339(b.occurred_at),
        recorded_at: rfc3339(e.time),
        recorded_by: e.actor,
        index,
        leaf_hash: hex::encode(crate::ledger::merkle::leaf_hash(&bytes)),
        subject_ref: OpenedField::new(&b.subject, open.as_ref().map(|o| &o.subject)),
        input_sha256: hex::encode(&b.input_sha256),
        inputs: b
            .inputs
            .as_ref()
            .map(|c| OpenedField::new(c, open.as_ref().and_then(|o| o.inputs.as_ref()))),
        output: serde_json::from_str(&b.output)
            .unwrap_or(serde_json::Value::String(b.output.clone())),
        confidence: b
            .confidence
            .as_ref()
            .map(cbor_to_json)
            .and_then(|v| v.as_f64()),
        reasons: b.reasons,
        human_review: b.human_review,
    })
}

/// One decision (officer, auditor).
#[utoipa::path(tag = "decisions", security(("bearer" = [])), params(("system_id" = String, Path), ("decision_id" = String, Path)), responses(
    (status = 200, body = DecisionView),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/systems/{system_id}/decisions/{decision_id}")]
async fn get_one(
    state: State,
    caller: Caller,
    path: actix_web::web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    caller.require(DECISION_READERS)?;
    let (id, decision_id) = path.into_inner();
    let index = decisions::find(&**state.ledger.store(), &id, &decision_id)?;
    Ok(HttpResponse::Ok().json(decision_view(&state, index)?))
}
