//! Reconciling findings: the compliance report's findings compared, inside the writer,
//! with the open finding entries, so there is never a second open entry for one finding;
//! `follow`, the task that reconciles at start, after the entries that cause findings and
//! on a timer. It reads the published log and never runs on the append path.

use crate::error::{AppError, ErrorCode};
use crate::log::sequencer::Command;
use crate::register::append;
use crate::register::projections::findings::{
    open, open_of, open_prefix, subject_of, Finding, FindingBody, OpenRow, OPENED, RESOLVED,
};
use crate::register::projections::systems;
use crate::register::reports::compliance;
use crate::storage::Store;
use serde::Deserialize;
use std::collections::BTreeMap;

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
            body: crate::register::to_value(&body)?,
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
        append(drafts)
    })
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
            None => systems::list(&*store)?,
            Some(ids) => ids
                .iter()
                .filter_map(|id| systems::read(&*store, id).ok())
                .collect(),
        };
        let mut out = Vec::new();
        for sys in systems {
            let holding = compliance::findings(&*store, &sys, now)?;
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
