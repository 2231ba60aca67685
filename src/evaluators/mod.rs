//! Pluggable bias and drift evaluators. Each is one file implementing [`Evaluator`];
//! [`registry`] lists them. A test record binds an evaluation (figures, thresholds,
//! verdict) to a model version in the ledger.
//!
//! Figures are computed as f64 and written to the log as decimal text in Rust's
//! shortest round-trip form, so a verifier compares them as written, never re-derives
//! bytes from floats.

pub mod chi_square;
pub mod demographic_parity;
pub mod disparate_impact;
pub mod equalized_odds;
mod external;
pub mod input;
pub mod jensen_shannon;
pub mod ks;
pub mod ll144;
pub mod psi;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::error::AppError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TestKind {
    Bias,
    Drift,
}

impl TestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TestKind::Bias => "bias",
            TestKind::Drift => "drift",
        }
    }
}

/// One parameter of an evaluator.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ParamInfo {
    pub name: String,
    pub description: String,
    pub default: Value,
}

/// What `GET /v1/evaluators` lists.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EvaluatorInfo {
    pub name: String,
    pub kind: Option<TestKind>,
    pub description: String,
    /// The accepted shapes of `input`.
    pub inputs: Vec<String>,
    pub params: Vec<ParamInfo>,
    /// Names of the figures it reports.
    pub figures: Vec<String>,
    /// How its verdict follows from one figure and one parameter (absent for results
    /// recorded from another tool, whose verdict is the tool's).
    pub pass_rule: Option<PassRule>,
}

/// Which side of the threshold passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Passes {
    Below,
    AtOrBelow,
    Above,
    AtOrAbove,
}

impl Passes {
    /// Whether `value` passes against `threshold`.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Passes::Below => value < threshold,
            Passes::AtOrBelow => value <= threshold,
            Passes::Above => value > threshold,
            Passes::AtOrAbove => value >= threshold,
        }
    }
}

/// An evaluator's verdict: `figures[figure]` against `params[param]`, passing on the
/// side `passes` names. What a chart draws as the pass line of each test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PassRule {
    pub figure: String,
    pub param: String,
    pub passes: Passes,
}

impl PassRule {
    pub fn new(figure: &str, param: &str, passes: Passes) -> Option<Self> {
        Some(Self {
            figure: figure.into(),
            param: param.into(),
            passes,
        })
    }

    /// The recorded figure and threshold of a test's JSON `params` and `figures`.
    pub fn read(&self, params: &Value, figures: &Value) -> Option<(f64, f64)> {
        Some((
            figures[&self.figure].as_f64()?,
            params[&self.param].as_f64()?,
        ))
    }
}

/// The outcome of an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub kind: TestKind,
    /// Parameters as used (defaults filled in).
    pub params: Map<String, Value>,
    /// Figures (numbers, or maps of group → number).
    pub figures: Map<String, Value>,
    pub passed: bool,
    pub external: Option<ExternalRef>,
}

pub trait Evaluator: Send + Sync {
    fn name(&self) -> &'static str;
    fn info(&self) -> EvaluatorInfo;
    /// Evaluate `input` under `params`. Errors name the offending field (`input.current`).
    fn evaluate(&self, params: &Map<String, Value>, input: &Value) -> Result<Evaluation, AppError>;
}

pub struct Registry {
    evaluators: BTreeMap<&'static str, Box<dyn Evaluator>>,
}

impl Registry {
    pub fn get(&self, name: &str) -> Option<&dyn Evaluator> {
        self.evaluators.get(name).map(|b| b.as_ref())
    }

    pub fn all(&self) -> impl Iterator<Item = &dyn Evaluator> {
        self.evaluators.values().map(|b| b.as_ref())
    }
}

/// Every evaluator this build knows.
pub fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(|| {
        let list: Vec<Box<dyn Evaluator>> = vec![
            Box::new(psi::Psi),
            Box::new(ks::Ks),
            Box::new(chi_square::ChiSquare),
            Box::new(jensen_shannon::JensenShannon),
            Box::new(disparate_impact::DisparateImpact),
            Box::new(demographic_parity::DemographicParity),
            Box::new(equalized_odds::EqualizedOdds),
            Box::new(ll144::Ll144),
            Box::new(external::External),
        ];
        Registry {
            evaluators: list.into_iter().map(|e| (e.name(), e)).collect(),
        }
    })
}

/// A finite f64 as a CBOR decimal fraction (RFC 8949 §3.4.4, tag 4: `[exponent,
/// mantissa]`) of its shortest round-trip decimal form: exact, and no float on the log.
pub fn decimal(f: f64) -> serde_cbor::Value {
    crate::decimal::Decimal::from_f64(f)
        .unwrap_or(crate::decimal::Decimal::integer(0))
        .to_cbor()
}

/// A JSON value as CBOR without floats: non-integer numbers become decimal fractions.
pub fn json_to_cbor(v: &Value) -> serde_cbor::Value {
    use serde_cbor::Value as C;
    match v {
        Value::Null => C::Null,
        Value::Bool(b) => C::Bool(*b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                C::Integer(u.into())
            } else if let Some(i) = n.as_i64() {
                C::Integer(i.into())
            } else {
                decimal(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(s) => C::Text(s.clone()),
        Value::Array(a) => C::Array(a.iter().map(json_to_cbor).collect()),
        Value::Object(m) => C::Map(
            m.iter()
                .map(|(k, v)| (C::Text(k.clone()), json_to_cbor(v)))
                .collect(),
        ),
    }
}

/// Reject unknown parameters and fill in defaults.
pub fn resolve_params(
    info: &EvaluatorInfo,
    given: &Map<String, Value>,
) -> Result<Map<String, Value>, AppError> {
    for k in given.keys() {
        if !info.params.iter().any(|p| &p.name == k) {
            let known: Vec<&str> = info.params.iter().map(|p| p.name.as_str()).collect();
            return Err(AppError::invalid(
                format!("params.{k}"),
                format!(
                    "unknown parameter of {}; known: {}",
                    info.name,
                    known.join(", ")
                ),
            ));
        }
    }
    let mut out = Map::new();
    for p in &info.params {
        out.insert(
            p.name.clone(),
            given
                .get(&p.name)
                .cloned()
                .unwrap_or_else(|| p.default.clone()),
        );
    }
    Ok(out)
}

/// A parameter that must be a finite number.
pub fn param_f64(params: &Map<String, Value>, name: &str) -> Result<f64, AppError> {
    params
        .get(name)
        .and_then(Value::as_f64)
        .filter(|f| f.is_finite())
        .ok_or_else(|| AppError::invalid(format!("params.{name}"), "must be a finite number"))
}

/// The smallest and largest of some group rates.
pub fn min_max(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

/// A finite number as JSON (figures are never NaN or infinite).
pub fn num(f: f64) -> Value {
    serde_json::Number::from_f64(f)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// A result computed by another tool: the tool, its version and the report's digest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ExternalRef {
    pub tool: String,
    pub tool_version: String,
    /// SHA-256 of the full report, lowercase hex.
    pub report_sha256: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pass_rule_names_a_figure_and_a_parameter_of_its_evaluator() {
        for e in registry().all() {
            let info = e.info();
            let Some(rule) = info.pass_rule else {
                assert_eq!(
                    info.name, "external",
                    "only the external evaluator has no rule"
                );
                continue;
            };
            assert!(
                info.figures.contains(&rule.figure),
                "{}: {}",
                info.name,
                rule.figure
            );
            assert!(
                info.params.iter().any(|p| p.name == rule.param),
                "{}: {}",
                info.name,
                rule.param
            );
        }
    }
}
