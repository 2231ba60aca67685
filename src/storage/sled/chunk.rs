//! The byte format of a chunk: many rows kept as one sled value, sliced without decoding
//! the rest. The sled backend packs rows written once and in order this way (the vault's
//! decision and expiry rows, see vault_store; the trail index, see trail_chunks) and
//! the subject index's runs (see vault_runs).
//!
//! Layout: the least and greatest row keys the chunk holds (each `u16 length ‖ key`),
//! `u32 count`, `count × (table key, u32 end offset)`, then the values back to back. A
//! table key is a fixed-width part of the row key that orders the rows (a chunk kind
//! picks the width); table keys ascend. Integers big-endian.

use crate::storage::{StoreError, StoreResult};

/// A chunk is closed once its rows reach this many bytes. sled keeps up to 16 values in
/// a leaf and writes a leaf above 128 KiB to a file of its own, rewritten as the leaf
/// changes: chunks stay small enough for a leaf of them to fit below that.
pub const CHUNK_BYTES: usize = 7 << 10;

fn corrupt() -> StoreError {
    StoreError::Corrupt("malformed chunk".into())
}

/// A chunk of `rows` (`(table key, value)`, table keys ascending and all `width` long)
/// whose row keys range from `min` to `max`.
pub fn encode(min: &[u8], max: &[u8], rows: &[(&[u8], &[u8])]) -> Vec<u8> {
    let width = rows.first().map_or(0, |(k, _)| k.len());
    let body: usize = rows.iter().map(|(_, v)| v.len()).sum();
    let mut out = Vec::with_capacity(8 + min.len() + max.len() + (width + 4) * rows.len() + body);
    for k in [min, max] {
        out.extend_from_slice(&(k.len() as u16).to_be_bytes());
        out.extend_from_slice(k);
    }
    out.extend_from_slice(&(rows.len() as u32).to_be_bytes());
    let mut end = 0u32;
    for (k, v) in rows {
        debug_assert_eq!(k.len(), width);
        end += v.len() as u32;
        out.extend_from_slice(k);
        out.extend_from_slice(&end.to_be_bytes());
    }
    for (_, v) in rows {
        out.extend_from_slice(v);
    }
    out
}

/// How many rows fit a chunk of about `cap` bytes, from the front of `rows` (at least
/// one): each costs its value and its table entry.
pub fn fill<T>(rows: &[T], width: usize, cap: usize, value_len: impl Fn(&T) -> usize) -> usize {
    let mut bytes = 0;
    rows.iter()
        .take_while(|r| {
            let open = bytes == 0 || bytes + width + 4 + value_len(r) <= cap;
            bytes += width + 4 + value_len(r);
            open
        })
        .count()
}

/// A parsed chunk, borrowing its bytes.
pub struct ChunkView<'a> {
    pub min: &'a [u8],
    pub max: &'a [u8],
    count: usize,
    width: usize,
    table: &'a [u8],
    values: &'a [u8],
}

fn key_at(raw: &[u8], at: usize) -> StoreResult<(&[u8], usize)> {
    let n = raw.get(at..at + 2).ok_or_else(corrupt)?;
    let n = u16::from_be_bytes([n[0], n[1]]) as usize;
    Ok((raw.get(at + 2..at + 2 + n).ok_or_else(corrupt)?, at + 2 + n))
}

impl<'a> ChunkView<'a> {
    /// Parse a chunk whose table keys are `width` bytes.
    pub fn parse(raw: &'a [u8], width: usize) -> StoreResult<Self> {
        let (min, at) = key_at(raw, 0)?;
        let (max, at) = key_at(raw, at)?;
        let n = raw.get(at..at + 4).ok_or_else(corrupt)?;
        let count = u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize;
        let entries = (width + 4) * count;
        let table = raw.get(at + 4..at + 4 + entries).ok_or_else(corrupt)?;
        Ok(Self {
            min,
            max,
            count,
            width,
            table,
            values: &raw[at + 4 + entries..],
        })
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The table key of row `i`.
    pub fn key(&self, i: usize) -> &'a [u8] {
        let at = (self.width + 4) * i;
        &self.table[at..at + self.width]
    }

    fn end(&self, i: usize) -> usize {
        let at = (self.width + 4) * i + self.width;
        let e = &self.table[at..at + 4];
        u32::from_be_bytes([e[0], e[1], e[2], e[3]]) as usize
    }

    /// The value of row `i`.
    pub fn value(&self, i: usize) -> StoreResult<&'a [u8]> {
        let start = if i == 0 { 0 } else { self.end(i - 1) };
        self.values.get(start..self.end(i)).ok_or_else(corrupt)
    }

    /// The value of the row with table key `key`, if the chunk holds it (binary search).
    pub fn find(&self, key: &[u8]) -> StoreResult<Option<&'a [u8]>> {
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.key(mid).cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return self.value(mid).map(Some),
            }
        }
        Ok(None)
    }

    /// Every row as `(table key, value)`, in order.
    pub fn rows(&self) -> StoreResult<Vec<(&'a [u8], &'a [u8])>> {
        (0..self.count)
            .map(|i| Ok((self.key(i), self.value(i)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_come_back_by_position_and_by_key() {
        let keys: Vec<[u8; 8]> = (0..40u64).map(|i| (i * 3).to_be_bytes()).collect();
        let vals: Vec<Vec<u8>> = (0..40).map(|i| vec![i as u8; i]).collect();
        let rows: Vec<(&[u8], &[u8])> = keys
            .iter()
            .zip(&vals)
            .map(|(k, v)| (&k[..], v.as_slice()))
            .collect();
        let raw = encode(b"lo", b"hi", &rows);
        let c = ChunkView::parse(&raw, 8).unwrap();
        assert_eq!((c.min, c.max, c.len()), (&b"lo"[..], &b"hi"[..], 40));
        assert_eq!(c.rows().unwrap(), rows);
        for (k, v) in &rows {
            assert_eq!(c.find(k).unwrap(), Some(*v));
        }
        assert_eq!(c.find(&4u64.to_be_bytes()).unwrap(), None);
        assert!(ChunkView::parse(&raw[..raw.len() / 2], 8)
            .and_then(|c| c.rows())
            .is_err());
        assert_eq!(fill(&vals, 8, 100, |v| v.len()), 6);
    }
}
