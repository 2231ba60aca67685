//! The verifiable log. This module knows nothing of AI compliance: it sequences
//! opaque entry bodies produced by commands, proves them, and signs checkpoints.
//!
//! Invariants:
//! - the sequencer thread is the only writer of the store in a process; nodes sharing
//!   a store (PostgreSQL) serialise their batches on the store's head lock, and a node
//!   signs only a tree that extends the one it last knew;
//! - an entry is visible to readers (and a receipt is sent) only after the batch that
//!   holds it is durable and its checkpoint is published;
//! - the log never signs two inconsistent checkpoints: each batch extends the tree the
//!   last checkpoint committed to.

pub mod chain;
pub mod entry;
pub mod export;
pub mod keyfile;
pub mod merkle;
pub mod note;
mod problems;
pub mod projector;
pub mod rebuild;
mod recovery;
pub mod sequencer;
pub mod staging;
pub mod tiles;
pub mod verify;

use std::sync::{Arc, RwLock};

use tokio::sync::{mpsc, oneshot};

use crate::storage::{CommitBatch, Head, Store, StoreError};
use merkle::{Hash, NodeSource};
use note::{Checkpoint, NoteSigner, NoteVerifier};
pub use projector::{Applied, Projections, Projector, Projects};
pub use rebuild::{rebuild_projections, RebuildError};
pub use sequencer::{
    AppendError, AppendRequest, Command, Draft, Drafts, Prepared, Published, Receipt,
};
use sequencer::{Job, Sequencer, WriterState};
pub use staging::Staging;
use tiles::{TileBuilder, TileCache, TileReader};

/// Why the log could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("log does not verify at index {index}: {reason}")]
    Inconsistent { index: u64, reason: String },
    #[error("log does not verify: {0}")]
    Invalid(String),
    /// A tree size beyond the latest checkpoint was asked for.
    #[error("{0}")]
    BeyondLog(String),
    /// Arguments that name no proof (an index not below the size, `from` above `to`).
    #[error("{0}")]
    OutOfRange(String),
}

/// Everything a reader of the log needs, cheaply cloneable.
pub struct Ledger<E> {
    store: Arc<dyn Store>,
    verifier: NoteVerifier,
    published: Arc<RwLock<Published>>,
    tx: mpsc::Sender<Job<E>>,
    cache: Arc<TileCache>,
    poisoned: Arc<std::sync::atomic::AtomicBool>,
    /// When the published checkpoint was last compared with a shared store's (unix µs).
    refreshed: Arc<std::sync::atomic::AtomicU64>,
}

/// How far a node's view of a shared log may trail the store: it re-reads the head
/// when a reader asks and this long has passed since it last did.
pub const SHARED_REFRESH_MICROS: u64 = 20_000;

impl<E> Clone for Ledger<E> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            verifier: self.verifier.clone(),
            published: self.published.clone(),
            tx: self.tx.clone(),
            cache: self.cache.clone(),
            poisoned: self.poisoned.clone(),
            refreshed: self.refreshed.clone(),
        }
    }
}

/// A running writer thread; join it after dropping every [`Ledger`] to be sure the last batch is durable.
pub struct WriterHandle(std::thread::JoinHandle<()>);

impl WriterHandle {
    pub fn join(self) {
        let _ = self.0.join();
    }
}

const META_ORIGIN: &str = "origin";

impl<E: Send + 'static> Ledger<E> {
    /// Open (or create) the log in `store`, check its tail against its last signed
    /// checkpoint, and start the writer. `projections` derive the rows of every entry it
    /// appends, in the entry's batch; `on_batch` is told each batch's size.
    pub fn open(
        store: Arc<dyn Store>,
        signer: NoteSigner,
        projections: Arc<Projections<E>>,
        on_batch: Arc<dyn Fn(usize) + Send + Sync>,
    ) -> Result<(Self, WriterHandle), LedgerError> {
        let verifier = signer.verifier();
        match store.meta(META_ORIGIN)? {
            Some(o) if o != signer.name().as_bytes() => {
                return Err(LedgerError::Invalid(format!(
                    "this log's origin is {:?} but the key is named {:?}",
                    String::from_utf8_lossy(&o),
                    signer.name()
                )))
            }
            _ => {}
        }
        // A shared store may be opened by another node at the same time: the empty log
        // is created under the head lock, once.
        let head = match store.head()? {
            Some(h) => Some(h),
            None => {
                let removed = store.truncate_entries(0)?;
                if removed > 0 {
                    tracing::warn!(
                        removed,
                        "discarded entries written without a head (an interrupted first batch)"
                    );
                }
                store.lock_head()?
            }
        };
        let (state, published) = match head {
            None => {
                // A new log: record its origin and sign the empty tree.
                let root = merkle::empty_root();
                let note = signer.sign(
                    &Checkpoint {
                        origin: signer.name().to_owned(),
                        size: 0,
                        root,
                    }
                    .to_text(),
                );
                let head = Head {
                    size: 0,
                    root,
                    last_time: 0,
                    last_leaf: [0; 32],
                };
                store.commit(CommitBatch {
                    checkpoints: vec![(0, note.clone())],
                    head: Some(head),
                    meta: vec![(META_ORIGIN.into(), signer.name().as_bytes().to_vec())],
                    ..Default::default()
                })?;
                let state = WriterState {
                    head,
                    frontier_tiles: TileBuilder::new(),
                    frontier: merkle::Frontier::new(),
                };
                (
                    state,
                    Published {
                        size: 0,
                        root,
                        note,
                        signed_at: sequencer::now_micros(),
                    },
                )
            }
            Some(head) => {
                store.release()?;
                recovery::recover(&*store, &verifier, head)?
            }
        };
        let settled = store.vault_recover(state.head.size)?;
        if settled > 0 {
            tracing::warn!(
                settled,
                "settled vault rows of a batch interrupted by a crash"
            );
        }
        let published = Arc::new(RwLock::new(published));
        let (tx, rx) = mpsc::channel(4096);
        // 4096 full tiles, about 64 MiB: every upper-level tile of a log of a billion entries.
        let cache = Arc::new(TileCache::new(4096));
        let poisoned = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seq = Sequencer {
            poisoned: poisoned.clone(),
            cache: cache.clone(),
            store: store.clone(),
            signer,
            state,
            published: published.clone(),
            metrics: on_batch,
            projections,
        };
        let handle = std::thread::Builder::new()
            .name("veritrail-sequencer".into())
            .spawn(move || seq.run(rx))
            .map_err(|e| LedgerError::Invalid(format!("cannot start the writer thread: {e}")))?;
        Ok((
            Self {
                store,
                verifier,
                published,
                tx,
                cache,
                poisoned,
                refreshed: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            },
            WriterHandle(handle),
        ))
    }

    /// Append a group of requests as one job (they land in the same batch) and wait for
    /// their receipts, one result per request, in order.
    pub async fn append_many(
        &self,
        requests: Vec<AppendRequest<E>>,
    ) -> Vec<Result<Receipt, AppendError<E>>> {
        let n = requests.len();
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Job { requests, reply }).await.is_err() {
            return (0..n).map(|_| Err(AppendError::Unavailable)).collect();
        }
        rx.await
            .unwrap_or_else(|_| (0..n).map(|_| Err(AppendError::Unavailable)).collect())
    }

    /// Append one request and wait for its receipt.
    pub async fn append(
        &self,
        actor: &str,
        command: Command<E>,
    ) -> Result<Receipt, AppendError<E>> {
        self.append_reading(actor, command, Vec::new()).await
    }

    /// Append one request that will read the projection rows `reads` (see
    /// [`AppendRequest::reads`]) and wait for its receipt.
    pub async fn append_reading(
        &self,
        actor: &str,
        command: Command<E>,
        reads: Vec<Vec<u8>>,
    ) -> Result<Receipt, AppendError<E>> {
        let mut r = self
            .append_many(vec![AppendRequest {
                actor: actor.to_owned(),
                command,
                reads,
            }])
            .await;
        r.pop().unwrap_or(Err(AppendError::Unavailable))
    }
}

impl<E> Ledger<E> {
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// False once the writer stopped (a failed commit, or shutdown).
    pub fn writer_alive(&self) -> bool {
        !self.poisoned.load(std::sync::atomic::Ordering::Relaxed) && !self.tx.is_closed()
    }

    pub fn verifier(&self) -> &NoteVerifier {
        &self.verifier
    }

    pub fn origin(&self) -> &str {
        self.verifier.name()
    }

    /// The latest published checkpoint.
    pub fn latest(&self) -> Published {
        self.refresh();
        self.published.read().expect("published lock").clone()
    }

    /// On a shared store, publish what other nodes appended (at most every
    /// [`SHARED_REFRESH_MICROS`], by one reader at a time).
    fn refresh(&self) {
        use std::sync::atomic::Ordering;
        if !self.store.shared() {
            return;
        }
        let now = sequencer::now_micros();
        let last = self.refreshed.load(Ordering::Relaxed);
        if now.saturating_sub(last) < SHARED_REFRESH_MICROS
            || self
                .refreshed
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        if let Err(e) = self.pull() {
            tracing::error!(error = %e, "cannot read the shared log's head");
        }
    }

    /// Publish the store's checkpoint if it is newer, once its signature verifies.
    fn pull(&self) -> Result<(), LedgerError> {
        let Some(head) = self.store.head()? else {
            return Ok(());
        };
        if head.size <= self.published.read().expect("published lock").size {
            return Ok(());
        }
        let checkpoint = sequencer::stored_checkpoint(&*self.store, &self.verifier, head)?;
        sequencer::publish(&self.published, checkpoint);
        Ok(())
    }

    /// The stored checkpoint signed at `size`, if any.
    pub fn checkpoint_at(&self, size: u64) -> Result<Option<String>, LedgerError> {
        if size > self.latest().size {
            return Ok(None);
        }
        Ok(self.store.checkpoint(size)?)
    }

    /// Entry bytes at `index`, if published.
    /// The size of the latest published checkpoint.
    pub fn size(&self) -> u64 {
        self.refresh();
        self.published.read().expect("published lock").size
    }

    pub fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, LedgerError> {
        if index >= self.size() {
            return Ok(None);
        }
        Ok(self.store.entries(index, index + 1)?.pop())
    }

    /// Published entries `[start, start + limit)`.
    pub fn entries(&self, start: u64, limit: u64) -> Result<Vec<Vec<u8>>, LedgerError> {
        let end = self.latest().size.min(start.saturating_add(limit));
        Ok(self.store.entries(start, end)?)
    }

    fn reader(
        &self,
    ) -> TileReader<'_, impl FnMut(tiles::TileId) -> Result<Option<Vec<u8>>, StoreError> + '_> {
        TileReader::with_cache(move |id| self.store.tile(id), &self.cache)
    }

    fn resolve_size(&self, tree_size: Option<u64>) -> Result<u64, LedgerError> {
        let latest = self.latest().size;
        match tree_size {
            None => Ok(latest),
            Some(s) if s > latest => Err(LedgerError::BeyondLog(format!(
                "tree size {s} is beyond the latest checkpoint ({latest})"
            ))),
            Some(s) => Ok(s),
        }
    }

    /// (leaf hash, inclusion proof) of entry `index` in the tree of `tree_size` (default: latest).
    pub fn inclusion(
        &self,
        index: u64,
        tree_size: Option<u64>,
    ) -> Result<(u64, Hash, Vec<Hash>), LedgerError> {
        let size = self.resolve_size(tree_size)?;
        if index >= size {
            return Err(LedgerError::OutOfRange(format!(
                "index {index} is not below tree size {size}"
            )));
        }
        let mut r = self.reader();
        let leaf = r
            .node(0, index)
            .map_err(|e| LedgerError::Invalid(e.to_string()))?;
        let proof = merkle::inclusion_proof(&mut r, index, size)
            .map_err(|e| LedgerError::Invalid(e.to_string()))?;
        Ok((size, leaf, proof))
    }

    /// Consistency proof from `from` to `to` (default: latest).
    pub fn consistency(&self, from: u64, to: Option<u64>) -> Result<(u64, Vec<Hash>), LedgerError> {
        let to = self.resolve_size(to)?;
        if from > to {
            return Err(LedgerError::OutOfRange(format!(
                "from ({from}) is larger than to ({to})"
            )));
        }
        let mut r = self.reader();
        let proof = merkle::consistency_proof(&mut r, from, to)
            .map_err(|e| LedgerError::Invalid(e.to_string()))?;
        Ok((to, proof))
    }

    /// The right edge of the tree of `size` leaves: its perfect subtrees, largest first.
    pub fn frontier_at(&self, size: u64) -> Result<Vec<(u8, Hash)>, LedgerError> {
        let size = self.resolve_size(Some(size))?;
        merkle::right_edge(&mut self.reader(), size)
            .map_err(|e| LedgerError::Invalid(e.to_string()))
    }
}
