//! The storage boundary of the ledger: one small trait, so that a second backend is
//! a new implementation rather than a rewrite, and its sled implementation.
//!
//! What a backend keeps: entries (grouped by the batch that wrote them), tiles of
//! complete-subtree hashes, every signed checkpoint, the head (size, root, last time
//! and leaf hash), and the projections that the layers above derive from entries.
//! A [`CommitBatch`] is applied atomically and is durable when `commit` returns.

use std::collections::BTreeMap;
use std::path::Path;

use super::merkle::Hash;
use super::segments::{Location, Segments};
use super::tiles::TileId;
use super::trail_chunks::{self, Chunk, P_CHUNK};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage backend: {0}")]
    Backend(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The log's head: what the last durable batch left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub size: u64,
    pub root: Hash,
    /// Time of the last entry (unix µs); 0 for an empty log.
    pub last_time: u64,
    /// Leaf hash of the last entry; zeros for an empty log.
    pub last_leaf: Hash,
}

impl Head {
    pub const EMPTY_LEN: usize = 8 + 32 + 8 + 32;

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::EMPTY_LEN);
        v.extend_from_slice(&self.size.to_be_bytes());
        v.extend_from_slice(&self.root);
        v.extend_from_slice(&self.last_time.to_be_bytes());
        v.extend_from_slice(&self.last_leaf);
        v
    }

    pub fn from_bytes(b: &[u8]) -> StoreResult<Self> {
        if b.len() != Self::EMPTY_LEN {
            return Err(StoreError::Corrupt(
                "head record has the wrong length".into(),
            ));
        }
        Ok(Self {
            size: u64::from_be_bytes(b[0..8].try_into().unwrap()),
            root: b[8..40].try_into().unwrap(),
            last_time: u64::from_be_bytes(b[40..48].try_into().unwrap()),
            last_leaf: b[48..80].try_into().unwrap(),
        })
    }
}

/// One batch of the single writer: applied atomically, durable on return.
#[derive(Debug, Default)]
pub struct CommitBatch {
    /// Index of the first entry in `entries`.
    pub first_index: u64,
    pub entries: Vec<Vec<u8>>,
    pub tiles: Vec<(TileId, Vec<u8>)>,
    /// (tree size, signed note) of the checkpoint this batch yields (a copied log
    /// brings several).
    pub checkpoints: Vec<(u64, String)>,
    pub head: Option<Head>,
    /// Projection writes (`None` deletes), in the projections' own key space.
    pub projections: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Vault writes (`None` deletes): personal data beside the log, never in it.
    pub vault: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Metadata writes (origin and the like).
    pub meta: Vec<(String, Vec<u8>)>,
}

/// A page of projection rows, keys in the projections' own key space.
pub type Rows = Vec<(Vec<u8>, Vec<u8>)>;

/// The storage boundary. Implementations are shared by the single writer and any
/// number of readers.
pub trait Store: Send + Sync + 'static {
    fn head(&self) -> StoreResult<Option<Head>>;
    /// True when other processes may append to the same log (a database shared by
    /// several nodes): the writer then takes the head lock before every batch and
    /// readers refresh the published checkpoint from the store.
    fn shared(&self) -> bool {
        false
    }
    /// Begin a write round: take the log-head lock (a shared backend holds it until
    /// `commit` or `release`) and return the head as stored.
    fn lock_head(&self) -> StoreResult<Option<Head>> {
        self.head()
    }
    /// End a write round that commits nothing, releasing the head lock.
    fn release(&self) -> StoreResult<()> {
        Ok(())
    }
    fn meta(&self, name: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Entries `[start, end)`; fewer when the log ends earlier.
    fn entries(&self, start: u64, end: u64) -> StoreResult<Vec<Vec<u8>>>;
    /// Visit every stored entry from `start` in index order, with its index; stop early when `f` says false.
    fn for_each_entry(&self, start: u64, f: &mut dyn FnMut(u64, &[u8]) -> bool) -> StoreResult<()>;
    fn tile(&self, id: TileId) -> StoreResult<Option<Vec<u8>>>;
    fn checkpoint(&self, size: u64) -> StoreResult<Option<String>>;
    /// Stored checkpoints with size in `[from, ..)`, ascending, at most `limit`.
    fn checkpoints(&self, from: u64, limit: usize) -> StoreResult<Vec<(u64, String)>>;
    /// Projection rows with keys in `[lo, hi)`, ascending (or descending), at most `limit`.
    fn range(&self, lo: &[u8], hi: &[u8], reverse: bool, limit: usize) -> StoreResult<Rows>;
    /// The size of the last stored checkpoint below `size`.
    fn previous_checkpoint(&self, size: u64) -> StoreResult<Option<u64>>;
    fn get(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>>;
    /// Several projection rows at once, in the order of `keys`.
    fn get_many(&self, keys: &[Vec<u8>]) -> StoreResult<Vec<Option<Vec<u8>>>> {
        keys.iter().map(|k| self.get(k)).collect()
    }
    /// Rows whose key starts with `prefix`, strictly after (or, reversed, before) `cursor`, at most `limit`.
    fn scan(
        &self,
        prefix: &[u8],
        cursor: Option<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> StoreResult<Rows>;
    fn vault_get(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>>;
    /// Vault rows whose key starts with `prefix`, ascending, at most `limit`.
    fn vault_scan(&self, prefix: &[u8], limit: usize) -> StoreResult<Rows>;
    /// Vault rows with keys in `[lo, hi)`, ascending (or descending), at most `limit`.
    fn vault_range(&self, lo: &[u8], hi: &[u8], reverse: bool, limit: usize) -> StoreResult<Rows>;
    /// Settle vault writes of a batch a crash interrupted, given the log's durable size.
    fn vault_recover(&self, log_size: u64) -> StoreResult<usize>;
    /// Make deleted vault values leave the disk; returns the live rows kept.
    fn vault_compact(&self) -> StoreResult<usize>;
    /// Apply atomically and make durable before returning.
    fn commit(&self, batch: CommitBatch) -> StoreResult<()>;
    /// Remove entries at index `size` and above (a batch whose head never landed).
    fn truncate_entries(&self, size: u64) -> StoreResult<usize>;
    /// Remove every projection row (before a rebuild from the log).
    fn clear_projections(&self) -> StoreResult<()>;
}

const P_ENTRY: u8 = b'e';
const P_TILE: u8 = b't';
const P_CHECKPOINT: u8 = b'c';
const P_PROJECTION: u8 = b'p';
const P_META: u8 = b'm';
const K_HEAD: &[u8] = b"h";

fn key_u64(prefix: u8, n: u64) -> [u8; 9] {
    let mut k = [prefix; 9];
    k[1..].copy_from_slice(&n.to_be_bytes());
    k
}

fn tile_key((level, index): TileId) -> [u8; 10] {
    let mut k = [P_TILE; 10];
    k[1] = level;
    k[2..].copy_from_slice(&index.to_be_bytes());
    k
}

fn prefixed(prefix: u8, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(prefix);
    k.extend_from_slice(key);
    k
}

/// The least key above every key that starts with `prefix` (none if there is none).
pub(crate) fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Visit `items` front to back (or, `reverse`, back to front) until `f` says false.
pub(crate) fn walk<I: DoubleEndedIterator, E>(
    items: I,
    reverse: bool,
    mut f: impl FnMut(I::Item) -> Result<bool, E>,
) -> Result<(), E> {
    if reverse {
        for item in items.rev() {
            if !f(item)? {
                break;
            }
        }
    } else {
        for item in items {
            if !f(item)? {
                break;
            }
        }
    }
    Ok(())
}

/// Merge `more` into `out` (each in key order, ascending or descending as `reverse`
/// says, at most `limit` rows): in order, one row per key — `out`'s where both hold
/// one — at most `limit`.
pub(crate) fn merge_rows(out: &mut Rows, more: Rows, reverse: bool, limit: usize) {
    if more.is_empty() {
        return;
    }
    out.extend(more);
    // Stable: of equal keys, `out`'s comes first and the dedup keeps it.
    sort_rows(out, reverse);
    out.dedup_by(|later, first| later.0 == first.0);
    out.truncate(limit);
}

/// Rows in key order, ascending or descending.
pub(crate) fn sort_rows(rows: &mut Rows, reverse: bool) {
    if reverse {
        rows.sort_by(|a, b| b.0.cmp(&a.0));
    } else {
        rows.sort_by(|a, b| a.0.cmp(&b.0));
    }
}

fn proj_key(key: &[u8]) -> Vec<u8> {
    prefixed(P_PROJECTION, key)
}

/// Walk a bundle; `f(position, bytes)`; stops when `f` says false. Errors on a malformed bundle.
fn walk_bundle(b: &[u8], mut f: impl FnMut(u64, &[u8]) -> bool) -> StoreResult<u64> {
    let mut pos = 0usize;
    let mut n = 0u64;
    while pos < b.len() {
        let len_bytes: [u8; 4] = b
            .get(pos..pos + 4)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| StoreError::Corrupt("truncated entry bundle".into()))?;
        let len = u32::from_be_bytes(len_bytes) as usize;
        let e = b
            .get(pos + 4..pos + 4 + len)
            .ok_or_else(|| StoreError::Corrupt("truncated entry bundle".into()))?;
        pos += 4 + len;
        if !f(n, e) {
            return Ok(n + 1);
        }
        n += 1;
    }
    Ok(n)
}

/// The embedded default backend: one sled tree with prefixed key spaces, so that a
/// whole batch is one atomic `apply_batch` followed by one `flush`.
#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
    tree: sled::Tree,
    vault: std::sync::Arc<super::vault_store::SledVault>,
    /// Entry bundles live in files; the tree holds their locations.
    segments: std::sync::Arc<Segments>,
    /// Per trail group (`trail\0 ‖ system ‖ \0`), the greatest row key its chunks hold
    /// (`None`: no chunk), as far as read or written since open (see trail_chunks).
    trail_edges: std::sync::Arc<std::sync::Mutex<TrailEdges>>,
}

type TrailEdges = std::collections::HashMap<Vec<u8>, Option<Vec<u8>>>;

impl SledStore {
    pub fn open(path: &Path) -> StoreResult<Self> {
        Self::open_with_cache(path, 256 << 20)
    }

    /// Open with `cache_bytes` of sled page cache for the log (a quarter more for the vault).
    pub fn open_with_cache(path: &Path, cache_bytes: u64) -> StoreResult<Self> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .open()?;
        let tree = db.open_tree("ledger")?;
        let vault = std::sync::Arc::new(super::vault_store::SledVault::open(
            &path.join("vault"),
            cache_bytes / 4,
        )?);
        let last = Self::last_location(&tree)?;
        let segments = std::sync::Arc::new(Segments::open(&path.join("entries"), last)?);
        Ok(Self {
            db,
            tree,
            vault,
            segments,
            trail_edges: Default::default(),
        })
    }

    /// (trail chunks, trail rows that are keys of their own), for tests.
    #[cfg(test)]
    pub(crate) fn trail_layout(&self) -> (usize, usize) {
        let own = proj_key(b"trail\0");
        (
            self.tree.scan_prefix([P_CHUNK]).count(),
            self.tree.scan_prefix(own).count(),
        )
    }

    /// Whether trail row `key` of `group` lies above every row of the group's chunks
    /// (their greatest key is read once, then kept in `edges`).
    fn above_trail_edge(
        &self,
        edges: &mut TrailEdges,
        group: &[u8],
        key: &[u8],
    ) -> StoreResult<bool> {
        if !edges.contains_key(group) {
            let edge = match self
                .tree
                .scan_prefix(trail_chunks::chunk_key(group))
                .next_back()
            {
                Some(kv) => Some(Chunk::parse(&kv?.1)?.max.to_vec()),
                None => None,
            };
            edges.insert(group.to_vec(), edge);
        }
        Ok(edges[group].as_deref().is_none_or(|e| key > e))
    }

    /// The chunk whose range holds trail row `key`, if one does: `(sled key, bytes)`.
    fn trail_chunk_of(&self, key: &[u8]) -> StoreResult<Option<(sled::IVec, sled::IVec)>> {
        let Some(group) = trail_chunks::group(key) else {
            return Ok(None);
        };
        let lo = trail_chunks::chunk_key(group);
        let hi = trail_chunks::chunk_key(key);
        match self.tree.range(lo..=hi).next_back() {
            Some(kv) => {
                let (k, v) = kv?;
                let holds = key <= Chunk::parse(&v)?.max;
                Ok(holds.then_some((k, v)))
            }
            None => Ok(None),
        }
    }

    /// Projection rows with keys in `[lo, hi)` (`hi` `None`: to the end), ascending or
    /// descending, at most `limit`: rows of their own merged with chunked trail rows.
    fn projection_rows(
        &self,
        lo: &[u8],
        hi: Option<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> StoreResult<Rows> {
        let mut out = Vec::new();
        if hi.is_some_and(|h| lo >= h) || limit == 0 {
            return Ok(out);
        }
        let (rlo, rhi) = (
            proj_key(lo),
            hi.map(proj_key).unwrap_or_else(|| vec![P_PROJECTION + 1]),
        );
        walk(
            self.tree.range(rlo..rhi),
            reverse,
            |kv| -> StoreResult<bool> {
                let (k, v) = kv?;
                out.push((k[1..].to_vec(), v.to_vec()));
                Ok(out.len() < limit)
            },
        )?;
        if trail_chunks::meets(lo, hi) {
            let chunked = self.chunked_trail_rows(lo, hi, reverse, limit)?;
            merge_rows(&mut out, chunked, reverse, limit);
        }
        Ok(out)
    }

    /// Chunked trail rows in `[lo, hi)`, in order, at most `limit`: chunks are disjoint
    /// and sort as their rows, so this reads from the chunk holding `lo` (or `hi`) on
    /// and stops at the first chunk beyond the other bound.
    fn chunked_trail_rows(
        &self,
        lo: &[u8],
        hi: Option<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> StoreResult<Rows> {
        let mut out = Vec::new();
        let within = |k: &[u8]| k >= lo && hi.is_none_or(|h| k < h);
        // A chunk's rows in `[lo, hi)` into `out`; false once `limit` is reached.
        let take = |c: &Chunk, out: &mut Rows| -> StoreResult<bool> {
            let mut rows = c.rows()?;
            if reverse {
                rows.reverse();
            }
            for (k, v) in rows {
                if within(&k) {
                    out.push((k, v.to_vec()));
                    if out.len() == limit {
                        return Ok(false);
                    }
                }
            }
            Ok(true)
        };
        // Reversed: every chunk below the one `hi` would start, backwards. Forward: from
        // the chunk holding `lo` (or where it would start) on.
        let end = vec![P_CHUNK + 1];
        let (from, to) = if reverse {
            let upper = hi.map(trail_chunks::chunk_key).unwrap_or(end);
            (vec![P_CHUNK], upper)
        } else {
            let floor = self
                .tree
                .range(&[P_CHUNK][..]..=&trail_chunks::chunk_key(lo)[..])
                .next_back()
                .transpose()?;
            let start = match floor {
                Some((k, _)) => k.to_vec(),
                None => trail_chunks::chunk_key(lo),
            };
            (start, end)
        };
        walk(
            self.tree.range(from..to),
            reverse,
            |kv| -> StoreResult<bool> {
                let raw = kv?.1;
                let c = Chunk::parse(&raw)?;
                let past = if reverse {
                    c.max < lo
                } else {
                    hi.is_some_and(|h| c.min >= h)
                };
                if past {
                    return Ok(false);
                }
                take(&c, &mut out)
            },
        )?;
        Ok(out)
    }

    /// The location of the last entry bundle, if it lives in a segment file.
    fn last_location(tree: &sled::Tree) -> StoreResult<Option<Location>> {
        let lo = [P_ENTRY];
        let hi = [P_ENTRY + 1];
        Ok(match tree.range(&lo[..]..&hi[..]).next_back() {
            Some(kv) => Location::parse(&kv?.1),
            None => None,
        })
    }

    /// Walk the entries an entry row stands for (a segment record, or a bundle inline).
    fn walk_row(&self, row: &[u8], f: impl FnMut(u64, &[u8]) -> bool) -> StoreResult<()> {
        match Location::parse(row) {
            Some(loc) => self.segments.walk(loc, f),
            None => walk_bundle(row, f).map(|_| ()),
        }
    }

    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// The bundle holding entry `index`: (first index, its row's value).
    fn bundle_for(&self, index: u64) -> StoreResult<Option<(u64, sled::IVec)>> {
        let hi = key_u64(P_ENTRY, index);
        let lo = [P_ENTRY];
        match self.tree.range(&lo[..]..=&hi[..]).next_back() {
            Some(kv) => {
                let (k, v) = kv?;
                let first = u64::from_be_bytes(
                    k[1..9]
                        .try_into()
                        .map_err(|_| StoreError::Corrupt("entry key".into()))?,
                );
                Ok(Some((first, v)))
            }
            None => Ok(None),
        }
    }
}

impl Store for SledStore {
    fn head(&self) -> StoreResult<Option<Head>> {
        self.tree
            .get(K_HEAD)?
            .map(|v| Head::from_bytes(&v))
            .transpose()
    }

    fn meta(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        let mut k = vec![P_META];
        k.extend_from_slice(name.as_bytes());
        Ok(self.tree.get(k)?.map(|v| v.to_vec()))
    }

    fn entries(&self, start: u64, end: u64) -> StoreResult<Vec<Vec<u8>>> {
        if end == start + 1 {
            // One entry (the common read): it is in the bundle that holds it.
            let Some((first, row)) = self.bundle_for(start)? else {
                return Ok(Vec::new());
            };
            if let Some(loc) = Location::parse(&row) {
                return Ok(self
                    .segments
                    .read_entry(loc, start - first)?
                    .into_iter()
                    .collect());
            }
            let mut found = None;
            walk_bundle(&row, |i, e| {
                if first + i == start {
                    found = Some(e.to_vec());
                    return false;
                }
                true
            })?;
            return Ok(found.into_iter().collect());
        }
        let mut out = Vec::new();
        if start >= end {
            return Ok(out);
        }
        let Some((first, _)) = self.bundle_for(start)? else {
            return Ok(out);
        };
        let lo = key_u64(P_ENTRY, first);
        let hi = key_u64(P_ENTRY, end);
        for kv in self.tree.range(lo..hi) {
            let (k, v) = kv?;
            let base = u64::from_be_bytes(k[1..9].try_into().unwrap());
            self.walk_row(&v, |i, e| {
                let idx = base + i;
                if idx >= start && idx < end {
                    out.push(e.to_vec());
                }
                idx + 1 < end
            })?;
        }
        Ok(out)
    }

    fn for_each_entry(&self, start: u64, f: &mut dyn FnMut(u64, &[u8]) -> bool) -> StoreResult<()> {
        let first = match self.bundle_for(start)? {
            Some((first, _)) => first,
            None => start,
        };
        let lo = key_u64(P_ENTRY, first);
        let hi = [P_ENTRY + 1];
        let mut go_on = true;
        for kv in self.tree.range(&lo[..]..&hi[..]) {
            let (k, v) = kv?;
            let base = u64::from_be_bytes(k[1..9].try_into().unwrap());
            self.walk_row(&v, |i, e| {
                let idx = base + i;
                if idx >= start {
                    go_on = f(idx, e);
                }
                go_on
            })?;
            if !go_on {
                break;
            }
        }
        Ok(())
    }

    fn tile(&self, id: TileId) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.tree.get(tile_key(id))?.map(|v| v.to_vec()))
    }

    fn checkpoint(&self, size: u64) -> StoreResult<Option<String>> {
        match self.tree.get(key_u64(P_CHECKPOINT, size))? {
            Some(v) => String::from_utf8(v.to_vec()).map(Some).map_err(|_| {
                StoreError::Corrupt(format!("checkpoint at size {size} is not UTF-8"))
            }),
            None => Ok(None),
        }
    }

    fn checkpoints(&self, from: u64, limit: usize) -> StoreResult<Vec<(u64, String)>> {
        let lo = key_u64(P_CHECKPOINT, from);
        let hi = [P_CHECKPOINT + 1];
        let mut out = Vec::new();
        for kv in self.tree.range(&lo[..]..&hi[..]).take(limit) {
            let (k, v) = kv?;
            let size = u64::from_be_bytes(k[1..9].try_into().unwrap());
            let text = String::from_utf8(v.to_vec()).map_err(|_| {
                StoreError::Corrupt(format!("checkpoint at size {size} is not UTF-8"))
            })?;
            out.push((size, text));
        }
        Ok(out)
    }

    fn range(&self, lo: &[u8], hi: &[u8], reverse: bool, limit: usize) -> StoreResult<Rows> {
        self.projection_rows(lo, Some(hi), reverse, limit)
    }

    fn previous_checkpoint(&self, size: u64) -> StoreResult<Option<u64>> {
        let lo = [P_CHECKPOINT];
        let hi = key_u64(P_CHECKPOINT, size);
        match self.tree.range(&lo[..]..&hi[..]).next_back() {
            Some(kv) => Ok(Some(u64::from_be_bytes(kv?.0[1..9].try_into().unwrap()))),
            None => Ok(None),
        }
    }

    fn get(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        if let Some((_, raw)) = self.trail_chunk_of(key)? {
            if let Some(v) = Chunk::parse(&raw)?.find(key)? {
                return Ok(Some(v.to_vec()));
            }
        }
        Ok(self.tree.get(proj_key(key))?.map(|v| v.to_vec()))
    }

    fn scan(
        &self,
        prefix: &[u8],
        cursor: Option<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> StoreResult<Rows> {
        let end = successor(prefix);
        match (cursor, reverse) {
            (None, _) => self.projection_rows(prefix, end.as_deref(), reverse, limit),
            (Some(c), false) => {
                let after = [c, &[0][..]].concat().max(prefix.to_vec());
                self.projection_rows(&after, end.as_deref(), false, limit)
            }
            (Some(c), true) => {
                let before = match end {
                    Some(e) if e.as_slice() < c => e,
                    _ => c.to_vec(),
                };
                self.projection_rows(prefix, Some(&before), true, limit)
            }
        }
    }

    fn vault_get(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        self.vault.get(key)
    }

    fn vault_scan(&self, prefix: &[u8], limit: usize) -> StoreResult<Rows> {
        self.vault.scan(prefix, limit)
    }

    fn vault_range(&self, lo: &[u8], hi: &[u8], reverse: bool, limit: usize) -> StoreResult<Rows> {
        self.vault.range(lo, hi, reverse, limit)
    }

    fn vault_recover(&self, log_size: u64) -> StoreResult<usize> {
        self.vault.recover(log_size)
    }

    fn vault_compact(&self) -> StoreResult<usize> {
        self.vault.compact()
    }

    fn commit(&self, mut batch: CommitBatch) -> StoreResult<()> {
        // Vault puts are durable before the entries that commit to them, vault deletes
        // only after the entries that record them (see vault_store).
        let vault = std::mem::take(&mut batch.vault);
        if !vault.is_empty() {
            self.vault.prepare(batch.first_index, &vault)?;
        }
        let mut b = sled::Batch::default();
        // One bundle per batch, appended (and synced) to a segment file before the tree
        // points to it; the tree keeps its location (see segments.rs for why).
        if !batch.entries.is_empty() {
            let loc = self.segments.append(batch.first_index, &batch.entries)?;
            b.insert(&key_u64(P_ENTRY, batch.first_index)[..], loc.to_bytes());
        }
        for (id, bytes) in batch.tiles {
            b.insert(&tile_key(id)[..], bytes);
        }
        for (size, note) in batch.checkpoints {
            b.insert(&key_u64(P_CHECKPOINT, size)[..], note.into_bytes());
        }
        // Trail rows above their system's right edge go into new chunks; the rest are
        // keys of their own (see trail_chunks).
        let mut edges = self.trail_edges.lock().unwrap_or_else(|e| e.into_inner());
        let mut fresh: BTreeMap<Vec<u8>, Rows> = BTreeMap::new();
        let mut gone: BTreeMap<Vec<u8>, Vec<Vec<u8>>> = BTreeMap::new();
        for (k, v) in batch.projections {
            match (trail_chunks::group(&k), v) {
                (Some(g), Some(v)) => {
                    if self.above_trail_edge(&mut edges, g, &k)? {
                        fresh.entry(g.to_vec()).or_default().push((k, v));
                    } else {
                        b.insert(proj_key(&k), v);
                    }
                }
                (Some(_), None) => {
                    if let Some((ck, _)) = self.trail_chunk_of(&k)? {
                        gone.entry(ck.to_vec()).or_default().push(k.clone());
                    }
                    b.remove(proj_key(&k));
                }
                (None, Some(v)) => b.insert(proj_key(&k), v),
                (None, None) => b.remove(proj_key(&k)),
            }
        }
        for (ck, keys) in gone {
            let raw = self
                .tree
                .get(&ck)?
                .ok_or_else(|| StoreError::Corrupt("trail chunk vanished".into()))?;
            let c = Chunk::parse(&raw)?;
            let kept: Vec<(Vec<u8>, &[u8])> = c
                .rows()?
                .into_iter()
                .filter(|(k, _)| !keys.contains(k))
                .collect();
            let kept: Vec<(&[u8], &[u8])> = kept.iter().map(|(k, v)| (k.as_slice(), *v)).collect();
            b.remove(&ck[..]);
            for (key, bytes) in trail_chunks::chunks(&kept) {
                b.insert(key, bytes);
            }
        }
        let mut new_edges = Vec::new();
        for (g, rows) in fresh {
            let rows: Vec<(&[u8], &[u8])> = rows
                .iter()
                .map(|(k, v)| (k.as_slice(), v.as_slice()))
                .collect();
            for (key, bytes) in trail_chunks::chunks(&rows) {
                b.insert(key, bytes);
            }
            new_edges.push((g, rows[rows.len() - 1].0.to_vec()));
        }
        for (name, v) in batch.meta {
            let mut k = vec![P_META];
            k.extend_from_slice(name.as_bytes());
            b.insert(k, v);
        }
        // The head goes last in the same atomic batch: whatever is visible after a crash
        // is a whole batch or nothing of it.
        if let Some(head) = batch.head {
            b.insert(K_HEAD, head.to_bytes());
        }
        self.tree.apply_batch(b)?;
        self.db.flush()?;
        for (g, edge) in new_edges {
            edges.insert(g, Some(edge));
        }
        drop(edges);
        // Deletes go after the entries; a batch of puts only leaves its marker, which
        // recovery reads as settled once the log is at least as long.
        if vault.values().any(Option::is_none) {
            self.vault.finish(&vault)?;
        }
        Ok(())
    }

    fn truncate_entries(&self, size: u64) -> StoreResult<usize> {
        let mut removed = 0;
        // The bundle holding `size` may start below it; such a bundle is wholly beyond the
        // head only if it starts at or after `size`, because batches never straddle a head.
        let lo = key_u64(P_ENTRY, size);
        let hi = [P_ENTRY + 1];
        let mut b = sled::Batch::default();
        for kv in self.tree.range(&lo[..]..&hi[..]) {
            let (k, _) = kv?;
            b.remove(k);
            removed += 1;
        }
        if removed > 0 {
            self.tree.apply_batch(b)?;
            self.db.flush()?;
            // Opening the store already cut the files back to the last location; only
            // removed rows move it.
            self.segments.cut_after(Self::last_location(&self.tree)?)?;
        }
        Ok(removed)
    }

    fn clear_projections(&self) -> StoreResult<()> {
        let mut b = sled::Batch::default();
        let mut edges = self.trail_edges.lock().unwrap_or_else(|e| e.into_inner());
        for prefix in [P_PROJECTION, P_CHUNK] {
            for kv in self.tree.scan_prefix([prefix]) {
                let (k, _) = kv?;
                b.remove(k);
            }
        }
        self.tree.apply_batch(b)?;
        self.db.flush()?;
        edges.clear();
        Ok(())
    }
}
