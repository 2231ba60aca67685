//! Rebuilding the projections from the log alone (`veritrail reindex`).

use std::ops::ControlFlow;

use super::chain::Chain;
use super::entry::{self, RawEntry};
use super::projector::{Applied, Projections};
use super::staging::{split_writes, Staging, Writes, NS_PROJECTION};
use super::LedgerError;
use crate::storage::{try_for_each_entry, CommitBatch, Store, StoreError};

/// Staged projection rows are written to the store in pieces of this many.
const FLUSH_ROWS: usize = 50_000;

/// Rebuild every projection from the log alone: clear them, then check each entry (in
/// index order) with [`Chain`], the same check as verify and recovery, and apply
/// `projections` to it with a [`Staging`] that sees the projections as they stood just
/// before that entry. The chain must end at the stored head's last leaf. Must not run
/// beside a writer. Returns the number of entries.
pub fn rebuild_projections<E>(
    store: &dyn Store,
    projections: &Projections<E>,
) -> Result<u64, RebuildError<E>> {
    let head = store
        .head()?
        .ok_or_else(|| LedgerError::Invalid("no log here".into()))?;
    store.clear_projections()?;
    let mut overlay = Writes::new();
    let mut chain = Chain::new();
    try_for_each_entry(store, 0, |i, bytes| -> Result<_, RebuildError<E>> {
        if i >= head.size {
            return Ok(ControlFlow::Break(()));
        }
        let inconsistent = |reason: String| LedgerError::Inconsistent { index: i, reason };
        chain
            .check(i, bytes)
            .map_err(|e| inconsistent(e.to_string()))?;
        let e: RawEntry = entry::decode(bytes).map_err(|e| inconsistent(e.to_string()))?;
        let mut s = Staging::detached(store, &overlay, i, e.time, &e.actor);
        let applied = Applied {
            kind: &e.kind,
            system: e.system.as_deref(),
            body: &e.body,
            index: i,
            time: e.time,
            actor: &e.actor,
        };
        projections
            .project(&applied, &mut s)
            .map_err(|err| RebuildError::Apply(i, err))?;
        // Only projections are rebuilt; the vault is not derived from the log.
        let (own, _vault) = split_writes(s.into_writes());
        overlay.extend(
            own.into_iter()
                .map(|(k, v)| ([&[NS_PROJECTION][..], &k].concat(), v)),
        );
        if overlay.len() >= FLUSH_ROWS {
            flush(store, std::mem::take(&mut overlay))?;
        }
        Ok(ControlFlow::Continue(()))
    })?;
    if chain.next() != head.size || (head.size > 0 && chain.last_leaf() != Some(head.last_leaf)) {
        return Err(LedgerError::Inconsistent {
            index: chain.next(),
            reason: "the entries do not end at the stored head".into(),
        }
        .into());
    }
    flush(store, overlay)?;
    Ok(head.size)
}

/// Write staged projection rows to the store.
fn flush(store: &dyn Store, overlay: Writes) -> Result<(), StoreError> {
    let (projections, _) = split_writes(overlay);
    store.commit(CommitBatch {
        projections,
        ..Default::default()
    })
}

/// Why a rebuild of the projections stopped.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError<E> {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("applying entry {0} failed")]
    Apply(u64, E),
}

impl<E> From<StoreError> for RebuildError<E> {
    fn from(e: StoreError) -> Self {
        RebuildError::Ledger(e.into())
    }
}
