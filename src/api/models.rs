//! Model versions, their compliance reviews, test records and deployments.

use std::collections::BTreeMap;

use actix_web::{get, post, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::auth::{Caller, ModelWriters, Officers, Pipelines, Readers};
use super::body::Json;
use super::{ReceiptView, State};
use crate::error::{AppError, Problem};
use crate::evaluators::{self, json_to_cbor, TestKind};
use crate::log::entry::{self, cbor_to_json};
use crate::register::projections::models::DeploySpec;
use crate::register::projections::models::ExternalRef;
use crate::register::projections::models::ReviewOutcome;
use crate::register::projections::models::ReviewRef;
use crate::register::projections::models::ReviewSpec;
use crate::register::projections::models::TestBody;
use crate::register::projections::models::TestRef;
use crate::register::projections::models::TrainingData;
use crate::register::projections::models::VersionRecord;
use crate::register::projections::models::VersionSpec;
use crate::register::projections::models::VersionStatus;
use crate::register::rfc3339;
use crate::register::{commands, projections};

pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(register)
        .service(list)
        .service(get_one)
        .service(review)
        .service(record_test)
        .service(list_tests)
        .service(deploy)
        .service(list_evaluators);
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReviewView {
    /// Log index of the `review.recorded` entry.
    pub id: u64,
    pub at: String,
    pub reviewer: String,
    pub outcome: ReviewOutcome,
    pub conformity_assessment: bool,
}

impl From<&ReviewRef> for ReviewView {
    fn from(r: &ReviewRef) -> Self {
        Self {
            id: r.id,
            at: rfc3339(r.time),
            reviewer: r.reviewer.clone(),
            outcome: r.outcome,
            conformity_assessment: r.conformity_assessment,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LatestTest {
    pub id: u64,
    pub at: String,
    pub kind: String,
    pub passed: bool,
}

impl From<&TestRef> for LatestTest {
    fn from(t: &TestRef) -> Self {
        Self {
            id: t.id,
            at: rfc3339(t.time),
            kind: t.kind.clone(),
            passed: t.passed,
        }
    }
}

/// A model version as the register holds it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VersionView {
    pub version: String,
    pub artifact_sha256: String,
    pub training_data: TrainingData,
    pub changelog: String,
    pub parent_version: Option<String>,
    pub substantial_modification: bool,
    pub status: VersionStatus,
    pub registered_by: String,
    pub registered_at: String,
    pub registered_index: u64,
    pub reviews: Vec<ReviewView>,
    /// The latest test of each evaluator.
    pub latest_tests: BTreeMap<String, LatestTest>,
    pub environment: Option<String>,
    pub deployed_index: Option<u64>,
    pub deployed_at: Option<String>,
    pub retired_index: Option<u64>,
    pub retired_at: Option<String>,
}

impl From<VersionRecord> for VersionView {
    fn from(r: VersionRecord) -> Self {
        Self {
            version: r.spec.version,
            artifact_sha256: r.spec.artifact_sha256,
            training_data: r.spec.training_data,
            changelog: r.spec.changelog,
            parent_version: r.spec.parent_version,
            substantial_modification: r.spec.substantial_modification,
            status: r.status,
            registered_by: r.registered_by,
            registered_at: rfc3339(r.registered_time),
            registered_index: r.registered_index,
            reviews: r.reviews.iter().map(Into::into).collect(),
            latest_tests: r
                .latest_tests
                .iter()
                .map(|(k, v)| (k.clone(), v.into()))
                .collect(),
            environment: r.environment,
            deployed_index: r.deployed_index,
            deployed_at: r.deployed_time.map(rfc3339),
            retired_index: r.retired_index,
            retired_at: r.retired_time.map(rfc3339),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VersionWritten {
    pub model_version: VersionView,
    pub receipt: ReceiptView,
}

/// Register a model version (pipeline, officer). It starts `pending_review`; whoever
/// registers it cannot approve it.
#[utoipa::path(tag = "models", security(("bearer" = [])), params(("system_id" = String, Path)), request_body = VersionSpec, responses(
    (status = 201, body = VersionWritten),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/systems/{system_id}/models")]
async fn register(
    state: State,
    caller: Caller<ModelWriters>,
    id: actix_web::web::Path<String>,
    body: Json<VersionSpec>,
) -> Result<HttpResponse, AppError> {
    let spec = body.0;
    spec.validate()?;
    let (id, version) = (id.into_inner(), spec.version.clone());
    let receipt = state
        .ledger
        .append(
            &caller.name,
            commands::models::register_command(id.clone(), spec),
        )
        .await?;
    let v = projections::models::read(&**state.ledger.store(), &id, &version)?;
    Ok(HttpResponse::Created().json(VersionWritten {
        model_version: v.into(),
        receipt: receipt.into(),
    }))
}

/// Every model version of a system.
#[utoipa::path(tag = "models", security(("bearer" = [])), params(("system_id" = String, Path)), responses(
    (status = 200, body = Vec<VersionView>),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/systems/{system_id}/models")]
async fn list(
    state: State,
    _caller: Caller<Readers>,
    id: actix_web::web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let store = &**state.ledger.store();
    crate::register::projections::systems::read(store, &id)?;
    let out: Vec<VersionView> = projections::models::list(store, &id)?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(HttpResponse::Ok().json(out))
}

/// One model version.
#[utoipa::path(tag = "models", security(("bearer" = [])), params(("system_id" = String, Path), ("version" = String, Path)), responses(
    (status = 200, body = VersionView),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/systems/{system_id}/models/{version}")]
async fn get_one(
    state: State,
    _caller: Caller<Readers>,
    path: actix_web::web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (id, version) = path.into_inner();
    Ok(
        HttpResponse::Ok().json(VersionView::from(projections::models::read(
            &**state.ledger.store(),
            &id,
            &version,
        )?)),
    )
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReviewWritten {
    pub id: u64,
    pub version: String,
    pub outcome: ReviewOutcome,
    pub reviewer: String,
    /// The version's status after this review.
    pub status: VersionStatus,
    pub receipt: ReceiptView,
}

/// Record a compliance review of a model version (officer). Four eyes: whoever registered
/// the version cannot approve it. The latest review decides; a rejection is final.
#[utoipa::path(tag = "models", security(("bearer" = [])), params(("system_id" = String, Path), ("version" = String, Path)), request_body = ReviewSpec, responses(
    (status = 201, body = ReviewWritten),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "self-approval, model-version-rejected, review-not-allowed", body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/systems/{system_id}/models/{version}/reviews")]
async fn review(
    state: State,
    caller: Caller<Officers>,
    path: actix_web::web::Path<(String, String)>,
    body: Json<ReviewSpec>,
) -> Result<HttpResponse, AppError> {
    let spec = body.0;
    spec.validate()?;
    let (id, version) = path.into_inner();
    let outcome = spec.outcome;
    let receipt = state
        .ledger
        .append(
            &caller.name,
            commands::models::review_command(id.clone(), version.clone(), spec),
        )
        .await?;
    let status = projections::models::read(&**state.ledger.store(), &id, &version)?.status;
    Ok(HttpResponse::Created().json(ReviewWritten {
        id: receipt.index,
        version,
        outcome,
        reviewer: caller.name,
        status,
        receipt: receipt.into(),
    }))
}

/// A test to record: a server-side evaluation, or (`evaluator: "external"`) a result computed elsewhere.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestRequest {
    /// An evaluator from `GET /v1/evaluators`.
    pub evaluator: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: Map<String, Value>,
    /// The evaluator's input (see `GET /v1/evaluators`). Only its digest is recorded.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub input: Option<Value>,
    /// For `external`: `{tool, tool_version, kind, metrics, passed, report_sha256}`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub result: Option<Value>,
}

/// A recorded test.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TestView {
    /// Log index of the `test.recorded` entry.
    pub id: u64,
    pub version: String,
    pub evaluator: String,
    pub kind: String,
    #[schema(value_type = Object)]
    pub params: Value,
    pub input_sha256: String,
    #[schema(value_type = Object)]
    pub figures: Value,
    pub passed: bool,
    pub external: Option<ExternalRef>,
    pub recorded_at: String,
    pub recorded_by: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TestWritten {
    pub id: u64,
    pub evaluator: String,
    pub kind: TestKind,
    #[schema(value_type = Object)]
    pub figures: Value,
    pub passed: bool,
    pub receipt: ReceiptView,
}

/// Record a bias or drift test of a model version (pipeline, officer). Server-side
/// evaluators compute the figures off the request threads; the input's digest, the
/// figures and the verdict become one `test.recorded` entry.
#[utoipa::path(tag = "tests", security(("bearer" = [])), params(("system_id" = String, Path), ("version" = String, Path)), request_body = TestRequest, responses(
    (status = 201, body = TestWritten),
    (status = 400, description = "Unknown evaluator or parameter, bad input", body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/systems/{system_id}/models/{version}/tests")]
async fn record_test(
    state: State,
    caller: Caller<ModelWriters>,
    path: actix_web::web::Path<(String, String)>,
    body: Json<TestRequest, 8>,
) -> Result<HttpResponse, AppError> {
    let (id, version) = path.into_inner();
    let req = body.0;
    let ev = evaluators::registry().get(&req.evaluator).ok_or_else(|| {
        AppError::invalid(
            "evaluator",
            format!(
                "unknown evaluator {:?}; see GET /v1/evaluators",
                req.evaluator
            ),
        )
    })?;
    let name = ev.name();
    let input = if name == "external" {
        if req.input.is_some() || !req.params.is_empty() {
            return Err(AppError::invalid(
                "input",
                "an external result goes in `result`, without `input` or `params`",
            ));
        }
        req.result
            .ok_or_else(|| AppError::invalid("result", "required for evaluator \"external\""))?
    } else {
        if req.result.is_some() {
            return Err(AppError::invalid(
                "result",
                "only evaluator \"external\" takes a result",
            ));
        }
        req.input
            .ok_or_else(|| AppError::invalid("input", format!("required for evaluator {name:?}")))?
    };
    // Check the version exists before spending CPU on a large input.
    projections::models::read(&**state.ledger.store(), &id, &version)?;
    let params = req.params;
    let (evaluation, input_sha256) = actix_web::web::block(move || -> Result<_, AppError> {
        let ev = evaluators::registry().get(name).expect("evaluator listed");
        let e = ev.evaluate(&params, &input)?;
        Ok((
            e,
            Sha256::digest(projections::vault::canonical(&input)?).to_vec(),
        ))
    })
    .await
    .map_err(AppError::internal)??;
    let body = TestBody {
        version,
        evaluator: name.to_owned(),
        kind: evaluation.kind.as_str().to_owned(),
        params: json_to_cbor(&Value::Object(evaluation.params.clone())),
        input_sha256,
        figures: json_to_cbor(&Value::Object(evaluation.figures.clone())),
        passed: evaluation.passed,
        external: evaluation.external.clone(),
    };
    let receipt = state
        .ledger
        .append(&caller.name, commands::models::test_command(id, body))
        .await?;
    Ok(HttpResponse::Created().json(TestWritten {
        id: receipt.index,
        evaluator: name.to_owned(),
        kind: evaluation.kind,
        figures: Value::Object(evaluation.figures),
        passed: evaluation.passed,
        receipt: receipt.into(),
    }))
}

/// Read a test record back from its entry.
pub fn test_view(state: &State, id: u64) -> Result<TestView, AppError> {
    let bytes = state
        .ledger
        .entry(id)?
        .ok_or_else(|| AppError::not_found(format!("no entry {id}")))?;
    let e: entry::Entry<TestBody> = entry::decode(&bytes).map_err(AppError::internal)?;
    Ok(TestView {
        id,
        version: e.body.version,
        evaluator: e.body.evaluator,
        kind: e.body.kind,
        params: cbor_to_json(&e.body.params),
        input_sha256: hex::encode(&e.body.input_sha256),
        figures: cbor_to_json(&e.body.figures),
        passed: e.body.passed,
        external: e.body.external,
        recorded_at: rfc3339(e.time),
        recorded_by: e.actor,
    })
}

/// Every test record of a model version, oldest first.
#[utoipa::path(tag = "tests", security(("bearer" = [])), params(("system_id" = String, Path), ("version" = String, Path)), responses(
    (status = 200, body = Vec<TestView>),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/systems/{system_id}/models/{version}/tests")]
async fn list_tests(
    state: State,
    _caller: Caller<Readers>,
    path: actix_web::web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (id, version) = path.into_inner();
    let store = &**state.ledger.store();
    projections::models::read(store, &id, &version)?;
    let out: Result<Vec<TestView>, AppError> = projections::models::test_ids(store, &id, &version)?
        .into_iter()
        .map(|t| test_view(&state, t))
        .collect();
    Ok(HttpResponse::Ok().json(out?))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeploymentWritten {
    pub version: String,
    pub environment: String,
    /// The version this deployment retired, if any.
    pub replaces: Option<String>,
    pub receipt: ReceiptView,
}

/// Put an approved version into service (pipeline): the review gate. Its latest review
/// must approve it (by someone other than its registrant) and the tests the system's
/// policy requires must be recorded and pass. The version it replaces is retired.
#[utoipa::path(tag = "models", security(("bearer" = [])), params(("system_id" = String, Path), ("version" = String, Path)), request_body = DeploySpec, responses(
    (status = 201, body = DeploymentWritten),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "model-version-not-approved, model-version-rejected, required-tests-missing, required-tests-failing, system-retired", body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/systems/{system_id}/models/{version}/deployments")]
async fn deploy(
    state: State,
    caller: Caller<Pipelines>,
    path: actix_web::web::Path<(String, String)>,
    body: Json<DeploySpec>,
) -> Result<HttpResponse, AppError> {
    let spec = body.0;
    spec.validate()?;
    let (id, version) = path.into_inner();
    let environment = spec.environment.clone();
    let receipt = state
        .ledger
        .append(
            &caller.name,
            commands::models::deploy_command(id, version.clone(), spec),
        )
        .await?;
    // What it replaced is what its entry says.
    let bytes = state
        .ledger
        .entry(receipt.index)?
        .ok_or_else(|| AppError::internal("deployment entry missing"))?;
    let e = entry::entry_json(&bytes).map_err(AppError::internal)?;
    let replaces = e["body"]["replaces"].as_str().map(str::to_owned);
    Ok(HttpResponse::Created().json(DeploymentWritten {
        version,
        environment,
        replaces,
        receipt: receipt.into(),
    }))
}

/// The pluggable bias and drift evaluators, with their parameters and defaults.
#[utoipa::path(tag = "tests", security(("bearer" = [])), responses((status = 200, body = Vec<evaluators::EvaluatorInfo>)))]
#[get("/v1/evaluators")]
async fn list_evaluators(_caller: Caller<Readers>) -> Result<HttpResponse, AppError> {
    let out: Vec<evaluators::EvaluatorInfo> =
        evaluators::registry().all().map(|e| e.info()).collect();
    Ok(HttpResponse::Ok().json(out))
}
