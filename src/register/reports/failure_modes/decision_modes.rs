//! The modes read over a *decision window* — the latest `window` decisions of the
//! version in service, by log index, labelled or not — from the decisions' evidence
//! rows (`projections/evidence.rs`): FM-02 (feedback loops), FM-03 (the human backstop,
//! beside the oversight finding), FM-05 (integration boundaries) and FM-07's
//! consistency figures. A window is one range read of at most `window` rows, and the
//! figures are exact counts over it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use super::{
    empty, limit, map, num, over, under, worst, Evidence, ModeReport, Ratio, Status, WindowView,
    DAY,
};
use crate::error::AppError;
use crate::register::projections::blind::{self, Judgment};
use crate::register::projections::boundaries;
use crate::register::projections::evidence::{self, Crossing, CrossingStatus};
use crate::register::projections::systems::EvidenceLimits;
use crate::register::projections::{outcomes, systems};
use crate::storage::Store;

/// Ratios over a subset of a window (blind judgments, human reviews, equivalence
/// groups) count once their denominator holds at least this many.
pub const MIN_SUBSET: u64 = 10;

/// A blind judgment beside what it is compared with.
pub(super) struct Judged {
    pub judgment: Judgment,
    /// The AI's prediction digest (from the decision's evidence row).
    pub ai: Option<Vec<u8>>,
    /// The digest of the outcome's label, once one is recorded.
    pub label: Option<Vec<u8>>,
}

/// What the decision-window modes are computed from.
pub(super) struct DecisionWindow {
    pub limits: EvidenceLimits,
    /// The window's rows, oldest first, with their log indices.
    pub rows: Vec<(u64, evidence::Evidence)>,
    /// The boundary events between the window's first and last decision.
    pub events: Vec<Crossing>,
    /// The previous version's last window.
    pub previous: Vec<(u64, evidence::Evidence)>,
    pub judged: Vec<Judged>,
    /// The age of the oldest open blind case (µs), when answered live.
    pub backlog: Option<u64>,
    pub high_risk: bool,
    /// Whether the policy has `integration`, `consistency`.
    pub integration: bool,
    pub consistency: bool,
}

/// Most boundary events one window counts (the latest, when more fall in it).
const MAX_EVENTS: usize = 100_000;

impl DecisionWindow {
    /// Read the window of `version` of `system` over the log below `before`; `live`
    /// adds the blind backlog (open cases as they stand at `now`).
    #[allow(clippy::too_many_arguments)]
    pub fn read(
        store: &dyn Store,
        system: &str,
        spec: &systems::SystemSpec,
        version: &str,
        previous: Option<&str>,
        before: u64,
        now: u64,
        live: bool,
    ) -> Result<DecisionWindow, AppError> {
        let limits = spec.policy.evidence_limits();
        let w = limits.window as usize;
        let rows = evidence::latest(store, system, version, before, w)?;
        let events = match (rows.first(), rows.last()) {
            (Some((from, _)), Some((to, _))) => {
                boundaries::latest_between(store, system, *from, *to, MAX_EVENTS)?
            }
            _ => Vec::new(),
        };
        let previous = match previous {
            Some(p) => evidence::latest(store, system, p, before, w)?,
            None => Vec::new(),
        };
        let mut judged = Vec::new();
        for (index, e) in rows.iter().filter(|(_, e)| e.blind) {
            let Some(j) = blind::judgment(store, system, *index)?.filter(|j| j.index < before)
            else {
                continue;
            };
            let label = label_before(store, system, *index, before)?;
            judged.push(Judged {
                judgment: j,
                ai: e.prediction.as_ref().map(|p| p.to_vec()),
                label,
            });
        }
        // Open cases as they stand: the backlog is answered live only.
        let backlog = if live && limits.blind_rate.mantissa > 0 {
            Some(
                blind::open_cases(store, system, None, 1)?
                    .first()
                    .map_or(0, |(_, c)| now.saturating_sub(c.time)),
            )
        } else {
            None
        };
        Ok(DecisionWindow {
            limits,
            rows,
            events,
            previous,
            judged,
            backlog,
            high_risk: spec.risk_class == systems::RiskClass::High,
            integration: spec.policy.integration.is_some(),
            consistency: spec.policy.consistency.is_some(),
        })
    }

    fn min_records(&self) -> u64 {
        30u64.max(u64::from(self.limits.window) / 4)
    }

    fn enough(&self) -> bool {
        self.rows.len() as u64 >= self.min_records()
    }

    pub fn view(&self) -> WindowView {
        WindowView {
            from_index: self.rows.first().map(|r| r.0),
            to_index: self.rows.last().map(|r| r.0),
            size: self.rows.len() as u64,
        }
    }

    /// The indices a window's finding cites: its first and last decision.
    fn evidence(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.rows.first().map(|r| r.0).into_iter().collect();
        v.extend(
            self.rows
                .last()
                .map(|r| r.0)
                .filter(|l| Some(*l) != v.first().copied()),
        );
        v
    }

    fn since(&self, now: u64) -> u64 {
        self.rows.last().map_or(now, |r| r.1.time)
    }

    /// The crossings the FM-05 figures are over: the window's decisions that carry
    /// `integration`, then the boundary events between its first and last decision.
    fn crossings(&self) -> impl Iterator<Item = &Crossing> {
        self.rows
            .iter()
            .filter_map(|(_, e)| e.crossing.as_ref())
            .chain(self.events.iter())
    }
}

/// The digest of the label in force for the decision at `index` over the log below
/// `before` (the register's row keeps today's; a correction recorded since is undone
/// by reading the last outcome entry below `before`).
fn label_before(
    store: &dyn Store,
    system: &str,
    index: u64,
    before: u64,
) -> Result<Option<Vec<u8>>, AppError> {
    let Some(t) = outcomes::truth(store, system, index)? else {
        return Ok(None);
    };
    match t.outcomes.iter().rev().find(|o| **o < before) {
        None => Ok(None),
        Some(o) if Some(o) == t.outcomes.last() => Ok(t.label.map(|l| l.into_vec())),
        Some(o) => {
            let e: crate::log::entry::Entry<outcomes::OutcomeBody> =
                crate::register::entry_at(store, *o)?;
            let label: serde_json::Value =
                serde_json::from_str(&e.body.label).map_err(AppError::internal)?;
            Ok(Some(crate::register::projections::evidence::value_digest(
                &label,
            )?))
        }
    }
}

/// −Σ pᵢ ln pᵢ ÷ ln k over the k distinct predictions of `rows` (0 when k = 1; `None`
/// when no row has a prediction).
pub fn normalized_entropy(rows: &[(u64, evidence::Evidence)]) -> Option<f64> {
    let mut counts: BTreeMap<&[u8], u64> = BTreeMap::new();
    for p in rows.iter().filter_map(|(_, e)| e.prediction.as_deref()) {
        *counts.entry(p).or_default() += 1;
    }
    let n: u64 = counts.values().sum();
    if n == 0 {
        return None;
    }
    let k = counts.len();
    if k == 1 {
        return Some(0.0);
    }
    let h: f64 = counts
        .values()
        .map(|c| {
            let p = *c as f64 / n as f64;
            -p * p.ln()
        })
        .sum();
    Some(h / (k as f64).ln())
}

/// The FM-05 rates of a set of crossings.
struct Rates {
    n: u64,
    error: Option<Ratio>,
    timeout: Option<Ratio>,
    fallback: Option<Ratio>,
}

fn rates<'a>(crossings: impl Iterator<Item = &'a Crossing>) -> Rates {
    let mut counts: BTreeMap<CrossingStatus, u64> = BTreeMap::new();
    let mut n = 0;
    for c in crossings {
        n += 1;
        *counts.entry(c.status).or_default() += 1;
    }
    let of = |s: CrossingStatus| Ratio::of(counts.get(&s).copied().unwrap_or(0), n);
    Rates {
        n,
        error: of(CrossingStatus::Error),
        timeout: of(CrossingStatus::Timeout),
        fallback: of(CrossingStatus::Fallback),
    }
}

/// The nearest-rank p-th percentile (p in 1..=100) of `values`.
fn nearest_rank(mut values: Vec<u64>, p: u64) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = (p * values.len() as u64).div_ceil(100).max(1);
    values.get(rank as usize - 1).copied()
}

/// A `max_` limit level that counts only when `enough`.
fn level_if(enough: bool, s: Status) -> Status {
    if enough {
        s
    } else {
        Status::NoData
    }
}

/// The status of levels when at least one counted; `no_data` otherwise.
pub(super) fn counted(levels: &[Status]) -> Status {
    if levels.iter().all(|l| *l == Status::NoData) {
        Status::NoData
    } else {
        worst(levels.iter().copied())
    }
}

fn float(v: Option<f64>) -> Value {
    v.map_or(Value::Null, |f| json!(f))
}

impl Evidence<'_> {
    fn window(&self) -> Option<&DecisionWindow> {
        self.decisions.as_ref()
    }

    pub(super) fn fm02(&self) -> ModeReport {
        let mut m = empty("FM-02", "feedback loop collapse");
        m.figures = map(&[
            ("normalized_entropy", Value::Null),
            ("previous_version_entropy", Value::Null),
            ("exploration_share", Value::Null),
            ("counterfactual_disagreement", Value::Null),
        ]);
        let Some(w) = self.window() else { return m };
        let l = &w.limits;
        let n = w.rows.len() as u64;
        let entropy = normalized_entropy(&w.rows);
        let previous = normalized_entropy(&w.previous);
        let explored = w.rows.iter().filter(|(_, e)| e.exploration).count() as u64;
        let exploration = Ratio::of(explored, n);
        let carrying: Vec<bool> = w
            .rows
            .iter()
            .filter_map(|(_, e)| e.counterfactual_differs)
            .collect();
        let disagreement = Ratio::of(
            carrying.iter().filter(|d| **d).count() as u64,
            carrying.len() as u64,
        );
        m.figures = map(&[
            ("normalized_entropy", float(entropy)),
            ("previous_version_entropy", float(previous)),
            ("exploration_share", num(exploration)),
            ("counterfactual_disagreement", num(disagreement)),
        ]);
        m.thresholds = map(&[
            ("min_exploration_share", limit(l.min_exploration_share)),
            ("max_entropy_drop", limit(l.max_entropy_drop)),
        ]);
        m.window = Some(w.view());
        let enough = w.enough();
        let compared = enough && w.previous.len() as u64 >= w.min_records();
        let drop = entropy
            .zip(previous)
            .map(|(now, then)| then - now)
            .filter(|_| compared);
        let max_drop = l.max_entropy_drop.to_f64();
        let entropy_level = match drop {
            Some(d) if d > max_drop => Status::Failing,
            Some(d) if d > max_drop / 2.0 => Status::AtRisk,
            Some(_) => Status::Ok,
            None => Status::NoData,
        };
        let required = l.min_exploration_share.mantissa > 0;
        let explores = enough && required;
        let exploration_level = match exploration {
            Some(e) if explores && e.lt(l.min_exploration_share) => Status::Failing,
            Some(_) if explores => Status::Ok,
            _ => Status::NoData,
        };
        if entropy_level == Status::Failing {
            m.findings.push(self.finding(
                "output_homogeneity",
                format!(
                    "the normalised entropy of the predictions fell from {:.4} (previous version) to {:.4} (limit: a drop of {})",
                    previous.unwrap_or_default(),
                    entropy.unwrap_or_default(),
                    l.max_entropy_drop
                ),
                w.evidence(),
                w.since(self.now),
            ));
        }
        if exploration_level == Status::Failing {
            m.findings.push(self.finding(
                "exploration_below_policy",
                format!(
                    "{explored} of the latest {n} decisions were explored ({:.2} %); the policy requires {:.2} %",
                    exploration.map_or(0.0, Ratio::value) * 100.0,
                    l.min_exploration_share.to_f64() * 100.0
                ),
                w.evidence(),
                w.since(self.now),
            ));
        }
        m.status = if enough {
            counted(&[entropy_level, exploration_level])
        } else {
            Status::NoData
        };
        m
    }

    /// FM-03's figures and findings from the window (the oversight finding from the
    /// open findings is the caller's).
    pub(super) fn fm03_window(&self, m: &mut ModeReport) -> Vec<Status> {
        let Some(w) = self.window() else {
            return Vec::new();
        };
        let l = &w.limits;
        let compared: Vec<&Judged> = w.judged.iter().filter(|j| j.ai.is_some()).collect();
        let agreement = Ratio::of(
            compared
                .iter()
                .filter(|j| j.ai.as_deref() == Some(j.judgment.prediction.as_slice()))
                .count() as u64,
            compared.len() as u64,
        );
        let labelled: Vec<&Judged> = w.judged.iter().filter(|j| j.label.is_some()).collect();
        let human_accuracy = Ratio::of(
            labelled
                .iter()
                .filter(|j| j.label.as_deref() == Some(j.judgment.prediction.as_slice()))
                .count() as u64,
            labelled.len() as u64,
        );
        let reviews: Vec<u64> = w.rows.iter().filter_map(|(_, e)| e.review_ms).collect();
        let below = reviews.iter().filter(|ms| **ms < l.min_review_ms).count() as u64;
        let below_share = Ratio::of(below, reviews.len() as u64);
        let backlog_days = w.backlog.map(|b| b as f64 / DAY as f64);
        m.figures = map(&[
            ("blind_agreement", num(agreement)),
            ("human_accuracy", num(human_accuracy)),
            ("below_min_review_share", num(below_share)),
            ("backlog_days", float(backlog_days)),
            ("blind_judgments", json!(w.judged.len())),
        ]);
        m.thresholds = map(&[
            ("min_review_ms", json!(l.min_review_ms)),
            ("max_backlog_days", json!(l.max_backlog_days)),
            ("min_human_accuracy", limit(l.min_human_accuracy)),
            (
                "max_below_min_review_share",
                limit(l.max_below_min_review_share),
            ),
        ]);
        m.window = Some(w.view());
        let enough = w.enough();
        let accuracy_level = level_if(
            enough && labelled.len() as u64 >= MIN_SUBSET,
            under(human_accuracy, l.min_human_accuracy),
        );
        let review_level = level_if(
            enough && reviews.len() as u64 >= MIN_SUBSET && l.min_review_ms > 0,
            over(below_share, l.max_below_min_review_share),
        );
        // The backlog is judged on its own: an old case is overdue however few there are.
        let backlog_level = match w.backlog {
            Some(age) => {
                let allowed = u64::from(l.max_backlog_days) * DAY;
                if age > allowed {
                    Status::Failing
                } else if age * 2 > allowed {
                    Status::AtRisk
                } else {
                    Status::Ok
                }
            }
            None => Status::NoData,
        };
        let backlog_level = if l.blind_rate.mantissa > 0 {
            backlog_level
        } else {
            Status::NoData
        };
        if backlog_level == Status::Failing {
            let oldest = w.backlog.unwrap_or_default();
            m.findings.push(self.finding(
                "blind_review_backlog",
                format!(
                    "the oldest open blind-review case is {:.1} days old (limit {} days)",
                    oldest as f64 / DAY as f64,
                    l.max_backlog_days
                ),
                w.evidence(),
                self.now.saturating_sub(oldest) + u64::from(l.max_backlog_days) * DAY,
            ));
        }
        if accuracy_level == Status::Failing {
            m.findings.push(self.finding(
                "human_accuracy_low",
                format!(
                    "blind reviewers matched the outcome in {:.2} % of {} judged cases (limit {:.2} %)",
                    human_accuracy.map_or(0.0, Ratio::value) * 100.0,
                    labelled.len(),
                    l.min_human_accuracy.to_f64() * 100.0
                ),
                w.evidence(),
                w.since(self.now),
            ));
        }
        if review_level == Status::Failing {
            m.findings.push(self.finding(
                "review_time_below_minimum",
                format!(
                    "{below} of {} human reviews in the window took less than {} ms (limit {:.2} %)",
                    reviews.len(),
                    l.min_review_ms,
                    l.max_below_min_review_share.to_f64() * 100.0
                ),
                w.evidence(),
                w.since(self.now),
            ));
        }
        vec![accuracy_level, review_level, backlog_level]
    }

    pub(super) fn fm05(&self) -> ModeReport {
        let mut m = empty("FM-05", "integration cascade");
        m.figures = map(&[
            ("error_rate", Value::Null),
            ("timeout_rate", Value::Null),
            ("fallback_rate", Value::Null),
            ("p99_latency_ms", Value::Null),
            ("contract_mismatch_share", Value::Null),
        ]);
        let Some(w) = self.window() else { return m };
        let l = &w.limits;
        let all = rates(w.crossings());
        let p99 = nearest_rank(w.crossings().map(|c| c.latency_ms).collect(), 99);
        let mismatch = l.contract.as_ref().and_then(|c| {
            let off = w
                .crossings()
                .filter(|x| x.contract_version != c.input_schema_version)
                .count() as u64;
            Ratio::of(off, all.n)
        });
        let mut by_boundary: BTreeMap<String, Vec<&Crossing>> = BTreeMap::new();
        for c in w.crossings() {
            by_boundary.entry(c.boundary()).or_default().push(c);
        }
        let per_boundary: Map<String, Value> = by_boundary
            .into_iter()
            .map(|(b, cs)| {
                let r = rates(cs.into_iter());
                (
                    b,
                    json!({
                        "records": r.n,
                        "error_rate": num(r.error),
                        "timeout_rate": num(r.timeout),
                        "fallback_rate": num(r.fallback),
                    }),
                )
            })
            .collect();
        m.figures = map(&[
            ("error_rate", num(all.error)),
            ("timeout_rate", num(all.timeout)),
            ("fallback_rate", num(all.fallback)),
            ("p99_latency_ms", p99.map_or(Value::Null, |p| json!(p))),
            ("contract_mismatch_share", num(mismatch)),
            ("records", json!(all.n)),
            ("per_boundary", Value::Object(per_boundary)),
        ]);
        m.thresholds = map(&[
            ("max_error_rate", limit(l.max_error_rate)),
            ("max_timeout_rate", limit(l.max_timeout_rate)),
            ("max_fallback_rate", limit(l.max_fallback_rate)),
            ("max_contract_mismatch_share", json!(0)),
        ]);
        m.window = Some(w.view());
        let enough = all.n >= w.min_records();
        let error_level = level_if(enough, over(all.error, l.max_error_rate));
        let timeout_level = level_if(enough, over(all.timeout, l.max_timeout_rate));
        let fallback_level = level_if(enough, over(all.fallback, l.max_fallback_rate));
        // Any record under another contract version is a mismatch.
        let mismatch_level = match mismatch {
            Some(s) if enough && s.num > super::wide(0) => Status::Failing,
            Some(_) if enough => Status::Ok,
            _ => Status::NoData,
        };
        let undeclared = w.high_risk && l.contract.is_none() && (w.integration || all.n > 0);
        if error_level == Status::Failing || timeout_level == Status::Failing {
            m.findings.push(self.finding(
                "integration_error_rate",
                format!(
                    "of {} boundary records in the window {:.2} % failed and {:.2} % timed out (limits {:.2} %, {:.2} %)",
                    all.n,
                    all.error.map_or(0.0, Ratio::value) * 100.0,
                    all.timeout.map_or(0.0, Ratio::value) * 100.0,
                    l.max_error_rate.to_f64() * 100.0,
                    l.max_timeout_rate.to_f64() * 100.0
                ),
                w.evidence(),
                w.since(self.now),
            ));
        }
        if fallback_level == Status::Failing {
            m.findings.push(self.finding(
                "fallback_rate_high",
                format!(
                    "{:.2} % of {} boundary records fell back (limit {:.2} %)",
                    all.fallback.map_or(0.0, Ratio::value) * 100.0,
                    all.n,
                    l.max_fallback_rate.to_f64() * 100.0
                ),
                w.evidence(),
                w.since(self.now),
            ));
        }
        if mismatch_level == Status::Failing {
            let c = l.contract.as_ref().map(|c| c.input_schema_version.as_str());
            m.findings.push(self.finding(
                "contract_mismatch",
                format!(
                    "{:.2} % of {} boundary records spoke a contract version other than the registered {}",
                    mismatch.map_or(0.0, Ratio::value) * 100.0,
                    all.n,
                    c.unwrap_or_default()
                ),
                w.evidence(),
                w.since(self.now),
            ));
        }
        if undeclared {
            m.findings.push(self.finding(
                "contract_undeclared",
                format!(
                    "{} is high-risk and crosses integration boundaries without a registered interface contract (policy.integration.contract)",
                    self.system
                ),
                w.evidence(),
                self.now,
            ));
        }
        // A medium finding, not a crossed limit: at risk.
        let undeclared_level = if undeclared {
            Status::AtRisk
        } else {
            Status::NoData
        };
        m.status = counted(&[
            error_level,
            timeout_level,
            fallback_level,
            mismatch_level,
            undeclared_level,
        ]);
        m
    }

    /// FM-07's consistency figures and findings (the calibration ones are the caller's).
    pub(super) fn fm07_consistency(&self, m: &mut ModeReport) -> Vec<Status> {
        m.figures.insert("inconsistency_rate".into(), Value::Null);
        m.figures.insert("unvalidated_share".into(), Value::Null);
        let Some(w) = self.window() else {
            return Vec::new();
        };
        let l = &w.limits;
        let mut groups: BTreeMap<&[u8], BTreeSet<&[u8]>> = BTreeMap::new();
        let mut sizes: BTreeMap<&[u8], u64> = BTreeMap::new();
        for (_, e) in &w.rows {
            if let (Some(k), Some(p)) = (e.equivalence.as_deref(), e.prediction.as_deref()) {
                groups.entry(k).or_default().insert(p);
                *sizes.entry(k).or_default() += 1;
            }
        }
        let formed: Vec<&[u8]> = sizes
            .iter()
            .filter(|(_, n)| **n >= 2)
            .map(|(k, _)| *k)
            .collect();
        let inconsistent = formed.iter().filter(|k| groups[*k].len() > 1).count() as u64;
        let inconsistency = Ratio::of(inconsistent, formed.len() as u64);
        let n = w.rows.len() as u64;
        let unvalidated = w
            .rows
            .iter()
            .filter(|(_, e)| e.validated != Some(true))
            .count() as u64;
        let unvalidated_share = if w.high_risk {
            Ratio::of(unvalidated, n)
        } else {
            None
        };
        m.figures
            .insert("inconsistency_rate".into(), num(inconsistency));
        m.figures
            .insert("unvalidated_share".into(), num(unvalidated_share));
        m.figures
            .insert("equivalence_groups".into(), json!(formed.len()));
        m.thresholds.insert(
            "max_inconsistency_rate".into(),
            limit(l.max_inconsistency_rate),
        );
        m.thresholds.insert(
            "max_unvalidated_share".into(),
            limit(l.max_unvalidated_share),
        );
        if m.window.is_none() {
            m.window = Some(w.view());
        }
        if !w.consistency {
            return Vec::new();
        }
        let enough = w.enough();
        let inconsistency_level = level_if(
            enough && formed.len() as u64 >= MIN_SUBSET,
            over(inconsistency, l.max_inconsistency_rate),
        );
        let unvalidated_level = match unvalidated_share {
            Some(s) if enough && s.gt(l.max_unvalidated_share) => Status::Failing,
            Some(s) if enough && s.double().gt(l.max_unvalidated_share) => Status::AtRisk,
            Some(_) if enough => Status::Ok,
            _ => Status::NoData,
        };
        if inconsistency_level == Status::Failing {
            m.findings.push(self.finding(
                "inconsistent_answers",
                format!(
                    "{inconsistent} of {} groups of equivalent requests got different predictions (limit {:.2} %)",
                    formed.len(),
                    l.max_inconsistency_rate.to_f64() * 100.0
                ),
                w.evidence(),
                w.since(self.now),
            ));
        }
        if unvalidated_level == Status::Failing {
            m.findings.push(self.finding(
                "unvalidated_outputs",
                format!(
                    "{unvalidated} of the latest {n} decisions of this high-risk system had no passed validation step (limit {:.2} %)",
                    l.max_unvalidated_share.to_f64() * 100.0
                ),
                w.evidence(),
                w.since(self.now),
            ));
        }
        vec![inconsistency_level, unvalidated_level]
    }
}

/// Whether callers should stop routing to a system, from the evidence: the error rate
/// over the latest window's crossings (its decisions' `integration` and the latest
/// `window` boundary events since its first decision, up to now, so a system that
/// stopped answering opens it) against `integration.max_error_rate`.
pub struct Circuit {
    pub open: bool,
    pub error_rate: Option<f64>,
    pub window_size: u64,
}

/// The circuit of `system` (register entry `spec`) now.
pub fn circuit(
    store: &dyn Store,
    system: &str,
    spec: &systems::SystemSpec,
    deployed: Option<&str>,
) -> Result<Circuit, AppError> {
    let limits = spec.policy.evidence_limits();
    let w = limits.window as usize;
    let rows = match deployed {
        Some(v) => evidence::latest(store, system, v, u64::MAX, w)?,
        None => Vec::new(),
    };
    let from = rows.first().map_or(0, |r| r.0);
    // The latest `window` events since the window's first decision: a bounded read
    // however long the system has been failing.
    let events = boundaries::latest_between(store, system, from, u64::MAX, w)?;
    let crossings: Vec<&Crossing> = rows
        .iter()
        .filter_map(|(_, e)| e.crossing.as_ref())
        .chain(events.iter())
        .collect();
    let r = rates(crossings.into_iter());
    Ok(Circuit {
        open: r.error.is_some_and(|e| e.gt(limits.max_error_rate)),
        error_rate: r.error.map(Ratio::value),
        window_size: r.n,
    })
}
