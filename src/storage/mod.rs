//! The storage boundary: a few small traits, split by capability, so that a second
//! backend is a new implementation rather than a rewrite, and one module per driver.
//!
//! What a backend keeps: entries (grouped by the batch that wrote them), tiles of
//! complete-subtree hashes, every signed checkpoint, the head (size, root, last time
//! and leaf hash) — the log's store ([`LogStore`]); the projections that the layers
//! above derive from entries ([`RowStore`]); and the vault, the erasable store of
//! personal values beside the log ([`VaultStore`]). A [`CommitBatch`] touches all three
//! and is applied atomically, durable when [`Store::commit`] returns.
//!
//! This module imports nothing else of the crate: it stores bytes under keys. What a
//! key means belongs to the layers above; the one thing a driver may be told about
//! keys is which row families it may pack ([`Packing`], declared by the register).

pub mod postgres;
pub mod rows;
pub mod sled;

use std::collections::BTreeMap;

/// A SHA-256 hash (the log's leaf and node hashes).
pub type Hash = [u8; 32];
/// A tile of complete-subtree hashes: (tree level / 8, tile index), as tlog-tiles names them.
pub type TileId = (u8, u64);
/// A page of rows, keys in the row store's (or the vault's) own key space.
pub type Rows = Vec<(Vec<u8>, Vec<u8>)>;
/// A backend's own error, kept as the source of a [`StoreError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (I/O, the database): what it was doing, and its error.
    #[error("storage backend: {what}{}", source.as_ref().map(|s| format!(": {s}")).unwrap_or_default())]
    Backend {
        what: String,
        #[source]
        source: Option<BoxError>,
    },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Nothing was written: the store keeps its free-space reserve (a write that found
    /// the disk full would leave the store failed).
    #[error("storage full: {0}")]
    Full(String),
}

impl StoreError {
    /// The backend failed doing `what`, with its own error as the source.
    pub fn backend(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        StoreError::Backend {
            what: what.into(),
            source: Some(source.into()),
        }
    }

    /// The backend cannot do `what`, for a reason it states itself.
    pub fn refused(what: impl Into<String>) -> Self {
        StoreError::Backend {
            what: what.into(),
            source: None,
        }
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
    /// The length of a head record: size, root, last time, last leaf.
    pub const ENCODED_LEN: usize = 8 + 32 + 8 + 32;

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::ENCODED_LEN);
        v.extend_from_slice(&self.size.to_be_bytes());
        v.extend_from_slice(&self.root);
        v.extend_from_slice(&self.last_time.to_be_bytes());
        v.extend_from_slice(&self.last_leaf);
        v
    }

    pub fn from_bytes(b: &[u8]) -> StoreResult<Self> {
        if b.len() != Self::ENCODED_LEN {
            return Err(StoreError::Corrupt(
                "head record has the wrong length".into(),
            ));
        }
        let u64_at = |i: usize| u64::from_be_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let hash_at = |i: usize| -> Hash { b[i..i + 32].try_into().expect("32 bytes") };
        Ok(Self {
            size: u64_at(0),
            root: hash_at(8),
            last_time: u64_at(40),
            last_leaf: hash_at(48),
        })
    }
}

/// Row writes (`None` deletes), in key order.
pub type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

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
    /// Projection writes, in the row store's own key space.
    pub projections: Writes,
    /// Vault writes: personal data beside the log, never in it.
    pub vault: Writes,
    /// Metadata writes (origin and the like).
    pub meta: Vec<(String, Vec<u8>)>,
}

impl CommitBatch {
    /// About how many bytes the batch writes (entries, tiles, rows, vault values).
    pub fn bytes(&self) -> u64 {
        let rows = |w: &Writes| -> usize {
            w.iter()
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
                .sum()
        };
        let n = self.entries.iter().map(Vec::len).sum::<usize>()
            + self.tiles.iter().map(|(_, t)| t.len()).sum::<usize>()
            + rows(&self.projections)
            + rows(&self.vault);
        n as u64
    }
}

/// The log's own store: entries, tiles, checkpoints, the head, metadata.
pub trait LogStore: Send + Sync + 'static {
    fn head(&self) -> StoreResult<Option<Head>>;
    /// True when other processes may append to the same log (a database shared by
    /// several nodes): the writer then takes the head lock before every batch and
    /// readers refresh the published checkpoint from the store.
    fn shared(&self) -> bool {
        false
    }
    /// Whether a batch could be written now (a local store: above its free-space
    /// reserve); `/readyz` asks.
    fn writable(&self) -> StoreResult<()> {
        Ok(())
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
    /// Visit every stored entry from `start` in index order, with its index, until `f`
    /// breaks. The driver's errors are returned; a caller whose visit can fail uses
    /// [`try_for_each_entry`].
    fn for_each_entry(
        &self,
        start: u64,
        f: &mut dyn FnMut(u64, &[u8]) -> std::ops::ControlFlow<()>,
    ) -> StoreResult<()>;
    fn tile(&self, id: TileId) -> StoreResult<Option<Vec<u8>>>;
    fn checkpoint(&self, size: u64) -> StoreResult<Option<String>>;
    /// Stored checkpoints with size in `[from, ..)`, ascending, at most `limit`.
    fn checkpoints(&self, from: u64, limit: usize) -> StoreResult<Vec<(u64, String)>>;
    /// The size of the last stored checkpoint below `size`.
    fn previous_checkpoint(&self, size: u64) -> StoreResult<Option<u64>>;
    /// Remove entries at index `size` and above (a batch whose head never landed).
    fn truncate_entries(&self, size: u64) -> StoreResult<usize>;
}

/// The projections: rows derived from entries, rebuildable from the log.
pub trait RowStore: Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>>;
    /// Several rows at once, in the order of `keys`.
    fn get_many(&self, keys: &[Vec<u8>]) -> StoreResult<Vec<Option<Vec<u8>>>> {
        keys.iter().map(|k| self.get(k)).collect()
    }
    /// Rows with keys in `[lo, hi)`, ascending (or descending), at most `limit`.
    fn range(&self, lo: &[u8], hi: &[u8], reverse: bool, limit: usize) -> StoreResult<Rows>;
    /// Rows whose key starts with `prefix`, strictly after (or, reversed, before) `cursor`, at most `limit`.
    fn scan(
        &self,
        prefix: &[u8],
        cursor: Option<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> StoreResult<Rows>;
    /// Remove every projection row (before a rebuild from the log).
    fn clear_projections(&self) -> StoreResult<()>;
}

/// The vault: personal values and their salts, erasable, never in an entry or a proof.
pub trait VaultStore: Send + Sync + 'static {
    fn vault_get(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>>;
    /// Vault rows whose key starts with `prefix`, ascending, at most `limit`.
    fn vault_scan(&self, prefix: &[u8], limit: usize) -> StoreResult<Rows>;
    /// Vault rows with keys in `[lo, hi)`, ascending (or descending), at most `limit`.
    fn vault_range(&self, lo: &[u8], hi: &[u8], reverse: bool, limit: usize) -> StoreResult<Rows>;
    /// Settle vault writes of a batch a crash interrupted, given the log's durable size.
    fn vault_recover(&self, log_size: u64) -> StoreResult<usize>;
    /// Make deleted vault values leave the disk; returns the live rows kept.
    fn vault_compact(&self) -> StoreResult<usize>;
}

/// A whole backend: the three capabilities, and the one atomic write that spans them.
/// Implementations are shared by the single writer and any number of readers.
/// Operational state beside the log: rows a background task keeps for itself (webhook
/// delivery cursors and recent attempts) and leases (one node at a time for a duty),
/// written outside the writer's batches. Not projections (`reindex` neither clears nor
/// rebuilds them), never in an entry, nothing personal. A write may be lost in a crash
/// (a cursor then replays: delivery is at least once), never half-applied.
pub trait OpsStore: Send + Sync + 'static {
    fn ops_get(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>>;
    fn ops_put(&self, key: &[u8], value: &[u8]) -> StoreResult<()>;
    fn ops_delete(&self, key: &[u8]) -> StoreResult<()>;
    /// Take or renew the lease `name` for `holder` until `until` (unix µs) if it is free,
    /// lapsed at `now`, or `holder`'s already: whether `holder` holds it.
    fn ops_lease(&self, name: &str, holder: &str, now: u64, until: u64) -> StoreResult<bool>;
}

pub trait Store: LogStore + RowStore + VaultStore + OpsStore {
    /// Apply atomically and make durable before returning.
    fn commit(&self, batch: CommitBatch) -> StoreResult<()>;
}

/// [`LogStore::for_each_entry`] for a visit that can fail: `f`'s error (or the
/// driver's, converted) is returned, and the visit stops at the first.
pub fn try_for_each_entry<E: From<StoreError>>(
    store: &(impl LogStore + ?Sized),
    start: u64,
    mut f: impl FnMut(u64, &[u8]) -> Result<std::ops::ControlFlow<()>, E>,
) -> Result<(), E> {
    use std::ops::ControlFlow;
    let mut failure = None;
    store.for_each_entry(start, &mut |i, bytes| match f(i, bytes) {
        Ok(flow) => flow,
        Err(e) => {
            failure = Some(e);
            ControlFlow::Break(())
        }
    })?;
    failure.map_or(Ok(()), Err)
}

/// Which row families a driver may pack instead of keeping a key per row. The register
/// declares them (it owns the keys); a driver whose cost is not per key (PostgreSQL)
/// ignores this. A family is described by its key layout only, never by what it means.
#[derive(Debug, Clone, Default)]
pub struct Packing {
    /// Projection rows `prefix ‖ name ‖ 0 ‖ suffix` (the name without NUL bytes), one
    /// group per name, arriving mostly in ascending key order within a group.
    pub grouped: Option<GroupedRows>,
    /// Vault rows `prefix ‖ middle ‖ u64 BE index`, one row per index.
    pub indexed: Vec<IndexedRows>,
    /// Vault rows of a fixed length ending in a u64 BE index, whose keys fall anywhere
    /// (so they are kept as sorted runs, a log-structured merge).
    pub runs: Option<RunRows>,
}

/// See [`Packing::grouped`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupedRows {
    pub prefix: &'static [u8],
    /// The length of the fixed-width tail after the group (e.g. time ‖ index).
    pub suffix: usize,
}

/// See [`Packing::indexed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedRows {
    /// Two bytes, the first a lowercase ASCII letter (a driver may keep its chunks under
    /// the same prefix with that letter in uppercase).
    pub prefix: &'static [u8],
    /// The whole key's length: prefix, middle and the 8-byte index.
    pub key_len: usize,
    /// Whether keys sort as their indexes do (no middle, or one that grows with them).
    pub sorts_by_index: bool,
}

/// See [`Packing::runs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRows {
    pub prefix: &'static [u8],
    /// The whole key's length, ending in the 8-byte index.
    pub key_len: usize,
}

/// A small deterministic generator for the storage model tests: `rand(n)` is in `[0, n)`.
#[cfg(test)]
pub(crate) fn xorshift(mut state: u64) -> impl FnMut(u64) -> u64 {
    move |n| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    }
}
