//! Request bodies: `application/json` only, size-limited, and parsed so that a bad
//! field is named by its JSON path (`decisions[2].confidence`) in the problem.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use super::State;
use crate::error::{AppError, ErrorCode};

/// A JSON request body of type `T`, at most `MULT` times the configured body limit
/// (test inputs of a million samples per group need more than a decision does).
/// Handlers take it after their `Caller`, so a caller without the role never has a
/// body read; a large body is parsed on the blocking pool, not on an HTTP worker, and
/// waits for its turn among large bodies before it is read.
pub struct Json<T, const MULT: usize = 1>(pub T);

/// Bodies larger than this are parsed off the HTTP worker threads.
const PARSE_INLINE_BYTES: usize = 64 * 1024;

/// A body larger than this is a large body: at most [`LARGE_AT_ONCE`] of them are read,
/// parsed and handled at a time (a 72 MB test record takes about 350 MB while its
/// samples are parsed and evaluated), so concurrent large bodies wait instead of
/// adding up.
const LARGE_BYTES: usize = 4 << 20;
const LARGE_AT_ONCE: usize = 1;
static LARGE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(LARGE_AT_ONCE);

/// A large body's turn, kept in its request's extensions until the request is done.
struct LargeTurn {
    _permit: tokio::sync::SemaphorePermit<'static>,
}

/// Wait for a large body's turn, held by the request until its answer is made.
async fn large_turn(req: &HttpRequest) {
    if req.extensions().get::<LargeTurn>().is_some() {
        return;
    }
    let permit = LARGE
        .acquire()
        .await
        .expect("the semaphore is never closed");
    req.extensions_mut().insert(LargeTurn { _permit: permit });
}

impl<T: DeserializeOwned + Send + 'static, const MULT: usize> FromRequest for Json<T, MULT> {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<State>()
            .map(|s| s.body_limit)
            .unwrap_or(1 << 20)
            .saturating_mul(MULT);
        let ct = req
            .headers()
            .get(actix_web::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let declared = req
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        let req = req.clone();
        Box::pin(async move {
            let json = ct.as_deref().is_some_and(|c| {
                let essence = c
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                essence == "application/json"
                    || (essence.starts_with("application/") && essence.ends_with("+json"))
            });
            if !json {
                return Err(AppError::new(
                    ErrorCode::UnsupportedMediaType,
                    format!(
                        "expected Content-Type application/json, got {}",
                        ct.as_deref().unwrap_or("none")
                    ),
                ));
            }
            if declared.is_some_and(|n| n > limit) {
                return Err(AppError::new(
                    ErrorCode::PayloadTooLarge,
                    format!("the body may be at most {limit} bytes"),
                ));
            }
            if declared.is_some_and(|n| n > LARGE_BYTES) {
                large_turn(&req).await;
            }
            let mut buf = Vec::with_capacity(declared.unwrap_or(1024).min(limit));
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| {
                    AppError::new(
                        ErrorCode::InvalidBody,
                        format!("reading the body failed: {e}"),
                    )
                })?;
                if buf.len() + chunk.len() > limit {
                    return Err(AppError::new(
                        ErrorCode::PayloadTooLarge,
                        format!("the body may be at most {limit} bytes"),
                    ));
                }
                if buf.len() + chunk.len() > LARGE_BYTES && buf.len() <= LARGE_BYTES {
                    // A body without a length grew large: it waits its turn now.
                    large_turn(&req).await;
                }
                buf.extend_from_slice(&chunk);
            }
            if buf.len() <= PARSE_INLINE_BYTES {
                return parse(&buf).map(Json);
            }
            actix_web::web::block(move || parse(&buf))
                .await
                .map_err(AppError::internal)?
                .map(Json)
        })
    }
}

pub use crate::fields::{parse, parse_value};

/// A time in a query parameter (RFC 3339), refused as `invalid-query` naming it.
pub fn query_time(name: &str, v: &str) -> Result<u64, AppError> {
    crate::register::parse_time(name, v).map_err(|e| e.recoded(ErrorCode::InvalidQuery))
}

/// A query string parsed into `T`, naming the offending parameter.
pub struct Query<T>(pub T);

impl<T> std::ops::Deref for Query<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = AppError;
    type Future = std::future::Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let de = serde_urlencoded::Deserializer::new(form_urlencoded_parse(req.query_string()));
        std::future::ready(match serde_path_to_error::deserialize(de) {
            Ok(v) => Ok(Query(v)),
            Err(e) => {
                let path = e.path().to_string();
                let detail = e.into_inner().to_string();
                let field = if path == "." || path.is_empty() {
                    detail.split('`').nth(1).map(str::to_owned)
                } else {
                    Some(path)
                };
                Err(match field {
                    Some(f) => AppError::field(ErrorCode::InvalidQuery, f, detail),
                    None => AppError::new(ErrorCode::InvalidQuery, detail),
                })
            }
        })
    }
}

fn form_urlencoded_parse(q: &str) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(q.as_bytes())
}
