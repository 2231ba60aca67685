//! Erasure (GDPR Art. 17) and retention, by crypto-shredding: a subject's values and
//! salts leave the vault, one entry records what was erased (commitments and counts,
//! never the plain reference), and every entry, leaf hash and proof stays valid.
//! Systems under legal hold keep their data: erasure is refused, retention skips them.
use crate::error::{AppError, ErrorCode};
use crate::log::{Command, Draft, Prepared, Staging};
use crate::register::projections::decisions::SubjectRow;
use crate::register::projections::erasure::{
    read_parts, ErasureBody, RetentionBody, RETENTION_EXPIRED, SUBJECT_ERASED,
};
use crate::register::projections::vault::{self, DecisionVault};
use crate::register::projections::{keys, outcomes, systems};
use crate::register::{to_value, uncbor};

/// Append entries that belong to no system, in order.
fn append_all(kind: &str, bodies: Vec<serde_cbor::Value>) -> Result<Prepared, AppError> {
    let drafts = bodies
        .into_iter()
        .map(|body| Draft {
            kind: kind.to_owned(),
            system: None,
            body,
        })
        .collect();
    crate::register::append(drafts)
}

/// Decisions one `subject.erased` entry lists (an index and a 32-byte commitment each:
/// about 43 KB, inside the 64 KiB an entry may hold); more go into further entries.
pub const ERASED_PER_ENTRY: usize = 1_000;
/// Decisions one `retention.expired` entry lists (an index each: about 45 KB).
pub const EXPIRED_PER_ENTRY: usize = 5_000;
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
        s.vault_delete(keys::subject_key(sub, row.occurred_at, index));
    }
    s.vault_delete(keys::expiry_key(row.expires_at, index));
    outcomes::shred_texts(s, index)?;
    Ok(Some(commitment.to_vec()))
}

/// Erase everything the vault holds about `subject_ref`, across systems.
pub fn erase_command(subject_ref: String, reason: String) -> Command<AppError> {
    Box::new(move |s| {
        let rows = s.vault_scan(&keys::subject_prefix(&subject_ref))?;
        if rows.is_empty() {
            return Err(AppError::new(
                ErrorCode::SubjectNotFound,
                "no personal data of this subject is held (never recorded, or already erased)",
            ));
        }
        let mut held = std::collections::BTreeSet::new();
        for (_, v) in &rows {
            let row: SubjectRow = uncbor(v)?;
            if systems::load(s, &row.system)?.spec.legal_hold {
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
            let (_, index) = keys::subject_position(k)
                .ok_or_else(|| AppError::internal("malformed subject index key"))?;
            if let Some(c) = shred(s, index)? {
                decisions.push(index);
                commitments.push(serde_bytes::ByteBuf::from(c));
            }
        }
        let parts = decisions.len().div_ceil(ERASED_PER_ENTRY) as u64;
        let bodies = decisions
            .chunks(ERASED_PER_ENTRY)
            .zip(commitments.chunks(ERASED_PER_ENTRY))
            .zip(1..)
            .map(|((decisions, commitments), part)| {
                to_value(&ErasureBody {
                    decisions: decisions.to_vec(),
                    subject_commitments: commitments.to_vec(),
                    count: decisions.len() as u64,
                    reason: reason.clone(),
                    part,
                    parts,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        append_all(SUBJECT_ERASED, bodies)
    })
}

/// Most decisions shredded by one retention run (the next run takes the rest).
pub const RETENTION_BATCH: usize = 10_000;

/// Shred the personal data whose retention ended before `now`, except under legal hold.
pub fn retention_command(now: u64) -> Command<AppError> {
    Box::new(move |s| {
        let hi = keys::expiry_key(now, 0);
        let rows = s.vault_scan(keys::expiry_prefix())?;
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
            if systems::load(s, &row.system)?.spec.legal_hold {
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
        let parts = decisions.len().div_ceil(EXPIRED_PER_ENTRY) as u64;
        let bodies = decisions
            .chunks(EXPIRED_PER_ENTRY)
            .zip(1..)
            .map(|(decisions, part)| {
                to_value(&RetentionBody {
                    decisions: decisions.to_vec(),
                    count: decisions.len() as u64,
                    before: now,
                    part,
                    parts,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        append_all(RETENTION_EXPIRED, bodies)
    })
}

/// Run retention once: append what expired (if anything) and compact the vault.
/// Returns how many decisions were shredded.
pub async fn run_retention(
    ledger: &crate::log::Ledger<AppError>,
    now: u64,
) -> Result<u64, AppError> {
    match ledger
        .append(crate::tokens::RETENTION_ACTOR, retention_command(now))
        .await
    {
        Ok(r) => {
            let count: u64 = read_parts(ledger, r.index, |b: &RetentionBody| b.parts)?
                .iter()
                .map(|b| b.count)
                .sum();
            let store = ledger.store().clone();
            tokio::task::spawn_blocking(move || store.vault_compact())
                .await
                .map_err(AppError::internal)??;
            tracing::info!(
                count,
                entry = r.index,
                "retention: shredded personal data past its retention period"
            );
            Ok(count)
        }
        Err(crate::log::AppendError::Rejected(e)) if e.code == ErrorCode::Conflict => Ok(0),
        Err(e) => Err(e.into()),
    }
}
