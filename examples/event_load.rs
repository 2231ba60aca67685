//! The two halves of the events benchmark (`scripts/bench`), each printing one JSON line:
//!
//! ```text
//! event_load offer URL TOKEN RATE SECONDS PREFIX
//!     single decisions at a constant offered RATE per second for SECONDS; each latency is
//!     counted from the moment its request was due, not from when it was sent, so a
//!     stalled server is not hidden by a stalled generator (as wrk2 does)
//! event_load receive PORT EXPECT TIMEOUT_SECONDS
//!     a webhook receiver answering 204; each event's delivery lag is its arrival time
//!     minus the entry's own time (the CloudEvent's `time`); it answers once EXPECT events
//!     arrived, or at the timeout
//! ```

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("offer") if args.len() == 6 => offer(
            &args[1],
            &args[2],
            args[3].parse().expect("RATE"),
            args[4].parse().expect("SECONDS"),
            &args[5],
        ),
        Some("receive") if args.len() == 4 => receive(
            args[1].parse().expect("PORT"),
            args[2].parse().expect("EXPECT"),
            args[3].parse().expect("TIMEOUT_SECONDS"),
        ),
        _ => {
            eprintln!("usage: event_load offer URL TOKEN RATE SECONDS PREFIX | receive PORT EXPECT TIMEOUT_SECONDS");
            std::process::exit(2);
        }
    }
}

/// The value at quantile `q` of sorted `xs` (nearest rank), in milliseconds from µs.
fn quantile_ms(xs: &[u64], q: f64) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let rank = ((q * xs.len() as f64).ceil() as usize).clamp(1, xs.len());
    xs[rank - 1] as f64 / 1000.0
}

fn offer(url: &str, token: &str, rate: f64, seconds: f64, prefix: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let target = format!("{url}/v1/systems/bench/decisions");
    let line = runtime.block_on(async move {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(512)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client");
        let total = (rate * seconds) as u64;
        let every = Duration::from_secs_f64(1.0 / rate);
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(total as usize);
        for i in 0..total {
            let due = start + every.mul_f64(i as f64);
            tokio::time::sleep_until(due.into()).await;
            let body = serde_json::json!({
                "decision_id": format!("{prefix}-{i}"),
                "model_version": "1",
                "occurred_at": "2026-11-25T10:00:00Z",
                "subject_ref": format!("s-{}", i % 1000),
                "input_sha256": "c".repeat(64),
                "output": {"approved": true},
                "confidence": 0.87,
                "reasons": ["income_ok", "history_ok"],
                "human_review": {"reviewer": "analyst-7", "action": "accepted", "review_ms": 4200}
            });
            let request = client.post(&target).bearer_auth(token).json(&body).send();
            tasks.push(tokio::spawn(async move {
                let ok = matches!(request.await, Ok(r) if r.status().as_u16() == 201);
                (ok, due.elapsed().as_micros() as u64)
            }));
        }
        let mut latencies = Vec::with_capacity(tasks.len());
        let mut errors = 0u64;
        for t in tasks {
            let (ok, micros) = t.await.expect("a request task");
            if !ok {
                errors += 1;
            }
            latencies.push(micros);
        }
        let elapsed = start.elapsed().as_secs_f64();
        latencies.sort_unstable();
        serde_json::json!({
            "offered_rps": rate,
            "requests": total,
            "duration_s": elapsed,
            "rps": total as f64 / elapsed,
            "errors": errors,
            "non2xx": 0,
            "p50_ms": quantile_ms(&latencies, 0.50),
            "p99_ms": quantile_ms(&latencies, 0.99),
            "p999_ms": quantile_ms(&latencies, 0.999),
            "max_ms": quantile_ms(&latencies, 1.0),
        })
    });
    println!("{line}");
}

/// A deliberately small HTTP/1.1 receiver (a thread per connection, keep-alive, no
/// parsing beyond the head's length and the event's `time`), so that the benchmark's
/// stand-in for someone else's system takes as little of this machine as it can.
fn receive(port: u16, expect: usize, timeout: u64) {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("the receiver's port");
    let lags: Arc<Mutex<Vec<u64>>> = Default::default();
    let started = Instant::now();
    let l = lags.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let l = l.clone();
            std::thread::spawn(move || serve_connection(stream, &l));
        }
    });
    println!("ready");
    let deadline = started + Duration::from_secs(timeout);
    while lags.lock().unwrap().len() < expect && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut all = std::mem::take(&mut *lags.lock().unwrap());
    all.sort_unstable();
    let line = serde_json::json!({
        "received": all.len(),
        "expected": expect,
        "seconds": started.elapsed().as_secs_f64(),
        "lag_p50_ms": quantile_ms(&all, 0.50),
        "lag_p99_ms": quantile_ms(&all, 0.99),
        "lag_max_ms": quantile_ms(&all, 1.0),
    });
    println!("{line}");
}

/// Requests on one connection until it closes: each event's lag into `lags`, 204 back.
fn serve_connection(stream: std::net::TcpStream, lags: &Mutex<Vec<u64>>) {
    use std::io::{BufRead, Read, Write};
    let mut out = stream.try_clone().expect("a stream");
    let mut reader = std::io::BufReader::with_capacity(64 * 1024, stream);
    let mut line = String::new();
    let mut body = Vec::new();
    loop {
        let mut length = 0usize;
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        body.resize(length, 0);
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let now = chrono::Utc::now();
        if let Some(t) = event_time(&body) {
            let lag = (now - t).num_microseconds().unwrap_or(0).max(0) as u64;
            lags.lock().unwrap().push(lag);
        }
        if out.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").is_err() {
            return;
        }
    }
}

/// The CloudEvent's `time` attribute, found without parsing the whole event.
fn event_time(body: &[u8]) -> Option<chrono::DateTime<chrono::Utc>> {
    let key = b"\"time\":\"";
    let at = body.windows(key.len()).position(|w| w == key)? + key.len();
    let len = body[at..].iter().position(|b| *b == b'"')?;
    let text = std::str::from_utf8(&body[at..at + len]).ok()?;
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}
