//! Decisions: logging (one or a batch) and reading one back with its personal fields opened.

use actix_web::{get, post, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{Caller, DecisionReaders, Officers, Pipelines};
use super::batch::{batch_size, run_batch, BatchResult};
use super::body::{query_time, Json};
use super::{ReceiptView, State};
use crate::error::{AppError, Problem};
use crate::log::entry::{self, cbor_to_json};
use crate::log::{AppendRequest, Receipt};
use crate::register::commands::decisions::DecisionRequest;
use crate::register::projections::decisions::DecisionBody;
use crate::register::projections::decisions::HumanReview;
use crate::register::projections::vault::OpenedField;
use crate::register::{commands, projections, rfc3339, validate_slug};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as CURSOR;
use base64::Engine as _;
use utoipa::IntoParams;

pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(record)
        .service(record_batch)
        .service(trail)
        .service(get_one)
        .service(audit_bundle)
        .service(by_subject)
        .service(erase);
}

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
    caller: Caller<Pipelines>,
    id: actix_web::web::Path<String>,
    body: Json<DecisionRequest>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    validate_slug("system_id", &id)?;
    let d = body.0.validate(state.latest_caller_time())?;
    let decision_id = d.decision_id().to_owned();
    let reads = commands::decisions::record_reads(&id, &decision_id);
    let receipt = state
        .ledger
        .append_reading(
            &caller.name,
            commands::decisions::record_command(id, d, commands::decisions::Salts::fresh()),
            reads,
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

/// Log a batch of decisions (pipeline): a result per item, in order. Valid items are
/// recorded even when others are refused.
#[utoipa::path(tag = "decisions", security(("bearer" = [])), params(("system_id" = String, Path)), request_body = DecisionBatch, responses(
    (status = 200, body = BatchResult),
    (status = 400, body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/systems/{system_id}/decisions/batch")]
async fn record_batch(
    state: State,
    caller: Caller<Pipelines>,
    id: actix_web::web::Path<String>,
    body: Json<DecisionBatch>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    validate_slug("system_id", &id)?;
    let items = batch_size("decisions", body.0.decisions)?;
    let latest_time = state.latest_caller_time();
    let items = items
        .into_iter()
        .map(|item| {
            let decision_id = item
                .get("decision_id")
                .and_then(|v| v.as_str())
                .map(str::to_owned);
            let request = super::body::parse_value::<DecisionRequest>(item)
                .and_then(|d| d.validate(latest_time))
                .map(|d| AppendRequest {
                    actor: caller.name.clone(),
                    reads: commands::decisions::record_reads(&id, d.decision_id()),
                    command: commands::decisions::record_command(
                        id.clone(),
                        d,
                        commands::decisions::Salts::fresh(),
                    ),
                });
            (decision_id, request)
        })
        .collect();
    Ok(HttpResponse::Ok().json(run_batch(&state, "decisions", items).await))
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
    /// The inputs' digest, opened from the vault (or erased). Absent for decisions
    /// written before the digest was committed: see `input_sha256_uncommitted`.
    pub input_sha256: Option<OpenedField>,
    /// Only for decisions written before the digest was committed: their entry holds
    /// it in the clear (lowercase hex), and it is shown as the entry holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_sha256_uncommitted: Option<String>,
    pub inputs: Option<OpenedField>,
    pub output: serde_json::Value,
    pub confidence: Option<f64>,
    pub reasons: Vec<String>,
    pub human_review: Option<HumanReview>,
    /// The proxy metrics the decision carried.
    #[schema(value_type = Option<BTreeMap<String, f64>>)]
    pub proxy: Option<std::collections::BTreeMap<String, crate::decimal::Decimal>>,
    /// What really happened, oldest first (the last is in force).
    pub outcomes: Vec<super::outcomes::OutcomeView>,
    /// Contests of the decision by its subject (GDPR Art. 22(3)), and their resolution.
    pub contests: Vec<super::outcomes::ContestView>,
    /// The output was chosen by randomised exploration (FM-02).
    pub exploration: Option<bool>,
    /// What the model would have recommended (FM-02).
    pub counterfactual_output: Option<serde_json::Value>,
    pub equivalence_key: Option<String>,
    pub validation: Option<projections::decisions::Validation>,
    pub integration: Option<projections::decisions::Integration>,
    /// Whether the writer drew the decision for blind review (present when the
    /// system's policy set a blind-review rate).
    pub blind_review: Option<bool>,
}

pub fn decision_view(state: &State, index: u64) -> Result<DecisionView, AppError> {
    // Indexes and the vault are written before the batch's checkpoint is published;
    // an entry not yet published is not yet recorded as far as readers are concerned.
    let bytes = state.ledger.entry(index)?.ok_or_else(|| {
        AppError::new(
            crate::error::ErrorCode::DecisionNotFound,
            format!("decision at index {index} is not yet recorded"),
        )
    })?;
    let e: entry::Entry<DecisionBody> = entry::decode(&bytes).map_err(AppError::internal)?;
    let store = &**state.ledger.store();
    let open = projections::decisions::opening(store, index)?;
    let b = e.body;
    let system = e.system.unwrap_or_default();
    let (outcomes, contests) =
        super::outcomes::ground_truth(store, &system, index, state.ledger.latest().size)?;
    Ok(DecisionView {
        system_id: system,
        decision_id: b.decision_id,
        model_version: b.model_version,
        occurred_at: rfc3339(b.occurred_at),
        recorded_at: rfc3339(e.time),
        recorded_by: e.actor,
        index,
        leaf_hash: hex::encode(crate::log::merkle::leaf_hash(&bytes)),
        subject_ref: OpenedField::new(&b.subject, open.as_ref().map(|o| &o.subject)),
        input_sha256: b
            .input_sha256_commitment
            .as_ref()
            .map(|c| OpenedField::new(c, open.as_ref().and_then(|o| o.input_sha256.as_ref()))),
        input_sha256_uncommitted: b.input_sha256.as_ref().map(hex::encode),
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
        proxy: b.proxy,
        outcomes,
        contests,
        exploration: b.exploration,
        counterfactual_output: b
            .counterfactual_output
            .as_deref()
            .map(|c| serde_json::from_str(c).unwrap_or(serde_json::Value::Null)),
        equivalence_key: b.equivalence_key,
        validation: b.validation,
        integration: b.integration,
        blind_review: b.blind_review,
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
    _caller: Caller<DecisionReaders>,
    path: actix_web::web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (id, decision_id) = path.into_inner();
    let index = projections::decisions::find(&**state.ledger.store(), &id, &decision_id)?;
    Ok(HttpResponse::Ok().json(decision_view(&state, index)?))
}

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TrailQuery {
    pub model_version: Option<String>,
    /// Only decisions about this data subject.
    pub subject: Option<String>,
    /// occurred_at from (RFC 3339, inclusive).
    pub from: Option<String>,
    /// occurred_at to (RFC 3339, inclusive).
    pub to: Option<String>,
    /// Only decisions with this output (JSON, compared in RFC 8785 canonical form; a bare word is a JSON string).
    pub outcome: Option<String>,
    /// `true`: only decisions with an outcome; `false`: only those without.
    pub labelled: Option<bool>,
    /// `newest` (default) or `oldest` first.
    pub order: Option<String>,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// 1 to 1000 (default 100).
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DecisionPage {
    pub decisions: Vec<DecisionView>,
    /// Pass as `cursor` for the next page; absent at the end.
    pub next_cursor: Option<String>,
}

fn limit_of(l: Option<usize>) -> Result<usize, AppError> {
    let l = l.unwrap_or(100);
    if !(1..=1000).contains(&l) {
        return Err(AppError::field(
            crate::error::ErrorCode::InvalidQuery,
            "limit",
            "must be between 1 and 1000",
        ));
    }
    Ok(l)
}

fn bad_cursor() -> AppError {
    AppError::field(
        crate::error::ErrorCode::InvalidQuery,
        "cursor",
        "not a cursor from this API",
    )
}

/// A trail position (time of decision, entry index) as an opaque cursor.
fn encode_cursor((t, i): projections::trail::TrailPosition) -> String {
    CURSOR.encode([t.to_be_bytes(), i.to_be_bytes()].concat())
}

fn decode_cursor(c: &str) -> Result<projections::trail::TrailPosition, AppError> {
    let b: [u8; 16] = CURSOR
        .decode(c)
        .map_err(|_| bad_cursor())?
        .try_into()
        .map_err(|_| bad_cursor())?;
    Ok((
        u64::from_be_bytes(b[..8].try_into().expect("8 bytes")),
        u64::from_be_bytes(b[8..].try_into().expect("8 bytes")),
    ))
}

/// A system's decision trail, from its indexes (officer, auditor): filter by model
/// version, subject, time range and outcome; newest or oldest first; opaque cursors.
#[utoipa::path(tag = "decisions", security(("bearer" = [])), params(("system_id" = String, Path), TrailQuery), responses(
    (status = 200, body = DecisionPage),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/systems/{system_id}/decisions")]
async fn trail(
    state: State,
    _caller: Caller<DecisionReaders>,
    id: actix_web::web::Path<String>,
    q: super::body::Query<TrailQuery>,
) -> Result<HttpResponse, AppError> {
    let store = &**state.ledger.store();
    crate::register::projections::systems::read(store, &id)?;
    Ok(HttpResponse::Ok().json(trail_page(&state, &id, &q.0.filter()?)?))
}

impl TrailQuery {
    /// The trail filter this query asks for, each parameter checked (a bad one named).
    pub fn filter(self) -> Result<projections::trail::TrailFilter, AppError> {
        let q = self;
        let newest_first = match q.order.as_deref() {
            None | Some("newest") => true,
            Some("oldest") => false,
            Some(_) => {
                return Err(AppError::field(
                    crate::error::ErrorCode::InvalidQuery,
                    "order",
                    "must be newest or oldest",
                ))
            }
        };
        let after = q.cursor.as_deref().map(decode_cursor).transpose()?;
        let from = q
            .from
            .as_deref()
            .map(|t| query_time("from", t))
            .transpose()?;
        let to = q.to.as_deref().map(|t| query_time("to", t)).transpose()?;
        if let (Some(f), Some(t)) = (from, to) {
            if f > t {
                return Err(AppError::field(
                    crate::error::ErrorCode::InvalidQuery,
                    "from",
                    "must not be after to",
                ));
            }
        }
        let outcome = match &q.outcome {
            Some(o) => {
                let v: serde_json::Value = serde_json::from_str(o)
                    .unwrap_or_else(|_| serde_json::Value::String(o.clone()));
                let text = String::from_utf8(crate::register::projections::vault::canonical(&v)?)
                    .map_err(AppError::internal)?;
                Some(projections::decisions::output_digest(&text))
            }
            None => None,
        };
        Ok(projections::trail::TrailFilter {
            model_version: q.model_version,
            subject: q.subject,
            from,
            to,
            outcome,
            labelled: q.labelled,
            newest_first,
            after,
            limit: limit_of(q.limit)?,
        })
    }
}

/// One page of a system's trail as readers see it: the published decisions the filter
/// selects, and the cursor of the next page (the API's route and the console's).
pub fn trail_page(
    state: &State,
    system: &str,
    filter: &projections::trail::TrailFilter,
) -> Result<DecisionPage, AppError> {
    let published = state.ledger.latest().size;
    let (indices, last) = projections::trail::trail(&**state.ledger.store(), system, filter)?;
    let decisions = indices
        .into_iter()
        .filter(|i| *i < published)
        .map(|i| decision_view(state, i))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(DecisionPage {
        decisions,
        next_cursor: last.map(encode_cursor),
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubjectQuery {
    pub cursor: Option<String>,
    /// 1 to 1000 (default 100).
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SubjectDecisions {
    pub subject_ref: String,
    /// What was decided about the subject, by which model, with which human oversight.
    pub decisions: Vec<DecisionView>,
    pub next_cursor: Option<String>,
}

/// Every decision about one data subject, across systems (GDPR Art. 15 and 22), in
/// order of the time of decision (officer, auditor). Empty once the subject's data is erased.
#[utoipa::path(tag = "decisions", security(("bearer" = [])), params(("subject_ref" = String, Path), SubjectQuery), responses(
    (status = 200, body = SubjectDecisions),
    (status = 400, body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/subjects/{subject_ref}/decisions")]
async fn by_subject(
    state: State,
    _caller: Caller<DecisionReaders>,
    subject: actix_web::web::Path<String>,
    q: super::body::Query<SubjectQuery>,
) -> Result<HttpResponse, AppError> {
    let subject = subject_in_path(subject)?;
    let (decisions, next_cursor) =
        subject_page(&state, &subject, q.cursor.as_deref(), limit_of(q.limit)?)?;
    Ok(HttpResponse::Ok().json(SubjectDecisions {
        subject_ref: subject,
        decisions: decisions.into_iter().map(|(_, d)| d).collect(),
        next_cursor,
    }))
}

/// A decision with the id of its system.
pub type SystemDecision = (String, DecisionView);

/// One page of a subject's decisions across systems, each with its system, from the
/// page after `cursor`; and the cursor of the next page. Only published decisions. (The
/// subject route and the console's subject access.)
pub fn subject_page(
    state: &State,
    subject: &str,
    cursor: Option<&str>,
    limit: usize,
) -> Result<(Vec<SystemDecision>, Option<String>), AppError> {
    let after = cursor.map(decode_cursor).transpose()?;
    let (rows, last) =
        projections::trail::by_subject(&**state.ledger.store(), subject, after, limit)?;
    let published = state.ledger.latest().size;
    let page = rows
        .into_iter()
        .filter(|(i, _)| *i < published)
        .map(|(i, system)| decision_view(state, i).map(|d| (system, d)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((page, last.map(encode_cursor)))
}

/// The audit bundle of one decision (officer, auditor): the decision, its model
/// version's registration, the reviews up to it, the tests they relied on, the
/// deployment, the register revision in force, each with an inclusion proof against one
/// signed checkpoint, the openings of its personal fields and a summary.
/// `veritrail verify-bundle FILE --key VKEY` checks it offline.
#[utoipa::path(tag = "decisions", security(("bearer" = [])), params(("system_id" = String, Path), ("decision_id" = String, Path)), responses(
    (status = 200, body = crate::audit::Bundle),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/systems/{system_id}/decisions/{decision_id}/audit")]
async fn audit_bundle(
    state: State,
    _caller: Caller<DecisionReaders>,
    path: actix_web::web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (id, decision_id) = path.into_inner();
    Ok(HttpResponse::Ok().json(crate::audit::build(
        &state.ledger,
        &id,
        &decision_id,
        state.witness_policy.as_deref(),
    )?))
}

/// A subject reference in a path, checked as the body's field is (length, characters).
fn subject_in_path(p: actix_web::web::Path<String>) -> Result<String, AppError> {
    let subject = p.into_inner();
    crate::register::validate_text("subject_ref", &subject, 256, true)
        .map_err(|e| e.recoded(crate::error::ErrorCode::InvalidPath))?;
    Ok(subject)
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErasureRequest {
    /// Why (e.g. "GDPR Art. 17 request #4711").
    pub reason: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErasureDone {
    /// How many decisions' personal data was shredded.
    pub erased: u64,
    /// Their log indices; the entries and their proofs are unchanged.
    pub decisions: Vec<u64>,
    pub receipt: ReceiptView,
}

/// Erase a data subject's personal data across systems (officer): values and salts
/// leave the vault (and, once this answers, the disk); one `subject.erased` entry
/// records the commitments and the count. Refused under legal hold.
#[utoipa::path(tag = "decisions", security(("bearer" = [])), params(("subject_ref" = String, Path)), request_body = ErasureRequest, responses(
    (status = 200, body = ErasureDone),
    (status = 404, description = "Nothing held about this subject", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "legal-hold", body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/subjects/{subject_ref}/erasure")]
async fn erase(
    state: State,
    caller: Caller<Officers>,
    subject: actix_web::web::Path<String>,
    body: Json<ErasureRequest>,
) -> Result<HttpResponse, AppError> {
    crate::register::validate_text("reason", &body.0.reason, 2000, true)?;
    let done = erase_subject(
        &state,
        &caller.name,
        subject_in_path(subject)?,
        body.0.reason,
    )
    .await?;
    Ok(HttpResponse::Ok().json(done))
}

/// Erase a subject's personal data (the API's route and the console's): the erasure
/// entries, then the vault rewritten so the values leave the disk before this returns.
pub async fn erase_subject(
    state: &State,
    actor: &str,
    subject_ref: String,
    reason: String,
) -> Result<ErasureDone, AppError> {
    let receipt = state
        .ledger
        .append(
            actor,
            crate::register::commands::erasure::erase_command(subject_ref, reason),
        )
        .await?;
    use crate::register::projections::erasure::read_parts;
    use crate::register::projections::erasure::ErasureBody;
    let parts = read_parts(&state.ledger, receipt.index, |b: &ErasureBody| b.parts)?;
    // Rewrite the vault so the shredded values leave the disk before we say so.
    let store = state.ledger.store().clone();
    actix_web::web::block(move || store.vault_compact())
        .await
        .map_err(AppError::internal)??;
    Ok(ErasureDone {
        erased: parts.iter().map(|b| b.count).sum(),
        decisions: parts.into_iter().flat_map(|b| b.decisions).collect(),
        receipt: receipt.into(),
    })
}
