//! The compliance register, event-sourced on the ledger: AI systems and their revisions,
//! periodic register reviews, model versions, compliance reviews, test records,
//! deployments and decisions. Each change is one entry `kind`; the projectors of
//! [`projections::PROJECTS`] derive the register's current state and its indexes from entries, live
//! (the log applies them to every draft) and in `reindex`.
//!
//! This module knows nothing of HTTP. Commands validate against the projections (the
//! review gate runs here, inside the single writer) and return the entry to append.

pub mod commands;
pub mod projections;
pub mod reports;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::AppError;
use crate::log::{Draft, Drafts, Prepared, Staging};

pub const SYSTEM_REGISTERED: &str = "system.registered";
pub const SYSTEM_REVISED: &str = "system.revised";
pub const REGISTER_REVIEWED: &str = "register.reviewed";
pub const VERSION_REGISTERED: &str = "model_version.registered";
pub const REVIEW_RECORDED: &str = "review.recorded";
pub const TEST_RECORDED: &str = "test.recorded";
pub const VERSION_DEPLOYED: &str = "model_version.deployed";
pub const VERSION_RETIRED: &str = "model_version.retired";
pub const DECISION_RECORDED: &str = "decision.recorded";

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

/// What a command returns to append `drafts`, in order (at least one); the log
/// projects them in the same batch.
pub(crate) fn append(drafts: Vec<Draft>) -> Result<Prepared, AppError> {
    Drafts::new(drafts)
        .map(Prepared::Append)
        .ok_or_else(|| AppError::internal("a command appended nothing"))
}

pub(crate) fn draft<T: Serialize>(kind: &str, system: &str, body: &T) -> Result<Draft, AppError> {
    Ok(Draft {
        kind: kind.to_owned(),
        system: Some(system.to_owned()),
        body: to_value(body)?,
    })
}

// Times as callers read and write them (shared by every layer).
pub use crate::fields::{parse_time, rfc3339};

pub use crate::fields::{parse_sha256, validate_ident, validate_slug, validate_text};
