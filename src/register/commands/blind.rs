//! Blind review's commands (FM-03): the writer's draw of a decision for review (from its
//! fresh subject salt, so no pipeline can predict or steer it) and a reviewer's judgment
//! (`blind_review.recorded`), refused unless a case is open and of the prediction's JSON
//! type; the same reviewer's same judgment again is its receipt, anything else a conflict
//! that tells another reviewer nothing of the first one's work.

use crate::decimal::Decimal;
use crate::error::{AppError, ErrorCode};
use crate::log::Staging;
use crate::log::{Command, Prepared};
use crate::register::projections::blind::{JsonType, Judgment, JudgmentBody, OpenCase, RECORDED};
use crate::register::projections::decisions::{self, DecisionBody};
use crate::register::projections::keys::{blind_case_key, judgment_key};
use crate::register::projections::{evidence, keys, systems, vault};
use crate::register::{append, draft, entry_at, get, validate_ident};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

/// Whether a decision whose subject salt is `salt` is drawn for blind review at `rate`:
/// the first 8 bytes of SHA-256("veritrail-blind-review" ‖ salt), as a big-endian
/// integer x, satisfy x < rate × 2^64 (compared exactly).
pub fn selected(salt: &[u8; 32], rate: Decimal) -> bool {
    let h = Sha256::new()
        .chain_update(b"veritrail-blind-review")
        .chain_update(salt)
        .finalize();
    let x = u128::from(u64::from_be_bytes(h[..8].try_into().expect("8 bytes")));
    if rate.mantissa <= 0 {
        return false;
    }
    let m = rate.mantissa as u128;
    // rate = m × 10^e; policies hold at most 9 places, so both sides fit 128 bits.
    if rate.exponent >= 0 {
        return true; // a rate of at least 1
    }
    let places = rate.exponent.unsigned_abs().min(18);
    x * 10u128.pow(places) < m << 64
}

/// A blind judgment as the reviewer sends it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JudgmentRequest {
    /// `{<prediction field>: value}`: the reviewer's own answer to the case.
    #[schema(value_type = Object)]
    pub judgment: serde_json::Map<String, serde_json::Value>,
    /// How long the reviewer spent, in milliseconds.
    pub review_ms: u64,
}

/// Record a blind judgment (reviewer) of an open case of `system`.
pub fn judge_command(
    system: String,
    decision_id: String,
    req: JudgmentRequest,
) -> Command<AppError> {
    Box::new(move |s| {
        validate_ident("decision_id", &decision_id, 128)?;
        let sys = systems::load(s, &system)?;
        let Some(field) = sys.spec.policy.prediction_field().map(str::to_owned) else {
            return Err(AppError::invalid(
                "judgment",
                "the system's policy names no outcomes.prediction_field to judge",
            ));
        };
        if req.judgment.len() != 1 || !req.judgment.contains_key(&field) {
            return Err(AppError::invalid(
                "judgment",
                format!("must be {{\"{field}\": value}}: the prediction field and nothing else"),
            ));
        }
        // A label, not a note: the judgment is written to the log in the clear, so it is
        // a JSON scalar (a string of at most 128 characters), never free text.
        match &req.judgment[&field] {
            serde_json::Value::Bool(_) | serde_json::Value::Number(_) => {}
            serde_json::Value::String(t) if t.chars().count() <= 128 => {}
            _ => return Err(AppError::invalid(
                "judgment",
                "must be a JSON scalar: true/false, a number or a string of at most 128 characters",
            )),
        }
        if req.review_ms > 86_400_000 {
            return Err(AppError::invalid(
                "review_ms",
                "must be at most 86400000 (a day)",
            ));
        }
        let missing = || {
            AppError::new(
                ErrorCode::BlindCaseNotFound,
                format!("decision {decision_id:?} of {system:?} has no open blind-review case"),
            )
        };
        let dref = decisions::reference(s, &system, &decision_id)?.ok_or_else(missing)?;
        let judged = &req.judgment[&field];
        if let Some(done) = get::<Judgment>(s, &judgment_key(&system, dref.index))? {
            return repeated(s, &done, judged, req.review_ms, &decision_id);
        }
        let case: OpenCase = get(s, &blind_case_key(&system, dref.index))?.ok_or_else(missing)?;
        if let Some(want) = prediction_type(s, &case, dref.index, &field)? {
            let got = JsonType::of(judged);
            if got != want {
                return Err(AppError::invalid(
                    "judgment",
                    format!(
                        "{field:?} must be {}, as the decision's prediction is; got {}",
                        want.name(),
                        got.name()
                    ),
                ));
            }
        }
        let judgment = vault::canonical_text(&serde_json::Value::Object(req.judgment.clone()))?;
        let body = JudgmentBody {
            decision_id: decision_id.clone(),
            decision: dref.index,
            judgment,
            review_ms: req.review_ms,
        };
        append(vec![draft(RECORDED, &system, &body)?])
    })
}

/// A judgment of a case judged already: the same reviewer's same judgment again is its
/// receipt and a different one a conflict naming the entry; another reviewer learns only
/// that the case is closed (nothing of whose judgment, or what it was).
fn repeated(
    s: &Staging<'_>,
    done: &Judgment,
    judged: &serde_json::Value,
    review_ms: u64,
    decision_id: &str,
) -> Result<Prepared, AppError> {
    let by = match &done.actor {
        Some(a) => a.clone(),
        None => entry_at::<serde_cbor::Value>(s.store(), done.index)?.actor,
    };
    if by != s.actor() {
        return Err(AppError::new(
            ErrorCode::Conflict,
            format!(
                "decision {decision_id:?} has no open blind-review case: it was judged already"
            ),
        ));
    }
    if evidence::value_digest(judged)? == done.prediction && review_ms == done.review_ms {
        return Ok(Prepared::Existing(done.index));
    }
    Err(AppError::new(
        ErrorCode::Conflict,
        format!(
            "decision {decision_id:?} was judged already (entry {}) otherwise",
            done.index
        ),
    ))
}

/// The JSON type the case's judgment must have: its prediction's, kept with the case or
/// (for a case opened before it was) read from the decision's entry.
fn prediction_type(
    s: &Staging<'_>,
    case: &OpenCase,
    decision: u64,
    field: &str,
) -> Result<Option<JsonType>, AppError> {
    if case.prediction_type.is_some() {
        return Ok(case.prediction_type);
    }
    let e = entry_at::<DecisionBody>(s.store(), decision)?;
    JsonType::of_field(&e.body.output, field)
}

/// The rows [`judge_command`] reads.
pub fn judge_reads(system: &str, decision_id: &str) -> Vec<Vec<u8>> {
    vec![
        keys::system_key(system),
        decisions::id_key(system, decision_id),
    ]
}
