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

use crate::ledger::entry;
use crate::ledger::merkle::{self, Frontier, Hash};
use crate::ledger::note::{Checkpoint, NoteVerifier};
use crate::ledger::store::{CommitBatch, Head, Store};
use crate::ledger::tiles::TileBuilder;

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
    to.truncate_entries(0)?;

    // Every checkpoint up to the head, in order.
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
    let total_checkpoints = checkpoints.len() as u64;
    let mut pending_cps = checkpoints.into_iter().peekable();

    let mut tiles = TileBuilder::new();
    let mut frontier = Frontier::new();
    let mut prev: Hash = [0; 32];
    let mut last_time = 0u64;
    let mut piece: Vec<Vec<u8>> = Vec::new();
    let mut piece_start = 0u64;
    let mut piece_cps: Vec<(u64, String)> = Vec::new();
    let mut meta = vec![("origin".to_owned(), origin)];
    let mut failure: Option<anyhow::Error> = None;

    // The empty tree's checkpoint comes first.
    let mut take_checkpoints =
        |size: u64, frontier: &Frontier, out: &mut Vec<(u64, String)>| -> anyhow::Result<()> {
            while let Some((s, _)) = pending_cps.peek() {
                if *s != size {
                    break;
                }
                let (s, note) = pending_cps.next().expect("peeked");
                let cp = Checkpoint::open(&note, key)
                    .map_err(|e| anyhow::anyhow!("checkpoint at size {s}: {e}"))?;
                let root = if size == 0 {
                    merkle::empty_root()
                } else {
                    frontier.root()
                };
                if cp.size != s || cp.root != root {
                    bail!("checkpoint at size {s} does not name the root of the copied entries");
                }
                out.push((s, note));
            }
            Ok(())
        };
    take_checkpoints(0, &frontier, &mut piece_cps)?;

    let commit = |piece: &mut Vec<Vec<u8>>,
                  piece_start: &mut u64,
                  cps: &mut Vec<(u64, String)>,
                  tiles: &mut TileBuilder,
                  head: Head,
                  meta: Vec<(String, Vec<u8>)>|
     -> anyhow::Result<()> {
        to.lock_head()?;
        let n = piece.len() as u64;
        let r = to.commit(CommitBatch {
            first_index: *piece_start,
            entries: std::mem::take(piece),
            tiles: tiles.take_dirty(),
            checkpoints: std::mem::take(cps),
            head: Some(head),
            meta,
            ..Default::default()
        });
        if r.is_err() {
            let _ = to.release();
        }
        r?;
        *piece_start += n;
        Ok(())
    };
    if head.size == 0 {
        commit(
            &mut piece,
            &mut piece_start,
            &mut piece_cps,
            &mut tiles,
            Head {
                size: 0,
                root: merkle::empty_root(),
                last_time: 0,
                last_leaf: [0; 32],
            },
            std::mem::take(&mut meta),
        )?;
    }
    from.for_each_entry(0, &mut |i, bytes| {
        if i >= head.size {
            return false;
        }
        let step = (|| -> anyhow::Result<()> {
            if i != piece_start + piece.len() as u64 {
                bail!("entry {i} out of order");
            }
            let h = entry::decode_header(bytes).with_context(|| format!("entry {i}"))?;
            if h.index != i || h.prev_hash() != Some(prev) {
                bail!("entry {i}: index or prev link does not match");
            }
            let leaf = merkle::leaf_hash(bytes);
            tiles.push(leaf);
            frontier.push(leaf);
            prev = leaf;
            last_time = h.time;
            piece.push(bytes.to_vec());
            let size = i + 1;
            take_checkpoints(size, &frontier, &mut piece_cps)?;
            let at_checkpoint = piece_cps.last().is_some_and(|(s, _)| *s == size);
            if at_checkpoint && (piece.len() >= PIECE || size == head.size) {
                commit(
                    &mut piece,
                    &mut piece_start,
                    &mut piece_cps,
                    &mut tiles,
                    Head {
                        size,
                        root: frontier.root(),
                        last_time,
                        last_leaf: leaf,
                    },
                    std::mem::take(&mut meta),
                )?;
            }
            Ok(())
        })();
        match step {
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

    // The vault, page by page, in key order.
    let mut vault_rows = 0u64;
    // Vault keys are `d/`, `s/`, `x/` rows; keys below 0x01 are a backend's own (the
    // sled vault's write-ahead marker) and stay behind.
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

    crate::reindex::reindex(to)?;
    let report = crate::ledger::verify::verify_store(to, key).context("verifying the copy")?;
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
