//! Jensen–Shannon distance between two categorical distributions, natural log, as
//! scipy's `spatial.distance.jensenshannon`: sqrt((KL(p‖m) + KL(q‖m)) / 2), m = (p+q)/2.

use serde_json::{json, Map, Value};

use super::input::{counts, object, same_len};
use super::{
    num, param_f64, resolve_params, Evaluation, Evaluator, EvaluatorInfo, ParamInfo, PassRule,
    Passes, TestKind,
};
use crate::error::AppError;

/// Passes when `distance` is below `fail_at`.
const PASSES: Passes = Passes::Below;

pub struct JensenShannon;

fn rel_entr(x: f64, y: f64) -> f64 {
    if x == 0.0 {
        0.0
    } else {
        x * (x / y).ln()
    }
}

pub fn distance(p: &[f64], q: &[f64]) -> f64 {
    let (ps, qs): (f64, f64) = (p.iter().sum(), q.iter().sum());
    let mut left = 0.0;
    let mut right = 0.0;
    for (a, b) in p.iter().zip(q) {
        let (a, b) = (a / ps, b / qs);
        let m = (a + b) / 2.0;
        left += rel_entr(a, m);
        right += rel_entr(b, m);
    }
    ((left + right) / 2.0).sqrt()
}

impl Evaluator for JensenShannon {
    fn name(&self) -> &'static str {
        "jensen_shannon"
    }

    fn info(&self) -> EvaluatorInfo {
        EvaluatorInfo {
            name: "jensen_shannon".into(),
            kind: Some(TestKind::Drift),
            description: "Jensen-Shannon distance (natural log, as scipy's jensenshannon) between baseline and current category counts. Fails at or above fail_at.".into(),
            inputs: vec!["{baseline_counts: [n], current_counts: [n]}".into()],
            params: vec![ParamInfo { name: "fail_at".into(), description: "Distance at or above which the test fails".into(), default: json!(0.1) }],
            figures: vec!["distance".into()],
            pass_rule: PassRule::new("distance", "fail_at", PASSES),
        }
    }

    fn evaluate(&self, params: &Map<String, Value>, input: &Value) -> Result<Evaluation, AppError> {
        let params = resolve_params(&self.info(), params)?;
        let fail_at = param_f64(&params, "fail_at")?;
        let input = object(input)?;
        let (b, c) = (
            counts(input, "baseline_counts")?,
            counts(input, "current_counts")?,
        );
        same_len(b.len(), "baseline_counts", c.len(), "current_counts")?;
        let d = distance(&b, &c);
        let mut figures = Map::new();
        figures.insert("distance".into(), num(d));
        Ok(Evaluation {
            kind: TestKind::Drift,
            params,
            figures,
            passed: PASSES.holds(d, fail_at),
            external: None,
        })
    }
}
