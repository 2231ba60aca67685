//! The compliance register: AI systems, their revisions and periodic reviews.

use actix_web::{get, post, put, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{Caller, Officers, Readers};
use super::body::{Json, Query};
use super::{ReceiptView, State};
use crate::error::{AppError, ErrorCode, Problem};
use crate::register::projections::systems::RegisterReview;
use crate::register::projections::systems::RegisterReviewOutcome;
use crate::register::projections::systems::SystemRecord;
use crate::register::projections::systems::SystemSpec;
use crate::register::rfc3339;
use crate::register::{commands, projections};

pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(register)
        .service(list)
        .service(get_one)
        .service(revise)
        .service(review);
}

const DAY: u64 = 86_400_000_000;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LastReview {
    pub index: u64,
    pub at: String,
    pub reviewer: String,
    pub outcome: RegisterReviewOutcome,
}

/// SystemSpec's schema without its `additionalProperties: false` (from
/// `deny_unknown_fields`, right for a request): flattened into an answer, it would
/// forbid the answer's own fields.
fn spec_fields() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::{schema::Schema, RefOr};
    let mut s = <SystemSpec as utoipa::PartialSchema>::schema();
    if let RefOr::T(Schema::Object(o)) = &mut s {
        o.additional_properties = None;
    }
    s
}

/// A register entry as it stands.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SystemView {
    #[serde(flatten)]
    #[schema(schema_with = spec_fields)]
    pub spec: SystemSpec,
    pub revision: u32,
    pub registered_at: String,
    pub registered_by: String,
    /// Log index of `system.registered`.
    pub registered_index: u64,
    pub revised_at: String,
    /// Log index of the entry of this revision.
    pub revised_index: u64,
    pub last_review: Option<LastReview>,
    /// When the next periodic review of this entry is due.
    pub review_due_at: String,
    /// The model version in service, if any.
    pub deployed_version: Option<String>,
}

impl From<SystemRecord> for SystemView {
    fn from(r: SystemRecord) -> Self {
        let last = r
            .last_review
            .as_ref()
            .map(|l| l.time)
            .unwrap_or(r.registered_time);
        Self {
            review_due_at: rfc3339(last + u64::from(r.spec.review_interval_days) * DAY),
            last_review: r.last_review.map(|l| LastReview {
                index: l.index,
                at: rfc3339(l.time),
                reviewer: l.reviewer,
                outcome: l.outcome,
            }),
            spec: r.spec,
            revision: r.revision,
            registered_at: rfc3339(r.registered_time),
            registered_by: r.registered_by,
            registered_index: r.registered_index,
            revised_at: rfc3339(r.revised_time),
            revised_index: r.revised_index,
            deployed_version: r.deployed,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SystemWritten {
    pub system: SystemView,
    pub receipt: ReceiptView,
}

/// Register an AI system (officer). A `prohibited` risk class is refused (422).
#[utoipa::path(tag = "register", security(("bearer" = [])), request_body = SystemSpec, responses(
    (status = 201, body = SystemWritten),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "Already registered", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "Prohibited AI practice", body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/systems")]
async fn register(
    state: State,
    caller: Caller<Officers>,
    body: Json<SystemSpec>,
) -> Result<HttpResponse, AppError> {
    let spec = body.0;
    spec.validate()?;
    let id = spec.id.clone();
    let receipt = state
        .ledger
        .append(&caller.name, commands::systems::register_command(spec))
        .await?;
    let system = projections::systems::read(&**state.ledger.store(), &id)?.into();
    Ok(HttpResponse::Created().json(SystemWritten {
        system,
        receipt: receipt.into(),
    }))
}

/// Every AI system in the register.
#[utoipa::path(tag = "register", security(("bearer" = [])), responses((status = 200, body = Vec<SystemView>)))]
#[get("/v1/systems")]
async fn list(state: State, _caller: Caller<Readers>) -> Result<HttpResponse, AppError> {
    let out: Vec<SystemView> = projections::systems::list(&**state.ledger.store())?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(HttpResponse::Ok().json(out))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AtQuery {
    /// RFC 3339 time: answer the register entry as it stood then, from the log.
    pub at: Option<String>,
}

/// The register entry as it stood at a time, read back from its log entry.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SystemAsOf {
    #[serde(flatten)]
    #[schema(schema_with = spec_fields)]
    pub spec: SystemSpec,
    pub revision: u32,
    pub as_of: String,
    /// Log index of the revision in force then.
    pub revision_index: u64,
    pub revised_at: String,
}

/// What `GET /v1/systems/{system_id}` answers: the entry as it stands, or with `?at=`
/// the revision in force then.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum SystemAnswer {
    Current(SystemView),
    AsOf(SystemAsOf),
}

/// One AI system; with `?at=`, the revision in force at that time.
#[utoipa::path(tag = "register", security(("bearer" = [])), params(("system_id" = String, Path), AtQuery), responses(
    (status = 200, description = "Current state (SystemView), or with ?at= the revision then (SystemAsOf)", body = SystemAnswer),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/systems/{system_id}")]
async fn get_one(
    state: State,
    _caller: Caller<Readers>,
    id: actix_web::web::Path<String>,
    q: Query<AtQuery>,
) -> Result<HttpResponse, AppError> {
    let store = &**state.ledger.store();
    let current = projections::systems::read(store, &id)?;
    let Some(at) = q.at.as_deref() else {
        return Ok(HttpResponse::Ok().json(SystemView::from(current)));
    };
    let at_us = super::body::query_time("at", at)?;
    let (rev, body) = projections::systems::revision_at(store, &id, at_us)?.ok_or_else(|| {
        AppError::new(
            ErrorCode::SystemNotFound,
            format!("AI system {:?} was not yet registered at {at}", id.as_str()),
        )
    })?;
    Ok(HttpResponse::Ok().json(SystemAsOf {
        spec: body.spec,
        revision: body.revision,
        as_of: at.to_owned(),
        revision_index: rev.index,
        revised_at: rfc3339(rev.time),
    }))
}

/// Revise a register entry (officer): a new revision; nothing is overwritten. Set `status` to `retired` to retire the system.
#[utoipa::path(tag = "register", security(("bearer" = [])), params(("system_id" = String, Path)), request_body = SystemSpec, responses(
    (status = 200, body = SystemWritten),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "Nothing changes", body = Problem, content_type = "application/problem+json"),
))]
#[put("/v1/systems/{system_id}")]
async fn revise(
    state: State,
    caller: Caller<Officers>,
    id: actix_web::web::Path<String>,
    body: Json<SystemSpec>,
) -> Result<HttpResponse, AppError> {
    let spec = body.0;
    spec.validate()?;
    let id = id.into_inner();
    let receipt = state
        .ledger
        .append(
            &caller.name,
            commands::systems::revise_command(id.clone(), spec),
        )
        .await?;
    let system = projections::systems::read(&**state.ledger.store(), &id)?.into();
    Ok(HttpResponse::Ok().json(SystemWritten {
        system,
        receipt: receipt.into(),
    }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RegisterReviewed {
    pub system_id: String,
    pub outcome: RegisterReviewOutcome,
    pub reviewer: String,
    pub next_due_at: String,
    pub receipt: ReceiptView,
}

/// Record the periodic (default quarterly) review of a register entry (officer).
#[utoipa::path(tag = "register", security(("bearer" = [])), params(("system_id" = String, Path)), request_body = RegisterReview, responses(
    (status = 201, body = RegisterReviewed),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/systems/{system_id}/register-reviews")]
async fn review(
    state: State,
    caller: Caller<Officers>,
    id: actix_web::web::Path<String>,
    body: Json<RegisterReview>,
) -> Result<HttpResponse, AppError> {
    let r = body.0;
    crate::register::validate_text("notes", &r.notes, 20_000, false)?;
    let id = id.into_inner();
    let outcome = r.outcome;
    let receipt = state
        .ledger
        .append(
            &caller.name,
            commands::systems::review_command(id.clone(), r),
        )
        .await?;
    let sys = projections::systems::read(&**state.ledger.store(), &id)?;
    let view = SystemView::from(sys);
    Ok(HttpResponse::Created().json(RegisterReviewed {
        system_id: id,
        outcome,
        reviewer: caller.name,
        next_due_at: view.review_due_at,
        receipt: receipt.into(),
    }))
}
