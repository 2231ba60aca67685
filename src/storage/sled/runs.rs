//! The vault's run family ([`RunRows`]: fixed-length keys ending in an index, the
//! register's subject index `subject ‖ occurred_at ‖ index`) as sorted runs: a
//! log-structured merge inside sled.
//!
//! Every decision adds one subject index row, and its key falls anywhere in the index
//! (by subject), so a sled key per row meant a tree descent, a leaf split about every
//! eighth insert and a copy of the parent index node per decision: the largest single
//! cost of logging a batch. Here a batch's new rows become one *run*: sorted by key and
//! packed into chunks (the shared format of `ledger::chunk`, about 7 KiB each) under
//! sled keys `R/ ‖ run id ‖ first row key`, next to a meta key `R/ ‖ run id` holding the
//! run's row count and highest index. A run's id is the least index of its rows, and a
//! new run takes only rows above every index the runs hold, so runs cover disjoint,
//! ascending index ranges: the run of a row is the one with the greatest id at or below
//! the row's index. Before a batch adds its run, the newest run is merged into the one
//! before it while it holds at least half as many rows (a binary counter: about log2 of
//! the rows over the batch size runs, each row rewritten that many times), up to runs of
//! [`RUN_CAP`] rows, which bounds the largest merge. A merge moves committed rows only,
//! so it needs no undo: a batch whose entries never land removes its own run alone.
//!
//! Reads: a range reads each run's chunks that reach it and merges them (a subject's
//! page is a range, so it costs a seek per run); a row is found through its run, then
//! the chunk with the greatest first key at or below it. A row below the runs' highest
//! index (rows a migration copies in key order, say) stays a sled key of its own, as do
//! rows written before runs; reads merge both, and such a key wins over a run's copy.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::chunk::{self as format, ChunkView};
use crate::storage::rows::{merge_rows, successor, visit_in_order};
use crate::storage::{Rows, RunRows, StoreError, StoreResult};

/// Prefix of run keys (metas and chunks).
pub const RUN: &[u8] = b"R/";
/// Runs of at least this many rows are not merged further. A merge runs inside a commit
/// and stalls the writer: with 2^18 the largest took hundreds of milliseconds and single
/// decisions' p99 went from 13 ms to 180-340 ms; at 2^13 a merge rewrites at most about
/// 16,000 rows (about 1 MiB). The price: above the cap runs grow in number, one per
/// 8,192 rows (122 at a million decisions), and a subject's page reads each.
#[cfg(not(test))]
pub const RUN_CAP: u64 = 1 << 13;
#[cfg(test)]
pub const RUN_CAP: u64 = 64;

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("subject index run: {what}"))
}

/// What a run's meta key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunMeta {
    pub rows: u64,
    /// The highest index of any row the run was written with.
    pub last: u64,
}

impl RunMeta {
    fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.rows.to_be_bytes());
        b[8..].copy_from_slice(&self.last.to_be_bytes());
        b
    }

    fn from_bytes(b: &[u8]) -> StoreResult<Self> {
        let b: [u8; 16] = b.try_into().map_err(|_| corrupt("malformed meta"))?;
        Ok(Self {
            rows: u64::from_be_bytes(b[..8].try_into().expect("8 bytes")),
            last: u64::from_be_bytes(b[8..].try_into().expect("8 bytes")),
        })
    }
}

/// The runs by id, and the key layout of their rows (none: the vault keeps no runs).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Runs {
    layout: Option<RunRows>,
    by_id: BTreeMap<u64, RunMeta>,
}

impl std::ops::Deref for Runs {
    type Target = BTreeMap<u64, RunMeta>;
    fn deref(&self) -> &Self::Target {
        &self.by_id
    }
}

impl std::ops::DerefMut for Runs {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.by_id
    }
}

impl Runs {
    /// The key layout of the run family, if there is one.
    pub fn layout(&self) -> Option<&RunRows> {
        self.layout.as_ref()
    }

    /// The rows' prefix (empty when there is no run family).
    pub fn prefix(&self) -> &'static [u8] {
        self.layout.as_ref().map_or(&[], |l| l.prefix)
    }

    /// A run's table key width: the row key without its prefix.
    fn width(&self) -> usize {
        self.layout
            .as_ref()
            .map_or(0, |l| l.key_len - l.prefix.len())
    }

    /// The index of a run row's key, if `key` is one.
    pub fn row_index(&self, key: &[u8]) -> Option<u64> {
        let l = self.layout.as_ref()?;
        if key.len() != l.key_len || !key.starts_with(l.prefix) {
            return None;
        }
        Some(u64::from_be_bytes(key[l.key_len - 8..].try_into().ok()?))
    }
}

pub fn meta_key(id: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[..2].copy_from_slice(RUN);
    k[2..].copy_from_slice(&id.to_be_bytes());
    k
}

fn chunk_key(id: u64, table_key: &[u8]) -> Vec<u8> {
    [&meta_key(id)[..], table_key].concat()
}

/// Every run's meta, a seek per run.
pub fn load(db: &sled::Db, layout: Option<RunRows>) -> StoreResult<Runs> {
    let mut runs = Runs {
        layout,
        by_id: BTreeMap::new(),
    };
    let mut from = meta_key(0).to_vec();
    loop {
        let Some(kv) = db.range(from.as_slice()..).next() else {
            break;
        };
        let (k, v) = kv?;
        if !k.starts_with(RUN) {
            break;
        }
        if k.len() != 10 {
            return Err(corrupt("a chunk without its meta"));
        }
        let id = u64::from_be_bytes(k[2..].try_into().expect("8 bytes"));
        runs.insert(id, RunMeta::from_bytes(&v)?);
        match id.checked_add(1) {
            Some(next) => from = meta_key(next).to_vec(),
            None => break,
        }
    }
    Ok(runs)
}

/// The highest index any run holds: the newest run's (runs cover ascending ranges).
pub fn highest(runs: &Runs) -> Option<u64> {
    runs.values().next_back().map(|m| m.last)
}

/// The run whose index range holds `index`.
fn run_of(runs: &Runs, index: u64) -> Option<u64> {
    let (&id, meta) = runs.range(..=index).next_back()?;
    (index <= meta.last).then_some(id)
}

/// The chunk of run `id` whose first key is the greatest at or below `table_key`.
fn chunk_at(
    db: &sled::Db,
    id: u64,
    table_key: &[u8],
) -> StoreResult<Option<(sled::IVec, sled::IVec)>> {
    let lo = meta_key(id);
    let hi = chunk_key(id, table_key);
    match db
        .range::<&[u8], _>((Bound::Excluded(&lo[..]), Bound::Included(hi.as_slice())))
        .next_back()
    {
        Some(kv) => Ok(Some(kv?)),
        None => Ok(None),
    }
}

/// The value of the row `key` (a subject index key) if a run holds it.
pub fn get(db: &sled::Db, runs: &Runs, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
    let Some(id) = runs.row_index(key).and_then(|i| run_of(runs, i)) else {
        return Ok(None);
    };
    let table_key = &key[runs.prefix().len()..];
    let Some((_, raw)) = chunk_at(db, id, table_key)? else {
        return Ok(None);
    };
    Ok(ChunkView::parse(&raw, runs.width())?
        .find(table_key)?
        .map(<[u8]>::to_vec))
}

/// A row bound in table-key space: `None` when the bound lies above every row key.
fn table_bound<'b>(row: &[u8], bound: &'b [u8]) -> Option<&'b [u8]> {
    if bound <= row {
        Some(&[])
    } else if bound.starts_with(row) {
        Some(&bound[row.len()..])
    } else {
        None
    }
}

/// Rows of every run with keys in `[lo, hi)`, in order (descending if `reverse`), at
/// most `limit`: per run, only the chunks from the one covering the near bound on.
pub fn range(
    db: &sled::Db,
    runs: &Runs,
    lo: &[u8],
    hi: &[u8],
    reverse: bool,
    limit: usize,
) -> StoreResult<Rows> {
    let row = runs.prefix();
    let mut out = Rows::new();
    let Some(end) = successor(row) else {
        return Ok(out);
    };
    if runs.is_empty() || hi <= row || lo >= &end[..] || limit == 0 {
        return Ok(out);
    }
    let (width, lo_t) = (runs.width(), table_bound(row, lo).unwrap_or(&[]));
    let hi_t = table_bound(row, hi);
    let inside = |t: &[u8]| t >= lo_t && hi_t.is_none_or(|h| t < h);
    for &id in runs.keys() {
        let mut taken = 0;
        let meta = meta_key(id);
        let start = match (reverse, hi_t) {
            (false, _) => chunk_at(db, id, lo_t)?.map(|(k, _)| k.to_vec()),
            (true, Some(h)) => match chunk_at(db, id, h)? {
                Some((k, _)) => Some(k.to_vec()),
                // Every chunk of this run starts above `hi`.
                None => continue,
            },
            (true, None) => None,
        };
        let lower: Bound<Vec<u8>> = match (&start, reverse) {
            (Some(k), false) => Bound::Included(k.clone()),
            _ => Bound::Excluded(meta.to_vec()),
        };
        let upper: Bound<Vec<u8>> = match (&start, reverse) {
            (Some(k), true) => Bound::Included(k.clone()),
            _ => match successor(&meta) {
                Some(s) => Bound::Excluded(s),
                None => Bound::Unbounded,
            },
        };
        let chunks = db.range((lower, upper));
        visit_in_order(chunks, reverse, |kv| -> StoreResult<bool> {
            let (_, raw) = kv?;
            let c = ChunkView::parse(&raw, width)?;
            // Chunks ascend: past the far bound nothing more of this run can be in range.
            if !reverse && hi_t.is_some_and(|h| c.min >= h) || reverse && c.max < lo_t {
                return Ok(false);
            }
            let mut more = true;
            visit_in_order(0..c.len(), reverse, |i| -> StoreResult<bool> {
                let t = c.key(i);
                if inside(t) {
                    out.push(([row, t].concat(), c.value(i)?.to_vec()));
                    taken += 1;
                }
                more = taken < limit;
                Ok(more)
            })?;
            Ok(more)
        })?;
    }
    let mut rows = Rows::new();
    merge_rows(&mut rows, out, reverse, limit);
    Ok(rows)
}

/// Write `rows` (table key, value; keys ascending) as the chunks of run `id` and its meta.
/// Returns the sled keys written.
fn write_run(
    width: usize,
    id: u64,
    rows: &[(&[u8], &[u8])],
    last: u64,
    b: &mut sled::Batch,
) -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    let mut rest = rows;
    while let Some((first, _)) = rest.first() {
        let n = format::fill(rest, width, format::CHUNK_BYTES, |(_, v)| v.len());
        let key = chunk_key(id, first);
        let part = &rest[..n];
        b.insert(
            key.as_slice(),
            format::encode(part[0].0, part[n - 1].0, part),
        );
        keys.push(key);
        rest = &rest[n..];
    }
    let meta = RunMeta {
        rows: rows.len() as u64,
        last,
    };
    b.insert(&meta_key(id)[..], &meta.to_bytes()[..]);
    keys.push(meta_key(id).to_vec());
    keys
}

/// The chunks of run `id`: (sled key, bytes), in key order.
fn chunks_of(db: &sled::Db, id: u64) -> StoreResult<Vec<(sled::IVec, sled::IVec)>> {
    let meta = meta_key(id);
    db.scan_prefix(meta)
        .filter(|kv| kv.as_ref().map_or(true, |(k, _)| k.len() != meta.len()))
        .map(|kv| kv.map_err(StoreError::from))
        .collect()
}

/// A row as a run's chunk holds it: (table key, value).
type Row<'a> = (&'a [u8], &'a [u8]);

/// Two runs' rows (each ascending, no key in both) as one ascending list.
fn merge_two<'a>(x: Vec<Row<'a>>, y: Vec<Row<'a>>) -> Vec<Row<'a>> {
    let mut out = Vec::with_capacity(x.len() + y.len());
    let (mut x, mut y) = (x.into_iter().peekable(), y.into_iter().peekable());
    while let (Some(p), Some(q)) = (x.peek(), y.peek()) {
        let next = if p.0 <= q.0 { x.next() } else { y.next() };
        out.extend(next);
    }
    out.extend(x);
    out.extend(y);
    out
}

/// Merge the newest run into the one before it while it holds at least half as many
/// rows and that one is below the cap (a chain of such merges is one merge of the
/// newest few runs). Committed rows only: nothing here needs undoing.
pub fn merge(db: &sled::Db, runs: &mut Runs, b: &mut sled::Batch) -> StoreResult<()> {
    let width = runs.width();
    let all: Vec<(u64, RunMeta)> = runs.iter().map(|(id, m)| (*id, *m)).collect();
    let Some(&(_, newest)) = all.last() else {
        return Ok(());
    };
    let mut merged = newest;
    let mut from = all.len() - 1;
    while from > 0 {
        let before = all[from - 1].1;
        if before.rows >= RUN_CAP || merged.rows * 2 < before.rows {
            break;
        }
        merged = RunMeta {
            rows: merged.rows + before.rows,
            last: merged.last.max(before.last),
        };
        from -= 1;
    }
    let chosen = &all[from..];
    if chosen.len() < 2 {
        return Ok(());
    }
    // Every chunk of the chosen runs goes; their rows come back as the chunks of the
    // first (oldest) one, whose id is the least index of them all.
    let mut raws = Vec::with_capacity(chosen.len());
    for &(id, _) in chosen {
        let chunks = chunks_of(db, id)?;
        for (k, _) in &chunks {
            b.remove(k);
        }
        b.remove(&meta_key(id)[..]);
        raws.push(chunks);
    }
    let mut rows: Vec<Row<'_>> = Vec::new();
    for chunks in &raws {
        let mut run = Vec::new();
        for (_, raw) in chunks {
            let c = ChunkView::parse(raw, width)?;
            for i in 0..c.len() {
                run.push((c.key(i), c.value(i)?));
            }
        }
        rows = merge_two(rows, run);
    }
    let id = chosen[0].0;
    for &(gone, _) in chosen {
        runs.remove(&gone);
    }
    merged.rows = rows.len() as u64;
    runs.insert(id, merged);
    write_run(width, id, &rows, merged.last, b);
    Ok(())
}

/// Add a run of `rows` (subject index rows, every index above the runs' highest), keyed
/// by their least index. Returns the sled keys written (to remove if the batch never lands).
pub fn add(runs: &mut Runs, rows: &[(&[u8], &[u8])], b: &mut sled::Batch) -> Vec<Vec<u8>> {
    if rows.is_empty() {
        return Vec::new();
    }
    let index = |k: &[u8]| runs.row_index(k).expect("a run row");
    let id = rows.iter().map(|(k, _)| index(k)).min().expect("rows");
    let last = rows.iter().map(|(k, _)| index(k)).max().expect("rows");
    let cut = runs.prefix().len();
    let mut sorted: Vec<(&[u8], &[u8])> = rows.iter().map(|(k, v)| (&k[cut..], *v)).collect();
    sorted.sort_by(|p, q| p.0.cmp(q.0));
    runs.insert(
        id,
        RunMeta {
            rows: rows.len() as u64,
            last,
        },
    );
    write_run(runs.width(), id, &sorted, last, b)
}

/// Remove the rows `keys` (subject index keys) from the runs that hold them, rewriting
/// (or removing) their chunks and updating the runs' row counts.
pub fn delete<'a>(
    db: &sled::Db,
    runs: &mut Runs,
    keys: impl IntoIterator<Item = &'a [u8]>,
    b: &mut sled::Batch,
) -> StoreResult<()> {
    // Per chunk (by sled key): its run, its bytes, the table keys to drop.
    type Edits<'a> = BTreeMap<Vec<u8>, (u64, sled::IVec, Vec<&'a [u8]>)>;
    let mut by_chunk: Edits<'a> = BTreeMap::new();
    for key in keys {
        let Some(id) = runs.row_index(key).and_then(|i| run_of(runs, i)) else {
            continue;
        };
        let table_key = &key[runs.prefix().len()..];
        if let Some((ck, raw)) = chunk_at(db, id, table_key)? {
            if ChunkView::parse(&raw, runs.width())?
                .find(table_key)?
                .is_some()
            {
                by_chunk
                    .entry(ck.to_vec())
                    .or_insert((id, raw, Vec::new()))
                    .2
                    .push(table_key);
            }
        }
    }
    for (ck, (id, raw, gone)) in by_chunk {
        let c = ChunkView::parse(&raw, runs.width())?;
        let mut kept = Vec::with_capacity(c.len());
        for i in 0..c.len() {
            if !gone.contains(&c.key(i)) {
                kept.push((c.key(i), c.value(i)?));
            }
        }
        if kept.is_empty() {
            b.remove(ck);
        } else {
            // The chunk keeps its sled key (at or below its rows, above the chunk before).
            let bytes = format::encode(kept[0].0, kept[kept.len() - 1].0, &kept);
            b.insert(ck, bytes);
        }
        let removed = (c.len() - kept.len()) as u64;
        let meta = runs
            .get_mut(&id)
            .ok_or_else(|| corrupt("a row of no run"))?;
        meta.rows = meta.rows.saturating_sub(removed);
        b.insert(&meta_key(id)[..], &meta.to_bytes()[..]);
    }
    Ok(())
}
