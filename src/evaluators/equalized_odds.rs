//! Equalized odds difference, as fairlearn's `equalized_odds_difference`
//! (`method="between_groups"`): the larger of the between-group differences in true
//! positive rate and in false positive rate.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::input::{groups, labels, object, same_len};
use super::{
    num, param_f64, resolve_params, Evaluation, Evaluator, EvaluatorInfo, ParamInfo, PassRule,
    Passes, TestKind,
};
use crate::error::AppError;

/// Passes when `difference` is at or below `threshold`.
const PASSES: Passes = Passes::AtOrBelow;

pub struct EqualizedOdds;

/// Per group: (true positive rate, false positive rate). A group without positives (or
/// without negatives) has no TPR (FPR); fairlearn then reports NaN, which we refuse.
pub fn rates(
    y_true: &[bool],
    y_pred: &[bool],
    sensitive: &[String],
) -> Result<BTreeMap<String, (f64, f64)>, AppError> {
    let mut counts: BTreeMap<&str, [f64; 4]> = BTreeMap::new(); // tp, pos, fp, neg
    for ((t, p), g) in y_true.iter().zip(y_pred).zip(sensitive) {
        let c = counts.entry(g.as_str()).or_insert([0.0; 4]);
        if *t {
            c[1] += 1.0;
            c[0] += f64::from(u8::from(*p));
        } else {
            c[3] += 1.0;
            c[2] += f64::from(u8::from(*p));
        }
    }
    if counts.len() < 2 {
        return Err(AppError::invalid(
            "input.sensitive",
            "needs at least two groups",
        ));
    }
    let mut out = BTreeMap::new();
    for (g, [tp, pos, fp, neg]) in counts {
        if pos == 0.0 || neg == 0.0 {
            return Err(AppError::invalid(
                "input.y_true",
                format!(
                    "group {g:?} has no {} labels, so its {} is undefined",
                    if pos == 0.0 { "positive" } else { "negative" },
                    if pos == 0.0 {
                        "true positive rate"
                    } else {
                        "false positive rate"
                    }
                ),
            ));
        }
        out.insert(g.to_owned(), (tp / pos, fp / neg));
    }
    Ok(out)
}

fn spread(v: impl Iterator<Item = f64>) -> f64 {
    let (min, max) = super::min_max(v);
    max - min
}

impl Evaluator for EqualizedOdds {
    fn name(&self) -> &'static str {
        "equalized_odds"
    }

    fn info(&self) -> EvaluatorInfo {
        EvaluatorInfo {
            name: "equalized_odds".into(),
            kind: Some(TestKind::Bias),
            description: "Equalized odds difference (fairlearn, between_groups): max of the TPR and FPR differences between groups. Needs labels. Passes at or below the threshold.".into(),
            inputs: vec!["{y_true: [0|1], y_pred: [0|1], sensitive: [group]}".into()],
            params: vec![ParamInfo { name: "threshold".into(), description: "Largest acceptable difference".into(), default: json!(0.1) }],
            figures: vec!["difference".into(), "true_positive_rate_difference".into(), "false_positive_rate_difference".into()],
            pass_rule: PassRule::new("difference", "threshold", PASSES),
        }
    }

    fn evaluate(&self, params: &Map<String, Value>, input: &Value) -> Result<Evaluation, AppError> {
        let params = resolve_params(&self.info(), params)?;
        let threshold = param_f64(&params, "threshold")?;
        let input = object(input)?;
        let (yt, yp, s) = (
            labels(input, "y_true")?,
            labels(input, "y_pred")?,
            groups(input, "sensitive")?,
        );
        same_len(yt.len(), "y_true", yp.len(), "y_pred")?;
        same_len(yt.len(), "y_true", s.len(), "sensitive")?;
        let r = rates(&yt, &yp, &s)?;
        let tpr = spread(r.values().map(|x| x.0));
        let fpr = spread(r.values().map(|x| x.1));
        let diff = tpr.max(fpr);
        let mut figures = Map::new();
        figures.insert("difference".into(), num(diff));
        figures.insert("true_positive_rate_difference".into(), num(tpr));
        figures.insert("false_positive_rate_difference".into(), num(fpr));
        Ok(Evaluation {
            kind: TestKind::Bias,
            params,
            figures,
            passed: PASSES.holds(diff, threshold),
            external: None,
        })
    }
}
