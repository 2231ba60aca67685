//! Disparate impact: the lowest group selection rate over the highest, against the
//! four-fifths rule (threshold 0.8 by default).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::input::{group_table, groups, has, labels, object, same_len, tally};
use super::{
    num, param_f64, resolve_params, Evaluation, Evaluator, EvaluatorInfo, ParamInfo, PassRule,
    Passes, TestKind,
};
use crate::error::AppError;

/// Passes when `ratio` is at or above `threshold`.
const PASSES: Passes = Passes::AtOrAbove;

pub struct DisparateImpact;

/// Selection rate of each group from `{group: (selected, total)}`.
pub fn selection_rates(table: &BTreeMap<String, (f64, f64)>) -> BTreeMap<String, f64> {
    table.iter().map(|(g, (s, t))| (g.clone(), s / t)).collect()
}

pub fn rates_json(rates: &BTreeMap<String, f64>) -> Value {
    Value::Object(rates.iter().map(|(g, r)| (g.clone(), num(*r))).collect())
}

/// The group table from `{groups: {...}}` or from `{y_pred, sensitive}`.
pub fn table_from(input: &Map<String, Value>) -> Result<BTreeMap<String, (f64, f64)>, AppError> {
    if has(input, "groups") {
        return group_table(input, "groups");
    }
    let (y, s) = (labels(input, "y_pred")?, groups(input, "sensitive")?);
    same_len(y.len(), "y_pred", s.len(), "sensitive")?;
    tally(&y, &s)
}

impl Evaluator for DisparateImpact {
    fn name(&self) -> &'static str {
        "disparate_impact"
    }

    fn info(&self) -> EvaluatorInfo {
        EvaluatorInfo {
            name: "disparate_impact".into(),
            kind: Some(TestKind::Bias),
            description: "Disparate impact ratio: lowest group selection rate / highest. Passes at or above the threshold (four-fifths rule).".into(),
            inputs: vec!["{groups: {name: {selected, total}}}".into(), "{y_pred: [0|1], sensitive: [group]}".into()],
            params: vec![ParamInfo { name: "threshold".into(), description: "Lowest acceptable ratio".into(), default: json!(0.8) }],
            figures: vec!["ratio".into(), "selection_rates".into()],
            pass_rule: PassRule::new("ratio", "threshold", PASSES),
        }
    }

    fn evaluate(&self, params: &Map<String, Value>, input: &Value) -> Result<Evaluation, AppError> {
        let params = resolve_params(&self.info(), params)?;
        let threshold = param_f64(&params, "threshold")?;
        let rates = selection_rates(&table_from(object(input)?)?);
        let (min, max) = super::min_max(rates.values().copied());
        let ratio = if max > 0.0 { min / max } else { 1.0 };
        let mut figures = Map::new();
        figures.insert("ratio".into(), num(ratio));
        figures.insert("selection_rates".into(), rates_json(&rates));
        Ok(Evaluation {
            kind: TestKind::Bias,
            params,
            figures,
            passed: PASSES.holds(ratio, threshold),
            external: None,
        })
    }
}
