//! Rebuilding the projections from the log alone (`veritrail reindex`).

use std::ops::ControlFlow;

use super::entry;
use super::staging::{split_writes, Staging, Writes, NS_PROJECTION};
use super::LedgerError;
use crate::storage::{try_for_each_entry, CommitBatch, Store, StoreError};

/// Staged projection rows are written to the store in pieces of this many.
const FLUSH_ROWS: usize = 50_000;

/// Rebuild every projection from the log alone: clear them, then hand each entry (in
/// index order) to `f` with a [`Staging`] that sees the projections as they stood just
/// before that entry. Must not run beside a writer. Returns the number of entries.
pub fn rebuild_projections<E>(
    store: &dyn Store,
    mut f: impl FnMut(&[u8], &mut Staging<'_>) -> Result<(), E>,
) -> Result<u64, RebuildError<E>> {
    let head = store
        .head()?
        .ok_or_else(|| LedgerError::Invalid("no log here".into()))?;
    store.clear_projections()?;
    let mut overlay = Writes::new();
    let mut n = 0u64;
    try_for_each_entry(store, 0, |i, bytes| -> Result<_, RebuildError<E>> {
        if i >= head.size {
            return Ok(ControlFlow::Break(()));
        }
        let h = entry::decode_header(bytes).map_err(|e| LedgerError::Inconsistent {
            index: i,
            reason: e.to_string(),
        })?;
        let mut s = Staging::detached(store, &overlay, i, h.time, &h.actor);
        f(bytes, &mut s).map_err(|e| RebuildError::Apply(i, e))?;
        // Only projections are rebuilt; the vault is not derived from the log.
        let (own, _vault) = split_writes(s.into_writes());
        overlay.extend(
            own.into_iter()
                .map(|(k, v)| ([&[NS_PROJECTION][..], &k].concat(), v)),
        );
        n += 1;
        if overlay.len() >= FLUSH_ROWS {
            flush(store, std::mem::take(&mut overlay))?;
        }
        Ok(ControlFlow::Continue(()))
    })?;
    flush(store, overlay)?;
    Ok(n)
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
