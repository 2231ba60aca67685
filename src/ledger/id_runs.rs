//! The decision-id index (projection rows `dec\0 ‖ system ‖ \0 ‖ decision_id`) as
//! sorted runs with a Bloom filter each: a log-structured merge inside the log's tree.
//!
//! Logging a decision looks its id up (almost always a miss) and adds a row whose key
//! falls anywhere in the index, so a sled key per row meant a tree descent for the
//! lookup, and for the insert a descent, a leaf split about every eighth insert and a
//! copy of the parent index node. Here a batch's new rows become one *run*, sorted by
//! the first 8 bytes of SHA-256 of the row key (a fixed-width table key for the chunk
//! format of `ledger::chunk`), in chunks of about 7 KiB under sled keys
//! `P_RUN ‖ run id ‖ first table key`, next to a meta key `P_RUN ‖ run id` holding the
//! run's row count and its Bloom filter (about 10 bits a row, 7 probes: some 1 % false
//! positives). The filters live in memory: a lookup probes only the runs whose filter
//! may hold the key, newest first, so a miss usually reads nothing. Before a commit
//! adds its run, the newest run is merged into the one before it while it holds at
//! least half as many rows, up to runs of [`RUN_CAP`] rows (see vault_runs for the same
//! binary counter). Everything happens in the log's one atomic batch per commit.
//!
//! A chunk value is `u16 key length ‖ row key ‖ row value` per row, so equal hashes of
//! different keys (rare) are told apart; rows with equal table keys never straddle
//! chunks. When runs hold the same key, the newest wins (a rebuild writes rows again);
//! a merge keeps the newest. Rows written before runs stay sled keys of their own;
//! the runs win over them. A range over the index reads every run (only `reindex`'s
//! comparison and tests list the whole index).

use std::collections::BTreeMap;
use std::ops::Bound;

use sha2::{Digest, Sha256};

use super::chunk::{self as format, Chunk};
use super::store::{Rows, StoreError, StoreResult};

/// The projection key prefix of the rows kept here.
pub const ROW: &[u8] = b"dec\0";
/// sled key prefix of runs (metas and chunks) in the log's tree.
pub const P_RUN: u8 = b'i';
const WIDTH: usize = 8;
/// Runs of at least this many rows are not merged further (see vault_runs::RUN_CAP for
/// why so small): above it, a lookup checks one more filter per 8,192 rows.
#[cfg(not(test))]
pub const RUN_CAP: u64 = 1 << 13;
#[cfg(test)]
pub const RUN_CAP: u64 = 64;
const CHUNK_BYTES: usize = 7 << 10;
const BITS_PER_ROW: u64 = 10;
const PROBES: u64 = 7;

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("decision-id index run: {what}"))
}

pub fn is_row(key: &[u8]) -> bool {
    key.starts_with(ROW)
}

/// Whether `[lo, hi)` (`hi` `None`: to the end) meets the rows kept here.
pub fn meets(lo: &[u8], hi: Option<&[u8]>) -> bool {
    let end = super::store::successor(ROW).expect("a bounded prefix");
    hi.is_none_or(|h| h > ROW) && lo < end.as_slice()
}

/// A row key's table key: the first 8 bytes of its SHA-256.
fn table_key(key: &[u8]) -> [u8; WIDTH] {
    Sha256::digest(key)[..WIDTH].try_into().expect("8 bytes")
}

/// A Bloom filter over table keys (double hashing from the table key alone, so a merge
/// rebuilds its filter without the row keys' digests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    words: Vec<u64>,
}

impl Filter {
    fn with_rows(rows: u64) -> Self {
        let bits = (rows.max(1) * BITS_PER_ROW).next_power_of_two().max(64);
        Self {
            words: vec![0; (bits / 64) as usize],
        }
    }

    fn probes(&self, t: &[u8]) -> impl Iterator<Item = u64> {
        let h1 = u64::from_be_bytes(t.try_into().expect("a table key"));
        // splitmix64 of h1 as the second hash
        let mut z = h1.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        let h2 = (z ^ (z >> 31)) | 1;
        let mask = self.words.len() as u64 * 64 - 1;
        (0..PROBES).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) & mask)
    }

    fn insert(&mut self, t: &[u8]) {
        for bit in self.probes(t).collect::<Vec<_>>() {
            self.words[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }

    fn may_hold(&self, t: &[u8]) -> bool {
        self.probes(t)
            .all(|bit| self.words[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }
}

/// A run's meta: its row count and filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMeta {
    pub rows: u64,
    pub filter: Filter,
}

impl RunMeta {
    fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(8 + self.filter.words.len() * 8);
        b.extend_from_slice(&self.rows.to_be_bytes());
        for w in &self.filter.words {
            b.extend_from_slice(&w.to_be_bytes());
        }
        b
    }

    fn from_bytes(b: &[u8]) -> StoreResult<Self> {
        if b.len() < 16 || b.len() % 8 != 0 || !((b.len() - 8) / 8).is_power_of_two() {
            return Err(corrupt("malformed meta"));
        }
        let word = |c: &[u8]| u64::from_be_bytes(c.try_into().expect("8 bytes"));
        Ok(Self {
            rows: word(&b[..8]),
            filter: Filter {
                words: b[8..].chunks(8).map(word).collect(),
            },
        })
    }
}

/// The runs by id (ids ascend with age: the newest run has the greatest).
pub type Runs = BTreeMap<u64, RunMeta>;

pub fn meta_key(id: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = P_RUN;
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

fn chunk_key(id: u64, t: &[u8]) -> Vec<u8> {
    [&meta_key(id)[..], t].concat()
}

/// Every run's meta, a seek per run.
pub fn load(tree: &sled::Tree) -> StoreResult<Runs> {
    let mut runs = Runs::new();
    let mut from = meta_key(0).to_vec();
    loop {
        let Some(kv) = tree.range(from.as_slice()..).next() else {
            break;
        };
        let (k, v) = kv?;
        if k.first() != Some(&P_RUN) {
            break;
        }
        if k.len() != 9 {
            return Err(corrupt("a chunk without its meta"));
        }
        let id = u64::from_be_bytes(k[1..].try_into().expect("8 bytes"));
        runs.insert(id, RunMeta::from_bytes(&v)?);
        match id.checked_add(1) {
            Some(next) => from = meta_key(next).to_vec(),
            None => break,
        }
    }
    Ok(runs)
}

/// A chunk row's value: `u16 key length ‖ key ‖ value`.
fn packed(key: &[u8], value: &[u8]) -> Vec<u8> {
    [&(key.len() as u16).to_be_bytes()[..], key, value].concat()
}

fn unpack(v: &[u8]) -> StoreResult<(&[u8], &[u8])> {
    let n = v.get(..2).ok_or_else(|| corrupt("malformed row"))?;
    let n = u16::from_be_bytes([n[0], n[1]]) as usize;
    let key = v.get(2..2 + n).ok_or_else(|| corrupt("malformed row"))?;
    Ok((key, &v[2 + n..]))
}

/// The row `key` from run `id`, if it holds it.
fn find_in(tree: &sled::Tree, id: u64, t: &[u8], key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
    let lo = meta_key(id);
    let hi = chunk_key(id, t);
    let Some(kv) = tree
        .range::<&[u8], _>((Bound::Excluded(&lo[..]), Bound::Included(hi.as_slice())))
        .next_back()
    else {
        return Ok(None);
    };
    let (_, raw) = kv?;
    let c = Chunk::parse(&raw, WIDTH)?;
    // The first row with this table key, then its equals.
    let (mut a, mut z) = (0, c.len());
    while a < z {
        let m = (a + z) / 2;
        if c.key(m) < t {
            a = m + 1;
        } else {
            z = m;
        }
    }
    while a < c.len() && c.key(a) == t {
        let (k, v) = unpack(c.value(a)?)?;
        if k == key {
            return Ok(Some(v.to_vec()));
        }
        a += 1;
    }
    Ok(None)
}

/// The value of row `key` in the newest run that holds it.
pub fn get(tree: &sled::Tree, runs: &Runs, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
    let t = table_key(key);
    for (&id, meta) in runs.iter().rev() {
        if meta.filter.may_hold(&t) {
            if let Some(v) = find_in(tree, id, &t, key)? {
                return Ok(Some(v));
            }
        }
    }
    Ok(None)
}

/// Every row of run `id`: (table key, packed row), in table-key order.
fn chunks_of(tree: &sled::Tree, id: u64) -> StoreResult<Vec<(sled::IVec, sled::IVec)>> {
    let meta = meta_key(id);
    tree.scan_prefix(meta)
        .filter(|kv| kv.as_ref().map_or(true, |(k, _)| k.len() != meta.len()))
        .map(|kv| kv.map_err(StoreError::from))
        .collect()
}

/// Rows of every run with keys in `[lo, hi)`, newest copy of each key, in key order
/// (descending if `reverse`), at most `limit`. Reads every run: see the module note.
pub fn range(
    tree: &sled::Tree,
    runs: &Runs,
    lo: &[u8],
    hi: Option<&[u8]>,
    reverse: bool,
    limit: usize,
) -> StoreResult<Rows> {
    let mut rows: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for &id in runs.keys() {
        for (_, raw) in chunks_of(tree, id)? {
            let c = Chunk::parse(&raw, WIDTH)?;
            for i in 0..c.len() {
                let (k, v) = unpack(c.value(i)?)?;
                if k >= lo && hi.is_none_or(|h| k < h) {
                    // Runs go oldest to newest: a newer copy replaces an older one.
                    rows.insert(k.to_vec(), v.to_vec());
                }
            }
        }
    }
    let mut out: Rows = rows.into_iter().collect();
    if reverse {
        out.reverse();
    }
    out.truncate(limit);
    Ok(out)
}

/// A run's row: (table key, packed row).
type Row<'a> = (&'a [u8], &'a [u8]);

/// Write `rows` (table keys ascending) as run `id`: its chunks (rows with equal table
/// keys kept in one chunk) and its meta. Returns the meta.
fn write_run(id: u64, rows: &[Row<'_>], b: &mut sled::Batch) -> RunMeta {
    let mut filter = Filter::with_rows(rows.len() as u64);
    let mut rest = rows;
    while let Some((first, _)) = rest.first() {
        let mut n = format::fill(rest, WIDTH, CHUNK_BYTES, |(_, v)| v.len());
        while n < rest.len() && rest[n].0 == rest[n - 1].0 {
            n += 1;
        }
        let part = &rest[..n];
        for (t, _) in part {
            filter.insert(t);
        }
        b.insert(chunk_key(id, first), format::encode(&[], &[], part));
        rest = &rest[n..];
    }
    let meta = RunMeta {
        rows: rows.len() as u64,
        filter,
    };
    b.insert(&meta_key(id)[..], meta.to_bytes());
    meta
}

/// Two runs' rows as one, in table-key order; of rows with the same key, `newer`'s.
fn merge_two<'a>(older: Vec<Row<'a>>, newer: Vec<Row<'a>>) -> StoreResult<Vec<Row<'a>>> {
    let mut out = Vec::with_capacity(older.len() + newer.len());
    let (mut x, mut y) = (older.into_iter().peekable(), newer.into_iter().peekable());
    while let (Some(p), Some(q)) = (x.peek(), y.peek()) {
        match p.0.cmp(q.0) {
            std::cmp::Ordering::Less => out.extend(x.next()),
            std::cmp::Ordering::Greater => out.extend(y.next()),
            std::cmp::Ordering::Equal => {
                // Same hash: the same key (keep the newer) or a rare collision (keep both).
                if unpack(p.1)?.0 == unpack(q.1)?.0 {
                    x.next();
                } else {
                    out.extend(x.next());
                }
            }
        }
    }
    out.extend(x);
    out.extend(y);
    Ok(out)
}

/// A commit's decision-id rows: `deleted` keys leave every run, and when `rows` (row
/// key, value) are added, the newest runs are first merged as the binary counter says
/// (dropping deleted keys as they go), then `rows` become a run. Writes go to `b`;
/// `runs` is updated in place (the caller holds it until `b` is applied).
pub fn apply(
    tree: &sled::Tree,
    runs: &mut Runs,
    rows: &[(&[u8], &[u8])],
    deleted: &[&[u8]],
    b: &mut sled::Batch,
) -> StoreResult<()> {
    // A merge reads its runs from the tree, so deletes in runs it takes are made by the
    // merge itself, and the rest in place.
    let merged = if rows.is_empty() {
        Vec::new()
    } else {
        merge(tree, runs, deleted, b)?
    };
    delete(tree, runs, deleted, &merged, b)?;
    if rows.is_empty() {
        return Ok(());
    }
    let mut fresh: Vec<([u8; WIDTH], Vec<u8>)> = rows
        .iter()
        .map(|(k, v)| (table_key(k), packed(k, v)))
        .collect();
    // Same table key: order by row key, so the layout does not depend on arrival.
    fresh.sort_by(|p, q| p.0.cmp(&q.0).then_with(|| p.1.cmp(&q.1)));
    let fresh: Vec<Row<'_>> = fresh.iter().map(|(t, v)| (&t[..], &v[..])).collect();
    let id = runs.keys().next_back().map_or(0, |id| id + 1);
    let meta = write_run(id, &fresh, b);
    runs.insert(id, meta);
    Ok(())
}

/// Merge the newest runs (see the module note), leaving out `deleted` keys. Returns the
/// ids of the runs merged (the first is the merged run's).
fn merge(
    tree: &sled::Tree,
    runs: &mut Runs,
    deleted: &[&[u8]],
    b: &mut sled::Batch,
) -> StoreResult<Vec<u64>> {
    let all: Vec<(u64, u64)> = runs.iter().map(|(id, m)| (*id, m.rows)).collect();
    let Some(&(_, newest)) = all.last() else {
        return Ok(Vec::new());
    };
    let (mut rows, mut from) = (newest, all.len() - 1);
    while from > 0 {
        let before = all[from - 1].1;
        if before >= RUN_CAP || rows * 2 < before {
            break;
        }
        rows += before;
        from -= 1;
    }
    let chosen = &all[from..];
    if chosen.len() < 2 {
        return Ok(Vec::new());
    }
    let mut raws = Vec::with_capacity(chosen.len());
    for &(id, _) in chosen {
        let chunks = chunks_of(tree, id)?;
        for (k, _) in &chunks {
            b.remove(k);
        }
        b.remove(&meta_key(id)[..]);
        raws.push(chunks);
    }
    // Oldest first, so each newer run's copies win.
    let mut merged: Vec<Row<'_>> = Vec::new();
    for chunks in &raws {
        let mut run = Vec::new();
        for (_, raw) in chunks {
            let c = Chunk::parse(raw, WIDTH)?;
            for i in 0..c.len() {
                let v = c.value(i)?;
                if deleted.is_empty() || !deleted.contains(&unpack(v)?.0) {
                    run.push((c.key(i), v));
                }
            }
        }
        merged = merge_two(merged, run)?;
    }
    for &(gone, _) in chosen {
        runs.remove(&gone);
    }
    let id = chosen[0].0;
    let meta = write_run(id, &merged, b);
    runs.insert(id, meta);
    Ok(chosen.iter().map(|(id, _)| *id).collect())
}

/// Remove rows `keys` from the runs that hold them but `skip` (rare: a rebuild clears
/// the runs whole), rewriting or removing their chunks. The filters keep their bits.
fn delete(
    tree: &sled::Tree,
    runs: &mut Runs,
    keys: &[&[u8]],
    skip: &[u64],
    b: &mut sled::Batch,
) -> StoreResult<()> {
    // Per chunk (by sled key): its run, its bytes, the row keys to drop.
    type Edits<'a> = BTreeMap<Vec<u8>, (u64, sled::IVec, Vec<&'a [u8]>)>;
    let mut edits: Edits<'_> = BTreeMap::new();
    for &key in keys {
        let t = table_key(key);
        for (&id, meta) in runs.iter() {
            if skip.contains(&id) || !meta.filter.may_hold(&t) {
                continue;
            }
            let lo = meta_key(id);
            let hi = chunk_key(id, &t);
            if let Some(kv) = tree
                .range::<&[u8], _>((Bound::Excluded(&lo[..]), Bound::Included(hi.as_slice())))
                .next_back()
            {
                let (ck, raw) = kv?;
                edits
                    .entry(ck.to_vec())
                    .or_insert((id, raw, Vec::new()))
                    .2
                    .push(key);
            }
        }
    }
    for (ck, (id, raw, gone)) in edits {
        let c = Chunk::parse(&raw, WIDTH)?;
        let mut kept = Vec::with_capacity(c.len());
        for i in 0..c.len() {
            let v = c.value(i)?;
            if !gone.contains(&unpack(v)?.0) {
                kept.push((c.key(i), v));
            }
        }
        let removed = (c.len() - kept.len()) as u64;
        if removed == 0 {
            continue;
        }
        if kept.is_empty() {
            b.remove(ck);
        } else {
            b.insert(ck, format::encode(&[], &[], &kept));
        }
        let meta = runs
            .get_mut(&id)
            .ok_or_else(|| corrupt("a chunk of no run"))?;
        meta.rows = meta.rows.saturating_sub(removed);
        b.insert(&meta_key(id)[..], meta.to_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::store::{CommitBatch, SledStore, Store};

    type Model = BTreeMap<Vec<u8>, Vec<u8>>;
    type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

    fn id(system: &str, n: u64) -> Vec<u8> {
        [ROW, system.as_bytes(), &[0], format!("d-{n}").as_bytes()].concat()
    }

    fn commit(store: &SledStore, model: &mut Model, w: Writes) {
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

    fn check(store: &SledStore, model: &Model, probes: u64) {
        let all: Rows = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let got = store.scan(b"", None, false, usize::MAX).unwrap();
        if let Some(i) = (0..got.len().max(all.len())).find(|&i| got.get(i) != all.get(i)) {
            panic!(
                "scan differs at {i} of {}/{}: got {:?}, want {:?}",
                got.len(),
                all.len(),
                got.get(i).map(|(k, v)| (String::from_utf8_lossy(k), v)),
                all.get(i).map(|(k, v)| (String::from_utf8_lossy(k), v))
            );
        }
        for (k, v) in model {
            assert_eq!(store.get(k).unwrap().as_ref(), Some(v), "get {k:?}");
        }
        // Misses, the common case when a decision is logged.
        for n in 0..probes {
            let k = id("a", 1_000_000 + n);
            assert_eq!(store.get(&k).unwrap(), None);
        }
        // Pages by cursor, both ways.
        let prefix = [ROW, b"a", &[0]].concat();
        let want: Rows = all
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .cloned()
            .collect();
        for reverse in [false, true] {
            let mut got = Vec::new();
            let mut cursor: Option<Vec<u8>> = None;
            loop {
                let page = store.scan(&prefix, cursor.as_deref(), reverse, 9).unwrap();
                let Some((last, _)) = page.last() else { break };
                cursor = Some(last.clone());
                got.extend(page);
            }
            if reverse {
                got.reverse();
            }
            assert_eq!(got, want, "pages, reverse {reverse}");
        }
    }

    fn runs_of(store: &SledStore) -> Runs {
        store.id_runs_layout()
    }

    #[test]
    fn id_rows_in_runs_read_as_rows_through_merges_rewrites_deletes_reopen_and_clear() {
        let dir = tempfile::tempdir().unwrap();
        let mut model = Model::new();
        let mut next = 0u64;
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        for round in 0..2 {
            let store = SledStore::open(dir.path()).unwrap();
            for batch in 0..80 {
                let mut w = Writes::new();
                for _ in 0..1 + rand(30) {
                    let system = ["a", "b"][rand(2) as usize];
                    w.insert(id(system, next), Some(next.to_be_bytes().to_vec()));
                    next += 1;
                }
                // Other projection rows in the same batch stay rows of their own.
                w.insert(b"sys\0a".to_vec(), Some(vec![batch as u8]));
                // Now and then a row written again (newest wins) or deleted.
                if batch % 7 == 6 {
                    let old: Vec<Vec<u8>> = model
                        .keys()
                        .filter(|k| k.starts_with(ROW))
                        .cloned()
                        .collect();
                    let k = old[rand(old.len() as u64) as usize].clone();
                    w.insert(k.clone(), Some(b"again".to_vec()));
                    let k = old[rand(old.len() as u64) as usize].clone();
                    w.entry(k).or_insert(None);
                }
                commit(&store, &mut model, w);
                let runs = runs_of(&store);
                let rows: usize = model.keys().filter(|k| k.starts_with(ROW)).count();
                assert!(
                    runs.len()
                        <= 2 * (usize::BITS - rows.leading_zeros()) as usize
                            + next as usize / RUN_CAP as usize
                            + 2
                );
            }
            check(&store, &model, 200);
            let runs = runs_of(&store);
            assert!(
                runs.len() > 1 && runs.values().any(|m| m.rows >= RUN_CAP),
                "{runs:?}"
            );
            // Stored rows: every live key, plus older copies of keys written again that
            // no merge has dropped yet.
            let stored: u64 = runs.values().map(|m| m.rows).sum();
            let rows = model.keys().filter(|k| k.starts_with(ROW)).count() as u64;
            assert!(
                stored >= rows && stored - rows <= 80 / 7 * (round + 1),
                "{stored} {rows}"
            );
            assert_eq!(
                store
                    .db()
                    .open_tree("ledger")
                    .unwrap()
                    .scan_prefix(b"pdec\0")
                    .count(),
                0,
                "no decision-id row is a key of its own"
            );
            drop(store);
            let store = SledStore::open(dir.path()).unwrap();
            assert_eq!(runs_of(&store), runs, "runs read back from their metas");
            check(&store, &model, 0);
            if round == 1 {
                // A rebuild starts from nothing.
                store.clear_projections().unwrap();
                assert!(runs_of(&store).is_empty());
                model.clear();
                check(&store, &model, 10);
            }
        }
    }

    #[test]
    fn rows_written_before_runs_are_read_and_lose_to_runs() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            let tree = store.db().open_tree("ledger").unwrap();
            tree.insert([&b"p"[..], &id("a", 1)].concat(), b"legacy-1".to_vec())
                .unwrap();
            tree.insert([&b"p"[..], &id("a", 2)].concat(), b"legacy-2".to_vec())
                .unwrap();
            tree.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        let mut model = Model::new();
        model.insert(id("a", 1), b"legacy-1".to_vec());
        model.insert(id("a", 2), b"legacy-2".to_vec());
        let mut w = Writes::new();
        w.insert(id("a", 2), Some(b"run".to_vec()));
        w.insert(id("a", 3), Some(b"run".to_vec()));
        commit(&store, &mut model, w);
        check(&store, &model, 5);
    }

    #[test]
    fn a_filter_holds_what_went_in_and_rarely_more() {
        let mut f = Filter::with_rows(10_000);
        for n in 0..10_000u64 {
            f.insert(&table_key(&n.to_be_bytes()));
        }
        assert!((0..10_000u64).all(|n| f.may_hold(&table_key(&n.to_be_bytes()))));
        let false_hits = (10_000..110_000u64)
            .filter(|n| f.may_hold(&table_key(&n.to_be_bytes())))
            .count();
        assert!(false_hits < 2_000, "{false_hits} of 100,000");
        let meta = RunMeta { rows: 3, filter: f };
        assert_eq!(RunMeta::from_bytes(&meta.to_bytes()).unwrap(), meta);
    }
}
