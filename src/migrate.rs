//! `veritrail migrate`: copy a log from one store to another (a data dir's sled store
//! and PostgreSQL, either way), entry by entry.
//!
//! The copy trusts nothing it reads: each entry's index and `prev` link are checked as
//! it is copied, its leaf hash goes into a freshly built tree, every stored checkpoint
//! must verify with the key and name the root the rebuilt tree has at its size, and
//! the copy is committed in pieces that each end at a checkpoint (so an interrupted
//! copy is itself a valid, shorter log). Vault rows are copied as they are; the
//! projections are rebuilt from the copied entries. Finally the copy is verified in
//! full and its root compared with the original's.

use anyhow::{bail, Context};

use std::ops::ControlFlow;

use crate::log::chain::Chain;
use crate::log::merkle::{self, Frontier, Hash};
use crate::log::note::{Checkpoint, NoteVerifier};
use crate::log::tiles::TileBuilder;
use crate::storage::{try_for_each_entry, CommitBatch, Head, Store};

/// What a copy moved.
#[derive(Debug, Clone)]
pub struct CopyReport {
    pub entries: u64,
    pub checkpoints: u64,
    pub vault_rows: u64,
    pub root: Hash,
}

/// Entries committed at least per piece (a piece ends at the next checkpoint).
const PIECE: usize = 10_000;
/// Vault rows per commit.
const VAULT_PIECE: usize = 5_000;

/// Copy the log in `from` into `to`, which must hold no log.
pub fn copy(from: &dyn Store, to: &dyn Store, key: &NoteVerifier) -> anyhow::Result<CopyReport> {
    let (head, origin) = check_source(from, to, key)?;
    to.truncate_entries(0)?;
    let checkpoints = stored_checkpoints(from, head)?;
    let total_checkpoints = checkpoints.len() as u64;
    copy_entries(from, to, key, head, checkpoints, origin)?;
    let copied = to.head()?.context("nothing was copied")?;
    if copied.size != head.size || copied.root != head.root {
        bail!(
            "the copy ends at size {} with root {}, the original at size {} with root {}",
            copied.size,
            hex::encode(copied.root),
            head.size,
            hex::encode(head.root)
        );
    }
    let vault_rows = copy_vault(from, to)?;
    crate::reindex::reindex(to)?;
    let report = crate::log::verify::verify_store(to, key).context("verifying the copy")?;
    if report.root != head.root {
        bail!("the copy verifies but to another root");
    }
    Ok(CopyReport {
        entries: head.size,
        checkpoints: total_checkpoints,
        vault_rows,
        root: head.root,
    })
}

/// The source holds a log of this key's origin, the destination none: (head, origin).
fn check_source(
    from: &dyn Store,
    to: &dyn Store,
    key: &NoteVerifier,
) -> anyhow::Result<(Head, Vec<u8>)> {
    let head = from.head()?.context("the source holds no log")?;
    if to.head()?.is_some() {
        bail!("the destination already holds a log; copy into an empty one");
    }
    let origin = from
        .meta("origin")?
        .context("the source records no origin")?;
    if origin != key.name().as_bytes() {
        bail!(
            "the source's origin is {:?} but the key is named {:?}",
            String::from_utf8_lossy(&origin),
            key.name()
        );
    }
    Ok((head, origin))
}

/// Every checkpoint up to the head, in order; the last must be at the head's size.
fn stored_checkpoints(from: &dyn Store, head: Head) -> anyhow::Result<Vec<(u64, String)>> {
    let mut checkpoints: Vec<(u64, String)> = Vec::new();
    loop {
        let next = checkpoints.last().map_or(0, |(s, _)| s + 1);
        let page = from.checkpoints(next, 10_000)?;
        if page.is_empty() {
            break;
        }
        checkpoints.extend(page.into_iter().filter(|(s, _)| *s <= head.size));
        if checkpoints.last().is_some_and(|(s, _)| *s >= head.size) {
            break;
        }
    }
    if checkpoints.last().map(|(s, _)| *s) != Some(head.size) {
        bail!(
            "the source has no checkpoint at its head's size {}",
            head.size
        );
    }
    Ok(checkpoints)
}

/// The entries, checked link by link into a fresh tree, committed in pieces that each
/// end at a checkpoint the rebuilt tree confirms.
fn copy_entries(
    from: &dyn Store,
    to: &dyn Store,
    key: &NoteVerifier,
    head: Head,
    checkpoints: Vec<(u64, String)>,
    origin: Vec<u8>,
) -> anyhow::Result<()> {
    let mut piece = Piece {
        to,
        key,
        pending: checkpoints.into_iter().peekable(),
        chain: Chain::new(),
        tiles: TileBuilder::new(),
        frontier: Frontier::new(),
        last_time: 0,
        entries: Vec::new(),
        start: 0,
        checkpoints: Vec::new(),
        meta: vec![("origin".to_owned(), origin)],
    };
    // The empty tree's checkpoint comes first.
    piece.take_checkpoints(0)?;
    if head.size == 0 {
        piece.commit(0)?;
    }
    try_for_each_entry(from, 0, |i, bytes| -> anyhow::Result<_> {
        if i >= head.size {
            return Ok(ControlFlow::Break(()));
        }
        piece.push(i, bytes)?;
        let size = i + 1;
        piece.take_checkpoints(size)?;
        let at_checkpoint = piece.checkpoints.last().is_some_and(|(s, _)| *s == size);
        if at_checkpoint && (piece.entries.len() >= PIECE || size == head.size) {
            piece.commit(size)?;
        }
        Ok(ControlFlow::Continue(()))
    })
}

/// The part of the copy not yet committed, and the tree and chain rebuilt so far.
struct Piece<'a> {
    to: &'a dyn Store,
    key: &'a NoteVerifier,
    /// Source checkpoints not yet reached.
    pending: std::iter::Peekable<std::vec::IntoIter<(u64, String)>>,
    chain: Chain,
    tiles: TileBuilder,
    frontier: Frontier,
    last_time: u64,
    entries: Vec<Vec<u8>>,
    /// The index of `entries[0]`.
    start: u64,
    checkpoints: Vec<(u64, String)>,
    meta: Vec<(String, Vec<u8>)>,
}

impl Piece<'_> {
    /// Check entry `i` against the chain and add it to the tree and the piece.
    fn push(&mut self, i: u64, bytes: &[u8]) -> anyhow::Result<()> {
        let link = self
            .chain
            .check(i, bytes)
            .with_context(|| format!("entry {i}"))?;
        self.tiles.push(link.leaf);
        self.frontier.push(link.leaf);
        self.last_time = link.header.time;
        self.entries.push(bytes.to_vec());
        Ok(())
    }

    /// The source's checkpoints at `size`: each must verify and name the rebuilt root.
    fn take_checkpoints(&mut self, size: u64) -> anyhow::Result<()> {
        while let Some((s, _)) = self.pending.peek() {
            if *s != size {
                break;
            }
            let (s, note) = self.pending.next().expect("peeked");
            let cp = Checkpoint::open(&note, self.key)
                .map_err(|e| anyhow::anyhow!("checkpoint at size {s}: {e}"))?;
            let root = if size == 0 {
                merkle::empty_root()
            } else {
                self.frontier.root()
            };
            if cp.size != s || cp.root != root {
                bail!("checkpoint at size {s} does not name the root of the copied entries");
            }
            self.checkpoints.push((s, note));
        }
        Ok(())
    }

    /// Commit the piece, ending at `size`, under the destination's head lock.
    fn commit(&mut self, size: u64) -> anyhow::Result<()> {
        let head = Head {
            size,
            root: if size == 0 {
                merkle::empty_root()
            } else {
                self.frontier.root()
            },
            last_time: self.last_time,
            last_leaf: self.chain.last_leaf().unwrap_or([0; 32]),
        };
        self.to.lock_head()?;
        let n = self.entries.len() as u64;
        let r = self.to.commit(CommitBatch {
            first_index: self.start,
            entries: std::mem::take(&mut self.entries),
            tiles: self.tiles.take_dirty(),
            checkpoints: std::mem::take(&mut self.checkpoints),
            head: Some(head),
            meta: std::mem::take(&mut self.meta),
            ..Default::default()
        });
        if r.is_err() {
            let _ = self.to.release();
        }
        r?;
        self.start += n;
        Ok(())
    }
}

/// The vault, page by page, in key order. Returns the rows copied.
fn copy_vault(from: &dyn Store, to: &dyn Store) -> anyhow::Result<u64> {
    let mut vault_rows = 0u64;
    // Keys below 0x01 are a backend's own (the sled vault's write-ahead marker) and
    // stay behind.
    let mut lo: Vec<u8> = vec![0x01];
    let hi = vec![0xff; 64];
    loop {
        let rows = from.vault_range(&lo, &hi, false, VAULT_PIECE)?;
        let Some((last, _)) = rows.last() else { break };
        lo = [last.as_slice(), &[0]].concat();
        vault_rows += rows.len() as u64;
        let n = rows.len();
        to.commit(CommitBatch {
            vault: rows.into_iter().map(|(k, v)| (k, Some(v))).collect(),
            ..Default::default()
        })?;
        if n < VAULT_PIECE {
            break;
        }
    }
    Ok(vault_rows)
}
