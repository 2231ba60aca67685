//! Ground truth beside the decisions: outcomes (`decision.outcome`: what really
//! happened, observed later, bound to the decision's entry) and contests (GDPR
//! Art. 22(3): `decision.contested`, then `contest.resolved` upheld or overturned).
//!
//! One outcome per decision; `correction: true` supersedes the recorded one and its
//! entry says which (`supersedes`). The same outcome sent again gets the original
//! receipt. A contest's `grounds` and an outcome's `note` are free text a person wrote
//! about the subject: committed like `inputs`, their values in the vault under the
//! decision, erased with it. Each outcome and each overturning updates the version's
//! outcome windows (`windows.rs`) in the same batch.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::decisions::{self, DecisionRef};
use super::keys::{key, text_key, text_prefix};
use super::vault::{self, Opening};
use super::windows::{self, Place, Record};
use super::{append, cbor, draft, from_value, get, parse_time, rfc3339, uncbor, validate_text};
use crate::decimal::Decimal;
use crate::error::{AppError, ErrorCode};
use crate::log::{Command, Prepared, Staging};
use crate::storage::Store;

pub const OUTCOME: &str = "decision.outcome";
pub const CONTESTED: &str = "decision.contested";
pub const RESOLVED: &str = "contest.resolved";

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
        decisions::validate_metrics("business", &self.business)?;
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

/// The body of `decision.outcome`. No personal value: `note` is a commitment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeBody {
    pub decision_id: String,
    /// The decision's entry index.
    pub decision: u64,
    /// Unix µs.
    pub observed_at: u64,
    /// The label's RFC 8785 canonical JSON text.
    pub label: String,
    pub business: BTreeMap<String, Decimal>,
    pub source: String,
    pub note: Option<serde_bytes::ByteBuf>,
    /// The `decision.outcome` entry this one supersedes (a correction).
    pub supersedes: Option<u64>,
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

/// The body of `decision.contested`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContestBody {
    pub decision_id: String,
    pub decision: u64,
    /// Unix µs.
    pub received_at: u64,
    /// The commitment to the grounds.
    pub grounds: serde_bytes::ByteBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Resolution {
    /// The decision stands.
    Upheld,
    /// The decision was wrong: it counts as wrong in the figures.
    Overturned,
}

/// A contest's resolution as an officer records it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolutionRequest {
    pub outcome: Resolution,
    /// Why (written to the log: no personal data).
    pub rationale: String,
}

/// The body of `contest.resolved`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolvedBody {
    /// The `decision.contested` entry.
    pub contest: u64,
    pub decision_id: String,
    pub decision: u64,
    pub outcome: Resolution,
    pub rationale: String,
}

/// What the register keeps of a decision's ground truth: `gtd ‖ system ‖ index`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TruthRow {
    /// Every `decision.outcome` entry, oldest first (the last is in force).
    pub outcomes: Vec<u64>,
    /// A fingerprint of the outcome in force (its body without the note's commitment).
    #[serde(default)]
    pub fingerprint: Option<serde_bytes::ByteBuf>,
    /// Every `decision.contested` entry.
    pub contests: Vec<u64>,
    pub overturned: bool,
    /// The decision's position in its version's windows, once labelled.
    pub position: Option<u64>,
    /// The digest of the label in force (compared with blind judgments).
    #[serde(default)]
    pub label: Option<serde_bytes::ByteBuf>,
}

/// A contest as the register keeps it: `con ‖ system ‖ id` (id = its entry index).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContestRow {
    pub id: u64,
    pub decision_id: String,
    pub decision: u64,
    pub received_at: u64,
    pub recorded_by: String,
    /// The `contest.resolved` entry, its outcome, who resolved it and when.
    pub resolved: Option<(u64, Resolution, String, u64)>,
}

fn truth_key(system: &str, decision: u64) -> Vec<u8> {
    key(&[b"gtd", system.as_bytes(), &decision.to_be_bytes()])
}

fn contest_key(system: &str, id: u64) -> Vec<u8> {
    key(&[b"con", system.as_bytes(), &id.to_be_bytes()])
}

/// Labelled decisions by the UTC day they were made and the day their first outcome
/// was recorded: `gtc ‖ system ‖ version ‖ 0 ‖ decision day ‖ outcome day` (u32 BE each).
fn coverage_key(system: &str, version: &str, decision_day: u32, outcome_day: u32) -> Vec<u8> {
    let mut k = coverage_prefix(system, version);
    k.extend_from_slice(&decision_day.to_be_bytes());
    k.extend_from_slice(&outcome_day.to_be_bytes());
    k
}

fn coverage_prefix(system: &str, version: &str) -> Vec<u8> {
    let mut k = key(&[b"gtc", system.as_bytes(), version.as_bytes()]);
    k.push(0);
    k
}

fn not_found(system: &str, decision_id: &str) -> AppError {
    AppError::new(
        ErrorCode::DecisionNotFound,
        format!("no decision {decision_id:?} of {system:?}"),
    )
}

fn fingerprint(b: &OutcomeBody) -> Vec<u8> {
    let core = (b.observed_at, &b.label, &b.business, &b.source);
    Sha256::digest(serde_cbor::to_vec(&core).expect("outcomes encode")).to_vec()
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
        let dref = decisions::reference(s, &system, &decision_id)?
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
        append(s, vec![draft(OUTCOME, &system, &body)?])
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

/// When the decision was made: from its truth, else its vault row (absent once erased).
fn made_at(s: &Staging<'_>, dref: &DecisionRef) -> Result<Option<u64>, AppError> {
    if let Some(t) = &dref.truth {
        return Ok(Some(t.occurred_at));
    }
    Ok(s.vault_get(&vault::decision_key(dref.index))?
        .map(|raw| uncbor::<vault::DecisionVault>(&raw))
        .transpose()?
        .map(|v| v.occurred_at))
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

/// The text written with entry `entry` about decision `decision`, if held.
fn note_of(s: &Staging<'_>, decision: u64, entry: u64) -> Result<Option<String>, AppError> {
    Ok(s.vault_get(&text_key(decision, entry))?
        .map(|raw| uncbor::<Opening>(&raw))
        .transpose()?
        .and_then(|o| o.json().as_str().map(str::to_owned)))
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
        let dref = decisions::reference(s, &system, &decision_id)?
            .ok_or_else(|| not_found(&system, &decision_id))?;
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
        append(s, vec![draft(CONTESTED, &system, &body)?])
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
        append(s, vec![draft(RESOLVED, &system, &body)?])
    })
}

/// The outcome policy's window size in force for `system`.
fn window_of(s: &Staging<'_>, system: &str) -> Result<u32, AppError> {
    let sys = super::systems::load(s, system)?;
    Ok(sys.spec.policy.outcomes.unwrap_or_default().limits().window)
}

pub(crate) fn project(
    kind: &str,
    system: &str,
    body: &serde_cbor::Value,
    index: u64,
    time: u64,
    actor: &str,
    s: &mut Staging<'_>,
) -> Result<(), AppError> {
    match kind {
        OUTCOME => project_outcome(system, from_value(body)?, index, time, s),
        CONTESTED => {
            let b: ContestBody = from_value(body)?;
            s.put(
                contest_key(system, index),
                cbor(&ContestRow {
                    id: index,
                    decision_id: b.decision_id,
                    decision: b.decision,
                    received_at: b.received_at,
                    recorded_by: actor.to_owned(),
                    resolved: None,
                }),
            );
            let k = truth_key(system, b.decision);
            let mut row: TruthRow = get(s, &k)?.unwrap_or_default();
            row.contests.push(index);
            s.put(k, cbor(&row));
            Ok(())
        }
        _ => project_resolution(system, from_value(body)?, index, time, actor, s),
    }
}

fn project_outcome(
    system: &str,
    b: OutcomeBody,
    index: u64,
    time: u64,
    s: &mut Staging<'_>,
) -> Result<(), AppError> {
    let k = truth_key(system, b.decision);
    let mut row: TruthRow = get(s, &k)?.unwrap_or_default();
    let first = row.outcomes.is_empty();
    row.outcomes.push(index);
    row.fingerprint = Some(serde_bytes::ByteBuf::from(fingerprint(&b)));
    let label: serde_json::Value = serde_json::from_str(&b.label).map_err(AppError::internal)?;
    let label_digest = decisions::value_digest(&label)?;
    row.label = Some(serde_bytes::ByteBuf::from(label_digest.clone()));
    let dref = decisions::reference(s, system, &b.decision_id)?;
    if let Some(t) = dref.and_then(|d| d.truth) {
        if first {
            let ck = coverage_key(
                system,
                &t.model_version,
                super::activity::day_of(t.occurred_at),
                super::activity::day_of(time),
            );
            let n = s.get(&ck)?.as_deref().map_or(0, count);
            s.put(ck, (n + 1).to_be_bytes().to_vec());
        }
        if let Some(prediction) = &t.prediction {
            let record = Record {
                decision: b.decision,
                outcome: row.outcomes.first().copied().unwrap_or(index),
                correct: !row.overturned && label_digest == prediction.as_slice(),
                overturned: row.overturned,
                confidence: t.confidence,
                proxy: t.proxy.clone(),
                business: decisions::fixed_metrics(&b.business),
            };
            let place = match row.position {
                Some(p) => Place::Replace(p),
                None => Place::New,
            };
            let window = window_of(s, system)?;
            let p = windows::place(
                s,
                system,
                &t.model_version,
                place,
                record,
                window,
                index,
                time,
            )?;
            row.position = Some(p);
        }
    }
    s.put(k, cbor(&row));
    Ok(())
}

fn project_resolution(
    system: &str,
    b: ResolvedBody,
    index: u64,
    time: u64,
    actor: &str,
    s: &mut Staging<'_>,
) -> Result<(), AppError> {
    let ck = contest_key(system, b.contest);
    let mut contest: ContestRow =
        get(s, &ck)?.ok_or_else(|| AppError::internal("a resolution of an unknown contest"))?;
    contest.resolved = Some((index, b.outcome, actor.to_owned(), time));
    s.put(ck, cbor(&contest));
    if b.outcome != Resolution::Overturned {
        return Ok(());
    }
    let k = truth_key(system, b.decision);
    let mut row: TruthRow = get(s, &k)?.unwrap_or_default();
    let was = row.overturned;
    row.overturned = true;
    s.put(k, cbor(&row));
    let truth = decisions::reference(s, system, &b.decision_id)?.and_then(|d| d.truth);
    if let (false, Some(p), Some(t)) = (was, row.position, truth) {
        let window = window_of(s, system)?;
        windows::update(
            s,
            system,
            &t.model_version,
            p,
            |r| {
                r.correct = false;
                r.overturned = true;
            },
            window,
            index,
            time,
        )?;
    }
    Ok(())
}

fn count(v: &[u8]) -> u64 {
    v.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

/// The ground truth kept about the decision at `decision`, if any.
pub fn truth(store: &dyn Store, system: &str, decision: u64) -> Result<Option<TruthRow>, AppError> {
    store
        .get(&truth_key(system, decision))?
        .map(|b| uncbor(&b))
        .transpose()
}

/// Contest `id` of `system`.
pub fn contest(store: &dyn Store, system: &str, id: u64) -> Result<ContestRow, AppError> {
    let raw = store.get(&contest_key(system, id))?.ok_or_else(|| {
        AppError::new(
            ErrorCode::ContestNotFound,
            format!("no contest {id} of {system:?}"),
        )
    })?;
    uncbor(&raw)
}

/// The opening of the text written with entry `entry` about decision `decision`.
pub fn text_opening(
    store: &dyn Store,
    decision: u64,
    entry: u64,
) -> Result<Option<Opening>, AppError> {
    store
        .vault_get(&text_key(decision, entry))?
        .map(|b| uncbor(&b))
        .transpose()
}

/// Erase the texts about decision `decision` (its subject's data is shredded).
pub(crate) fn shred_texts(s: &mut Staging<'_>, decision: u64) -> Result<(), AppError> {
    for (k, _) in s.vault_scan(&text_prefix(decision))? {
        s.vault_delete(k);
    }
    Ok(())
}

/// Labelled decisions of `version` made on days before `before_day`, counting outcomes
/// recorded up to `until_day` (inclusive).
pub fn labelled_before(
    store: &dyn Store,
    system: &str,
    version: &str,
    before_day: u32,
    until_day: u32,
) -> Result<u64, AppError> {
    let prefix = coverage_prefix(system, version);
    let hi = [prefix.as_slice(), &before_day.to_be_bytes()].concat();
    let mut n = 0;
    for (k, v) in store.range(&prefix, &hi, false, usize::MAX)? {
        let outcome_day = k
            .get(prefix.len() + 4..prefix.len() + 8)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
            .unwrap_or(u32::MAX);
        if outcome_day <= until_day {
            n += count(&v);
        }
    }
    Ok(n)
}
