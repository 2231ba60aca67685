//! Model versions and their lifecycle: registration, compliance reviews (four eyes),
//! test records, deployment (the review gate) and retirement.
//!
//! `pending_review` → `approved` / `rejected` / `changes_requested` → `deployed` → `retired`.
//! The latest review decides; a rejected version can never be deployed.

use crate::error::{AppError, ErrorCode};
use crate::log::{Applied, Staging};
use crate::register::{cbor, from_value, get, parse_sha256, validate_ident, validate_text};
use crate::register::{
    REVIEW_RECORDED, TEST_RECORDED, VERSION_DEPLOYED, VERSION_REGISTERED, VERSION_RETIRED,
};
use crate::storage::Store;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

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
pub(crate) struct VersionBody {
    pub(crate) version: String,
    #[serde(with = "serde_bytes")]
    pub(crate) artifact_sha256: Vec<u8>,
    pub(crate) training_data_ref: String,
    #[serde(with = "serde_bytes")]
    pub(crate) training_data_sha256: Vec<u8>,
    pub(crate) changelog: String,
    pub(crate) parent_version: Option<String>,
    pub(crate) substantial_modification: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ReviewBody {
    pub(crate) version: String,
    #[serde(flatten)]
    pub(crate) review: ReviewSpec,
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
pub(crate) struct DeployBody {
    pub(crate) version: String,
    pub(crate) environment: String,
    pub(crate) note: String,
    pub(crate) replaces: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RetireBody {
    pub(crate) version: String,
    pub(crate) replaced_by: Option<String>,
    pub(crate) reason: String,
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
pub(crate) use crate::register::projections::keys::test_key;
use crate::register::projections::keys::{test_prefix, version_key, version_prefix};
use crate::register::projections::systems;
pub fn load(s: &Staging<'_>, system: &str, version: &str) -> Result<VersionRecord, AppError> {
    get(s, &version_key(system, version))?.ok_or_else(|| {
        AppError::new(
            ErrorCode::ModelVersionNotFound,
            format!("no model version {version:?} of {system:?}"),
        )
    })
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
pub(crate) fn project(e: &Applied<'_>, s: &mut Staging<'_>) -> Result<(), AppError> {
    let Applied {
        kind,
        body,
        index,
        time,
        actor,
        ..
    } = *e;
    let Some(system) = e.system else {
        return Ok(());
    };
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
    crate::register::uncbor(&raw)
}
pub fn list(store: &dyn Store, system: &str) -> Result<Vec<VersionRecord>, AppError> {
    store
        .scan(&version_prefix(system), None, false, usize::MAX)?
        .into_iter()
        .map(|(_, v)| crate::register::uncbor(&v))
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
