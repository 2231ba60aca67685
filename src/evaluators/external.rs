//! Results computed by another tool, recorded as they are and marked as such.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::ExternalRef;
use super::{Evaluation, Evaluator, EvaluatorInfo, TestKind};
use crate::error::AppError;
use crate::fields::{parse_sha256, validate_text};

pub struct External;

/// Most metrics one external result may carry.
pub const MAX_METRICS: usize = 100;
/// Longest metric name, bytes.
pub const MAX_METRIC_NAME: usize = 100;
/// Longest text value of a metric, bytes.
pub const MAX_METRIC_TEXT: usize = 200;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExternalResult {
    tool: String,
    tool_version: String,
    kind: TestKind,
    metrics: Map<String, Value>,
    passed: bool,
    report_sha256: String,
}

impl Evaluator for External {
    fn name(&self) -> &'static str {
        "external"
    }

    fn info(&self) -> EvaluatorInfo {
        EvaluatorInfo {
            name: "external".into(),
            kind: None,
            description: "A result computed by another tool (for example Fairlearn, Evidently or an internal job), recorded as given with a digest of its full report.".into(),
            inputs: vec!["result: {tool, tool_version, kind: bias|drift, metrics: {name: number}, passed, report_sha256}".into()],
            params: vec![],
            figures: vec!["the tool's metrics, as given".into()],
            pass_rule: None,
        }
    }

    fn evaluate(
        &self,
        _params: &Map<String, Value>,
        input: &Value,
    ) -> Result<Evaluation, AppError> {
        let r: ExternalResult =
            crate::fields::parse_value(input.clone()).map_err(|e| e.within("result"))?;
        validate_text("result.tool", &r.tool, 200, true)?;
        validate_text("result.tool_version", &r.tool_version, 100, true)?;
        parse_sha256("result.report_sha256", &r.report_sha256)?;
        if r.metrics.is_empty() {
            return Err(AppError::invalid(
                "result.metrics",
                "must name at least one metric",
            ));
        }
        if r.metrics.len() > MAX_METRICS {
            return Err(AppError::invalid(
                "result.metrics",
                format!(
                    "has {} metrics; at most {MAX_METRICS} (they enter the entry; the full report is what report_sha256 names)",
                    r.metrics.len()
                ),
            ));
        }
        for (k, v) in &r.metrics {
            let field = format!("result.metrics.{k}");
            validate_text(&field, k, MAX_METRIC_NAME, true)?;
            let ok = match v {
                Value::Number(n) => n.as_f64().is_some_and(f64::is_finite),
                Value::Bool(_) => true,
                Value::String(s) => {
                    validate_text(&field, s, MAX_METRIC_TEXT, false)?;
                    true
                }
                _ => false,
            };
            if !ok {
                return Err(AppError::invalid(
                    format!("result.metrics.{k}"),
                    "must be a number, boolean or string",
                ));
            }
        }
        Ok(Evaluation {
            kind: r.kind,
            params: Map::new(),
            figures: r.metrics,
            passed: r.passed,
            external: Some(ExternalRef {
                tool: r.tool,
                tool_version: r.tool_version,
                report_sha256: r.report_sha256,
            }),
        })
    }
}
