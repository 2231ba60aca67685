//! Bearer tokens. A request's token is hashed and looked up in the token projection on
//! every request, so a revoked token stops working with the batch that revokes it.

use std::future::{ready, Ready};
use std::marker::PhantomData;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};

use super::State;
use crate::error::{AppError, ErrorCode};
use crate::tokens::{self, Role};

/// Who may call a route. A handler names it in its `Caller<A>` argument, so the role
/// is checked by the extractor, before any later argument (the body above all) is read:
/// a caller without the role costs a token lookup, never a body.
pub trait Access {
    const ROLES: &'static [Role];
}

macro_rules! access {
    ($($(#[$doc:meta])* $name:ident = [$($role:ident),+];)+) => {$(
        $(#[$doc])*
        pub struct $name;
        impl Access for $name {
            const ROLES: &'static [Role] = &[$(Role::$role),+];
        }
    )+};
}

access! {
    /// Every role that reads the register and the log.
    Readers = [Auditor, Officer, Pipeline, Admin];
    /// Who reads decisions and findings: officers and auditors.
    DecisionReaders = [Officer, Auditor];
    /// Who writes model versions and tests: pipelines and officers.
    ModelWriters = [Pipeline, Officer];
    /// Who manages webhook subscriptions (a pipeline subscribes to learn that its
    /// version was approved).
    Subscribers = [Admin, Officer, Pipeline];
    Officers = [Officer];
    Pipelines = [Pipeline];
    Admins = [Admin];
    /// Blind reviewers, the only role that lists and judges blind cases.
    Reviewers = [Reviewer];
}

/// The authenticated caller, with one of the roles of `A`: the token's name (the
/// `actor` of what it writes) and role.
#[derive(Debug)]
pub struct Caller<A: Access> {
    pub name: String,
    pub role: Role,
    access: PhantomData<A>,
}

fn refuse(name: &str, role: Role, roles: &[Role]) -> AppError {
    let allowed: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    AppError::new(
        ErrorCode::Forbidden,
        format!(
            "token {name:?} has role {}; this needs {}",
            role.as_str(),
            allowed.join(" or ")
        ),
    )
}

fn caller<A: Access>(req: &HttpRequest) -> Result<Caller<A>, AppError> {
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
        Some(rec) if A::ROLES.contains(&rec.role) => Ok(Caller {
            name: rec.name,
            role: rec.role,
            access: PhantomData,
        }),
        Some(rec) => Err(refuse(&rec.name, rec.role, A::ROLES)),
        None => Err(AppError::new(
            ErrorCode::Unauthenticated,
            "unknown or revoked token",
        )),
    }
}

impl<A: Access> Caller<A> {
    /// The caller of `req`, for a handler whose roles depend on configuration.
    pub fn check(req: &HttpRequest) -> Result<Self, AppError> {
        caller(req)
    }
}

impl<A: Access> FromRequest for Caller<A> {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(caller(req))
    }
}
