//! Ground truth as commands: an outcome per decision (a correction supersedes, the same
//! one again is its receipt), a contest (GDPR Art. 22(3)) and its resolution; notes and
//! grounds committed, their texts in the vault.

use crate::decimal::Decimal;
use crate::error::{AppError, ErrorCode};
use crate::log::{Command, Prepared, Staging};
use crate::register::projections::decisions;
use crate::register::projections::keys::text_key;
use crate::register::projections::outcomes::{
    contest_key, fingerprint, made_at, not_found, note_of, truth_key, ContestBody, ContestRow,
    OutcomeBody, Resolution, ResolvedBody, TruthRow, CONTESTED, OUTCOME, RESOLVED,
};
use crate::register::projections::vault;
use crate::register::{append, cbor, draft, get, parse_time, rfc3339, validate_text};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// An outcome as a pipeline sends it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutcomeRequest {
    /// When the outcome was observed (RFC 3339): not before the decision, not in the future.
    pub observed_at: String,
    /// What really happened, compared (in RFC 8785 canonical form) with the value of the
    /// decision's prediction field (`policy.outcomes.prediction_field`). At most 1 KiB.
    pub label: serde_json::Value,
    /// Business metrics observed (name → number, each within ±10^9), e.g.
    /// `{"repaid_amount": 1200.5}`: the report correlates the decisions' proxy metrics with them.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, f64>)]
    pub business: BTreeMap<String, Decimal>,
    /// Where the outcome comes from (a process or system name; no personal data).
    pub source: String,
    /// Free text about this outcome. Personal: committed, kept in the vault.
    #[serde(default)]
    pub note: Option<String>,
    /// Supersede the outcome recorded for this decision (its entry names the one it supersedes).
    #[serde(default)]
    pub correction: bool,
}

/// A checked outcome, ready for the writer.
#[derive(Debug, Clone)]
pub struct ValidOutcome {
    observed_at: u64,
    label: String,
    business: BTreeMap<String, Decimal>,
    source: String,
    note: Option<String>,
    correction: bool,
}
impl OutcomeRequest {
    /// Check every field; `latest` is the latest time a caller may send (unix µs).
    pub fn validate(self, latest: u64) -> Result<ValidOutcome, AppError> {
        let observed_at = parse_time("observed_at", &self.observed_at)?;
        if observed_at > latest {
            return Err(AppError::invalid(
                "observed_at",
                format!(
                    "lies in the future: at most {} (the server's clock plus --max-clock-skew-secs)",
                    rfc3339(latest)
                ),
            ));
        }
        let label = vault::canonical_text(&self.label)?;
        if label.len() > 1024 {
            return Err(AppError::invalid("label", "must be at most 1 KiB of JSON"));
        }
        crate::register::commands::decisions::validate_metrics("business", &self.business)?;
        validate_text("source", &self.source, 200, true)?;
        if let Some(n) = &self.note {
            validate_text("note", n, 4000, true)?;
        }
        Ok(ValidOutcome {
            observed_at,
            label,
            business: self.business,
            source: self.source,
            note: self.note,
            correction: self.correction,
        })
    }
}

/// A contest as an officer records it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContestRequest {
    /// Why the subject contests the decision. Personal: committed, kept in the vault.
    pub grounds: String,
    /// When the contest was received (RFC 3339).
    pub received_at: String,
}

/// A contest's resolution as an officer records it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolutionRequest {
    pub outcome: Resolution,
    /// Why (written to the log: no personal data).
    pub rationale: String,
}

/// The projection rows [`record_command`] reads, so a shared store fetches a batch's at once.
pub fn record_reads(system: &str, decision_id: &str) -> Vec<Vec<u8>> {
    vec![decisions::id_key(system, decision_id)]
}

/// Record an outcome of `decision_id`: the decision must exist; a second outcome must
/// be a correction (the same one again is answered with the original entry).
pub fn record_command(
    system: String,
    decision_id: String,
    o: ValidOutcome,
    salt: [u8; 32],
) -> Command<AppError> {
    Box::new(move |s| {
        let dref = crate::register::projections::decisions::reference(s, &system, &decision_id)?
            .ok_or_else(|| not_found(&system, &decision_id))?;
        let erased = s.vault_get(&vault::decision_key(dref.index))?.is_none();
        let made = made_at(s, &dref)?;
        if made.is_some_and(|t| o.observed_at < t) {
            return Err(AppError::invalid(
                "observed_at",
                "lies before the decision was made",
            ));
        }
        let row: TruthRow = get(s, &truth_key(&system, dref.index))?.unwrap_or_default();
        let mut body = OutcomeBody {
            decision_id: decision_id.clone(),
            decision: dref.index,
            observed_at: o.observed_at,
            label: o.label.clone(),
            business: o.business.clone(),
            source: o.source.clone(),
            note: None,
            supersedes: None,
        };
        match (row.outcomes.last(), o.correction) {
            (Some(&current), correction) => {
                // Once the subject's data is erased its notes are gone: the rest decides.
                let same = row.fingerprint.as_ref().map(|f| f.as_slice())
                    == Some(fingerprint(&body).as_slice())
                    && (erased || note_of(s, dref.index, current)?.as_deref() == o.note.as_deref());
                if same {
                    return Ok(Prepared::Existing(current));
                }
                if !correction {
                    return Err(AppError::field(
                        ErrorCode::OutcomeConflict,
                        "correction",
                        format!(
                            "decision {decision_id:?} has an outcome (entry {current}); send correction: true to supersede it"
                        ),
                    ));
                }
                body.supersedes = Some(current);
            }
            (None, true) => {
                return Err(AppError::field(
                    ErrorCode::OutcomeConflict,
                    "correction",
                    format!("decision {decision_id:?} has no outcome to correct"),
                ))
            }
            (None, false) => {}
        }
        if let Some(note) = &o.note {
            refuse_erased(erased, "note")?;
            body.note = Some(seal_text(s, dref.index, note, salt)?);
        }
        append(vec![draft(OUTCOME, &system, &body)?])
    })
}

/// A text about the subject of a decision whose personal data is erased would outlive
/// the erasure: refused.
fn refuse_erased(erased: bool, field: &str) -> Result<(), AppError> {
    if erased {
        return Err(AppError::field(
            ErrorCode::Conflict,
            field,
            "the decision's personal data was erased (or its retention ended): no text about its subject is kept",
        ));
    }
    Ok(())
}

/// Commit a text about the decision at `decision`, its opening in the vault under the
/// entry about to be appended.
fn seal_text(
    s: &mut Staging<'_>,
    decision: u64,
    text: &str,
    salt: [u8; 32],
) -> Result<serde_bytes::ByteBuf, AppError> {
    let canonical = vault::canonical_text(&serde_json::Value::String(text.to_owned()))?;
    let (c, opening) = vault::seal_canonical(salt, canonical);
    s.vault_put(text_key(decision, s.index()), cbor(&opening));
    Ok(serde_bytes::ByteBuf::from(c.to_vec()))
}

/// Record a contest of `decision_id` (officer).
pub fn contest_command(
    system: String,
    decision_id: String,
    req: ContestRequest,
    latest: u64,
    salt: [u8; 32],
) -> Command<AppError> {
    Box::new(move |s| {
        validate_text("grounds", &req.grounds, 4000, true)?;
        let received_at = parse_time("received_at", &req.received_at)?;
        if received_at > latest {
            return Err(AppError::invalid("received_at", "lies in the future"));
        }
        let dref = crate::register::projections::decisions::reference(s, &system, &decision_id)?
            .ok_or_else(|| not_found(&system, &decision_id))?;
        if made_at(s, &dref)?.is_some_and(|t| received_at < t) {
            return Err(AppError::invalid(
                "received_at",
                "lies before the decision was made",
            ));
        }
        refuse_erased(
            s.vault_get(&vault::decision_key(dref.index))?.is_none(),
            "grounds",
        )?;
        let grounds = seal_text(s, dref.index, &req.grounds, salt)?;
        let body = ContestBody {
            decision_id: decision_id.clone(),
            decision: dref.index,
            received_at,
            grounds,
        };
        append(vec![draft(CONTESTED, &system, &body)?])
    })
}

/// Resolve contest `id` (officer); a contest is resolved once.
pub fn resolve_command(system: String, id: u64, req: ResolutionRequest) -> Command<AppError> {
    Box::new(move |s| {
        validate_text("rationale", &req.rationale, 4000, true)?;
        let row: ContestRow = get(s, &contest_key(&system, id))?.ok_or_else(|| {
            AppError::new(
                ErrorCode::ContestNotFound,
                format!("no contest {id} of {system:?}"),
            )
        })?;
        if let Some((index, ..)) = row.resolved {
            return Err(AppError::new(
                ErrorCode::Conflict,
                format!("contest {id} was resolved already (entry {index})"),
            ));
        }
        let body = ResolvedBody {
            contest: id,
            decision_id: row.decision_id,
            decision: row.decision,
            outcome: req.outcome,
            rationale: req.rationale,
        };
        append(vec![draft(RESOLVED, &system, &body)?])
    })
}
