//! The seven failure modes of deployed AI (FM-01 … FM-07), each with a status, its
//! figures over a window, the limits they are held to and the findings they raise.
//!
//! FM-01 (distribution shift: accuracy against the version's baseline, outcome
//! coverage, overturned contests), FM-04 (proxy failure: the proxy metrics' correlation
//! with the business metrics, and across versions) and FM-07 (confident hallucination:
//! calibration) are read from the outcome windows (`windows.rs`) — exact sums, never a
//! scan of decisions. FM-06 (non-compliance drift) and FM-03 (oversight atrophy) are
//! read from the open finding entries. FM-02 (feedback loops), FM-03's blind-review
//! figures, FM-05 (integration boundaries) and FM-07's consistency figures are read over
//! the latest decisions' evidence rows (`decision_modes.rs`).
//!
//! Status: `no_data` while a window holds fewer than max(30, window/4) records;
//! `failing` when a limit is crossed; `at_risk` when a figure has used more than half
//! its allowance (`max_` limit L: q > L/2; `min_` limit m of a quantity that is 1 at
//! best: q < (1 + m)/2); `ok` otherwise.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use crate::decimal::Decimal;
use crate::error::AppError;
use crate::register::projections::findings::{Finding, Severity};
use crate::register::projections::models::VersionRecord;
use crate::register::projections::systems::{OutcomeLimits, SystemSpec};
use crate::register::projections::windows::{Stats, Wide, Windows, CONFIDENCE_ONE};
use crate::register::rfc3339;
use crate::storage::Store;

mod decision_modes;

use crate::register::projections::{activity, evidence, models, outcomes, windows};
use decision_modes::DecisionWindow;
pub use decision_modes::{circuit, Circuit};

const DAY: u64 = 86_400_000_000;

/// The finding codes of each mode this module computes, and FM-03's.
pub const FM01_CODES: &[&str] = &[
    "accuracy_decay",
    "outcome_coverage_low",
    "contest_rate_high",
];
pub const FM02_CODES: &[&str] = &["output_homogeneity", "exploration_below_policy"];
/// The oversight finding the compliance view raises from the activity rows.
const OVERSIGHT_CODES: &[&str] = &["human_oversight_atrophy"];
pub const FM03_CODES: &[&str] = &[
    "human_oversight_atrophy",
    "blind_review_backlog",
    "human_accuracy_low",
    "review_time_below_minimum",
];
pub const FM04_CODES: &[&str] = &["proxy_outcome_divergence"];
pub const FM05_CODES: &[&str] = &[
    "integration_error_rate",
    "fallback_rate_high",
    "contract_undeclared",
    "contract_mismatch",
];
pub const FM07_CODES: &[&str] = &[
    "overconfidence",
    "inconsistent_answers",
    "unvalidated_outputs",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    AtRisk,
    Failing,
    NoData,
}

/// The records a mode's figures are over: the first outcome entries of the window's
/// first and last records (the window is the version's labelled decisions whose first
/// outcome lies in that range of the log), and how many records it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WindowView {
    pub from_index: Option<u64>,
    pub to_index: Option<u64>,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModeReport {
    /// `FM-01` … `FM-07`.
    pub code: String,
    pub name: String,
    pub status: Status,
    /// JSON numbers (null when they cannot be computed: too few records, zero variance,
    /// or no evidence recorded for the mode yet).
    #[schema(value_type = Object)]
    pub figures: Map<String, Value>,
    pub window: Option<WindowView>,
    /// The limits in force (the system's policy, or the defaults).
    #[schema(value_type = Object)]
    pub thresholds: Map<String, Value>,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Report {
    pub system: String,
    /// The time the report answers for (RFC 3339).
    pub at: String,
    /// The version in service then, whose windows the figures are over.
    pub model_version: Option<String>,
    pub modes: Vec<ModeReport>,
}

/// What the report of one system at one time is computed from.
struct Evidence<'a> {
    system: &'a str,
    limits: Option<OutcomeLimits>,
    version: Option<VersionRecord>,
    windows: Option<Windows>,
    /// The version this one replaced, and its windows.
    previous: Option<(String, Windows)>,
    /// (labelled, all) decisions of the version older than the expected delay.
    coverage: Option<(u64, u64)>,
    /// Open findings from the log: (code, subject) → (opening index, time, severity).
    open: BTreeMap<(String, Option<String>), (u64, u64, Severity)>,
    /// Human reviews of the last 90 days.
    human_reviews: u64,
    /// The latest decisions' evidence, when the policy keeps it.
    decisions: Option<DecisionWindow>,
    now: u64,
}

/// The least records a window must hold for its figures to count.
fn min_records(l: &OutcomeLimits) -> u64 {
    30u64.max(u64::from(l.window) / 4)
}

/// An exact fraction of integer sums, `num / den` with `den > 0`: figures are compared
/// with their limits exactly (as an auditor recomputing them would), shown as numbers.
#[derive(Debug, Clone, Copy)]
struct Ratio {
    num: Wide,
    den: Wide,
}

fn wide(n: u64) -> Wide {
    Wide::from_i128(i128::from(n))
}

fn pow10(e: u32) -> Wide {
    (0..e).fold(wide(1), |acc, _| acc * wide(10))
}

impl Ratio {
    fn new(num: Wide, den: Wide) -> Option<Ratio> {
        (den > Wide::default()).then_some(Ratio { num, den })
    }

    fn of(num: u64, den: u64) -> Option<Ratio> {
        Ratio::new(wide(num), wide(den))
    }

    fn value(self) -> f64 {
        self.num.to_f64() / self.den.to_f64()
    }

    /// `self` against the decimal `d`, exactly.
    fn cmp(self, d: Decimal) -> std::cmp::Ordering {
        let m = Wide::from_i128(i128::from(d.mantissa));
        if d.exponent >= 0 {
            self.num.cmp(&(m * pow10(d.exponent as u32) * self.den))
        } else {
            (self.num * pow10(d.exponent.unsigned_abs())).cmp(&(m * self.den))
        }
    }

    fn gt(self, d: Decimal) -> bool {
        self.cmp(d) == std::cmp::Ordering::Greater
    }

    fn lt(self, d: Decimal) -> bool {
        self.cmp(d) == std::cmp::Ordering::Less
    }

    fn double(self) -> Ratio {
        Ratio {
            num: self.num + self.num,
            den: self.den,
        }
    }

    fn minus(self, o: Ratio) -> Ratio {
        Ratio {
            num: self.num * o.den - o.num * self.den,
            den: self.den * o.den,
        }
    }

    fn abs(self) -> Ratio {
        Ratio {
            num: if self.num.negative() {
                -self.num
            } else {
                self.num
            },
            den: self.den,
        }
    }

    fn minus_one(self) -> Ratio {
        Ratio {
            num: self.num - self.den,
            den: self.den,
        }
    }
}

/// The level a figure has reached against a `max_` limit L: failing past L, at risk
/// past L/2.
fn over(q: Option<Ratio>, limit: Decimal) -> Status {
    match q {
        Some(q) if q.gt(limit) => Status::Failing,
        Some(q) if q.double().gt(limit) => Status::AtRisk,
        _ => Status::Ok,
    }
}

/// The level a figure that is 1 at best has reached against a `min_` limit m: failing
/// below m, at risk below (1 + m)/2.
fn under(q: Option<Ratio>, limit: Decimal) -> Status {
    match q {
        Some(q) if q.lt(limit) => Status::Failing,
        Some(q) if q.double().minus_one().lt(limit) => Status::AtRisk,
        _ => Status::Ok,
    }
}

/// [`under`] for Pearson's r, which is no fraction of integers.
fn under_r(r: f64, limit: Decimal) -> Status {
    let m = limit.to_f64();
    if r < m {
        Status::Failing
    } else if r < (1.0 + m) / 2.0 {
        Status::AtRisk
    } else {
        Status::Ok
    }
}

/// Pearson's r of one (proxy, business) pair, and how many records it is over.
type Correlation = BTreeMap<String, BTreeMap<String, (Option<f64>, u64)>>;

/// The figures one window's sums give.
#[derive(Debug, Clone, Default)]
struct Figures {
    accuracy: Option<Ratio>,
    mean_confidence: Option<Ratio>,
    ece: Option<Ratio>,
    brier: Option<Ratio>,
    high_confidence_wrong_share: Option<Ratio>,
    overturned_share: Option<Ratio>,
    correlation: Correlation,
    proxy_means: BTreeMap<String, Ratio>,
    business_means: BTreeMap<String, Ratio>,
}

impl Figures {
    fn of(s: &Stats) -> Self {
        let one = Wide::from_i128(CONFIDENCE_ONE);
        let confident = wide(s.confident);
        let ece_sum = s.bins.iter().fold(Wide::default(), |acc, b| {
            let gap = wide(b.correct) * one - b.confidence;
            acc + if gap.negative() { -gap } else { gap }
        });
        let mut correlation = Correlation::new();
        for (k, p) in &s.pairs {
            if let Some((proxy, business)) = k.split_once('\0') {
                correlation
                    .entry(proxy.to_owned())
                    .or_default()
                    .insert(business.to_owned(), (p.r(), p.n));
            }
        }
        let means = |m: &BTreeMap<String, windows::Sum>| {
            m.iter()
                .filter_map(|(k, s)| Ratio::new(s.sum, wide(s.n)).map(|r| (k.clone(), r)))
                .collect()
        };
        Figures {
            accuracy: Ratio::of(s.correct, s.n),
            mean_confidence: Ratio::new(s.confidence, confident * one),
            ece: Ratio::new(ece_sum, confident * one),
            brier: Ratio::new(s.brier, confident * one * one),
            high_confidence_wrong_share: Ratio::of(s.high_confidence_wrong, s.n),
            overturned_share: Ratio::of(s.overturned, s.n),
            correlation,
            proxy_means: means(&s.proxy),
            business_means: means(&s.business),
        }
    }
}

fn worst(levels: impl IntoIterator<Item = Status>) -> Status {
    levels
        .into_iter()
        .filter(|s| *s != Status::NoData)
        .max()
        .unwrap_or(Status::Ok)
}

fn num(v: Option<Ratio>) -> Value {
    v.map_or(Value::Null, |r| json!(r.value()))
}

fn float(v: Option<f64>) -> Value {
    v.map_or(Value::Null, |f| json!(f))
}

fn limit(d: Decimal) -> Value {
    json!(d.to_f64())
}

fn map(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn shown(r: Option<Ratio>) -> f64 {
    r.map_or(0.0, Ratio::value)
}

impl Evidence<'_> {
    fn version_name(&self) -> Option<&str> {
        self.version.as_ref().map(|v| v.spec.version.as_str())
    }

    /// A finding of this module about the version in service.
    fn finding(&self, code: &str, explanation: String, evidence: Vec<u64>, since: u64) -> Finding {
        let version = self.version_name().map(str::to_owned);
        let severity = crate::register::projections::findings::severity_of(code);
        let since = self
            .open
            .get(&(code.to_owned(), version.clone()))
            .filter(|o| o.2 == severity)
            .map_or(since, |o| o.1);
        Finding {
            code: code.to_owned(),
            severity,
            explanation,
            evidence,
            since: rfc3339(since),
            model_version: version.clone(),
            subject: version,
        }
    }

    fn window_view(&self) -> Option<WindowView> {
        self.windows.as_ref().map(|w| WindowView {
            from_index: w.first_outcome,
            to_index: w.last_outcome,
            size: w.current.n,
        })
    }

    /// The entries that show a window's finding: its first decision and the outcome
    /// entry that last changed it.
    fn window_evidence(&self) -> Vec<u64> {
        self.windows
            .as_ref()
            .map(|w| {
                w.first_decision
                    .into_iter()
                    .chain([w.updated_index])
                    .collect()
            })
            .unwrap_or_default()
    }

    fn since(&self) -> u64 {
        self.windows.as_ref().map_or(self.now, |w| w.updated_time)
    }

    /// The figures of the version's current window or baseline (empty without windows).
    fn figures(&self, of: impl Fn(&Windows) -> &Stats) -> Figures {
        self.windows
            .as_ref()
            .map(|w| Figures::of(of(w)))
            .unwrap_or_default()
    }

    fn enough(&self, l: &OutcomeLimits) -> bool {
        self.windows
            .as_ref()
            .is_some_and(|w| w.current.n >= min_records(l) && w.baseline.n >= min_records(l))
    }

    fn fm01(&self) -> ModeReport {
        let mut m = empty("FM-01", "distribution shift");
        let Some(l) = &self.limits else { return m };
        let cur = self.figures(|w| &w.current);
        let base = self.figures(|w| &w.baseline);
        let coverage = self.coverage.and_then(|(l, n)| Ratio::of(l, n));
        let drop = base.accuracy.zip(cur.accuracy).map(|(b, a)| b.minus(a));
        let shift = cur
            .mean_confidence
            .zip(base.mean_confidence)
            .map(|(a, b)| a.minus(b).abs());
        m.figures = map(&[
            ("accuracy", num(cur.accuracy)),
            ("baseline_accuracy", num(base.accuracy)),
            ("mean_confidence", num(cur.mean_confidence)),
            ("baseline_mean_confidence", num(base.mean_confidence)),
            ("accuracy_drop", num(drop)),
            ("confidence_shift", num(shift)),
            ("outcome_coverage", num(coverage)),
            ("overturned_share", num(cur.overturned_share)),
        ]);
        m.thresholds = map(&[
            ("max_accuracy_drop", limit(l.max_accuracy_drop)),
            ("max_confidence_shift", limit(l.max_confidence_shift)),
            ("min_outcome_coverage", limit(l.min_outcome_coverage)),
            ("max_overturned_share", limit(l.max_overturned_share)),
        ]);
        m.window = self.window_view();
        let enough = self.enough(l);
        let version = self.version_name().unwrap_or_default().to_owned();
        // Confidence stays (shifts less than allowed) while accuracy falls past the limit.
        let decays = drop.is_some_and(|d| d.gt(l.max_accuracy_drop))
            && shift.is_some_and(|s| s.lt(l.max_confidence_shift));
        if enough && decays {
            m.findings.push(self.finding(
                "accuracy_decay",
                format!(
                    "accuracy of {version} fell from {:.4} (baseline) to {:.4} over the latest {} outcomes while mean confidence moved {:.4}",
                    shown(base.accuracy),
                    shown(cur.accuracy),
                    self.windows.as_ref().map_or(0, |w| w.current.n),
                    shown(shift)
                ),
                self.window_evidence(),
                self.since(),
            ));
        }
        if enough
            && cur
                .overturned_share
                .is_some_and(|s| s.gt(l.max_overturned_share))
        {
            m.findings.push(self.finding(
                "contest_rate_high",
                format!(
                    "{:.2} % of {version}'s latest labelled decisions were overturned on contest (limit {:.2} %)",
                    shown(cur.overturned_share) * 100.0,
                    l.max_overturned_share.to_f64() * 100.0
                ),
                self.window_evidence(),
                self.since(),
            ));
        }
        // Coverage is judged on the version's decisions, labelled or not.
        let old = self.coverage.map_or(0, |c| c.1);
        let judged = old >= min_records(l);
        if judged && coverage.is_some_and(|c| c.lt(l.min_outcome_coverage)) {
            let mut evidence: Vec<u64> = self
                .version
                .as_ref()
                .and_then(|v| v.deployed_index)
                .into_iter()
                .collect();
            evidence.extend(self.windows.as_ref().map(|w| w.updated_index));
            m.findings.push(self.finding(
                "outcome_coverage_low",
                format!(
                    "only {} of {old} decisions of {version} older than {} days have an outcome: the diagnosis is blind",
                    self.coverage.map_or(0, |c| c.0),
                    l.expected_delay_days
                ),
                evidence,
                self.now,
            ));
        }
        let coverage_level = if judged {
            under(coverage, l.min_outcome_coverage)
        } else {
            Status::NoData
        };
        let window_levels = if enough {
            let accuracy = if decays {
                Status::Failing
            } else if drop.is_some_and(|d| d.double().gt(l.max_accuracy_drop)) {
                Status::AtRisk
            } else {
                Status::Ok
            };
            vec![accuracy, over(cur.overturned_share, l.max_overturned_share)]
        } else {
            Vec::new()
        };
        m.status = if !enough && !judged {
            Status::NoData
        } else {
            worst(window_levels.into_iter().chain([coverage_level]))
        };
        m
    }

    fn fm04(&self) -> ModeReport {
        let mut m = empty("FM-04", "latent proxy failure");
        let Some(l) = &self.limits else { return m };
        let cur = self.figures(|w| &w.current);
        let least = min_records(l);
        // A pair's r counts once the window holds enough records carrying both.
        let counted = |(r, n): &(Option<f64>, u64)| r.filter(|_| *n >= least);
        let correlation: Map<String, Value> = cur
            .correlation
            .iter()
            .map(|(p, bs)| {
                let inner: Map<String, Value> = bs
                    .iter()
                    .map(|(b, r)| (b.clone(), float(counted(r))))
                    .collect();
                (p.clone(), Value::Object(inner))
            })
            .collect();
        m.figures = map(&[("proxy_correlation", Value::Object(correlation))]);
        m.thresholds = map(&[("min_proxy_correlation", limit(l.min_proxy_correlation))]);
        m.window = self.window_view();
        let enough = self.windows.as_ref().is_some_and(|w| w.current.n >= least);
        let rs: Vec<(String, String, f64)> = cur
            .correlation
            .iter()
            .flat_map(|(p, bs)| {
                bs.iter()
                    .filter_map(move |(b, r)| counted(r).map(|r| (p.clone(), b.clone(), r)))
            })
            .collect();
        // Across versions: every proxy mean rose while a business mean fell.
        let divergence = self.previous.as_ref().and_then(|(name, prev)| {
            if prev.current.n < least || !enough {
                return None;
            }
            let before = Figures::of(&prev.current);
            let common: Vec<&String> = cur
                .proxy_means
                .keys()
                .filter(|k| before.proxy_means.contains_key(*k))
                .collect();
            let rose = !common.is_empty()
                && common.iter().all(|k| {
                    let (now, then) = (cur.proxy_means[*k], before.proxy_means[*k]);
                    now.minus(then).num > Wide::default()
                });
            let fell = cur
                .business_means
                .iter()
                .find(|(k, now)| {
                    before
                        .business_means
                        .get(*k)
                        .is_some_and(|then| now.minus(*then).num.negative())
                })
                .map(|(k, _)| k.clone());
            match (rose, fell) {
                (true, Some(b)) => Some((name.clone(), prev.updated_index, b)),
                _ => None,
            }
        });
        let low: Vec<&(String, String, f64)> = rs
            .iter()
            .filter(|(_, _, r)| under_r(*r, l.min_proxy_correlation) == Status::Failing)
            .collect();
        if enough && (!low.is_empty() || divergence.is_some()) {
            let mut why = Vec::new();
            if let Some((p, b, r)) = low.first() {
                why.push(format!(
                    "{p} correlates with {b} at r = {r:.3} (limit {})",
                    l.min_proxy_correlation
                ));
            }
            let mut evidence = self.window_evidence();
            if let Some((prev, index, b)) = &divergence {
                why.push(format!(
                    "the proxy metrics rose since {prev} while {b} fell"
                ));
                evidence.push(*index);
            }
            m.findings.push(self.finding(
                "proxy_outcome_divergence",
                why.join("; "),
                evidence,
                self.since(),
            ));
        }
        m.status = if !enough || (rs.is_empty() && divergence.is_none()) {
            Status::NoData
        } else if divergence.is_some() {
            Status::Failing
        } else {
            worst(
                rs.iter()
                    .map(|(_, _, r)| under_r(*r, l.min_proxy_correlation)),
            )
        };
        m
    }

    fn fm07(&self) -> ModeReport {
        let mut m = self.fm07_calibration();
        let mut levels = if m.status == Status::NoData {
            Vec::new()
        } else {
            vec![m.status]
        };
        levels.extend(self.fm07_consistency(&mut m));
        m.status = decision_modes::counted(&levels);
        m
    }

    fn fm07_calibration(&self) -> ModeReport {
        let mut m = empty("FM-07", "confident hallucination at scale");
        let Some(l) = &self.limits else { return m };
        let cur = self.figures(|w| &w.current);
        m.figures = map(&[
            ("ece", num(cur.ece)),
            ("brier", num(cur.brier)),
            (
                "high_confidence_wrong_share",
                num(cur.high_confidence_wrong_share),
            ),
        ]);
        m.thresholds = map(&[
            ("max_ece", limit(l.max_ece)),
            (
                "max_high_confidence_wrong_share",
                limit(l.max_high_confidence_wrong_share),
            ),
        ]);
        m.window = self.window_view();
        let enough = self.windows.as_ref().is_some_and(|w| {
            w.current.n >= min_records(l) && w.current.confident >= min_records(l)
        });
        let levels = [
            over(cur.ece, l.max_ece),
            over(
                cur.high_confidence_wrong_share,
                l.max_high_confidence_wrong_share,
            ),
        ];
        if enough && levels.contains(&Status::Failing) {
            m.findings.push(self.finding(
                "overconfidence",
                format!(
                    "expected calibration error {:.4} (limit {}), {:.2} % of labelled decisions wrong at confidence >= 0.9 (limit {:.2} %)",
                    shown(cur.ece),
                    l.max_ece,
                    shown(cur.high_confidence_wrong_share) * 100.0,
                    l.max_high_confidence_wrong_share.to_f64() * 100.0
                ),
                self.window_evidence(),
                self.since(),
            ));
        }
        m.status = if enough {
            worst(levels)
        } else {
            Status::NoData
        };
        m
    }

    /// A mode read from the open finding entries of `codes`.
    fn of_open_findings(&self, code: &str, name: &str, codes: Option<&[&str]>) -> ModeReport {
        let mut m = empty(code, name);
        let open: Vec<_> = self
            .open
            .iter()
            .filter(|((c, _), _)| match codes {
                Some(list) => list.contains(&c.as_str()),
                None => !is_outcome_or_oversight(c),
            })
            .collect();
        m.findings = open
            .iter()
            .map(|((c, subject), (index, time, severity))| Finding {
                code: c.clone(),
                severity: *severity,
                explanation: format!("{c} is open (entry {index})"),
                evidence: vec![*index],
                since: rfc3339(*time),
                model_version: subject.clone(),
                subject: subject.clone(),
            })
            .collect();
        m.status = if open.iter().any(|(_, o)| o.2 == Severity::High) {
            Status::Failing
        } else if !open.is_empty() {
            Status::AtRisk
        } else {
            Status::Ok
        };
        m
    }

    fn fm03(&self) -> ModeReport {
        let mut m = self.of_open_findings("FM-03", "human override atrophy", Some(OVERSIGHT_CODES));
        let atrophy = !m.findings.is_empty();
        m.status = Status::NoData;
        m.figures = map(&[
            ("blind_agreement", Value::Null),
            ("human_accuracy", Value::Null),
            ("below_min_review_share", Value::Null),
            ("backlog_days", Value::Null),
        ]);
        let mut levels = self.fm03_window(&mut m);
        if atrophy {
            levels.push(Status::Failing);
        } else if self.human_reviews >= 20 {
            levels.push(Status::Ok);
        }
        m.status = decision_modes::counted(&levels);
        m
    }

    fn fm06(&self) -> ModeReport {
        let mut m = self.of_open_findings("FM-06", "regulatory non-compliance drift", None);
        m.figures = map(&[("open_findings", json!(m.findings.len()))]);
        m
    }

    fn report(&self) -> Vec<ModeReport> {
        vec![
            self.fm01(),
            self.fm02(),
            self.fm03(),
            self.fm04(),
            self.fm05(),
            self.fm06(),
            self.fm07(),
        ]
    }
}

fn is_outcome_or_oversight(code: &str) -> bool {
    [
        FM01_CODES, FM02_CODES, FM03_CODES, FM04_CODES, FM05_CODES, FM07_CODES,
    ]
    .iter()
    .any(|l| l.contains(&code))
}

fn empty(code: &str, name: &str) -> ModeReport {
    ModeReport {
        code: code.to_owned(),
        name: name.to_owned(),
        status: Status::NoData,
        figures: Map::new(),
        window: None,
        thresholds: Map::new(),
        findings: Vec::new(),
    }
}

/// The version of `system` in service at `at`, and the one it replaced.
fn versions_at(
    store: &dyn Store,
    system: &str,
    at: u64,
) -> Result<(Option<VersionRecord>, Option<VersionRecord>), AppError> {
    let mut deployed: Vec<VersionRecord> = models::list(store, system)?
        .into_iter()
        .filter(|v| v.deployed_time.is_some_and(|t| t <= at))
        .collect();
    deployed.sort_by_key(|v| v.deployed_time);
    let current = deployed
        .last()
        .filter(|v| v.retired_time.is_none_or(|t| t > at))
        .cloned();
    let previous = match &current {
        Some(_) if deployed.len() >= 2 => Some(deployed[deployed.len() - 2].clone()),
        _ => None,
    };
    Ok((current, previous))
}

/// Gather the evidence of `system` (whose register entry then was `spec`) at `at`;
/// `live` reads the windows as they stand, else the snapshots at `at`.
fn gather<'a>(
    store: &dyn Store,
    system: &'a str,
    spec: &SystemSpec,
    at: u64,
    live: bool,
) -> Result<Evidence<'a>, AppError> {
    let limits = spec.policy.outcomes.as_ref().map(|o| o.limits());
    let (version, previous) = versions_at(store, system, at)?;
    let windows_of = |v: &str| {
        if live {
            windows::current(store, system, v)
        } else {
            windows::at(store, system, v, at)
        }
    };
    let windows = version
        .as_ref()
        .map(|v| windows_of(&v.spec.version))
        .transpose()?
        .flatten();
    let previous_name = previous.as_ref().map(|p| p.spec.version.clone());
    let previous = match previous {
        Some(p) => windows_of(&p.spec.version)?.map(|w| (p.spec.version.clone(), w)),
        None => None,
    };
    let coverage = match (&version, &limits) {
        (Some(v), Some(l)) => {
            let cutoff =
                activity::day_of(at.saturating_sub(u64::from(l.expected_delay_days) * DAY));
            let name = v.spec.version.as_str();
            let all: u64 = activity::decisions_per_day(store, system, 0, cutoff.saturating_sub(1))?
                .values()
                .filter_map(|by| by.get(name))
                .sum();
            let labelled =
                outcomes::labelled_before(store, system, name, cutoff, activity::day_of(at))?;
            Some((labelled.min(all), all))
        }
        _ => None,
    };
    let open = if live {
        crate::register::projections::findings::open(store, Some(system))?
            .into_iter()
            .map(|(k, r)| (k, (r.index, r.time, r.severity)))
            .collect()
    } else {
        crate::register::projections::findings::open_at(store, system, at)?
            .into_iter()
            .map(|(index, time, b)| ((b.code, b.subject), (index, time, b.severity)))
            .collect()
    };
    let decisions = match (&version, spec.policy.keeps_evidence()) {
        (Some(v), true) => {
            let before = if live {
                u64::MAX
            } else {
                evidence::size_at(store, at)?
            };
            Some(DecisionWindow::read(
                store,
                system,
                spec,
                &v.spec.version,
                previous_name.as_deref(),
                before,
                at,
                live,
            )?)
        }
        _ => None,
    };
    let today = activity::day_of(at);
    let human_reviews =
        activity::oversight_per_week(store, system, today.saturating_sub(90), today)?
            .values()
            .map(|o| o.reviewed)
            .sum();
    Ok(Evidence {
        system,
        limits,
        version,
        windows,
        previous,
        coverage,
        open,
        human_reviews,
        decisions,
        now: at,
    })
}

/// The failure-mode report of `system` (register entry `spec`) at `at`; `live` when
/// `at` is now (the windows as they stand), else from the snapshots as they stood.
pub fn report(
    store: &dyn Store,
    system: &str,
    spec: &SystemSpec,
    at: u64,
    live: bool,
) -> Result<Report, AppError> {
    let ev = gather(store, system, spec, at, live)?;
    Ok(Report {
        system: ev.system.to_owned(),
        at: rfc3339(at),
        model_version: ev.version_name().map(str::to_owned),
        modes: ev.report(),
    })
}

/// The findings the outcome and decision windows raise for `system` now (for the
/// compliance view and the finding entries): every code of FM-01, FM-02, FM-04, FM-05
/// and FM-07, and FM-03's but `human_oversight_atrophy` (the compliance view's own).
pub fn findings(
    store: &dyn Store,
    system: &str,
    spec: &SystemSpec,
    now: u64,
) -> Result<Vec<Finding>, AppError> {
    if !spec.policy.keeps_evidence() {
        return Ok(Vec::new());
    }
    let ev = gather(store, system, spec, now, true)?;
    let mut out = ev.fm01().findings;
    out.extend(ev.fm02().findings);
    let mut fm03 = empty("FM-03", "");
    ev.fm03_window(&mut fm03);
    out.extend(fm03.findings);
    out.extend(ev.fm04().findings);
    out.extend(ev.fm05().findings);
    out.extend(ev.fm07().findings);
    Ok(out)
}
