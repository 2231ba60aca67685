//! Declaring a serious incident (AI Act Art. 73) and recording its report: the requests
//! checked, the deadline set from the category, a report only once.

use crate::error::{AppError, ErrorCode};
use crate::log::sequencer::Command;
use crate::register::projections::incidents::{
    row_key, Category, DeclaredBody, IncidentRow, ReportedBody, DECLARED, REPORTED,
};
use crate::register::projections::{findings, systems};
use crate::register::{append, draft, get, validate_text};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A declaration as an officer sends it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentRequest {
    /// The `finding.opened` entry of this system the incident arose from, if any.
    pub finding_index: Option<u64>,
    pub category: Category,
    /// When the provider became aware of the incident (RFC 3339); the deadline runs from it.
    pub aware_at: String,
    /// What happened, without personal data (it is written to the immutable log).
    pub description: String,
}

/// A report as an officer records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    /// The market surveillance authority reported to.
    pub authority: String,
    /// The report's reference with that authority.
    pub reference: String,
    /// When it was reported (RFC 3339).
    pub reported_at: String,
}

/// Check a declaration: its texts and times (`latest` is the latest time a caller may
/// send). The body to append.
pub fn validate(req: IncidentRequest, latest: u64) -> Result<DeclaredBody, AppError> {
    validate_text("description", &req.description, 20_000, true)?;
    let aware_at = crate::register::parse_time("aware_at", &req.aware_at)?;
    if aware_at > latest {
        return Err(AppError::invalid("aware_at", "lies in the future"));
    }
    Ok(DeclaredBody {
        finding_index: req.finding_index,
        category: req.category,
        aware_at,
        deadline: aware_at + req.category.period(),
        description: req.description,
    })
}
pub fn validate_report(req: ReportRequest, latest: u64) -> Result<ReportedBody, AppError> {
    validate_text("authority", &req.authority, 500, true)?;
    validate_text("reference", &req.reference, 500, true)?;
    let reported_at = crate::register::parse_time("reported_at", &req.reported_at)?;
    if reported_at > latest {
        return Err(AppError::invalid("reported_at", "lies in the future"));
    }
    Ok(ReportedBody {
        incident: 0,
        authority: req.authority,
        reference: req.reference,
        reported_at,
    })
}
pub fn declare_command(system: String, body: DeclaredBody) -> Command<AppError> {
    Box::new(move |s| {
        systems::load(s, &system)?;
        if let Some(i) = body.finding_index {
            if !findings::is_opening_of(s, &system, i)? {
                return Err(AppError::invalid(
                    "finding_index",
                    format!("entry {i} is not a finding.opened entry of {system:?}"),
                ));
            }
        }
        append(vec![draft(DECLARED, &system, &body)?])
    })
}
pub fn report_command(system: String, mut body: ReportedBody, id: u64) -> Command<AppError> {
    Box::new(move |s| {
        let row: IncidentRow = get(s, &row_key(&system, id))?.ok_or_else(|| {
            AppError::new(
                ErrorCode::IncidentNotFound,
                format!("no incident {id} of {system:?}"),
            )
        })?;
        if let Some((index, _)) = row.reported {
            return Err(AppError::new(
                ErrorCode::Conflict,
                format!("incident {id} was reported already (entry {index})"),
            ));
        }
        if body.reported_at < row.declared.aware_at {
            return Err(AppError::invalid(
                "reported_at",
                "lies before the incident's aware_at",
            ));
        }
        body.incident = id;
        append(vec![draft(REPORTED, &system, &body)?])
    })
}
