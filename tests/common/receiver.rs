//! A real HTTP receiver for webhook tests, and the Standard Webhooks signature check
//! written from the specification (not the service's code).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// Delivery settings for tests: retries after 20 ms, findings every second, a
/// subscription failing after one second of failures.
pub const FAST: &[(&str, &str)] = &[
    ("VERITRAIL_WEBHOOK_RETRY_BASE_MS", "20"),
    ("VERITRAIL_FINDINGS_INTERVAL_SECS", "1"),
    ("VERITRAIL_WEBHOOK_FAILING_AFTER_SECS", "1"),
    // The receivers here are on loopback, which the address rule refuses unless the
    // allow-list names it.
    ("VERITRAIL_WEBHOOK_ALLOWED_HOSTS", "127.0.0.1"),
];

/// [`FAST`] without the allow-list: the address rule as it is by default.
pub const FAST_DEFAULT_RULE: &[(&str, &str)] = &[
    ("VERITRAIL_WEBHOOK_RETRY_BASE_MS", "20"),
    ("VERITRAIL_FINDINGS_INTERVAL_SECS", "1"),
    ("VERITRAIL_WEBHOOK_FAILING_AFTER_SECS", "1"),
];

/// One request a receiver got: its headers (lowercase names), body, and the status it
/// answered.
#[derive(Debug, Clone)]
pub struct Got {
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub status: u16,
}

/// A real HTTP receiver on a free port: answers `fail_first` requests with 500, then 200.
pub struct Receiver {
    pub url: String,
    pub got: Arc<Mutex<Vec<Got>>>,
}

impl Receiver {
    pub fn start(fail_first: usize, delay: Duration) -> Receiver {
        Self::start_on("127.0.0.1:0", fail_first, delay)
    }

    /// A receiver bound to `addr` (a loopback address and port).
    pub fn start_on(addr: &str, fail_first: usize, delay: Duration) -> Receiver {
        let listener = TcpListener::bind(addr).unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got: Arc<Mutex<Vec<Got>>> = Default::default();
        let seen = Arc::new(AtomicUsize::new(0));
        let sink = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() || line.is_empty() {
                    continue;
                }
                let mut headers = HashMap::new();
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    let (k, v) = h.split_once(':').unwrap();
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                }
                let n: usize = headers
                    .get("content-length")
                    .map_or(0, |v| v.parse().unwrap());
                let mut body = vec![0; n];
                reader.read_exact(&mut body).unwrap();
                std::thread::sleep(delay);
                let status = if seen.fetch_add(1, Ordering::SeqCst) < fail_first {
                    500
                } else {
                    200
                };
                sink.lock().unwrap().push(Got {
                    headers,
                    body,
                    status,
                });
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        Receiver { url, got }
    }

    /// The events answered 2xx, in the order they came: (webhook-id, CloudEvent).
    pub fn delivered(&self) -> Vec<(u64, Value)> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|g| g.status == 200)
            .map(|g| {
                (
                    g.headers["webhook-id"].parse().unwrap(),
                    serde_json::from_slice(&g.body).unwrap(),
                )
            })
            .collect()
    }

    pub fn wait_for(&self, n: usize) -> Vec<(u64, Value)> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let d = self.delivered();
            if d.len() >= n {
                return d;
            }
            assert!(Instant::now() < deadline, "{} of {n} delivered", d.len());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The Standard Webhooks check, written from the specification: HMAC-SHA256 keyed with
/// the base64 part of `whsec_…`, over `id.timestamp.body`, as `v1,<base64>`; the header
/// may hold several space-separated signatures.
pub fn verifies(secret: &str, g: &Got) -> bool {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(g.headers["webhook-id"].as_bytes());
    mac.update(b".");
    mac.update(g.headers["webhook-timestamp"].as_bytes());
    mac.update(b".");
    mac.update(&g.body);
    let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    g.headers["webhook-signature"]
        .split(' ')
        .any(|s| s.strip_prefix("v1,") == Some(want.as_str()))
}

/// Subscribe `target` to decisions as `token`: (id, secret).
pub fn subscribe(url: &str, token: &str, target: &str, types: Value) -> (u64, String) {
    let r = super::post_json(
        url,
        token,
        "/v1/subscriptions",
        json!({"url": target, "types": types}),
    );
    (
        r["subscription"]["id"].as_u64().unwrap(),
        r["secret"].as_str().unwrap().to_owned(),
    )
}
