//! `veritrail reindex`: every projection rebuilt from the log alone.

use crate::error::AppError;
use crate::log::entry::{self, RawEntry};
use crate::storage::Store;

pub fn reindex(store: &dyn Store) -> anyhow::Result<u64> {
    crate::log::rebuild_projections(store, |bytes, s| {
        let e: RawEntry = entry::decode(bytes).map_err(AppError::internal)?;
        crate::projection::project_entry(&e, s)
    })
    .map_err(|e| match e {
        crate::log::RebuildError::Apply(i, err) => anyhow::anyhow!("entry {i}: {err}"),
        other => anyhow::anyhow!("{other}"),
    })
}
