//! Erasure (GDPR Art. 17) and retention, by crypto-shredding: a subject's values and
//! salts leave the vault, one entry records what was erased (commitments and counts,
//! never the plain reference), and every entry, leaf hash and proof stays valid.
//! Systems under legal hold keep their data: erasure is refused, retention skips them.

use serde::{Deserialize, Serialize};

use super::decisions::SubjectRow;
use super::vault::{self, DecisionVault};
use super::{to_value, uncbor};
use crate::error::{AppError, ErrorCode};
use crate::log::{Command, Draft, Prepared, Staging};

/// Append one entry that belongs to no system.
fn append_one(
    s: &mut Staging<'_>,
    kind: &str,
    body: serde_cbor::Value,
) -> Result<Prepared, AppError> {
    crate::projection::append(
        s,
        vec![Draft {
            kind: kind.to_owned(),
            system: None,
            body,
        }],
    )
}

pub const SUBJECT_ERASED: &str = "subject.erased";
pub const RETENTION_EXPIRED: &str = "retention.expired";

/// The body of `subject.erased`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErasureBody {
    /// Log indices of the decisions whose personal data was shredded.
    pub decisions: Vec<u64>,
    /// The subject commitments of those decisions (as in their entries).
    pub subject_commitments: Vec<serde_bytes::ByteBuf>,
    pub count: u64,
    pub reason: String,
}

/// The body of `retention.expired`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RetentionBody {
    pub decisions: Vec<u64>,
    pub count: u64,
    /// Values whose retention ended before this time (unix µs) were shredded.
    pub before: u64,
}

fn index_of(key: &[u8]) -> Result<u64, AppError> {
    key.get(key.len().saturating_sub(8)..)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| AppError::internal("malformed vault key"))
}

/// Shred one decision's vault rows; returns its subject commitment.
fn shred(s: &mut Staging<'_>, index: u64) -> Result<Option<Vec<u8>>, AppError> {
    let Some(raw) = s.vault_get(&vault::decision_key(index))? else {
        return Ok(None);
    };
    let row: DecisionVault = uncbor(&raw)?;
    let subject = row.subject.json();
    let commitment = vault::commit(&row.subject.salt(), &subject)?;
    s.vault_delete(vault::decision_key(index));
    if let Some(sub) = subject.as_str() {
        s.vault_delete(vault::subject_key(sub, row.occurred_at, index));
    }
    s.vault_delete(vault::expiry_key(row.expires_at, index));
    Ok(Some(commitment.to_vec()))
}

/// Erase everything the vault holds about `subject_ref`, across systems.
pub fn erase_command(subject_ref: String, reason: String) -> Command<AppError> {
    Box::new(move |s| {
        let rows = s.vault_scan(&vault::subject_prefix(&subject_ref))?;
        if rows.is_empty() {
            return Err(AppError::new(
                ErrorCode::SubjectNotFound,
                "no personal data of this subject is held (never recorded, or already erased)",
            ));
        }
        let mut held = std::collections::BTreeSet::new();
        for (_, v) in &rows {
            let row: SubjectRow = uncbor(v)?;
            if super::systems::load(s, &row.system)?.spec.legal_hold {
                held.insert(row.system);
            }
        }
        if !held.is_empty() {
            let names: Vec<String> = held.into_iter().collect();
            return Err(AppError::new(
                ErrorCode::LegalHold,
                format!("under legal hold: {}; nothing was erased", names.join(", ")),
            ));
        }
        let mut decisions = Vec::new();
        let mut commitments = Vec::new();
        for (k, _) in &rows {
            let (_, index) = vault::subject_position(k)
                .ok_or_else(|| AppError::internal("malformed subject index key"))?;
            if let Some(c) = shred(s, index)? {
                decisions.push(index);
                commitments.push(serde_bytes::ByteBuf::from(c));
            }
        }
        let count = decisions.len() as u64;
        append_one(
            s,
            SUBJECT_ERASED,
            to_value(&ErasureBody {
                decisions,
                subject_commitments: commitments,
                count,
                reason,
            })?,
        )
    })
}

/// Most decisions shredded by one retention run (the next run takes the rest).
pub const RETENTION_BATCH: usize = 10_000;

/// Shred the personal data whose retention ended before `now`, except under legal hold.
pub fn retention_command(now: u64) -> Command<AppError> {
    Box::new(move |s| {
        let hi = vault::expiry_key(now, 0);
        let rows = s.vault_scan(super::keys::expiry_prefix())?;
        let mut decisions = Vec::new();
        for (k, _) in rows
            .into_iter()
            .take_while(|(k, _)| k.as_slice() < hi.as_slice())
        {
            if decisions.len() == RETENTION_BATCH {
                break;
            }
            let index = index_of(&k)?;
            let Some(raw) = s.vault_get(&vault::decision_key(index))? else {
                s.vault_delete(k);
                continue;
            };
            let row: DecisionVault = uncbor(&raw)?;
            if super::systems::load(s, &row.system)?.spec.legal_hold {
                continue;
            }
            if shred(s, index)?.is_some() {
                decisions.push(index);
            }
        }
        if decisions.is_empty() {
            return Err(AppError::new(
                ErrorCode::Conflict,
                "no personal data past its retention period",
            ));
        }
        let count = decisions.len() as u64;
        append_one(
            s,
            RETENTION_EXPIRED,
            to_value(&RetentionBody {
                decisions,
                count,
                before: now,
            })?,
        )
    })
}

/// Run retention once: append what expired (if anything) and compact the vault.
/// Returns how many decisions were shredded.
pub async fn run_retention(
    ledger: &crate::log::Ledger<AppError>,
    now: u64,
) -> Result<u64, AppError> {
    match ledger
        .append("veritrail-retention", retention_command(now))
        .await
    {
        Ok(r) => {
            let bytes = ledger
                .entry(r.index)?
                .ok_or_else(|| AppError::internal("retention entry missing"))?;
            let e: crate::log::entry::Entry<RetentionBody> =
                crate::log::entry::decode(&bytes).map_err(AppError::internal)?;
            let store = ledger.store().clone();
            tokio::task::spawn_blocking(move || store.vault_compact())
                .await
                .map_err(AppError::internal)??;
            tracing::info!(
                count = e.body.count,
                entry = r.index,
                "retention: shredded personal data past its retention period"
            );
            Ok(e.body.count)
        }
        Err(crate::log::AppendError::Rejected(e)) if e.code == ErrorCode::Conflict => Ok(0),
        Err(e) => Err(e.into()),
    }
}
