//! Serious incidents (AI Act Art. 73): an officer declares one (`incident.declared`, with
//! the reporting deadline that applies from the time the provider became aware of it)
//! and later records that it was reported (`incident.reported`). Until then the finding
//! `incident_report_due` opens once a third of the time is left and turns high when the
//! deadline has passed (`compliance.rs` reads the open incidents from here).
//!
//! The deadlines: 10 days for a death, 2 days for a serious and irreversible disruption
//! of critical infrastructure or a widespread infringement, 15 days otherwise
//! (Art. 73(2)–(4)). Descriptions go into the immutable log: they must hold no personal
//! data (the API says so; it cannot tell).

use crate::error::{AppError, ErrorCode};
use crate::log::{Applied, Staging};
use crate::register::projections::keys::key;
use crate::register::{cbor, from_value, get, uncbor};
use crate::storage::Store;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
pub const DECLARED: &str = "incident.declared";
pub const REPORTED: &str = "incident.reported";
const DAY: u64 = 86_400_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// The death of a person, or serious harm to a person's health (10 days).
    Death,
    /// A serious and irreversible disruption of critical infrastructure (2 days).
    CriticalInfrastructure,
    /// A widespread infringement of fundamental rights obligations (2 days).
    WidespreadInfringement,
    /// Any other serious incident (15 days).
    Other,
}
impl Category {
    /// The time from awareness to the reporting deadline, µs.
    pub fn period(self) -> u64 {
        match self {
            Category::Death => 10 * DAY,
            Category::CriticalInfrastructure | Category::WidespreadInfringement => 2 * DAY,
            Category::Other => 15 * DAY,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Death => "death",
            Category::CriticalInfrastructure => "critical_infrastructure",
            Category::WidespreadInfringement => "widespread_infringement",
            Category::Other => "other",
        }
    }
}

/// The body of `incident.declared`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeclaredBody {
    pub finding_index: Option<u64>,
    pub category: Category,
    /// Unix µs.
    pub aware_at: u64,
    /// Unix µs: `aware_at` plus the category's period.
    pub deadline: u64,
    pub description: String,
}

/// The body of `incident.reported`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportedBody {
    /// The `incident.declared` entry.
    pub incident: u64,
    pub authority: String,
    pub reference: String,
    /// Unix µs.
    pub reported_at: u64,
}

/// An incident as the register keeps it; its id is its declaration's entry index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentRow {
    pub id: u64,
    pub declared_by: String,
    pub declared: DeclaredBody,
    /// The `incident.reported` entry and its body, once reported.
    pub reported: Option<(u64, ReportedBody)>,
}
fn prefix(system: &str) -> Vec<u8> {
    let mut k = key(&[b"inc", system.as_bytes()]);
    k.push(0);
    k
}
pub(crate) fn row_key(system: &str, id: u64) -> Vec<u8> {
    let mut k = prefix(system);
    k.extend_from_slice(&id.to_be_bytes());
    k
}
pub(crate) fn project(e: &Applied<'_>, s: &mut Staging<'_>) -> Result<(), AppError> {
    let Applied {
        kind,
        body,
        index,
        actor,
        ..
    } = *e;
    let Some(system) = e.system else {
        return Ok(());
    };
    if kind == DECLARED {
        let declared: DeclaredBody = from_value(body)?;
        s.put(
            row_key(system, index),
            cbor(&IncidentRow {
                id: index,
                declared_by: actor.to_owned(),
                declared,
                reported: None,
            }),
        );
    } else {
        let reported: ReportedBody = from_value(body)?;
        let k = row_key(system, reported.incident);
        let mut row: IncidentRow =
            get(s, &k)?.ok_or_else(|| AppError::internal("a report of an unknown incident"))?;
        row.reported = Some((index, reported));
        s.put(k, cbor(&row));
    }
    Ok(())
}

/// Incident `id` of `system`.
pub fn get_one(store: &dyn Store, system: &str, id: u64) -> Result<IncidentRow, AppError> {
    let raw = store.get(&row_key(system, id))?.ok_or_else(|| {
        AppError::new(
            ErrorCode::IncidentNotFound,
            format!("no incident {id} of {system:?}"),
        )
    })?;
    uncbor(&raw)
}

/// The incidents of `system`, oldest first.
pub fn list(store: &dyn Store, system: &str) -> Result<Vec<IncidentRow>, AppError> {
    store
        .scan(&prefix(system), None, false, usize::MAX)?
        .into_iter()
        .map(|(_, v)| uncbor(&v))
        .collect()
}
