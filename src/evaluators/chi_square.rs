//! Chi-square goodness of fit of the current counts against the baseline's shares
//! scaled to the current total: scipy's `chisquare(current, f_exp)`, bins − 1 degrees
//! of freedom. Drift when p ≤ alpha.

use serde_json::{json, Map, Value};

use super::input::{counts, object, same_len};
use super::{
    num, param_f64, resolve_params, Evaluation, Evaluator, EvaluatorInfo, ParamInfo, PassRule,
    Passes, TestKind,
};
use crate::error::AppError;

/// Passes when `p_value` is above `alpha`.
const PASSES: Passes = Passes::Above;

pub struct ChiSquare;

/// (statistic, p-value, degrees of freedom).
pub fn chisquare(baseline: &[f64], current: &[f64]) -> Result<(f64, f64, usize), AppError> {
    let (bt, ct): (f64, f64) = (baseline.iter().sum(), current.iter().sum());
    let mut stat = 0.0;
    for (i, (b, c)) in baseline.iter().zip(current).enumerate() {
        let e = b / bt * ct;
        if e <= 0.0 {
            return Err(AppError::invalid(
                format!("input.baseline_counts[{i}]"),
                "a bin with no baseline count has no expected frequency; merge it with a neighbour",
            ));
        }
        stat += (c - e) * (c - e) / e;
    }
    let df = baseline.len() - 1;
    let p = statrs::function::gamma::gamma_ur(df as f64 / 2.0, stat / 2.0);
    Ok((stat, p, df))
}

impl Evaluator for ChiSquare {
    fn name(&self) -> &'static str {
        "chi_square"
    }

    fn info(&self) -> EvaluatorInfo {
        EvaluatorInfo {
            name: "chi_square".into(),
            kind: Some(TestKind::Drift),
            description: "Chi-square goodness of fit of current category counts against the baseline's shares (scipy.stats.chisquare). Drift when p <= alpha.".into(),
            inputs: vec!["{baseline_counts: [n], current_counts: [n]}".into()],
            params: vec![ParamInfo { name: "alpha".into(), description: "Significance level".into(), default: json!(0.05) }],
            figures: vec!["statistic".into(), "p_value".into(), "dof".into()],
            pass_rule: PassRule::new("p_value", "alpha", PASSES),
        }
    }

    fn evaluate(&self, params: &Map<String, Value>, input: &Value) -> Result<Evaluation, AppError> {
        let params = resolve_params(&self.info(), params)?;
        let alpha = param_f64(&params, "alpha")?;
        let input = object(input)?;
        let (b, c) = (
            counts(input, "baseline_counts")?,
            counts(input, "current_counts")?,
        );
        same_len(b.len(), "baseline_counts", c.len(), "current_counts")?;
        if b.len() < 2 {
            return Err(AppError::invalid(
                "input.baseline_counts",
                "needs at least two categories",
            ));
        }
        let (stat, p, df) = chisquare(&b, &c)?;
        let mut figures = Map::new();
        figures.insert("statistic".into(), num(stat));
        figures.insert("p_value".into(), num(p));
        figures.insert("dof".into(), json!(df));
        Ok(Evaluation {
            kind: TestKind::Drift,
            params,
            figures,
            passed: PASSES.holds(p, alpha),
            external: None,
        })
    }
}
