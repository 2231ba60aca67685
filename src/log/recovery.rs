//! Recovery on open: the stored head, checkpoint, tiles and tail checked against each
//! other before the writer starts.

use std::ops::ControlFlow;

use super::chain::Chain;
use super::merkle::{self, NodeSource};
use super::note::{Checkpoint, NoteVerifier};
use super::sequencer::{self, Published, WriterState};
use super::tiles::TileReader;
use super::LedgerError;
use crate::storage::{try_for_each_entry, Head, Store};

fn bad(index: u64, reason: impl Into<String>) -> LedgerError {
    LedgerError::Inconsistent {
        index,
        reason: reason.into(),
    }
}

/// Recovery on open: the head must agree with the last signed checkpoint, the tiles
/// must reproduce its root, and the tail written since the previous checkpoint must
/// chain and hash to what the tiles hold. Entries beyond the head (never acknowledged)
/// are discarded.
pub(crate) fn recover(
    store: &dyn Store,
    verifier: &NoteVerifier,
    head: Head,
) -> Result<(WriterState, Published), LedgerError> {
    let last = head.size.saturating_sub(1);
    let note = check_head(store, verifier, head)?;
    let removed = store.truncate_entries(head.size)?;
    if removed > 0 {
        tracing::warn!(
            removed,
            "discarded entry batches beyond the head (never acknowledged)"
        );
    }
    let mut reader = TileReader::new(|id| store.tile(id));
    let root = merkle::root(&mut reader, head.size).map_err(|e| bad(last, e.to_string()))?;
    if root != head.root {
        return Err(bad(
            last,
            "stored tree hashes do not reproduce the signed root",
        ));
    }
    check_tail(store, &mut reader, head)?;
    let state = WriterState::load(store, head)?;
    Ok((
        state,
        Published {
            size: head.size,
            root: head.root,
            note,
            signed_at: sequencer::now_micros(),
        },
    ))
}

/// The head must be what the last stored checkpoint signs; returns that checkpoint.
fn check_head(
    store: &dyn Store,
    verifier: &NoteVerifier,
    head: Head,
) -> Result<String, LedgerError> {
    let last = head.size.saturating_sub(1);
    let note = store.checkpoint(head.size)?.ok_or_else(|| {
        bad(
            last,
            format!("no checkpoint stored for the head's size {}", head.size),
        )
    })?;
    let cp = Checkpoint::open(&note, verifier).map_err(|e| {
        bad(
            last,
            format!("last checkpoint (size {}) does not verify: {e}", head.size),
        )
    })?;
    if cp.size != head.size || cp.root != head.root {
        return Err(bad(last, "head disagrees with the last signed checkpoint"));
    }
    Ok(note)
}

/// The tail since the previous checkpoint: chain, order, and leaf hashes equal to the
/// stored tree's leaves; it must end at the head, with the head's last leaf.
fn check_tail<R: NodeSource>(
    store: &dyn Store,
    reader: &mut R,
    head: Head,
) -> Result<(), LedgerError>
where
    R::Error: std::fmt::Display,
{
    let start = store.previous_checkpoint(head.size)?.unwrap_or(0);
    let mut chain = if start == 0 {
        Chain::new()
    } else {
        let prev = reader
            .node(0, start - 1)
            .map_err(|e| bad(start - 1, e.to_string()))?;
        // The time of the entry before is not read: the tail's own order is checked.
        Chain::resume(start, Some(prev), 0)
    };
    try_for_each_entry(store, start, |i, bytes| {
        if i >= head.size {
            return Ok(ControlFlow::Break(()));
        }
        let link = chain.check(i, bytes).map_err(|e| bad(i, e.to_string()))?;
        let stored = reader.node(0, i).map_err(|e| bad(i, e.to_string()))?;
        if link.leaf != stored {
            return Err(bad(i, "entry bytes do not hash to the stored leaf"));
        }
        Ok(ControlFlow::Continue(()))
    })?;
    let seen = chain.next();
    if seen != head.size {
        return Err(bad(
            seen,
            format!("entries end at {seen} but the head says {}", head.size),
        ));
    }
    if head.size > 0 && chain.last_leaf() != Some(head.last_leaf) {
        return Err(bad(head.size - 1, "last leaf disagrees with the head"));
    }
    Ok(())
}
