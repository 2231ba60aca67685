//! API tokens and roles, event-sourced on the ledger: `token.created` carries the
//! token's name, role and the SHA-256 of its secret (never the secret), and
//! `token.revoked` its name. The projection maps names and secret hashes to records.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use crate::error::{AppError, ErrorCode};
use crate::log::{Applied, Command, Draft, Drafts, Prepared, Projects, Staging};
use crate::storage::Store;

pub const KIND_CREATED: &str = "token.created";
pub const KIND_REVOKED: &str = "token.revoked";

/// Who a token speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Creates and revokes tokens.
    Admin,
    /// Deployment pipelines: register model versions, record tests, deploy, log decisions.
    Pipeline,
    /// Compliance officers: the register, reviews, trails, erasure.
    Officer,
    /// Read-only: everything an audit needs.
    Auditor,
    /// Blind reviewers: list and judge blind-review cases, and nothing else (no log,
    /// trail, bundle, event or console screen shows them a decision).
    Reviewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Pipeline => "pipeline",
            Role::Officer => "officer",
            Role::Auditor => "auditor",
            Role::Reviewer => "reviewer",
        }
    }
}

/// The projection row of one token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TokenRecord {
    pub name: String,
    pub role: Role,
    #[serde(with = "serde_bytes")]
    pub secret_sha256: Vec<u8>,
    pub created_index: u64,
    pub created_time: u64,
    pub revoked_index: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct CreatedBody {
    name: String,
    role: Role,
    #[serde(with = "serde_bytes")]
    secret_sha256: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
struct RevokedBody {
    name: String,
}

/// A new random 256-bit secret, as the caller will present it.
pub fn new_secret() -> String {
    use base64::Engine as _;
    let mut b = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    format!(
        "vt_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    )
}

pub fn secret_hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// The actor of what the service writes itself (the first admin token).
pub const SERVICE_ACTOR: &str = "veritrail";
/// The actor of retention runs.
// The tokens' projection rows.
const TOKEN_NAME: &[u8] = b"tok/n/";
const TOKEN_HASH: &[u8] = b"tok/h/";

fn name_key(name: &str) -> Vec<u8> {
    [TOKEN_NAME, name.as_bytes()].concat()
}

fn hash_key(hash: &[u8]) -> Vec<u8> {
    [TOKEN_HASH, hash].concat()
}

pub const RETENTION_ACTOR: &str = "veritrail-retention";
/// The actor of finding entries.
pub const FINDINGS_ACTOR: &str = "veritrail-findings";

/// Token names are the `actor` of every entry: short, lowercase, stable, and never one
/// of the service's own.
pub fn validate_name(name: &str) -> Result<(), AppError> {
    // The service's actors, and every name it may take for its own later.
    if name == SERVICE_ACTOR || name.starts_with("veritrail-") {
        return Err(AppError::invalid(
            "name",
            format!("{name:?} is reserved: the service writes as veritrail and veritrail-*"),
        ));
    }
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
        });
    if ok {
        Ok(())
    } else {
        Err(AppError::invalid(
            "name",
            "must be 1-64 characters of a-z, 0-9, '-', '_' or '.', starting with a letter or digit",
        ))
    }
}

fn cbor<T: Serialize>(v: &T) -> Vec<u8> {
    serde_cbor::to_vec(v).expect("projection rows encode")
}

fn staging_err(e: crate::storage::StoreError) -> AppError {
    AppError::internal(e)
}

/// The tokens' projector, by the entry kinds it derives rows from.
pub const PROJECTS: &[Projects<AppError>] = &[Projects {
    kinds: &[KIND_CREATED, KIND_REVOKED],
    projector: project,
}];

/// Apply a token entry to the projection (used live and by `reindex`).
pub fn project(e: &Applied<'_>, s: &mut Staging<'_>) -> Result<(), AppError> {
    let Applied {
        kind,
        body,
        index,
        time,
        ..
    } = *e;
    match kind {
        KIND_CREATED => {
            let b: CreatedBody =
                serde_cbor::value::from_value(body.clone()).map_err(AppError::internal)?;
            let rec = TokenRecord {
                name: b.name.clone(),
                role: b.role,
                secret_sha256: b.secret_sha256.clone(),
                created_index: index,
                created_time: time,
                revoked_index: None,
            };
            s.put(name_key(&b.name), cbor(&rec));
            s.put(hash_key(&b.secret_sha256), b.name.into_bytes());
        }
        KIND_REVOKED => {
            let b: RevokedBody =
                serde_cbor::value::from_value(body.clone()).map_err(AppError::internal)?;
            if let Some(raw) = s.get(&name_key(&b.name)).map_err(staging_err)? {
                let mut rec: TokenRecord =
                    serde_cbor::from_slice(&raw).map_err(AppError::internal)?;
                rec.revoked_index = Some(index);
                s.delete(hash_key(&rec.secret_sha256));
                s.put(name_key(&b.name), cbor(&rec));
            }
        }
        _ => {}
    }
    Ok(())
}

/// The command that creates a token (names are never reused, even after revocation:
/// a name is an actor in the log forever).
pub fn create_command(name: String, role: Role, secret_sha256: Vec<u8>) -> Command<AppError> {
    Box::new(move |s| {
        if s.get(&name_key(&name)).map_err(staging_err)?.is_some() {
            return Err(AppError::field(
                ErrorCode::AlreadyExists,
                "name",
                format!("a token named {name:?} exists or existed"),
            ));
        }
        let body = serde_cbor::value::to_value(CreatedBody {
            name,
            role,
            secret_sha256,
        })
        .map_err(AppError::internal)?;
        Ok(Prepared::Append(Drafts::one(Draft {
            kind: KIND_CREATED.into(),
            system: None,
            body,
        })))
    })
}

pub fn revoke_command(name: String) -> Command<AppError> {
    Box::new(move |s| {
        let raw = s
            .get(&name_key(&name))
            .map_err(staging_err)?
            .ok_or_else(|| AppError::not_found(format!("no token named {name:?}")))?;
        let rec: TokenRecord = serde_cbor::from_slice(&raw).map_err(AppError::internal)?;
        if rec.revoked_index.is_some() {
            return Err(AppError::new(
                ErrorCode::Conflict,
                format!("token {name:?} is already revoked"),
            ));
        }
        if rec.role == Role::Admin && live_admins(s)? <= 1 {
            return Err(AppError::new(
                ErrorCode::LastAdmin,
                format!("{name:?} is the last live admin token; create another admin first"),
            ));
        }
        let body = serde_cbor::value::to_value(RevokedBody { name }).map_err(AppError::internal)?;
        Ok(Prepared::Append(Drafts::one(Draft {
            kind: KIND_REVOKED.into(),
            system: None,
            body,
        })))
    })
}

/// How many admin tokens are not revoked.
fn live_admins(s: &Staging<'_>) -> Result<usize, AppError> {
    let mut n = 0;
    for (_, raw) in s.scan(TOKEN_NAME).map_err(staging_err)? {
        let rec: TokenRecord = serde_cbor::from_slice(&raw).map_err(AppError::internal)?;
        n += usize::from(rec.role == Role::Admin && rec.revoked_index.is_none());
    }
    Ok(n)
}

/// Look up the live token that `secret` belongs to.
pub fn authenticate(store: &dyn Store, secret: &str) -> Result<Option<TokenRecord>, AppError> {
    authenticate_hash(store, &secret_hash(secret))
}

/// Look up the live token whose secret has SHA-256 `hash` (a console session keeps the
/// hash, never the secret).
pub fn authenticate_hash(store: &dyn Store, hash: &[u8]) -> Result<Option<TokenRecord>, AppError> {
    let Some(name) = store.get(&hash_key(hash))? else {
        return Ok(None);
    };
    let Some(raw) = store.get(&[TOKEN_NAME, &name].concat())? else {
        return Ok(None);
    };
    let rec: TokenRecord = serde_cbor::from_slice(&raw).map_err(AppError::internal)?;
    // The lookup was by hash; compare again in constant time so that a corrupted index
    // can never let a different secret through.
    if rec.revoked_index.is_some() || !bool::from(rec.secret_sha256.as_slice().ct_eq(hash)) {
        return Ok(None);
    }
    Ok(Some(rec))
}

pub fn list(store: &dyn Store) -> Result<Vec<TokenRecord>, AppError> {
    store
        .scan(TOKEN_NAME, None, false, usize::MAX)?
        .into_iter()
        .map(|(_, v)| serde_cbor::from_slice(&v).map_err(AppError::internal))
        .collect()
}

pub fn any_exist(store: &dyn Store) -> Result<bool, AppError> {
    Ok(!store.scan(TOKEN_NAME, None, false, 1)?.is_empty())
}
