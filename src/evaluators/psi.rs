//! Population stability index.
//!
//! PSI = Σ (cᵢ − bᵢ)·ln(cᵢ/bᵢ) over the bins' shares of the baseline (b) and current (c)
//! populations, a zero share taken as `epsilon` (0.0001). From raw samples, the bins are
//! the baseline's quantiles: edges at its `bins`-quantiles (numpy's linear percentile),
//! duplicates dropped, intervals closed on the right: (−∞, e₁], (e₁, e₂], …, (eₖ, +∞).
//! Shift: none below 0.1, minor from 0.1, major from 0.25; the test fails at `fail_at`
//! (default 0.25, a major shift).

use serde_json::{json, Map, Value};

use super::input::{counts, has, object, samples};
use super::{
    num, param_f64, resolve_params, Evaluation, Evaluator, EvaluatorInfo, ParamInfo, PassRule,
    Passes, TestKind,
};
use crate::error::AppError;

/// Passes when `psi` is below `fail_at`.
const PASSES: Passes = Passes::Below;

pub struct Psi;

/// numpy.percentile(x, q, method="linear") of sorted `x`, q in [0, 100].
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q / 100.0 * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let frac = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

/// Bin counts of `x` over right-closed intervals with inner `edges`.
pub fn bin_counts(x: &[f64], edges: &[f64]) -> Vec<f64> {
    let mut c = vec![0.0; edges.len() + 1];
    for v in x {
        c[edges.partition_point(|e| e < v)] += 1.0;
    }
    c
}

pub fn psi(baseline: &[f64], current: &[f64], eps: f64) -> f64 {
    let (bt, ct): (f64, f64) = (baseline.iter().sum(), current.iter().sum());
    baseline
        .iter()
        .zip(current)
        .map(|(b, c)| {
            let b = if *b == 0.0 { eps } else { b / bt };
            let c = if *c == 0.0 { eps } else { c / ct };
            (c - b) * (c / b).ln()
        })
        .sum()
}

impl Evaluator for Psi {
    fn name(&self) -> &'static str {
        "psi"
    }

    fn info(&self) -> EvaluatorInfo {
        EvaluatorInfo {
            name: "psi".into(),
            kind: Some(TestKind::Drift),
            description: "Population stability index over baseline and current histograms (same bins) or raw samples (quantile bins of the baseline). Shift: none < 0.1 <= minor < 0.25 <= major.".into(),
            inputs: vec!["{baseline_counts: [n], current_counts: [n]}".into(), "{baseline: [x], current: [x]}".into()],
            params: vec![
                ParamInfo { name: "bins".into(), description: "Quantile bins from the baseline, for raw samples".into(), default: json!(10) },
                ParamInfo { name: "epsilon".into(), description: "Share used for an empty bin".into(), default: json!(0.0001) },
                ParamInfo { name: "fail_at".into(), description: "PSI at or above which the test fails".into(), default: json!(0.25) },
            ],
            figures: vec!["psi".into(), "shift".into(), "bins".into()],
            pass_rule: PassRule::new("psi", "fail_at", PASSES),
        }
    }

    fn evaluate(&self, params: &Map<String, Value>, input: &Value) -> Result<Evaluation, AppError> {
        let params = resolve_params(&self.info(), params)?;
        let eps = param_f64(&params, "epsilon")?;
        let fail_at = param_f64(&params, "fail_at")?;
        if !(eps > 0.0 && eps < 1.0) {
            return Err(AppError::invalid(
                "params.epsilon",
                "must be between 0 and 1",
            ));
        }
        let input = object(input)?;
        let (b, c) = if has(input, "baseline_counts") || has(input, "current_counts") {
            let (b, c) = (
                counts(input, "baseline_counts")?,
                counts(input, "current_counts")?,
            );
            super::input::same_len(b.len(), "baseline_counts", c.len(), "current_counts")?;
            (b, c)
        } else {
            let bins = params
                .get("bins")
                .and_then(Value::as_u64)
                .filter(|b| (2..=1000).contains(b))
                .ok_or_else(|| {
                    AppError::invalid("params.bins", "must be an integer from 2 to 1000")
                })?;
            let mut base = samples(input, "baseline")?;
            let cur = samples(input, "current")?;
            base.sort_by(f64::total_cmp);
            let mut edges: Vec<f64> = (1..bins)
                .map(|k| percentile(&base, 100.0 * k as f64 / bins as f64))
                .collect();
            edges.dedup();
            (bin_counts(&base, &edges), bin_counts(&cur, &edges))
        };
        let value = psi(&b, &c, eps);
        let shift = if value >= 0.25 {
            "major"
        } else if value >= 0.1 {
            "minor"
        } else {
            "none"
        };
        let mut figures = Map::new();
        figures.insert("psi".into(), num(value));
        figures.insert("shift".into(), json!(shift));
        figures.insert("bins".into(), json!(b.len()));
        Ok(Evaluation {
            kind: TestKind::Drift,
            params,
            figures,
            passed: PASSES.holds(value, fail_at),
            external: None,
        })
    }
}
