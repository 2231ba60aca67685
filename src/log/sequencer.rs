//! The single writer. Every append goes through one OS thread that takes all pending
//! requests at once (group commit), runs each request's rule check against the
//! projections plus what this batch already staged, encodes the accepted entries,
//! extends the tree, signs one checkpoint, commits everything in one atomic durable
//! store batch, and only then answers every caller with its receipt.

use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use super::entry::{self, Entry, FORMAT_VERSION};
use super::merkle::{self, Frontier, Hash};
use super::note::{Checkpoint, NoteSigner};
use super::projector::{Applied, Projections};
use super::staging::{ns_key, split_writes, ReadCache, Staging, Writes, NS_PROJECTION};
use super::tiles::{TileBuilder, TileCache, TileReader};
use super::LedgerError;
use crate::storage::{CommitBatch, Head, Store, StoreError};

/// Most entries sequenced in one batch; larger jobs are never split.
pub const MAX_BATCH: usize = 20_000;

/// What a command asks the writer to do once its rule check passed.
#[derive(Debug)]
pub enum Prepared {
    /// Append new entries, in order (the receipt is the last one's).
    Append(Drafts),
    /// Nothing to append: answer with the receipt of an entry already in the log (idempotent replay).
    Existing(u64),
}

/// The drafts one command appends: at least one.
#[derive(Debug)]
pub struct Drafts {
    first: Draft,
    rest: Vec<Draft>,
}

impl Drafts {
    pub fn one(draft: Draft) -> Self {
        Self {
            first: draft,
            rest: Vec::new(),
        }
    }

    /// The drafts, in order; `None` when there are none.
    pub fn new(mut drafts: Vec<Draft>) -> Option<Self> {
        if drafts.is_empty() {
            return None;
        }
        let first = drafts.remove(0);
        Some(Self {
            first,
            rest: drafts,
        })
    }

    fn into_iter(self) -> impl Iterator<Item = Draft> {
        std::iter::once(self.first).chain(self.rest)
    }

    fn iter(&self) -> impl Iterator<Item = &Draft> {
        std::iter::once(&self.first).chain(&self.rest)
    }
}

/// The kind-specific part of an entry; the writer fills in the envelope.
#[derive(Debug, Clone)]
pub struct Draft {
    pub kind: String,
    pub system: Option<String>,
    pub body: serde_cbor::Value,
}

/// A rule check and entry builder, run by the writer with exclusive access to the projections.
pub type Command<E> = Box<dyn FnOnce(&mut Staging<'_>) -> Result<Prepared, E> + Send>;

/// One request to append: who asks, and what.
pub struct AppendRequest<E> {
    pub actor: String,
    pub command: Command<E>,
    /// Projection keys the command will read, if known: on a shared store the writer
    /// fetches those of the whole batch in one call instead of a round trip each.
    pub reads: Vec<Vec<u8>>,
}

/// Why an append produced no receipt.
#[derive(Debug, thiserror::Error)]
pub enum AppendError<E> {
    #[error("rejected")]
    Rejected(E),
    #[error("storage failed; nothing of this batch was recorded: {0}")]
    Storage(String),
    /// The local store refused the batch before writing any of it: its free-space
    /// reserve is reached. The writer goes on; so do writes once space returns.
    #[error("storage full; nothing of this batch was written: {0}")]
    Full(String),
    /// The local store failed to make the batch durable (a failed write or sync): it is
    /// not acknowledged, and the writer has stopped (a retried sync is not trusted).
    #[error("storage failed to make the batch durable: {0}")]
    StorageFailed(String),
    #[error("the writer has stopped")]
    Unavailable,
    /// An entry of the command would exceed [`MAX_ENTRY_BYTES`]; nothing was appended.
    #[error("an entry would be {bytes} bytes; at most {MAX_ENTRY_BYTES}")]
    TooLarge {
        /// The body's largest field, which a caller can shrink.
        field: Option<String>,
        bytes: usize,
    },
}

/// The largest entry the log takes, bytes: C2SP tlog-tiles entry bundles prefix each
/// entry with a 2-byte length.
pub const MAX_ENTRY_BYTES: usize = u16::MAX as usize;

/// An entry that does not fit: its size and its body's largest top-level field.
struct TooLarge {
    field: Option<String>,
    bytes: usize,
}

/// The body field whose value encodes largest (where the room went).
fn largest_field(body: &serde_cbor::Value) -> Option<String> {
    let serde_cbor::Value::Map(m) = body else {
        return None;
    };
    m.iter()
        .max_by_key(|(_, v)| serde_cbor::to_vec(v).map_or(0, |b| b.len()))
        .and_then(|(k, _)| match k {
            serde_cbor::Value::Text(t) => Some(t.clone()),
            _ => None,
        })
}

/// What a caller is given once its entry is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub index: u64,
    pub leaf_hash: Hash,
    /// The tree size of `checkpoint`.
    pub tree_size: u64,
    pub checkpoint: String,
    pub inclusion_proof: Vec<Hash>,
    /// False when the command found its entry already in the log (an idempotent replay).
    pub appended: bool,
}

/// The latest durable, signed state of the log, published to readers after each batch.
#[derive(Debug, Clone)]
pub struct Published {
    pub size: u64,
    pub root: Hash,
    pub note: String,
    /// When it was signed (unix µs).
    pub signed_at: u64,
}

pub(crate) struct Job<E> {
    pub requests: Vec<AppendRequest<E>>,
    pub reply: oneshot::Sender<Vec<Result<Receipt, AppendError<E>>>>,
}

/// The writer's private state: the right edge of the tree and the chain's tail.
pub(crate) struct WriterState {
    pub head: Head,
    pub frontier_tiles: TileBuilder,
    pub frontier: Frontier,
}

impl WriterState {
    /// The writer's state at `head`, from the stored tiles: the right edge of the tile
    /// store, and the frontier, whose root must be the head's.
    pub(crate) fn load(store: &dyn Store, head: Head) -> Result<Self, LedgerError> {
        let tiles = TileBuilder::load(
            head.size,
            |id| store.tile(id),
            |id| StoreError::Corrupt(format!("tile {id:?} is missing")),
        )?;
        let mut reader = TileReader::new(|id| store.tile(id));
        let edge =
            merkle::right_edge(&mut reader, head.size).map_err(|e| LedgerError::Inconsistent {
                index: head.size.saturating_sub(1),
                reason: e.to_string(),
            })?;
        let mut frontier = merkle::Frontier::new();
        for (level, hash) in edge {
            frontier.push_subtree(level, hash);
        }
        if frontier.root() != head.root {
            return Err(LedgerError::Inconsistent {
                index: head.size.saturating_sub(1),
                reason: "stored tree hashes do not reproduce the head's root".into(),
            });
        }
        Ok(WriterState {
            head,
            frontier_tiles: tiles,
            frontier,
        })
    }
}

/// The stored checkpoint at `head`, once its signature verifies and it names the head.
pub(crate) fn stored_checkpoint(
    store: &dyn Store,
    verifier: &super::note::NoteVerifier,
    head: Head,
) -> Result<Published, StoreError> {
    let corrupt = StoreError::Corrupt;
    let note = store
        .checkpoint(head.size)?
        .ok_or_else(|| corrupt(format!("no checkpoint stored at size {}", head.size)))?;
    let cp = Checkpoint::open(&note, verifier)
        .map_err(|e| corrupt(format!("stored checkpoint at size {}: {e}", head.size)))?;
    if cp.size != head.size || cp.root != head.root {
        return Err(corrupt(
            "the stored head disagrees with its checkpoint".into(),
        ));
    }
    Ok(Published {
        size: head.size,
        root: head.root,
        note,
        signed_at: now_micros(),
    })
}

/// Publish a checkpoint to readers unless a larger one already is.
pub(crate) fn publish(to: &RwLock<Published>, p: Published) {
    let mut cur = to.write().expect("published lock");
    if p.size >= cur.size {
        *cur = p;
    }
}

pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

enum Outcome<E> {
    Appended(u64),
    Existing(u64),
    Failed(AppendError<E>),
}

pub(crate) struct Sequencer<E> {
    pub poisoned: Arc<std::sync::atomic::AtomicBool>,
    pub store: Arc<dyn Store>,
    pub cache: Arc<TileCache>,
    pub signer: NoteSigner,
    pub state: WriterState,
    pub published: Arc<RwLock<Published>>,
    pub metrics: Arc<dyn Fn(usize) + Send + Sync>,
    pub projections: Arc<Projections<E>>,
}

impl<E: Send + 'static> Sequencer<E> {
    /// Run until every sender is gone, then return (after the last batch is durable).
    pub fn run(mut self, mut rx: mpsc::Receiver<Job<E>>) {
        let mut poisoned = false;
        while let Some(first) = rx.blocking_recv() {
            let mut count = first.requests.len();
            let mut jobs = vec![first];
            // Take the whole pool: whatever queued while the last batch was flushing.
            while count < MAX_BATCH {
                match rx.try_recv() {
                    Ok(j) => {
                        count += j.requests.len();
                        jobs.push(j);
                    }
                    Err(_) => break,
                }
            }
            if poisoned {
                let why = "the writer stopped after a storage failure; nothing was recorded (restart to recover)";
                for j in jobs {
                    let n = j.requests.len();
                    let _ = j.reply.send(
                        (0..n)
                            .map(|_| Err(AppendError::StorageFailed(why.into())))
                            .collect(),
                    );
                }
                continue;
            }
            if let Err(e) = self.sequence(jobs) {
                // A commit whose durability is unknown: stop writing rather than guess.
                // Recovery on the next start decides from what is on disk.
                tracing::error!(error = %e, "ledger commit failed; the writer stops accepting appends");
                poisoned = true;
                self.poisoned
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// On a shared store: take the head lock and, when another node advanced the log
    /// since this one last wrote, load its new right edge, after checking that the
    /// stored tree still holds the tree this node last knew (so the checkpoint this
    /// batch signs is consistent with every earlier one) and that the stored
    /// checkpoint verifies.
    fn sync_with_store(&mut self) -> Result<(), StoreError> {
        let head = self
            .store
            .lock_head()?
            .ok_or_else(|| StoreError::Corrupt("the shared log has no head".into()))?;
        if head == self.state.head {
            return Ok(());
        }
        let corrupt = |what: String| StoreError::Corrupt(what);
        let old = self.state.head;
        if head.size <= old.size {
            return Err(corrupt(format!(
                "the stored head (size {}) does not extend the one this node wrote or read (size {})",
                head.size, old.size
            )));
        }
        let store = self.store.clone();
        let mut reader = TileReader::with_cache(|id| store.tile(id), &self.cache);
        if old.size > 0 {
            let root = merkle::root(&mut reader, old.size).map_err(|e| corrupt(e.to_string()))?;
            if root != old.root {
                return Err(corrupt(format!(
                    "the stored tree at size {} is not the one this node knew: refusing to sign",
                    old.size
                )));
            }
        }
        let state = WriterState::load(&*self.store, head).map_err(|e| corrupt(e.to_string()))?;
        let checkpoint = stored_checkpoint(&*self.store, &self.signer.verifier(), head)?;
        self.state = state;
        publish(&self.published, checkpoint);
        Ok(())
    }

    /// One batch: take the shared head (on a shared store), run every command, sign
    /// and commit what they appended, then answer every caller.
    fn sequence(&mut self, jobs: Vec<Job<E>>) -> Result<(), StoreError> {
        let shared = self.store.shared();
        if shared {
            if let Err(e) = self.sync_with_store() {
                // Nothing was written; this node stays as it was and tries again with
                // the next batch.
                let _ = self.store.release();
                tracing::error!(error = %e, "cannot take or check the shared log's head");
                for j in jobs {
                    let n = j.requests.len();
                    let _ = j.reply.send(
                        (0..n)
                            .map(|_| Err(AppendError::Storage(e.to_string())))
                            .collect(),
                    );
                }
                return Ok(());
            }
        }
        let reads = self.prefetch(&jobs)?;
        let time = now_micros().max(self.state.head.last_time);
        let mut batch = BatchBuilder::new(&self.state, time);
        let (mut outcomes, replies) = self.run_commands(jobs, &mut batch, &reads);
        let (signed, result) = self.sign_and_commit(batch, &mut outcomes)?;
        self.answer(outcomes, replies, signed);
        result
    }

    /// On a shared store, fetch the projection rows the batch's commands said they read,
    /// in one call instead of a round trip each.
    fn prefetch(&self, jobs: &[Job<E>]) -> Result<ReadCache, StoreError> {
        let reads = ReadCache::default();
        if !self.store.shared() {
            return Ok(reads);
        }
        let keys: std::collections::BTreeSet<&Vec<u8>> = jobs
            .iter()
            .flat_map(|j| j.requests.iter().flat_map(|r| r.reads.iter()))
            .collect();
        if !keys.is_empty() {
            let keys: Vec<Vec<u8>> = keys.into_iter().cloned().collect();
            let values = self.store.get_many(&keys)?;
            let mut cache = reads.borrow_mut();
            for (k, v) in keys.into_iter().zip(values) {
                cache.insert(ns_key(NS_PROJECTION, &k), v);
            }
        }
        Ok(reads)
    }

    /// Run each request's command, in order, against the projections plus what earlier
    /// requests staged; accepted ones extend `batch`.
    fn run_commands(
        &self,
        jobs: Vec<Job<E>>,
        batch: &mut BatchBuilder,
        reads: &ReadCache,
    ) -> (Vec<Vec<Outcome<E>>>, Vec<Reply<E>>) {
        let mut outcomes: Vec<Vec<Outcome<E>>> = Vec::with_capacity(jobs.len());
        let mut replies = Vec::with_capacity(jobs.len());
        for job in jobs {
            let mut outs = Vec::with_capacity(job.requests.len());
            for req in job.requests {
                let index = batch.next_index();
                let mut staging = Staging::for_writer(
                    &*self.store,
                    &batch.overlay,
                    index,
                    batch.time,
                    &req.actor,
                    reads,
                );
                let result = (req.command)(&mut staging).and_then(|prepared| {
                    self.project(&prepared, &mut staging)?;
                    Ok(prepared)
                });
                let own = staging.into_writes();
                outs.push(match result {
                    Ok(Prepared::Append(drafts)) => match batch.seal(drafts, &req.actor) {
                        Ok(sealed) => {
                            let last = batch.extend(sealed);
                            batch.overlay.extend(own);
                            Outcome::Appended(last)
                        }
                        // Nothing of the command enters the batch: not its entries, not
                        // what it or its projections staged.
                        Err(TooLarge { field, bytes }) => {
                            Outcome::Failed(AppendError::TooLarge { field, bytes })
                        }
                    },
                    Ok(Prepared::Existing(i)) => {
                        batch.overlay.extend(own);
                        Outcome::Existing(i)
                    }
                    Err(e) => Outcome::Failed(AppendError::Rejected(e)),
                });
            }
            outcomes.push(outs);
            replies.push(job.reply);
        }
        (outcomes, replies)
    }

    /// Project each draft a command returned at the index and time it will carry, on
    /// the command's own staging, so its rows join the batch with it (or not at all).
    fn project(&self, prepared: &Prepared, s: &mut Staging<'_>) -> Result<(), E> {
        let Prepared::Append(drafts) = prepared else {
            return Ok(());
        };
        let (index, time, actor) = (s.index(), s.time(), s.actor());
        for (i, d) in drafts.iter().enumerate() {
            let entry = Applied {
                kind: &d.kind,
                system: d.system.as_deref(),
                body: &d.body,
                index: index + i as u64,
                time,
                actor,
            };
            self.projections.project(&entry, s)?;
        }
        Ok(())
    }

    /// Sign one checkpoint for the batch and commit it durably; then publish it. On a
    /// failed commit every accepted outcome fails; on a local store the writer stops
    /// (returned as the second value). Returns the checkpoint signed, if any.
    #[allow(clippy::type_complexity)]
    fn sign_and_commit(
        &mut self,
        batch: BatchBuilder,
        outcomes: &mut [Vec<Outcome<E>>],
    ) -> Result<(Option<(u64, String)>, Result<(), StoreError>), StoreError> {
        let shared = self.store.shared();
        if batch.entries.is_empty() {
            if shared {
                self.store.release()?;
            }
            return Ok((None, Ok(())));
        }
        let first_index = batch.first_index;
        let size = first_index + batch.entries.len() as u64;
        let root = batch.frontier.root();
        let origin = self.signer.name().to_owned();
        let note = self
            .signer
            .sign(&Checkpoint { origin, size, root }.to_text());
        let head = Head {
            size,
            root,
            last_time: batch.time,
            last_leaf: batch.prev,
        };
        let BatchBuilder {
            entries,
            mut tiles,
            frontier,
            overlay,
            ..
        } = batch;
        let (projections, vault) = split_writes(overlay);
        let commit = CommitBatch {
            first_index,
            entries,
            tiles: tiles.take_dirty(),
            checkpoints: vec![(size, note.clone())],
            head: Some(head),
            projections,
            vault,
            meta: Vec::new(),
        };
        match self.store.commit(commit) {
            Ok(()) => {
                self.state = WriterState {
                    head,
                    frontier_tiles: tiles,
                    frontier,
                };
                publish(
                    &self.published,
                    Published {
                        size,
                        root,
                        note: note.clone(),
                        signed_at: now_micros(),
                    },
                );
                (self.metrics)((size - first_index) as usize);
                Ok((Some((size, note)), Ok(())))
            }
            Err(e) => {
                let msg = e.to_string();
                let failed = |m: String| match (&e, shared) {
                    (StoreError::Full(_), _) => AppendError::Full(m),
                    (_, true) => AppendError::Storage(m),
                    (_, false) => AppendError::StorageFailed(m),
                };
                for o in outcomes.iter_mut().flatten() {
                    if !matches!(o, Outcome::Failed(_)) {
                        *o = Outcome::Failed(failed(msg.clone()));
                    }
                }
                if let StoreError::Full(why) = &e {
                    // Nothing was written: the writer goes on, refusing until space returns.
                    tracing::warn!(reason = %why, "batch refused: storage full");
                    if shared {
                        self.store.release()?;
                    }
                    return Ok((None, Ok(())));
                }
                if shared {
                    // The transaction rolled back (or, if the connection died while
                    // committing, may have landed): the next round re-reads the head.
                    tracing::error!(error = %e, "batch not committed to the shared log");
                    Ok((None, Ok(())))
                } else {
                    Ok((None, Err(e)))
                }
            }
        }
    }

    /// Receipts: all proofs of this batch against the one checkpoint, sharing tiles and
    /// nodes (this batch's own checkpoint; for a batch of replays only, the latest).
    fn answer(
        &self,
        outcomes: Vec<Vec<Outcome<E>>>,
        replies: Vec<Reply<E>>,
        signed: Option<(u64, String)>,
    ) {
        let (proof_size, proof_note) = match signed {
            Some(s) => s,
            None => {
                let p = self.published.read().expect("published lock");
                (p.size, p.note.clone())
            }
        };
        let store = self.store.clone();
        let mut reader = TileReader::with_cache(|id| store.tile(id), &self.cache);
        let mut proofs = merkle::Proofs::new(proof_size);
        let mut leaf_of =
            |index: u64, reader: &mut TileReader<_>| -> Result<(Hash, Vec<Hash>), String> {
                let leaf = merkle::NodeSource::node(reader, 0, index).map_err(|e| e.to_string())?;
                let proof = proofs.of(reader, index).map_err(|e| e.to_string())?;
                Ok((leaf, proof))
            };
        for (outs, reply) in outcomes.into_iter().zip(replies) {
            let answers = outs
                .into_iter()
                .map(|o| {
                    let (i, appended) = match o {
                        Outcome::Appended(i) => (i, true),
                        Outcome::Existing(i) => (i, false),
                        Outcome::Failed(e) => return Err(e),
                    };
                    let (leaf_hash, inclusion_proof) =
                        leaf_of(i, &mut reader).map_err(AppendError::Storage)?;
                    Ok(Receipt {
                        index: i,
                        leaf_hash,
                        tree_size: proof_size,
                        checkpoint: proof_note.clone(),
                        inclusion_proof,
                        appended,
                    })
                })
                .collect();
            let _ = reply.send(answers);
        }
    }
}

/// Where a job's answers go.
type Reply<E> = oneshot::Sender<Vec<Result<Receipt, AppendError<E>>>>;

/// A batch being built: its entries so far, and the tree, the chain and the staged
/// projection and vault writes extended by them.
struct BatchBuilder {
    first_index: u64,
    /// The time every entry of the batch carries.
    time: u64,
    entries: Vec<Vec<u8>>,
    tiles: TileBuilder,
    frontier: Frontier,
    /// The leaf hash of the last entry (the next one's `prev`).
    prev: Hash,
    /// What the accepted commands staged, namespaced (see staging.rs).
    overlay: Writes,
}

impl BatchBuilder {
    fn new(state: &WriterState, time: u64) -> Self {
        Self {
            first_index: state.head.size,
            time,
            entries: Vec::new(),
            tiles: state.frontier_tiles.clone(),
            frontier: state.frontier.clone(),
            prev: state.head.last_leaf,
            overlay: Writes::new(),
        }
    }

    /// The index the next entry will have.
    fn next_index(&self) -> u64 {
        self.first_index + self.entries.len() as u64
    }

    /// Encode a command's entries as they would follow in the batch (each entry's bytes
    /// and leaf hash), refusing the command when one would exceed [`MAX_ENTRY_BYTES`].
    /// The batch itself is not changed.
    fn seal(&self, drafts: Drafts, actor: &str) -> Result<Vec<(Vec<u8>, Hash)>, TooLarge> {
        let mut prev = self.prev;
        let mut sealed = Vec::with_capacity(1);
        for (i, draft) in drafts.into_iter().enumerate() {
            let e = Entry {
                v: FORMAT_VERSION,
                index: self.next_index() + i as u64,
                time: self.time,
                kind: draft.kind,
                system: draft.system,
                actor: actor.to_owned(),
                prev: prev.to_vec(),
                body: draft.body,
            };
            let bytes = entry::encode(&e);
            if bytes.len() > MAX_ENTRY_BYTES {
                return Err(TooLarge {
                    field: largest_field(&e.body),
                    bytes: bytes.len(),
                });
            }
            prev = merkle::leaf_hash(&bytes);
            sealed.push((bytes, prev));
        }
        Ok(sealed)
    }

    /// Extend the chain and the tree with sealed entries; returns the last one's index.
    fn extend(&mut self, sealed: Vec<(Vec<u8>, Hash)>) -> u64 {
        for (bytes, leaf) in sealed {
            self.tiles.push(leaf);
            self.frontier.push(leaf);
            self.prev = leaf;
            self.entries.push(bytes);
        }
        self.next_index() - 1
    }
}
