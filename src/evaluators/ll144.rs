//! NYC Local Law 144 impact ratios (DCWP rules, 6 RCNY § 5-300): for each category, its
//! selection rate (or scoring rate: the share scoring above the whole sample's median)
//! divided by the highest category's rate. Categories with less than 2 % of the sample
//! may be excluded from the calculation; they are still reported, marked excluded.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::input::{group_table, groups, has, object, same_len, samples};
use super::psi::percentile;
use super::{
    num, param_f64, resolve_params, Evaluation, Evaluator, EvaluatorInfo, ParamInfo, PassRule,
    Passes, TestKind,
};
use crate::error::AppError;

/// Passes when `min_impact_ratio` is at or above `threshold`.
const PASSES: Passes = Passes::AtOrAbove;

pub struct Ll144;

impl Evaluator for Ll144 {
    fn name(&self) -> &'static str {
        "nyc_ll144"
    }

    fn info(&self) -> EvaluatorInfo {
        EvaluatorInfo {
            name: "nyc_ll144".into(),
            kind: Some(TestKind::Bias),
            description: "NYC Local Law 144 bias audit impact-ratio table: selection-rate variant from {groups}, scoring-rate variant from {scores, categories} (rate of scoring above the sample median). Categories under min_share are reported but excluded. Passes when every included ratio is at or above the threshold.".into(),
            inputs: vec!["{groups: {category: {selected, total}}}".into(), "{scores: [x], categories: [category]}".into()],
            params: vec![
                ParamInfo { name: "threshold".into(), description: "Lowest acceptable impact ratio".into(), default: json!(0.8) },
                ParamInfo { name: "min_share".into(), description: "Categories below this share of the sample are excluded".into(), default: json!(0.02) },
            ],
            figures: vec!["variant".into(), "min_impact_ratio".into(), "categories".into()],
            pass_rule: PassRule::new("min_impact_ratio", "threshold", PASSES),
        }
    }

    fn evaluate(&self, params: &Map<String, Value>, input: &Value) -> Result<Evaluation, AppError> {
        let params = resolve_params(&self.info(), params)?;
        let threshold = param_f64(&params, "threshold")?;
        let min_share = param_f64(&params, "min_share")?;
        let input = object(input)?;
        let (variant, table): (&str, BTreeMap<String, (f64, f64)>) = if has(input, "groups") {
            ("selection_rate", group_table(input, "groups")?)
        } else {
            let scores = samples(input, "scores")?;
            let cats = groups(input, "categories")?;
            same_len(scores.len(), "scores", cats.len(), "categories")?;
            let mut sorted = scores.clone();
            sorted.sort_by(f64::total_cmp);
            let median = percentile(&sorted, 50.0);
            let mut t: BTreeMap<String, (f64, f64)> = BTreeMap::new();
            for (s, c) in scores.iter().zip(&cats) {
                let e = t.entry(c.clone()).or_insert((0.0, 0.0));
                e.0 += f64::from(u8::from(*s > median));
                e.1 += 1.0;
            }
            if t.len() < 2 {
                return Err(AppError::invalid(
                    "input.categories",
                    "needs at least two categories",
                ));
            }
            ("scoring_rate", t)
        };
        let total: f64 = table.values().map(|(_, t)| t).sum();
        let included = |t: f64| t / total >= min_share;
        let best = table
            .values()
            .filter(|(_, t)| included(*t))
            .map(|(s, t)| s / t)
            .fold(0.0, f64::max);
        let mut cats = Map::new();
        let mut min_ratio = f64::INFINITY;
        for (c, (s, t)) in &table {
            let rate = s / t;
            let inc = included(*t);
            let ratio = if best > 0.0 { rate / best } else { 1.0 };
            if inc {
                min_ratio = min_ratio.min(ratio);
            }
            cats.insert(c.clone(), json!({"count": t, "rate": num(rate), "impact_ratio": num(ratio), "share": num(t / total), "excluded": !inc}));
        }
        if !min_ratio.is_finite() {
            return Err(AppError::invalid(
                "input",
                "no category reaches min_share of the sample",
            ));
        }
        let mut figures = Map::new();
        figures.insert("variant".into(), json!(variant));
        figures.insert("min_impact_ratio".into(), num(min_ratio));
        figures.insert("categories".into(), Value::Object(cats));
        Ok(Evaluation {
            kind: TestKind::Bias,
            params,
            figures,
            passed: PASSES.holds(min_ratio, threshold),
            external: None,
        })
    }
}
