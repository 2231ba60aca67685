//! Webhook delivery. One task per live subscription reads the published log from the
//! subscription's durable cursor (a log index in the operational-state store) and POSTs
//! each event it wants as a CloudEvents 1.0 JSON body, signed as Standard Webhooks do:
//! `webhook-id` (the event id), `webhook-timestamp` (unix seconds) and
//! `webhook-signature: v1,<base64 HMAC-SHA256(secret, "id.timestamp.body")>`.
//!
//! At least once, in log order: the cursor moves past an event only after a 2xx answer;
//! a failed attempt is retried, the same event, after an exponential backoff with
//! jitter. A subscription failing for longer than `failing_after` is marked failing (the
//! finding `subscription_failing`). Each subscription has its own task, so a slow or
//! dead receiver delays nobody else; all of it reads the published log and never runs on
//! the append path. On a shared database one node delivers at a time, under a lease.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use utoipa::ToSchema;

use super::subscriptions::{self, SubscriptionRow};
use super::Event;
use crate::error::AppError;
use crate::log::Ledger;
use crate::storage::Store;

/// How delivery behaves (from `serve`'s options).
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// The first retry's wait; each further failure doubles it (up to `max_backoff`).
    pub retry_base: Duration,
    pub max_backoff: Duration,
    /// A subscription failing this long is marked failing.
    pub failing_after: Duration,
    /// Each attempt's time limit.
    pub timeout: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            retry_base: Duration::from_secs(1),
            max_backoff: Duration::from_secs(600),
            failing_after: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(10),
        }
    }
}

/// One delivery attempt, as `GET /v1/subscriptions/{id}/deliveries` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Attempt {
    pub event_id: String,
    /// 1 for the first attempt at this event.
    pub attempt: u32,
    /// When it was made (RFC 3339).
    pub at: String,
    /// The receiver's HTTP status, if it answered.
    pub status: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
}

/// Attempts kept per subscription (the newest).
pub const KEPT_ATTEMPTS: usize = 100;

fn ops_key(family: &[u8], id: u64) -> Vec<u8> {
    [family, &id.to_be_bytes()[..]].concat()
}

const CURSOR: &[u8] = b"whc\0";
const ATTEMPTS: &[u8] = b"wha\0";
const FAILING: &[u8] = b"whf\0";

/// The recent attempts of subscription `id`, newest first.
pub fn attempts(store: &dyn Store, id: u64) -> Result<Vec<Attempt>, AppError> {
    Ok(match store.ops_get(&ops_key(ATTEMPTS, id))? {
        Some(raw) => serde_cbor::from_slice(&raw).map_err(AppError::internal)?,
        None => Vec::new(),
    })
}

/// Since when (unix µs) subscription `id` has failed without a success, if it has.
pub fn failing_since(store: &dyn Store, id: u64) -> Result<Option<u64>, AppError> {
    Ok(store
        .ops_get(&ops_key(FAILING, id))?
        .and_then(|v| v.try_into().ok().map(u64::from_be_bytes)))
}

/// The next index subscription `id` delivers from, as last stored.
pub fn cursor(store: &dyn Store, id: u64) -> Result<Option<u64>, AppError> {
    Ok(store
        .ops_get(&ops_key(CURSOR, id))?
        .and_then(|v| v.try_into().ok().map(u64::from_be_bytes)))
}

/// The Standard Webhooks signature header value of `body`.
pub fn signature(secret: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

/// The lease one node holds to deliver (on a shared database).
const LEASE: &str = "webhook-delivery";
const LEASE_FOR: Duration = Duration::from_secs(10);

/// Deliver every live subscription's events, as long as this node holds the delivery
/// lease; start and stop subscriptions' tasks as they are created and deleted. Returns
/// once `stopping` is set, its tasks ended (they hold the ledger).
pub async fn run(
    ledger: Ledger<AppError>,
    config: DeliveryConfig,
    stopping: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let holder = {
        let mut b = [0u8; 8];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut b);
        hex::encode(b)
    };
    let client = reqwest::Client::builder()
        .timeout(config.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client");
    let mut tasks: HashMap<u64, tokio::task::JoinHandle<()>> = HashMap::new();
    loop {
        if stopping.load(std::sync::atomic::Ordering::Relaxed) {
            for (_, t) in tasks.drain() {
                t.abort();
                let _ = t.await;
            }
            return;
        }
        let store = ledger.store().clone();
        let h = holder.clone();
        let now = crate::log::sequencer::now_micros();
        let state = tokio::task::spawn_blocking(
            move || -> Result<Option<Vec<SubscriptionRow>>, AppError> {
                let until = now + LEASE_FOR.as_micros() as u64;
                if !store.ops_lease(LEASE, &h, now, until)? {
                    return Ok(None);
                }
                subscriptions::list(&*store).map(Some)
            },
        )
        .await;
        match state {
            Ok(Ok(Some(subs))) => {
                tasks.retain(|id, t| {
                    let live = subs.iter().any(|s| s.id == *id) && !t.is_finished();
                    if !live {
                        t.abort();
                    }
                    live
                });
                for s in subs {
                    tasks.entry(s.id).or_insert_with(|| {
                        tokio::spawn(deliver(ledger.clone(), s, client.clone(), config.clone()))
                    });
                }
            }
            Ok(Ok(None)) => {
                // Another node delivers.
                tasks.drain().for_each(|(_, t)| t.abort());
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e.detail, "webhooks: cannot read the subscriptions")
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn blocking<R: Send + 'static>(
    store: &std::sync::Arc<dyn Store>,
    f: impl FnOnce(&dyn Store) -> Result<R, AppError> + Send + 'static,
) -> impl std::future::Future<Output = Result<R, AppError>> {
    let store = store.clone();
    async move {
        tokio::task::spawn_blocking(move || f(&*store))
            .await
            .map_err(AppError::internal)?
    }
}

/// One subscription's delivery, for as long as it lives.
async fn deliver(
    ledger: Ledger<AppError>,
    sub: SubscriptionRow,
    client: reqwest::Client,
    config: DeliveryConfig,
) {
    let store = ledger.store().clone();
    let id = sub.id;
    let secret = match blocking(&store, move |s| subscriptions::secret(s, id)).await {
        Ok(Some(s)) => match subscriptions::secret_bytes(&s) {
            Some(b) => b,
            None => return,
        },
        _ => return,
    };
    let filter = sub.filter();
    let origin = ledger.origin().to_owned();
    let mut next = match blocking(&store, move |s| cursor(s, id)).await {
        Ok(Some(c)) => c,
        _ => sub.spec.start,
    };
    let mut failures: u32 = 0;
    loop {
        let size = ledger.latest().size;
        if next >= size {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let (from, n) = (next, (size - next).min(100));
        let reader = ledger.clone();
        let Ok(Ok(entries)) = tokio::task::spawn_blocking(move || reader.entries(from, n)).await
        else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        for (i, bytes) in entries.iter().enumerate() {
            let index = from + i as u64;
            let Ok(event) = Event::of(&origin, index, bytes) else {
                continue;
            };
            if sub.wants(&filter, &event.kind, event.system.as_deref()) {
                let body = event.json.to_string().into_bytes();
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    let ok = post(&client, &store, &sub, &secret, &event, &body, attempt).await;
                    if ok {
                        failures = 0;
                        let _ = blocking(&store, move |s| Ok(s.ops_delete(&ops_key(FAILING, id))?))
                            .await;
                        break;
                    }
                    failures = failures.saturating_add(1);
                    mark_failing(&store, id).await;
                    tokio::time::sleep(backoff(&config, failures)).await;
                }
            }
            next = index + 1;
        }
        let at = next;
        let _ = blocking(&store, move |s| {
            Ok(s.ops_put(&ops_key(CURSOR, id), &at.to_be_bytes())?)
        })
        .await;
    }
}

/// The wait after `failures` failures in a row: base × 2^(failures−1), at most the
/// maximum, times a jitter in [0.5, 1.5).
fn backoff(config: &DeliveryConfig, failures: u32) -> Duration {
    let exp = config
        .retry_base
        .saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    let wait = exp.min(config.max_backoff);
    let jitter: f64 = 0.5 + rand::random::<f64>();
    wait.mul_f64(jitter)
}

/// Note the start of a failing streak; once it lasts `failing_after`, the subscription is
/// failing (its finding opens with the next reconciliation).
async fn mark_failing(store: &std::sync::Arc<dyn Store>, id: u64) {
    let now = crate::log::sequencer::now_micros();
    let _ = blocking(store, move |s| {
        if failing_since(s, id)?.is_none() {
            s.ops_put(&ops_key(FAILING, id), &now.to_be_bytes())?;
        }
        Ok(())
    })
    .await;
}

/// One attempt; whether the receiver answered 2xx. The attempt is recorded either way.
async fn post(
    client: &reqwest::Client,
    store: &std::sync::Arc<dyn Store>,
    sub: &SubscriptionRow,
    secret: &[u8],
    event: &Event,
    body: &[u8],
    attempt: u32,
) -> bool {
    let event_id = event.index.to_string();
    let ts = chrono::Utc::now().timestamp();
    let started = Instant::now();
    let res = client
        .post(&sub.spec.url)
        .header("content-type", "application/cloudevents+json")
        .header("webhook-id", &event_id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signature(secret, &event_id, ts, body))
        .body(body.to_vec())
        .send()
        .await;
    let latency_ms = started.elapsed().as_millis() as u64;
    let (status, error, ok) = match res {
        Ok(r) => {
            let st = r.status();
            (
                Some(st.as_u16()),
                (!st.is_success()).then(|| format!("HTTP {st}")),
                st.is_success(),
            )
        }
        Err(e) => (None, Some(short_error(&e)), false),
    };
    let a = Attempt {
        event_id,
        attempt,
        at: crate::fields::rfc3339(crate::log::sequencer::now_micros()),
        status,
        latency_ms,
        error,
    };
    let id = sub.id;
    let _ = blocking(store, move |s| {
        let mut all = attempts(s, id)?;
        all.insert(0, a);
        all.truncate(KEPT_ATTEMPTS);
        s.ops_put(
            &ops_key(ATTEMPTS, id),
            &serde_cbor::to_vec(&all).map_err(AppError::internal)?,
        )?;
        Ok(())
    })
    .await;
    ok
}

fn short_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else {
        "request failed".into()
    }
}

/// The findings about webhook delivery at `now`: `subscription_failing` for each
/// subscription failing for at least `failing_after` (no system; subject: its id). The
/// finding follower asks for them (`register::findings::ServiceFindings`).
pub fn findings(
    store: &dyn Store,
    now: u64,
    failing_after: Duration,
) -> Result<Vec<crate::register::compliance::Finding>, AppError> {
    use crate::fields::rfc3339;
    Ok(failing(store, now, failing_after)?
        .into_iter()
        .map(|(id, since)| crate::register::compliance::Finding {
            code: "subscription_failing".into(),
            severity: crate::register::compliance::Severity::Medium,
            explanation: format!(
                "webhook subscription {id} has failed to deliver since {}; see its deliveries",
                rfc3339(since)
            ),
            evidence: vec![id],
            since: rfc3339(since),
            model_version: None,
            subject: Some(id.to_string()),
        })
        .collect())
}

/// Subscriptions failing for at least `failing_after` at `now`: (id, since).
pub fn failing(
    store: &dyn Store,
    now: u64,
    failing_after: Duration,
) -> Result<Vec<(u64, u64)>, AppError> {
    let mut out = Vec::new();
    for s in subscriptions::list(store)? {
        if let Some(since) = failing_since(store, s.id)? {
            if now.saturating_sub(since) >= failing_after.as_micros() as u64 {
                out.push((s.id, since));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification.
        let secret = subscriptions::secret_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum_with_jitter() {
        let c = DeliveryConfig {
            retry_base: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..Default::default()
        };
        for (failures, base) in [
            (1, 100u64),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (30, 1000),
        ] {
            let w = backoff(&c, failures).as_millis() as u64;
            assert!(w >= base / 2 && w < base * 3 / 2, "{failures}: {w}");
        }
    }
}
