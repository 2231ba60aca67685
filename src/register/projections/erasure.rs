//! What an erasure or a retention run records: the entry kinds and bodies (commitments
//! and counts, never a plain reference), and the reader that gathers a run's parts. No
//! entry of these kinds changes a projection row: the vault rows they shred are written
//! by the command beside them.

use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// An entry's place among the entries one erasure or retention run appended (1-based).
fn one() -> u64 {
    1
}

/// The entries one erasure or retention run appended, ending at `last`, decoded: one
/// for entries written before runs were split (they have no `parts`).
pub fn read_parts<B: for<'de> Deserialize<'de>>(
    ledger: &crate::log::Ledger<AppError>,
    last: u64,
    parts: impl Fn(&B) -> u64,
) -> Result<Vec<B>, AppError> {
    let read = |index: u64| -> Result<B, AppError> {
        let bytes = ledger
            .entry(index)?
            .ok_or_else(|| AppError::internal(format!("entry {index} missing")))?;
        let e: crate::log::entry::Entry<B> =
            crate::log::entry::decode(&bytes).map_err(AppError::internal)?;
        Ok(e.body)
    };
    let tail = read(last)?;
    let n = parts(&tail).max(1);
    let first = last
        .checked_sub(n - 1)
        .ok_or_else(|| AppError::internal("an entry names more parts than precede it"))?;
    let mut out = (first..last).map(read).collect::<Result<Vec<_>, _>>()?;
    out.push(tail);
    Ok(out)
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
    /// This entry's place among the erasure's entries, and how many there are.
    #[serde(default = "one")]
    pub part: u64,
    #[serde(default = "one")]
    pub parts: u64,
}

/// The body of `retention.expired`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RetentionBody {
    pub decisions: Vec<u64>,
    pub count: u64,
    /// Values whose retention ended before this time (unix µs) were shredded.
    pub before: u64,
    /// This entry's place among the run's entries, and how many there are.
    #[serde(default = "one")]
    pub part: u64,
    #[serde(default = "one")]
    pub parts: u64,
}
