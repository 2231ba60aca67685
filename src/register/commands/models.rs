//! A model version's lifecycle as commands: registration, compliance reviews (four eyes:
//! the reviewer is not who registered it), test records and deployment, which passes the
//! review gate only with an approving review of the evidence and the required tests.

use crate::error::{AppError, ErrorCode};
use crate::log::Command;
use crate::register::projections::keys::version_key;
use crate::register::projections::models::{
    load, status_name, test_key, DeployBody, DeploySpec, RetireBody, ReviewBody, ReviewOutcome,
    ReviewSpec, TestBody, VersionBody, VersionRecord, VersionSpec, VersionStatus,
};
use crate::register::projections::systems;
use crate::register::projections::systems::SystemRecord;
use crate::register::{
    append, draft, parse_sha256, REVIEW_RECORDED, TEST_RECORDED, VERSION_DEPLOYED,
    VERSION_REGISTERED, VERSION_RETIRED,
};
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
        append(vec![draft(VERSION_REGISTERED, &system, &body)?])
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
        append(vec![draft(
            REVIEW_RECORDED,
            &system,
            &ReviewBody { version, review },
        )?])
    })
}

/// Record a test whose figures were already computed (outside the writer).
pub fn test_command(system: String, body: TestBody) -> Command<AppError> {
    Box::new(move |s| {
        systems::load(s, &system)?;
        load(s, &system, &body.version)?;
        append(vec![draft(TEST_RECORDED, &system, &body)?])
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
        append(drafts)
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
