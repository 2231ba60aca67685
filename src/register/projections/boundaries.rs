//! Boundary events (FM-05): failures at a system's integration boundaries that
//! produced no decision (a timeout, a circuit opened, a schema rejected), recorded by
//! pipelines as `boundary.event` and kept by log index (`bnd` rows), so the report
//! counts them with the decisions of a window between its first and last index.

use crate::error::AppError;
use crate::log::{Applied, Staging};
use crate::register::projections::evidence::{Crossing, CrossingStatus};
use crate::register::projections::keys;
use crate::register::projections::keys::{boundary_key, boundary_prefix};
use crate::register::{cbor_packed, uncbor};
use crate::storage::Store;
use serde::{Deserialize, Serialize};
pub const EVENT: &str = "boundary.event";

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
pub(crate) fn project(e: &Applied<'_>, s: &mut Staging<'_>) -> Result<(), AppError> {
    let Applied { body, index, .. } = *e;
    let Some(system) = e.system else {
        return Ok(());
    };
    let b: EventBody = crate::register::from_value(body)?;
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
        None => keys::prefix_end(boundary_prefix(system)),
    };
    let mut rows = store
        .range(&lo, &hi, true, limit)?
        .into_iter()
        .map(|(_, v)| uncbor(&v))
        .collect::<Result<Vec<Crossing>, AppError>>()?;
    rows.reverse();
    Ok(rows)
}
