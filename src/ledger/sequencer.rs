//! The single writer. Every append goes through one OS thread that takes all pending
//! requests at once (group commit), runs each request's rule check against the
//! projections plus what this batch already staged, encodes the accepted entries,
//! extends the tree, signs one checkpoint, commits everything in one atomic durable
//! store batch, and only then answers every caller with its receipt.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use super::entry::{self, Entry, FORMAT_VERSION};
use super::merkle::{self, Frontier, Hash};
use super::note::{Checkpoint, NoteSigner};
use super::store::{CommitBatch, Head, Store, StoreError};
use super::tiles::{TileBuilder, TileCache, TileReader};

/// Most entries sequenced in one batch; larger jobs are never split.
pub const MAX_BATCH: usize = 20_000;

/// What a command asks the writer to do once its rule check passed.
#[derive(Debug)]
pub enum Prepared {
    /// Append a new entry.
    Append(Draft),
    /// Append several entries, in order (the receipt is the last one's).
    AppendAll(Vec<Draft>),
    /// Nothing to append: answer with the receipt of an entry already in the log (idempotent replay).
    Existing(u64),
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
    #[error("the writer has stopped")]
    Unavailable,
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

/// Staged writes: keys prefixed with [`NS_PROJECTION`] or [`NS_VAULT`].
pub(crate) type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;
const NS_PROJECTION: u8 = b'p';
const NS_VAULT: u8 = b'v';

fn ns_key(ns: u8, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(ns);
    k.extend_from_slice(key);
    k
}

/// Split staged writes into (projection writes, vault writes).
pub(crate) fn split_writes(w: Writes) -> (Writes, Writes) {
    // Keys come sorted, so each side is built in bulk, not insert by insert.
    let (v, p): (Vec<_>, Vec<_>) = w
        .into_iter()
        .partition(|(k, _)| k.first() == Some(&NS_VAULT));
    let strip = |rows: Vec<(Vec<u8>, Option<Vec<u8>>)>| -> Writes {
        rows.into_iter()
            .map(|(mut k, val)| {
                k.remove(0);
                (k, val)
            })
            .collect()
    };
    (strip(p), strip(v))
}

/// The projections (and the vault) as the writer sees them while it prepares a batch:
/// the store's rows overlaid with what earlier requests of the same batch staged.
pub struct Staging<'a> {
    store: &'a dyn Store,
    batch: &'a Writes,
    own: Writes,
    index: u64,
    time: u64,
    actor: &'a str,
    /// Rows this batch already read from the store (the writer holds the head for the
    /// whole batch, so they cannot change underneath it); staged writes still win.
    reads: Option<&'a ReadCache>,
}

/// Store reads of one batch, by namespaced key.
pub(crate) type ReadCache = std::cell::RefCell<std::collections::HashMap<Vec<u8>, Option<Vec<u8>>>>;

impl<'a> Staging<'a> {
    /// A staging area outside the writer, for rebuilding projections from the log.
    pub(crate) fn detached(
        store: &'a dyn Store,
        batch: &'a Writes,
        index: u64,
        time: u64,
        actor: &'a str,
    ) -> Self {
        Staging {
            store,
            batch,
            own: BTreeMap::new(),
            index,
            time,
            actor,
            reads: None,
        }
    }

    pub(crate) fn into_writes(self) -> Writes {
        self.own
    }

    /// The index the (first) entry will have if this command appends.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The time the entry will carry (unix µs).
    pub fn time(&self) -> u64 {
        self.time
    }

    pub fn actor(&self) -> &str {
        self.actor
    }

    fn staged(&self, k: &[u8]) -> Option<&Option<Vec<u8>>> {
        self.own.get(k).or_else(|| self.batch.get(k))
    }

    /// A read through the staged writes, then this batch's earlier reads, then the store.
    fn read(
        &self,
        ns: u8,
        key: &[u8],
        from_store: impl FnOnce() -> Result<Option<Vec<u8>>, StoreError>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let k = ns_key(ns, key);
        if let Some(v) = self.staged(&k) {
            return Ok(v.clone());
        }
        let Some(cache) = self.reads else {
            return from_store();
        };
        if let Some(v) = cache.borrow().get(&k) {
            return Ok(v.clone());
        }
        let v = from_store()?;
        cache.borrow_mut().insert(k, v.clone());
        Ok(v)
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(NS_PROJECTION, key, || self.store.get(key))
    }

    pub fn vault_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(NS_VAULT, key, || self.store.vault_get(key))
    }

    /// Stored rows under `prefix` of namespace `ns`, with this batch's staged writes applied.
    fn overlay(&self, ns: u8, prefix: &[u8], stored: super::store::Rows) -> super::store::Rows {
        let mut rows: BTreeMap<Vec<u8>, Vec<u8>> = stored.into_iter().collect();
        let full = ns_key(ns, prefix);
        for layer in [self.batch, &self.own] {
            for (k, v) in layer
                .range(full.clone()..)
                .take_while(|(k, _)| k.starts_with(&full))
            {
                match v {
                    Some(v) => rows.insert(k[1..].to_vec(), v.clone()),
                    None => rows.remove(&k[1..]),
                };
            }
        }
        rows.into_iter().collect()
    }

    /// Projection rows under `prefix`, ascending, with this batch's staged writes applied.
    pub fn scan(&self, prefix: &[u8]) -> Result<super::store::Rows, StoreError> {
        let stored = self.store.scan(prefix, None, false, usize::MAX)?;
        Ok(self.overlay(NS_PROJECTION, prefix, stored))
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.own.insert(ns_key(NS_PROJECTION, &key), Some(value));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.own.insert(ns_key(NS_PROJECTION, &key), None);
    }

    /// Vault rows under `prefix`, ascending, with this batch's staged writes applied.
    pub fn vault_scan(&self, prefix: &[u8]) -> Result<super::store::Rows, StoreError> {
        let stored = self.store.vault_scan(prefix, usize::MAX)?;
        Ok(self.overlay(NS_VAULT, prefix, stored))
    }

    /// Delete from the vault (crypto-shredding: the entry's commitment stays, the value and salt go).
    pub fn vault_delete(&mut self, key: Vec<u8>) {
        self.own.insert(ns_key(NS_VAULT, &key), None);
    }

    /// Write to the vault: the erasable store of personal data beside the log. Vault rows
    /// are not projections: `reindex` neither clears nor rebuilds them.
    pub fn vault_put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.own.insert(ns_key(NS_VAULT, &key), Some(value));
    }
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
    pub _e: std::marker::PhantomData<E>,
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
                for j in jobs {
                    let n = j.requests.len();
                    let _ = j
                        .reply
                        .send((0..n).map(|_| Err(AppendError::Unavailable)).collect());
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
        let state = super::writer_state(&*self.store, head).map_err(|e| corrupt(e.to_string()))?;
        let checkpoint = stored_checkpoint(&*self.store, &self.signer.verifier(), head)?;
        self.state = state;
        publish(&self.published, checkpoint);
        Ok(())
    }

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
        let time = now_micros().max(self.state.head.last_time);
        let first_index = self.state.head.size;
        let mut overlay: Writes = BTreeMap::new();
        let mut entries: Vec<Vec<u8>> = Vec::new();
        let time_of_batch = time;
        // Encode one entry and extend the chain and the tree with it.
        let push = |draft: Draft,
                    actor: &str,
                    entries: &mut Vec<Vec<u8>>,
                    tiles: &mut TileBuilder,
                    frontier: &mut Frontier,
                    prev: &mut Hash|
         -> u64 {
            let index = first_index + entries.len() as u64;
            let e = Entry {
                v: FORMAT_VERSION,
                index,
                time: time_of_batch,
                kind: draft.kind,
                system: draft.system,
                actor: actor.to_owned(),
                prev: prev.to_vec(),
                body: draft.body,
            };
            let bytes = entry::encode(&e);
            let leaf = merkle::leaf_hash(&bytes);
            tiles.push(leaf);
            frontier.push(leaf);
            *prev = leaf;
            entries.push(bytes);
            index
        };
        let mut tiles = self.state.frontier_tiles.clone();
        let mut frontier = self.state.frontier.clone();
        let mut prev = self.state.head.last_leaf;
        let reads = ReadCache::default();
        if shared {
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
        }
        let mut outcomes: Vec<Vec<Outcome<E>>> = Vec::with_capacity(jobs.len());
        let mut replies = Vec::with_capacity(jobs.len());

        for job in jobs {
            let mut outs = Vec::with_capacity(job.requests.len());
            for req in job.requests {
                let index = first_index + entries.len() as u64;
                let mut staging = Staging {
                    store: &*self.store,
                    batch: &overlay,
                    own: BTreeMap::new(),
                    index,
                    time,
                    actor: &req.actor,
                    reads: Some(&reads),
                };
                let result = (req.command)(&mut staging);
                let own = std::mem::take(&mut staging.own);
                match result {
                    Ok(Prepared::Append(draft)) => {
                        let i = push(
                            draft,
                            &req.actor,
                            &mut entries,
                            &mut tiles,
                            &mut frontier,
                            &mut prev,
                        );
                        overlay.extend(own);
                        outs.push(Outcome::Appended(i));
                    }
                    Ok(Prepared::AppendAll(drafts)) if !drafts.is_empty() => {
                        let mut last = 0;
                        for draft in drafts {
                            last = push(
                                draft,
                                &req.actor,
                                &mut entries,
                                &mut tiles,
                                &mut frontier,
                                &mut prev,
                            );
                        }
                        overlay.extend(own);
                        outs.push(Outcome::Appended(last));
                    }
                    Ok(Prepared::AppendAll(_)) => outs.push(Outcome::Failed(AppendError::Storage(
                        "a command appended nothing".into(),
                    ))),
                    Ok(Prepared::Existing(i)) => {
                        overlay.extend(own);
                        outs.push(Outcome::Existing(i));
                    }
                    Err(e) => outs.push(Outcome::Failed(AppendError::Rejected(e))),
                }
            }
            outcomes.push(outs);
            replies.push(job.reply);
        }

        let mut result = Ok(());
        let mut signed: Option<(u64, String)> = None;
        if entries.is_empty() && shared {
            self.store.release()?;
        }
        if !entries.is_empty() {
            let size = first_index + entries.len() as u64;
            let root = frontier.root();
            let origin = self.signer.name().to_owned();
            let note = self
                .signer
                .sign(&Checkpoint { origin, size, root }.to_text());
            let head = Head {
                size,
                root,
                last_time: time,
                last_leaf: prev,
            };
            let (projections, vault) = split_writes(overlay);
            let batch = CommitBatch {
                first_index,
                entries,
                tiles: tiles.take_dirty(),
                checkpoints: vec![(size, note.clone())],
                head: Some(head),
                projections,
                vault,
                meta: Vec::new(),
            };
            match self.store.commit(batch) {
                Ok(()) => {
                    self.state = WriterState {
                        head,
                        frontier_tiles: tiles,
                        frontier,
                    };
                    signed = Some((size, note.clone()));
                    publish(
                        &self.published,
                        Published {
                            size,
                            root,
                            note,
                            signed_at: now_micros(),
                        },
                    );
                    (self.metrics)(size as usize - first_index as usize);
                }
                Err(e) => {
                    let msg = e.to_string();
                    for outs in &mut outcomes {
                        for o in outs.iter_mut() {
                            if !matches!(o, Outcome::Failed(_)) {
                                *o = Outcome::Failed(AppendError::Storage(msg.clone()));
                            }
                        }
                    }
                    if shared {
                        // The transaction rolled back (or, if the connection died while
                        // committing, may have landed): the next round re-reads the head.
                        tracing::error!(error = %e, "batch not committed to the shared log");
                    } else {
                        result = Err(e);
                    }
                }
            }
        }

        // Receipts: all proofs of this batch against the one checkpoint, sharing tiles
        // and nodes (this batch's own checkpoint; for a batch of replays only, the latest).
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
        result
    }
}
