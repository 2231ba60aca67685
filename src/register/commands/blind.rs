//! Blind review's commands (FM-03): the writer's draw of a decision for review (from its
//! fresh subject salt, so no pipeline can predict or steer it) and a reviewer's judgment
//! (`blind_review.recorded`), refused unless a case is open; the same judgment again is
//! its receipt, another one a conflict.

use crate::decimal::Decimal;
use crate::error::{AppError, ErrorCode};
use crate::log::{Command, Prepared};
use crate::register::projections::blind::{Judgment, JudgmentBody, RECORDED};
use crate::register::projections::decisions;
use crate::register::projections::keys::{blind_case_key, judgment_key};
use crate::register::projections::{evidence, keys, systems, vault};
use crate::register::{append, draft, get, validate_ident};
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
        let judgment = vault::canonical_text(&serde_json::Value::Object(req.judgment.clone()))?;
        if let Some(done) = get::<Judgment>(s, &judgment_key(&system, dref.index))? {
            let digest = evidence::value_digest(&req.judgment[&field])?;
            if digest == done.prediction && req.review_ms == done.review_ms {
                return Ok(Prepared::Existing(done.index));
            }
            return Err(AppError::new(
                ErrorCode::Conflict,
                format!(
                    "decision {decision_id:?} was judged already (entry {}) otherwise",
                    done.index
                ),
            ));
        }
        if s.get(&blind_case_key(&system, dref.index))?.is_none() {
            return Err(missing());
        }
        let body = JudgmentBody {
            decision_id: decision_id.clone(),
            decision: dref.index,
            judgment,
            review_ms: req.review_ms,
        };
        append(vec![draft(RECORDED, &system, &body)?])
    })
}

/// The rows [`judge_command`] reads.
pub fn judge_reads(system: &str, decision_id: &str) -> Vec<Vec<u8>> {
    vec![
        keys::system_key(system),
        decisions::id_key(system, decision_id),
    ]
}
