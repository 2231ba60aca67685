//! The vault's storage: an erasable sled database beside the log's, holding personal
//! values and their salts (never in an entry or a proof).
//!
//! A batch's vault writes are made durable *before* its entries, its vault deletions
//! *after* them, with a marker that lets recovery finish or undo whichever half a crash
//! interrupted: puts of a batch whose entries never landed are removed; deletions of a
//! batch whose entries landed are applied. Deleted values stay in sled's old segments
//! until [`SledVault::compact`] rewrites the live rows into a fresh database and
//! removes the old files: that is when erased data leaves the disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use super::store::{Rows, StoreError, StoreResult};

const MARKER: &[u8] = b"\x00pending";

#[derive(Serialize, Deserialize)]
struct Pending {
    first_index: u64,
    puts: Vec<serde_bytes::ByteBuf>,
    deletes: Vec<serde_bytes::ByteBuf>,
}

pub struct SledVault {
    path: PathBuf,
    cache_bytes: u64,
    db: RwLock<sled::Db>,
}

fn open_db(path: &Path, cache_bytes: u64) -> StoreResult<sled::Db> {
    Ok(sled::Config::new()
        .path(path)
        .cache_capacity(cache_bytes)
        .open()?)
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
        Ok(Self {
            path: path.to_owned(),
            cache_bytes,
            db: RwLock::new(open_db(path, cache_bytes)?),
        })
    }

    fn db(&self) -> std::sync::RwLockReadGuard<'_, sled::Db> {
        self.db.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.db().get(key)?.map(|v| v.to_vec()))
    }

    pub fn scan(&self, prefix: &[u8], limit: usize) -> StoreResult<Rows> {
        let db = self.db();
        let mut out = Vec::new();
        for kv in db.scan_prefix(prefix).take(limit) {
            let (k, v) = kv?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Rows with keys in `[lo, hi)`, ascending (or descending), at most `limit`.
    pub fn range(&self, lo: &[u8], hi: &[u8], reverse: bool, limit: usize) -> StoreResult<Rows> {
        let db = self.db();
        let mut out = Vec::new();
        if lo >= hi {
            return Ok(out);
        }
        let mut push = |kv: sled::Result<(sled::IVec, sled::IVec)>| -> StoreResult<()> {
            let (k, v) = kv?;
            out.push((k.to_vec(), v.to_vec()));
            Ok(())
        };
        if reverse {
            for kv in db.range(lo..hi).rev().take(limit) {
                push(kv)?;
            }
        } else {
            for kv in db.range(lo..hi).take(limit) {
                push(kv)?;
            }
        }
        Ok(out)
    }

    /// First half of a batch: make its puts durable, with a marker naming its deletes.
    pub fn prepare(
        &self,
        first_index: u64,
        writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    ) -> StoreResult<()> {
        let db = self.db();
        let mut b = sled::Batch::default();
        let mut p = Pending {
            first_index,
            puts: Vec::new(),
            deletes: Vec::new(),
        };
        for (k, v) in writes {
            match v {
                Some(v) => {
                    b.insert(k.as_slice(), v.as_slice());
                    p.puts.push(serde_bytes::ByteBuf::from(k.clone()));
                }
                None => p.deletes.push(serde_bytes::ByteBuf::from(k.clone())),
            }
        }
        b.insert(MARKER, serde_cbor::to_vec(&p).expect("marker encodes"));
        db.apply_batch(b)?;
        db.flush()?;
        Ok(())
    }

    /// Second half, once the entries are durable: apply the deletes.
    pub fn finish(&self, writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>) -> StoreResult<()> {
        let db = self.db();
        let mut b = sled::Batch::default();
        for (k, v) in writes {
            if v.is_none() {
                b.remove(k.as_slice());
            }
        }
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
            p.puts.len()
        } else {
            // The entries landed (an erasure, say): finish the deletions.
            p.deletes.iter().for_each(|k| b.remove(k.as_slice()));
            p.deletes.len()
        };
        b.remove(MARKER);
        db.apply_batch(b)?;
        db.flush()?;
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
