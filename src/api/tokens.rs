//! Token administration (admin role).

use actix_web::{delete, get, post, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{Admins, Caller};
use super::body::Json;
use super::{ReceiptView, State};
use crate::error::{AppError, Problem};
use crate::tokens::{self, Role};

pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(create).service(list).service(revoke);
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// 1-64 of a-z, 0-9, '-', '_', '.'; becomes the `actor` of everything the token writes. Never reused.
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct CreatedToken {
    pub name: String,
    pub role: Role,
    /// The secret; shown only in this answer and stored only as its SHA-256.
    pub token: String,
    pub receipt: ReceiptView,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct TokenView {
    pub name: String,
    pub role: Role,
    pub revoked: bool,
    /// Log index of the `token.created` entry.
    pub created_index: u64,
    /// Log index of the `token.revoked` entry, if revoked.
    pub revoked_index: Option<u64>,
}

/// Create a token; its creation is a `token.created` entry (without the secret).
#[utoipa::path(tag = "tokens", security(("bearer" = [])), request_body = CreateToken, responses(
    (status = 201, body = CreatedToken),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 401, body = Problem, content_type = "application/problem+json"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "The name is taken (or was, by a revoked token)", body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/tokens")]
async fn create(
    state: State,
    caller: Caller<Admins>,
    body: Json<CreateToken>,
) -> Result<HttpResponse, AppError> {
    let CreateToken { name, role } = body.0;
    tokens::validate_name(&name)?;
    let secret = tokens::new_secret();
    let receipt = state
        .ledger
        .append(
            &caller.name,
            tokens::create_command(name.clone(), role, tokens::secret_hash(&secret)),
        )
        .await?;
    Ok(HttpResponse::Created().json(CreatedToken {
        name,
        role,
        token: secret,
        receipt: receipt.into(),
    }))
}

/// Every token, live and revoked (never the secrets).
#[utoipa::path(tag = "tokens", security(("bearer" = [])), responses(
    (status = 200, body = Vec<TokenView>),
    (status = 401, body = Problem, content_type = "application/problem+json"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/tokens")]
async fn list(state: State, _caller: Caller<Admins>) -> Result<HttpResponse, AppError> {
    let out: Vec<TokenView> = tokens::list(&**state.ledger.store())?
        .into_iter()
        .map(|t| TokenView {
            name: t.name,
            role: t.role,
            revoked: t.revoked_index.is_some(),
            created_index: t.created_index,
            revoked_index: t.revoked_index,
        })
        .collect();
    Ok(HttpResponse::Ok().json(out))
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct RevokedToken {
    pub name: String,
    pub receipt: ReceiptView,
}

/// Revoke a token: it stops working as soon as the `token.revoked` entry is durable.
#[utoipa::path(tag = "tokens", security(("bearer" = [])), params(("name" = String, Path)), responses(
    (status = 200, body = RevokedToken),
    (status = 401, body = Problem, content_type = "application/problem+json"),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "Already revoked", body = Problem, content_type = "application/problem+json"),
))]
#[delete("/v1/tokens/{name}")]
async fn revoke(
    state: State,
    caller: Caller<Admins>,
    name: actix_web::web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let name = name.into_inner();
    let receipt = state
        .ledger
        .append(&caller.name, tokens::revoke_command(name.clone()))
        .await?;
    Ok(HttpResponse::Ok().json(RevokedToken {
        name,
        receipt: receipt.into(),
    }))
}
