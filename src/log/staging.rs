//! What a command sees while the writer prepares a batch: the projections and the
//! vault as stored, overlaid with what earlier requests of the same batch staged.

use std::collections::BTreeMap;

use crate::storage::{Rows, Store, StoreError};

/// Staged writes: keys prefixed with [`NS_PROJECTION`] or [`NS_VAULT`].
pub(crate) type Writes = crate::storage::Writes;
pub(crate) const NS_PROJECTION: u8 = b'p';
pub(crate) const NS_VAULT: u8 = b'v';

pub(crate) fn ns_key(ns: u8, key: &[u8]) -> Vec<u8> {
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
    /// What the command handed on to its own entries' projectors ([`Self::hand_on`]).
    handed: Option<Box<dyn std::any::Any>>,
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
            handed: None,
        }
    }

    /// The writer's staging area for one request of a batch: `batch` holds what earlier
    /// requests of the batch staged, `reads` the rows the batch already read.
    pub(crate) fn for_writer(
        store: &'a dyn Store,
        batch: &'a Writes,
        index: u64,
        time: u64,
        actor: &'a str,
        reads: &'a ReadCache,
    ) -> Self {
        Staging {
            reads: Some(reads),
            ..Self::detached(store, batch, index, time, actor)
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

    pub fn actor(&self) -> &'a str {
        self.actor
    }

    /// The store under the staged rows, for what only the log holds (its entries).
    pub fn store(&self) -> &'a dyn Store {
        self.store
    }

    /// Hand a value the command already read and decoded (a record its check needed) on
    /// to the projectors of the entries it returns, which run on this same staging, so
    /// they need not read it again. It lives as long as this staging: one command.
    pub fn hand_on<T: std::any::Any>(&mut self, v: T) {
        self.handed = Some(Box::new(v));
    }

    /// Take what the command handed on, if it is a `T`. A rebuild has none: a projector
    /// that finds nothing reads the projections.
    pub fn take_handed<T: std::any::Any>(&mut self) -> Option<T> {
        match self.handed.take()?.downcast::<T>() {
            Ok(v) => Some(*v),
            Err(other) => {
                self.handed = Some(other);
                None
            }
        }
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
    fn overlay(&self, ns: u8, prefix: &[u8], stored: Rows) -> Rows {
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
    pub fn scan(&self, prefix: &[u8]) -> Result<Rows, StoreError> {
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
    pub fn vault_scan(&self, prefix: &[u8]) -> Result<Rows, StoreError> {
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
