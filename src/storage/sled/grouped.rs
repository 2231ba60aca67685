//! sled backend: the rows of a grouped family ([`GroupedRows`]: `prefix ‖ name ‖ 0 ‖
//! suffix`, the register's decision trail, one row per decision) packed into chunks,
//! one or a few per batch and group, instead of a sled key each.
//!
//! Measured with batches of 1,000: the trail row's sled key cost about 317 bytes of disk
//! per decision (sled rewrites a node on every insert and keeps the old copy until it
//! cleans the segment) and a tenth of the writer's time; a chunk is written once.
//!
//! A chunk holds rows of one group with keys above every row of that group's earlier
//! chunks (the usual case: decisions arrive roughly in the order they happened). A row
//! at or below that right edge (a late decision) stays a sled key of its own, as every
//! row did before chunks; reads merge both. So a group's chunks cover disjoint key
//! ranges in key order, chunks of all groups sort as their rows do, and a range reads
//! exactly the chunks it meets. Everything above the store sees rows.

use super::chunk::{self, ChunkView};
use crate::storage::rows::successor;
use crate::storage::{GroupedRows, StoreError, StoreResult};

/// The sled key prefix of chunks (beside `p`, the projection rows').
pub(crate) const P_CHUNK: u8 = b'q';

/// The key layout of the packed family, as the register declared it.
#[derive(Debug, Clone)]
pub(crate) struct Grouped {
    prefix: Vec<u8>,
    /// The least key above every row of the family.
    end: Vec<u8>,
    /// A row key's fixed-width tail: the chunk's table key.
    suffix: usize,
}

impl Grouped {
    pub fn new(rows: &GroupedRows) -> StoreResult<Self> {
        let end = successor(rows.prefix)
            .filter(|_| rows.suffix > 0)
            .ok_or_else(|| {
                StoreError::refused("a grouped row family needs a prefix and a suffix")
            })?;
        Ok(Self {
            prefix: rows.prefix.to_vec(),
            end,
            suffix: rows.suffix,
        })
    }

    /// The family's prefix (every row key starts with it).
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// The group (`prefix ‖ name ‖ 0`) of a row key, or `None` for a key of another family.
    pub fn group<'k>(&self, key: &'k [u8]) -> Option<&'k [u8]> {
        let rest = key.strip_prefix(self.prefix.as_slice())?;
        if rest.len() < self.suffix + 2 {
            return None;
        }
        let g = &key[..key.len() - self.suffix];
        let name = &g[self.prefix.len()..g.len() - 1];
        (g.last() == Some(&0) && !name.contains(&0)).then_some(g)
    }

    /// Whether `[lo, hi)` (projection keys; `hi` `None` for no bound) meets the family.
    pub fn meets(&self, lo: &[u8], hi: Option<&[u8]>) -> bool {
        lo < self.end.as_slice() && hi.is_none_or(|h| h > self.prefix.as_slice())
    }

    /// Closed chunks of `rows` (sorted, one group): `(sled key, bytes)`, in the shared
    /// format (see [`chunk`]) with the key suffix as table key.
    pub fn chunks(&self, rows: &[(&[u8], &[u8])]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let suffix = self.suffix;
        let mut out = Vec::new();
        let mut rest = rows;
        while !rest.is_empty() {
            let n = chunk::fill(rest, suffix, chunk::CHUNK_BYTES, |(_, v)| v.len());
            let part = &rest[..n];
            let table: Vec<(&[u8], &[u8])> = part
                .iter()
                .map(|(k, v)| (&k[k.len() - suffix..], *v))
                .collect();
            let bytes = chunk::encode(part[0].0, part[n - 1].0, &table);
            out.push((chunk_key(part[0].0), bytes));
            rest = &rest[n..];
        }
        out
    }

    /// A stored chunk of this family, parsed.
    pub fn parse<'a>(&self, raw: &'a [u8]) -> StoreResult<GroupChunk<'a>> {
        let inner = ChunkView::parse(raw, self.suffix)?;
        if inner.is_empty() || self.group(inner.min).is_none() {
            return Err(StoreError::Corrupt("malformed grouped-row chunk".into()));
        }
        Ok(GroupChunk {
            min: inner.min,
            max: inner.max,
            suffix: self.suffix,
            inner,
        })
    }
}

pub(crate) fn chunk_key(first_row: &[u8]) -> Vec<u8> {
    [&[P_CHUNK][..], first_row].concat()
}

/// A parsed chunk of one group's rows, borrowing its bytes.
pub(crate) struct GroupChunk<'a> {
    pub min: &'a [u8],
    pub max: &'a [u8],
    suffix: usize,
    inner: ChunkView<'a>,
}

impl<'a> GroupChunk<'a> {
    fn group(&self) -> &'a [u8] {
        &self.min[..self.min.len() - self.suffix]
    }

    /// The value of row `key`, if the chunk holds it.
    pub fn find(&self, key: &[u8]) -> StoreResult<Option<&'a [u8]>> {
        if key.len() != self.min.len() || !key.starts_with(self.group()) {
            return Ok(None);
        }
        self.inner.find(&key[key.len() - self.suffix..])
    }

    /// Every row, keys ascending.
    pub fn rows(&self) -> StoreResult<Vec<(Vec<u8>, &'a [u8])>> {
        let group = self.group();
        Ok(self
            .inner
            .rows()?
            .into_iter()
            .map(|(k, v)| ([group, k].concat(), v))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A grouped family of the tests' own, as a register would declare one.
    const PREFIX: &[u8] = b"grp\0";

    fn packing() -> Packing {
        Packing {
            grouped: Some(GroupedRows {
                prefix: PREFIX,
                suffix: 16,
            }),
            ..Default::default()
        }
    }

    fn layout() -> Grouped {
        Grouped::new(packing().grouped.as_ref().unwrap()).unwrap()
    }

    fn row(system: &str, t: u64, i: u64) -> Vec<u8> {
        [
            PREFIX,
            system.as_bytes(),
            &[0],
            &t.to_be_bytes()[..],
            &i.to_be_bytes()[..],
        ]
        .concat()
    }

    use crate::storage::sled::SledStore;
    use crate::storage::{CommitBatch, Packing, RowStore as _, Rows, Store as _};
    use std::collections::BTreeMap;

    type Model = BTreeMap<Vec<u8>, Vec<u8>>;

    fn commit(store: &SledStore, model: &mut Model, w: BTreeMap<Vec<u8>, Option<Vec<u8>>>) {
        for (k, v) in &w {
            match v {
                Some(v) => model.insert(k.clone(), v.clone()),
                None => model.remove(k),
            };
        }
        store
            .commit(CommitBatch {
                projections: w,
                ..Default::default()
            })
            .unwrap();
    }

    fn check(store: &SledStore, model: &Model) {
        let all: Rows = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(store.scan(b"", None, false, usize::MAX).unwrap(), all);
        for (k, v) in model {
            assert_eq!(store.get(k).unwrap().as_ref(), Some(v));
        }
        for system in ["a", "b", "bb"] {
            let prefix = [PREFIX, system.as_bytes(), &[0]].concat();
            let want: Rows = all
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix))
                .cloned()
                .collect();
            for reverse in [false, true] {
                // Pages of 9 by cursor (scan) and by bounds (range), as the trail reads.
                let mut got = Vec::new();
                let mut cursor: Option<Vec<u8>> = None;
                loop {
                    let page = store.scan(&prefix, cursor.as_deref(), reverse, 9).unwrap();
                    let Some((last, _)) = page.last() else { break };
                    cursor = Some(last.clone());
                    got.extend(page);
                }
                let mut want = want.clone();
                if reverse {
                    want.reverse();
                }
                assert_eq!(got, want, "scan pages of {system}, reverse {reverse}");
            }
            // A time window.
            let (lo, hi) = (row(system, 1_005, 0), row(system, 1_010, 0));
            let win: Rows = want
                .iter()
                .filter(|(k, _)| *k >= lo && *k < hi)
                .cloned()
                .collect();
            assert_eq!(store.range(&lo, &hi, false, usize::MAX).unwrap(), win);
            let mut rev = win.clone();
            rev.reverse();
            assert_eq!(
                store.range(&lo, &hi, true, 4).unwrap(),
                rev[..rev.len().min(4)]
            );
        }
    }

    #[test]
    fn chunked_trail_rows_read_as_rows_with_late_rows_deletes_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut model = Model::new();
        let mut index = 0u64;
        let mut rand = crate::storage::xorshift(0x9e37_79b9_7f4a_7c15u64);
        for _round in 0..3 {
            let store = SledStore::open(dir.path(), &packing()).unwrap();
            for batch in 0..30u64 {
                let mut w = BTreeMap::new();
                // Other projection rows beside the trail's.
                w.insert(
                    format!("other\0a\0{batch}-{index}").into_bytes(),
                    Some(vec![1]),
                );
                for _ in 0..rand(120) {
                    let system = ["a", "b", "bb"][rand(3) as usize];
                    // Mostly in time order; some late (below the right edge).
                    let t = 1_000 + index / 40 - if rand(8) == 0 { rand(30) } else { 0 };
                    let len = 1 + rand(900) as usize;
                    w.insert(row(system, t, index), Some(vec![index as u8; len]));
                    index += 1;
                }
                if rand(4) == 0 {
                    let trail: Vec<Vec<u8>> = model
                        .keys()
                        .filter(|k| layout().group(k).is_some())
                        .cloned()
                        .collect();
                    if !trail.is_empty() {
                        w.insert(trail[rand(trail.len() as u64) as usize].clone(), None);
                    }
                }
                commit(&store, &mut model, w);
            }
            check(&store, &model);
            // Most rows went into chunks, the late ones stayed keys of their own.
            let (chunks, own) = store.grouped_layout();
            assert!(
                chunks >= 30 && own > 0 && own * 4 < index as usize,
                "{chunks} {own}"
            );
        }
        let store = SledStore::open(dir.path(), &packing()).unwrap();
        store.clear_projections().unwrap();
        assert!(store.scan(b"", None, false, usize::MAX).unwrap().is_empty());
        let mut model = Model::new();
        let mut w = BTreeMap::new();
        w.insert(row("a", 5, 1), Some(vec![5]));
        commit(&store, &mut model, w);
        check(&store, &model);
    }

    #[test]
    fn groups_are_rows_of_the_declared_family_only() {
        let l = layout();
        assert_eq!(l.group(&row("s", 1, 2)), Some(&b"grp\0s\0"[..]));
        assert_eq!(l.group(b"grp\0s\0short"), None);
        assert_eq!(
            l.group(&[b"other\0s\0".as_slice(), &[7; 16]].concat()),
            None
        );
    }

    #[test]
    fn a_chunk_finds_and_lists_its_rows() {
        let keys: Vec<Vec<u8>> = (0..50).map(|i| row("sys", 10 + i / 7, i)).collect();
        let vals: Vec<Vec<u8>> = (0..50).map(|i| vec![i as u8; i as usize]).collect();
        let rows: Vec<(&[u8], &[u8])> = keys
            .iter()
            .zip(&vals)
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
            .collect();
        let all = layout().chunks(&rows);
        assert_eq!(all.len(), 1);
        let l = layout();
        let c = l.parse(&all[0].1).unwrap();
        assert_eq!((c.min, c.max), (keys[0].as_slice(), keys[49].as_slice()));
        for (k, v) in &rows {
            assert_eq!(c.find(k).unwrap(), Some(*v));
        }
        assert_eq!(c.find(&row("sys", 10, 100)).unwrap(), None);
        assert_eq!(c.find(&row("syt", 10, 1)).unwrap(), None);
        let listed = c.rows().unwrap();
        assert_eq!(listed.len(), 50);
        assert!(listed
            .iter()
            .zip(&rows)
            .all(|(a, b)| a.0 == b.0 && a.1 == b.1));
    }
}
