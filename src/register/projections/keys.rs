//! Every key the register writes: projection rows and vault rows, and the
//! declaration of which of their families a storage driver may pack ([`packing`]).
//!
//! Keys are bytes: parts joined by a 0 byte (ids and versions never contain one), fixed
//! numbers big-endian so that keys sort as the numbers do. Nothing below the register
//! (the log, the storage drivers) knows these layouts; a driver learns only what
//! [`packing`] tells it, so a change here changes what it packs with it.

use sha2::{Digest, Sha256};

use crate::storage::{GroupedRows, IndexedRows, Packing, RunRows};

/// Join key parts with a 0 byte.
pub(crate) fn key(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(0);
        }
        k.extend_from_slice(p);
    }
    k
}

/// The least key above every key that starts with `prefix` (which ends in a 0
/// separator): the exclusive end of its range.
pub(crate) fn prefix_end(mut prefix: Vec<u8>) -> Vec<u8> {
    *prefix.last_mut().expect("prefix ends in a separator") += 1;
    prefix
}

/// `parts` joined, with a closing 0: the prefix of every key that extends them.
fn prefix(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = key(parts);
    k.push(0);
    k
}

// --- The register's projection rows ---

pub(crate) fn system_key(id: &str) -> Vec<u8> {
    key(&[b"sys", id.as_bytes()])
}

pub(crate) fn revision_key(id: &str, rev: u32) -> Vec<u8> {
    key(&[b"sysrev", id.as_bytes(), &rev.to_be_bytes()])
}

pub(crate) fn revision_prefix(id: &str) -> Vec<u8> {
    prefix(&[b"sysrev", id.as_bytes()])
}

pub(crate) fn version_key(system: &str, version: &str) -> Vec<u8> {
    key(&[b"mv", system.as_bytes(), version.as_bytes()])
}

pub(crate) fn version_prefix(system: &str) -> Vec<u8> {
    prefix(&[b"mv", system.as_bytes()])
}

pub(crate) fn test_key(system: &str, version: &str, id: u64) -> Vec<u8> {
    key(&[
        b"test",
        system.as_bytes(),
        version.as_bytes(),
        &id.to_be_bytes(),
    ])
}

pub(crate) fn test_prefix(system: &str, version: &str) -> Vec<u8> {
    prefix(&[b"test", system.as_bytes(), version.as_bytes()])
}

/// A decision by its caller-chosen id (idempotency).
pub(crate) fn id_key(system: &str, decision_id: &str) -> Vec<u8> {
    key(&[b"dec", system.as_bytes(), decision_id.as_bytes()])
}

/// The prefix of every trail row: the trail family the sled driver packs.
const TRAIL: &[u8] = b"trail\0";
/// A trail row's tail after its system: occurred_at ‖ index.
const TRAIL_SUFFIX: usize = 16;

/// The trail of one system: `trail ‖ 0 ‖ system ‖ 0`.
pub(crate) fn trail_prefix(system: &str) -> Vec<u8> {
    [TRAIL, system.as_bytes(), &[0]].concat()
}

/// A system's decision trail, in time order: `trail ‖ 0 ‖ system ‖ 0 ‖ occurred_at ‖ index`.
pub fn trail_key(system: &str, occurred_at: u64, index: u64) -> Vec<u8> {
    let mut k = trail_prefix(system);
    k.extend_from_slice(&occurred_at.to_be_bytes());
    k.extend_from_slice(&index.to_be_bytes());
    k
}

// --- The decision evidence of the failure modes FM-02, FM-03, FM-05 and FM-07 ---

/// What the failure-mode report needs of one decision of a version, by log index, in
/// the trail family (so a driver packs it with the trail rows): the group
/// `trail ‖ 0 ‖ system ‖ 1 ‖ version ‖ 0` (above the system's own trail group, whose
/// separator is 0), then `index ‖ 0⁸` as the suffix. The latest `window` of a version
/// are one range.
pub(crate) fn evidence_key(system: &str, version: &str, index: u64) -> Vec<u8> {
    let mut k = evidence_prefix(system, version);
    k.extend_from_slice(&index.to_be_bytes());
    k.extend_from_slice(&[0; 8]);
    k
}

pub(crate) fn evidence_prefix(system: &str, version: &str) -> Vec<u8> {
    [TRAIL, system.as_bytes(), &[1], version.as_bytes(), &[0]].concat()
}

/// A boundary event (an integration failure that produced no decision), by log index:
/// `bnd ‖ 0 ‖ system ‖ 0 ‖ index`.
pub(crate) fn boundary_key(system: &str, index: u64) -> Vec<u8> {
    key(&[b"bnd", system.as_bytes(), &index.to_be_bytes()])
}

pub(crate) fn boundary_prefix(system: &str) -> Vec<u8> {
    prefix(&[b"bnd", system.as_bytes()])
}

/// An open blind-review case, by its decision's log index: `blq ‖ 0 ‖ system ‖ 0 ‖ index`.
pub(crate) fn blind_case_key(system: &str, index: u64) -> Vec<u8> {
    key(&[b"blq", system.as_bytes(), &index.to_be_bytes()])
}

pub(crate) fn blind_case_prefix(system: &str) -> Vec<u8> {
    prefix(&[b"blq", system.as_bytes()])
}

/// The blind judgment of a decision: `blj ‖ 0 ‖ system ‖ 0 ‖ decision index`.
pub(crate) fn judgment_key(system: &str, index: u64) -> Vec<u8> {
    key(&[b"blj", system.as_bytes(), &index.to_be_bytes()])
}

// --- A system's activity per UTC day (the console's charts) ---

/// Decisions by one model version on one day: `actv ‖ 0 ‖ system ‖ 0 ‖ day ‖ 0 ‖ version`.
pub(crate) fn activity_version_key(system: &str, day: u32, version: &str) -> Vec<u8> {
    key(&[
        b"actv",
        system.as_bytes(),
        &day.to_be_bytes(),
        version.as_bytes(),
    ])
}

pub(crate) fn activity_version_prefix(system: &str) -> Vec<u8> {
    prefix(&[b"actv", system.as_bytes()])
}

/// Human reviews of one day by action and review-time bucket:
/// `acth ‖ 0 ‖ system ‖ 0 ‖ day ‖ action ‖ bucket` (bucket big-endian u16).
pub(crate) fn activity_review_key(system: &str, day: u32, action: u8, bucket: u16) -> Vec<u8> {
    let mut k = activity_review_prefix(system);
    k.extend_from_slice(&day.to_be_bytes());
    k.push(action);
    k.extend_from_slice(&bucket.to_be_bytes());
    k
}

pub(crate) fn activity_review_prefix(system: &str) -> Vec<u8> {
    prefix(&[b"acth", system.as_bytes()])
}

// --- The vault's rows ---

const DECISION: &[u8] = b"d/";
const SUBJECT: &[u8] = b"s/";
const EXPIRY: &[u8] = b"x/";

/// A decision's openings (values and salts): `d/ ‖ index`.
pub fn decision_key(index: u64) -> Vec<u8> {
    [DECISION, &index.to_be_bytes()[..]].concat()
}

/// The subject index key: a digest of the subject reference (the index lives in the vault).
pub fn subject_digest(subject_ref: &str) -> [u8; 32] {
    Sha256::digest(subject_ref.as_bytes()).into()
}

/// The subject index key: `s/ ‖ SHA-256(subject_ref) ‖ occurred_at ‖ index` (both
/// big-endian), so a subject's decisions are one range in time order, and a page of
/// them, or of one system's decisions about them, is a range read.
pub fn subject_key(subject_ref: &str, occurred_at: u64, index: u64) -> Vec<u8> {
    let mut k = subject_prefix(subject_ref);
    k.extend_from_slice(&occurred_at.to_be_bytes());
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// (occurred_at, index) of a subject index key.
pub(crate) fn subject_position(key: &[u8]) -> Option<(u64, u64)> {
    let tail = key.get(key.len().checked_sub(16)?..)?;
    Some((
        u64::from_be_bytes(tail[..8].try_into().ok()?),
        u64::from_be_bytes(tail[8..].try_into().ok()?),
    ))
}

pub(crate) fn subject_prefix(subject_ref: &str) -> Vec<u8> {
    [SUBJECT, &subject_digest(subject_ref)[..]].concat()
}

/// The expiry index: when a decision's personal data may be shredded:
/// `x/ ‖ expires_at ‖ index`.
pub fn expiry_key(expires_at: u64, index: u64) -> Vec<u8> {
    [
        EXPIRY,
        &expires_at.to_be_bytes()[..],
        &index.to_be_bytes()[..],
    ]
    .concat()
}

/// Every expiry row.
pub(crate) fn expiry_prefix() -> &'static [u8] {
    EXPIRY
}

const TEXT: &[u8] = b"t/";

/// The free text a person wrote about a decision's subject (an outcome's `note`, a
/// contest's `grounds`), opened: `t/ ‖ decision index ‖ entry index`, so erasing the
/// decision's personal data erases them with it.
pub fn text_key(decision: u64, entry: u64) -> Vec<u8> {
    [TEXT, &decision.to_be_bytes()[..], &entry.to_be_bytes()[..]].concat()
}

/// Every text row about decision `decision`.
pub fn text_prefix(decision: u64) -> Vec<u8> {
    [TEXT, &decision.to_be_bytes()[..]].concat()
}

/// The row families written once per decision, which a driver whose cost is per key
/// may pack: the trail (a system's rows arrive in time order, a version's evidence rows
/// in log order), the decisions' openings
/// (by index) and the expiry index (by time, then index) in the vault, and the subject
/// index (keys anywhere: kept as runs).
pub fn packing() -> Packing {
    Packing {
        grouped: Some(GroupedRows {
            prefix: TRAIL,
            suffix: TRAIL_SUFFIX,
        }),
        indexed: vec![
            IndexedRows {
                prefix: DECISION,
                key_len: DECISION.len() + 8,
                sorts_by_index: true,
            },
            IndexedRows {
                prefix: EXPIRY,
                key_len: EXPIRY.len() + 8 + 8,
                sorts_by_index: false,
            },
        ],
        runs: Some(RunRows {
            prefix: SUBJECT,
            key_len: SUBJECT.len() + 32 + 8 + 8,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_declared_families_match_the_keys_written() {
        let p = packing();
        let g = p.grouped.unwrap();
        let trail = trail_key("sys", 7, 9);
        assert!(trail.starts_with(g.prefix));
        assert_eq!(trail.len(), trail_prefix("sys").len() + g.suffix);
        let by_layout = [
            (decision_key(3), &p.indexed[0]),
            (expiry_key(5, 3), &p.indexed[1]),
        ];
        for (k, family) in by_layout {
            assert!(k.starts_with(family.prefix));
            assert_eq!(k.len(), family.key_len);
            assert_eq!(k[k.len() - 8..], 3u64.to_be_bytes());
        }
        // The evidence rows are of the trail family, in a group of their own that no
        // trail range of the system meets.
        let e = evidence_key("sys", "1.0", 9);
        assert!(e.starts_with(g.prefix));
        assert_eq!(e.len(), evidence_prefix("sys", "1.0").len() + g.suffix);
        let mut end = trail_prefix("sys");
        *end.last_mut().unwrap() += 1;
        assert!(e >= end);
        let runs = p.runs.unwrap();
        let s = subject_key("someone", 5, 3);
        assert!(s.starts_with(runs.prefix));
        assert_eq!(s.len(), runs.key_len);
        assert_eq!(subject_position(&s), Some((5, 3)));
    }
}
