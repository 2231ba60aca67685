//! The offline full check of a log: every entry's envelope, index, `prev` link and
//! time order; every stored tile against the tiles rebuilt from the entries; every
//! stored checkpoint's signature and root; the head. It trusts nothing but the
//! verifier key and names the first bad index.

use std::time::Instant;

use super::entry::{self, FORMAT_VERSION};
use super::merkle::{self, Frontier, Hash};
use super::note::{Checkpoint, NoteVerifier};
use super::store::Store;
use super::tiles::{TileBuilder, TileId};
use super::LedgerError;

#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub entries: u64,
    pub checkpoints: u64,
    pub root: Hash,
    pub seconds: f64,
}

fn bad(index: u64, reason: impl Into<String>) -> LedgerError {
    LedgerError::Inconsistent {
        index,
        reason: reason.into(),
    }
}

/// Check the whole log in `store` with nothing but `verifier`.
pub fn verify_store(
    store: &dyn Store,
    verifier: &NoteVerifier,
) -> Result<VerifyReport, LedgerError> {
    let started = Instant::now();
    let head = store
        .head()?
        .ok_or_else(|| LedgerError::Invalid("no log here (no head record)".into()))?;
    // A shared store may be appended to by its nodes while this runs: the log is checked
    // as of the head read first, and what lies beyond it (entries, longer right-edge
    // tiles, later checkpoints) is left alone there, as long as tiles agree up to the head.
    let live = store.shared();
    let mut next_cp = store.checkpoints(0, 1)?.pop();
    let mut checked_cps = 0u64;
    let mut frontier = Frontier::new();
    let mut tiles = TileBuilder::new();
    let mut prev: Hash = [0; 32];
    let mut last_time = 0u64;
    let mut failure: Option<LedgerError> = None;

    // Check the stored checkpoint at `size` (if any), then move on to the next one.
    let check_cp =
        |size: u64, root: Hash, next_cp: &mut Option<(u64, String)>| -> Result<u64, LedgerError> {
            let Some((s, note)) = next_cp.as_ref() else {
                return Ok(0);
            };
            if *s != size {
                return Ok(0);
            }
            let cp = Checkpoint::open(note, verifier).map_err(|e| {
                bad(
                    size.saturating_sub(1),
                    format!("checkpoint at size {size}: {e}"),
                )
            })?;
            if cp.size != size {
                return Err(bad(
                    size.saturating_sub(1),
                    format!("checkpoint stored at size {size} claims size {}", cp.size),
                ));
            }
            if cp.root != root {
                return Err(bad(
                    size.saturating_sub(1),
                    format!("checkpoint at size {size} signs a root the entries do not produce"),
                ));
            }
            *next_cp = store.checkpoints(size + 1, 1)?.pop();
            Ok(1)
        };

    checked_cps += check_cp(0, merkle::empty_root(), &mut next_cp)?;
    let mut expected = 0u64;
    let compare_tiles = |tiles: &mut TileBuilder, at: u64| -> Result<(), LedgerError> {
        for (id, bytes) in tiles.take_dirty() {
            let stored = store.tile(id)?.unwrap_or_default();
            if !stored.starts_with(&bytes) {
                return Err(bad(
                    first_leaf_of(id, &bytes, &stored).min(at.saturating_sub(1)),
                    format!("stored tile {id:?} disagrees with the entries"),
                ));
            }
        }
        Ok(())
    };
    store.for_each_entry(0, &mut |i, bytes| {
        if live && i >= head.size {
            return false;
        }
        let res = (|| -> Result<(), LedgerError> {
            if i != expected {
                return Err(bad(
                    expected,
                    format!("entry {expected} is missing (next stored is {i})"),
                ));
            }
            if i >= head.size {
                return Err(bad(
                    i,
                    format!("entry beyond the head (size {})", head.size),
                ));
            }
            let h = entry::decode_header(bytes)
                .map_err(|e| bad(i, format!("entry does not decode: {e}")))?;
            if h.v != FORMAT_VERSION {
                return Err(bad(i, format!("unknown format version {}", h.v)));
            }
            if h.index != i {
                return Err(bad(
                    i,
                    format!("entry at position {i} claims index {}", h.index),
                ));
            }
            if h.prev_hash() != Some(prev) {
                return Err(bad(i, "prev is not the previous entry's leaf hash"));
            }
            if h.time < last_time {
                return Err(bad(i, "time goes backwards"));
            }
            last_time = h.time;
            let leaf = merkle::leaf_hash(bytes);
            prev = leaf;
            frontier.push(leaf);
            tiles.push(leaf);
            expected = i + 1;
            if expected % 256 == 0 {
                compare_tiles(&mut tiles, expected)?;
            }
            // Checkpoints are per batch: most entries are not at a checkpoint's size.
            if next_cp.as_ref().is_some_and(|(s, _)| *s == expected) {
                checked_cps += check_cp(expected, frontier.root(), &mut next_cp)?;
            }
            Ok(())
        })();
        match res {
            Ok(()) => true,
            Err(e) => {
                failure = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    if expected != head.size {
        return Err(bad(
            expected,
            format!("log ends at {expected} but its head says {}", head.size),
        ));
    }
    compare_tiles(&mut tiles, expected)?;
    // (On a shared store, right-edge tiles may have grown past the head since.)
    for (id, hashes) in tiles.partial_tiles() {
        let stored = store.tile(id)?.unwrap_or_default();
        let ours: Vec<u8> = hashes.concat();
        let fits = stored.len() == ours.len() || (live && stored.len() > ours.len());
        if !fits {
            return Err(bad(
                expected.saturating_sub(1),
                format!("stored tile {id:?} has extra or missing hashes"),
            ));
        }
        if stored[..ours.len()] != ours[..] {
            return Err(bad(
                first_leaf_of(id, &ours, &stored),
                format!("stored tile {id:?} disagrees with the entries"),
            ));
        }
    }
    let root = frontier.root();
    if root != head.root {
        return Err(bad(
            expected.saturating_sub(1),
            "the head's root is not the entries' root",
        ));
    }
    if head.size > 0 && prev != head.last_leaf {
        return Err(bad(
            head.size - 1,
            "the head's last leaf is not the last entry's",
        ));
    }
    if let Some((s, _)) = store
        .checkpoints(head.size + 1, 1)?
        .first()
        .filter(|_| !live)
    {
        return Err(bad(
            head.size,
            format!("a checkpoint is stored for size {s}, beyond the log"),
        ));
    }
    let last = store.checkpoint(head.size)?.ok_or_else(|| {
        bad(
            head.size.saturating_sub(1),
            "no checkpoint at the head's size",
        )
    })?;
    let cp = Checkpoint::open(&last, verifier)
        .map_err(|e| bad(head.size.saturating_sub(1), e.to_string()))?;
    if cp.root != root {
        return Err(bad(
            head.size.saturating_sub(1),
            "last checkpoint disagrees with the entries",
        ));
    }
    Ok(VerifyReport {
        entries: expected,
        checkpoints: checked_cps,
        root,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The first leaf index a tile's disagreement points at (for level-0 tiles, exact).
fn first_leaf_of((level, index): TileId, ours: &[u8], stored: &[u8]) -> u64 {
    let first_diff = ours
        .chunks(32)
        .zip(stored.chunks(32))
        .position(|(a, b)| a != b)
        .unwrap_or(0) as u64;
    ((index * 256) + first_diff) << (8 * u32::from(level))
}
