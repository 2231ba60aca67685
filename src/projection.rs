//! The projection table: every module's declaration of the entry kinds it projects,
//! gathered into the one table the log is handed at open (`startup.rs`) and that
//! `reindex` applies to the stored entries. Nothing below imports this file: a module
//! declares its projectors and knows nothing of the others'.

use crate::error::AppError;
use crate::log::Projections;
use crate::storage::Store;

/// The service's projection table: tokens, webhook subscriptions and the register.
pub fn table() -> Projections<AppError> {
    Projections::of(&[
        crate::tokens::PROJECTS,
        crate::events::subscriptions::PROJECTS,
        crate::register::projections::PROJECTS,
    ])
}

/// Every projection row, for comparing a rebuilt state with a live one.
pub fn dump(store: &dyn Store) -> Result<crate::storage::Rows, AppError> {
    Ok(store.scan(b"", None, false, usize::MAX)?)
}
