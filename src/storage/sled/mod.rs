//! The sled backend (the embedded default): one sled tree with prefixed key spaces for
//! the log and the projections, entry bundles in segment files, and the vault in a
//! sled database of its own. Row families the register declares packable
//! ([`Packing`]) are kept as chunks and runs instead of a sled key per row.

pub mod chunk;
pub mod grouped;
pub mod runs;
pub mod segments;
pub mod space;
pub mod vault;

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;

use super::rows::{merge_rows, successor, visit_in_order};
use super::{
    CommitBatch, Head, LogStore, OpsStore, Packing, RowStore, Rows, Store, StoreError, StoreResult,
    TileId, VaultStore,
};
use grouped::{GroupChunk, Grouped, P_CHUNK};
use segments::{Location, Segments};

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

fn proj_key(key: &[u8]) -> Vec<u8> {
    prefixed(P_PROJECTION, key)
}

/// Visit the entries of an inline bundle (older logs); `f(position, bytes)`; stops when
/// `f` says false. Errors on a malformed bundle.
fn each_bundled_entry(b: &[u8], mut f: impl FnMut(u64, &[u8]) -> bool) -> StoreResult<u64> {
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
    /// Operational state (`OpsStore`): cursors, attempts, leases.
    ops: sled::Tree,
    vault: std::sync::Arc<vault::SledVault>,
    /// Entry bundles live in files; the tree holds their locations.
    segments: std::sync::Arc<Segments>,
    /// The grouped row family packed into chunks, if the register declared one.
    grouped: Option<std::sync::Arc<Grouped>>,
    /// Per group (`prefix ‖ name ‖ \0`), the greatest row key its chunks hold (`None`:
    /// no chunk), as far as read or written since open (see grouped.rs).
    group_edges: std::sync::Arc<std::sync::Mutex<GroupEdges>>,
    /// The free-space reserve every batch and operational write keeps.
    space: std::sync::Arc<space::Space>,
}

type GroupEdges = std::collections::HashMap<Vec<u8>, Option<Vec<u8>>>;

impl SledStore {
    /// Open with the default page cache, packing the row families `packing` declares.
    pub fn open(path: &Path, packing: &Packing) -> StoreResult<Self> {
        Self::open_with_cache(path, 256 << 20, packing)
    }

    /// Open with `cache_bytes` of sled page cache for the log (a quarter more for the vault).
    pub fn open_with_cache(path: &Path, cache_bytes: u64, packing: &Packing) -> StoreResult<Self> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .open()?;
        let tree = db.open_tree("ledger")?;
        let ops = db.open_tree("ops")?;
        let vault = std::sync::Arc::new(vault::SledVault::open(
            &path.join("vault"),
            cache_bytes / 4,
            packing,
        )?);
        let last = Self::last_location(&tree)?;
        let segments = std::sync::Arc::new(Segments::open(&path.join("entries"), last)?);
        // The vault's generations live inside the ledger directory (compaction swaps
        // them), the segments in `entries`, which an operator may mount apart.
        let space = std::sync::Arc::new(space::Space::new(&[path, &path.join("entries")]));
        let grouped = match &packing.grouped {
            Some(rows) => Some(std::sync::Arc::new(Grouped::new(rows)?)),
            None => None,
        };
        Ok(Self {
            db,
            tree,
            ops,
            vault,
            segments,
            grouped,
            group_edges: Default::default(),
            space,
        })
    }

    /// Keep `bytes` free on each filesystem the store writes to (default
    /// [`space::DEFAULT_RESERVE`]): below it, batches are refused as full.
    pub fn set_reserve(&self, bytes: u64) {
        self.space.set_reserve(bytes);
    }

    /// How the store keeps the grouped family: (chunks, rows that are keys of their own).
    pub fn grouped_layout(&self) -> (usize, usize) {
        let own = self
            .grouped
            .as_ref()
            .map_or(0, |g| self.tree.scan_prefix(proj_key(g.prefix())).count());
        (self.tree.scan_prefix([P_CHUNK]).count(), own)
    }

    /// How the vault keeps its rows (see [`vault::Layout`]).
    pub fn vault_layout(&self) -> StoreResult<vault::Layout> {
        self.vault.layout()
    }

    /// The group of a projection key, if it is a row of the grouped family.
    fn group_of<'k>(&self, key: &'k [u8]) -> Option<&'k [u8]> {
        self.grouped.as_ref()?.group(key)
    }

    /// A stored chunk of the grouped family.
    fn parse_chunk<'a>(&self, raw: &'a [u8]) -> StoreResult<GroupChunk<'a>> {
        match &self.grouped {
            Some(g) => g.parse(raw),
            None => Err(StoreError::Corrupt(
                "a chunk of grouped rows, but no grouped family is declared".into(),
            )),
        }
    }

    /// Whether row `key` of `group` lies above every row of the group's chunks
    /// (their greatest key is read once, then kept in `edges`).
    fn above_group_edge(
        &self,
        edges: &mut GroupEdges,
        group: &[u8],
        key: &[u8],
    ) -> StoreResult<bool> {
        if !edges.contains_key(group) {
            let edge = match self.tree.scan_prefix(grouped::chunk_key(group)).next_back() {
                Some(kv) => Some(self.parse_chunk(&kv?.1)?.max.to_vec()),
                None => None,
            };
            edges.insert(group.to_vec(), edge);
        }
        Ok(edges[group].as_deref().is_none_or(|e| key > e))
    }

    /// The chunk whose range holds grouped row `key`, if one does: `(sled key, bytes)`.
    fn group_chunk_of(&self, key: &[u8]) -> StoreResult<Option<(sled::IVec, sled::IVec)>> {
        let Some(group) = self.group_of(key) else {
            return Ok(None);
        };
        let lo = grouped::chunk_key(group);
        let hi = grouped::chunk_key(key);
        match self.tree.range(lo..=hi).next_back() {
            Some(kv) => {
                let (k, v) = kv?;
                let holds = key <= self.parse_chunk(&v)?.max;
                Ok(holds.then_some((k, v)))
            }
            None => Ok(None),
        }
    }

    /// Projection rows with keys in `[lo, hi)` (`hi` `None`: to the end), ascending or
    /// descending, at most `limit`: rows of their own merged with chunked grouped rows.
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
        visit_in_order(
            self.tree.range(rlo..rhi),
            reverse,
            |kv| -> StoreResult<bool> {
                let (k, v) = kv?;
                out.push((k[1..].to_vec(), v.to_vec()));
                Ok(out.len() < limit)
            },
        )?;
        if self.grouped.as_ref().is_some_and(|g| g.meets(lo, hi)) {
            let chunked = self.chunked_group_rows(lo, hi, reverse, limit)?;
            merge_rows(&mut out, chunked, reverse, limit);
        }
        Ok(out)
    }

    /// Chunked grouped rows in `[lo, hi)`, in order, at most `limit`: chunks are disjoint
    /// and sort as their rows, so this reads from the chunk holding `lo` (or `hi`) on
    /// and stops at the first chunk beyond the other bound.
    fn chunked_group_rows(
        &self,
        lo: &[u8],
        hi: Option<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> StoreResult<Rows> {
        let mut out = Vec::new();
        let within = |k: &[u8]| k >= lo && hi.is_none_or(|h| k < h);
        // A chunk's rows in `[lo, hi)` into `out`; false once `limit` is reached.
        let take = |c: &GroupChunk, out: &mut Rows| -> StoreResult<bool> {
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
            let upper = hi.map(grouped::chunk_key).unwrap_or(end);
            (vec![P_CHUNK], upper)
        } else {
            let floor = self
                .tree
                .range(&[P_CHUNK][..]..=&grouped::chunk_key(lo)[..])
                .next_back()
                .transpose()?;
            let start = match floor {
                Some((k, _)) => k.to_vec(),
                None => grouped::chunk_key(lo),
            };
            (start, end)
        };
        visit_in_order(
            self.tree.range(from..to),
            reverse,
            |kv| -> StoreResult<bool> {
                let raw = kv?.1;
                let c = self.parse_chunk(&raw)?;
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
    /// The last batch the tree points to in a segment file: its first index and location.
    fn last_location(tree: &sled::Tree) -> StoreResult<Option<(u64, Location)>> {
        let lo = [P_ENTRY];
        let hi = [P_ENTRY + 1];
        Ok(match tree.range(&lo[..]..&hi[..]).next_back() {
            Some(kv) => {
                let (k, v) = kv?;
                let first = k
                    .get(1..9)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| StoreError::Corrupt("malformed entry key".into()))?;
                Location::parse(&v).map(|l| (first, l))
            }
            None => None,
        })
    }

    /// Walk the entries an entry row stands for (a segment record, or a bundle inline).
    fn each_entry_of_row(&self, row: &[u8], f: impl FnMut(u64, &[u8]) -> bool) -> StoreResult<()> {
        match Location::parse(row) {
            Some(loc) => self.segments.each_entry(loc, f),
            None => each_bundled_entry(row, f).map(|_| ()),
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

impl LogStore for SledStore {
    fn head(&self) -> StoreResult<Option<Head>> {
        self.tree
            .get(K_HEAD)?
            .map(|v| Head::from_bytes(&v))
            .transpose()
    }

    fn writable(&self) -> StoreResult<()> {
        self.space.ready()
    }

    fn meta(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self
            .tree
            .get(prefixed(P_META, name.as_bytes()))?
            .map(|v| v.to_vec()))
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
            each_bundled_entry(&row, |i, e| {
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
            self.each_entry_of_row(&v, |i, e| {
                let idx = base + i;
                if idx >= start && idx < end {
                    out.push(e.to_vec());
                }
                idx + 1 < end
            })?;
        }
        Ok(out)
    }

    fn for_each_entry(
        &self,
        start: u64,
        f: &mut dyn FnMut(u64, &[u8]) -> ControlFlow<()>,
    ) -> StoreResult<()> {
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
            self.each_entry_of_row(&v, |i, e| {
                let idx = base + i;
                if idx >= start {
                    go_on = f(idx, e).is_continue();
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

    fn previous_checkpoint(&self, size: u64) -> StoreResult<Option<u64>> {
        let lo = [P_CHECKPOINT];
        let hi = key_u64(P_CHECKPOINT, size);
        match self.tree.range(&lo[..]..&hi[..]).next_back() {
            Some(kv) => Ok(Some(u64::from_be_bytes(kv?.0[1..9].try_into().unwrap()))),
            None => Ok(None),
        }
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
}

impl RowStore for SledStore {
    fn range(&self, lo: &[u8], hi: &[u8], reverse: bool, limit: usize) -> StoreResult<Rows> {
        self.projection_rows(lo, Some(hi), reverse, limit)
    }

    fn get(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        if let Some((_, raw)) = self.group_chunk_of(key)? {
            if let Some(v) = self.parse_chunk(&raw)?.find(key)? {
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

    fn clear_projections(&self) -> StoreResult<()> {
        let mut b = sled::Batch::default();
        let mut edges = self.group_edges.lock().unwrap_or_else(|e| e.into_inner());
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

impl VaultStore for SledStore {
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
}

impl OpsStore for SledStore {
    fn ops_get(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.ops.get(key)?.map(|v| v.to_vec()))
    }

    fn ops_put(&self, key: &[u8], value: &[u8]) -> StoreResult<()> {
        self.space.check_room(value.len() as u64)?;
        self.ops.insert(key, value)?;
        Ok(())
    }

    fn ops_delete(&self, key: &[u8]) -> StoreResult<()> {
        self.ops.remove(key)?;
        Ok(())
    }

    fn ops_lease(&self, name: &str, holder: &str, now: u64, until: u64) -> StoreResult<bool> {
        // One process owns a sled store; the lease is kept all the same, so that the
        // duty's code is the same on every backend.
        let key = [b"lease\0".as_slice(), name.as_bytes()].concat();
        let mine = [holder.as_bytes(), &[0], &until.to_be_bytes()].concat();
        loop {
            let cur = self.ops.get(&key)?;
            let free = match &cur {
                None => true,
                Some(v) => {
                    let at = v.iter().position(|b| *b == 0).unwrap_or(v.len());
                    let exp = v
                        .get(at + 1..)
                        .and_then(|t| t.try_into().ok())
                        .map(u64::from_be_bytes)
                        .unwrap_or(0);
                    &v[..at] == holder.as_bytes() || exp < now
                }
            };
            if !free {
                return Ok(false);
            }
            if self
                .ops
                .compare_and_swap(&key, cur, Some(mine.clone()))?
                .is_ok()
            {
                return Ok(true);
            }
        }
    }
}

impl Store for SledStore {
    fn commit(&self, mut batch: CommitBatch) -> StoreResult<()> {
        // Refused whole, before anything is written, while space is short (a batch is
        // written about three times over: segment, sled log, vault).
        self.space.check(3 * batch.bytes())?;
        // Vault puts are durable before the entries that commit to them, vault deletes
        // only after the entries that record them (see vault.rs).
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
        let mut edges = self.group_edges.lock().unwrap_or_else(|e| e.into_inner());
        let new_edges = self.write_projections(&mut b, &mut edges, batch.projections)?;
        for (name, v) in batch.meta {
            b.insert(prefixed(P_META, name.as_bytes()), v);
        }
        // The head goes last in the same atomic batch: whatever is visible after a crash
        // is a whole batch or nothing of it.
        if let Some(head) = batch.head {
            b.insert(K_HEAD, head.to_bytes());
        }
        self.tree.apply_batch(b)?;
        self.db.flush()?;
        edges.extend(new_edges.into_iter().map(|(g, edge)| (g, Some(edge))));
        drop(edges);
        // Deletes go after the entries; a batch of puts only leaves its marker, which
        // recovery reads as settled once the log is at least as long.
        if vault.values().any(Option::is_none) {
            self.vault.finish(&vault)?;
        }
        Ok(())
    }
}

impl SledStore {
    /// A batch's projection writes into `b`: rows of the grouped family above their
    /// group's right edge go into new chunks, the rest are keys of their own (see
    /// grouped.rs); deleted grouped rows leave the chunks that hold them. Returns the
    /// groups' new right edges, to keep once the batch is durable.
    fn write_projections(
        &self,
        b: &mut sled::Batch,
        edges: &mut GroupEdges,
        projections: super::Writes,
    ) -> StoreResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut fresh: BTreeMap<Vec<u8>, Rows> = BTreeMap::new();
        let mut gone: BTreeMap<Vec<u8>, Vec<Vec<u8>>> = BTreeMap::new();
        for (k, v) in projections {
            match (self.group_of(&k), v) {
                (Some(g), Some(v)) => {
                    if self.above_group_edge(edges, g, &k)? {
                        fresh.entry(g.to_vec()).or_default().push((k, v));
                    } else {
                        b.insert(proj_key(&k), v);
                    }
                }
                (Some(_), None) => {
                    if let Some((ck, _)) = self.group_chunk_of(&k)? {
                        gone.entry(ck.to_vec()).or_default().push(k.clone());
                    }
                    b.remove(proj_key(&k));
                }
                (None, Some(v)) => b.insert(proj_key(&k), v),
                (None, None) => b.remove(proj_key(&k)),
            }
        }
        let Some(layout) = &self.grouped else {
            return Ok(Vec::new());
        };
        for (ck, keys) in gone {
            let raw = self
                .tree
                .get(&ck)?
                .ok_or_else(|| StoreError::Corrupt("grouped-row chunk vanished".into()))?;
            let c = layout.parse(&raw)?;
            let kept: Vec<(Vec<u8>, &[u8])> = c
                .rows()?
                .into_iter()
                .filter(|(k, _)| !keys.contains(k))
                .collect();
            let kept: Vec<(&[u8], &[u8])> = kept.iter().map(|(k, v)| (k.as_slice(), *v)).collect();
            b.remove(&ck[..]);
            for (key, bytes) in layout.chunks(&kept) {
                b.insert(key, bytes);
            }
        }
        let mut new_edges = Vec::new();
        for (g, rows) in fresh {
            let rows: Vec<(&[u8], &[u8])> = rows
                .iter()
                .map(|(k, v)| (k.as_slice(), v.as_slice()))
                .collect();
            for (key, bytes) in layout.chunks(&rows) {
                b.insert(key, bytes);
            }
            new_edges.push((g, rows[rows.len() - 1].0.to_vec()));
        }
        Ok(new_edges)
    }
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::backend("sled", e)
    }
}
