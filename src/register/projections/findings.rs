//! Findings as entries. When a finding starts to hold, the service appends
//! `finding.opened`; when it stops, `finding.resolved` — so "since when was this system
//! out of compliance" is provable from the log, and the feed and webhooks carry it.
//!
//! The findings themselves are computed by the compliance report from the committed
//! projections; a reconciliation compares them with the open findings (a projection of
//! these entries) inside the writer, so there is at most one open entry per (system,
//! code, subject), whatever runs the reconciliation and however often: one node or
//! several on one database, before and after a restart. A finding whose severity changes
//! is resolved and opened again in one command. The explanation's wording is not
//! compared (it holds figures that move); code, subject and severity are.
//!
//! `subject` names what a finding is about: for the register's findings, the model
//! version (or none, for the register entry's own review).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

use crate::error::AppError;
use crate::log::{Applied, Staging};
use crate::register::projections::keys::key;
use crate::register::{cbor, from_value, uncbor};
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
pub(crate) fn open_prefix(system: Option<&str>) -> Vec<u8> {
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
pub(crate) fn project(e: &Applied<'_>, s: &mut Staging<'_>) -> Result<(), AppError> {
    let Applied {
        kind,
        body,
        index,
        time,
        ..
    } = *e;
    let system = e.system;
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
pub(crate) fn open_of(
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
        let e: crate::log::entry::Entry<FindingBody> = crate::register::entry_at(store, index)?;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Finding {
    /// Stable code, e.g. `register_review_overdue`.
    pub code: String,
    pub severity: Severity,
    /// One line: what is wrong and what would clear it.
    pub explanation: String,
    /// Log indices of the entries that show it.
    pub evidence: Vec<u64>,
    /// Since when it holds (RFC 3339).
    pub since: String,
    pub model_version: Option<String>,
    /// What it is about: the model version, the incident (its id), or null.
    pub subject: Option<String>,
}

/// Every finding code, with its severity and meaning (the README lists them too).
pub const CODES: &[(&str, Severity, &str)] = &[
    ("model_version_awaiting_review", Severity::Medium, "a registered model version has no deciding compliance review"),
    ("register_review_overdue", Severity::High, "the periodic review of the register entry is past due"),
    ("bias_test_missing", Severity::High, "the deployed version has no bias test"),
    ("bias_test_failing", Severity::High, "the deployed version's latest bias test failed"),
    ("bias_test_stale", Severity::High, "the deployed version's latest bias test is older than the policy allows"),
    ("drift_test_missing", Severity::Medium, "the policy limits drift test age but the deployed version has none"),
    ("drift_test_stale", Severity::Medium, "the deployed version's latest drift test is older than the policy allows"),
    ("retraining_trigger", Severity::High, "the deployed version's latest drift test failed: retrain or re-validate"),
    ("substantial_modification_without_conformity_assessment", Severity::High, "a substantial modification (AI Act Art. 43(4)) was approved without a recorded conformity assessment"),
    ("logging_gap", Severity::Medium, "the deployed version logged no decision for longer than the policy expects"),
    ("human_oversight_atrophy", Severity::Medium, "human reviewers accept nearly everything while spending ever less time (AI Act Art. 14)"),
    ("subscription_failing", Severity::Medium, "a webhook subscription has failed to deliver for longer than the service allows (no system; subject: the subscription)"),
    ("witnessing_lag", Severity::High, "no checkpoint has met the witness quorum for longer than the service allows (no system; subject: a witness that has not cosigned)"),
    ("incident_report_due", Severity::High, "a declared serious incident is unreported: medium once a third of its time is left, high past its deadline (AI Act Art. 73)"),
    ("accuracy_decay", Severity::High, "FM-01: accuracy in the latest outcome window fell below the version's baseline by more than the policy allows while mean confidence stayed put"),
    ("outcome_coverage_low", Severity::Medium, "FM-01: too few decisions older than the expected delay have an outcome: the diagnosis is blind"),
    ("contest_rate_high", Severity::High, "FM-01: the share of labelled decisions overturned on contest exceeds the policy (GDPR Art. 22(3))"),
    ("proxy_outcome_divergence", Severity::Medium, "FM-04: a proxy metric correlates with a business metric below the policy, or the proxies rose across versions while a business metric fell"),
    ("overconfidence", Severity::High, "FM-07: expected calibration error, or the share of wrong decisions at confidence >= 0.9, exceeds the policy"),
    ("output_homogeneity", Severity::Medium, "FM-02: the normalised entropy of the predictions fell against the previous version's by more than the policy allows (a feedback loop narrows what the system decides)"),
    ("exploration_below_policy", Severity::Medium, "FM-02: fewer decisions were chosen by randomised exploration than the policy requires"),
    ("blind_review_backlog", Severity::Medium, "FM-03: the oldest open blind-review case is older than the policy allows"),
    ("human_accuracy_low", Severity::High, "FM-03: blind reviewers' independent judgments match the outcomes less often than the policy requires (AI Act Art. 14)"),
    ("review_time_below_minimum", Severity::Medium, "FM-03: too many human reviews took less than the policy's minimum review time"),
    ("integration_error_rate", Severity::High, "FM-05: the error or timeout rate at the system's integration boundaries exceeds the policy"),
    ("fallback_rate_high", Severity::Medium, "FM-05: the share of boundary records that fell back exceeds the policy"),
    ("contract_undeclared", Severity::Medium, "FM-05: a high-risk system crosses integration boundaries without a registered interface contract"),
    ("contract_mismatch", Severity::High, "FM-05: boundary records speak a contract version other than the registered one"),
    ("inconsistent_answers", Severity::High, "FM-07: groups of equivalent requests got different predictions more often than the policy allows"),
    ("unvalidated_outputs", Severity::High, "FM-07: decisions of a high-risk system went out without a passed validation step"),
];

/// The severity of finding `code` (medium for a code not in [`CODES`]).
pub fn severity_of(code: &str) -> Severity {
    CODES
        .iter()
        .find(|c| c.0 == code)
        .map(|c| c.1)
        .unwrap_or(Severity::Medium)
}
