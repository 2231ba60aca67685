//! Decisions: logged only against a registered, active system's deployed version;
//! idempotent per `(system, decision_id)`; personal fields committed, not written.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::vault::{self, DecisionVault, Opening};
use super::{
    append, cbor_packed, draft, get, parse_sha256, parse_time, validate_ident, validate_text,
    DECISION_RECORDED,
};
use crate::decimal::Decimal;
use crate::error::{AppError, ErrorCode};
use crate::log::{Command, Prepared, Staging};
use crate::storage::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OversightAction {
    Accepted,
    Overridden,
    Escalated,
}

/// Human oversight of one decision (AI Act Art. 14).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HumanReview {
    pub reviewer: String,
    pub action: OversightAction,
    /// How long the human looked, in milliseconds.
    pub review_ms: u64,
}

/// A decision as a pipeline logs it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// The caller's idempotency key, unique per system.
    pub decision_id: String,
    pub model_version: String,
    /// When the decision was made (RFC 3339).
    pub occurred_at: String,
    /// A pseudonymous reference to the data subject. Personal: committed, kept in the vault.
    pub subject_ref: String,
    /// SHA-256 of the decision's inputs, lowercase hex. Personal (a digest of few inputs
    /// is found by trying them): committed, kept in the vault.
    pub input_sha256: String,
    /// The inputs themselves (optional). Personal: committed, kept in the vault.
    #[serde(default)]
    pub inputs: Option<serde_json::Value>,
    /// The model's output (any JSON).
    pub output: serde_json::Value,
    /// Model confidence in [0, 1].
    #[serde(default)]
    pub confidence: Option<f64>,
    /// Reason codes / explanation.
    #[serde(default)]
    pub reasons: Vec<String>,
    #[serde(default)]
    pub human_review: Option<HumanReview>,
    /// The figures the model optimises as stand-ins for the business outcome (name →
    /// number, e.g. `{"click_probability": 0.82}`), at most 16, each within ±10^9: the
    /// failure-mode report correlates them with the outcomes' business metrics.
    #[serde(default)]
    #[schema(value_type = Option<BTreeMap<String, f64>>)]
    pub proxy: Option<BTreeMap<String, Decimal>>,
    /// The output was chosen by randomised exploration, not by the model (FM-02).
    #[serde(default)]
    pub exploration: Option<bool>,
    /// What the model would have recommended where something else was done (any JSON;
    /// FM-02 compares its prediction field with the output's).
    #[serde(default)]
    pub counterfactual_output: Option<serde_json::Value>,
    /// The caller's opaque id of a group of semantically equivalent requests (e.g.
    /// paraphrases), never derived from personal data (FM-07).
    #[serde(default)]
    pub equivalence_key: Option<String>,
    /// The validation step the output went through (FM-07).
    #[serde(default)]
    pub validation: Option<Validation>,
    /// The integration boundary the decision crossed (FM-05).
    #[serde(default)]
    pub integration: Option<Integration>,
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
    pub status: super::evidence::CrossingStatus,
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

    pub fn crossing(&self) -> super::evidence::Crossing {
        super::evidence::Crossing {
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
    /// blind review (`blind::selected` of the subject's salt and the policy's rate),
    /// present whenever the system's policy has a blind-review rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blind_review: Option<bool>,
}

/// A validated decision, ready to be committed with fresh salts.
#[derive(Debug, Clone)]
pub struct ValidDecision {
    req: DecisionRequest,
    occurred_at: u64,
    input_sha256: [u8; 32],
    /// The inputs' canonical JSON text (computed once: checked, committed, opened).
    inputs: Option<String>,
    output: String,
    confidence: Option<serde_cbor::Value>,
    counterfactual: Option<String>,
}

/// The salts of a decision's committed fields, one fresh 32-byte salt each.
#[derive(Debug, Clone, Copy)]
pub struct Salts {
    pub subject: [u8; 32],
    pub inputs: [u8; 32],
    pub input_sha256: [u8; 32],
}

impl Salts {
    pub fn fresh() -> Self {
        Self {
            subject: vault::fresh_salt(),
            inputs: vault::fresh_salt(),
            input_sha256: vault::fresh_salt(),
        }
    }
}

/// How a decision's inputs digest is sealed: committed (every decision written now), or
/// in the clear as entries written before the commitment hold it (only to match such a
/// decision sent again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DigestSeal {
    Committed,
    Clear,
}

impl DecisionRequest {
    /// Check every field; `occurred_at` may lie no later than `latest_time` (unix µs:
    /// the clock plus the allowed skew), else retention would never reach the decision
    /// and it would head every newest-first trail.
    pub fn validate(self, latest_time: u64) -> Result<ValidDecision, AppError> {
        validate_ident("decision_id", &self.decision_id, 128)?;
        validate_ident("model_version", &self.model_version, 64)?;
        let occurred_at = parse_time("occurred_at", &self.occurred_at)?;
        if occurred_at > latest_time {
            return Err(AppError::invalid(
                "occurred_at",
                format!(
                    "lies in the future: at most {} (the server's clock plus --max-clock-skew-secs)",
                    super::rfc3339(latest_time)
                ),
            ));
        }
        validate_text("subject_ref", &self.subject_ref, 256, true)?;
        let input_sha256 = parse_sha256("input_sha256", &self.input_sha256)?;
        let output =
            String::from_utf8(vault::canonical(&self.output)?).map_err(AppError::internal)?;
        if output.len() > 64 * 1024 {
            return Err(AppError::invalid(
                "output",
                "must be at most 64 KiB of JSON",
            ));
        }
        let inputs = self
            .inputs
            .as_ref()
            .map(vault::canonical_text)
            .transpose()?;
        if inputs.as_ref().is_some_and(|i| i.len() > 1 << 20) {
            return Err(AppError::invalid("inputs", "must be at most 1 MiB of JSON"));
        }
        let confidence = match self.confidence {
            Some(c) if !(0.0..=1.0).contains(&c) => {
                return Err(AppError::invalid(
                    "confidence",
                    "must be a number between 0 and 1",
                ))
            }
            Some(c) => Some(crate::evaluators::decimal(c)),
            None => None,
        };
        if self.reasons.len() > 100 {
            return Err(AppError::invalid("reasons", "at most 100 reasons"));
        }
        for (i, r) in self.reasons.iter().enumerate() {
            validate_text(&format!("reasons[{i}]"), r, 500, true)?;
        }
        if let Some(h) = &self.human_review {
            validate_text("human_review.reviewer", &h.reviewer, 200, true)?;
        }
        if let Some(p) = &self.proxy {
            validate_metrics("proxy", p)?;
        }
        let counterfactual = self
            .counterfactual_output
            .as_ref()
            .map(vault::canonical_text)
            .transpose()?;
        if counterfactual.as_ref().is_some_and(|c| c.len() > 64 * 1024) {
            return Err(AppError::invalid(
                "counterfactual_output",
                "must be at most 64 KiB of JSON",
            ));
        }
        if let Some(k) = &self.equivalence_key {
            validate_ident("equivalence_key", k, 128)?;
        }
        if let Some(v) = &self.validation {
            validate_ident("validation.method", &v.method, 64)?;
            if v.sources.len() > 20 {
                return Err(AppError::invalid(
                    "validation.sources",
                    "at most 20 sources",
                ));
            }
            for (i, src) in v.sources.iter().enumerate() {
                validate_text(&format!("validation.sources[{i}]"), src, 500, true)?;
            }
        }
        if let Some(i) = &self.integration {
            i.validate("integration")?;
        }
        Ok(ValidDecision {
            req: self,
            occurred_at,
            input_sha256,
            inputs,
            output,
            confidence,
            counterfactual,
        })
    }
}

impl ValidDecision {
    pub fn decision_id(&self) -> &str {
        &self.req.decision_id
    }

    /// The entry body and the vault row, under the given salts.
    fn seal(
        &self,
        system: &str,
        salts: Salts,
        digest: DigestSeal,
        expires_at: u64,
        blind_review: Option<bool>,
    ) -> Result<(DecisionBody, DecisionVault), AppError> {
        let bytes = |c: [u8; 32]| serde_bytes::ByteBuf::from(c.to_vec());
        let subject_text =
            vault::canonical_text(&serde_json::Value::String(self.req.subject_ref.clone()))?;
        let (subject, subject_open) = vault::seal_canonical(salts.subject, subject_text);
        let (inputs, inputs_open) = match &self.inputs {
            Some(text) => {
                let (c, o) = vault::seal_canonical(salts.inputs, text.clone());
                (Some(bytes(c)), Some(o))
            }
            None => (None, None),
        };
        let (input_sha256, input_sha256_commitment, digest_open) = match digest {
            DigestSeal::Committed => {
                let text = vault::canonical_hex(&self.input_sha256);
                let (c, o) = vault::seal_canonical(salts.input_sha256, text);
                (None, Some(bytes(c)), Some(o))
            }
            DigestSeal::Clear => (
                Some(serde_bytes::ByteBuf::from(self.input_sha256.to_vec())),
                None,
                None,
            ),
        };
        let body = DecisionBody {
            decision_id: self.req.decision_id.clone(),
            model_version: self.req.model_version.clone(),
            occurred_at: self.occurred_at,
            subject: subject.to_vec(),
            input_sha256,
            input_sha256_commitment,
            inputs,
            output: self.output.clone(),
            confidence: self.confidence.clone(),
            reasons: self.req.reasons.clone(),
            human_review: self.req.human_review.clone(),
            proxy: self.req.proxy.clone(),
            exploration: self.req.exploration,
            counterfactual_output: self.counterfactual.clone(),
            equivalence_key: self.req.equivalence_key.clone(),
            validation: self.req.validation.clone(),
            integration: self.req.integration.clone(),
            blind_review,
        };
        let vault_row = DecisionVault {
            system: system.to_owned(),
            subject: subject_open,
            inputs: inputs_open,
            expires_at,
            occurred_at: self.occurred_at,
            input_sha256: digest_open,
        };
        Ok((body, vault_row))
    }
}

/// The largest magnitude of a proxy or business metric.
pub const MAX_METRIC: f64 = 1e9;

/// Most metrics a decision's `proxy` or an outcome's `business` may name (the windows
/// keep a correlation per pair of them).
pub const MAX_METRICS: usize = 16;

/// Check a map of named metrics (`proxy`, `business`): at most [`MAX_METRICS`], names
/// as ids, values within ±10^9.
pub fn validate_metrics(field: &str, m: &BTreeMap<String, Decimal>) -> Result<(), AppError> {
    if m.len() > MAX_METRICS {
        return Err(AppError::invalid(
            field,
            format!("at most {MAX_METRICS} metrics"),
        ));
    }
    for (name, v) in m {
        validate_ident(&format!("{field}.{name}"), name, 64)?;
        if v.to_f64().abs() > MAX_METRIC {
            return Err(AppError::invalid(
                format!("{field}.{name}"),
                "must lie within -1e9 and 1e9",
            ));
        }
    }
    Ok(())
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

/// The digest a prediction and a label are compared by: the first 16 bytes of SHA-256
/// of the value's RFC 8785 canonical JSON.
pub fn value_digest(v: &serde_json::Value) -> Result<Vec<u8>, AppError> {
    Ok(Sha256::digest(vault::canonical(v)?)[..16].to_vec())
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

fn fingerprint(body: &serde_cbor::Value) -> Vec<u8> {
    Sha256::digest(serde_cbor::to_vec(body).expect("bodies encode")).to_vec()
}

pub(crate) use super::keys::{id_key, trail_key, trail_prefix};

const DAY_MICROS: u64 = 86_400_000_000;

/// The projection rows [`record_command`] reads (the system and the decision id), so
/// a shared store can fetch those of a whole batch at once.
pub fn record_reads(system: &str, decision_id: &str) -> Vec<Vec<u8>> {
    vec![
        super::systems::system_key(system),
        id_key(system, decision_id),
    ]
}

/// What logging a decision needs of its system's register record.
#[derive(Clone)]
struct Gate {
    retention_days: u32,
    /// The version in service, if any.
    deployed: Option<String>,
    retired: bool,
    /// `Some` when the policy has `outcomes`: then the prediction field, if named.
    outcomes: Option<Option<String>>,
    /// Whether decisions keep evidence rows (the policy has a failure-mode key), and
    /// the prediction field they digest.
    evidence: Option<Option<String>>,
    /// The blind-review rate, when the policy sets one.
    blind_rate: Option<Decimal>,
}

thread_local! {
    /// The writer thread's last decoded gate, with the stored record it came from: the
    /// decisions of a batch decode their system's record once, not each (it was 7 % of
    /// the writer's time), and a record that changed (other bytes) is decoded afresh.
    static GATE: std::cell::RefCell<Option<(Vec<u8>, Gate)>> = const { std::cell::RefCell::new(None) };
}

/// The gate of `system` as its register record stands (decoded once per record).
fn read_gate(s: &Staging<'_>, system: &str) -> Result<Option<Gate>, AppError> {
    let Some(raw) = s.get(&super::systems::system_key(system))? else {
        return Ok(None);
    };
    if let Some(g) = GATE.with_borrow(|m| {
        m.as_ref()
            .filter(|(r, _)| *r == raw)
            .map(|(_, g)| g.clone())
    }) {
        return Ok(Some(g));
    }
    let sys: super::systems::SystemRecord = super::uncbor(&raw)?;
    let g = Gate {
        retention_days: sys.spec.retention_days,
        deployed: sys.deployed.clone(),
        retired: super::systems::refuse_retired(system, &sys).is_err(),
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

/// The gate of `system`: refused when it is not registered or is retired.
fn gate(s: &Staging<'_>, system: &str) -> Result<Gate, AppError> {
    let Some(g) = read_gate(s, system)? else {
        return Err(AppError::new(
            ErrorCode::SystemNotRegistered,
            format!("no AI system {system:?} in the register"),
        ));
    };
    if g.retired {
        return Err(super::systems::retired_error(system));
    }
    Ok(g)
}

/// Log a decision: the gate (registered, active system; its deployed version), then
/// idempotency (same decision again: the original entry; a different one: 409).
pub fn record_command(system: String, d: ValidDecision, salts: Salts) -> Command<AppError> {
    Box::new(move |s| {
        let sys = gate(s, &system)?;
        let expires_at = d.occurred_at.max(s.time()) + u64::from(sys.retention_days) * DAY_MICROS;
        if let Some(existing) = get::<DecisionRef>(s, &id_key(&system, d.decision_id()))? {
            // Re-seal the request with the salts of the recorded one: equal bodies mean the
            // same decision sent again.
            let Some(raw) = s.vault_get(&vault::decision_key(existing.index))? else {
                return Err(AppError::field(
                    ErrorCode::DecisionConflict,
                    "decision_id",
                    "a decision with this id was recorded and its personal data has since been erased; it cannot be matched",
                ));
            };
            let old: DecisionVault = super::uncbor(&raw)?;
            let recorded = Salts {
                subject: old.subject.salt(),
                inputs: old.inputs.as_ref().map_or(salts.inputs, Opening::salt),
                input_sha256: old
                    .input_sha256
                    .as_ref()
                    .map_or(salts.input_sha256, Opening::salt),
            };
            let digest = match old.input_sha256 {
                Some(_) => DigestSeal::Committed,
                None => DigestSeal::Clear,
            };
            // The blind draw follows the recorded salt; a rate set since may have
            // changed whether one was drawn, so each recorded form is tried.
            let drawn = sys
                .blind_rate
                .map(|r| super::blind::selected(&recorded.subject, r));
            for blind in [drawn, None, Some(false), Some(true)] {
                let (body, _) = d.seal(&system, recorded, digest, expires_at, blind)?;
                if fingerprint(&super::to_value(&body)?) == existing.fingerprint {
                    return Ok(Prepared::Existing(existing.index));
                }
            }
            return Err(AppError::field(
                ErrorCode::DecisionConflict,
                "decision_id",
                format!(
                    "decision {:?} was recorded (entry {}) with different content",
                    d.decision_id(),
                    existing.index
                ),
            ));
        }
        let version = &d.req.model_version;
        if sys.deployed.as_deref() != Some(version.as_str()) {
            return Err(match super::models::load(s, &system, version) {
                Err(_) => AppError::field(
                    ErrorCode::ModelVersionNotRegistered,
                    "model_version",
                    format!("no version {version:?} of {system:?}"),
                ),
                Ok(v) => AppError::field(
                    match v.status {
                        super::models::VersionStatus::Rejected => ErrorCode::ModelVersionRejected,
                        super::models::VersionStatus::Retired => ErrorCode::ModelVersionRetired,
                        _ => ErrorCode::ModelVersionNotDeployed,
                    },
                    "model_version",
                    format!(
                        "version {version:?} is {} (in service: {})",
                        super::models::status_name(v.status),
                        sys.deployed.as_deref().unwrap_or("none")
                    ),
                ),
            });
        }
        let blind = sys
            .blind_rate
            .map(|r| super::blind::selected(&salts.subject, r));
        let (body, vault_row) = d.seal(&system, salts, DigestSeal::Committed, expires_at, blind)?;
        let index = s.index();
        s.vault_put(vault::decision_key(index), cbor_packed(&vault_row));
        s.vault_put(
            vault::subject_key(&d.req.subject_ref, d.occurred_at, index),
            cbor_packed(&SubjectRow {
                system: system.clone(),
            }),
        );
        s.vault_put(vault::expiry_key(expires_at, index), Vec::new());
        append(s, vec![draft(DECISION_RECORDED, &system, &body)?])
    })
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

pub(crate) fn project(
    system: &str,
    body: &serde_cbor::Value,
    index: u64,
    time: u64,
    s: &mut Staging<'_>,
) -> Result<(), AppError> {
    // The four fields the indexes need, read in place (decoding the whole body meant a
    // deep copy of it per decision).
    let b = IndexedFields::of(body)?;
    let gate = read_gate(s, system)?;
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
            super::blind::open_case(s, system, index, b.decision_id, time);
        }
        super::evidence::put(s, system, b.model_version, index, &e);
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
    super::activity::project(s, system, b.occurred_at, b.model_version, b.human_review)
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

/// What the decision-window modes keep of a decision (see [`super::evidence`]).
fn evidence_of(
    b: &IndexedFields<'_>,
    field: Option<&str>,
    prediction: Option<serde_bytes::ByteBuf>,
    time: u64,
) -> Result<super::evidence::Evidence, AppError> {
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
        .map(super::from_value::<Integration>)
        .transpose()?
        .map(|i| i.crossing());
    let equivalence = match b.present("equivalence_key") {
        Some(Value::Text(k)) => Some(super::evidence::equivalence_digest(k)),
        _ => None,
    };
    let validated = b
        .present("validation")
        .map(super::from_value::<Validation>)
        .transpose()?
        .map(|v| v.passed);
    Ok(super::evidence::Evidence {
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
    Ok(super::uncbor::<DecisionRef>(&raw)?.index)
}

/// The vault row of the decision at `index`, if not erased.
pub fn opening(store: &dyn Store, index: u64) -> Result<Option<DecisionVault>, AppError> {
    store
        .vault_get(&vault::decision_key(index))?
        .map(|b| super::uncbor(&b))
        .transpose()
}

/// What a decision trail is filtered by.
#[derive(Debug, Clone, Default)]
pub struct TrailFilter {
    pub model_version: Option<String>,
    /// Only decisions about this subject (through the vault's subject index).
    pub subject: Option<String>,
    /// occurred_at bounds, unix µs, inclusive.
    pub from: Option<u64>,
    pub to: Option<u64>,
    /// Only decisions whose output's canonical JSON has this digest.
    pub outcome: Option<Vec<u8>>,
    /// Only decisions with (`true`) or without (`false`) an outcome recorded.
    pub labelled: Option<bool>,
    pub newest_first: bool,
    /// Continue after this (occurred_at, index).
    pub after: Option<(u64, u64)>,
    pub limit: usize,
}

/// Whether the decision at `index` passes the `labelled` filter.
fn labelled_as(
    store: &dyn Store,
    system: &str,
    index: u64,
    labelled: Option<bool>,
) -> Result<bool, AppError> {
    let Some(want) = labelled else {
        return Ok(true);
    };
    let has = super::outcomes::truth(store, system, index)?.is_some_and(|t| !t.outcomes.is_empty());
    Ok(has == want)
}

/// A position in a trail: (occurred_at, entry index).
pub type TrailPosition = (u64, u64);

/// Rows scanned at most for one page (filters that match rarely stop here, with a cursor).
const MAX_SCAN: usize = 100_000;

/// One page of a system's decision trail, from the trail index (never the log):
/// the entry indices and, unless the trail is exhausted, where the next page starts.
pub fn trail(
    store: &dyn Store,
    system: &str,
    f: &TrailFilter,
) -> Result<(Vec<u64>, Option<TrailPosition>), AppError> {
    let prefix = trail_prefix(system);
    let bound = |t: u64| {
        let mut k = prefix.clone();
        k.extend_from_slice(&t.to_be_bytes());
        k
    };
    let mut lo = f.from.map(bound).unwrap_or_else(|| prefix.clone());
    let mut hi = match f.to.and_then(|t| t.checked_add(1)) {
        Some(t) => bound(t),
        None => super::keys::prefix_end(prefix.clone()),
    };
    if let Some((t, i)) = f.after {
        let mut k = bound(t);
        k.extend_from_slice(&i.to_be_bytes());
        if f.newest_first {
            hi = hi.min(k);
        } else {
            k.push(0);
            lo = lo.max(k);
        }
    }
    if let Some(sub) = &f.subject {
        return subject_trail(store, system, sub, f);
    }
    let mut out = Vec::new();
    let mut scanned = 0usize;
    let mut last: Option<(u64, u64)> = None;
    while out.len() < f.limit && scanned < MAX_SCAN {
        let rows = store.range(&lo, &hi, f.newest_first, (f.limit * 2).max(64))?;
        if rows.is_empty() {
            return Ok((out, None));
        }
        for (k, v) in &rows {
            scanned += 1;
            let tail = &k[prefix.len()..];
            let occurred = u64::from_be_bytes(tail[..8].try_into().map_err(AppError::internal)?);
            let row: TrailRow = super::uncbor(v)?;
            last = Some((occurred, row.index));
            let keep = f
                .model_version
                .as_ref()
                .is_none_or(|m| *m == row.model_version)
                && f.outcome.as_ref().is_none_or(|o| *o == row.output_digest)
                && labelled_as(store, system, row.index, f.labelled)?;
            if keep {
                out.push(row.index);
                if out.len() == f.limit {
                    break;
                }
            }
        }
        let (lk, _) = rows.last().expect("non-empty");
        if out.len() < f.limit {
            if f.newest_first {
                hi = lk.clone();
            } else {
                lo = lk.clone();
                lo.push(0);
            }
        }
    }
    Ok((out, last))
}

/// A trail filtered by subject: a range of the subject's index in the vault (its keys
/// are ordered by time of decision), bounded by the time filter and the cursor, each
/// row of this system checked against its trail row. A page reads its own rows (and
/// the subject's rows in other systems in between), never the whole subject.
fn subject_trail(
    store: &dyn Store,
    system: &str,
    subject: &str,
    f: &TrailFilter,
) -> Result<(Vec<u64>, Option<TrailPosition>), AppError> {
    let prefix = vault::subject_prefix(subject);
    let at = |t: u64, i: u64| [prefix.as_slice(), &t.to_be_bytes(), &i.to_be_bytes()].concat();
    let mut lo = at(f.from.unwrap_or(0), 0);
    let mut hi = match f.to.and_then(|t| t.checked_add(1)) {
        Some(t) => at(t, 0),
        None => [prefix.as_slice(), &[0xff; 17]].concat(),
    };
    if let Some((t, i)) = f.after {
        if f.newest_first {
            hi = hi.min(at(t, i));
        } else {
            let mut k = at(t, i);
            k.push(0);
            lo = lo.max(k);
        }
    }
    let mut out = Vec::new();
    let mut scanned = 0usize;
    // A subject's rows are mostly of one system: a page usually takes one read.
    let chunk = f.limit + 1;
    let mut last = None;
    // Trail rows are read only for the filters that need them.
    let check_rows = f.model_version.is_some() || f.outcome.is_some() || f.labelled.is_some();
    while lo < hi && scanned < MAX_SCAN {
        let rows = store.vault_range(&lo, &hi, f.newest_first, chunk)?;
        let exhausted = rows.len() < chunk;
        for (k, v) in &rows {
            scanned += 1;
            let pos = vault::subject_position(k)
                .ok_or_else(|| AppError::internal("malformed subject index key"))?;
            last = Some(pos);
            if f.newest_first {
                hi = k.clone();
            } else {
                lo = k.clone();
                lo.push(0);
            }
            if super::uncbor::<SubjectRow>(v)?.system != system {
                continue;
            }
            let keep = !check_rows || {
                match store.get(&trail_key(system, pos.0, pos.1))? {
                    Some(raw) => {
                        let row: TrailRow = super::uncbor(&raw)?;
                        f.model_version
                            .as_ref()
                            .is_none_or(|m| *m == row.model_version)
                            && f.outcome.as_ref().is_none_or(|o| *o == row.output_digest)
                            && labelled_as(store, system, pos.1, f.labelled)?
                    }
                    None => false,
                }
            };
            if keep {
                out.push(pos.1);
                if out.len() == f.limit {
                    return Ok((out, Some(pos)));
                }
            }
        }
        if exhausted {
            return Ok((out, None));
        }
    }
    // Stopped at the scan bound: the cursor says where to go on.
    Ok((out, last))
}

/// A page of a subject's decisions: (entry index, system) of each, and where the next
/// page starts unless this one is the last.
pub type SubjectPage = (Vec<(u64, String)>, Option<TrailPosition>);

/// Every decision about one data subject, across systems, in order of the time of
/// decision (then of recording): the (index, system) of each after the cursor
/// position, at most `limit`, and the next cursor position when more follow.
pub fn by_subject(
    store: &dyn Store,
    subject_ref: &str,
    after: Option<TrailPosition>,
    limit: usize,
) -> Result<SubjectPage, AppError> {
    // Keys are the subject's prefix, time and entry index: read only this page (and one
    // more row, to know whether another page follows).
    let prefix = vault::subject_prefix(subject_ref);
    let lo = match after {
        Some((t, i)) => [prefix.as_slice(), &t.to_be_bytes(), &i.to_be_bytes(), &[0]].concat(),
        None => prefix.clone(),
    };
    let hi = [prefix.as_slice(), &[0xff; 17]].concat();
    let mut rows = store.vault_range(&lo, &hi, false, limit + 1)?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let mut out = Vec::with_capacity(rows.len());
    let mut last = None;
    for (k, v) in rows {
        let pos = vault::subject_position(&k)
            .ok_or_else(|| AppError::internal("malformed subject index key"))?;
        let row: SubjectRow = super::uncbor(&v)?;
        out.push((pos.1, row.system));
        last = Some(pos);
    }
    Ok((out, if more { last } else { None }))
}
