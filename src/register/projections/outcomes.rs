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

use crate::decimal::Decimal;
use crate::error::{AppError, ErrorCode};
use crate::log::{Applied, Staging};
use crate::register::projections::decisions::DecisionRef;
use crate::register::projections::keys::{key, text_key, text_prefix};
use crate::register::projections::vault;
use crate::register::projections::vault::Opening;
use crate::register::projections::windows::{Place, Record};
use crate::register::projections::{activity, decisions, evidence, systems, windows};
use crate::register::{cbor, from_value, get, uncbor};
use crate::storage::Store;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use utoipa::ToSchema;
pub const OUTCOME: &str = "decision.outcome";
pub const CONTESTED: &str = "decision.contested";
pub const RESOLVED: &str = "contest.resolved";

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
pub(crate) fn truth_key(system: &str, decision: u64) -> Vec<u8> {
    key(&[b"gtd", system.as_bytes(), &decision.to_be_bytes()])
}
pub(crate) fn contest_key(system: &str, id: u64) -> Vec<u8> {
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
pub(crate) fn not_found(system: &str, decision_id: &str) -> AppError {
    AppError::new(
        ErrorCode::DecisionNotFound,
        format!("no decision {decision_id:?} of {system:?}"),
    )
}
pub(crate) fn fingerprint(b: &OutcomeBody) -> Vec<u8> {
    let core = (b.observed_at, &b.label, &b.business, &b.source);
    Sha256::digest(serde_cbor::to_vec(&core).expect("outcomes encode")).to_vec()
}

/// When the decision was made: from its truth, else its vault row (absent once erased).
pub(crate) fn made_at(s: &Staging<'_>, dref: &DecisionRef) -> Result<Option<u64>, AppError> {
    if let Some(t) = &dref.truth {
        return Ok(Some(t.occurred_at));
    }
    Ok(s.vault_get(&vault::decision_key(dref.index))?
        .map(|raw| uncbor::<vault::DecisionVault>(&raw))
        .transpose()?
        .map(|v| v.occurred_at))
}

/// The text written with entry `entry` about decision `decision`, if held.
pub(crate) fn note_of(
    s: &Staging<'_>,
    decision: u64,
    entry: u64,
) -> Result<Option<String>, AppError> {
    Ok(s.vault_get(&text_key(decision, entry))?
        .map(|raw| uncbor::<Opening>(&raw))
        .transpose()?
        .and_then(|o| o.json().as_str().map(str::to_owned)))
}

/// The outcome policy's window size in force for `system`.
fn window_of(s: &Staging<'_>, system: &str) -> Result<u32, AppError> {
    let sys = systems::load(s, system)?;
    Ok(sys.spec.policy.outcomes.unwrap_or_default().limits().window)
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
    let label_digest = evidence::value_digest(&label)?;
    row.label = Some(serde_bytes::ByteBuf::from(label_digest.clone()));
    let dref = decisions::reference(s, system, &b.decision_id)?;
    if let Some(t) = dref.and_then(|d| d.truth) {
        if first {
            let ck = coverage_key(
                system,
                &t.model_version,
                activity::day_of(t.occurred_at),
                activity::day_of(time),
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
