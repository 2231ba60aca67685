//! The compliance register, event-sourced on the ledger: AI systems and their revisions,
//! periodic register reviews, model versions, compliance reviews, test records,
//! deployments and decisions. Each change is one entry `kind`; [`project`] derives the
//! register's current state and its indexes from entries, live and in `reindex`.
//!
//! This module knows nothing of HTTP. Commands validate against the projections (the
//! review gate runs here, inside the single writer) and return the entry to append.

pub mod activity;
pub mod blind;
pub mod boundaries;
pub mod compliance;
pub mod decisions;
pub mod erasure;
pub mod evidence;
pub mod failure_modes;
pub mod findings;
pub mod incidents;
pub mod keys;
pub mod models;
pub mod outcomes;
pub mod systems;
pub mod vault;
pub mod windows;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::AppError;
use crate::log::{Draft, Staging};
pub(crate) use crate::projection::append;

pub const SYSTEM_REGISTERED: &str = "system.registered";
pub const SYSTEM_REVISED: &str = "system.revised";
pub const REGISTER_REVIEWED: &str = "register.reviewed";
pub const VERSION_REGISTERED: &str = "model_version.registered";
pub const REVIEW_RECORDED: &str = "review.recorded";
pub const TEST_RECORDED: &str = "test.recorded";
pub const VERSION_DEPLOYED: &str = "model_version.deployed";
pub const VERSION_RETIRED: &str = "model_version.retired";
pub const DECISION_RECORDED: &str = "decision.recorded";

/// Every entry kind this module writes.
pub const KINDS: &[&str] = &[
    SYSTEM_REGISTERED,
    SYSTEM_REVISED,
    REGISTER_REVIEWED,
    VERSION_REGISTERED,
    REVIEW_RECORDED,
    TEST_RECORDED,
    VERSION_DEPLOYED,
    VERSION_RETIRED,
    DECISION_RECORDED,
    erasure::SUBJECT_ERASED,
    erasure::RETENTION_EXPIRED,
    findings::OPENED,
    findings::RESOLVED,
    incidents::DECLARED,
    incidents::REPORTED,
    outcomes::OUTCOME,
    outcomes::CONTESTED,
    outcomes::RESOLVED,
    blind::RECORDED,
    boundaries::EVENT,
];

pub(crate) fn cbor<T: Serialize>(v: &T) -> Vec<u8> {
    serde_cbor::to_vec(v).expect("projection rows encode")
}

/// A row written once per decision, in CBOR's packed form (struct fields by number, not
/// by name: a quarter to half of these rows' bytes). `uncbor` reads both forms.
pub(crate) fn cbor_packed<T: Serialize>(v: &T) -> Vec<u8> {
    serde_cbor::ser::to_vec_packed(v).expect("projection rows encode")
}

pub(crate) fn uncbor<T: DeserializeOwned>(b: &[u8]) -> Result<T, AppError> {
    serde_cbor::from_slice(b)
        .map_err(|e| AppError::internal(format!("corrupt projection row: {e}")))
}

/// A typed body as a CBOR value. Encoded and decoded rather than `value::to_value`,
/// which drops CBOR tags (the decimal fractions of figures and confidence).
pub(crate) fn to_value<T: Serialize>(v: &T) -> Result<serde_cbor::Value, AppError> {
    let bytes = serde_cbor::to_vec(v).map_err(AppError::internal)?;
    serde_cbor::from_slice(&bytes).map_err(AppError::internal)
}

pub(crate) fn from_value<T: DeserializeOwned>(v: &serde_cbor::Value) -> Result<T, AppError> {
    serde_cbor::value::from_value(v.clone())
        .map_err(|e| AppError::internal(format!("entry body does not decode: {e}")))
}

/// The log entry at `index` with its body decoded as `B` (an internal error when the
/// log does not hold it or it does not decode).
pub fn entry_at<B: DeserializeOwned>(
    store: &dyn crate::storage::Store,
    index: u64,
) -> Result<crate::log::entry::Entry<B>, AppError> {
    let bytes = store
        .entries(index, index + 1)?
        .pop()
        .ok_or_else(|| AppError::internal(format!("entry {index} missing")))?;
    crate::log::entry::decode(&bytes).map_err(AppError::internal)
}

pub(crate) fn get<T: DeserializeOwned>(s: &Staging<'_>, key: &[u8]) -> Result<Option<T>, AppError> {
    s.get(key)?.map(|b| uncbor(&b)).transpose()
}

pub(crate) fn draft<T: Serialize>(kind: &str, system: &str, body: &T) -> Result<Draft, AppError> {
    Ok(Draft {
        kind: kind.to_owned(),
        system: Some(system.to_owned()),
        body: to_value(body)?,
    })
}

/// Apply one register entry to the projections.
pub fn project(
    kind: &str,
    system: Option<&str>,
    body: &serde_cbor::Value,
    index: u64,
    time: u64,
    actor: &str,
    s: &mut Staging<'_>,
) -> Result<(), AppError> {
    if kind == findings::OPENED || kind == findings::RESOLVED {
        return findings::project(kind, system, body, index, time, s);
    }
    let Some(system) = system else { return Ok(()) };
    match kind {
        SYSTEM_REGISTERED | SYSTEM_REVISED | REGISTER_REVIEWED => {
            systems::project(kind, system, body, index, time, actor, s)
        }
        VERSION_REGISTERED | REVIEW_RECORDED | TEST_RECORDED | VERSION_DEPLOYED
        | VERSION_RETIRED => models::project(kind, system, body, index, time, actor, s),
        incidents::DECLARED | incidents::REPORTED => {
            incidents::project(kind, system, body, index, actor, s)
        }
        DECISION_RECORDED => decisions::project(system, body, index, time, s),
        outcomes::OUTCOME | outcomes::CONTESTED | outcomes::RESOLVED => {
            outcomes::project(kind, system, body, index, time, actor, s)
        }
        blind::RECORDED => blind::project(system, body, index, time, s),
        boundaries::EVENT => boundaries::project(system, body, index, s),
        _ => Ok(()),
    }
}

// Times as callers read and write them (shared by every layer).
pub use crate::fields::{parse_time, rfc3339};

pub use crate::fields::{parse_sha256, validate_ident, validate_slug, validate_text};
