//! The middleware every request passes: a request id, a log line, the metrics.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Middleware: a request id on every response (the caller's, if sane), a log line and
/// the metrics of every request.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_owned)
        .unwrap_or_else(|| {
            let mut b = [0u8; 8];
            rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut b);
            hex::encode(b)
        });
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    // A label per method the API knows; any other shares one value (a caller inventing
    // methods must not invent metric series).
    let method: &'static str = match req.method().as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    };
    let metrics = req.app_data::<super::State>().map(|s| s.metrics.clone());
    let mut res = next.call(req).await?;
    let status = res.status().as_u16();
    let secs = started.elapsed().as_secs_f64();
    if let Some(m) = metrics {
        m.requests
            .with_label_values(&[&route, method, &status.to_string()])
            .inc();
        m.latency.with_label_values(&[&route]).observe(secs);
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID.clone(), v);
    }
    // The route's pattern, never the path: a path may hold a subject reference, and a
    // log line is out of erasure's reach.
    tracing::debug!(request_id = %id, method, %route, status, ms = secs * 1e3, "request");
    Ok(res)
}
