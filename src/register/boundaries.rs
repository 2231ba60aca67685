//! Boundary events (FM-05): failures at a system's integration boundaries that
//! produced no decision (a timeout, a circuit opened, a schema rejected), recorded by
//! pipelines as `boundary.event` and kept by log index (`bnd` rows), so the report
//! counts them with the decisions of a window between its first and last index.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::decisions::Integration;
use super::evidence::{Crossing, CrossingStatus};
use super::keys::{boundary_key, boundary_prefix};
use super::{append, cbor_packed, draft, parse_time, uncbor, validate_text};
use crate::error::AppError;
use crate::log::{Command, Staging};
use crate::storage::Store;

pub const EVENT: &str = "boundary.event";

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

/// The body of `boundary.event`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EventBody {
    /// Unix µs.
    pub occurred_at: u64,
    pub upstream: String,
    pub downstream: String,
    pub contract_version: String,
    pub status: CrossingStatus,
    pub latency_ms: u64,
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
        super::systems::load_active(s, &system)?;
        append(s, vec![draft(EVENT, &system, &e.0)?])
    })
}

/// The rows [`record_command`] reads.
pub fn record_reads(system: &str) -> Vec<Vec<u8>> {
    vec![super::systems::system_key(system)]
}

pub(crate) fn project(
    system: &str,
    body: &serde_cbor::Value,
    index: u64,
    s: &mut Staging<'_>,
) -> Result<(), AppError> {
    let b: EventBody = super::from_value(body)?;
    s.put(
        boundary_key(system, index),
        cbor_packed(&Crossing {
            upstream: b.upstream,
            downstream: b.downstream,
            contract_version: b.contract_version,
            status: b.status,
            latency_ms: b.latency_ms,
        }),
    );
    Ok(())
}

/// The latest boundary events of `system` with a log index in `from..=to`, at most
/// `limit`, in log order.
pub fn latest_between(
    store: &dyn Store,
    system: &str,
    from: u64,
    to: u64,
    limit: usize,
) -> Result<Vec<Crossing>, AppError> {
    let lo = boundary_key(system, from);
    let hi = match to.checked_add(1) {
        Some(t) => boundary_key(system, t),
        None => super::keys::prefix_end(boundary_prefix(system)),
    };
    let mut rows = store
        .range(&lo, &hi, true, limit)?
        .into_iter()
        .map(|(_, v)| uncbor(&v))
        .collect::<Result<Vec<Crossing>, AppError>>()?;
    rows.reverse();
    Ok(rows)
}
