//! The evidence one decision leaves for the failure modes read over decision windows
//! (FM-02 feedback loops, FM-03 the human backstop, FM-05 integration boundaries, FM-07
//! consistency): a row per decision, by version and log index (of the trail family, so
//! the sled driver packs it as it packs the trail), kept in the decision's own batch when the system's policy has a failure-mode key (`outcomes`,
//! `blind_review`, `feedback`, `integration` or `consistency`). A window is the latest
//! `window` rows of a version: one range read, so the report never scans the log.
//!
//! Rows hold digests and small numbers only: no personal value (the equivalence key is
//! the caller's opaque group id, kept as a digest all the same).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::AppError;
use crate::log::Staging;
use crate::register::projections::keys::{evidence_key, evidence_prefix};
use crate::register::projections::vault;
use crate::register::{cbor_packed, uncbor};
use crate::storage::Store;

/// How a crossing of an integration boundary went (`integration.status`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum CrossingStatus {
    Ok,
    Timeout,
    Fallback,
    Error,
    Retried,
}

/// What FM-05 keeps of one crossing (a decision's `integration`, or a boundary event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Crossing {
    pub upstream: String,
    pub downstream: String,
    pub contract_version: String,
    pub status: CrossingStatus,
    pub latency_ms: u64,
}

impl Crossing {
    /// `upstream → downstream`, the name of the boundary in the report.
    pub fn boundary(&self) -> String {
        format!("{} → {}", self.upstream, self.downstream)
    }
}

/// The evidence row of one decision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// When the decision was recorded (the entry's time, unix µs).
    pub time: u64,
    /// The digest of the output's prediction field (see `decisions::value_digest`).
    #[serde(default)]
    pub prediction: Option<serde_bytes::ByteBuf>,
    /// The output was chosen by randomised exploration.
    #[serde(default)]
    pub exploration: bool,
    /// Whether the counterfactual's prediction differs from the output's (when the
    /// decision carries a counterfactual with the prediction field).
    #[serde(default)]
    pub counterfactual_differs: Option<bool>,
    /// The ordinary human review's time, when one took place.
    #[serde(default)]
    pub review_ms: Option<u64>,
    /// The writer selected the decision for blind review.
    #[serde(default)]
    pub blind: bool,
    #[serde(default)]
    pub crossing: Option<Crossing>,
    /// The first 16 bytes of SHA-256 of the equivalence key.
    #[serde(default)]
    pub equivalence: Option<serde_bytes::ByteBuf>,
    /// `None`: no validation step; else whether it passed.
    #[serde(default)]
    pub validated: Option<bool>,
}

/// The digest an equivalence key is grouped by.
pub fn equivalence_digest(key: &str) -> serde_bytes::ByteBuf {
    serde_bytes::ByteBuf::from(Sha256::digest(key.as_bytes())[..16].to_vec())
}

pub(crate) fn put(s: &mut Staging<'_>, system: &str, version: &str, index: u64, e: &Evidence) {
    s.put(evidence_key(system, version, index), cbor_packed(e));
}

/// The latest `n` evidence rows of `version` of `system` with a log index below
/// `before`, oldest first, with their indices.
pub fn latest(
    store: &dyn Store,
    system: &str,
    version: &str,
    before: u64,
    n: usize,
) -> Result<Vec<(u64, Evidence)>, AppError> {
    let prefix = evidence_prefix(system, version);
    let lo = prefix.clone();
    let hi = evidence_key(system, version, before);
    let mut rows = store
        .range(&lo, &hi, true, n)?
        .into_iter()
        .map(|(k, v)| {
            let index = k
                .get(prefix.len()..prefix.len() + 8)
                .and_then(|t| <[u8; 8]>::try_from(t).ok())
                .ok_or_else(|| AppError::internal("malformed evidence key"))?;
            Ok((u64::from_be_bytes(index), uncbor::<Evidence>(&v)?))
        })
        .collect::<Result<Vec<_>, AppError>>()?;
    rows.reverse();
    Ok(rows)
}

/// The size of the log at time `at` (unix µs): the entries recorded by then, found by
/// bisecting the entries' times (they never decrease).
pub fn size_at(store: &dyn Store, at: u64) -> Result<u64, AppError> {
    let size = store.head()?.map_or(0, |h| h.size);
    let time_of = |i: u64| -> Result<u64, AppError> {
        let bytes = store
            .entries(i, i + 1)?
            .pop()
            .ok_or_else(|| AppError::internal(format!("entry {i} missing")))?;
        Ok(crate::log::entry::decode::<serde_cbor::Value>(&bytes)
            .map_err(AppError::internal)?
            .time)
    };
    let (mut lo, mut hi) = (0u64, size);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if time_of(mid)? <= at {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// The digest a prediction and a label are compared by: the first 16 bytes of SHA-256
/// of the value's RFC 8785 canonical JSON.
pub fn value_digest(v: &serde_json::Value) -> Result<Vec<u8>, AppError> {
    Ok(Sha256::digest(vault::canonical(v)?)[..16].to_vec())
}
