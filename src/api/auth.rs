//! Bearer tokens. A request's token is hashed and looked up in the token projection on
//! every request, so a revoked token stops working with the batch that revokes it.

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};

use super::State;
use crate::error::{AppError, ErrorCode};
use crate::tokens::{self, Role};

/// The authenticated caller: the token's name (the `actor` of what it writes) and role.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// Refuse the call unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), AppError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            let allowed: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            Err(AppError::new(
                ErrorCode::Forbidden,
                format!(
                    "token {:?} has role {}; this needs {}",
                    self.name,
                    self.role.as_str(),
                    allowed.join(" or ")
                ),
            ))
        }
    }
}

/// Roles that may read the log and its proofs.
pub const READERS: &[Role] = &[Role::Auditor, Role::Officer, Role::Pipeline, Role::Admin];

fn caller(req: &HttpRequest) -> Result<Caller, AppError> {
    let state = req
        .app_data::<State>()
        .ok_or_else(|| AppError::internal("no application state"))?;
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .ok_or_else(|| {
            AppError::new(
                ErrorCode::Unauthenticated,
                "missing Authorization: Bearer <token>",
            )
        })?;
    let value = header
        .to_str()
        .map_err(|_| AppError::new(ErrorCode::Unauthenticated, "malformed Authorization header"))?;
    let secret = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            AppError::new(
                ErrorCode::Unauthenticated,
                "Authorization must be 'Bearer <token>'",
            )
        })?;
    match tokens::authenticate(&**state.ledger.store(), secret)? {
        Some(rec) => Ok(Caller {
            name: rec.name,
            role: rec.role,
        }),
        None => Err(AppError::new(
            ErrorCode::Unauthenticated,
            "unknown or revoked token",
        )),
    }
}

impl FromRequest for Caller {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(caller(req))
    }
}
