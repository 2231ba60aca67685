//! Recording a boundary event (FM-05): the request checked field by field, then
//! `boundary.event` against a registered system.

use crate::error::AppError;
use crate::log::Command;
use crate::register::projections::boundaries::{EventBody, EVENT};
use crate::register::projections::decisions::Integration;
use crate::register::projections::evidence::CrossingStatus;
use crate::register::projections::{keys, systems};
use crate::register::{append, draft, parse_time, validate_text};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A boundary event as a pipeline sends it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventRequest {
    /// When it happened (RFC 3339).
    pub occurred_at: String,
    pub upstream: String,
    pub downstream: String,
    pub contract_version: String,
    pub status: CrossingStatus,
    pub latency_ms: u64,
    /// What happened (operational text, never personal data), at most 500 characters.
    #[serde(default)]
    pub detail: String,
}

/// A checked boundary event.
#[derive(Debug, Clone)]
pub struct ValidEvent(EventBody);
impl EventRequest {
    /// Check every field; `occurred_at` no later than `latest` (unix µs).
    pub fn validate(self, latest: u64) -> Result<ValidEvent, AppError> {
        let occurred_at = parse_time("occurred_at", &self.occurred_at)?;
        if occurred_at > latest {
            return Err(AppError::invalid("occurred_at", "lies in the future"));
        }
        let crossing = Integration {
            upstream: self.upstream,
            downstream: self.downstream,
            contract_version: self.contract_version,
            status: self.status,
            latency_ms: self.latency_ms,
        };
        // The same rules as a decision's `integration`, named as this body's fields.
        crossing.validate("")?;
        validate_text("detail", &self.detail, 500, false)?;
        Ok(ValidEvent(EventBody {
            occurred_at,
            upstream: crossing.upstream,
            downstream: crossing.downstream,
            contract_version: crossing.contract_version,
            status: crossing.status,
            latency_ms: crossing.latency_ms,
            detail: self.detail,
        }))
    }
}

/// Record a boundary event of `system` (pipeline): the system must be registered.
pub fn record_command(system: String, e: ValidEvent) -> Command<AppError> {
    Box::new(move |s| {
        let sys = systems::load_active(s, &system)?;
        if e.0.occurred_at < sys.registered_time {
            return Err(AppError::invalid(
                "occurred_at",
                "lies before the system was registered",
            ));
        }
        append(vec![draft(EVENT, &system, &e.0)?])
    })
}

/// The rows [`record_command`] reads.
pub fn record_reads(system: &str) -> Vec<Vec<u8>> {
    vec![keys::system_key(system)]
}
