//! The outcome windows of each model version: exact integer sums over its labelled
//! decisions, kept as projections in the batch that appends each outcome, so the
//! failure-mode figures are read, never recomputed by scanning decisions.
//!
//! A version's labelled decisions get a *position* in the order their first outcome was
//! recorded (a correction replaces the decision's record at its position). The window is
//! the latest `window` positions, the baseline the first `window` (it never moves once
//! full; the two overlap until twice `window` exist). Each record is kept by position,
//! so the one leaving the window is subtracted as the next comes in. A snapshot of the
//! sums is kept per outcome, keyed by time, for `?at=`.
//!
//! Confidence is summed at 12 decimal places, metrics at 9 (rounded half away from zero
//! beyond): integers only, so every node and every rebuild sums alike, byte for byte.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::AppError;
use crate::log::Staging;
use crate::register::projections::keys::key;
use crate::register::{cbor_packed, get, uncbor};
use crate::storage::Store;

/// 10^12: a confidence of 1 at [`crate::register::projections::decisions::CONFIDENCE_PLACES`].
pub const CONFIDENCE_ONE: i128 = 1_000_000_000_000;
/// A confidence of 0.9 and above is "high" (the high-confidence-wrong share).
pub const HIGH_CONFIDENCE: i64 = 900_000_000_000;
/// Confidence bins of the calibration error.
pub const BINS: usize = 10;

/// A signed 256-bit integer (two's complement, four 64-bit limbs, least significant
/// first): the sums of squares and products, which outgrow 128 bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wide([u64; 4]);

impl Wide {
    pub fn from_i128(v: i128) -> Self {
        let ext = if v < 0 { u64::MAX } else { 0 };
        Wide([v as u64, (v >> 64) as u64, ext, ext])
    }

    pub fn negative(&self) -> bool {
        self.0[3] >> 63 == 1
    }

    /// The magnitude's limbs times a small factor's, both taken as unsigned.
    fn mul_unsigned(a: [u64; 4], b: [u64; 4]) -> [u64; 4] {
        let mut out = [0u64; 4];
        for i in 0..4 {
            let mut carry: u128 = 0;
            for j in 0..4 - i {
                let cur = u128::from(out[i + j]) + u128::from(a[i]) * u128::from(b[j]) + carry;
                out[i + j] = cur as u64;
                carry = cur >> 64;
            }
        }
        out
    }

    pub fn to_f64(self) -> f64 {
        if self.negative() {
            let magnitude = -self;
            if magnitude.negative() {
                return -(2f64.powi(255)); // -2^255 is its own negation
            }
            return -magnitude.to_f64();
        }
        self.0
            .iter()
            .rev()
            .fold(0.0, |acc, l| acc * 18_446_744_073_709_551_616.0 + *l as f64)
    }

    fn to_bytes(self) -> [u8; 32] {
        let mut b = [0u8; 32];
        for (i, l) in self.0.iter().rev().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&l.to_be_bytes());
        }
        b
    }

    fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != 32 {
            return None;
        }
        let mut l = [0u64; 4];
        for (i, limb) in l.iter_mut().rev().enumerate() {
            *limb = u64::from_be_bytes(b[i * 8..i * 8 + 8].try_into().ok()?);
        }
        Some(Wide(l))
    }
}

impl Ord for Wide {
    fn cmp(&self, o: &Wide) -> std::cmp::Ordering {
        // Of one sign, two's complement orders as the unsigned limbs do.
        o.negative()
            .cmp(&self.negative())
            .then_with(|| self.0.iter().rev().cmp(o.0.iter().rev()))
    }
}

impl PartialOrd for Wide {
    fn partial_cmp(&self, o: &Wide) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl std::ops::Add for Wide {
    type Output = Wide;
    fn add(self, o: Wide) -> Wide {
        let mut out = [0u64; 4];
        let mut carry = false;
        for (i, limb) in out.iter_mut().enumerate() {
            let (a, c1) = self.0[i].overflowing_add(o.0[i]);
            let (b, c2) = a.overflowing_add(u64::from(carry));
            *limb = b;
            carry = c1 || c2;
        }
        Wide(out)
    }
}

impl std::ops::Neg for Wide {
    type Output = Wide;
    fn neg(self) -> Wide {
        Wide(self.0.map(|l| !l)) + Wide::from_i128(1)
    }
}

impl std::ops::Sub for Wide {
    type Output = Wide;
    fn sub(self, o: Wide) -> Wide {
        self + -o
    }
}

/// The product (exact while it fits 255 bits).
impl std::ops::Mul for Wide {
    type Output = Wide;
    fn mul(self, o: Wide) -> Wide {
        let (sa, sb) = (self.negative(), o.negative());
        let a = if sa { -self } else { self };
        let b = if sb { -o } else { o };
        let p = Wide(Wide::mul_unsigned(a.0, b.0));
        if sa != sb {
            -p
        } else {
            p
        }
    }
}

impl Serialize for Wide {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serde_bytes::Bytes::new(&self.to_bytes()).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Wide {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let b = serde_bytes::ByteBuf::deserialize(d)?;
        Wide::from_bytes(&b).ok_or_else(|| serde::de::Error::custom("a wide sum is 32 bytes"))
    }
}

/// One labelled decision as the windows count it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The decision's entry index.
    pub decision: u64,
    /// The entry of the decision's first outcome (which gave it its position).
    pub outcome: u64,
    /// The prediction equals the label and no contest overturned the decision.
    pub correct: bool,
    pub overturned: bool,
    /// At 12 decimal places.
    pub confidence: Option<i64>,
    /// (name, value at 9 decimal places).
    pub proxy: Vec<(String, i64)>,
    pub business: Vec<(String, i64)>,
}

/// A sum of one metric.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sum {
    pub n: u64,
    pub sum: Wide,
}

/// The sums Pearson's r of one (proxy, business) pair needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairSums {
    pub n: u64,
    pub sx: Wide,
    pub sy: Wide,
    pub sxx: Wide,
    pub syy: Wide,
    pub sxy: Wide,
}

impl PairSums {
    /// Pearson's r, from the exact sums: null with fewer than two records or zero variance.
    pub fn r(&self) -> Option<f64> {
        if self.n < 2 {
            return None;
        }
        let n = Wide::from_i128(i128::from(self.n));
        let cov = n * self.sxy - self.sx * self.sy;
        let vx = n * self.sxx - self.sx * self.sx;
        let vy = n * self.syy - self.sy * self.sy;
        let (vx, vy) = (vx.to_f64(), vy.to_f64());
        if vx <= 0.0 || vy <= 0.0 {
            return None;
        }
        Some((cov.to_f64() / (vx.sqrt() * vy.sqrt())).clamp(-1.0, 1.0))
    }
}

/// Counts and sums of one confidence bin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bin {
    pub n: u64,
    pub correct: u64,
    /// Σ confidence at 12 places.
    pub confidence: Wide,
}

/// The exact sums over a set of records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Labelled decisions.
    pub n: u64,
    pub correct: u64,
    pub overturned: u64,
    /// Records with a confidence.
    pub confident: u64,
    /// Σ confidence (12 places).
    pub confidence: Wide,
    /// Σ (confidence − [correct])² (24 places).
    pub brier: Wide,
    /// Wrong with confidence ≥ 0.9.
    pub high_confidence_wrong: u64,
    pub bins: Vec<Bin>,
    pub proxy: BTreeMap<String, Sum>,
    pub business: BTreeMap<String, Sum>,
    /// Keyed `proxy ‖ 0 ‖ business`.
    pub pairs: BTreeMap<String, PairSums>,
    /// The first and last position counted.
    pub first: Option<u64>,
    pub last: Option<u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            n: 0,
            correct: 0,
            overturned: 0,
            confident: 0,
            confidence: Wide::default(),
            brier: Wide::default(),
            high_confidence_wrong: 0,
            bins: vec![Bin::default(); BINS],
            proxy: BTreeMap::new(),
            business: BTreeMap::new(),
            pairs: BTreeMap::new(),
            first: None,
            last: None,
        }
    }
}

/// The confidence bin of a confidence at 12 places: min(⌊c·10⌋, 9).
pub fn bin_of(c: i64) -> usize {
    ((i128::from(c) * BINS as i128 / CONFIDENCE_ONE).clamp(0, BINS as i128 - 1)) as usize
}

fn step(n: &mut u64, add: bool) {
    if add {
        *n += 1
    } else {
        *n -= 1
    }
}

fn acc(w: &mut Wide, v: i128, add: bool) {
    let v = Wide::from_i128(v);
    *w = if add { *w + v } else { *w - v };
}

fn acc_wide(w: &mut Wide, v: Wide, add: bool) {
    *w = if add { *w + v } else { *w - v };
}

impl Stats {
    /// Count `r` in (`add`) or out of these sums.
    fn apply(&mut self, r: &Record, add: bool) {
        step(&mut self.n, add);
        if r.correct {
            step(&mut self.correct, add);
        }
        if r.overturned {
            step(&mut self.overturned, add);
        }
        if let Some(c) = r.confidence {
            step(&mut self.confident, add);
            acc(&mut self.confidence, i128::from(c), add);
            let miss = i128::from(c) - if r.correct { CONFIDENCE_ONE } else { 0 };
            let m = Wide::from_i128(miss);
            acc_wide(&mut self.brier, m * m, add);
            if c >= HIGH_CONFIDENCE && !r.correct {
                step(&mut self.high_confidence_wrong, add);
            }
            let b = &mut self.bins[bin_of(c)];
            step(&mut b.n, add);
            if r.correct {
                step(&mut b.correct, add);
            }
            acc(&mut b.confidence, i128::from(c), add);
        }
        for (map, values) in [
            (&mut self.proxy, &r.proxy),
            (&mut self.business, &r.business),
        ] {
            for (name, v) in values {
                let s = map.entry(name.clone()).or_default();
                step(&mut s.n, add);
                acc(&mut s.sum, i128::from(*v), add);
                if s.n == 0 {
                    map.remove(name);
                }
            }
        }
        for (p, x) in &r.proxy {
            for (b, y) in &r.business {
                let name = format!("{p}\0{b}");
                let s = self.pairs.entry(name.clone()).or_default();
                let (x, y) = (i128::from(*x), i128::from(*y));
                step(&mut s.n, add);
                acc(&mut s.sx, x, add);
                acc(&mut s.sy, y, add);
                let (wx, wy) = (Wide::from_i128(x), Wide::from_i128(y));
                acc_wide(&mut s.sxx, wx * wx, add);
                acc_wide(&mut s.syy, wy * wy, add);
                acc_wide(&mut s.sxy, wx * wy, add);
                if s.n == 0 {
                    self.pairs.remove(&name);
                }
            }
        }
    }
}

/// A version's windows: the sums of its latest `window` positions and of its first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Windows {
    /// The window size the sums are over.
    pub window: u32,
    /// Positions given so far.
    pub count: u64,
    pub current: Stats,
    pub baseline: Stats,
    /// The decision entries of the window's first and last records.
    pub first_decision: Option<u64>,
    pub last_decision: Option<u64>,
    /// The first outcome entries of the window's first and last records: the window is
    /// the version's labelled decisions whose first outcome lies in this range.
    pub first_outcome: Option<u64>,
    pub last_outcome: Option<u64>,
    /// The entry that last changed these sums, and its time.
    pub updated_index: u64,
    pub updated_time: u64,
}

impl Windows {
    fn new(window: u32) -> Self {
        Windows {
            window,
            count: 0,
            current: Stats::default(),
            baseline: Stats::default(),
            first_decision: None,
            last_decision: None,
            first_outcome: None,
            last_outcome: None,
            updated_index: 0,
            updated_time: 0,
        }
    }

    fn window_start(&self) -> u64 {
        self.count.saturating_sub(u64::from(self.window))
    }
}

fn windows_key(system: &str, version: &str) -> Vec<u8> {
    key(&[b"gtw", system.as_bytes(), version.as_bytes()])
}

fn history_prefix(system: &str, version: &str) -> Vec<u8> {
    let mut k = key(&[b"gth", system.as_bytes(), version.as_bytes()]);
    k.push(0);
    k
}

/// A snapshot of a version's windows after the batch written at `time`:
/// `gth ‖ system ‖ version ‖ 0 ‖ time` (a batch's entries share its time, so the last
/// change of a batch overwrites the earlier ones: one snapshot per batch).
fn history_key(system: &str, version: &str, time: u64) -> Vec<u8> {
    let mut k = history_prefix(system, version);
    k.extend_from_slice(&time.to_be_bytes());
    k
}

fn record_key(system: &str, version: &str, position: u64) -> Vec<u8> {
    key(&[
        b"gtr",
        system.as_bytes(),
        version.as_bytes(),
        &position.to_be_bytes(),
    ])
}

fn record_at(s: &Staging<'_>, system: &str, version: &str, p: u64) -> Result<Record, AppError> {
    get(s, &record_key(system, version, p))?
        .ok_or_else(|| AppError::internal(format!("outcome record {p} of {version} missing")))
}

/// The sums over positions `from..to`, and the first and last record.
fn sum_over(
    s: &Staging<'_>,
    system: &str,
    version: &str,
    from: u64,
    to: u64,
) -> Result<(Stats, Option<Record>, Option<Record>), AppError> {
    let mut st = Stats::default();
    let (mut first, mut last) = (None, None);
    for p in from..to {
        let r = record_at(s, system, version, p)?;
        st.apply(&r, true);
        if first.is_none() {
            first = Some(r.clone());
        }
        last = Some(r);
    }
    if from < to {
        st.first = Some(from);
        st.last = Some(to - 1);
    }
    Ok((st, first, last))
}

/// Where an outcome puts a record: at a new position, or over the one at `position`.
pub enum Place {
    New,
    Replace(u64),
}

/// Count `record` into the windows of `version` (window size `window`, from the policy
/// in force), as entry `index` at `time` does; the record's position.
#[allow(clippy::too_many_arguments)]
pub(crate) fn place(
    s: &mut Staging<'_>,
    system: &str,
    version: &str,
    place: Place,
    record: Record,
    window: u32,
    index: u64,
    time: u64,
) -> Result<u64, AppError> {
    let mut w: Windows =
        get(s, &windows_key(system, version))?.unwrap_or_else(|| Windows::new(window));
    if w.window != window {
        resize(s, system, version, &mut w, window)?;
    }
    let position = match place {
        Place::Replace(p) => {
            let old = record_at(s, system, version, p)?;
            if p >= w.window_start() {
                w.current.apply(&old, false);
                w.current.apply(&record, true);
            }
            if p < u64::from(w.window) {
                w.baseline.apply(&old, false);
                w.baseline.apply(&record, true);
            }
            p
        }
        Place::New => {
            let p = w.count;
            w.current.apply(&record, true);
            if p < u64::from(w.window) {
                w.baseline.apply(&record, true);
                w.baseline.first.get_or_insert(0);
                w.baseline.last = Some(p);
            }
            w.count += 1;
            let start = w.window_start();
            if start > 0 {
                let out = record_at(s, system, version, start - 1)?;
                w.current.apply(&out, false);
                let first = if start == p {
                    record.clone()
                } else {
                    record_at(s, system, version, start)?
                };
                w.first_decision = Some(first.decision);
                w.first_outcome = Some(first.outcome);
            } else {
                w.first_decision.get_or_insert(record.decision);
                w.first_outcome.get_or_insert(record.outcome);
            }
            w.current.first = Some(start);
            w.current.last = Some(p);
            w.last_decision = Some(record.decision);
            w.last_outcome = Some(record.outcome);
            p
        }
    };
    s.put(record_key(system, version, position), cbor_packed(&record));
    save(s, system, version, &mut w, index, time);
    Ok(position)
}

/// Keep the windows of `version` as entry `index` at `time` left them.
fn save(s: &mut Staging<'_>, system: &str, version: &str, w: &mut Windows, index: u64, time: u64) {
    w.updated_index = index;
    w.updated_time = time;
    let bytes = cbor_packed(&*w);
    s.put(history_key(system, version, time), bytes.clone());
    s.put(windows_key(system, version), bytes);
}

/// Sum the windows of every version of `system` afresh at window size `window` (a
/// register revision changed it), as entry `index` at `time`.
pub(crate) fn resize_all(
    s: &mut Staging<'_>,
    system: &str,
    window: u32,
    index: u64,
    time: u64,
) -> Result<(), AppError> {
    let prefix = {
        let mut k = key(&[b"gtw", system.as_bytes()]);
        k.push(0);
        k
    };
    for (k, v) in s.scan(&prefix)? {
        let version = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
        let mut w: Windows = uncbor(&v)?;
        if w.window != window {
            resize(s, system, &version, &mut w, window)?;
            save(s, system, &version, &mut w, index, time);
        }
    }
    Ok(())
}

/// Change the record at `position` (a contest overturned its decision).
#[allow(clippy::too_many_arguments)]
pub(crate) fn update(
    s: &mut Staging<'_>,
    system: &str,
    version: &str,
    position: u64,
    change: impl FnOnce(&mut Record),
    window: u32,
    index: u64,
    time: u64,
) -> Result<(), AppError> {
    let mut r = record_at(s, system, version, position)?;
    change(&mut r);
    place(
        s,
        system,
        version,
        Place::Replace(position),
        r,
        window,
        index,
        time,
    )?;
    Ok(())
}

/// Sum the windows afresh at another window size (the policy's `window` changed).
fn resize(
    s: &Staging<'_>,
    system: &str,
    version: &str,
    w: &mut Windows,
    window: u32,
) -> Result<(), AppError> {
    w.window = window;
    let (current, first, last) = sum_over(s, system, version, w.window_start(), w.count)?;
    let (baseline, _, _) = sum_over(s, system, version, 0, w.count.min(u64::from(window)))?;
    w.current = current;
    w.baseline = baseline;
    w.first_decision = first.as_ref().map(|r| r.decision);
    w.first_outcome = first.as_ref().map(|r| r.outcome);
    w.last_decision = last.as_ref().map(|r| r.decision);
    w.last_outcome = last.as_ref().map(|r| r.outcome);
    Ok(())
}

/// The windows of `version` as they stand.
pub fn current(
    store: &dyn Store,
    system: &str,
    version: &str,
) -> Result<Option<Windows>, AppError> {
    store
        .get(&windows_key(system, version))?
        .map(|b| uncbor(&b))
        .transpose()
}

/// The windows of `version` as they stood at `at` (unix µs): the last snapshot at or
/// before it.
pub fn at(
    store: &dyn Store,
    system: &str,
    version: &str,
    at: u64,
) -> Result<Option<Windows>, AppError> {
    let prefix = history_prefix(system, version);
    let mut hi = prefix.clone();
    hi.extend_from_slice(&at.saturating_add(1).to_be_bytes());
    store
        .range(&prefix, &hi, true, 1)?
        .pop()
        .map(|(_, v)| uncbor(&v))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_sums_agree_with_i128_where_it_fits() {
        let vals: [i128; 6] = [5, -7, 1 << 100, -(1 << 90), 123_456_789, -1];
        for a in vals {
            for b in vals {
                let (wa, wb) = (Wide::from_i128(a), Wide::from_i128(b));
                assert_eq!(wa + wb, Wide::from_i128(a + b));
                assert_eq!(wa - wb, Wide::from_i128(a - b));
                if let Some(p) = a.checked_mul(b) {
                    assert_eq!(wa * wb, Wide::from_i128(p));
                }
            }
        }
        // Past 128 bits: (2^100)² = 2^200.
        let big = Wide::from_i128(1 << 100) * Wide::from_i128(1 << 100);
        assert_eq!(big.to_f64(), 2f64.powi(200));
        assert_eq!((-big).to_f64(), -(2f64.powi(200)));
        assert!(big > Wide::from_i128(i128::MAX) && -big < Wide::from_i128(i128::MIN));
        assert!(
            Wide::from_i128(-3) < Wide::from_i128(2) && Wide::from_i128(-3) < Wide::from_i128(-2)
        );
        let bytes = serde_cbor::to_vec(&big).unwrap();
        assert_eq!(serde_cbor::from_slice::<Wide>(&bytes).unwrap(), big);
    }

    #[test]
    fn the_bin_of_a_confidence_is_its_first_decimal() {
        assert_eq!(bin_of(0), 0);
        assert_eq!(bin_of(99_999_999_999), 0);
        assert_eq!(bin_of(100_000_000_000), 1);
        assert_eq!(bin_of(900_000_000_000), 9);
        assert_eq!(bin_of(1_000_000_000_000), 9);
    }

    #[test]
    fn counting_a_record_out_undoes_counting_it_in() {
        let r = Record {
            decision: 3,
            outcome: 4,
            correct: false,
            overturned: true,
            confidence: Some(950_000_000_000),
            proxy: vec![("ctr".into(), 820_000_000)],
            business: vec![("revenue".into(), 12_500_000_000)],
        };
        let mut s = Stats::default();
        let empty = s.clone();
        s.apply(&r, true);
        assert_eq!(s.high_confidence_wrong, 1);
        assert_eq!(s.pairs.len(), 1);
        s.apply(&r, false);
        assert_eq!(s, empty);
    }
}
