//! Registering an AI system, revising its register entry and the periodic register
//! review.

use crate::error::{AppError, ErrorCode};
use crate::log::Command;
use crate::register::projections::keys::system_key;
use crate::register::projections::systems::{load, RegisterReview, SystemBody, SystemSpec};
use crate::register::{append, draft, REGISTER_REVIEWED, SYSTEM_REGISTERED, SYSTEM_REVISED};
pub fn register_command(spec: SystemSpec) -> Command<AppError> {
    Box::new(move |s| {
        if s.get(&system_key(&spec.id))?.is_some() {
            return Err(AppError::field(
                ErrorCode::AlreadyExists,
                "id",
                format!("AI system {:?} is already registered", spec.id),
            ));
        }
        let id = spec.id.clone();
        append(vec![draft(
            SYSTEM_REGISTERED,
            &id,
            &SystemBody { revision: 1, spec },
        )?])
    })
}
pub fn revise_command(id: String, spec: SystemSpec) -> Command<AppError> {
    Box::new(move |s| {
        let cur = load(s, &id)?;
        if spec.id != id {
            return Err(AppError::invalid("id", "a system's id cannot change"));
        }
        if cur.spec == spec {
            return Err(AppError::new(
                ErrorCode::Conflict,
                "the revision changes nothing",
            ));
        }
        append(vec![draft(
            SYSTEM_REVISED,
            &id,
            &SystemBody {
                revision: cur.revision + 1,
                spec,
            },
        )?])
    })
}
pub fn review_command(id: String, review: RegisterReview) -> Command<AppError> {
    Box::new(move |s| {
        load(s, &id)?;
        append(vec![draft(REGISTER_REVIEWED, &id, &review)?])
    })
}
