//! Blind review (FM-03): decisions the writer draws at random are judged again by a
//! human who never sees what the AI recommended, so agreement and human accuracy
//! measure the human backstop rather than its deference.
//!
//! The draw is made inside the writer from the decision's fresh subject salt
//! (`commands::blind::selected`): no caller can predict or steer it, and an auditor holding the
//! salt's opening recomputes it. The decision's entry records the draw
//! (`blind_review`); a drawn decision opens a case (`blq` rows, oldest first), and
//! `blind_review.recorded` closes it with the judgment (`blj` rows).

use crate::error::AppError;
use crate::log::{Applied, Staging};
use crate::register::projections::keys::{blind_case_key, blind_case_prefix, judgment_key};
use crate::register::projections::{evidence, keys};
use crate::register::{cbor_packed, uncbor};
use crate::storage::Store;
use serde::{Deserialize, Serialize};
pub const RECORDED: &str = "blind_review.recorded";

/// An open case: its decision's id (the queue is keyed by the decision's index).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenCase {
    pub decision_id: String,
    /// When the decision was recorded (unix µs): the case's age runs from then.
    pub time: u64,
    /// The JSON type of the decision's prediction, which its judgment must share
    /// (absent from cases opened before it was kept: read from the decision's entry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction_type: Option<JsonType>,
}

/// The type of a JSON value, as a judgment is checked against its prediction's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JsonType {
    Null,
    Boolean,
    Number,
    String,
    Array,
    Object,
}

impl JsonType {
    pub fn of(v: &serde_json::Value) -> Self {
        use serde_json::Value as V;
        match v {
            V::Null => Self::Null,
            V::Bool(_) => Self::Boolean,
            V::Number(_) => Self::Number,
            V::String(_) => Self::String,
            V::Array(_) => Self::Array,
            V::Object(_) => Self::Object,
        }
    }

    /// The type of `output`'s field `field` (an output's canonical JSON text), if present.
    pub fn of_field(output: &str, field: &str) -> Result<Option<Self>, AppError> {
        let output: serde_json::Value = serde_json::from_str(output).map_err(AppError::internal)?;
        Ok(output.get(field).map(Self::of))
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Boolean => "a boolean",
            Self::Number => "a number",
            Self::String => "a string",
            Self::Array => "an array",
            Self::Object => "an object",
        }
    }
}
pub(crate) fn open_case(
    s: &mut Staging<'_>,
    system: &str,
    index: u64,
    decision_id: &str,
    time: u64,
    prediction_type: Option<JsonType>,
) {
    s.put(
        blind_case_key(system, index),
        cbor_packed(&OpenCase {
            decision_id: decision_id.to_owned(),
            time,
            prediction_type,
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
    /// Who judged (absent from rows kept before it was: read from the entry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
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

/// Apply `blind_review.recorded`: the case closes, the judgment is kept.
pub(crate) fn project(e: &Applied<'_>, s: &mut Staging<'_>) -> Result<(), AppError> {
    let Applied {
        body,
        index,
        time,
        actor,
        ..
    } = *e;
    let Some(system) = e.system else {
        return Ok(());
    };
    let b: JudgmentBody = crate::register::from_value(body)?;
    // The judgment is `{<prediction field>: value}` and nothing else (checked when it
    // was recorded): its one value is the judged prediction.
    let judged: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&b.judgment).map_err(AppError::internal)?;
    let prediction = match judged.values().next() {
        Some(v) => evidence::value_digest(v)?,
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
            actor: Some(actor.to_owned()),
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
    let hi = keys::prefix_end(prefix.clone());
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
