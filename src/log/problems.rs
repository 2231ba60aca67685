//! The log's errors (and its storage's) as codes of the service's one error table:
//! mapped from this side, so `error.rs` depends on nothing above it.

use super::sequencer::{AppendError, MAX_ENTRY_BYTES};
use super::LedgerError;
use crate::error::{AppError, ErrorCode, HasErrorCode};
use crate::storage::StoreError;

impl HasErrorCode for LedgerError {
    fn error_code(&self) -> ErrorCode {
        use LedgerError as L;
        match self {
            L::BeyondLog(_) => ErrorCode::NotFound,
            L::OutOfRange(_) => ErrorCode::InvalidQuery,
            L::Store(_) | L::Inconsistent { .. } | L::Invalid(_) => ErrorCode::Internal,
        }
    }
}

impl HasErrorCode for StoreError {
    fn error_code(&self) -> ErrorCode {
        match self {
            StoreError::Full(_) => ErrorCode::StorageFull,
            // The backend failed (a lost connection, a primary that stepped down):
            // nothing was done, and the same request may succeed in a moment.
            StoreError::Backend { .. } => ErrorCode::Unavailable,
            StoreError::Corrupt(_) => ErrorCode::Internal,
        }
    }
}

impl From<LedgerError> for AppError {
    fn from(e: LedgerError) -> Self {
        AppError::new(e.error_code(), e.to_string())
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        AppError::new(e.error_code(), e.to_string())
    }
}

impl From<AppendError<AppError>> for AppError {
    fn from(e: AppendError<AppError>) -> Self {
        use AppendError as A;
        match e {
            A::Rejected(e) => e,
            A::Storage(m) => {
                AppError::new(ErrorCode::Unavailable, format!("nothing was recorded: {m}"))
            }
            A::Full(m) => AppError::new(
                ErrorCode::StorageFull,
                format!("nothing was recorded: {m}; writes resume once space returns"),
            ),
            A::StorageFailed(m) => AppError::new(ErrorCode::StorageFailed, m),
            A::Unavailable => AppError::new(
                ErrorCode::Unavailable,
                "the ledger writer has stopped; nothing was recorded",
            ),
            A::TooLarge { field, bytes } => {
                let detail = format!(
                    "the entry would be {bytes} bytes; an entry is at most {} (a tlog-tiles entry bundle holds a 2-byte length); nothing was recorded",
                    MAX_ENTRY_BYTES
                );
                match field {
                    Some(f) => AppError::field(ErrorCode::EntryTooLarge, f, detail),
                    None => AppError::new(ErrorCode::EntryTooLarge, detail),
                }
            }
        }
    }
}
