//! What a decision entry holds and what it leaves in the projections: its body, the id
//! row (idempotency and what outcome windows need), the trail row, the evidence row and
//! blind case when the policy asks, the day's activity; and the gate as the register
//! record gives it.

use crate::decimal::Decimal;
use crate::error::{AppError, ErrorCode};
use crate::log::{Applied, Staging};
use crate::register::projections::evidence::value_digest;
use crate::register::projections::vault;
use crate::register::projections::vault::DecisionVault;
use crate::register::{cbor_packed, get, validate_ident};
use crate::storage::Store;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Human oversight of one decision (AI Act Art. 14).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HumanReview {
    pub reviewer: String,
    pub action: OversightAction,
    /// How long the human looked, in milliseconds.
    pub review_ms: u64,
}

/// How an output was validated before use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Validation {
    /// e.g. `retrieval-grounding`, `rule-check`, `human`.
    pub method: String,
    pub passed: bool,
    /// What the output was checked against (document ids, rule ids), at most 20.
    #[serde(default)]
    pub sources: Vec<String>,
}

/// One crossing of an integration boundary (a decision's `integration`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Integration {
    pub upstream: String,
    pub downstream: String,
    /// The interface contract version the caller spoke (compared with the registered
    /// contract's `input_schema_version`).
    pub contract_version: String,
    pub status: evidence::CrossingStatus,
    pub latency_ms: u64,
}
impl Integration {
    /// Check the fields, named under `field` (`integration.upstream`; bare when empty).
    pub fn validate(&self, field: &str) -> Result<(), AppError> {
        let name = |n: &str| {
            if field.is_empty() {
                n.to_owned()
            } else {
                format!("{field}.{n}")
            }
        };
        validate_ident(&name("upstream"), &self.upstream, 128)?;
        validate_ident(&name("downstream"), &self.downstream, 128)?;
        validate_ident(&name("contract_version"), &self.contract_version, 64)?;
        if self.latency_ms > 86_400_000 {
            return Err(AppError::invalid(
                name("latency_ms"),
                "must be at most 86400000 (a day)",
            ));
        }
        Ok(())
    }

    pub fn crossing(&self) -> evidence::Crossing {
        evidence::Crossing {
            upstream: self.upstream.clone(),
            downstream: self.downstream.clone(),
            contract_version: self.contract_version.clone(),
            status: self.status,
            latency_ms: self.latency_ms,
        }
    }
}

/// The body of `decision.recorded`. No personal value and no float: `subject`,
/// `input_sha256_commitment` and `inputs` are commitments, `output` is RFC 8785
/// canonical JSON text, `confidence` decimal text.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DecisionBody {
    pub decision_id: String,
    pub model_version: String,
    /// Unix µs.
    pub occurred_at: u64,
    #[serde(with = "serde_bytes")]
    pub subject: Vec<u8>,
    /// The inputs' digest in the clear: only entries written before it was committed
    /// hold it (they are never rewritten); new entries have the commitment instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_sha256: Option<serde_bytes::ByteBuf>,
    /// The commitment to `input_sha256` (its hex text as a JSON string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_sha256_commitment: Option<serde_bytes::ByteBuf>,
    pub inputs: Option<serde_bytes::ByteBuf>,
    pub output: String,
    /// A decimal fraction (CBOR tag 4).
    pub confidence: Option<serde_cbor::Value>,
    pub reasons: Vec<String>,
    pub human_review: Option<HumanReview>,
    /// Proxy metrics as decimal fractions (absent when none were sent, as in every
    /// entry written before they existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<BTreeMap<String, Decimal>>,
    // The fields below are absent when not sent (as in every entry written before
    // they existed), so older bodies and their fingerprints are unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exploration: Option<bool>,
    /// RFC 8785 canonical JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterfactual_output: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equivalence_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<Validation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration: Option<Integration>,
    /// Set by the writer, never by the caller: `true` when the decision was drawn for
    /// blind review (the writer's draw from the subject's salt and the policy's rate),
    /// present whenever the system's policy has a blind-review rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blind_review: Option<bool>,
}

/// Decimal places at which confidences are summed.
pub const CONFIDENCE_PLACES: u32 = 12;
/// Decimal places at which proxy and business metrics are summed.
pub const METRIC_PLACES: u32 = 9;

/// Metrics as the windows sum them: (name, value × 10^9), by name.
pub fn fixed_metrics(m: &BTreeMap<String, Decimal>) -> Vec<(String, i64)> {
    m.iter()
        .map(|(k, v)| (k.clone(), v.fixed_i64(METRIC_PLACES)))
        .collect()
}

/// What the outcome windows need of a decision, kept with its id row (no extra row per
/// decision) when the system's policy has `outcomes`: its version and time, the
/// prediction's digest (when the output has the policy's prediction field), the
/// confidence at 12 decimal places and the proxy metrics at 9.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Truth {
    pub model_version: String,
    pub occurred_at: u64,
    #[serde(default)]
    pub prediction: Option<serde_bytes::ByteBuf>,
    #[serde(default)]
    pub confidence: Option<i64>,
    #[serde(default)]
    pub proxy: Vec<(String, i64)>,
}

/// The projection row of a decision id: where it is and a fingerprint of its body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DecisionRef {
    pub index: u64,
    #[serde(with = "serde_bytes")]
    pub fingerprint: Vec<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truth: Option<Truth>,
}

/// The id row of `decision_id` of `system`, if recorded.
pub fn reference(
    s: &Staging<'_>,
    system: &str,
    decision_id: &str,
) -> Result<Option<DecisionRef>, AppError> {
    get(s, &id_key(system, decision_id))
}

/// A row of the trail index (by system and time of decision).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TrailRow {
    pub index: u64,
    pub model_version: String,
    /// The first 8 bytes of SHA-256 of the output's canonical JSON, for outcome filters.
    #[serde(with = "serde_bytes")]
    pub output_digest: Vec<u8>,
}

/// The outcome filter's digest of an output's canonical JSON text.
pub fn output_digest(canonical_output: &str) -> Vec<u8> {
    Sha256::digest(canonical_output.as_bytes())[..8].to_vec()
}

/// The value of the vault's subject index row (its key holds the time and index).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SubjectRow {
    pub system: String,
}
pub(crate) fn fingerprint(body: &serde_cbor::Value) -> Vec<u8> {
    Sha256::digest(serde_cbor::to_vec(body).expect("bodies encode")).to_vec()
}
use crate::register::projections::activity::OversightAction;
pub(crate) use crate::register::projections::keys::id_key;
use crate::register::projections::keys::trail_key;
use crate::register::projections::{activity, blind, evidence, keys, systems};

/// What logging a decision needs of its system's register record.
#[derive(Clone)]
pub(crate) struct Gate {
    pub(crate) retention_days: u32,
    /// The version in service, if any.
    pub(crate) deployed: Option<String>,
    pub(crate) retired: bool,
    /// `Some` when the policy has `outcomes`: then the prediction field, if named.
    pub(crate) outcomes: Option<Option<String>>,
    /// Whether decisions keep evidence rows (the policy has a failure-mode key), and
    /// the prediction field they digest.
    pub(crate) evidence: Option<Option<String>>,
    /// The blind-review rate, when the policy sets one.
    pub(crate) blind_rate: Option<Decimal>,
}

thread_local! {
    /// The writer thread's last decoded gate, with the stored record it came from: the
    /// decisions of a batch decode their system's record once, not each (it was 7 % of
    /// the writer's time), and a record that changed (other bytes) is decoded afresh.
    static GATE: std::cell::RefCell<Option<(Vec<u8>, Gate)>> = const { std::cell::RefCell::new(None) };
}

/// The gate of `system` as its register record stands (decoded once per record).
pub(crate) fn read_gate(s: &Staging<'_>, system: &str) -> Result<Option<Gate>, AppError> {
    let Some(raw) = s.get(&keys::system_key(system))? else {
        return Ok(None);
    };
    if let Some(g) = GATE.with_borrow(|m| {
        m.as_ref()
            .filter(|(r, _)| *r == raw)
            .map(|(_, g)| g.clone())
    }) {
        return Ok(Some(g));
    }
    let sys: systems::SystemRecord = crate::register::uncbor(&raw)?;
    let g = Gate {
        retention_days: sys.spec.retention_days,
        deployed: sys.deployed.clone(),
        retired: systems::refuse_retired(system, &sys).is_err(),
        outcomes: sys
            .spec
            .policy
            .outcomes
            .as_ref()
            .map(|o| o.prediction_field.clone()),
        evidence: sys
            .spec
            .policy
            .keeps_evidence()
            .then(|| sys.spec.policy.prediction_field().map(str::to_owned)),
        blind_rate: sys.spec.policy.blind_review.as_ref().and_then(|b| b.rate),
    };
    GATE.set(Some((raw, g.clone())));
    Ok(Some(g))
}

/// The fields of a decision body that its index rows hold.
struct IndexedFields<'a> {
    decision_id: &'a str,
    model_version: &'a str,
    occurred_at: u64,
    output: &'a str,
    human_review: Option<(OversightAction, u64)>,
    confidence: Option<&'a serde_cbor::Value>,
    proxy: Option<&'a serde_cbor::Value>,
    /// The whole body, for the fields only some projections read ([`Self::present`]).
    map: &'a std::collections::BTreeMap<serde_cbor::Value, serde_cbor::Value>,
}
impl<'a> IndexedFields<'a> {
    fn of(body: &'a serde_cbor::Value) -> Result<Self, AppError> {
        use serde_cbor::Value;
        let Value::Map(m) = body else {
            return Err(AppError::internal("decision body is not a map"));
        };
        let field = |name: &str| {
            m.get(&Value::Text(name.to_owned())).ok_or_else(|| {
                AppError::internal(format!("entry body does not decode: no field {name}"))
            })
        };
        let text = |name: &str| match field(name)? {
            Value::Text(t) => Ok(t.as_str()),
            _ => Err(AppError::internal(format!(
                "decision body: {name} is not text"
            ))),
        };
        let occurred_at = match field("occurred_at")? {
            Value::Integer(n) => u64::try_from(*n).map_err(AppError::internal)?,
            _ => {
                return Err(AppError::internal(
                    "decision body: occurred_at is not an integer",
                ))
            }
        };
        let human_review = match m.get(&Value::Text("human_review".to_owned())) {
            None | Some(Value::Null) => None,
            Some(Value::Map(h)) => {
                let action = match h.get(&Value::Text("action".to_owned())) {
                    Some(Value::Text(a)) if a == "accepted" => OversightAction::Accepted,
                    Some(Value::Text(a)) if a == "overridden" => OversightAction::Overridden,
                    Some(Value::Text(a)) if a == "escalated" => OversightAction::Escalated,
                    _ => return Err(AppError::internal("decision body: human_review.action")),
                };
                let ms = match h.get(&Value::Text("review_ms".to_owned())) {
                    Some(Value::Integer(n)) => u64::try_from(*n).map_err(AppError::internal)?,
                    _ => return Err(AppError::internal("decision body: human_review.review_ms")),
                };
                Some((action, ms))
            }
            Some(_) => {
                return Err(AppError::internal(
                    "decision body: human_review is not a map",
                ))
            }
        };
        let mut fields = Self {
            decision_id: text("decision_id")?,
            model_version: text("model_version")?,
            occurred_at,
            output: text("output")?,
            human_review,
            confidence: None,
            proxy: None,
            map: m,
        };
        fields.confidence = fields.present("confidence");
        fields.proxy = fields.present("proxy");
        Ok(fields)
    }

    /// Field `name` of the body, unless absent or null.
    fn present(&self, name: &str) -> Option<&'a serde_cbor::Value> {
        self.map
            .get(&serde_cbor::Value::Text(name.to_owned()))
            .filter(|v| !matches!(v, serde_cbor::Value::Null))
    }
}
pub(crate) fn project(e: &Applied<'_>, s: &mut Staging<'_>) -> Result<(), AppError> {
    let Applied {
        body, index, time, ..
    } = *e;
    let Some(system) = e.system else {
        return Ok(());
    };
    // The four fields the indexes need, read in place (decoding the whole body meant a
    // deep copy of it per decision).
    let b = IndexedFields::of(body)?;
    // The gate the command read for this entry's system (once per decision); a rebuild
    // reads it here.
    let gate = match s.take_handed::<Gate>() {
        Some(g) => Some(g),
        None => read_gate(s, system)?,
    };
    // The prediction's digest, read once for the truth and the evidence (both take the
    // policy's one prediction field).
    let field = gate
        .as_ref()
        .and_then(|g| g.evidence.as_ref())
        .and_then(|f| f.as_deref());
    let prediction = prediction_of(b.output, field)?;
    let truth = gate
        .as_ref()
        .is_some_and(|g| g.outcomes.is_some())
        .then(|| truth_of(&b, prediction.clone()));
    if gate.as_ref().is_some_and(|g| g.evidence.is_some()) {
        let e = evidence_of(&b, field, prediction, time)?;
        if e.blind {
            let judged = field
                .map(|f| blind::JsonType::of_field(b.output, f))
                .transpose()?
                .flatten();
            blind::open_case(s, system, index, b.decision_id, time, judged);
        }
        evidence::put(s, system, b.model_version, index, &e);
    }
    s.put(
        id_key(system, b.decision_id),
        cbor_packed(&DecisionRef {
            index,
            fingerprint: fingerprint(body),
            truth,
        }),
    );
    s.put(
        trail_key(system, b.occurred_at, index),
        cbor_packed(&TrailRow {
            index,
            model_version: b.model_version.to_owned(),
            output_digest: output_digest(b.output),
        }),
    );
    activity::project(s, system, b.occurred_at, b.model_version, b.human_review)
}

/// The prediction field's digest of an output's canonical JSON text, if it has one.
fn prediction_of(
    output: &str,
    field: Option<&str>,
) -> Result<Option<serde_bytes::ByteBuf>, AppError> {
    let Some(f) = field else { return Ok(None) };
    let output: serde_json::Value = serde_json::from_str(output).map_err(AppError::internal)?;
    output
        .get(f)
        .map(|v| value_digest(v).map(serde_bytes::ByteBuf::from))
        .transpose()
}

/// What the decision-window modes keep of a decision (see [`crate::register::projections::evidence`]).
fn evidence_of(
    b: &IndexedFields<'_>,
    field: Option<&str>,
    prediction: Option<serde_bytes::ByteBuf>,
    time: u64,
) -> Result<evidence::Evidence, AppError> {
    use serde_cbor::Value;
    let flag = |v: Option<&Value>| matches!(v, Some(Value::Bool(true)));
    let counterfactual_differs = match b.present("counterfactual_output") {
        Some(Value::Text(t)) => prediction_of(t, field)?
            .zip(prediction.as_ref())
            .map(|(c, p)| c != *p),
        _ => None,
    };
    let crossing = b
        .present("integration")
        .map(crate::register::from_value::<Integration>)
        .transpose()?
        .map(|i| i.crossing());
    let equivalence = match b.present("equivalence_key") {
        Some(Value::Text(k)) => Some(evidence::equivalence_digest(k)),
        _ => None,
    };
    let validated = b
        .present("validation")
        .map(crate::register::from_value::<Validation>)
        .transpose()?
        .map(|v| v.passed);
    Ok(evidence::Evidence {
        time,
        prediction,
        exploration: flag(b.present("exploration")),
        counterfactual_differs,
        review_ms: b.human_review.map(|(_, ms)| ms),
        blind: flag(b.present("blind_review")),
        crossing,
        equivalence,
        validated,
    })
}

/// What the outcome windows keep of a decision (see [`Truth`]).
fn truth_of(b: &IndexedFields<'_>, prediction: Option<serde_bytes::ByteBuf>) -> Truth {
    let confidence = b
        .confidence
        .and_then(Decimal::from_cbor)
        .map(|c| c.fixed_i64(CONFIDENCE_PLACES));
    let proxy = match b.proxy {
        Some(serde_cbor::Value::Map(m)) => m
            .iter()
            .filter_map(|(k, v)| match (k, Decimal::from_cbor(v)) {
                (serde_cbor::Value::Text(k), Some(d)) => {
                    Some((k.clone(), d.fixed_i64(METRIC_PLACES)))
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Truth {
        model_version: b.model_version.to_owned(),
        occurred_at: b.occurred_at,
        prediction,
        confidence,
        proxy,
    }
}

/// The entry index of a decision.
pub fn find(store: &dyn Store, system: &str, decision_id: &str) -> Result<u64, AppError> {
    let raw = store.get(&id_key(system, decision_id))?.ok_or_else(|| {
        AppError::new(
            ErrorCode::DecisionNotFound,
            format!("no decision {decision_id:?} of {system:?}"),
        )
    })?;
    Ok(crate::register::uncbor::<DecisionRef>(&raw)?.index)
}

/// The vault row of the decision at `index`, if not erased.
pub fn opening(store: &dyn Store, index: u64) -> Result<Option<DecisionVault>, AppError> {
    store
        .vault_get(&vault::decision_key(index))?
        .map(|b| crate::register::uncbor(&b))
        .transpose()
}
