//! The one check of the entry chain, shared by everything that reads entries in order
//! and must not trust them: the offline verify, recovery on open, reindex's source,
//! migrate, the export check and the auditor's monitor.
//!
//! Each entry must sit at its position (no gap), decode, carry the known format
//! version, claim the index it sits at, link by `prev` to the leaf hash of the entry
//! before it, and not go back in time.

use super::entry::{self, EntryHeader, FORMAT_VERSION};
use super::merkle::{self, Hash};

/// Why the chain breaks at an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("entry {expected} is missing (next stored is {found})")]
    Missing { expected: u64, found: u64 },
    #[error("entry does not decode: {0}")]
    Undecodable(String),
    #[error("unknown format version {0}")]
    UnknownVersion(u8),
    #[error("entry at position {at} claims index {claims}")]
    WrongIndex { at: u64, claims: u64 },
    #[error("prev is not the previous entry's leaf hash")]
    BrokenLink,
    #[error("time goes backwards")]
    TimeBackwards,
}

/// What a checked entry gave: its header and its leaf hash.
pub struct Link {
    pub header: EntryHeader,
    pub leaf: Hash,
}

/// The chain as far as it was checked: where the next entry must sit and what it must
/// link to.
#[derive(Debug, Clone)]
pub struct Chain {
    next: u64,
    /// The leaf hash the next entry's `prev` must be; `None` when it is not known (a
    /// check that starts mid-log without the hash before it).
    prev: Option<Hash>,
    last_time: u64,
}

impl Default for Chain {
    fn default() -> Self {
        Self::new()
    }
}

impl Chain {
    /// The chain of an empty log: entry 0 links to 32 zero bytes.
    pub fn new() -> Self {
        Self::resume(0, Some([0; 32]), 0)
    }

    /// A chain whose next entry is `next`, linking to `prev` (the leaf hash of entry
    /// `next - 1`, if known), no earlier than `last_time`.
    pub fn resume(next: u64, prev: Option<Hash>, last_time: u64) -> Self {
        Self {
            next,
            prev,
            last_time,
        }
    }

    /// The index the next entry must have.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// The leaf hash of the last entry checked (or the one the chain resumed after).
    pub fn last_leaf(&self) -> Option<Hash> {
        self.prev
    }

    /// Check the entry found at `index` with `bytes`, and extend the chain by it.
    pub fn check(&mut self, index: u64, bytes: &[u8]) -> Result<Link, ChainError> {
        if index != self.next {
            return Err(ChainError::Missing {
                expected: self.next,
                found: index,
            });
        }
        let header =
            entry::decode_header(bytes).map_err(|e| ChainError::Undecodable(e.to_string()))?;
        if header.v != FORMAT_VERSION {
            return Err(ChainError::UnknownVersion(header.v));
        }
        if header.index != index {
            return Err(ChainError::WrongIndex {
                at: index,
                claims: header.index,
            });
        }
        if let Some(prev) = self.prev {
            if header.prev_hash() != Some(prev) {
                return Err(ChainError::BrokenLink);
            }
        }
        if header.time < self.last_time {
            return Err(ChainError::TimeBackwards);
        }
        let leaf = merkle::leaf_hash(bytes);
        self.next = index + 1;
        self.prev = Some(leaf);
        self.last_time = header.time;
        Ok(Link { header, leaf })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::entry::{encode, Entry};

    fn entry(index: u64, time: u64, prev: Hash) -> Vec<u8> {
        encode(&Entry {
            v: FORMAT_VERSION,
            index,
            time,
            kind: "k".into(),
            system: None,
            actor: "a".into(),
            prev: prev.to_vec(),
            body: serde_cbor::Value::Null,
        })
    }

    #[test]
    fn a_well_linked_chain_passes() {
        let mut c = Chain::new();
        let e0 = entry(0, 5, [0; 32]);
        let l0 = c.check(0, &e0).unwrap();
        let e1 = entry(1, 5, l0.leaf);
        assert_eq!(c.check(1, &e1).unwrap().header.index, 1);
        assert_eq!(c.next(), 2);
    }

    #[test]
    fn each_break_is_named() {
        let e0 = entry(0, 5, [0; 32]);
        let leaf = merkle::leaf_hash(&e0);
        let cases = [
            (
                entry(2, 5, leaf),
                2,
                ChainError::Missing {
                    expected: 1,
                    found: 2,
                },
            ),
            (
                entry(7, 5, leaf),
                1,
                ChainError::WrongIndex { at: 1, claims: 7 },
            ),
            (entry(1, 5, [9; 32]), 1, ChainError::BrokenLink),
            (entry(1, 4, leaf), 1, ChainError::TimeBackwards),
        ];
        for (bytes, at, want) in cases {
            let mut c = Chain::new();
            c.check(0, &e0).unwrap();
            assert_eq!(c.check(at, &bytes).err(), Some(want));
        }
        let mut c = Chain::new();
        assert!(matches!(
            c.check(0, b"\xff"),
            Err(ChainError::Undecodable(_))
        ));
    }

    #[test]
    fn a_chain_resumed_without_its_link_checks_the_rest() {
        let e5 = entry(5, 9, [3; 32]);
        let mut c = Chain::resume(5, None, 0);
        let l = c.check(5, &e5).unwrap();
        assert_eq!(c.last_leaf(), Some(l.leaf));
    }
}
