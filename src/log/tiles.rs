//! Complete-subtree hashes stored as C2SP tlog-tiles lay them out.
//!
//! A tile at tile level `T` and index `N` holds up to 256 consecutive node hashes of
//! tree level `8·T`, those of nodes `[256·N, 256·N + 256)`. Nodes of the seven tree
//! levels in between are recomputed from one tile (at most 255 hashes), so any
//! complete subtree is at most one tile read away and a proof at any log size reads
//! O(log₂₅₆ n) tiles. Partial tiles (the right edge) are stored under the same key
//! as the full tile they grow into and are overwritten as they grow.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::merkle::{node_hash, perfect_root, Hash, NodeSource};

/// Tree levels per tile.
pub const TILE_HEIGHT: u8 = 8;
/// Hashes in a full tile.
pub const TILE_WIDTH: usize = 1 << TILE_HEIGHT;

/// A tile's coordinates: (tile level, tile index).
pub type TileId = (u8, u64);

/// Concatenate hashes into a tile's stored bytes.
pub fn encode_tile(hashes: &[Hash]) -> Vec<u8> {
    hashes.concat()
}

/// Split a tile's stored bytes into hashes; `None` when the length is not a multiple of 32
/// or exceeds a full tile.
pub fn decode_tile(bytes: &[u8]) -> Option<Vec<Hash>> {
    if bytes.len() % 32 != 0 || bytes.len() > TILE_WIDTH * 32 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(32)
            .map(|c| c.try_into().expect("32-byte chunk"))
            .collect(),
    )
}

/// The right edge of the tile store, kept in memory by the single writer (and by the
/// verifier, which rebuilds every tile to compare it with the stored one).
#[derive(Debug, Clone, Default)]
pub struct TileBuilder {
    /// Hashes pushed so far at tree level `8·T`, for each tile level `T`.
    counts: Vec<u64>,
    /// The incomplete tile at each tile level.
    partial: Vec<Vec<Hash>>,
    /// Tiles changed since the last [`TileBuilder::take_dirty`].
    completed: BTreeMap<TileId, Vec<u8>>,
    touched: BTreeSet<u8>,
}

impl TileBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuild the right edge of a tree of `size` leaves from its stored tiles.
    pub fn load<E>(
        size: u64,
        mut read: impl FnMut(TileId) -> Result<Option<Vec<u8>>, E>,
        missing: impl Fn(TileId) -> E,
    ) -> Result<Self, E> {
        let mut b = Self::new();
        let mut level = 0u8;
        loop {
            let count = size
                .checked_shr(u32::from(level) * u32::from(TILE_HEIGHT))
                .unwrap_or(0);
            if count == 0 {
                break;
            }
            let in_tile = (count % TILE_WIDTH as u64) as usize;
            let mut partial = Vec::new();
            if in_tile > 0 {
                let id = (level, count / TILE_WIDTH as u64);
                let bytes = read(id)?.ok_or_else(|| missing(id))?;
                let hashes = decode_tile(&bytes).ok_or_else(|| missing(id))?;
                if hashes.len() < in_tile {
                    return Err(missing(id));
                }
                partial.extend_from_slice(&hashes[..in_tile]);
            }
            b.counts.push(count);
            b.partial.push(partial);
            level += 1;
        }
        Ok(b)
    }

    /// Append one leaf hash, completing tiles (and their parents) as they fill.
    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut level = 0usize;
        loop {
            if self.partial.len() <= level {
                self.partial.push(Vec::with_capacity(TILE_WIDTH));
                self.counts.push(0);
            }
            let tile_index = self.counts[level] / TILE_WIDTH as u64;
            self.partial[level].push(hash);
            self.counts[level] += 1;
            if self.partial[level].len() < TILE_WIDTH {
                self.touched.insert(level as u8);
                return;
            }
            let full = std::mem::take(&mut self.partial[level]);
            hash = perfect_root(&full);
            self.completed
                .insert((level as u8, tile_index), encode_tile(&full));
            level += 1;
        }
    }

    /// The tiles written or grown since the last call, with their full current contents.
    pub fn take_dirty(&mut self) -> Vec<(TileId, Vec<u8>)> {
        let mut out: Vec<(TileId, Vec<u8>)> =
            std::mem::take(&mut self.completed).into_iter().collect();
        for level in std::mem::take(&mut self.touched) {
            let l = level as usize;
            if !self.partial[l].is_empty() {
                let id = (level, self.counts[l] / TILE_WIDTH as u64);
                out.push((id, encode_tile(&self.partial[l])));
            }
        }
        out
    }

    /// The incomplete tiles at the right edge: what the store must hold for them.
    pub fn partial_tiles(&self) -> impl Iterator<Item = (TileId, &[Hash])> {
        self.partial
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.is_empty())
            .map(|(l, p)| ((l as u8, self.counts[l] / TILE_WIDTH as u64), p.as_slice()))
    }
}

/// A tile with every complete node inside it computed: `levels[r]` holds the nodes of
/// tree level `8·T + r` that the tile's hashes complete (`levels[0]` is the tile itself).
#[derive(Debug)]
pub struct ExpandedTile {
    levels: Vec<Vec<Hash>>,
}

impl ExpandedTile {
    pub fn new(hashes: Vec<Hash>) -> Self {
        let mut levels = vec![hashes];
        while levels.last().is_some_and(|l| l.len() >= 2) {
            let up = levels
                .last()
                .unwrap()
                .chunks_exact(2)
                .map(|p| node_hash(&p[0], &p[1]))
                .collect();
            levels.push(up);
        }
        Self { levels }
    }

    pub fn is_full(&self) -> bool {
        self.levels[0].len() == TILE_WIDTH
    }

    /// Node at height `r` (0..8) within the tile, position `pos` at that height.
    fn get(&self, r: u8, pos: usize) -> Option<Hash> {
        self.levels
            .get(r as usize)
            .and_then(|l| l.get(pos))
            .copied()
    }
}

/// Full tiles never change, so their expansions are shared by every reader.
pub struct TileCache {
    inner: std::sync::Mutex<lru::LruCache<TileId, Arc<ExpandedTile>>>,
}

impl TileCache {
    /// A cache of at most `tiles` full tiles (each about 16 KiB expanded).
    pub fn new(tiles: usize) -> Self {
        let cap = std::num::NonZeroUsize::new(tiles.max(1)).expect("non-zero");
        Self {
            inner: std::sync::Mutex::new(lru::LruCache::new(cap)),
        }
    }

    fn get(&self, id: &TileId) -> Option<Arc<ExpandedTile>> {
        self.inner.lock().ok()?.get(id).cloned()
    }

    fn put(&self, id: TileId, t: Arc<ExpandedTile>) {
        if let Ok(mut c) = self.inner.lock() {
            c.put(id, t);
        }
    }
}

/// Errors of [`TileReader`]: the store failed, or a node that should be there is not.
#[derive(Debug, thiserror::Error)]
pub enum TileError<E> {
    #[error("storage: {0}")]
    Store(E),
    #[error("tile {0:?} is missing or too short for node (level {1}, index {2})")]
    Missing(TileId, u8, u64),
    #[error("tile {0:?} is malformed")]
    Malformed(TileId),
}

/// A [`NodeSource`] over stored tiles. Tiles read once are kept for the reader's life
/// (so many proofs against one tree, such as a batch's receipts, share their work) and
/// full tiles go to the shared [`TileCache`], if one is given.
pub struct TileReader<'c, F> {
    read: F,
    cache: Option<&'c TileCache>,
    tiles: HashMap<TileId, Arc<ExpandedTile>>,
}

impl<'c, F, E> TileReader<'c, F>
where
    F: FnMut(TileId) -> Result<Option<Vec<u8>>, E>,
{
    pub fn new(read: F) -> Self {
        Self {
            read,
            cache: None,
            tiles: HashMap::new(),
        }
    }

    pub fn with_cache(read: F, cache: &'c TileCache) -> Self {
        Self {
            read,
            cache: Some(cache),
            tiles: HashMap::new(),
        }
    }

    fn tile(&mut self, id: TileId) -> Result<Option<Arc<ExpandedTile>>, TileError<E>> {
        if let Some(t) = self.tiles.get(&id) {
            return Ok(Some(t.clone()));
        }
        if let Some(t) = self.cache.and_then(|c| c.get(&id)) {
            self.tiles.insert(id, t.clone());
            return Ok(Some(t));
        }
        let Some(bytes) = (self.read)(id).map_err(TileError::Store)? else {
            return Ok(None);
        };
        let t = Arc::new(ExpandedTile::new(
            decode_tile(&bytes).ok_or(TileError::Malformed(id))?,
        ));
        if t.is_full() {
            if let Some(c) = self.cache {
                c.put(id, t.clone());
            }
        }
        self.tiles.insert(id, t.clone());
        Ok(Some(t))
    }
}

impl<F, E> NodeSource for TileReader<'_, F>
where
    F: FnMut(TileId) -> Result<Option<Vec<u8>>, E>,
{
    type Error = TileError<E>;

    fn node(&mut self, level: u8, index: u64) -> Result<Hash, Self::Error> {
        let (t, r) = (level / TILE_HEIGHT, level % TILE_HEIGHT);
        // The node's first descendant at tree level 8·T fixes the tile it lives in.
        let base = index << r;
        let id = (t, base / TILE_WIDTH as u64);
        let pos = ((base % TILE_WIDTH as u64) >> r) as usize;
        let tile = self.tile(id)?.ok_or(TileError::Missing(id, level, index))?;
        tile.get(r, pos).ok_or(TileError::Missing(id, level, index))
    }
}
