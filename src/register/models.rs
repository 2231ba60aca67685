//! Model versions and their lifecycle: registration, compliance reviews (four eyes),
//! test records, deployment (the review gate) and retirement.
//!
//! `pending_review` → `approved` / `rejected` / `changes_requested` → `deployed` → `retired`.
//! The latest review decides; a rejected version can never be deployed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::systems::{self, SystemRecord};
use super::{append, cbor, draft, from_value, get, parse_sha256, validate_ident, validate_text};
use super::{
    REVIEW_RECORDED, TEST_RECORDED, VERSION_DEPLOYED, VERSION_REGISTERED, VERSION_RETIRED,
};
use crate::error::{AppError, ErrorCode};
use crate::log::{Command, Staging};
use crate::storage::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VersionStatus {
    PendingReview,
    Approved,
    Rejected,
    ChangesRequested,
    Deployed,
    Retired,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainingData {
    /// Where the training data is (a URI or dataset name).
    #[serde(rename = "ref")]
    pub reference: String,
    /// SHA-256 of the training data snapshot, lowercase hex.
    pub sha256: String,
}

/// A model version as a pipeline registers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VersionSpec {
    pub version: String,
    /// SHA-256 of the model artifact, lowercase hex.
    pub artifact_sha256: String,
    pub training_data: TrainingData,
    #[serde(default)]
    pub changelog: String,
    #[serde(default)]
    pub parent_version: Option<String>,
    /// A substantial modification (EU AI Act Art. 43(4)) needs a new conformity assessment.
    #[serde(default)]
    pub substantial_modification: bool,
}

impl VersionSpec {
    pub fn validate(&self) -> Result<(), AppError> {
        validate_ident("version", &self.version, 64)?;
        parse_sha256("artifact_sha256", &self.artifact_sha256)?;
        validate_text(
            "training_data.ref",
            &self.training_data.reference,
            1000,
            true,
        )?;
        parse_sha256("training_data.sha256", &self.training_data.sha256)?;
        validate_text("changelog", &self.changelog, 20_000, false)?;
        if let Some(p) = &self.parent_version {
            validate_ident("parent_version", p, 64)?;
            if p == &self.version {
                return Err(AppError::invalid(
                    "parent_version",
                    "a version cannot be its own parent",
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewOutcome {
    Approved,
    Rejected,
    ChangesRequested,
}

/// An answer in a review checklist: yes/no or a short text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Answer {
    Yes(bool),
    Text(String),
}

/// A compliance review of a model version (officer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewSpec {
    pub outcome: ReviewOutcome,
    /// Why; required.
    pub rationale: String,
    /// Ids of the test records the review relied on.
    #[serde(default)]
    pub evidence: Vec<u64>,
    /// Checklist answers, e.g. `{"conformity_assessment": true, "dpia_ref": "DPIA-2026-14"}`.
    #[serde(default)]
    pub checklist: BTreeMap<String, Answer>,
}

impl ReviewSpec {
    pub fn validate(&self) -> Result<(), AppError> {
        validate_text("rationale", &self.rationale, 20_000, true)?;
        if self.evidence.len() > 1000 {
            return Err(AppError::invalid("evidence", "at most 1000 test ids"));
        }
        for (k, v) in &self.checklist {
            validate_ident(&format!("checklist.{k}"), k, 64)?;
            if let Answer::Text(t) = v {
                validate_text(&format!("checklist.{k}"), t, 2000, false)?;
            }
        }
        Ok(())
    }

    /// Whether the checklist records a conformity assessment (AI Act Art. 43).
    pub fn records_conformity_assessment(&self) -> bool {
        match self.checklist.get("conformity_assessment") {
            Some(Answer::Yes(b)) => *b,
            Some(Answer::Text(t)) => !t.trim().is_empty(),
            None => false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct VersionBody {
    version: String,
    #[serde(with = "serde_bytes")]
    artifact_sha256: Vec<u8>,
    training_data_ref: String,
    #[serde(with = "serde_bytes")]
    training_data_sha256: Vec<u8>,
    changelog: String,
    parent_version: Option<String>,
    substantial_modification: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ReviewBody {
    version: String,
    #[serde(flatten)]
    review: ReviewSpec,
}

/// The body of `test.recorded` (written by `crate::evaluators`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TestBody {
    pub version: String,
    pub evaluator: String,
    pub kind: String,
    /// Parameters as evaluated (defaults filled in); non-integer numbers as decimal text.
    pub params: serde_cbor::Value,
    /// SHA-256 of the RFC 8785 canonical JSON of the input.
    #[serde(with = "serde_bytes")]
    pub input_sha256: Vec<u8>,
    /// Figures; non-integer numbers as decimal text (shortest round-trip form).
    pub figures: serde_cbor::Value,
    pub passed: bool,
    /// For results computed elsewhere: the tool, its version and the report's digest.
    pub external: Option<ExternalRef>,
}

pub use crate::evaluators::ExternalRef;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DeployBody {
    version: String,
    environment: String,
    note: String,
    replaces: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RetireBody {
    version: String,
    replaced_by: Option<String>,
    reason: String,
}

/// A deployment request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploySpec {
    #[serde(default = "default_env")]
    pub environment: String,
    #[serde(default)]
    pub note: String,
}

fn default_env() -> String {
    "production".into()
}

impl DeploySpec {
    pub fn validate(&self) -> Result<(), AppError> {
        validate_ident("environment", &self.environment, 64)?;
        validate_text("note", &self.note, 4000, false)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ReviewRef {
    pub id: u64,
    pub time: u64,
    pub reviewer: String,
    pub outcome: ReviewOutcome,
    pub conformity_assessment: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct TestRef {
    pub id: u64,
    pub time: u64,
    pub kind: String,
    pub passed: bool,
}

/// The projection row of one model version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VersionRecord {
    pub spec: VersionSpec,
    pub status: VersionStatus,
    pub registered_by: String,
    pub registered_index: u64,
    pub registered_time: u64,
    pub reviews: Vec<ReviewRef>,
    /// The latest test of each evaluator.
    pub latest_tests: BTreeMap<String, TestRef>,
    pub deployed_index: Option<u64>,
    pub deployed_time: Option<u64>,
    pub environment: Option<String>,
    pub retired_index: Option<u64>,
    pub retired_time: Option<u64>,
}

impl VersionRecord {
    pub fn latest_review(&self) -> Option<&ReviewRef> {
        self.reviews.last()
    }
}

pub(crate) use super::keys::{test_key, test_prefix, version_key, version_prefix};

pub fn load(s: &Staging<'_>, system: &str, version: &str) -> Result<VersionRecord, AppError> {
    get(s, &version_key(system, version))?.ok_or_else(|| {
        AppError::new(
            ErrorCode::ModelVersionNotFound,
            format!("no model version {version:?} of {system:?}"),
        )
    })
}

pub fn register_command(system: String, spec: VersionSpec) -> Command<AppError> {
    Box::new(move |s| {
        systems::load_active(s, &system)?;
        if s.get(&version_key(&system, &spec.version))?.is_some() {
            return Err(AppError::field(
                ErrorCode::AlreadyExists,
                "version",
                format!("version {:?} is already registered", spec.version),
            ));
        }
        if let Some(p) = &spec.parent_version {
            if s.get(&version_key(&system, p))?.is_none() {
                return Err(AppError::invalid(
                    "parent_version",
                    format!("no version {p:?} of {system:?}"),
                ));
            }
        }
        let body = VersionBody {
            version: spec.version.clone(),
            artifact_sha256: parse_sha256("artifact_sha256", &spec.artifact_sha256)?.to_vec(),
            training_data_ref: spec.training_data.reference.clone(),
            training_data_sha256: parse_sha256("training_data.sha256", &spec.training_data.sha256)?
                .to_vec(),
            changelog: spec.changelog.clone(),
            parent_version: spec.parent_version.clone(),
            substantial_modification: spec.substantial_modification,
        };
        append(s, vec![draft(VERSION_REGISTERED, &system, &body)?])
    })
}

pub fn review_command(system: String, version: String, review: ReviewSpec) -> Command<AppError> {
    Box::new(move |s| {
        systems::load(s, &system)?;
        let rec = load(s, &system, &version)?;
        match rec.status {
            VersionStatus::Rejected => {
                return Err(AppError::new(
                    ErrorCode::ModelVersionRejected,
                    format!("version {version:?} was rejected; register a new version"),
                ))
            }
            VersionStatus::Deployed | VersionStatus::Retired => {
                return Err(AppError::new(
                    ErrorCode::ReviewNotAllowed,
                    format!(
                        "version {version:?} is {:?}; review a new version instead",
                        rec.status
                    )
                    .to_lowercase(),
                ))
            }
            _ => {}
        }
        if review.outcome == ReviewOutcome::Approved && s.actor() == rec.registered_by {
            return Err(AppError::new(
                ErrorCode::SelfApproval,
                format!(
                    "{:?} registered version {version:?} and so cannot approve it",
                    rec.registered_by
                ),
            ));
        }
        for (i, id) in review.evidence.iter().enumerate() {
            if s.get(&test_key(&system, &version, *id))?.is_none() {
                return Err(AppError::invalid(
                    format!("evidence[{i}]"),
                    format!("{id} is not a test record of version {version:?}"),
                ));
            }
        }
        append(
            s,
            vec![draft(
                REVIEW_RECORDED,
                &system,
                &ReviewBody { version, review },
            )?],
        )
    })
}

/// Record a test whose figures were already computed (outside the writer).
pub fn test_command(system: String, body: TestBody) -> Command<AppError> {
    Box::new(move |s| {
        systems::load(s, &system)?;
        load(s, &system, &body.version)?;
        append(s, vec![draft(TEST_RECORDED, &system, &body)?])
    })
}

/// The review gate: deploy only an approved version whose required tests pass; the
/// version it replaces is retired by its own entry in the same batch.
pub fn deploy_command(system: String, version: String, spec: DeploySpec) -> Command<AppError> {
    Box::new(move |s| {
        let sys = systems::load_active(s, &system)?;
        let rec = load(s, &system, &version)?;
        match rec.status {
            VersionStatus::Approved => {}
            VersionStatus::Rejected => {
                return Err(AppError::new(
                    ErrorCode::ModelVersionRejected,
                    format!("version {version:?} was rejected"),
                ))
            }
            VersionStatus::Deployed => {
                return Err(AppError::new(
                    ErrorCode::Conflict,
                    format!("version {version:?} is already deployed"),
                ))
            }
            VersionStatus::Retired => {
                return Err(AppError::new(
                    ErrorCode::ModelVersionRetired,
                    format!("version {version:?} is retired"),
                ))
            }
            VersionStatus::PendingReview | VersionStatus::ChangesRequested => {
                return Err(AppError::new(
                    ErrorCode::ModelVersionNotApproved,
                    format!(
                        "version {version:?} has no approving compliance review (status {})",
                        status_name(rec.status)
                    ),
                ))
            }
        }
        // Four eyes, checked again here: the approving reviewer did not register it.
        if rec
            .latest_review()
            .is_none_or(|r| r.reviewer == rec.registered_by)
        {
            return Err(AppError::new(
                ErrorCode::SelfApproval,
                "the approving review was made by the version's registrant",
            ));
        }
        check_evidence_reviewed(&rec)?;
        check_required_tests(&sys, &rec)?;
        let mut drafts = Vec::new();
        if let Some(old) = sys.deployed.clone().filter(|o| *o != version) {
            drafts.push(draft(
                VERSION_RETIRED,
                &system,
                &RetireBody {
                    version: old,
                    replaced_by: Some(version.clone()),
                    reason: "superseded".into(),
                },
            )?);
        }
        drafts.push(draft(
            VERSION_DEPLOYED,
            &system,
            &DeployBody {
                version,
                environment: spec.environment,
                note: spec.note,
                replaces: sys.deployed.clone(),
            },
        )?);
        append(s, drafts)
    })
}

/// The approving review must be of the evidence that stands at deployment: a test
/// recorded for the version after it (a failing one, or a pipeline's self-attested
/// `external` one) needs a new review first.
fn check_evidence_reviewed(rec: &VersionRecord) -> Result<(), AppError> {
    let Some(review) = rec.latest_review() else {
        return Ok(());
    };
    let later: Vec<String> = rec
        .latest_tests
        .iter()
        .filter(|(_, t)| t.id > review.id)
        .map(|(evaluator, t)| format!("{evaluator} (test {})", t.id))
        .collect();
    if later.is_empty() {
        return Ok(());
    }
    Err(AppError::new(
        ErrorCode::EvidenceAfterReview,
        format!(
            "tests recorded after the approving review (entry {}): {}; review the version again",
            review.id,
            later.join(", ")
        ),
    ))
}

fn check_required_tests(sys: &SystemRecord, rec: &VersionRecord) -> Result<(), AppError> {
    let missing: Vec<&str> = sys
        .spec
        .policy
        .required_tests
        .iter()
        .filter(|t| !rec.latest_tests.contains_key(*t))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(AppError::new(
            ErrorCode::RequiredTestsMissing,
            format!(
                "the policy requires tests not recorded for this version: {}",
                missing.join(", ")
            ),
        ));
    }
    let failing: Vec<String> = sys
        .spec
        .policy
        .required_tests
        .iter()
        .filter_map(|t| {
            rec.latest_tests
                .get(t)
                .filter(|r| !r.passed)
                .map(|r| format!("{t} (test {})", r.id))
        })
        .collect();
    if !failing.is_empty() {
        return Err(AppError::new(
            ErrorCode::RequiredTestsFailing,
            format!(
                "the latest required tests did not pass: {}",
                failing.join(", ")
            ),
        ));
    }
    Ok(())
}

pub fn status_name(s: VersionStatus) -> &'static str {
    match s {
        VersionStatus::PendingReview => "pending_review",
        VersionStatus::Approved => "approved",
        VersionStatus::Rejected => "rejected",
        VersionStatus::ChangesRequested => "changes_requested",
        VersionStatus::Deployed => "deployed",
        VersionStatus::Retired => "retired",
    }
}

pub(crate) fn project(
    kind: &str,
    system: &str,
    body: &serde_cbor::Value,
    index: u64,
    time: u64,
    actor: &str,
    s: &mut Staging<'_>,
) -> Result<(), AppError> {
    match kind {
        VERSION_REGISTERED => {
            let b: VersionBody = from_value(body)?;
            let spec = VersionSpec {
                version: b.version.clone(),
                artifact_sha256: hex::encode(&b.artifact_sha256),
                training_data: TrainingData {
                    reference: b.training_data_ref,
                    sha256: hex::encode(&b.training_data_sha256),
                },
                changelog: b.changelog,
                parent_version: b.parent_version,
                substantial_modification: b.substantial_modification,
            };
            let rec = VersionRecord {
                spec,
                status: VersionStatus::PendingReview,
                registered_by: actor.to_owned(),
                registered_index: index,
                registered_time: time,
                reviews: Vec::new(),
                latest_tests: BTreeMap::new(),
                deployed_index: None,
                deployed_time: None,
                environment: None,
                retired_index: None,
                retired_time: None,
            };
            s.put(version_key(system, &b.version), cbor(&rec));
        }
        REVIEW_RECORDED => {
            let b: ReviewBody = from_value(body)?;
            let mut rec = load(s, system, &b.version)?;
            rec.reviews.push(ReviewRef {
                id: index,
                time,
                reviewer: actor.to_owned(),
                outcome: b.review.outcome,
                conformity_assessment: b.review.records_conformity_assessment(),
            });
            rec.status = match b.review.outcome {
                ReviewOutcome::Approved => VersionStatus::Approved,
                ReviewOutcome::Rejected => VersionStatus::Rejected,
                ReviewOutcome::ChangesRequested => VersionStatus::ChangesRequested,
            };
            s.put(version_key(system, &b.version), cbor(&rec));
        }
        TEST_RECORDED => {
            let b: TestBody = from_value(body)?;
            let mut rec = load(s, system, &b.version)?;
            let r = TestRef {
                id: index,
                time,
                kind: b.kind.clone(),
                passed: b.passed,
            };
            rec.latest_tests.insert(b.evaluator.clone(), r.clone());
            s.put(version_key(system, &b.version), cbor(&rec));
            s.put(test_key(system, &b.version, index), cbor(&r));
        }
        VERSION_DEPLOYED => {
            let b: DeployBody = from_value(body)?;
            let mut rec = load(s, system, &b.version)?;
            rec.status = VersionStatus::Deployed;
            rec.deployed_index = Some(index);
            rec.deployed_time = Some(time);
            rec.environment = Some(b.environment);
            s.put(version_key(system, &b.version), cbor(&rec));
            let mut sys = systems::load(s, system)?;
            sys.deployed = Some(b.version);
            systems::put(s, system, &sys);
        }
        VERSION_RETIRED => {
            let b: RetireBody = from_value(body)?;
            let mut rec = load(s, system, &b.version)?;
            rec.status = VersionStatus::Retired;
            rec.retired_index = Some(index);
            rec.retired_time = Some(time);
            s.put(version_key(system, &b.version), cbor(&rec));
            let mut sys = systems::load(s, system)?;
            if sys.deployed.as_deref() == Some(b.version.as_str()) {
                sys.deployed = None;
            }
            systems::put(s, system, &sys);
        }
        _ => {}
    }
    Ok(())
}

// Reads, outside the writer.

pub fn read(store: &dyn Store, system: &str, version: &str) -> Result<VersionRecord, AppError> {
    let raw = store.get(&version_key(system, version))?.ok_or_else(|| {
        AppError::new(
            ErrorCode::ModelVersionNotFound,
            format!("no model version {version:?} of {system:?}"),
        )
    })?;
    super::uncbor(&raw)
}

pub fn list(store: &dyn Store, system: &str) -> Result<Vec<VersionRecord>, AppError> {
    store
        .scan(&version_prefix(system), None, false, usize::MAX)?
        .into_iter()
        .map(|(_, v)| super::uncbor(&v))
        .collect()
}

/// Ids of the test records of a version, oldest first.
pub fn test_ids(store: &dyn Store, system: &str, version: &str) -> Result<Vec<u64>, AppError> {
    Ok(store
        .scan(&test_prefix(system, version), None, false, usize::MAX)?
        .into_iter()
        .filter_map(|(k, _)| {
            k.get(k.len() - 8..)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
        })
        .collect())
}
