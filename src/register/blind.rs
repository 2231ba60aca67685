//! Blind review (FM-03): decisions the writer draws at random are judged again by a
//! human who never sees what the AI recommended, so agreement and human accuracy
//! measure the human backstop rather than its deference.
//!
//! The draw is made inside the writer from the decision's fresh subject salt
//! ([`selected`]): no caller can predict or steer it, and an auditor holding the
//! salt's opening recomputes it. The decision's entry records the draw
//! (`blind_review`); a drawn decision opens a case (`blq` rows, oldest first), and
//! `blind_review.recorded` closes it with the judgment (`blj` rows).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::keys::{blind_case_key, blind_case_prefix, judgment_key};
use super::{append, cbor_packed, decisions, draft, get, uncbor, validate_ident};
use crate::decimal::Decimal;
use crate::error::{AppError, ErrorCode};
use crate::log::{Command, Prepared, Staging};
use crate::storage::Store;

pub const RECORDED: &str = "blind_review.recorded";

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

/// An open case: its decision's id (the queue is keyed by the decision's index).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenCase {
    pub decision_id: String,
    /// When the decision was recorded (unix µs): the case's age runs from then.
    pub time: u64,
}

pub(crate) fn open_case(
    s: &mut Staging<'_>,
    system: &str,
    index: u64,
    decision_id: &str,
    time: u64,
) {
    s.put(
        blind_case_key(system, index),
        cbor_packed(&OpenCase {
            decision_id: decision_id.to_owned(),
            time,
        }),
    );
}

/// A blind judgment as the register keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Judgment {
    /// The `blind_review.recorded` entry and its time.
    pub index: u64,
    pub time: u64,
    /// The digest of the judged prediction (compared as predictions and labels are).
    #[serde(with = "serde_bytes")]
    pub prediction: Vec<u8>,
    pub review_ms: u64,
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

/// The body of `blind_review.recorded`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JudgmentBody {
    pub decision_id: String,
    /// The decision's entry index.
    pub decision: u64,
    /// The judgment, RFC 8785 canonical JSON text.
    pub judgment: String,
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
        let sys = super::systems::load(s, &system)?;
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
        let judgment =
            super::vault::canonical_text(&serde_json::Value::Object(req.judgment.clone()))?;
        if let Some(done) = get::<Judgment>(s, &judgment_key(&system, dref.index))? {
            let digest = decisions::value_digest(&req.judgment[&field])?;
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
        append(s, vec![draft(RECORDED, &system, &body)?])
    })
}

/// The rows [`judge_command`] reads.
pub fn judge_reads(system: &str, decision_id: &str) -> Vec<Vec<u8>> {
    vec![
        super::systems::system_key(system),
        decisions::id_key(system, decision_id),
    ]
}

/// Apply `blind_review.recorded`: the case closes, the judgment is kept.
pub(crate) fn project(
    system: &str,
    body: &serde_cbor::Value,
    index: u64,
    time: u64,
    s: &mut Staging<'_>,
) -> Result<(), AppError> {
    let b: JudgmentBody = super::from_value(body)?;
    // The judgment is `{<prediction field>: value}` and nothing else (checked when it
    // was recorded): its one value is the judged prediction.
    let judged: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&b.judgment).map_err(AppError::internal)?;
    let prediction = match judged.values().next() {
        Some(v) => decisions::value_digest(v)?,
        None => Vec::new(),
    };
    s.delete(blind_case_key(system, b.decision));
    s.put(
        judgment_key(system, b.decision),
        cbor_packed(&Judgment {
            index,
            time,
            prediction,
            review_ms: b.review_ms,
        }),
    );
    Ok(())
}

/// Open cases of `system`, oldest first, after the decision index `after`: (decision
/// index, case) of at most `limit`.
pub fn open_cases(
    store: &dyn Store,
    system: &str,
    after: Option<u64>,
    limit: usize,
) -> Result<Vec<(u64, OpenCase)>, AppError> {
    let prefix = blind_case_prefix(system);
    let lo = match after {
        Some(i) => {
            let mut k = blind_case_key(system, i);
            k.push(0);
            k
        }
        None => prefix.clone(),
    };
    let hi = super::keys::prefix_end(prefix.clone());
    store
        .range(&lo, &hi, false, limit)?
        .into_iter()
        .map(|(k, v)| {
            let tail = k
                .get(prefix.len()..)
                .and_then(|t| <[u8; 8]>::try_from(t).ok())
                .ok_or_else(|| AppError::internal("malformed blind case key"))?;
            Ok((u64::from_be_bytes(tail), uncbor::<OpenCase>(&v)?))
        })
        .collect()
}

/// The blind judgment of the decision at `index`, if recorded.
pub fn judgment(store: &dyn Store, system: &str, index: u64) -> Result<Option<Judgment>, AppError> {
    store
        .get(&judgment_key(system, index))?
        .map(|b| uncbor(&b))
        .transpose()
}
