//! The live feed: `GET /v1/events` as Server-Sent Events, each event one log entry as
//! a CloudEvent (`events::Event`), its `id:` the entry's index, resumable with
//! `Last-Event-ID`. A task per connection reads the published log after the position
//! asked for, then polls for new checkpoints; it ends when the client goes or the
//! service stops. It reads only what any log reader may read, and never the append path.

use std::time::Duration;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{get, HttpRequest, HttpResponse};
use serde::Deserialize;
use tokio::sync::mpsc;
use utoipa::IntoParams;

use super::auth::{Caller, Readers};
use super::body::Query;
use super::State;
use crate::error::AppError;
use crate::events::{Event, TypeFilter};

pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(events);
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Send the entries after this index (`Last-Event-ID` wins over it). Without either,
    /// the feed starts at the log's current size: new entries only.
    #[param(minimum = 0)]
    pub after: Option<u64>,
    /// Comma-separated entry kinds (`decision.recorded`), prefixes with `.*`
    /// (`finding.*`) or `*`; absent: every kind.
    pub types: Option<String>,
}

/// How often a caught-up feed looks for new entries.
const POLL: Duration = Duration::from_millis(100);
/// A comment line this often keeps proxies from closing an idle feed.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Entries read at once.
const CHUNK: u64 = 256;

/// The types a query names.
fn types_of(q: &EventsQuery) -> Result<TypeFilter, AppError> {
    let patterns: Vec<String> = match &q.types {
        None => Vec::new(),
        Some(t) => t.split(',').map(|p| p.trim().to_owned()).collect(),
    };
    TypeFilter::parse_new("types", &patterns)
}

/// The index after which a feed starts: `Last-Event-ID`, else `after`, else the head.
fn start_of(state: &State, req: &HttpRequest, q: &EventsQuery) -> Result<u64, AppError> {
    if let Some(v) = req.headers().get("last-event-id") {
        let id = v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                AppError::invalid("Last-Event-ID", "must be an event id (an entry index)")
            })?;
        // The largest id resumes after the end of every log, never wraps to the start.
        return Ok(id.saturating_add(1));
    }
    Ok(match q.after {
        Some(a) => a.saturating_add(1),
        None => state.ledger.latest().size,
    })
}

/// Live feed of log entries as CloudEvents 1.0 (Server-Sent Events; any log reader).
/// Each event's `id:` is the entry's index and its `data:` the CloudEvent JSON (the
/// entry's JSON view with its index and leaf hash; commitments, never a personal value).
/// Reconnect with `Last-Event-ID` to resume after the last event received.
#[utoipa::path(tag = "events", security(("bearer" = [])),
    params(EventsQuery, ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id (wins over `after`)")),
    responses(
        (status = 200, body = String, content_type = "text/event-stream", description = "An endless stream of `id:` / `data:` events"),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
))]
#[get("/v1/events")]
async fn events(
    state: State,
    _caller: Caller<Readers>,
    req: HttpRequest,
    q: Query<EventsQuery>,
) -> Result<HttpResponse, AppError> {
    let filter = types_of(&q)?;
    let start = start_of(&state, &req, &q)?;
    let (tx, mut rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(feed(state.clone(), start, filter, tx));
    let stream = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|b| b.map(Ok::<_, actix_web::Error>))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(stream))
}

/// One SSE event.
fn frame(e: &Event) -> Bytes {
    Bytes::from(format!("id: {}\ndata: {}\n\n", e.index, e.json))
}

/// Send the entries from `next` on that `filter` passes, then follow the log, until the
/// client goes (`tx` closes) or the service stops.
async fn feed(state: State, mut next: u64, filter: TypeFilter, tx: mpsc::Sender<Bytes>) {
    let origin = state.ledger.origin().to_owned();
    if tx
        .send(Bytes::from_static(b": veritrail events\n\n"))
        .await
        .is_err()
    {
        return;
    }
    let mut quiet = Duration::ZERO;
    loop {
        if state.stopping() {
            return;
        }
        let size = state.ledger.latest().size;
        if next < size {
            let (from, n) = (next, (size - next).min(CHUNK));
            let reader = state.clone();
            let read = tokio::task::spawn_blocking(move || reader.ledger.entries(from, n)).await;
            let entries = match read {
                Ok(Ok(e)) => e,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "event feed: cannot read the log");
                    return;
                }
                Err(_) => return,
            };
            for (i, bytes) in entries.iter().enumerate() {
                let index = from + i as u64;
                let event = match Event::of(&origin, index, bytes) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::error!(error = %e.detail, index, "event feed: an entry does not decode");
                        return;
                    }
                };
                if filter.matches(&event.kind) && tx.send(frame(&event)).await.is_err() {
                    return;
                }
            }
            next = from + entries.len() as u64;
            quiet = Duration::ZERO;
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = tx.closed() => return,
        }
        quiet += POLL;
        if quiet >= KEEP_ALIVE {
            quiet = Duration::ZERO;
            if tx
                .send(Bytes::from_static(b": keep-alive\n\n"))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}
