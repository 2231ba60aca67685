//! Reading decisions back: a system's trail by time of decision (filtered by version and
//! by label), and a subject's decisions through the vault's subject index.

use crate::error::AppError;
use crate::register::projections::decisions::{SubjectRow, TrailRow};
use crate::register::projections::keys::{trail_key, trail_prefix};
use crate::register::projections::{keys, outcomes};
use crate::storage::Store;

/// What a decision trail is filtered by.
#[derive(Debug, Clone, Default)]
pub struct TrailFilter {
    pub model_version: Option<String>,
    /// Only decisions about this subject (through the vault's subject index).
    pub subject: Option<String>,
    /// occurred_at bounds, unix µs, inclusive.
    pub from: Option<u64>,
    pub to: Option<u64>,
    /// Only decisions whose output's canonical JSON has this digest.
    pub outcome: Option<Vec<u8>>,
    /// Only decisions with (`true`) or without (`false`) an outcome recorded.
    pub labelled: Option<bool>,
    pub newest_first: bool,
    /// Continue after this (occurred_at, index).
    pub after: Option<(u64, u64)>,
    pub limit: usize,
}

/// Whether the decision at `index` passes the `labelled` filter.
fn labelled_as(
    store: &dyn Store,
    system: &str,
    index: u64,
    labelled: Option<bool>,
) -> Result<bool, AppError> {
    let Some(want) = labelled else {
        return Ok(true);
    };
    let has = outcomes::truth(store, system, index)?.is_some_and(|t| !t.outcomes.is_empty());
    Ok(has == want)
}

/// A position in a trail: (occurred_at, entry index).
pub type TrailPosition = (u64, u64);

/// Rows scanned at most for one page (filters that match rarely stop here, with a cursor).
const MAX_SCAN: usize = 100_000;

/// One page of a system's decision trail, from the trail index (never the log):
/// the entry indices and, unless the trail is exhausted, where the next page starts.
pub fn trail(
    store: &dyn Store,
    system: &str,
    f: &TrailFilter,
) -> Result<(Vec<u64>, Option<TrailPosition>), AppError> {
    let prefix = trail_prefix(system);
    let bound = |t: u64| {
        let mut k = prefix.clone();
        k.extend_from_slice(&t.to_be_bytes());
        k
    };
    let mut lo = f.from.map(bound).unwrap_or_else(|| prefix.clone());
    let mut hi = match f.to.and_then(|t| t.checked_add(1)) {
        Some(t) => bound(t),
        None => keys::prefix_end(prefix.clone()),
    };
    if let Some((t, i)) = f.after {
        let mut k = bound(t);
        k.extend_from_slice(&i.to_be_bytes());
        if f.newest_first {
            hi = hi.min(k);
        } else {
            k.push(0);
            lo = lo.max(k);
        }
    }
    if let Some(sub) = &f.subject {
        return subject_trail(store, system, sub, f);
    }
    let mut out = Vec::new();
    let mut scanned = 0usize;
    let mut last: Option<(u64, u64)> = None;
    while out.len() < f.limit && scanned < MAX_SCAN {
        let rows = store.range(&lo, &hi, f.newest_first, (f.limit * 2).max(64))?;
        if rows.is_empty() {
            return Ok((out, None));
        }
        for (k, v) in &rows {
            scanned += 1;
            let tail = &k[prefix.len()..];
            let occurred = u64::from_be_bytes(tail[..8].try_into().map_err(AppError::internal)?);
            let row: TrailRow = crate::register::uncbor(v)?;
            last = Some((occurred, row.index));
            let keep = f
                .model_version
                .as_ref()
                .is_none_or(|m| *m == row.model_version)
                && f.outcome.as_ref().is_none_or(|o| *o == row.output_digest)
                && labelled_as(store, system, row.index, f.labelled)?;
            if keep {
                out.push(row.index);
                if out.len() == f.limit {
                    break;
                }
            }
        }
        let (lk, _) = rows.last().expect("non-empty");
        if out.len() < f.limit {
            if f.newest_first {
                hi = lk.clone();
            } else {
                lo = lk.clone();
                lo.push(0);
            }
        }
    }
    Ok((out, last))
}

/// A trail filtered by subject: a range of the subject's index in the vault (its keys
/// are ordered by time of decision), bounded by the time filter and the cursor, each
/// row of this system checked against its trail row. A page reads its own rows (and
/// the subject's rows in other systems in between), never the whole subject.
fn subject_trail(
    store: &dyn Store,
    system: &str,
    subject: &str,
    f: &TrailFilter,
) -> Result<(Vec<u64>, Option<TrailPosition>), AppError> {
    let prefix = keys::subject_prefix(subject);
    let at = |t: u64, i: u64| [prefix.as_slice(), &t.to_be_bytes(), &i.to_be_bytes()].concat();
    let mut lo = at(f.from.unwrap_or(0), 0);
    let mut hi = match f.to.and_then(|t| t.checked_add(1)) {
        Some(t) => at(t, 0),
        None => [prefix.as_slice(), &[0xff; 17]].concat(),
    };
    if let Some((t, i)) = f.after {
        if f.newest_first {
            hi = hi.min(at(t, i));
        } else {
            let mut k = at(t, i);
            k.push(0);
            lo = lo.max(k);
        }
    }
    let mut out = Vec::new();
    let mut scanned = 0usize;
    // A subject's rows are mostly of one system: a page usually takes one read.
    let chunk = f.limit + 1;
    let mut last = None;
    // Trail rows are read only for the filters that need them.
    let check_rows = f.model_version.is_some() || f.outcome.is_some() || f.labelled.is_some();
    while lo < hi && scanned < MAX_SCAN {
        let rows = store.vault_range(&lo, &hi, f.newest_first, chunk)?;
        let exhausted = rows.len() < chunk;
        for (k, v) in &rows {
            scanned += 1;
            let pos = keys::subject_position(k)
                .ok_or_else(|| AppError::internal("malformed subject index key"))?;
            last = Some(pos);
            if f.newest_first {
                hi = k.clone();
            } else {
                lo = k.clone();
                lo.push(0);
            }
            if crate::register::uncbor::<SubjectRow>(v)?.system != system {
                continue;
            }
            let keep = !check_rows || {
                match store.get(&trail_key(system, pos.0, pos.1))? {
                    Some(raw) => {
                        let row: TrailRow = crate::register::uncbor(&raw)?;
                        f.model_version
                            .as_ref()
                            .is_none_or(|m| *m == row.model_version)
                            && f.outcome.as_ref().is_none_or(|o| *o == row.output_digest)
                            && labelled_as(store, system, pos.1, f.labelled)?
                    }
                    None => false,
                }
            };
            if keep {
                out.push(pos.1);
                if out.len() == f.limit {
                    return Ok((out, Some(pos)));
                }
            }
        }
        if exhausted {
            return Ok((out, None));
        }
    }
    // Stopped at the scan bound: the cursor says where to go on.
    Ok((out, last))
}

/// A page of a subject's decisions: (entry index, system) of each, and where the next
/// page starts unless this one is the last.
pub type SubjectPage = (Vec<(u64, String)>, Option<TrailPosition>);

/// Every decision about one data subject, across systems, in order of the time of
/// decision (then of recording): the (index, system) of each after the cursor
/// position, at most `limit`, and the next cursor position when more follow.
pub fn by_subject(
    store: &dyn Store,
    subject_ref: &str,
    after: Option<TrailPosition>,
    limit: usize,
) -> Result<SubjectPage, AppError> {
    // Keys are the subject's prefix, time and entry index: read only this page (and one
    // more row, to know whether another page follows).
    let prefix = keys::subject_prefix(subject_ref);
    let lo = match after {
        Some((t, i)) => [prefix.as_slice(), &t.to_be_bytes(), &i.to_be_bytes(), &[0]].concat(),
        None => prefix.clone(),
    };
    let hi = [prefix.as_slice(), &[0xff; 17]].concat();
    let mut rows = store.vault_range(&lo, &hi, false, limit + 1)?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let mut out = Vec::with_capacity(rows.len());
    let mut last = None;
    for (k, v) in rows {
        let pos = keys::subject_position(&k)
            .ok_or_else(|| AppError::internal("malformed subject index key"))?;
        let row: SubjectRow = crate::register::uncbor(&v)?;
        out.push((pos.1, row.system));
        last = Some(pos);
    }
    Ok((out, if more { last } else { None }))
}
