//! Batches: the items of a batch checked for size, appended in one go, and a result
//! per item, in order (decisions, outcomes and boundary events answer alike).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ReceiptView, State};
use crate::error::{AppError, Problem};
use crate::log::AppendRequest;

/// The result of one item of a batch.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchItem {
    pub decision_id: Option<String>,
    /// `recorded`, `duplicate` or `rejected`.
    pub status: String,
    pub receipt: Option<ReceiptView>,
    pub problem: Option<Problem>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchResult {
    pub recorded: usize,
    pub duplicates: usize,
    pub rejected: usize,
    pub results: Vec<BatchItem>,
}

pub const MAX_BATCH: usize = 10_000;

/// The items of a batch, refused (naming `field`) unless 1 to [`MAX_BATCH`].
pub(super) fn batch_size<T>(field: &str, items: Vec<T>) -> Result<Vec<T>, AppError> {
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(AppError::invalid(
            field,
            format!("must hold 1 to {MAX_BATCH} {field}"),
        ));
    }
    Ok(items)
}

/// One item of a batch: its `decision_id` (when it names one), and the request to
/// append or why it was refused.
pub(super) type BatchEntry = (Option<String>, Result<AppendRequest<AppError>, AppError>);

/// Append the valid items of a batch (each `(decision_id, its request or why it was
/// refused)`), in one go: a result per item, in order, problems named `field[i]`.
pub(super) async fn run_batch(state: &State, field: &str, items: Vec<BatchEntry>) -> BatchResult {
    let mut results: Vec<BatchItem> = Vec::with_capacity(items.len());
    let mut requests = Vec::new();
    let mut slots = Vec::new();
    for (i, (decision_id, request)) in items.into_iter().enumerate() {
        match request {
            Ok(r) => {
                slots.push(i);
                requests.push(r);
                results.push(BatchItem {
                    decision_id,
                    status: String::new(),
                    receipt: None,
                    problem: None,
                });
            }
            Err(e) => results.push(BatchItem {
                decision_id,
                status: "rejected".into(),
                receipt: None,
                problem: Some(e.within(&format!("{field}[{i}]")).problem()),
            }),
        }
    }
    let answers = state.ledger.append_many(requests).await;
    for (slot, answer) in slots.into_iter().zip(answers) {
        let item = &mut results[slot];
        match answer {
            Ok(r) => {
                item.status = if r.appended { "recorded" } else { "duplicate" }.into();
                item.receipt = Some(r.into());
            }
            Err(e) => {
                item.status = "rejected".into();
                item.problem = Some(
                    AppError::from(e)
                        .within(&format!("{field}[{slot}]"))
                        .problem(),
                );
            }
        }
    }
    let count = |s: &str| results.iter().filter(|r| r.status == s).count();
    let (recorded, duplicates, rejected) =
        (count("recorded"), count("duplicate"), count("rejected"));
    BatchResult {
        recorded,
        duplicates,
        rejected,
        results,
    }
}
