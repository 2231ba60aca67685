//! Compliance status: findings derived from the register's projections (and, for
//! human oversight, the latest decisions), each with a stable code, a severity, the
//! entries that show it and since when it holds.

use crate::error::AppError;
use crate::log::entry::Entry;
use crate::register::projections::findings::{severity_of, Finding, Severity};
use crate::register::projections::models::{VersionRecord, VersionStatus};
use crate::register::projections::systems::{Policy, SystemRecord, SystemStatus};
use crate::register::projections::{activity, trail};
use crate::register::projections::{decisions, incidents, models};
use crate::register::reports::failure_modes;
use crate::register::rfc3339;
use crate::storage::Store;
const DAY: u64 = 86_400_000_000;
const HOUR: u64 = 3_600_000_000;

/// How many recent decisions with human review the oversight check looks at.
pub const OVERSIGHT_WINDOW: usize = 200;
fn finding(
    code: &str,
    explanation: String,
    evidence: Vec<u64>,
    since: u64,
    version: Option<&str>,
) -> Finding {
    let severity = severity_of(code);
    Finding {
        code: code.into(),
        severity,
        explanation,
        evidence,
        since: rfc3339(since),
        model_version: version.map(str::to_owned),
        subject: version.map(str::to_owned),
    }
}

/// The findings of one system at time `now` (unix µs).
pub fn findings(store: &dyn Store, sys: &SystemRecord, now: u64) -> Result<Vec<Finding>, AppError> {
    let mut out = Vec::new();
    if sys.spec.status == SystemStatus::Retired {
        return Ok(out);
    }
    let id = sys.spec.id.as_str();
    // The register entry's own review cadence.
    let (last, last_index) = sys
        .last_review
        .as_ref()
        .map(|r| (r.time, r.index))
        .unwrap_or((sys.registered_time, sys.registered_index));
    let due = last + u64::from(sys.spec.review_interval_days) * DAY;
    if now > due {
        out.push(finding(
            "register_review_overdue",
            format!(
                "the register entry was last reviewed {}; a review was due {}",
                rfc3339(last),
                rfc3339(due)
            ),
            vec![last_index],
            due,
            None,
        ));
    }
    incident_findings(store, id, now, &mut out)?;
    let versions = models::list(store, id)?;
    for v in &versions {
        let name = v.spec.version.as_str();
        if matches!(
            v.status,
            VersionStatus::PendingReview | VersionStatus::ChangesRequested
        ) {
            let mut ev = vec![v.registered_index];
            ev.extend(v.reviews.iter().map(|r| r.id));
            out.push(finding(
                "model_version_awaiting_review",
                format!(
                    "version {name} is {} since {}",
                    models::status_name(v.status),
                    rfc3339(v.registered_time)
                ),
                ev,
                v.registered_time,
                Some(name),
            ));
        }
        if v.spec.substantial_modification
            && matches!(v.status, VersionStatus::Approved | VersionStatus::Deployed)
        {
            if let Some(r) = v.latest_review().filter(|r| !r.conformity_assessment) {
                out.push(finding(
                    "substantial_modification_without_conformity_assessment",
                    format!("version {name} is a substantial modification approved in entry {} without checklist.conformity_assessment", r.id),
                    vec![v.registered_index, r.id],
                    r.time,
                    Some(name),
                ));
            }
        }
    }
    if let Some(v) = versions
        .iter()
        .find(|v| v.status == VersionStatus::Deployed)
    {
        deployed_findings(store, sys, v, now, &mut out)?;
    }
    out.extend(failure_modes::findings(store, id, &sys.spec, now)?);
    out.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.code.cmp(&b.code)));
    Ok(out)
}

/// The findings a kind of test can raise on a deployed version.
struct TestRule {
    kind: &'static str,
    missing: &'static str,
    failing: &'static str,
    stale: &'static str,
    /// Whether a missing test is a finding even when the policy sets no maximum age.
    missing_always: bool,
    max_age_days: Option<u32>,
    failing_text: fn(&str, u64) -> String,
}

/// Bias tests are always required; drift tests once the policy gives them an age.
fn test_rules(policy: &Policy) -> [TestRule; 2] {
    [
        TestRule {
            kind: "bias",
            missing: "bias_test_missing",
            failing: "bias_test_failing",
            stale: "bias_test_stale",
            missing_always: true,
            max_age_days: policy.max_bias_test_age_days,
            failing_text: |name, id| {
                format!("deployed version {name}'s latest bias test (entry {id}) failed")
            },
        },
        TestRule {
            kind: "drift",
            missing: "drift_test_missing",
            failing: "retraining_trigger",
            stale: "drift_test_stale",
            missing_always: false,
            max_age_days: policy.max_drift_test_age_days,
            failing_text: |name, id| {
                format!("the latest drift test of {name} (entry {id}) detected drift: retrain or re-validate")
            },
        },
    ]
}
fn deployed_findings(
    store: &dyn Store,
    sys: &SystemRecord,
    v: &VersionRecord,
    now: u64,
    out: &mut Vec<Finding>,
) -> Result<(), AppError> {
    let id = sys.spec.id.as_str();
    let name = v.spec.version.as_str();
    let policy = &sys.spec.policy;
    let deployed_at = v.deployed_time.unwrap_or(v.registered_time);
    let deployed_index = v.deployed_index.unwrap_or(v.registered_index);
    let newest = |kind: &str| {
        v.latest_tests
            .values()
            .filter(|t| t.kind == kind)
            .max_by_key(|t| t.time)
            .cloned()
    };
    // Bias and drift: missing, failing, stale (the same three checks per kind).
    for rule in test_rules(policy) {
        match newest(rule.kind) {
            None if rule.missing_always || rule.max_age_days.is_some() => out.push(finding(
                rule.missing,
                format!("deployed version {name} has no {} test", rule.kind),
                vec![deployed_index],
                deployed_at,
                Some(name),
            )),
            None => {}
            Some(t) => {
                if !t.passed {
                    out.push(finding(
                        rule.failing,
                        (rule.failing_text)(name, t.id),
                        vec![t.id],
                        t.time,
                        Some(name),
                    ));
                }
                if let Some(max) = rule.max_age_days {
                    let limit = t.time + u64::from(max) * DAY;
                    if now > limit {
                        out.push(finding(
                            rule.stale,
                            format!(
                                "the latest {} test of {name} (entry {}) is older than {max} days",
                                rule.kind, t.id
                            ),
                            vec![t.id],
                            limit,
                            Some(name),
                        ));
                    }
                }
            }
        }
    }
    // Recent decisions: logging gap and human oversight.
    let recent = trail::trail(
        store,
        id,
        &trail::TrailFilter {
            newest_first: true,
            limit: OVERSIGHT_WINDOW * 5,
            ..Default::default()
        },
    )?
    .0;
    if let Some(hours) = policy.max_decision_gap_hours {
        let last = match recent.first() {
            Some(i) => Some((*i, read_decision(store, *i)?.body.occurred_at)),
            None => None,
        };
        let (since, ev) = match last {
            Some((i, t)) => (t.max(deployed_at), vec![i]),
            None => (deployed_at, vec![deployed_index]),
        };
        let limit = since + u64::from(hours) * HOUR;
        if now > limit {
            out.push(finding("logging_gap", format!("no decision logged by {name} since {} (the policy expects one every {hours} h)", rfc3339(since)), ev, limit, Some(name)));
        }
    }
    let mut reviewed = Vec::new();
    for i in recent {
        let d = read_decision(store, i)?;
        if let Some(h) = d.body.human_review {
            reviewed.push((i, d.body.occurred_at, h));
            if reviewed.len() == OVERSIGHT_WINDOW {
                break;
            }
        }
    }
    if reviewed.len() >= 20 {
        reviewed.reverse(); // oldest first
        let accepted = reviewed
            .iter()
            .filter(|r| r.2.action == activity::OversightAction::Accepted)
            .count() as f64
            / reviewed.len() as f64;
        let half = reviewed.len() / 2;
        let median = |s: &[(u64, u64, decisions::HumanReview)]| {
            let mut v: Vec<u64> = s.iter().map(|r| r.2.review_ms).collect();
            v.sort_unstable();
            v[v.len() / 2] as f64
        };
        let (older, newer) = (median(&reviewed[..half]), median(&reviewed[half..]));
        if accepted >= 0.95 && newer < 0.5 * older {
            out.push(finding(
                "human_oversight_atrophy",
                format!("over the last {} reviewed decisions, {:.0} % were accepted as proposed and the median review time fell from {older:.0} ms to {newer:.0} ms", reviewed.len(), accepted * 100.0),
                vec![reviewed[0].0, reviewed[reviewed.len() - 1].0],
                reviewed[half].1,
                Some(name),
            ));
        }
    }
    Ok(())
}
fn read_decision(
    store: &dyn Store,
    index: u64,
) -> Result<Entry<decisions::DecisionBody>, AppError> {
    crate::register::entry_at(store, index)
}

/// Serious incidents not yet reported: due once a third of the time to the deadline is
/// left, high once it has passed.
fn incident_findings(
    store: &dyn Store,
    system: &str,
    now: u64,
    out: &mut Vec<Finding>,
) -> Result<(), AppError> {
    for inc in incidents::list(store, system)? {
        let d = &inc.declared;
        let warn = d.deadline - d.category.period() / 3;
        if inc.reported.is_some() || now < warn {
            continue;
        }
        let late = now > d.deadline;
        let mut f = finding(
            "incident_report_due",
            format!(
                "serious incident {} ({}) {} be reported by {} (AI Act Art. 73); record its report",
                inc.id,
                d.category.as_str(),
                if late { "had to" } else { "must" },
                rfc3339(d.deadline)
            ),
            vec![inc.id],
            if late { d.deadline } else { warn },
            None,
        );
        f.severity = if late {
            Severity::High
        } else {
            Severity::Medium
        };
        f.subject = Some(inc.id.to_string());
        out.push(f);
    }
    Ok(())
}
