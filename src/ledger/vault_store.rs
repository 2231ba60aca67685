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
//! Decision rows (`d/ ‖ index`, one per decision, the largest rows) are not sled keys of
//! their own: a batch's rows are packed into chunks of consecutive indexes, sled key
//! `D/ ‖ first index`, with a table to slice one row out without decoding the rest
//! (see [`chunk`]). sled's cost is per key (tree descent, node splits, index-node
//! copies), so a key per decision was the largest cost of logging a batch. The chunks
//! are invisible above this module: `get`, `scan`, `range`, puts and deletes take and
//! give `d/` rows as before. Chunks cover disjoint index ranges in key order; a row is
//! found in the chunk with the greatest first index at or below its own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use super::store::{Rows, StoreError, StoreResult};

const MARKER: &[u8] = b"\x00pending";

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

/// The row key prefix of decision rows, and the sled key prefix of their chunks.
const ROW: &[u8] = b"d/";
const CHUNK: &[u8] = b"D/";
/// A chunk is closed once its rows reach this many bytes (sled stores values above
/// 128 KiB as separate files).
const CHUNK_BYTES: usize = 48 << 10;

fn row_index(key: &[u8]) -> Option<u64> {
    match key.strip_prefix(ROW) {
        Some(rest) if rest.len() == 8 => Some(u64::from_be_bytes(rest.try_into().ok()?)),
        _ => None,
    }
}

fn row_key(index: u64) -> Vec<u8> {
    [ROW, &index.to_be_bytes()[..]].concat()
}

fn chunk_key(first: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[..2].copy_from_slice(CHUNK);
    k[2..].copy_from_slice(&first.to_be_bytes());
    k
}

/// The index a bound falls at within the `d/` key space (its 8 bytes after the prefix,
/// zero-padded), clamped to the space: a bound below it gives 0, above it `u64::MAX`.
fn bound_index(bound: &[u8]) -> u64 {
    if bound <= ROW {
        return 0;
    }
    if !bound.starts_with(ROW) {
        return u64::MAX;
    }
    let mut b = [0u8; 8];
    let rest = &bound[ROW.len()..];
    let n = rest.len().min(8);
    b[..n].copy_from_slice(&rest[..n]);
    u64::from_be_bytes(b)
}

/// A chunk's bytes: `u32 count`, `count × (u64 index, u32 end offset)`, then the rows'
/// bytes back to back; indexes ascending. All integers big-endian.
pub mod chunk {
    use super::{StoreError, StoreResult};

    const ENTRY: usize = 12;

    fn corrupt() -> StoreError {
        StoreError::Corrupt("malformed vault chunk".into())
    }

    pub fn encode<'a>(rows: impl IntoIterator<Item = (u64, &'a [u8])>) -> Vec<u8> {
        let rows: Vec<(u64, &[u8])> = rows.into_iter().collect();
        let body: usize = rows.iter().map(|(_, v)| v.len()).sum();
        let mut out = Vec::with_capacity(4 + ENTRY * rows.len() + body);
        out.extend_from_slice(&(rows.len() as u32).to_be_bytes());
        let mut end = 0u32;
        for (index, v) in &rows {
            end += v.len() as u32;
            out.extend_from_slice(&index.to_be_bytes());
            out.extend_from_slice(&end.to_be_bytes());
        }
        for (_, v) in &rows {
            out.extend_from_slice(v);
        }
        out
    }

    fn count(raw: &[u8]) -> StoreResult<usize> {
        let n = u32::from_be_bytes(raw.get(..4).ok_or_else(corrupt)?.try_into().unwrap()) as usize;
        if raw.len() < 4 + ENTRY * n {
            return Err(corrupt());
        }
        Ok(n)
    }

    fn entry(raw: &[u8], i: usize) -> (u64, u32) {
        let e = &raw[4 + ENTRY * i..4 + ENTRY * (i + 1)];
        (
            u64::from_be_bytes(e[..8].try_into().unwrap()),
            u32::from_be_bytes(e[8..].try_into().unwrap()),
        )
    }

    fn row(raw: &[u8], n: usize, i: usize) -> StoreResult<&[u8]> {
        let base = 4 + ENTRY * n;
        let start = if i == 0 {
            0
        } else {
            entry(raw, i - 1).1 as usize
        };
        let end = entry(raw, i).1 as usize;
        raw.get(base + start..base + end).ok_or_else(corrupt)
    }

    /// The row of `index`, if the chunk holds it (a binary search of the table).
    pub fn find(raw: &[u8], index: u64) -> StoreResult<Option<&[u8]>> {
        let n = count(raw)?;
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match entry(raw, mid).0.cmp(&index) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return row(raw, n, mid).map(Some),
            }
        }
        Ok(None)
    }

    /// Every row, in index order.
    pub fn rows(raw: &[u8]) -> StoreResult<Vec<(u64, &[u8])>> {
        let n = count(raw)?;
        (0..n)
            .map(|i| Ok((entry(raw, i).0, row(raw, n, i)?)))
            .collect()
    }
}

pub struct SledVault {
    path: PathBuf,
    cache_bytes: u64,
    db: RwLock<sled::Db>,
    /// The highest index any chunk has held since start (at least that of the last
    /// chunk's last row): a row above it starts a new chunk without a lookup.
    highest: std::sync::Mutex<Option<u64>>,
}

fn open_db(path: &Path, cache_bytes: u64) -> StoreResult<sled::Db> {
    Ok(sled::Config::new()
        .path(path)
        .cache_capacity(cache_bytes)
        .open()?)
}

/// The least key above every key that starts with `prefix` (none if it is all 0xff).
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

impl SledVault {
    /// Open the vault at `path`, finishing an interrupted compaction first.
    pub fn open(path: &Path, cache_bytes: u64) -> StoreResult<Self> {
        let (tmp, old) = (sibling(path, ".compacting"), sibling(path, ".old"));
        let io = |e: std::io::Error| StoreError::Backend(format!("vault compaction recovery: {e}"));
        if !path.exists() {
            if tmp.join("COMPLETE").exists() {
                std::fs::rename(&tmp, path).map_err(io)?;
            } else if old.exists() {
                std::fs::rename(&old, path).map_err(io)?;
            }
        }
        for leftover in [&tmp, &old] {
            if leftover.exists() {
                std::fs::remove_dir_all(leftover).map_err(io)?;
            }
        }
        let db = open_db(path, cache_bytes)?;
        let highest = Self::last_chunk_index(&db)?;
        Ok(Self {
            path: path.to_owned(),
            cache_bytes,
            db: RwLock::new(db),
            highest: std::sync::Mutex::new(highest),
        })
    }

    fn last_chunk_index(db: &sled::Db) -> StoreResult<Option<u64>> {
        let Some(kv) = db.scan_prefix(CHUNK).next_back() else {
            return Ok(None);
        };
        let (_, v) = kv?;
        Ok(chunk::rows(&v)?.last().map(|(i, _)| *i))
    }

    /// The chunk that holds `index` if any chunk does: `(first index, bytes)`.
    fn chunk_of(db: &sled::Db, index: u64) -> StoreResult<Option<(u64, sled::IVec)>> {
        let Some(kv) = db
            .range(&chunk_key(0)[..]..=&chunk_key(index)[..])
            .next_back()
        else {
            return Ok(None);
        };
        let (k, v) = kv?;
        let first = u64::from_be_bytes(
            k[CHUNK.len()..]
                .try_into()
                .map_err(|_| StoreError::Corrupt("malformed vault chunk key".into()))?,
        );
        Ok(Some((first, v)))
    }

    /// Decision rows with keys in `[lo, hi)` from the chunks, in order, at most `limit`.
    fn chunk_rows(
        db: &sled::Db,
        lo: &[u8],
        hi: &[u8],
        reverse: bool,
        limit: usize,
    ) -> StoreResult<Rows> {
        let mut out = Vec::new();
        let row_end = [b'd', b'/' + 1];
        if hi <= ROW || lo >= &row_end[..] || limit == 0 {
            return Ok(out);
        }
        let (from, to) = (bound_index(lo), bound_index(hi));
        // Chunks from the one holding `from` (or before it) up to the one holding `to`.
        let start = match Self::chunk_of(db, from)? {
            Some((first, _)) => first,
            None => 0,
        };
        let chunks = db.range(&chunk_key(start)[..]..=&chunk_key(to)[..]);
        let take =
            |kv: sled::Result<(sled::IVec, sled::IVec)>, out: &mut Rows| -> StoreResult<bool> {
                let (_, v) = kv?;
                let mut rows = chunk::rows(&v)?;
                if reverse {
                    rows.reverse();
                }
                for (index, row) in rows {
                    let k = row_key(index);
                    if k.as_slice() >= lo && k.as_slice() < hi {
                        out.push((k, row.to_vec()));
                        if out.len() == limit {
                            return Ok(false);
                        }
                    }
                }
                Ok(true)
            };
        if reverse {
            for kv in chunks.rev() {
                if !take(kv, &mut out)? {
                    break;
                }
            }
        } else {
            for kv in chunks {
                if !take(kv, &mut out)? {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn db(&self) -> std::sync::RwLockReadGuard<'_, sled::Db> {
        self.db.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        let db = self.db();
        if let Some(index) = row_index(key) {
            if let Some((_, raw)) = Self::chunk_of(&db, index)? {
                if let Some(row) = chunk::find(&raw, index)? {
                    return Ok(Some(row.to_vec()));
                }
            }
            // A row of its own, as vaults written before chunks hold them.
        }
        Ok(db.get(key)?.map(|v| v.to_vec()))
    }

    pub fn scan(&self, prefix: &[u8], limit: usize) -> StoreResult<Rows> {
        match successor(prefix) {
            Some(end) => self.range(prefix, &end, false, limit),
            None => self.range(prefix, &[0xff; 64], false, limit),
        }
    }

    /// Rows with keys in `[lo, hi)`, ascending (or descending), at most `limit`: sled's
    /// own keys but chunks, merged with the decision rows the chunks hold.
    pub fn range(&self, lo: &[u8], hi: &[u8], reverse: bool, limit: usize) -> StoreResult<Rows> {
        let db = self.db();
        let mut out = Vec::new();
        if lo >= hi || limit == 0 {
            return Ok(out);
        }
        let mut push = |kv: sled::Result<(sled::IVec, sled::IVec)>| -> StoreResult<bool> {
            let (k, v) = kv?;
            if !k.starts_with(CHUNK) {
                out.push((k.to_vec(), v.to_vec()));
            }
            Ok(out.len() < limit)
        };
        if reverse {
            for kv in db.range(lo..hi).rev() {
                if !push(kv)? {
                    break;
                }
            }
        } else {
            for kv in db.range(lo..hi) {
                if !push(kv)? {
                    break;
                }
            }
        }
        let rows = Self::chunk_rows(&db, lo, hi, reverse, limit)?;
        if rows.is_empty() {
            return Ok(out);
        }
        out.extend(rows);
        if reverse {
            out.sort_by(|a, b| b.0.cmp(&a.0));
        } else {
            out.sort_by(|a, b| a.0.cmp(&b.0));
        }
        out.truncate(limit);
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
        let mut b = sled::Batch::default();
        let mut p = Pending {
            first_index,
            puts: Vec::new(),
            deletes: Vec::new(),
            restores: Vec::new(),
        };
        // Decision rows above every chunk (a new batch's) go into new chunks; any other
        // joins the chunk that covers its index (the first chunk below all, if none does).
        let mut fresh: Vec<(u64, &[u8])> = Vec::new();
        let mut older: BTreeMap<Option<u64>, Vec<(u64, &[u8])>> = BTreeMap::new();
        for (k, v) in writes {
            match (row_index(k), v) {
                (Some(i), Some(v)) if highest.is_none_or(|h| i > h) => fresh.push((i, v)),
                (Some(i), Some(v)) => {
                    let first = Self::chunk_of(&db, i)?.map(|(first, _)| first);
                    older.entry(first).or_default().push((i, v));
                }
                (_, Some(v)) => {
                    b.insert(k.as_slice(), v.as_slice());
                    p.puts.push(serde_bytes::ByteBuf::from(k.clone()));
                }
                (_, None) => p.deletes.push(serde_bytes::ByteBuf::from(k.clone())),
            }
        }
        for (first, rows) in older {
            let (key, merged) = match first {
                Some(first) => {
                    let old = db.get(chunk_key(first))?.ok_or_else(|| {
                        StoreError::Corrupt("vault chunk vanished while writing".into())
                    })?;
                    let mut merged: BTreeMap<u64, Vec<u8>> = chunk::rows(&old)?
                        .into_iter()
                        .map(|(i, r)| (i, r.to_vec()))
                        .collect();
                    merged.extend(rows.into_iter().map(|(i, r)| (i, r.to_vec())));
                    p.restores.push((
                        serde_bytes::ByteBuf::from(chunk_key(first).to_vec()),
                        serde_bytes::ByteBuf::from(old.to_vec()),
                    ));
                    (chunk_key(first), merged)
                }
                None => {
                    let key = chunk_key(rows[0].0);
                    p.puts.push(serde_bytes::ByteBuf::from(key.to_vec()));
                    let merged = rows.into_iter().map(|(i, r)| (i, r.to_vec())).collect();
                    (key, merged)
                }
            };
            b.insert(
                &key[..],
                chunk::encode(merged.iter().map(|(i, r)| (*i, r.as_slice()))),
            );
        }
        let mut rest = fresh.as_slice();
        while let Some((first, _)) = rest.first() {
            let mut bytes = 0;
            let n = rest
                .iter()
                .take_while(|(_, r)| {
                    let open = bytes == 0 || bytes + r.len() <= CHUNK_BYTES;
                    bytes += r.len();
                    open
                })
                .count();
            let key = chunk_key(*first);
            b.insert(&key[..], chunk::encode(rest[..n].iter().copied()));
            p.puts.push(serde_bytes::ByteBuf::from(key.to_vec()));
            rest = &rest[n..];
        }
        if let Some((last, _)) = fresh.last() {
            *highest = Some(*last);
        }
        b.insert(MARKER, serde_cbor::to_vec(&p).expect("marker encodes"));
        db.apply_batch(b)?;
        db.flush()?;
        Ok(())
    }

    /// Delete rows: sled keys directly, decision rows by rewriting (or removing) the
    /// chunks that hold them.
    fn delete_rows<'a>(
        db: &sled::Db,
        keys: impl IntoIterator<Item = &'a [u8]>,
        b: &mut sled::Batch,
    ) -> StoreResult<()> {
        let mut by_chunk: BTreeMap<u64, (sled::IVec, Vec<u64>)> = BTreeMap::new();
        for k in keys {
            if let Some(i) = row_index(k) {
                if let Some((first, raw)) = Self::chunk_of(db, i)? {
                    by_chunk.entry(first).or_insert((raw, Vec::new())).1.push(i);
                }
            }
            // (A decision row may also be a key of its own, written before chunks.)
            b.remove(k);
        }
        for (first, (raw, gone)) in by_chunk {
            let kept: Vec<(u64, &[u8])> = chunk::rows(&raw)?
                .into_iter()
                .filter(|(i, _)| !gone.contains(i))
                .collect();
            if kept.is_empty() {
                b.remove(&chunk_key(first)[..]);
            } else {
                b.insert(&chunk_key(first)[..], chunk::encode(kept));
            }
        }
        Ok(())
    }

    /// Second half, once the entries are durable: apply the deletes.
    pub fn finish(&self, writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>) -> StoreResult<()> {
        let db = self.db();
        let mut b = sled::Batch::default();
        let deletes = writes
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.as_slice());
        Self::delete_rows(&db, deletes, &mut b)?;
        b.remove(MARKER);
        db.apply_batch(b)?;
        db.flush()?;
        Ok(())
    }

    /// Recovery: settle a batch a crash interrupted, given the log's durable size.
    pub fn recover(&self, log_size: u64) -> StoreResult<usize> {
        let db = self.db();
        let Some(raw) = db.get(MARKER)? else {
            return Ok(0);
        };
        let p: Pending = serde_cbor::from_slice(&raw)
            .map_err(|e| StoreError::Corrupt(format!("vault marker: {e}")))?;
        let mut b = sled::Batch::default();
        let n = if p.first_index >= log_size {
            // The entries never landed: their personal data must not linger.
            p.puts.iter().for_each(|k| b.remove(k.as_slice()));
            for (k, v) in &p.restores {
                b.insert(k.as_slice(), v.as_slice());
            }
            p.puts.len() + p.restores.len()
        } else {
            // The entries landed (an erasure, say): finish the deletions.
            Self::delete_rows(&db, p.deletes.iter().map(|k| k.as_slice()), &mut b)?;
            p.deletes.len()
        };
        b.remove(MARKER);
        db.apply_batch(b)?;
        db.flush()?;
        drop(db);
        *self.highest.lock().unwrap_or_else(|e| e.into_inner()) =
            Self::last_chunk_index(&self.db())?;
        Ok(n)
    }

    /// Rewrite the live rows into a fresh database and delete the old files, so that
    /// removed values are gone from the disk, not just unreachable.
    pub fn compact(&self) -> StoreResult<usize> {
        let mut guard = self.db.write().unwrap_or_else(|e| e.into_inner());
        let (tmp, old) = (
            sibling(&self.path, ".compacting"),
            sibling(&self.path, ".old"),
        );
        let io = |e: std::io::Error| StoreError::Backend(format!("vault compaction: {e}"));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io)?;
        }
        let fresh = open_db(&tmp, self.cache_bytes)?;
        let mut n = 0;
        for kv in guard.iter() {
            let (k, v) = kv?;
            fresh.insert(k, v)?;
            n += 1;
        }
        fresh.flush()?;
        drop(fresh);
        std::fs::write(tmp.join("COMPLETE"), b"").map_err(io)?;
        // Swap: the current database is closed before its files move.
        let placeholder = sled::Config::new().temporary(true).open()?;
        let current = std::mem::replace(&mut *guard, placeholder);
        current.flush()?;
        drop(current);
        std::fs::rename(&self.path, &old).map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        std::fs::remove_file(self.path.join("COMPLETE")).map_err(io)?;
        std::fs::remove_dir_all(&old).map_err(io)?;
        if let Some(parent) = self.path.parent() {
            std::fs::File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        *guard = open_db(&self.path, self.cache_bytes)?;
        Ok(n)
    }
}
