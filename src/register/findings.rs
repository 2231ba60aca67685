//! Findings as entries. When a finding starts to hold, the service appends
//! `finding.opened`; when it stops, `finding.resolved` — so "since when was this system
//! out of compliance" is provable from the log, and the feed and webhooks carry it.
//!
//! The findings themselves are computed by `compliance::findings` from the committed
//! projections; a reconciliation compares them with the open findings (a projection of
//! these entries) inside the writer, so there is at most one open entry per (system,
//! code, subject), whatever runs the reconciliation and however often: one node or
//! several on one database, before and after a restart. A finding whose severity changes
//! is resolved and opened again in one command. The explanation's wording is not
//! compared (it holds figures that move); code, subject and severity are.
//!
//! `subject` names what a finding is about: for the register's findings, the model
//! version (or none, for the register entry's own review).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::compliance::{Finding, Severity};
use super::keys::key;
use super::{append, cbor, from_value, uncbor};
use crate::error::{AppError, ErrorCode};
use crate::log::sequencer::Command;
use crate::log::Staging;
use crate::storage::Store;

pub const OPENED: &str = "finding.opened";
pub const RESOLVED: &str = "finding.resolved";

/// The body of `finding.opened` and `finding.resolved`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingBody {
    pub code: String,
    pub severity: Severity,
    /// What the finding is about: a model version, or null.
    pub subject: Option<String>,
    pub model_version: Option<String>,
    /// Log indices of the entries that show it (for `resolved`: the opening entry).
    pub evidence: Vec<u64>,
    pub explanation: String,
}

/// An open finding: the entry that opened it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenRow {
    pub index: u64,
    pub severity: Severity,
    pub time: u64,
    pub model_version: Option<String>,
}

fn open_prefix(system: Option<&str>) -> Vec<u8> {
    let mut k = key(&[b"fnd", system.unwrap_or("").as_bytes()]);
    k.push(0);
    k
}

fn open_key(system: Option<&str>, code: &str, subject: Option<&str>) -> Vec<u8> {
    let mut k = open_prefix(system);
    k.extend_from_slice(&key(&[code.as_bytes(), subject.unwrap_or("").as_bytes()]));
    k
}

/// (code, subject) of an open row's key.
fn parse_open_key(prefix: &[u8], k: &[u8]) -> Option<(String, Option<String>)> {
    let tail = k.get(prefix.len()..)?;
    let at = tail.iter().position(|b| *b == 0)?;
    let code = String::from_utf8(tail[..at].to_vec()).ok()?;
    let subject = String::from_utf8(tail[at + 1..].to_vec()).ok()?;
    Some((code, (!subject.is_empty()).then_some(subject)))
}

fn history_prefix(system: Option<&str>) -> Vec<u8> {
    let mut k = key(&[b"fndlog", system.unwrap_or("").as_bytes()]);
    k.push(0);
    k
}

/// The finding entries of one system, in log order: `fndlog ‖ 0 ‖ system ‖ 0 ‖ index`.
fn history_key(system: Option<&str>, index: u64) -> Vec<u8> {
    let mut k = history_prefix(system);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// What a finding is about.
pub fn subject_of(f: &Finding) -> Option<String> {
    f.subject.clone()
}

/// Whether entry `index` is a `finding.opened` entry of `system`.
pub(crate) fn is_opening_of(s: &Staging<'_>, system: &str, index: u64) -> Result<bool, AppError> {
    Ok(s.get(&history_key(Some(system), index))?.as_deref() == Some(&[1u8][..]))
}

pub(crate) fn project(
    kind: &str,
    system: Option<&str>,
    body: &serde_cbor::Value,
    index: u64,
    time: u64,
    s: &mut Staging<'_>,
) -> Result<(), AppError> {
    let b: FindingBody = from_value(body)?;
    let k = open_key(system, &b.code, b.subject.as_deref());
    match kind {
        OPENED => s.put(
            k,
            cbor(&OpenRow {
                index,
                severity: b.severity,
                time,
                model_version: b.model_version.clone(),
            }),
        ),
        _ => s.delete(k),
    }
    s.put(history_key(system, index), vec![u8::from(kind == OPENED)]);
    Ok(())
}

/// The open findings of `system` in `rows` (an open-row scan).
fn open_of(
    system: Option<&str>,
    rows: Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<BTreeMap<(String, Option<String>), OpenRow>, AppError> {
    let prefix = open_prefix(system);
    let mut out = BTreeMap::new();
    for (k, v) in rows {
        let id = parse_open_key(&prefix, &k)
            .ok_or_else(|| AppError::internal("malformed open-finding key"))?;
        out.insert(id, uncbor::<OpenRow>(&v)?);
    }
    Ok(out)
}

/// The open findings of `system`, as committed.
pub fn open(
    store: &dyn Store,
    system: Option<&str>,
) -> Result<BTreeMap<(String, Option<String>), OpenRow>, AppError> {
    open_of(
        system,
        store.scan(&open_prefix(system), None, false, usize::MAX)?,
    )
}

/// The drafts that take `open` to `holding`: resolutions first, then openings.
fn changes(
    system: Option<&str>,
    open: &BTreeMap<(String, Option<String>), OpenRow>,
    holding: &[Finding],
) -> Result<Vec<crate::log::Draft>, AppError> {
    let want: BTreeMap<(String, Option<String>), &Finding> = holding
        .iter()
        .map(|f| ((f.code.clone(), subject_of(f)), f))
        .collect();
    let draft = |kind: &str, body: FindingBody| -> Result<crate::log::Draft, AppError> {
        Ok(crate::log::Draft {
            kind: kind.to_owned(),
            system: system.map(str::to_owned),
            body: super::to_value(&body)?,
        })
    };
    let mut drafts = Vec::new();
    for ((code, subject), row) in open {
        let still = want
            .get(&(code.clone(), subject.clone()))
            .is_some_and(|f| f.severity == row.severity);
        if !still {
            drafts.push(draft(
                RESOLVED,
                FindingBody {
                    code: code.clone(),
                    severity: row.severity,
                    subject: subject.clone(),
                    model_version: row.model_version.clone(),
                    evidence: vec![row.index],
                    explanation: format!(
                        "{code} no longer holds{}",
                        if want.contains_key(&(code.clone(), subject.clone())) {
                            " at this severity"
                        } else {
                            ""
                        }
                    ),
                },
            )?);
        }
    }
    for ((code, subject), f) in &want {
        let already = open
            .get(&(code.clone(), subject.clone()))
            .is_some_and(|row| row.severity == f.severity);
        if !already {
            drafts.push(draft(
                OPENED,
                FindingBody {
                    code: code.clone(),
                    severity: f.severity,
                    subject: subject.clone(),
                    model_version: f.model_version.clone(),
                    evidence: f.evidence.clone(),
                    explanation: f.explanation.clone(),
                },
            )?);
        }
    }
    Ok(drafts)
}

/// Whether the committed open findings of `system` differ from `holding` (a cheap check
/// before asking the writer).
pub fn differs(
    store: &dyn Store,
    system: Option<&str>,
    holding: &[Finding],
) -> Result<bool, AppError> {
    Ok(!changes(system, &open(store, system)?, holding)?.is_empty())
}

/// The command that appends what takes the open findings of `system` to `holding`,
/// compared in the writer with the staged open findings (so never twice). Nothing to
/// change: `Conflict`.
pub fn reconcile_command(system: Option<String>, holding: Vec<Finding>) -> Command<AppError> {
    Box::new(move |s| {
        let sys = system.as_deref();
        let open = open_of(sys, s.scan(&open_prefix(sys))?)?;
        let drafts = changes(sys, &open, &holding)?;
        if drafts.is_empty() {
            return Err(AppError::new(
                ErrorCode::Conflict,
                "the findings are as recorded",
            ));
        }
        append(s, drafts)
    })
}

/// The findings of `system` as they stood at `at` (unix µs), from its finding entries:
/// each open finding with the entry that opened it.
pub fn open_at(
    store: &dyn Store,
    system: &str,
    at: u64,
) -> Result<Vec<(u64, u64, FindingBody)>, AppError> {
    let prefix = history_prefix(Some(system));
    let mut open: BTreeMap<(String, Option<String>), (u64, u64, FindingBody)> = BTreeMap::new();
    for (k, _) in store.scan(&prefix, None, false, usize::MAX)? {
        let index = k
            .get(prefix.len()..)
            .and_then(|t| t.try_into().ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| AppError::internal("malformed finding history key"))?;
        let e: crate::log::entry::Entry<FindingBody> = super::entry_at(store, index)?;
        if e.time > at {
            break;
        }
        let id = (e.body.code.clone(), e.body.subject.clone());
        if e.kind == OPENED {
            open.insert(id, (index, e.time, e.body));
        } else {
            open.remove(&id);
        }
    }
    Ok(open.into_values().collect())
}

/// Reconcile the findings of the systems `ids` (every system when `None`) as they hold
/// at `now` (unix µs): the number of reconciliation commands that appended.
pub async fn reconcile(
    ledger: &crate::log::Ledger<AppError>,
    ids: Option<Vec<String>>,
    now: u64,
) -> Result<usize, AppError> {
    reconcile_with(ledger, ids, now, None).await
}

/// The findings about no system at a time (unix µs), as the service's other parts
/// compute them (webhook subscriptions failing, say): handed in by `startup.rs`, so
/// that the register knows nothing of those parts.
pub type ServiceFindings =
    std::sync::Arc<dyn Fn(&dyn Store, u64) -> Result<Vec<Finding>, AppError> + Send + Sync>;

/// What a reconciliation pass would change: per system (or none), the findings holding.
type Pending = Vec<(Option<String>, Vec<Finding>)>;

/// [`reconcile`]; a full pass (`ids` = `None`) also reconciles the findings about no
/// system that `service` computes.
pub async fn reconcile_with(
    ledger: &crate::log::Ledger<AppError>,
    ids: Option<Vec<String>>,
    now: u64,
    service: Option<ServiceFindings>,
) -> Result<usize, AppError> {
    let store = ledger.store().clone();
    let full = ids.is_none();
    let todo = tokio::task::spawn_blocking(move || -> Result<Pending, AppError> {
        let systems = match ids {
            None => super::systems::list(&*store)?,
            Some(ids) => ids
                .iter()
                .filter_map(|id| super::systems::read(&*store, id).ok())
                .collect(),
        };
        let mut out = Vec::new();
        for sys in systems {
            let holding = super::compliance::findings(&*store, &sys, now)?;
            if differs(&*store, Some(&sys.spec.id), &holding)? {
                out.push((Some(sys.spec.id.clone()), holding));
            }
        }
        if let (true, Some(service)) = (full, service) {
            let holding = service(&*store, now)?;
            if differs(&*store, None, &holding)? {
                out.push((None, holding));
            }
        }
        Ok(out)
    })
    .await
    .map_err(AppError::internal)??;
    let mut appended = 0;
    for (id, holding) in todo {
        match ledger
            .append(
                crate::tokens::FINDINGS_ACTOR,
                reconcile_command(id, holding),
            )
            .await
        {
            Ok(_) => appended += 1,
            Err(crate::log::AppendError::Rejected(e)) if e.code == ErrorCode::Conflict => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(appended)
}

/// An entry's kind and system, read without decoding its body.
#[derive(Deserialize)]
struct Envelope {
    kind: String,
    system: Option<String>,
}

/// How often the follower looks at the log's head.
const LOOK: std::time::Duration = std::time::Duration::from_millis(250);
/// A system whose only news is decisions is reconciled at most this often.
const DECISION_PACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Keep the finding entries true: every system at start and then every `every` (the
/// findings time causes: a review falling due, a test going stale, a logging gap), and
/// each system an entry names soon after the entry is published (a review, a test, a
/// deployment; decisions at most every few seconds). Runs beside the writer, reading the
/// published log, never on the append path.
pub async fn follow(
    ledger: crate::log::Ledger<AppError>,
    every: std::time::Duration,
    service: ServiceFindings,
) {
    use std::collections::BTreeSet;
    use std::time::Instant;
    let mut next = ledger.latest().size;
    let mut full_due = Instant::now();
    let mut paced: BTreeMap<String, Instant> = BTreeMap::new();
    let mut decided: BTreeSet<String> = BTreeSet::new();
    loop {
        let now = crate::log::sequencer::now_micros();
        let size = ledger.latest().size;
        let mut named: BTreeSet<String> = BTreeSet::new();
        while next < size {
            let (from, n) = (next, (size - next).min(1000));
            let reader = ledger.clone();
            let read = tokio::task::spawn_blocking(move || reader.entries(from, n)).await;
            let Ok(Ok(entries)) = read else {
                tracing::error!("findings: cannot read the log");
                break;
            };
            for bytes in &entries {
                let Ok(e) = serde_cbor::from_slice::<Envelope>(bytes) else {
                    continue;
                };
                match (e.kind.as_str(), e.system) {
                    (k, _) if k.starts_with("finding.") => {}
                    ("decision.recorded", Some(s)) => {
                        decided.insert(s);
                    }
                    (_, Some(s)) => {
                        named.insert(s);
                    }
                    _ => {}
                }
            }
            next = from + entries.len() as u64;
            if entries.is_empty() {
                break;
            }
        }
        let result = if Instant::now() >= full_due {
            full_due = Instant::now() + every;
            decided.clear();
            reconcile_with(&ledger, None, now, Some(service.clone())).await
        } else {
            let ready: Vec<String> = decided
                .iter()
                .filter(|s| paced.get(*s).is_none_or(|t| t.elapsed() >= DECISION_PACE))
                .cloned()
                .collect();
            for s in &ready {
                decided.remove(s);
                paced.insert(s.clone(), Instant::now());
                named.insert(s.clone());
            }
            if named.is_empty() {
                Ok(0)
            } else {
                reconcile_with(&ledger, Some(named.into_iter().collect()), now, None).await
            }
        };
        if let Err(e) = result {
            tracing::error!(error = %e.detail, "findings: reconciliation failed");
        }
        tokio::time::sleep(LOOK).await;
    }
}
