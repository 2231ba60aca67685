//! Demographic parity difference, as fairlearn's `demographic_parity_difference`
//! (`method="between_groups"`): the largest group selection rate minus the smallest.

use serde_json::{json, Map, Value};

use super::disparate_impact::{rates_json, selection_rates, table_from};
use super::input::object;
use super::{
    num, param_f64, resolve_params, Evaluation, Evaluator, EvaluatorInfo, ParamInfo, PassRule,
    Passes, TestKind,
};
use crate::error::AppError;

/// Passes when `difference` is at or below `threshold`.
const PASSES: Passes = Passes::AtOrBelow;

pub struct DemographicParity;

impl Evaluator for DemographicParity {
    fn name(&self) -> &'static str {
        "demographic_parity"
    }

    fn info(&self) -> EvaluatorInfo {
        EvaluatorInfo {
            name: "demographic_parity".into(),
            kind: Some(TestKind::Bias),
            description: "Demographic parity difference (fairlearn, between_groups): max minus min group selection rate. Passes at or below the threshold.".into(),
            inputs: vec!["{y_pred: [0|1], sensitive: [group]}".into(), "{groups: {name: {selected, total}}}".into()],
            params: vec![ParamInfo { name: "threshold".into(), description: "Largest acceptable difference".into(), default: json!(0.1) }],
            figures: vec!["difference".into(), "selection_rates".into()],
            pass_rule: PassRule::new("difference", "threshold", PASSES),
        }
    }

    fn evaluate(&self, params: &Map<String, Value>, input: &Value) -> Result<Evaluation, AppError> {
        let params = resolve_params(&self.info(), params)?;
        let threshold = param_f64(&params, "threshold")?;
        let rates = selection_rates(&table_from(object(input)?)?);
        let (min, max) = super::min_max(rates.values().copied());
        let diff = max - min;
        let mut figures = Map::new();
        figures.insert("difference".into(), num(diff));
        figures.insert("selection_rates".into(), rates_json(&rates));
        Ok(Evaluation {
            kind: TestKind::Bias,
            params,
            figures,
            passed: PASSES.holds(diff, threshold),
            external: None,
        })
    }
}
