//! A system's activity per UTC day, derived from its decision entries: how many
//! decisions each model version made, and the human reviews by action and review time.
//! The console's charts read these rows, so a chart over 90 days is a bounded range of
//! rows at any size of the log; `reindex` derives them like every projection.
//!
//! Review times are counted in buckets (exact below 16 ms, then 16 per power of two:
//! a bucket is at most 1/16 of its lower bound wide), so a week's median is known to
//! within 3.2 % without keeping every time. Integer arithmetic only: every node and
//! every rebuild puts a time in the same bucket. Counts are not personal data: no
//! subject, input or output is in a key or a value.

use std::collections::BTreeMap;

use crate::error::AppError;
use crate::log::Staging;
use crate::register::projections::keys::{
    activity_review_key, activity_review_prefix, activity_version_key, activity_version_prefix,
};
use crate::storage::Store;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

const DAY_MICROS: u64 = 86_400_000_000;

/// The UTC day (days since 1970-01-01) of a time in unix µs.
pub fn day_of(micros: u64) -> u32 {
    (micros / DAY_MICROS) as u32
}

/// The Monday that starts the ISO week of `day` (1970-01-01 was a Thursday).
pub fn week_of(day: u32) -> u32 {
    day - (day + 3) % 7
}

/// The review-time bucket of `ms`.
pub fn bucket(ms: u64) -> u16 {
    if ms < 16 {
        return ms as u16;
    }
    let e = 63 - ms.leading_zeros(); // position of the leading 1, at least 4
    let top = (ms >> (e - 4)) & 15; // the four bits after it
    (16 + (e - 4) * 16 + top as u32) as u16
}

/// The times bucket `b` holds: `[lo, hi)` ms.
pub fn bucket_bounds(b: u16) -> (u64, u64) {
    if b < 16 {
        return (u64::from(b), u64::from(b) + 1);
    }
    let (e, top) = (u64::from(b - 16) / 16 + 4, u64::from(b - 16) % 16);
    ((16 + top) << (e - 4), (17 + top) << (e - 4))
}

fn action_code(a: OversightAction) -> u8 {
    match a {
        OversightAction::Accepted => 0,
        OversightAction::Overridden => 1,
        OversightAction::Escalated => 2,
    }
}

fn add_one(s: &mut Staging<'_>, key: Vec<u8>) -> Result<(), AppError> {
    let n = s.get(&key)?.as_deref().map_or(0, count);
    s.put(key, (n + 1).to_be_bytes().to_vec());
    Ok(())
}

fn count(v: &[u8]) -> u64 {
    v.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

/// Count one decision (and its human review, if any) on the day it occurred.
pub(crate) fn project(
    s: &mut Staging<'_>,
    system: &str,
    occurred_at: u64,
    model_version: &str,
    review: Option<(OversightAction, u64)>,
) -> Result<(), AppError> {
    let day = day_of(occurred_at);
    add_one(s, activity_version_key(system, day, model_version))?;
    if let Some((action, ms)) = review {
        add_one(
            s,
            activity_review_key(system, day, action_code(action), bucket(ms)),
        )?;
    }
    Ok(())
}

/// At most this many rows are read for one chart.
const MAX_ROWS: usize = 200_000;

fn rows_between(
    store: &dyn Store,
    prefix: Vec<u8>,
    from_day: u32,
    to_day: u32,
) -> Result<crate::storage::Rows, AppError> {
    let lo = [prefix.as_slice(), &from_day.to_be_bytes()].concat();
    let hi = [prefix.as_slice(), &(to_day + 1).to_be_bytes()].concat();
    Ok(store.range(&lo, &hi, false, MAX_ROWS)?)
}

/// The last day on which `system` made a decision, if any: one row read.
pub fn last_day(store: &dyn Store, system: &str) -> Result<Option<u32>, AppError> {
    let prefix = activity_version_prefix(system);
    let Some((k, _)) = store.scan(&prefix, None, true, 1)?.pop() else {
        return Ok(None);
    };
    Ok(k.get(prefix.len()..prefix.len() + 4)
        .map(|d| u32::from_be_bytes(d.try_into().expect("4 bytes"))))
}

/// Decisions per day and model version, for days `from_day..=to_day`.
pub fn decisions_per_day(
    store: &dyn Store,
    system: &str,
    from_day: u32,
    to_day: u32,
) -> Result<BTreeMap<u32, BTreeMap<String, u64>>, AppError> {
    let prefix = activity_version_prefix(system);
    let mut out: BTreeMap<u32, BTreeMap<String, u64>> = BTreeMap::new();
    for (k, v) in rows_between(store, prefix.clone(), from_day, to_day)? {
        let tail = &k[prefix.len()..];
        let (Some(day), Some(version)) = (tail.get(..4), tail.get(5..)) else {
            continue;
        };
        let day = u32::from_be_bytes(day.try_into().expect("4 bytes"));
        let version = String::from_utf8_lossy(version).into_owned();
        *out.entry(day).or_default().entry(version).or_default() += count(&v);
    }
    Ok(out)
}

/// One week's human oversight.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Oversight {
    /// Decisions a human reviewed.
    pub reviewed: u64,
    /// Of those, accepted as the system proposed.
    pub accepted: u64,
    /// Review times: bucket → count.
    pub times: BTreeMap<u16, u64>,
}

impl Oversight {
    /// The median review time (the lower median, as the oversight finding takes it): the
    /// middle of its bucket, exact below 16 ms.
    pub fn median_ms(&self) -> Option<u64> {
        let n: u64 = self.times.values().sum();
        if n == 0 {
            return None;
        }
        let mut seen = 0;
        for (b, c) in &self.times {
            seen += c;
            if seen > n / 2 {
                let (lo, hi) = bucket_bounds(*b);
                return Some(lo + (hi - 1 - lo) / 2);
            }
        }
        None
    }

    /// The share of reviewed decisions accepted as proposed.
    pub fn accepted_share(&self) -> Option<f64> {
        (self.reviewed > 0).then(|| self.accepted as f64 / self.reviewed as f64)
    }
}

/// Human oversight per ISO week (keyed by the week's Monday) over days
/// `from_day..=to_day`.
pub fn oversight_per_week(
    store: &dyn Store,
    system: &str,
    from_day: u32,
    to_day: u32,
) -> Result<BTreeMap<u32, Oversight>, AppError> {
    let prefix = activity_review_prefix(system);
    let mut out: BTreeMap<u32, Oversight> = BTreeMap::new();
    for (k, v) in rows_between(store, prefix.clone(), from_day, to_day)? {
        let tail = &k[prefix.len()..];
        if tail.len() != 7 {
            continue;
        }
        let day = u32::from_be_bytes(tail[..4].try_into().expect("4 bytes"));
        let (action, b) = (tail[4], u16::from_be_bytes([tail[5], tail[6]]));
        let n = count(&v);
        let w = out.entry(week_of(day)).or_default();
        w.reviewed += n;
        if action == action_code(OversightAction::Accepted) {
            w.accepted += n;
        }
        *w.times.entry(b).or_default() += n;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_time_falls_in_its_buckets_bounds() {
        for ms in (0..5000).chain([65_535, 1 << 20, 3_600_000, u64::MAX / 3]) {
            let (lo, hi) = bucket_bounds(bucket(ms));
            assert!(lo <= ms && ms < hi, "{ms} not in [{lo}, {hi})");
            assert!((hi - lo) * 16 <= lo.max(16), "bucket of {ms} too wide");
        }
    }

    #[test]
    fn buckets_are_ordered_as_the_times() {
        let mut last = 0;
        for ms in 0..100_000 {
            let b = bucket(ms);
            assert!(b >= last);
            last = b;
        }
    }

    #[test]
    fn weeks_start_on_monday() {
        // 2026-11-30 was a Monday: day 20787.
        let monday = 20787;
        for d in monday..monday + 7 {
            assert_eq!(week_of(d), monday);
        }
        assert_eq!(week_of(monday - 1), monday - 7);
    }

    #[test]
    fn the_median_is_the_lower_middle_within_its_bucket() {
        let mut o = Oversight::default();
        for ms in [10u64, 11, 12, 40_000, 41_000] {
            *o.times.entry(bucket(ms)).or_default() += 1;
        }
        assert_eq!(o.median_ms(), Some(12));
        let mut o = Oversight::default();
        for ms in [40_000u64, 40_500, 90_000] {
            *o.times.entry(bucket(ms)).or_default() += 1;
        }
        let m = o.median_ms().unwrap();
        assert!((m as f64 - 40_500.0).abs() / 40_500.0 < 0.032, "{m}");
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OversightAction {
    Accepted,
    Overridden,
    Escalated,
}
