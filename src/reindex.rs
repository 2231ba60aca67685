//! `veritrail reindex`: every projection rebuilt from the log alone, each entry checked
//! with the log's chain check as it is applied.

use crate::storage::Store;

pub fn reindex(store: &dyn Store) -> anyhow::Result<u64> {
    crate::log::rebuild_projections(store, &crate::projection::table()).map_err(|e| match e {
        crate::log::RebuildError::Apply(i, err) => anyhow::anyhow!("entry {i}: {err}"),
        other => anyhow::anyhow!("{other}"),
    })
}
