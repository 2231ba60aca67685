//! AI systems in the register: registration, revisions (nothing is overwritten: each
//! revision is an entry, and the register can be read as it stood at any time), and
//! the periodic review of each register entry.

use crate::decimal::Decimal;
use crate::error::{AppError, ErrorCode};
use crate::log::{Applied, Staging};
use crate::register::{
    cbor, from_value, get, validate_slug, validate_text, REGISTER_REVIEWED, SYSTEM_REGISTERED,
    SYSTEM_REVISED,
};
use crate::storage::Store;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// EU AI Act risk classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RiskClass {
    /// Art. 5 practices: refused by the register.
    Prohibited,
    High,
    Limited,
    Minimal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum SystemStatus {
    #[default]
    Active,
    Retired,
}

/// The named person answerable for the system's compliance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    pub name: String,
    pub email: String,
}

/// What a model version must show before deployment, and how fresh its tests must stay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Evaluator names whose latest test of a version must pass before it is deployed.
    #[serde(default)]
    pub required_tests: Vec<String>,
    /// How old the deployed version's latest bias test may be, in days.
    #[serde(default)]
    pub max_bias_test_age_days: Option<u32>,
    /// How old the deployed version's latest drift test may be, in days.
    #[serde(default)]
    pub max_drift_test_age_days: Option<u32>,
    /// A deployed version that logs no decision for this many hours is a logging gap.
    #[serde(default)]
    pub max_decision_gap_hours: Option<u32>,
    /// Ground truth: which output field is the prediction, and the limits of the
    /// failure-mode figures computed from outcomes (FM-01, FM-04, FM-07).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcomes: Option<OutcomePolicy>,
    /// The human backstop (FM-03): the share of decisions the writer draws for blind
    /// review, and the limits of the reviews.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blind_review: Option<BlindReviewPolicy>,
    /// Feedback loops (FM-02): the exploration the system must keep, how far the
    /// outputs' entropy may fall against the previous version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<FeedbackPolicy>,
    /// Integration boundaries (FM-05): the interface contract and the rates allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration: Option<IntegrationPolicy>,
    /// Consistency (FM-07): answers to equivalent requests, validation of outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<ConsistencyPolicy>,
}

/// Blind review (FM-03). Every key optional; defaults in brackets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct BlindReviewPolicy {
    /// The share of decisions the writer selects for blind review (0), at most 9
    /// decimal places: drawn from the decision's fresh subject salt, so no caller can
    /// predict or steer it, and recorded in the decision's entry.
    #[serde(default)]
    #[schema(value_type = Option<f64>)]
    pub rate: Option<Decimal>,
    /// Ordinary human reviews shorter than this are below the minimum (0).
    #[serde(default)]
    pub min_review_ms: Option<u64>,
    /// The oldest open blind case may be this many days old (14).
    #[serde(default)]
    pub max_backlog_days: Option<u32>,
    /// Blind judgments matching the outcome's label, at least (0.8).
    #[serde(default)]
    #[schema(value_type = Option<f64>)]
    pub min_human_accuracy: Option<Decimal>,
    /// Human reviews below `min_review_ms`, at most this share (0.2).
    #[serde(default)]
    #[schema(value_type = Option<f64>)]
    pub max_below_min_review_share: Option<Decimal>,
}

/// Feedback loops (FM-02).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct FeedbackPolicy {
    /// Decisions chosen by randomised exploration, at least this share (0).
    #[serde(default)]
    #[schema(value_type = Option<f64>)]
    pub min_exploration_share: Option<Decimal>,
    /// The prediction's normalised entropy may fall this much below the previous
    /// version's (0.2).
    #[serde(default)]
    #[schema(value_type = Option<f64>)]
    pub max_entropy_drop: Option<Decimal>,
}

/// A system's interface contract with the systems around it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InterfaceContract {
    /// SHA-256 of the input schema, lowercase hex.
    pub input_schema_sha256: String,
    /// The contract version records are compared with (`contract_version`).
    pub input_schema_version: String,
    pub output_schema_version: String,
    pub timeout_ms: u64,
    /// What callers get when the system does not answer in time.
    pub fallback: String,
}

/// Integration boundaries (FM-05).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct IntegrationPolicy {
    /// Records with status `error`, at most this share (0.02); past it the circuit opens.
    #[serde(default)]
    #[schema(value_type = Option<f64>)]
    pub max_error_rate: Option<Decimal>,
    /// (0.02)
    #[serde(default)]
    #[schema(value_type = Option<f64>)]
    pub max_timeout_rate: Option<Decimal>,
    /// (0.05)
    #[serde(default)]
    #[schema(value_type = Option<f64>)]
    pub max_fallback_rate: Option<Decimal>,
    #[serde(default)]
    pub contract: Option<InterfaceContract>,
}

/// Consistency of answers (FM-07).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyPolicy {
    /// Equivalence groups whose predictions differ, at most this share (0.05).
    #[serde(default)]
    #[schema(value_type = Option<f64>)]
    pub max_inconsistency_rate: Option<Decimal>,
    /// Decisions without a passed validation step, at most this share (0); counted for
    /// high-risk systems.
    #[serde(default)]
    #[schema(value_type = Option<f64>)]
    pub max_unvalidated_share: Option<Decimal>,
}

/// The limits of the decision-window modes in force (the policy's, or the defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceLimits {
    pub window: u32,
    pub blind_rate: Decimal,
    pub min_review_ms: u64,
    pub max_backlog_days: u32,
    pub min_human_accuracy: Decimal,
    pub max_below_min_review_share: Decimal,
    pub min_exploration_share: Decimal,
    pub max_entropy_drop: Decimal,
    pub max_error_rate: Decimal,
    pub max_timeout_rate: Decimal,
    pub max_fallback_rate: Decimal,
    pub contract: Option<InterfaceContract>,
    pub max_inconsistency_rate: Decimal,
    pub max_unvalidated_share: Decimal,
}
impl Policy {
    /// Whether decisions keep evidence rows for the decision-window modes: when the
    /// policy has any failure-mode key.
    pub fn keeps_evidence(&self) -> bool {
        self.outcomes.is_some()
            || self.blind_review.is_some()
            || self.feedback.is_some()
            || self.integration.is_some()
            || self.consistency.is_some()
    }

    /// Records per window (`outcomes.window`, 500).
    pub fn window(&self) -> u32 {
        self.outcomes.as_ref().and_then(|o| o.window).unwrap_or(500)
    }

    /// The output field holding the prediction, if named.
    pub fn prediction_field(&self) -> Option<&str> {
        self.outcomes
            .as_ref()
            .and_then(|o| o.prediction_field.as_deref())
    }

    pub fn evidence_limits(&self) -> EvidenceLimits {
        let b = self.blind_review.clone().unwrap_or_default();
        let f = self.feedback.clone().unwrap_or_default();
        let i = self.integration.clone().unwrap_or_default();
        let c = self.consistency.clone().unwrap_or_default();
        EvidenceLimits {
            window: self.window(),
            blind_rate: b.rate.unwrap_or(Decimal::integer(0)),
            min_review_ms: b.min_review_ms.unwrap_or(0),
            max_backlog_days: b.max_backlog_days.unwrap_or(14),
            min_human_accuracy: b.min_human_accuracy.unwrap_or(Decimal::new(8, -1)),
            max_below_min_review_share: b.max_below_min_review_share.unwrap_or(Decimal::new(2, -1)),
            min_exploration_share: f.min_exploration_share.unwrap_or(Decimal::integer(0)),
            max_entropy_drop: f.max_entropy_drop.unwrap_or(Decimal::new(2, -1)),
            max_error_rate: i.max_error_rate.unwrap_or(Decimal::new(2, -2)),
            max_timeout_rate: i.max_timeout_rate.unwrap_or(Decimal::new(2, -2)),
            max_fallback_rate: i.max_fallback_rate.unwrap_or(Decimal::new(5, -2)),
            contract: i.contract,
            max_inconsistency_rate: c.max_inconsistency_rate.unwrap_or(Decimal::new(5, -2)),
            max_unvalidated_share: c.max_unvalidated_share.unwrap_or(Decimal::integer(0)),
        }
    }

    /// Check the failure-mode keys other than `outcomes`.
    fn validate_evidence(&self) -> Result<(), AppError> {
        let mut rates: Vec<(String, Option<Decimal>)> = Vec::new();
        if let Some(b) = &self.blind_review {
            rates.push(("blind_review.rate".into(), b.rate));
            rates.push((
                "blind_review.min_human_accuracy".into(),
                b.min_human_accuracy,
            ));
            rates.push((
                "blind_review.max_below_min_review_share".into(),
                b.max_below_min_review_share,
            ));
            if b.max_backlog_days.is_some_and(|d| d > 3660) {
                return Err(AppError::invalid(
                    "policy.blind_review.max_backlog_days",
                    "must be between 0 and 3660",
                ));
            }
            if b.min_review_ms.is_some_and(|m| m > 86_400_000) {
                return Err(AppError::invalid(
                    "policy.blind_review.min_review_ms",
                    "must be at most 86400000 (a day)",
                ));
            }
        }
        if let Some(f) = &self.feedback {
            rates.push((
                "feedback.min_exploration_share".into(),
                f.min_exploration_share,
            ));
            rates.push(("feedback.max_entropy_drop".into(), f.max_entropy_drop));
        }
        if let Some(i) = &self.integration {
            rates.push(("integration.max_error_rate".into(), i.max_error_rate));
            rates.push(("integration.max_timeout_rate".into(), i.max_timeout_rate));
            rates.push(("integration.max_fallback_rate".into(), i.max_fallback_rate));
            if let Some(c) = &i.contract {
                crate::fields::parse_sha256(
                    "policy.integration.contract.input_schema_sha256",
                    &c.input_schema_sha256,
                )?;
                crate::fields::validate_ident(
                    "policy.integration.contract.input_schema_version",
                    &c.input_schema_version,
                    64,
                )?;
                crate::fields::validate_ident(
                    "policy.integration.contract.output_schema_version",
                    &c.output_schema_version,
                    64,
                )?;
                crate::fields::validate_text(
                    "policy.integration.contract.fallback",
                    &c.fallback,
                    500,
                    true,
                )?;
                if c.timeout_ms > 3_600_000 {
                    return Err(AppError::invalid(
                        "policy.integration.contract.timeout_ms",
                        "must be at most 3600000 (an hour)",
                    ));
                }
            }
        }
        if let Some(c) = &self.consistency {
            rates.push((
                "consistency.max_inconsistency_rate".into(),
                c.max_inconsistency_rate,
            ));
            rates.push((
                "consistency.max_unvalidated_share".into(),
                c.max_unvalidated_share,
            ));
        }
        for (name, value) in rates {
            let Some(d) = value else { continue };
            if !(0.0..=1.0).contains(&d.to_f64()) {
                return Err(AppError::invalid(
                    format!("policy.{name}"),
                    "must be between 0 and 1",
                ));
            }
            if d.exponent < -9 {
                return Err(AppError::invalid(
                    format!("policy.{name}"),
                    "at most 9 decimal places",
                ));
            }
        }
        Ok(())
    }
}

/// How a system's decisions meet their outcomes, and the limits of the figures. Every
/// key is optional; the defaults are in brackets. Rates and differences are fractions
/// in [0, 1] (a correlation in [-1, 1]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct OutcomePolicy {
    /// The top-level field of a decision's `output` that holds the prediction an
    /// outcome's `label` is compared with (e.g. `approved`). Without it no decision counts.
    #[serde(default)]
    pub prediction_field: Option<String>,
    /// How many days outcomes may take to arrive (7): decisions older than this count
    /// towards outcome coverage.
    #[serde(default)]
    pub expected_delay_days: Option<u32>,
    /// Outcomes per window (500), 30 to 10,000.
    #[serde(default)]
    pub window: Option<u32>,
    /// Accuracy below the baseline by more than this (0.05) while confidence moved less
    /// than `max_confidence_shift` is `accuracy_decay`.
    #[serde(default)]
    #[schema(value_type = Option<f64>)]
    pub max_accuracy_drop: Option<Decimal>,
    /// (0.02)
    #[serde(default)]
    #[schema(value_type = Option<f64>)]
    pub max_confidence_shift: Option<Decimal>,
    /// Expected calibration error above this (0.1) is `overconfidence`.
    #[serde(default)]
    #[schema(value_type = Option<f64>)]
    pub max_ece: Option<Decimal>,
    /// Wrong decisions with confidence >= 0.9, as a share of the labelled (0.05).
    #[serde(default)]
    #[schema(value_type = Option<f64>)]
    pub max_high_confidence_wrong_share: Option<Decimal>,
    /// Pearson's r of a proxy metric with a business metric below this (0.3) is
    /// `proxy_outcome_divergence`.
    #[serde(default)]
    #[schema(value_type = Option<f64>)]
    pub min_proxy_correlation: Option<Decimal>,
    /// Outcome coverage below this (0.5) is `outcome_coverage_low`.
    #[serde(default)]
    #[schema(value_type = Option<f64>)]
    pub min_outcome_coverage: Option<Decimal>,
    /// Overturned contests as a share of the labelled above this (0.02) is
    /// `contest_rate_high`.
    #[serde(default)]
    #[schema(value_type = Option<f64>)]
    pub max_overturned_share: Option<Decimal>,
}

/// An [`OutcomePolicy`] with its defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeLimits {
    pub prediction_field: Option<String>,
    pub expected_delay_days: u32,
    pub window: u32,
    pub max_accuracy_drop: Decimal,
    pub max_confidence_shift: Decimal,
    pub max_ece: Decimal,
    pub max_high_confidence_wrong_share: Decimal,
    pub min_proxy_correlation: Decimal,
    pub min_outcome_coverage: Decimal,
    pub max_overturned_share: Decimal,
}
impl OutcomePolicy {
    pub fn limits(&self) -> OutcomeLimits {
        OutcomeLimits {
            prediction_field: self.prediction_field.clone(),
            expected_delay_days: self.expected_delay_days.unwrap_or(7),
            window: self.window.unwrap_or(500),
            max_accuracy_drop: self.max_accuracy_drop.unwrap_or(Decimal::new(5, -2)),
            max_confidence_shift: self.max_confidence_shift.unwrap_or(Decimal::new(2, -2)),
            max_ece: self.max_ece.unwrap_or(Decimal::new(1, -1)),
            max_high_confidence_wrong_share: self
                .max_high_confidence_wrong_share
                .unwrap_or(Decimal::new(5, -2)),
            min_proxy_correlation: self.min_proxy_correlation.unwrap_or(Decimal::new(3, -1)),
            min_outcome_coverage: self.min_outcome_coverage.unwrap_or(Decimal::new(5, -1)),
            max_overturned_share: self.max_overturned_share.unwrap_or(Decimal::new(2, -2)),
        }
    }

    fn validate(&self) -> Result<(), AppError> {
        if let Some(f) = &self.prediction_field {
            crate::fields::validate_ident("policy.outcomes.prediction_field", f, 64)?;
        }
        if self.expected_delay_days.is_some_and(|d| d > 3660) {
            return Err(AppError::invalid(
                "policy.outcomes.expected_delay_days",
                "must be between 0 and 3660",
            ));
        }
        if self.window.is_some_and(|w| !(30..=10_000).contains(&w)) {
            return Err(AppError::invalid(
                "policy.outcomes.window",
                "must be between 30 and 10000",
            ));
        }
        let rates = [
            ("max_accuracy_drop", self.max_accuracy_drop, 0.0),
            ("max_confidence_shift", self.max_confidence_shift, 0.0),
            ("max_ece", self.max_ece, 0.0),
            (
                "max_high_confidence_wrong_share",
                self.max_high_confidence_wrong_share,
                0.0,
            ),
            ("min_proxy_correlation", self.min_proxy_correlation, -1.0),
            ("min_outcome_coverage", self.min_outcome_coverage, 0.0),
            ("max_overturned_share", self.max_overturned_share, 0.0),
        ];
        for (name, value, low) in rates {
            let Some(d) = value else { continue };
            if !(low..=1.0).contains(&d.to_f64()) {
                return Err(AppError::invalid(
                    format!("policy.outcomes.{name}"),
                    format!("must be between {low} and 1"),
                ));
            }
            if d.exponent < -9 {
                return Err(AppError::invalid(
                    format!("policy.outcomes.{name}"),
                    "at most 9 decimal places",
                ));
            }
        }
        Ok(())
    }
}
fn default_interval() -> u32 {
    90
}
fn default_retention() -> u32 {
    183
}

/// A register entry as callers send it (`POST /v1/systems`, `PUT /v1/systems/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SystemSpec {
    /// A slug: a-z, 0-9, '-'. Fixed at registration.
    pub id: String,
    pub name: String,
    /// The intended purpose (EU AI Act Art. 3(12)).
    pub purpose: String,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub deployer: Option<String>,
    pub owner: Owner,
    pub risk_class: RiskClass,
    /// Applicable regulations: an open list; known codes are `eu-ai-act`, `gdpr-art22`, `nyc-ll144`, `iso-42001`.
    #[serde(default)]
    pub regulations: Vec<String>,
    /// Days between periodic reviews of this register entry (default 90: quarterly).
    #[serde(default = "default_interval")]
    pub review_interval_days: u32,
    #[serde(default)]
    pub policy: Policy,
    /// Days that personal data of decisions is kept in the vault (default 183; AI Act Art. 19 asks at least six months).
    #[serde(default = "default_retention")]
    pub retention_days: u32,
    /// Under legal hold, erasure is refused (GDPR Art. 17(3)(b)/(e)).
    #[serde(default)]
    pub legal_hold: bool,
    #[serde(default)]
    pub status: SystemStatus,
}
impl SystemSpec {
    /// Check every field; errors name the field.
    pub fn validate(&self) -> Result<(), AppError> {
        validate_slug("id", &self.id)?;
        validate_text("name", &self.name, 200, true)?;
        validate_text("purpose", &self.purpose, 4000, true)?;
        if let Some(p) = &self.provider {
            validate_text("provider", p, 200, true)?;
        }
        if let Some(d) = &self.deployer {
            validate_text("deployer", d, 200, true)?;
        }
        validate_text("owner.name", &self.owner.name, 200, true)?;
        let e = &self.owner.email;
        let at = e.find('@');
        if e.len() > 254
            || at.is_none_or(|i| i == 0 || i + 1 >= e.len() || !e[i + 1..].contains('.'))
            || e.contains(char::is_whitespace)
        {
            return Err(AppError::invalid("owner.email", "must be an email address"));
        }
        for (i, r) in self.regulations.iter().enumerate() {
            let ok = (1..=64).contains(&r.len())
                && r.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                });
            if !ok {
                return Err(AppError::invalid(
                    format!("regulations[{i}]"),
                    "must be a lowercase code such as eu-ai-act",
                ));
            }
        }
        if !(1..=3660).contains(&self.review_interval_days) {
            return Err(AppError::invalid(
                "review_interval_days",
                "must be between 1 and 3660",
            ));
        }
        if self.retention_days < 183 || self.retention_days > 36_600 {
            return Err(AppError::invalid(
                "retention_days",
                "must be between 183 (six months, AI Act Art. 19) and 36600",
            ));
        }
        for (i, t) in self.policy.required_tests.iter().enumerate() {
            if crate::evaluators::registry().get(t).is_none() {
                return Err(AppError::invalid(
                    format!("policy.required_tests[{i}]"),
                    format!("unknown evaluator {t:?}; see GET /v1/evaluators"),
                ));
            }
        }
        if let Some(o) = &self.policy.outcomes {
            o.validate()?;
        }
        self.policy.validate_evidence()?;
        if self.risk_class == RiskClass::Prohibited {
            return Err(AppError::field(
                ErrorCode::ProhibitedSystem,
                "risk_class",
                "a system whose risk class is 'prohibited' (AI Act Art. 5) cannot be registered",
            ));
        }
        Ok(())
    }
}

/// The body of `system.registered` and `system.revised`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SystemBody {
    pub revision: u32,
    pub spec: SystemSpec,
}

/// The periodic review of a register entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RegisterReviewOutcome {
    /// The entry is accurate and complete.
    Confirmed,
    /// The entry needs changes (a revision should follow).
    ChangesRequired,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterReview {
    pub outcome: RegisterReviewOutcome,
    #[serde(default)]
    pub notes: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RegisterReviewRef {
    pub index: u64,
    pub time: u64,
    pub reviewer: String,
    pub outcome: RegisterReviewOutcome,
}

/// The projection row of one system: its current revision and what the register tracks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SystemRecord {
    pub spec: SystemSpec,
    pub revision: u32,
    pub registered_index: u64,
    pub registered_time: u64,
    pub registered_by: String,
    pub revised_index: u64,
    pub revised_time: u64,
    pub last_review: Option<RegisterReviewRef>,
    /// The version in service, if any.
    pub deployed: Option<String>,
}

/// One revision of a register entry: where it is in the log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RevisionRef {
    pub revision: u32,
    pub index: u64,
    pub time: u64,
}
pub(crate) use crate::register::projections::keys::revision_key;
use crate::register::projections::keys::{revision_prefix, system_key};
use crate::register::projections::windows;

/// The system, or 404.
pub fn load(s: &Staging<'_>, id: &str) -> Result<SystemRecord, AppError> {
    get(s, &system_key(id))?.ok_or_else(|| {
        AppError::new(
            ErrorCode::SystemNotFound,
            format!("no AI system {id:?} in the register"),
        )
    })
}

/// The system, and refuse it when retired.
pub fn load_active(s: &Staging<'_>, id: &str) -> Result<SystemRecord, AppError> {
    let sys = load(s, id)?;
    refuse_retired(id, &sys)?;
    Ok(sys)
}

/// Refuse system `id` when its record says it is retired.
pub(crate) fn refuse_retired(id: &str, sys: &SystemRecord) -> Result<(), AppError> {
    if sys.spec.status == SystemStatus::Retired {
        return Err(retired_error(id));
    }
    Ok(())
}

/// The refusal of a write to retired system `id`.
pub(crate) fn retired_error(id: &str) -> AppError {
    AppError::new(
        ErrorCode::SystemRetired,
        format!("AI system {id:?} is retired"),
    )
}
pub(crate) fn project(e: &Applied<'_>, s: &mut Staging<'_>) -> Result<(), AppError> {
    let Applied {
        kind,
        body,
        index,
        time,
        actor,
        ..
    } = *e;
    let Some(system) = e.system else {
        return Ok(());
    };
    match kind {
        SYSTEM_REGISTERED | SYSTEM_REVISED => {
            let b: SystemBody = from_value(body)?;
            let rec = match get::<SystemRecord>(s, &system_key(system))? {
                Some(mut cur) => {
                    cur.spec = b.spec;
                    cur.revision = b.revision;
                    cur.revised_index = index;
                    cur.revised_time = time;
                    cur
                }
                None => SystemRecord {
                    spec: b.spec,
                    revision: b.revision,
                    registered_index: index,
                    registered_time: time,
                    registered_by: actor.to_owned(),
                    revised_index: index,
                    revised_time: time,
                    last_review: None,
                    deployed: None,
                },
            };
            s.put(
                revision_key(system, b.revision),
                cbor(&RevisionRef {
                    revision: b.revision,
                    index,
                    time,
                }),
            );
            let window = rec.spec.policy.outcomes.as_ref().map(|o| o.limits().window);
            s.put(system_key(system), cbor(&rec));
            // A new window size re-sums the outcome windows now, not at the next outcome.
            if let Some(window) = window {
                windows::resize_all(s, system, window, index, time)?;
            }
        }
        REGISTER_REVIEWED => {
            let b: RegisterReview = from_value(body)?;
            if let Some(mut rec) = get::<SystemRecord>(s, &system_key(system))? {
                rec.last_review = Some(RegisterReviewRef {
                    index,
                    time,
                    reviewer: actor.to_owned(),
                    outcome: b.outcome,
                });
                s.put(system_key(system), cbor(&rec));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Update a system's projection row (for the other register modules).
pub(crate) fn put(s: &mut Staging<'_>, id: &str, rec: &SystemRecord) {
    s.put(system_key(id), cbor(rec));
}

// Reads, outside the writer.

pub fn read(store: &dyn Store, id: &str) -> Result<SystemRecord, AppError> {
    let raw = store.get(&system_key(id))?.ok_or_else(|| {
        AppError::new(
            ErrorCode::SystemNotFound,
            format!("no AI system {id:?} in the register"),
        )
    })?;
    crate::register::uncbor(&raw)
}
pub fn list(store: &dyn Store) -> Result<Vec<SystemRecord>, AppError> {
    let mut p = b"sys".to_vec();
    p.push(0);
    store
        .scan(&p, None, false, usize::MAX)?
        .into_iter()
        .map(|(_, v)| crate::register::uncbor(&v))
        .collect()
}

/// The revisions of a system, oldest first.
pub fn revisions(store: &dyn Store, id: &str) -> Result<Vec<RevisionRef>, AppError> {
    store
        .scan(&revision_prefix(id), None, false, usize::MAX)?
        .into_iter()
        .map(|(_, v)| crate::register::uncbor(&v))
        .collect()
}

/// The revision of `id` in force at `at` (unix µs), read back from its entry; `None`
/// when the system was not yet registered then.
pub fn revision_at(
    store: &dyn Store,
    id: &str,
    at: u64,
) -> Result<Option<(RevisionRef, SystemBody)>, AppError> {
    let Some(rev) = revisions(store, id)?.into_iter().rfind(|r| r.time <= at) else {
        return Ok(None);
    };
    let e: crate::log::entry::Entry<SystemBody> = crate::register::entry_at(store, rev.index)?;
    Ok(Some((rev, e.body)))
}
