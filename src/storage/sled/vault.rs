//! The vault's storage: an erasable sled database beside the log's, holding personal
//! values and their salts (never in an entry or a proof).
//!
//! A batch's vault writes are made durable *before* its entries, its vault deletions
//! *after* them, with a marker that lets recovery finish or undo whichever half a crash
//! interrupted: puts of a batch whose entries never landed are removed; deletions of a
//! batch whose entries landed are applied. Deleted values stay in sled's old segments
//! until [`SledVault::compact`] rewrites the live rows into a fresh database and
//! removes the old files: that is when erased data leaves the disk.
//!
//! Rows of the indexed families the register declares ([`IndexedRows`]: `prefix ‖
//! middle ‖ index`, its per-decision rows: the decisions' openings, the largest, and
//! the expiry index) are not sled keys of their own. A batch's rows of a family are
//! packed into chunks of consecutive indexes, sled key `P/ ‖ first index` (the family's
//! two-byte prefix with its letter in uppercase), with a table to slice one row out without decoding the rest (see
//! [`chunk`]). sled's cost is per key (tree descent, node splits, index-node copies), so
//! a key per row was the largest cost of logging a batch. The chunks are invisible above
//! this module: `get`, `scan`, `range`, puts and deletes take and give rows as before, with one difference: a kind holds one row per index (a put replaces the
//! row of the same index). A kind's chunks cover disjoint index ranges in key order; a
//! row is found in the chunk with the greatest first index at or below its own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use super::runs::{self, Runs};
use crate::storage::rows::{merge_rows, sort_rows, successor, visit_in_order};
use crate::storage::{IndexedRows, Packing, Rows, StoreError, StoreResult};

const MARKER: &[u8] = b"\x00pending";
/// Present from a batch that deleted rows until a compaction: their values may still
/// be in sled's files. A vault opened with it compacts before it is used (a crash
/// between an erasure's commit and its compaction leaves nothing behind).
const COMPACT_OWED: &[u8] = b"\x00compact-owed";
/// A compaction copies and flushes this many bytes of rows at a time.
const COPY_SLICE_BYTES: usize = 4 << 20;

#[derive(Serialize, Deserialize)]
struct Pending {
    first_index: u64,
    /// sled keys the batch wrote (new chunks among them): removed if its entries never land.
    puts: Vec<serde_bytes::ByteBuf>,
    /// Rows (`d/` ones by their row key) to delete once the entries are durable.
    deletes: Vec<serde_bytes::ByteBuf>,
    /// Chunks the batch rewrote, as they were: put back if its entries never land.
    #[serde(default)]
    restores: Vec<(serde_bytes::ByteBuf, serde_bytes::ByteBuf)>,
}

/// A kind of row kept in chunks: its row key prefix, its chunk key prefix, its row
/// keys' length (the index is their last 8 bytes), and whether row keys sort as their
/// indexes do (then a range reads only the chunks it covers).
struct Kind {
    row: &'static [u8],
    chunk: [u8; 2],
    key_len: usize,
    by_index: bool,
}

/// The chunked kinds of a vault, from the families the register declared.
fn kinds(packing: &Packing) -> StoreResult<Vec<Kind>> {
    packing
        .indexed
        .iter()
        .map(|f: &IndexedRows| match f.prefix {
            [letter, sep] if letter.is_ascii_lowercase() && f.key_len >= 10 => Ok(Kind {
                row: f.prefix,
                chunk: [letter.to_ascii_uppercase(), *sep],
                key_len: f.key_len,
                by_index: f.sorts_by_index,
            }),
            _ => Err(StoreError::refused(
                "an indexed vault family needs a two-byte prefix starting with a lowercase letter",
            )),
        })
        .collect()
}

/// The kind (its position in `kinds`) and index of a chunked row's key.
fn kind_of(kinds: &[Kind], key: &[u8]) -> Option<(usize, u64)> {
    let k = kinds
        .iter()
        .position(|k| key.len() == k.key_len && key.starts_with(k.row))?;
    Some((k, u64::from_be_bytes(key[key.len() - 8..].try_into().ok()?)))
}

impl Kind {
    fn chunk_key(&self, first: u64) -> [u8; 10] {
        let mut k = [0u8; 10];
        k[..2].copy_from_slice(&self.chunk);
        k[2..].copy_from_slice(&first.to_be_bytes());
        k
    }

    /// A row as a chunk keeps it: the key's middle (between prefix and index), the value.
    fn payload(&self, key: &[u8], value: &[u8]) -> Vec<u8> {
        let mid = &key[self.row.len()..key.len() - 8];
        [&[mid.len() as u8][..], mid, value].concat()
    }

    /// A payload's key middle and value.
    fn split(payload: &[u8]) -> StoreResult<(&[u8], &[u8])> {
        let n = *payload.first().ok_or_else(chunk::corrupt)? as usize;
        let mid = payload.get(1..1 + n).ok_or_else(chunk::corrupt)?;
        Ok((mid, &payload[1 + n..]))
    }

    fn key(&self, index: u64, mid: &[u8]) -> Vec<u8> {
        [self.row, mid, &index.to_be_bytes()[..]].concat()
    }

    /// A payload back into its row: `(key, value)`.
    fn unpack(&self, index: u64, payload: &[u8]) -> StoreResult<(Vec<u8>, Vec<u8>)> {
        let (mid, value) = Self::split(payload)?;
        Ok((self.key(index, mid), value.to_vec()))
    }

    /// A chunk of rows `(index, payload)`, indexes ascending (at least one row). Row keys
    /// order as (middle, index), so for kinds whose keys sort as indexes the first and
    /// last rows are the least and greatest; no row is unpacked to find them.
    fn pack(&self, rows: &[(u64, &[u8])]) -> StoreResult<Vec<u8>> {
        fn order<'a>(&(i, p): &(u64, &'a [u8])) -> StoreResult<(&'a [u8], u64)> {
            Kind::split(p).map(|(mid, _)| (mid, i))
        }
        let (mut min, mut max) = (order(&rows[0])?, order(&rows[rows.len() - 1])?);
        if !self.by_index {
            for r in rows {
                let o = order(r)?;
                min = min.min(o);
                max = max.max(o);
            }
        }
        Ok(chunk::encode(
            &self.key(min.1, min.0),
            &self.key(max.1, max.0),
            rows,
        ))
    }

    /// Whether `[lo, hi)` meets this kind's key space.
    fn meets(&self, lo: &[u8], hi: &[u8]) -> bool {
        let end = [self.row[0], self.row[1] + 1];
        hi > self.row && lo < &end[..]
    }

    /// The index a bound falls at within this kind's key space (its 8 bytes after the
    /// prefix, zero-padded), clamped: a bound below the space gives 0, above it `u64::MAX`.
    /// Meaningful for kinds whose keys sort as their indexes.
    fn bound_index(&self, bound: &[u8]) -> u64 {
        if bound <= self.row {
            return 0;
        }
        if !bound.starts_with(self.row) {
            return u64::MAX;
        }
        let mut b = [0u8; 8];
        let rest = &bound[self.row.len()..];
        let n = rest.len().min(8);
        b[..n].copy_from_slice(&rest[..n]);
        u64::from_be_bytes(b)
    }
}

/// The vault's chunks in the shared format (see `ledger::chunk`), with the row's
/// index (u64 BE) as table key and `u8 length ‖ the key's middle ‖ value` as value.
pub mod chunk {
    use super::{StoreError, StoreResult};
    use crate::storage::sled::chunk::{self as format, ChunkView};

    pub(super) fn corrupt() -> StoreError {
        StoreError::Corrupt("malformed vault chunk".into())
    }

    pub fn encode(min: &[u8], max: &[u8], rows: &[(u64, &[u8])]) -> Vec<u8> {
        let keys: Vec<[u8; 8]> = rows.iter().map(|(i, _)| i.to_be_bytes()).collect();
        let rows: Vec<(&[u8], &[u8])> = keys
            .iter()
            .zip(rows)
            .map(|(k, (_, v))| (&k[..], *v))
            .collect();
        format::encode(min, max, &rows)
    }

    /// The least and greatest row keys in the chunk.
    pub fn bounds(raw: &[u8]) -> StoreResult<(&[u8], &[u8])> {
        ChunkView::parse(raw, 8).map(|c| (c.min, c.max))
    }

    /// The row of `index`, if the chunk holds it.
    pub fn find(raw: &[u8], index: u64) -> StoreResult<Option<&[u8]>> {
        ChunkView::parse(raw, 8)?.find(&index.to_be_bytes())
    }

    /// Every row, in index order.
    pub fn rows(raw: &[u8]) -> StoreResult<Vec<(u64, &[u8])>> {
        let c = ChunkView::parse(raw, 8)?;
        (0..c.len())
            .map(|i| {
                let k: [u8; 8] = c.key(i).try_into().map_err(|_| corrupt())?;
                Ok((u64::from_be_bytes(k), c.value(i)?))
            })
            .collect()
    }
}

/// How a vault keeps its rows (for tests that check a family really is packed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Layout {
    /// Chunks of the indexed families.
    pub chunks: usize,
    /// Runs of the run family.
    pub runs: usize,
    /// Rows that are sled keys of their own.
    pub own_rows: usize,
}

pub struct SledVault {
    /// Where the vault's generations live: generation 0 at this path, generation n at
    /// `<path>.g<n>`, the current one named by `<path>.current` (see [`SledVault::compact`]).
    root: PathBuf,
    cache_bytes: u64,
    db: RwLock<sled::Db>,
    /// Per kind, the highest index any chunk has held since start (at least that of the
    /// last chunk's last row): a row above it starts a new chunk without a lookup.
    highest: std::sync::Mutex<Vec<Option<u64>>>,
    /// The chunked kinds (from the register's indexed families).
    kinds: Vec<Kind>,
    /// The run family's runs (see runs.rs). Readers hold it across the runs they
    /// read, writers while they change them, so no read sees half a merge.
    runs: RwLock<Runs>,
    /// While a compaction copies the live rows, every batch applied meanwhile, in order:
    /// replayed onto the copy before it takes over (see [`SledVault::compact`]).
    tail: std::sync::Mutex<Option<Vec<sled::Batch>>>,
    /// The generation in use; held by a compaction throughout (one at a time).
    generation: std::sync::Mutex<u64>,
}

/// Open a sled database. A database just dropped in this process (a compaction's copy,
/// reopened before it takes over; a vault closed and opened again) may hold its file
/// lock a moment longer, while sled's background threads let go of it: a lock refused
/// with `WouldBlock` is tried again, for up to two seconds.
fn open_db(path: &Path, cache_bytes: u64) -> StoreResult<sled::Db> {
    let config = sled::Config::new().path(path).cache_capacity(cache_bytes);
    let mut attempt = 0;
    loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if attempt < 200
                    && e.kind() == std::io::ErrorKind::Other
                    && e.to_string().contains("could not acquire lock") =>
            {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => return Ok(r?),
        }
    }
}

/// Chunked rows as `(index, payload)`.
type Payloads = Vec<(u64, Vec<u8>)>;

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The directory of a vault generation: 0 is the root itself (vaults before generations
/// were there), n is `<root>.g<n>`.
fn generation_path(root: &Path, generation: u64) -> PathBuf {
    match generation {
        0 => root.to_owned(),
        n => sibling(root, &format!(".g{n}")),
    }
}

/// The generation `<root>.current` names (0 without one), after removing every other
/// generation's files: older ones hold values erased since, a newer one is a compaction
/// a crash interrupted before it took over.
fn settle_generations(root: &Path) -> StoreResult<u64> {
    let io = |e: std::io::Error| StoreError::backend("vault generations", e);
    let pointer = sibling(root, ".current");
    let current = match std::fs::read_to_string(&pointer) {
        Ok(text) => text.trim().parse::<u64>().map_err(|_| {
            StoreError::Corrupt(format!("{} is not a generation", pointer.display()))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(io(e)),
    };
    let (Some(parent), Some(name)) = (root.parent(), root.file_name()) else {
        return Err(StoreError::Corrupt("the vault path has no parent".into()));
    };
    let name = name.to_string_lossy().into_owned();
    for entry in std::fs::read_dir(parent).map_err(io)? {
        let entry = entry.map_err(io)?;
        let file = entry.file_name().to_string_lossy().into_owned();
        let stale = match file.strip_prefix(&name) {
            Some("") => current != 0,
            // Compactions before generations: `.compacting` (incomplete), `.old` (replaced).
            Some(".compacting" | ".old") => true,
            Some(rest) => rest
                .strip_prefix(".g")
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n != current),
            None => false,
        };
        if stale {
            std::fs::remove_dir_all(entry.path()).map_err(io)?;
        }
    }
    Ok(current)
}

/// Remove a generation's folder. A sled database just dropped may still finish a
/// snapshot file in it from its thread pool, so a removal that races with that write
/// (the folder not empty, or an entry gone while listed) is tried again, for up to a
/// second.
fn remove_generation(path: &Path) -> std::io::Result<()> {
    let mut attempt = 0;
    loop {
        match std::fs::remove_dir_all(path) {
            Ok(()) => return Ok(()),
            Err(_) if !path.exists() => return Ok(()),
            Err(_) if attempt < 50 => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Name `generation` the current one, durably (write, sync, rename, sync the folder).
fn write_pointer(root: &Path, generation: u64) -> StoreResult<()> {
    use std::io::Write;
    let io = |e: std::io::Error| StoreError::backend("vault generation pointer", e);
    let (pointer, tmp) = (sibling(root, ".current"), sibling(root, ".current.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(format!("{generation}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io)?;
    std::fs::rename(&tmp, &pointer).map_err(io)?;
    sync_parent(root)
}

fn sync_parent(root: &Path) -> StoreResult<()> {
    if let Some(parent) = root.parent() {
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| StoreError::backend("vault folder sync", e))?;
    }
    Ok(())
}

impl SledVault {
    /// Whether a sled key is one of this vault's chunks (or run keys) rather than a row.
    fn is_chunk_key(&self, key: &[u8]) -> bool {
        self.kinds.iter().any(|k| key.starts_with(&k.chunk)) || key.starts_with(runs::RUN)
    }

    /// How the rows are kept now.
    pub fn layout(&self) -> StoreResult<Layout> {
        let db = self.db();
        let mut out = Layout {
            runs: self.runs().len(),
            ..Default::default()
        };
        for kv in db.iter() {
            let (k, _) = kv?;
            if self.kinds.iter().any(|kind| k.starts_with(&kind.chunk)) {
                out.chunks += 1;
            } else if !k.starts_with(runs::RUN) && &k[..] != MARKER && &k[..] != COMPACT_OWED {
                out.own_rows += 1;
            }
        }
        Ok(out)
    }

    /// Open the vault at `path` (its current generation), after removing what other
    /// generations left.
    pub fn open(path: &Path, cache_bytes: u64, packing: &Packing) -> StoreResult<Self> {
        let generation = settle_generations(path)?;
        let root = path.to_owned();
        let path = &generation_path(path, generation);
        let db = open_db(path, cache_bytes)?;
        let kinds = kinds(packing)?;
        let highest = Self::last_indexes(&db, &kinds)?;
        let runs = runs::load(&db, packing.runs.clone())?;
        let owed = db.contains_key(COMPACT_OWED)?;
        let vault = Self {
            root,
            cache_bytes,
            db: RwLock::new(db),
            highest: std::sync::Mutex::new(highest),
            kinds,
            runs: RwLock::new(runs),
            tail: std::sync::Mutex::new(None),
            generation: std::sync::Mutex::new(generation),
        };
        if owed {
            vault.compact()?;
        }
        Ok(vault)
    }

    /// Apply a batch, and keep a copy of it for the compaction copying meanwhile, if
    /// one is. (Under the tail's lock: a batch is either applied before a copy starts
    /// or kept for it.)
    fn apply(&self, db: &sled::Db, b: sled::Batch) -> StoreResult<()> {
        let mut tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = tail.as_mut() {
            t.push(b.clone());
        }
        db.apply_batch(b)?;
        Ok(())
    }

    /// Per kind, the index of the last chunk's last row.
    fn last_indexes(db: &sled::Db, kinds: &[Kind]) -> StoreResult<Vec<Option<u64>>> {
        let mut out = vec![None; kinds.len()];
        for (k, kind) in kinds.iter().enumerate() {
            if let Some(kv) = db.scan_prefix(kind.chunk).next_back() {
                let (_, v) = kv?;
                out[k] = chunk::rows(&v)?.last().map(|(i, _)| *i);
            }
        }
        Ok(out)
    }

    fn db(&self) -> std::sync::RwLockReadGuard<'_, sled::Db> {
        self.db.read().unwrap_or_else(|e| e.into_inner())
    }

    fn runs(&self) -> std::sync::RwLockReadGuard<'_, Runs> {
        self.runs.read().unwrap_or_else(|e| e.into_inner())
    }

    fn runs_mut(&self) -> std::sync::RwLockWriteGuard<'_, Runs> {
        self.runs.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The chunk of `kind` that covers `index` if any does: `(first index, bytes)`.
    fn chunk_of(db: &sled::Db, kind: &Kind, index: u64) -> StoreResult<Option<(u64, sled::IVec)>> {
        let Some(kv) = db
            .range(&kind.chunk_key(0)[..]..=&kind.chunk_key(index)[..])
            .next_back()
        else {
            return Ok(None);
        };
        let (k, v) = kv?;
        let first = u64::from_be_bytes(
            k[kind.chunk.len()..]
                .try_into()
                .map_err(|_| StoreError::Corrupt("malformed vault chunk key".into()))?,
        );
        Ok(Some((first, v)))
    }

    /// Rows of `kind` with keys in `[lo, hi)` from its chunks, in order, at most `limit`.
    fn chunk_rows(
        db: &sled::Db,
        kind: &Kind,
        lo: &[u8],
        hi: &[u8],
        reverse: bool,
        limit: usize,
    ) -> StoreResult<Rows> {
        let mut out = Vec::new();
        if !kind.meets(lo, hi) {
            return Ok(out);
        }
        // Keys that sort as indexes: the chunks from the one covering `lo` to the one
        // covering `hi`, stopping at `limit`. Others: every chunk of the kind, then a sort.
        let (start, end) = if kind.by_index {
            let start = Self::chunk_of(db, kind, kind.bound_index(lo))?.map_or(0, |(f, _)| f);
            (start, kind.bound_index(hi))
        } else {
            (0, u64::MAX)
        };
        let chunks = db.range(&kind.chunk_key(start)[..]..=&kind.chunk_key(end)[..]);
        visit_in_order(chunks, reverse, |kv| -> StoreResult<bool> {
            let (_, v) = kv?;
            let (min, max) = chunk::bounds(&v)?;
            if max < lo || min >= hi {
                return Ok(true);
            }
            let mut rows = chunk::rows(&v)?;
            if reverse {
                rows.reverse();
            }
            for (index, payload) in rows {
                let (k, v) = kind.unpack(index, payload)?;
                if k.as_slice() >= lo && k.as_slice() < hi {
                    out.push((k, v));
                    if kind.by_index && out.len() == limit {
                        return Ok(false);
                    }
                }
            }
            Ok(true)
        })?;
        if !kind.by_index {
            sort_rows(&mut out, reverse);
            out.truncate(limit);
        }
        Ok(out)
    }

    pub fn get(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        let db = self.db();
        if let Some((k, index)) = kind_of(&self.kinds, key) {
            let kind = &self.kinds[k];
            if let Some((_, raw)) = Self::chunk_of(&db, kind, index)? {
                if let Some(payload) = chunk::find(&raw, index)? {
                    let (row_key, value) = kind.unpack(index, payload)?;
                    if row_key == key {
                        return Ok(Some(value));
                    }
                }
            }
            // A row of its own, as vaults written before chunks hold them.
        }
        if let Some(v) = db.get(key)? {
            return Ok(Some(v.to_vec()));
        }
        let runs = self.runs();
        if runs.row_index(key).is_some() {
            return runs::get(&db, &runs, key);
        }
        Ok(None)
    }

    pub fn scan(&self, prefix: &[u8], limit: usize) -> StoreResult<Rows> {
        match successor(prefix) {
            Some(end) => self.range(prefix, &end, false, limit),
            None => self.range(prefix, &[0xff; 64], false, limit),
        }
    }

    /// Rows with keys in `[lo, hi)`, ascending (or descending), at most `limit`: sled's
    /// own keys but chunks, merged with the rows the chunks hold.
    pub fn range(&self, lo: &[u8], hi: &[u8], reverse: bool, limit: usize) -> StoreResult<Rows> {
        let db = self.db();
        let mut out = Vec::new();
        if lo >= hi || limit == 0 {
            return Ok(out);
        }
        visit_in_order(db.range(lo..hi), reverse, |kv| -> StoreResult<bool> {
            let (k, v) = kv?;
            if !self.is_chunk_key(&k) {
                out.push((k.to_vec(), v.to_vec()));
            }
            Ok(out.len() < limit)
        })?;
        // Kinds whose keys sort as indexes first (they read only what they cover); then
        // the others, unless the page is already full with keys before theirs.
        for by_index in [true, false] {
            for kind in self.kinds.iter().filter(|k| k.by_index == by_index) {
                if out.len() >= limit {
                    let last = &out[limit - 1].0;
                    let end = [kind.row[0], kind.row[1] + 1];
                    let beyond = if reverse {
                        last.as_slice() >= &end[..]
                    } else {
                        last.as_slice() < kind.row
                    };
                    if beyond {
                        continue;
                    }
                }
                let rows = Self::chunk_rows(&db, kind, lo, hi, reverse, limit)?;
                if !rows.is_empty() {
                    out.extend(rows);
                    sort_rows(&mut out, reverse);
                    out.truncate(limit);
                }
            }
        }
        // The subject index's runs. A row that is also a key of its own keeps that key's
        // value.
        let rows = runs::range(&db, &self.runs(), lo, hi, reverse, limit)?;
        merge_rows(&mut out, rows, reverse, limit);
        Ok(out)
    }

    /// First half of a batch: make its puts durable, with a marker naming its deletes.
    pub fn prepare(
        &self,
        first_index: u64,
        writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    ) -> StoreResult<()> {
        let db = self.db();
        let mut highest = self.highest.lock().unwrap_or_else(|e| e.into_inner());
        let mut runs = self.runs_mut();
        let runs_highest = runs::highest(&runs);
        let kinds = &self.kinds;
        let mut subject_rows: Vec<(&[u8], &[u8])> = Vec::new();
        let mut b = sled::Batch::default();
        let mut p = Pending {
            first_index,
            puts: Vec::new(),
            deletes: Vec::new(),
            restores: Vec::new(),
        };
        // Chunked rows above every chunk of their kind (a new batch's) go into new chunks;
        // any other joins the chunk that covers its index (a new chunk below all, if none).
        let mut fresh: Vec<Payloads> = vec![Vec::new(); kinds.len()];
        let mut older: BTreeMap<(usize, Option<u64>), Payloads> = BTreeMap::new();
        for (key, v) in writes {
            match (kind_of(kinds, key), v) {
                (Some((k, i)), Some(v)) => {
                    let payload = kinds[k].payload(key, v);
                    if highest[k].is_none_or(|h| i > h) {
                        fresh[k].push((i, payload));
                    } else {
                        let first = Self::chunk_of(&db, &kinds[k], i)?.map(|(first, _)| first);
                        older.entry((k, first)).or_default().push((i, payload));
                    }
                }
                (None, Some(v))
                    if runs
                        .row_index(key)
                        .is_some_and(|i| runs_highest.is_none_or(|h| i > h)) =>
                {
                    subject_rows.push((key, v));
                }
                (None, Some(v)) => {
                    b.insert(key.as_slice(), v.as_slice());
                    p.puts.push(serde_bytes::ByteBuf::from(key.clone()));
                }
                (_, None) => p.deletes.push(serde_bytes::ByteBuf::from(key.clone())),
            }
        }
        for ((k, first), rows) in older {
            let kind = &kinds[k];
            let mut merged: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
            let key = match first {
                Some(first) => {
                    let key = kind.chunk_key(first);
                    let old = db.get(key)?.ok_or_else(|| {
                        StoreError::Corrupt("vault chunk vanished while writing".into())
                    })?;
                    for (i, r) in chunk::rows(&old)? {
                        merged.insert(i, r.to_vec());
                    }
                    p.restores.push((
                        serde_bytes::ByteBuf::from(key.to_vec()),
                        serde_bytes::ByteBuf::from(old.to_vec()),
                    ));
                    key
                }
                None => {
                    let key = kind.chunk_key(rows.iter().map(|(i, _)| *i).min().unwrap_or(0));
                    p.puts.push(serde_bytes::ByteBuf::from(key.to_vec()));
                    key
                }
            };
            merged.extend(rows);
            let rows: Vec<(u64, &[u8])> = merged.iter().map(|(i, r)| (*i, r.as_slice())).collect();
            b.insert(&key[..], kind.pack(&rows)?);
        }
        for (k, mut rows) in fresh.into_iter().enumerate() {
            if !kinds[k].by_index {
                rows.sort_by_key(|(i, _)| *i);
            }
            let mut rest = rows.as_slice();
            while let Some((first, _)) = rest.first() {
                let n = super::chunk::fill(rest, 8, super::chunk::CHUNK_BYTES, |(_, r)| r.len());
                let key = kinds[k].chunk_key(*first);
                let chunk: Vec<(u64, &[u8])> =
                    rest[..n].iter().map(|(i, r)| (*i, r.as_slice())).collect();
                b.insert(&key[..], kinds[k].pack(&chunk)?);
                p.puts.push(serde_bytes::ByteBuf::from(key.to_vec()));
                rest = &rest[n..];
            }
            if let Some((last, _)) = rows.last() {
                highest[k] = Some(*last);
            }
        }
        // Merges move committed rows only; then this batch's rows are a run of their own,
        // which recovery removes if the entries never land.
        if !subject_rows.is_empty() {
            runs::merge(&db, &mut runs, &mut b)?;
            for key in runs::add(&mut runs, &subject_rows, &mut b) {
                p.puts.push(serde_bytes::ByteBuf::from(key));
            }
        }
        b.insert(MARKER, serde_cbor::to_vec(&p).expect("marker encodes"));
        self.apply(&db, b)?;
        db.flush()?;
        Ok(())
    }

    /// Delete rows: sled keys directly, chunked rows by rewriting (or removing) the
    /// chunks that hold them.
    fn delete_rows<'a>(
        db: &sled::Db,
        kinds: &[Kind],
        runs: &mut Runs,
        keys: impl IntoIterator<Item = &'a [u8]>,
        b: &mut sled::Batch,
    ) -> StoreResult<()> {
        let keys: Vec<&[u8]> = keys.into_iter().collect();
        runs::delete(db, runs, keys.iter().copied(), b)?;
        let mut by_chunk: BTreeMap<(usize, u64), (sled::IVec, Vec<u64>)> = BTreeMap::new();
        for key in keys {
            if let Some((k, i)) = kind_of(kinds, key) {
                if let Some((first, raw)) = Self::chunk_of(db, &kinds[k], i)? {
                    let found = chunk::find(&raw, i)?
                        .map(|payload| kinds[k].unpack(i, payload))
                        .transpose()?;
                    if found.is_some_and(|(row_key, _)| row_key == key) {
                        by_chunk
                            .entry((k, first))
                            .or_insert((raw, Vec::new()))
                            .1
                            .push(i);
                    }
                }
            }
            // (A chunked kind's row may also be a key of its own, written before chunks.)
            b.remove(key);
        }
        for ((k, first), (raw, gone)) in by_chunk {
            let kept: Vec<(u64, &[u8])> = chunk::rows(&raw)?
                .into_iter()
                .filter(|(i, _)| !gone.contains(i))
                .collect();
            let key = kinds[k].chunk_key(first);
            if kept.is_empty() {
                b.remove(&key[..]);
            } else {
                b.insert(&key[..], kinds[k].pack(&kept)?);
            }
        }
        Ok(())
    }

    /// Second half, once the entries are durable: apply the deletes.
    pub fn finish(&self, writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>) -> StoreResult<()> {
        let db = self.db();
        let mut runs = self.runs_mut();
        let mut b = sled::Batch::default();
        let deletes: Vec<&[u8]> = writes
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.as_slice())
            .collect();
        if !deletes.is_empty() {
            b.insert(COMPACT_OWED, &[][..]);
        }
        Self::delete_rows(&db, &self.kinds, &mut runs, deletes, &mut b)?;
        b.remove(MARKER);
        self.apply(&db, b)?;
        db.flush()?;
        Ok(())
    }

    /// Recovery: settle a batch a crash interrupted, given the log's durable size.
    pub fn recover(&self, log_size: u64) -> StoreResult<usize> {
        let db = self.db();
        let mut runs = self.runs_mut();
        let Some(raw) = db.get(MARKER)? else {
            return Ok(0);
        };
        let p: Pending = serde_cbor::from_slice(&raw)
            .map_err(|e| StoreError::Corrupt(format!("vault marker: {e}")))?;
        let mut b = sled::Batch::default();
        // Either way rows leave: their values must leave sled's files too.
        b.insert(COMPACT_OWED, &[][..]);
        let n = if p.first_index >= log_size {
            // The entries never landed: their personal data must not linger.
            p.puts.iter().for_each(|k| b.remove(k.as_slice()));
            for (k, v) in &p.restores {
                b.insert(k.as_slice(), v.as_slice());
            }
            p.puts.len() + p.restores.len()
        } else {
            // The entries landed (an erasure, say): finish the deletions.
            Self::delete_rows(
                &db,
                &self.kinds,
                &mut runs,
                p.deletes.iter().map(|k| k.as_slice()),
                &mut b,
            )?;
            p.deletes.len()
        };
        b.remove(MARKER);
        self.apply(&db, b)?;
        db.flush()?;
        *self.highest.lock().unwrap_or_else(|e| e.into_inner()) =
            Self::last_indexes(&db, &self.kinds)?;
        let layout = runs.layout().cloned();
        *runs = runs::load(&db, layout)?;
        drop((db, runs));
        self.compact()?;
        Ok(n)
    }

    /// Rewrite the live rows into a fresh database and delete the old files, so that
    /// removed values are gone from the disk, not just unreachable. The fresh database
    /// is the next generation, beside the current one. Writers and readers go on while
    /// the rows are copied (the batches applied meanwhile are kept and replayed onto the
    /// copy); they wait only while the copy takes over: the replay, a flush, and the
    /// pointer to the new generation written and synced. Returns the rows copied.
    pub fn compact(&self) -> StoreResult<usize> {
        self.compact_with(|| {})
    }

    /// [`Self::compact`], running `meanwhile` between the copy and the take-over (the
    /// tests write there).
    fn compact_with(&self, meanwhile: impl FnOnce()) -> StoreResult<usize> {
        let mut generation = self.generation.lock().unwrap_or_else(|e| e.into_inner());
        let (current, next) = (*generation, *generation + 1);
        let io = |e: std::io::Error| StoreError::backend("vault compaction", e);
        let fresh_path = generation_path(&self.root, next);
        if fresh_path.exists() {
            std::fs::remove_dir_all(&fresh_path).map_err(io)?;
        }
        let fresh = open_db(&fresh_path, self.cache_bytes)?;
        let n = match self.copy_live_rows(&fresh) {
            Ok(n) => n,
            Err(e) => {
                // Stop recording; the copy is abandoned.
                *self.tail.lock().unwrap_or_else(|e| e.into_inner()) = None;
                drop(fresh);
                std::fs::remove_dir_all(&fresh_path).ok();
                return Err(e);
            }
        };
        // Reopened before it takes over (outside the lock): sled keeps the pages of a
        // bulk load in its cache and writes them out again on later flushes (measured:
        // the copy grew to twice the vault's size without this).
        drop(fresh);
        let fresh = open_db(&fresh_path, self.cache_bytes)?;
        meanwhile();
        let started = std::time::Instant::now();
        let old = self.take_over(fresh, next)?;
        tracing::debug!(
            rows = n,
            locked_ms = started.elapsed().as_secs_f64() * 1e3,
            "vault compacted; writers waited only for the take-over"
        );
        *generation = next;
        // The old generation's files hold the removed values: gone before this returns.
        // (A crash before this point leaves them to `open`, which removes them.)
        drop(old);
        remove_generation(&generation_path(&self.root, current)).map_err(io)?;
        sync_parent(&self.root)?;
        Ok(n)
    }

    /// Copy every row into `fresh`, recording the batches applied meanwhile (they stay
    /// recorded for [`Self::take_over`]).
    fn copy_live_rows(&self, fresh: &sled::Db) -> StoreResult<usize> {
        *self.tail.lock().unwrap_or_else(|e| e.into_inner()) = Some(Vec::new());
        let db = self.db();
        let (mut n, mut slice, mut bytes) = (0, sled::Batch::default(), 0);
        for kv in db.iter() {
            let (k, v) = kv?;
            // The copy owes nothing (a batch deleting meanwhile owes again).
            if &k[..] == COMPACT_OWED {
                continue;
            }
            bytes += k.len() + v.len();
            slice.insert(k, v);
            n += 1;
            // Written out a slice at a time: one burst of the whole vault at the end
            // would queue the log's fsyncs behind it.
            if bytes >= COPY_SLICE_BYTES {
                fresh.apply_batch(std::mem::take(&mut slice))?;
                fresh.flush()?;
                bytes = 0;
            }
        }
        drop(db);
        fresh.apply_batch(slice)?;
        fresh.flush()?;
        Ok(n)
    }

    /// Stop writers and readers, replay onto `fresh` the batches applied since the copy
    /// began (recording ends here), name its generation the current one, and put it in
    /// the current database's place. Returns the database it replaced.
    fn take_over(&self, fresh: sled::Db, generation: u64) -> StoreResult<sled::Db> {
        let mut guard = self.db.write().unwrap_or_else(|e| e.into_inner());
        // Writers apply under the read guard: none is between its batch and its record.
        let tail = self
            .tail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_default();
        for b in tail {
            fresh.apply_batch(b)?;
        }
        fresh.flush()?;
        write_pointer(&self.root, generation)?;
        Ok(std::mem::replace(&mut *guard, fresh))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::RunRows;

    // Families of the tests' own, laid out as a register would declare them: rows by
    // index (`i/`), by time then index (`t/`), and by a 32-byte digest, time and index
    // kept as runs (`h/`).
    const BY_INDEX: &[u8] = b"i/";
    const BY_TIME: &[u8] = b"t/";
    const BY_DIGEST: &[u8] = b"h/";

    fn packing() -> Packing {
        Packing {
            indexed: vec![
                IndexedRows {
                    prefix: BY_INDEX,
                    key_len: 10,
                    sorts_by_index: true,
                },
                IndexedRows {
                    prefix: BY_TIME,
                    key_len: 18,
                    sorts_by_index: false,
                },
            ],
            runs: Some(RunRows {
                prefix: BY_DIGEST,
                key_len: 2 + 32 + 8 + 8,
            }),
            ..Default::default()
        }
    }

    fn open(path: &Path) -> SledVault {
        SledVault::open(path, 1 << 20, &packing()).unwrap()
    }

    fn d(i: u64) -> Vec<u8> {
        [BY_INDEX, &i.to_be_bytes()[..]].concat()
    }
    fn x(e: u64, i: u64) -> Vec<u8> {
        [BY_TIME, &e.to_be_bytes()[..], &i.to_be_bytes()[..]].concat()
    }
    fn s(sub: u8, i: u64) -> Vec<u8> {
        [
            BY_DIGEST,
            &[sub; 32][..],
            &i.to_be_bytes()[..],
            &i.to_be_bytes()[..],
        ]
        .concat()
    }

    type Model = BTreeMap<Vec<u8>, Vec<u8>>;
    type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

    /// Apply a batch to the vault (both halves) and to the model.
    fn apply(v: &SledVault, model: &mut Model, first: u64, w: Writes) {
        v.prepare(first, &w).unwrap();
        v.finish(&w).unwrap();
        for (k, val) in w {
            match val {
                Some(val) => model.insert(k, val),
                None => model.remove(&k),
            };
        }
    }

    fn check(v: &SledVault, model: &Model) {
        let all: Rows = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(
            v.range(&[0x01], &[0xff; 64], false, usize::MAX).unwrap(),
            all
        );
        for (k, val) in model {
            assert_eq!(v.get(k).unwrap().as_ref(), Some(val), "get {k:?}");
        }
        for prefix in [BY_INDEX, BY_TIME, BY_DIGEST] {
            let want: Rows = all
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .cloned()
                .collect();
            assert_eq!(v.scan(prefix, usize::MAX).unwrap(), want);
            // Pages of 7 both ways, as migrate and the trails read.
            for reverse in [false, true] {
                let (mut lo, mut hi) = (prefix.to_vec(), successor(prefix).unwrap());
                let mut got = Vec::new();
                loop {
                    let page = v.range(&lo, &hi, reverse, 7).unwrap();
                    let Some((last, _)) = page.last() else { break };
                    if reverse {
                        hi = last.clone();
                    } else {
                        lo = [last.as_slice(), &[0]].concat();
                    }
                    got.extend(page);
                }
                if reverse {
                    got.reverse();
                }
                assert_eq!(got, want, "pages of {prefix:?}, reverse {reverse}");
            }
        }
    }

    /// Files under `dir` whose bytes contain `needle`.
    fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut dirs = vec![dir.to_path_buf()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p);
                } else if std::fs::read(&p)
                    .unwrap()
                    .windows(needle.len())
                    .any(|w| w == needle)
                {
                    out.push(p);
                }
            }
        }
        out
    }

    #[test]
    fn a_vault_left_with_deleted_values_on_disk_compacts_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault");
        let needle = b"ERASED-VALUE-8b1f0e".to_vec();
        let mut model = Model::new();
        {
            let v = open(&path);
            let w: Writes = [(d(0), Some(needle.clone())), (d(1), Some(b"kept".to_vec()))].into();
            apply(&v, &mut model, 0, w);
            apply(&v, &mut model, 2, [(d(0), None)].into());
            // The process stops before the erasure's compaction.
        }
        assert!(
            !files_holding(&path, &needle).is_empty(),
            "sled keeps deleted values"
        );
        let v = open(&path);
        assert!(files_holding(dir.path(), &needle).is_empty());
        check(&v, &model);
    }

    #[test]
    fn opening_removes_the_generations_a_crash_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault");
        let mut model = Model::new();
        {
            let v = open(&path);
            apply(&v, &mut model, 0, [(d(0), Some(b"kept".to_vec()))].into());
            v.compact().unwrap();
        }
        assert!(
            !path.exists(),
            "generation 0 is gone after the first compaction"
        );
        // As a crash would leave them: the replaced generation not yet removed, and a
        // compaction's copy that never took over.
        let needle = b"LEFT-BEHIND-4e21";
        for stale in [path.clone(), sibling(&path, ".g2")] {
            std::fs::create_dir_all(&stale).unwrap();
            std::fs::write(stale.join("db"), needle).unwrap();
        }
        let v = open(&path);
        assert!(files_holding(dir.path(), needle).is_empty());
        assert!(sibling(&path, ".g1").exists());
        check(&v, &model);
    }

    #[test]
    fn compaction_keeps_every_batch_applied_while_it_copies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault");
        let v = std::sync::Arc::new(open(&path));
        let mut model = Model::new();
        let mut next = 0u64;
        let mut rand = crate::storage::xorshift(0x9e37_79b9_7f4a_7c15u64);
        let mut batch = |model: &mut Model, v: &SledVault, next: &mut u64| {
            let mut w = Writes::new();
            let first = *next;
            for _ in 0..1 + rand(40) {
                w.insert(d(*next), Some(vec![*next as u8; 1 + rand(300) as usize]));
                w.insert(x(1_000 + rand(50), *next), Some(Vec::new()));
                w.insert(s(rand(5) as u8, *next), Some(b"v".to_vec()));
                *next += 1;
            }
            // Erase some older decisions, as erasure does.
            let old: Vec<u64> = (0..first).filter(|_| rand(20) == 0).take(3).collect();
            for i in old {
                for k in [d(i), s(0, i), s(1, i), s(2, i), s(3, i), s(4, i)] {
                    if model.contains_key(&k) {
                        w.insert(k, None);
                    }
                }
            }
            apply(v, model, first, w);
        };
        for _ in 0..50 {
            batch(&mut model, &v, &mut next);
        }
        // Batches between the copy and the take-over reach the compacted vault.
        v.compact_with(|| {
            for _ in 0..10 {
                batch(&mut model, &v, &mut next);
            }
        })
        .unwrap();
        check(&v, &model);
        // And when they really run side by side, batch after batch.
        for _ in 0..3 {
            let compactor = {
                let v = v.clone();
                std::thread::spawn(move || v.compact().unwrap())
            };
            while !compactor.is_finished() {
                batch(&mut model, &v, &mut next);
            }
            compactor.join().unwrap();
            check(&v, &model);
        }
        drop(v);
        check(&open(&path), &model);
    }

    #[test]
    fn chunked_rows_read_as_rows_through_puts_rewrites_deletes_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault");
        let mut model = Model::new();
        let mut next = 0u64;
        let mut rand = crate::storage::xorshift(0x2545_f491_4f6c_dd1du64);
        for round in 0..3 {
            let v = open(&path);
            for _ in 0..20 {
                let mut w = Writes::new();
                let first = next;
                // New decisions, large enough rows that some batches take several chunks.
                for _ in 0..rand(300) {
                    let len = 1 + rand(600) as usize;
                    w.insert(d(next), Some(vec![next as u8; len]));
                    w.insert(x(1_000 + rand(50), next), Some(Vec::new()));
                    w.insert(s(rand(5) as u8, next), Some(b"v".to_vec()));
                    next += 1;
                }
                // Rewrites and deletes of older rows.
                let old: Vec<Vec<u8>> = model.keys().cloned().collect();
                for _ in 0..rand(6) {
                    if old.is_empty() {
                        break;
                    }
                    let k = old[rand(old.len() as u64) as usize].clone();
                    if w.contains_key(&k) {
                        continue;
                    }
                    if rand(2) == 0 {
                        w.insert(k, None);
                    } else {
                        w.insert(k, Some(b"rewritten".to_vec()));
                    }
                }
                apply(&v, &mut model, first, w);
            }
            check(&v, &model);
            // A legacy row of its own (as written before chunks), read and deleted.
            if round == 0 {
                v.db().insert(d(1_000_000), b"legacy".to_vec()).unwrap();
                model.insert(d(1_000_000), b"legacy".to_vec());
                check(&v, &model);
                let mut w = Writes::new();
                w.insert(d(1_000_000), None);
                apply(&v, &mut model, next, w);
                check(&v, &model);
            }
        }
    }

    /// Physical subject index keys and runs, as (keys of their own, runs).
    fn subject_layout(v: &SledVault) -> (usize, Runs) {
        let own = v.db().scan_prefix(BY_DIGEST).count();
        (own, v.runs().clone())
    }

    #[test]
    fn subject_index_runs_merge_delete_recover_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault");
        let mut model = Model::new();
        let mut next = 0u64;
        let mut rand = crate::storage::xorshift(0x9e37_79b9_7f4a_7c15u64);
        let most_runs = |rows: usize| 2 * (usize::BITS - rows.leading_zeros()) as usize + 2;
        for round in 0..2 {
            let v = open(&path);
            for batch in 0..120 {
                let mut w = Writes::new();
                let first = next;
                // Batches of 1 to 40 decisions about 12 subjects.
                for _ in 0..1 + rand(40) {
                    w.insert(
                        s(rand(12) as u8, next),
                        Some(vec![next as u8; 1 + rand(30) as usize]),
                    );
                    next += 1;
                }
                // Now and then a subject erased, or single rows shredded.
                if batch % 17 == 16 {
                    let sub = rand(12) as u8;
                    for k in model.keys().filter(|k| k[2] == sub) {
                        w.insert(k.clone(), None);
                    }
                }
                if batch % 5 == 4 {
                    let old: Vec<Vec<u8>> = model.keys().cloned().collect();
                    for _ in 0..3 {
                        w.insert(old[rand(old.len() as u64) as usize].clone(), None);
                    }
                }
                apply(&v, &mut model, first, w);
                let (own, runs) = subject_layout(&v);
                assert_eq!(own, 0, "every row went into a run");
                assert!(
                    runs.len()
                        <= most_runs(model.len()) + (next as usize) / (runs::RUN_CAP as usize)
                );
            }
            check(&v, &model);
            let (_, runs) = subject_layout(&v);
            assert!(
                runs.len() > 1 && runs.values().any(|m| m.rows >= runs::RUN_CAP),
                "{runs:?}"
            );
            let live: u64 = runs.values().map(|m| m.rows).sum();
            assert_eq!(live as usize, model.len(), "row counts follow deletes");
            // A batch whose entries never land, after a batch that leaves runs to merge:
            // its run goes, the merge it made stays, and no row is lost.
            let mut w = Writes::new();
            for _ in 0..40 {
                w.insert(s(rand(12) as u8, next), Some(b"lost".to_vec()));
                next += 1;
            }
            v.prepare(next - 40, &w).unwrap();
            assert!(v.recover(next - 40).unwrap() > 0);
            check(&v, &model);
            let runs = subject_layout(&v).1;
            drop(v);
            if round == 0 {
                // Reopened, the runs are read back from their metas.
                let v = open(&path);
                assert_eq!(subject_layout(&v).1, runs);
                check(&v, &model);
            }
        }
    }

    #[test]
    fn recovery_removes_new_chunks_and_restores_rewritten_ones() {
        let dir = tempfile::tempdir().unwrap();
        let v = open(&dir.path().join("vault"));
        let mut model = Model::new();
        let mut w = Writes::new();
        for i in 0..10 {
            w.insert(d(i), Some(vec![1; 10]));
            w.insert(x(100, i), Some(Vec::new()));
        }
        apply(&v, &mut model, 0, w);
        // A batch whose entries never land: new rows and a rewrite of row 3.
        let mut w = Writes::new();
        w.insert(d(3), Some(b"changed".to_vec()));
        for i in 10..20 {
            w.insert(d(i), Some(vec![2; 10]));
            w.insert(x(50, i), Some(Vec::new()));
        }
        v.prepare(10, &w).unwrap();
        assert_eq!(v.get(&d(3)).unwrap().unwrap(), b"changed");
        assert!(v.recover(10).unwrap() > 0);
        check(&v, &model);
        // A batch whose entries landed: its deletes are applied.
        let mut w = Writes::new();
        w.insert(d(4), None);
        w.insert(x(100, 4), None);
        v.prepare(10, &w).unwrap();
        v.recover(11).unwrap();
        model.remove(&d(4));
        model.remove(&x(100, 4));
        check(&v, &model);
    }
}
