//! The log routes: checkpoints, the verifier key, entries and proofs.

use actix_web::{get, http::header, HttpRequest, HttpResponse};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{Caller, Readers};
use super::State;
use crate::error::{AppError, ErrorCode, Problem};
use crate::log::{entry, merkle};

pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(checkpoint)
        .service(key)
        .service(checkpoint_at)
        .service(entries)
        .service(entry_at)
        .service(inclusion)
        .service(consistency)
        .service(export);
}

/// The log's checkpoint (C2SP tlog-checkpoint in a signed note). With a witness policy
/// (`serve --witness-policy`), the newest checkpoint that met its quorum, with every
/// cosignature gathered (`cosignature/v1` lines after the log's signature); `?latest`
/// asks for the newest signed one, cosigned or not. Until a checkpoint meets the quorum,
/// the newest signed one, with `Veritrail-Quorum: unmet`.
#[utoipa::path(tag = "log", params(CheckpointQuery), responses(
    (status = 200, description = "The signed note", body = String, content_type = "text/plain; charset=utf-8")
))]
#[get("/v1/log/checkpoint")]
async fn checkpoint(
    state: State,
    req: HttpRequest,
    _q: actix_web::web::Query<CheckpointQuery>,
) -> Result<HttpResponse, AppError> {
    super::tiles::checkpoint_response(&state, &req).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CheckpointQuery {
    /// Present: the newest signed checkpoint, whether or not witnesses cosigned it.
    #[allow(dead_code)]
    latest: Option<String>,
}

/// The log's public key, in the forms verifiers need.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyView {
    /// The checkpoint origin, which is also the key name.
    pub origin: String,
    /// The signed-note verifier key `<name>+<hex key id>+<base64(0x01 ‖ public key)>`.
    pub verifier_key: String,
    /// The raw Ed25519 public key, standard base64.
    pub public_key: String,
    pub algorithm: String,
}

#[utoipa::path(tag = "log", responses((status = 200, body = KeyView)))]
#[get("/v1/log/key")]
async fn key(state: State) -> actix_web::web::Json<KeyView> {
    let v = state.ledger.verifier();
    actix_web::web::Json(KeyView {
        origin: v.name().to_owned(),
        verifier_key: v.to_string(),
        public_key: B64.encode(v.public_key().as_bytes()),
        algorithm: "ed25519".into(),
    })
}

/// The checkpoint signed when the log reached `size` entries.
#[utoipa::path(tag = "log", security(("bearer" = [])), params(("size" = u64, Path, description = "Tree size")), responses(
    (status = 200, description = "The signed note", body = String, content_type = "text/plain; charset=utf-8"),
    (status = 404, description = "No checkpoint was signed at that size", body = Problem, content_type = "application/problem+json"),
    (status = 401, body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/log/checkpoints/{size}")]
async fn checkpoint_at(
    state: State,
    _caller: Caller<Readers>,
    size: actix_web::web::Path<u64>,
) -> Result<HttpResponse, AppError> {
    let size = size.into_inner();
    let note = state.ledger.checkpoint_at(size)?.ok_or_else(|| {
        AppError::not_found(format!(
            "no checkpoint was signed at size {size} (one is signed per batch)"
        ))
    })?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(note))
}

/// One log entry: its raw bytes and a JSON view of them.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EntryView {
    pub index: u64,
    /// SHA-256(0x00 ‖ raw bytes), lowercase hex.
    pub leaf_hash: String,
    /// The entry's CBOR bytes exactly as stored and hashed, standard base64.
    pub raw: String,
    /// A JSON reading of `raw` (byte strings as lowercase hex).
    #[schema(value_type = Object)]
    pub entry: serde_json::Value,
}

pub fn entry_view(index: u64, bytes: &[u8]) -> Result<EntryView, AppError> {
    Ok(EntryView {
        index,
        leaf_hash: hex::encode(merkle::leaf_hash(bytes)),
        raw: B64.encode(bytes),
        entry: entry::entry_json(bytes).map_err(AppError::internal)?,
    })
}

fn wants_cbor(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| {
            a.split(',').any(|t| {
                t.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("application/cbor")
            })
        })
}

/// One entry; with `Accept: application/cbor`, its raw bytes.
#[utoipa::path(tag = "log", security(("bearer" = [])), params(("index" = u64, Path)), responses(
    (status = 200, description = "The entry as JSON, or with Accept: application/cbor its raw bytes", content(
        (EntryView = "application/json"),
        (Vec<u8> = "application/cbor")
    )),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/log/entries/{index}")]
async fn entry_at(
    req: HttpRequest,
    state: State,
    _caller: Caller<Readers>,
    index: actix_web::web::Path<u64>,
) -> Result<HttpResponse, AppError> {
    let index = index.into_inner();
    let bytes = state
        .ledger
        .entry(index)?
        .ok_or_else(|| AppError::not_found(format!("no entry at index {index}")))?;
    if wants_cbor(&req) {
        return Ok(HttpResponse::Ok()
            .content_type("application/cbor")
            .body(bytes));
    }
    Ok(HttpResponse::Ok().json(entry_view(index, &bytes)?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// First index (default 0).
    pub start: Option<u64>,
    /// At most this many entries (default 100, at most 1000).
    pub limit: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EntryPage {
    pub entries: Vec<EntryView>,
    /// The `start` of the next page, absent at the end of the log.
    pub next: Option<u64>,
    /// The log's size when this page was read.
    pub tree_size: u64,
}

/// Entry bytes one page of `GET /v1/log/entries` holds at most (past the first entry).
pub const PAGE_BYTES: usize = 1 << 20;

/// A page of entries in index order: at most `limit` entries and about 1 MiB of entry
/// bytes (`next` continues).
#[utoipa::path(tag = "log", security(("bearer" = [])), params(PageQuery), responses(
    (status = 200, body = EntryPage),
    (status = 400, body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/log/entries")]
async fn entries(
    state: State,
    _caller: Caller<Readers>,
    q: super::body::Query<PageQuery>,
) -> Result<HttpResponse, AppError> {
    let start = q.start.unwrap_or(0);
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(AppError::field(
            ErrorCode::InvalidQuery,
            "limit",
            "must be between 1 and 1000",
        ));
    }
    let size = state.ledger.latest().size;
    // A page ends at `limit` entries or once it holds PAGE_BYTES of entries (at least
    // one entry), whichever comes first; it is read in slices, never more than it needs.
    let mut out = Vec::new();
    let mut bytes = 0;
    let mut end = start;
    while (out.len() as u64) < limit && bytes < PAGE_BYTES && end < size {
        let raw = state
            .ledger
            .entries(end, (limit - out.len() as u64).min(64))?;
        if raw.is_empty() {
            break;
        }
        for b in &raw {
            if bytes >= PAGE_BYTES {
                break;
            }
            bytes += b.len();
            out.push(entry_view(end, b)?);
            end += 1;
        }
    }
    Ok(HttpResponse::Ok().json(EntryPage {
        entries: out,
        next: (end < size).then_some(end),
        tree_size: size,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InclusionQuery {
    pub index: u64,
    /// Tree size to prove against (default: the latest checkpoint's).
    pub tree_size: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InclusionProof {
    pub index: u64,
    pub tree_size: u64,
    pub leaf_hash: String,
    /// RFC 9162 §2.1.3 audit path, lowercase hex.
    pub hashes: Vec<String>,
}

/// RFC 9162 inclusion proof of one entry.
#[utoipa::path(tag = "log", security(("bearer" = [])), params(InclusionQuery), responses(
    (status = 200, body = InclusionProof),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/log/proofs/inclusion")]
async fn inclusion(
    state: State,
    _caller: Caller<Readers>,
    q: super::body::Query<InclusionQuery>,
) -> Result<HttpResponse, AppError> {
    let (size, leaf, proof) = state.ledger.inclusion(q.index, q.tree_size)?;
    Ok(HttpResponse::Ok().json(InclusionProof {
        index: q.index,
        tree_size: size,
        leaf_hash: hex::encode(leaf),
        hashes: proof.iter().map(hex::encode).collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyQuery {
    pub from: u64,
    /// Default: the latest checkpoint's size.
    pub to: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    /// RFC 9162 §2.1.4 consistency proof, lowercase hex.
    pub hashes: Vec<String>,
}

/// RFC 9162 consistency proof between two tree sizes.
#[utoipa::path(tag = "log", security(("bearer" = [])), params(ConsistencyQuery), responses(
    (status = 200, body = ConsistencyProof),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/log/proofs/consistency")]
async fn consistency(
    state: State,
    _caller: Caller<Readers>,
    q: super::body::Query<ConsistencyQuery>,
) -> Result<HttpResponse, AppError> {
    let (to, proof) = state.ledger.consistency(q.from, q.to)?;
    Ok(HttpResponse::Ok().json(ConsistencyProof {
        from: q.from,
        to,
        hashes: proof.iter().map(hex::encode).collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// First index (default 0).
    pub start: Option<u64>,
    /// Tree size to export up to; a checkpoint must have been signed at it (default: the latest).
    pub end: Option<u64>,
}

/// Export the log or a range as raw entries with the signed checkpoint covering them
/// (auditor+); `veritrail verify --export FILE --key VKEY` checks it offline.
#[utoipa::path(tag = "log", security(("bearer" = [])), params(ExportQuery), responses(
    (status = 200, description = "VERITRAIL-EXPORT 1: checkpoint, tree edge, length-prefixed CBOR entries", body = Vec<u8>, content_type = "application/octet-stream"),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/log/export")]
async fn export(
    state: State,
    _caller: Caller<Readers>,
    q: super::body::Query<ExportQuery>,
) -> Result<HttpResponse, AppError> {
    let end = q.end.unwrap_or_else(|| state.ledger.latest().size);
    let start = q.start.unwrap_or(0);
    if start > end {
        return Err(AppError::field(
            ErrorCode::InvalidQuery,
            "start",
            format!("must not exceed end ({end})"),
        ));
    }
    let note = state
        .ledger
        .checkpoint_at(end)?
        .ok_or_else(|| AppError::not_found(format!("no checkpoint was signed at size {end}")))?;
    let head = crate::log::export::header(&note, start, &state.ledger.frontier_at(start)?);
    let ledger = state.ledger.clone();
    let body = futures_util::stream::unfold((Some(head), start), move |(head, next)| {
        let ledger = ledger.clone();
        async move {
            if let Some(h) = head {
                return Some((
                    Ok::<_, actix_web::Error>(actix_web::web::Bytes::from(h)),
                    (None, next),
                ));
            }
            if next >= end {
                return None;
            }
            let n = (end - next).min(1000);
            let chunk = match ledger.entries(next, n) {
                Ok(e) if !e.is_empty() => e,
                Ok(_) => return None,
                Err(e) => return Some((Err(AppError::from(e).into()), (None, end))),
            };
            let got = chunk.len() as u64;
            Some((
                Ok(actix_web::web::Bytes::from(crate::log::export::records(
                    &chunk,
                ))),
                (None, next + got),
            ))
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .streaming(body))
}
