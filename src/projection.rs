//! The projections: everything but the log is derived from entries by [`project`],
//! called by the writer in the same batch as the entry and by `reindex` over the whole
//! log. A projection never reads anything but earlier projections and the entry.

use crate::error::AppError;
use crate::log::entry::RawEntry;
use crate::log::{Draft, Drafts, Prepared, Staging};
use crate::storage::Store;

/// Apply one entry to the projections.
pub fn project(
    kind: &str,
    system: Option<&str>,
    body: &serde_cbor::Value,
    index: u64,
    time: u64,
    actor: &str,
    s: &mut Staging<'_>,
) -> Result<(), AppError> {
    if kind.starts_with("token.") {
        return crate::tokens::project(kind, body, index, time, s);
    }
    if kind == crate::events::subscriptions::CREATED
        || kind == crate::events::subscriptions::DELETED
    {
        return crate::events::subscriptions::project(kind, body, index, time, actor, s);
    }
    crate::register::project(kind, system, body, index, time, actor, s)
}

/// Project each draft at the index it will get and return them for appending: the
/// projection a command writes is exactly what `reindex` derives from the entries.
/// Every command that appends goes through here.
pub fn append(s: &mut Staging<'_>, drafts: Vec<Draft>) -> Result<Prepared, AppError> {
    let (index, time, actor) = (s.index(), s.time(), s.actor().to_owned());
    for (i, d) in drafts.iter().enumerate() {
        project(
            &d.kind,
            d.system.as_deref(),
            &d.body,
            index + i as u64,
            time,
            &actor,
            s,
        )?;
    }
    Drafts::new(drafts)
        .map(Prepared::Append)
        .ok_or_else(|| AppError::internal("a command appended nothing"))
}

/// Apply a stored entry (for `reindex`).
pub fn project_entry(e: &RawEntry, s: &mut Staging<'_>) -> Result<(), AppError> {
    project(
        &e.kind,
        e.system.as_deref(),
        &e.body,
        e.index,
        e.time,
        &e.actor,
        s,
    )
}

/// Every projection row, for comparing a rebuilt state with a live one.
pub fn dump(store: &dyn Store) -> Result<crate::storage::Rows, AppError> {
    Ok(store.scan(b"", None, false, usize::MAX)?)
}
