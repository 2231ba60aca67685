//! The offline full check of a log: every entry's envelope, index, `prev` link and
//! time order; every stored tile against the tiles rebuilt from the entries; every
//! stored checkpoint's signature and root; the head. It trusts nothing but the
//! verifier key and names the first bad index.

use std::time::Instant;

use std::ops::ControlFlow;

use super::chain::{Chain, ChainError};
use super::merkle::{self, Frontier, Hash};
use super::note::{Checkpoint, NoteVerifier};
use super::tiles::{TileBuilder, TileId};
use super::LedgerError;
use crate::storage::{try_for_each_entry, Head, Store};

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
    let mut check = Check::new(store, verifier, head)?;
    check.checkpoint_at(0, merkle::empty_root())?;
    try_for_each_entry(store, 0, |i, bytes| check.entry(i, bytes))?;
    let root = check.tree_and_head()?;
    check.last_checkpoint(root)?;
    Ok(VerifyReport {
        entries: check.chain.next(),
        checkpoints: check.checkpoints,
        root,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The state of one offline check, claim group by claim group.
struct Check<'a> {
    store: &'a dyn Store,
    verifier: &'a NoteVerifier,
    head: Head,
    /// A shared store may be appended to by its nodes while this runs: the log is
    /// checked as of the head read first, and what lies beyond it (entries, longer
    /// right-edge tiles, later checkpoints) is left alone there, as long as tiles agree
    /// up to the head.
    live: bool,
    chain: Chain,
    frontier: Frontier,
    tiles: TileBuilder,
    /// The next stored checkpoint not yet checked.
    next_cp: Option<(u64, String)>,
    checkpoints: u64,
}

impl<'a> Check<'a> {
    fn new(
        store: &'a dyn Store,
        verifier: &'a NoteVerifier,
        head: Head,
    ) -> Result<Self, LedgerError> {
        Ok(Self {
            store,
            verifier,
            head,
            live: store.shared(),
            chain: Chain::new(),
            frontier: Frontier::new(),
            tiles: TileBuilder::new(),
            next_cp: store.checkpoints(0, 1)?.pop(),
            checkpoints: 0,
        })
    }

    /// The stored checkpoint at `size`, if the next one is there: its signature, its
    /// size, and the root the entries produce.
    fn checkpoint_at(&mut self, size: u64, root: Hash) -> Result<(), LedgerError> {
        let Some((s, note)) = self.next_cp.as_ref() else {
            return Ok(());
        };
        if *s != size {
            return Ok(());
        }
        let at = size.saturating_sub(1);
        let cp = Checkpoint::open(note, self.verifier)
            .map_err(|e| bad(at, format!("checkpoint at size {size}: {e}")))?;
        if cp.size != size {
            return Err(bad(
                at,
                format!("checkpoint stored at size {size} claims size {}", cp.size),
            ));
        }
        if cp.root != root {
            return Err(bad(
                at,
                format!("checkpoint at size {size} signs a root the entries do not produce"),
            ));
        }
        self.next_cp = self.store.checkpoints(size + 1, 1)?.pop();
        self.checkpoints += 1;
        Ok(())
    }

    /// One entry: the chain, the tree it extends, the tiles and checkpoints it completes.
    fn entry(&mut self, i: u64, bytes: &[u8]) -> Result<ControlFlow<()>, LedgerError> {
        if self.live && i >= self.head.size {
            return Ok(ControlFlow::Break(()));
        }
        if i >= self.head.size && i == self.chain.next() {
            return Err(bad(
                i,
                format!("entry beyond the head (size {})", self.head.size),
            ));
        }
        let link = self.chain.check(i, bytes).map_err(|e| {
            let at = match e {
                ChainError::Missing { expected, .. } => expected,
                _ => i,
            };
            bad(at, e.to_string())
        })?;
        self.frontier.push(link.leaf);
        self.tiles.push(link.leaf);
        let size = i + 1;
        if size % 256 == 0 {
            self.full_tiles(size)?;
        }
        // Checkpoints are per batch: most entries are not at a checkpoint's size.
        if self.next_cp.as_ref().is_some_and(|(s, _)| *s == size) {
            self.checkpoint_at(size, self.frontier.root())?;
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Tiles completed since the last call must be stored as rebuilt (a stored tile may
    /// be longer only where it is a right edge that grew).
    fn full_tiles(&mut self, at: u64) -> Result<(), LedgerError> {
        for (id, bytes) in self.tiles.take_dirty() {
            let stored = self.store.tile(id)?.unwrap_or_default();
            if !stored.starts_with(&bytes) {
                return Err(bad(
                    first_leaf_of(id, &bytes, &stored).min(at.saturating_sub(1)),
                    format!("stored tile {id:?} disagrees with the entries"),
                ));
            }
        }
        Ok(())
    }

    /// After the last entry: the log ends at the head, the remaining and partial tiles
    /// are stored as rebuilt, and the head's root and last leaf are the entries'.
    fn tree_and_head(&mut self) -> Result<Hash, LedgerError> {
        let (head, end) = (self.head, self.chain.next());
        if end != head.size {
            return Err(bad(
                end,
                format!("log ends at {end} but its head says {}", head.size),
            ));
        }
        self.full_tiles(end)?;
        // (On a shared store, right-edge tiles may have grown past the head since.)
        for (id, hashes) in self.tiles.partial_tiles() {
            let stored = self.store.tile(id)?.unwrap_or_default();
            let ours: Vec<u8> = hashes.concat();
            let fits = stored.len() == ours.len() || (self.live && stored.len() > ours.len());
            if !fits {
                return Err(bad(
                    end.saturating_sub(1),
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
        let root = self.frontier.root();
        if root != head.root {
            return Err(bad(
                end.saturating_sub(1),
                "the head's root is not the entries' root",
            ));
        }
        if head.size > 0 && self.chain.last_leaf() != Some(head.last_leaf) {
            return Err(bad(
                head.size - 1,
                "the head's last leaf is not the last entry's",
            ));
        }
        Ok(root)
    }

    /// No checkpoint beyond the log, and the one at the head signs the entries' root.
    fn last_checkpoint(&self, root: Hash) -> Result<(), LedgerError> {
        let head = self.head;
        let at = head.size.saturating_sub(1);
        if let Some((s, _)) = self
            .store
            .checkpoints(head.size + 1, 1)?
            .first()
            .filter(|_| !self.live)
        {
            return Err(bad(
                head.size,
                format!("a checkpoint is stored for size {s}, beyond the log"),
            ));
        }
        let last = self
            .store
            .checkpoint(head.size)?
            .ok_or_else(|| bad(at, "no checkpoint at the head's size"))?;
        let cp = Checkpoint::open(&last, self.verifier).map_err(|e| bad(at, e.to_string()))?;
        if cp.root != root {
            return Err(bad(at, "last checkpoint disagrees with the entries"));
        }
        Ok(())
    }
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
