//! Logging a decision: the request as callers send it, checked field by field and sealed
//! (personal fields committed, their openings for the vault); the gate (a registered,
//! active system and its deployed version, read once per decision and handed on to the
//! entry's projector); idempotency per `(system, decision_id)`.

use crate::decimal::Decimal;
use crate::error::{AppError, ErrorCode};
use crate::log::{Command, Prepared, Staging};
use crate::register::commands::blind;
use crate::register::projections::decisions::{
    fingerprint, id_key, read_gate, DecisionBody, DecisionRef, Gate, HumanReview, Integration,
    SubjectRow, Validation,
};
use crate::register::projections::vault::{self, DecisionVault, Opening};
use crate::register::projections::{keys, models, systems};
use crate::register::{
    append, cbor_packed, draft, get, parse_sha256, parse_time, validate_ident, validate_text,
    DECISION_RECORDED,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

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
                    crate::register::rfc3339(latest_time)
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
const DAY_MICROS: u64 = 86_400_000_000;

/// The projection rows [`record_command`] reads (the system and the decision id), so
/// a shared store can fetch those of a whole batch at once.
pub fn record_reads(system: &str, decision_id: &str) -> Vec<Vec<u8>> {
    vec![keys::system_key(system), id_key(system, decision_id)]
}

/// The gate of `system`: refused when it is not registered or is retired.
pub(crate) fn gate(s: &Staging<'_>, system: &str) -> Result<Gate, AppError> {
    let Some(g) = read_gate(s, system)? else {
        return Err(AppError::new(
            ErrorCode::SystemNotRegistered,
            format!("no AI system {system:?} in the register"),
        ));
    };
    if g.retired {
        return Err(systems::retired_error(system));
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
            let old: DecisionVault = crate::register::uncbor(&raw)?;
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
                .map(|r| blind::selected(&recorded.subject, r));
            for blind in [drawn, None, Some(false), Some(true)] {
                let (body, _) = d.seal(&system, recorded, digest, expires_at, blind)?;
                if fingerprint(&crate::register::to_value(&body)?) == existing.fingerprint {
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
            return Err(match models::load(s, &system, version) {
                Err(_) => AppError::field(
                    ErrorCode::ModelVersionNotRegistered,
                    "model_version",
                    format!("no version {version:?} of {system:?}"),
                ),
                Ok(v) => AppError::field(
                    match v.status {
                        models::VersionStatus::Rejected => ErrorCode::ModelVersionRejected,
                        models::VersionStatus::Retired => ErrorCode::ModelVersionRetired,
                        _ => ErrorCode::ModelVersionNotDeployed,
                    },
                    "model_version",
                    format!(
                        "version {version:?} is {} (in service: {})",
                        models::status_name(v.status),
                        sys.deployed.as_deref().unwrap_or("none")
                    ),
                ),
            });
        }
        let blind = sys.blind_rate.map(|r| blind::selected(&salts.subject, r));
        s.hand_on(sys);
        let (body, vault_row) = d.seal(&system, salts, DigestSeal::Committed, expires_at, blind)?;
        let index = s.index();
        s.vault_put(vault::decision_key(index), cbor_packed(&vault_row));
        s.vault_put(
            keys::subject_key(&d.req.subject_ref, d.occurred_at, index),
            cbor_packed(&SubjectRow {
                system: system.clone(),
            }),
        );
        s.vault_put(keys::expiry_key(expires_at, index), Vec::new());
        append(vec![draft(DECISION_RECORDED, &system, &body)?])
    })
}
