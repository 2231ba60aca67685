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
    /// Where deliveries may go: checked before a subscription's task starts, and by the
    /// client's resolver at every connection.
    pub targets: super::targets::Targets,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            retry_base: Duration::from_secs(1),
            max_backoff: Duration::from_secs(600),
            failing_after: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(10),
            targets: Default::default(),
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

/// Start delivery on a runtime of its own, whose threads run at a lower CPU priority
/// than the service's (nice 10 on Linux): when the machine is busy, ingest goes first and
/// delivery lags, never the reverse. The thread ends once `stopping` is set.
pub fn start(
    ledger: Ledger<AppError>,
    config: DeliveryConfig,
    stopping: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(4)
        .thread_name("webhooks")
        .on_thread_start(background_priority)
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("webhooks".into())
        .spawn(move || {
            background_priority();
            runtime.block_on(run(ledger, config, stopping));
        })
}

/// Lower the calling thread's CPU priority (Linux schedules threads one by one).
fn background_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority reads its arguments only; `gettid` names the calling thread.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10);
    }
}

/// Deliver every live subscription's events, as long as this node holds the delivery
/// lease; start and stop subscriptions' tasks as they are created and deleted. Returns
/// once `stopping` is set, its tasks ended (they hold the ledger).
async fn run(
    ledger: Ledger<AppError>,
    config: DeliveryConfig,
    stopping: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let holder = {
        let mut b = [0u8; 8];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut b);
        hex::encode(b)
    };
    // No proxy (it would connect where the rule never looked) and no redirect (a 3xx
    // could point anywhere); every name resolved through the address rule.
    let client = reqwest::Client::builder()
        .timeout(config.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(config.targets.resolver())
        .build()
        .expect("an HTTP client");
    let recent = Recent::shared();
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
                // A subscription the rule refuses is kept, marked, and not delivered to
                // (the start-up log named it).
                for s in subs
                    .into_iter()
                    .filter(|s| subscriptions::refused(s, &config.targets).is_none())
                {
                    tasks.entry(s.id).or_insert_with(|| {
                        tokio::spawn(deliver(
                            ledger.clone(),
                            recent.clone(),
                            s,
                            client.clone(),
                            config.clone(),
                        ))
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

/// An event ready to send: what filtering needs, and its body.
struct Ready {
    index: u64,
    kind: String,
    system: Option<String>,
    body: bytes::Bytes,
}

/// The newest events, decoded once for every subscription: tasks that keep up with the
/// log share them; a task further behind reads and decodes its own.
#[derive(Default)]
struct Recent {
    start: u64,
    events: std::collections::VecDeque<std::sync::Arc<Ready>>,
}

type SharedRecent = std::sync::Arc<std::sync::Mutex<Recent>>;

/// Events kept decoded (the newest).
const RECENT: usize = 10_000;
/// Entries read per step of a subscription.
const STEP: u64 = 100;

impl Recent {
    fn shared() -> SharedRecent {
        Default::default()
    }

    /// Those of `from..from + n` held here, from `from` on (empty when `from` is not).
    fn get(&self, from: u64, n: u64) -> Vec<std::sync::Arc<Ready>> {
        let end = self.start + self.events.len() as u64;
        if from < self.start || from >= end {
            return Vec::new();
        }
        let skip = (from - self.start) as usize;
        self.events
            .iter()
            .skip(skip)
            .take(n.min(end - from) as usize)
            .cloned()
            .collect()
    }

    /// Keep `events` (starting at `from`) where they continue the newest held, or start
    /// over from them when they lie beyond.
    fn put(&mut self, from: u64, events: &[std::sync::Arc<Ready>]) {
        let end = self.start + self.events.len() as u64;
        if self.events.is_empty() || from > end {
            self.start = from;
            self.events.clear();
            self.events.extend(events.iter().cloned());
        } else if from <= end && from + events.len() as u64 > end {
            self.events
                .extend(events[(end - from) as usize..].iter().cloned());
        }
        while self.events.len() > RECENT {
            self.events.pop_front();
            self.start += 1;
        }
    }
}

/// The events `from..from + n` (fewer where only a prefix is held): from the shared
/// window, else read and decoded here.
async fn events(
    ledger: &Ledger<AppError>,
    recent: &SharedRecent,
    from: u64,
    n: u64,
) -> Option<Vec<std::sync::Arc<Ready>>> {
    let held = recent.lock().expect("recent events").get(from, n);
    if !held.is_empty() {
        return Some(held);
    }
    let reader = ledger.clone();
    let origin = ledger.origin().to_owned();
    let read = tokio::task::spawn_blocking(move || {
        reader.entries(from, n).map(|entries| {
            entries
                .iter()
                .enumerate()
                .map(|(i, bytes)| {
                    let index = from + i as u64;
                    std::sync::Arc::new(match Event::of(&origin, index, bytes) {
                        Ok(e) => Ready {
                            index,
                            kind: e.kind,
                            system: e.system,
                            body: e.json.to_string().into(),
                        },
                        // An entry that is not an event (none is written): skipped.
                        Err(_) => Ready {
                            index,
                            kind: String::new(),
                            system: None,
                            body: bytes::Bytes::new(),
                        },
                    })
                })
                .collect::<Vec<_>>()
        })
    })
    .await;
    let ready = match read {
        Ok(Ok(r)) => r,
        _ => return None,
    };
    recent.lock().expect("recent events").put(from, &ready);
    Some(ready)
}

/// One subscription's delivery, for as long as it lives. Its attempts and cursor are
/// written once per step (and before each wait after a failure), not once per event.
async fn deliver(
    ledger: Ledger<AppError>,
    recent: SharedRecent,
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
    // Parsed once: the URL was checked when the subscription was made.
    let Ok(target) = reqwest::Url::parse(&sub.spec.url) else {
        return;
    };
    let mut next = match blocking(&store, move |s| cursor(s, id)).await {
        Ok(Some(c)) => c,
        _ => sub.spec.start,
    };
    let mut marked_failing = matches!(
        blocking(&store, move |s| failing_since(s, id)).await,
        Ok(Some(_))
    );
    let mut failures: u32 = 0;
    let mut made: Vec<Attempt> = Vec::new();
    loop {
        let size = ledger.latest().size;
        if next >= size {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let Some(batch) = events(&ledger, &recent, next, (size - next).min(STEP)).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        for event in batch {
            if sub.wants(&filter, &event.kind, event.system.as_deref()) {
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    let (ok, a) = post(&client, &target, &secret, &event, attempt).await;
                    made.push(a);
                    if ok {
                        failures = 0;
                        if marked_failing {
                            marked_failing = false;
                            let _ =
                                blocking(&store, move |s| Ok(s.ops_delete(&ops_key(FAILING, id))?))
                                    .await;
                        }
                        break;
                    }
                    failures = failures.saturating_add(1);
                    record(&store, id, std::mem::take(&mut made), None).await;
                    if !marked_failing {
                        marked_failing = true;
                        mark_failing(&store, id).await;
                    }
                    tokio::time::sleep(backoff(&config, failures)).await;
                }
            }
            next = event.index + 1;
        }
        record(&store, id, std::mem::take(&mut made), Some(next)).await;
    }
}

/// Store the attempts `made` (oldest first) before the kept ones, and the cursor.
async fn record(
    store: &std::sync::Arc<dyn Store>,
    id: u64,
    made: Vec<Attempt>,
    cursor: Option<u64>,
) {
    let _ = blocking(store, move |s| {
        if !made.is_empty() {
            let mut all: Vec<Attempt> = made.into_iter().rev().collect();
            all.extend(attempts(s, id)?);
            all.truncate(KEPT_ATTEMPTS);
            s.ops_put(
                &ops_key(ATTEMPTS, id),
                &serde_cbor::to_vec(&all).map_err(AppError::internal)?,
            )?;
        }
        if let Some(at) = cursor {
            s.ops_put(&ops_key(CURSOR, id), &at.to_be_bytes())?;
        }
        Ok(())
    })
    .await;
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

/// One attempt: whether the receiver answered 2xx, and the attempt as recorded.
async fn post(
    client: &reqwest::Client,
    target: &reqwest::Url,
    secret: &[u8],
    event: &Ready,
    attempt: u32,
) -> (bool, Attempt) {
    let event_id = event.index.to_string();
    let ts = chrono::Utc::now().timestamp();
    let started = Instant::now();
    let res = client
        .post(target.clone())
        .header(
            reqwest::header::CONTENT_TYPE,
            reqwest::header::HeaderValue::from_static("application/cloudevents+json"),
        )
        .header("webhook-id", &event_id)
        .header("webhook-timestamp", ts.to_string())
        .header(
            "webhook-signature",
            signature(secret, &event_id, ts, &event.body),
        )
        .body(event.body.clone())
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
    (ok, a)
}

fn short_error(e: &reqwest::Error) -> String {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<super::targets::RefusedTarget>() {
            return format!("refused: {r}");
        }
        source = s.source();
    }
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
/// finding follower asks for them (`register::reports::findings::ServiceFindings`).
pub fn findings(
    store: &dyn Store,
    now: u64,
    failing_after: Duration,
) -> Result<Vec<crate::register::projections::findings::Finding>, AppError> {
    use crate::fields::rfc3339;
    Ok(failing(store, now, failing_after)?
        .into_iter()
        .map(
            |(id, since)| crate::register::projections::findings::Finding {
                code: "subscription_failing".into(),
                severity: crate::register::projections::findings::Severity::Medium,
                explanation: format!(
                    "webhook subscription {id} has failed to deliver since {}; see its deliveries",
                    rfc3339(since)
                ),
                evidence: vec![id],
                since: rfc3339(since),
                model_version: None,
                subject: Some(id.to_string()),
            },
        )
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

    fn ready(from: u64, n: u64) -> Vec<std::sync::Arc<Ready>> {
        (from..from + n)
            .map(|index| {
                std::sync::Arc::new(Ready {
                    index,
                    kind: "decision.recorded".into(),
                    system: None,
                    body: bytes::Bytes::new(),
                })
            })
            .collect()
    }

    fn indices(v: &[std::sync::Arc<Ready>]) -> Vec<u64> {
        v.iter().map(|r| r.index).collect()
    }

    #[test]
    fn the_shared_window_serves_what_it_holds_and_keeps_only_the_newest() {
        let mut r = Recent::default();
        assert!(r.get(0, 10).is_empty());
        r.put(5, &ready(5, 10));
        assert_eq!(indices(&r.get(8, 3)), vec![8, 9, 10]);
        // Only the held prefix of a longer range; nothing for a range it does not hold.
        assert_eq!(indices(&r.get(12, 10)), vec![12, 13, 14]);
        assert!(r.get(4, 10).is_empty());
        assert!(r.get(15, 1).is_empty());
        // An overlapping read continues the window; one beyond it starts it over.
        r.put(10, &ready(10, 10));
        assert_eq!(indices(&r.get(5, 100)), (5..20).collect::<Vec<_>>());
        r.put(30, &ready(30, 2));
        assert_eq!(indices(&r.get(30, 5)), vec![30, 31]);
        assert!(r.get(19, 1).is_empty());
        // A read behind the window leaves it as it is.
        r.put(0, &ready(0, 5));
        assert_eq!(r.start, 30);
        // At most RECENT events, the newest.
        r.put(32, &ready(32, RECENT as u64 + 5));
        assert_eq!(r.events.len(), RECENT);
        assert_eq!(r.start, 30 + 7);
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
