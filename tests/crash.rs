//! Crash safety with the real binary: concurrent writers over HTTP (tokens, and
//! decisions, whose personal data goes to the vault beside the log), `kill -9` at a
//! random moment, restart. Every write whose receipt came back must be in the log
//! exactly once, with its vault data; a write that was not acknowledged is recorded
//! whole or leaves nothing behind; and the offline `verify` must pass.

use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

mod common;

use common::BIN;

fn start(backend: &common::Backend) -> (Child, String) {
    common::start_server(backend, &[])
}

type Acked = Arc<Mutex<Vec<(String, u64)>>>;

/// Where a writer thread sends and what it remembers: acknowledged writes go to
/// `acked` (name, index), the one in flight when the server died to `lost`.
#[derive(Clone)]
struct Sink {
    url: String,
    token: String,
    stop: Arc<AtomicBool>,
    acked: Acked,
    lost: Arc<Mutex<Vec<String>>>,
}

/// A writer thread: POST `body(name-i)` to `path` until the server dies or `stop`.
fn writer(
    sink: Sink,
    path: &'static str,
    body: impl Fn(&str) -> Value + Send + 'static,
    name: String,
) -> std::thread::JoinHandle<()> {
    let Sink {
        url,
        token,
        stop,
        acked,
        lost,
    } = sink;
    std::thread::spawn(move || {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            let id = format!("{name}-{i}");
            i += 1;
            match client
                .post(format!("{url}{path}"))
                .bearer_auth(&token)
                .json(&body(&id))
                .send()
            {
                Ok(r) if r.status().as_u16() == 201 => {
                    let v: Value = r.json().unwrap();
                    acked
                        .lock()
                        .unwrap()
                        .push((id, v["receipt"]["index"].as_u64().unwrap()));
                }
                // The server died mid-request: not acknowledged, may or may not be recorded.
                _ => {
                    lost.lock().unwrap().push(id);
                    break;
                }
            }
        }
    })
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_write() {
    let backend = common::Backend::new();
    eprintln!("crash harness on {}", backend.name());
    let rounds = std::env::var("VERITRAIL_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3u32);
    let (mut acked_tokens, mut acked_decisions, mut lost_decisions) =
        (Vec::new(), Vec::new(), Vec::new());
    let mut setup: Option<(String, String)> = None;
    let mut seed = 0x2545f4914f6cdd1du64;
    for round in 0..rounds {
        let (mut child, url) = start(&backend);
        let admin = std::fs::read_to_string(backend.path().join("admin-token"))
            .unwrap()
            .trim()
            .to_owned();
        let (pipeline, auditor) = setup
            .get_or_insert_with(|| common::setup_system_http(&url, &admin))
            .clone();
        let stop = Arc::new(AtomicBool::new(false));
        let (tok, dec): (Acked, Acked) = Default::default();
        let lost: Arc<Mutex<Vec<String>>> = Default::default();
        let mut workers = Vec::new();
        for w in 0..4 {
            let token_body = |id: &str| json!({"name": id, "role": "auditor"});
            let tokens = Sink {
                url: url.clone(),
                token: admin.clone(),
                stop: stop.clone(),
                acked: tok.clone(),
                lost: Default::default(),
            };
            workers.push(writer(
                tokens,
                "/v1/tokens",
                token_body,
                format!("r{round}-t{w}"),
            ));
            let decision_body = |id: &str| {
                json!({"decision_id": id, "model_version": "1", "occurred_at": "2026-11-25T10:00:00Z", "subject_ref": format!("subject-{id}"),
                       "input_sha256": "c".repeat(64), "inputs": {"k": id}, "output": {"approved": true}, "reasons": []})
            };
            let decisions = Sink {
                url: url.clone(),
                token: pipeline.clone(),
                stop: stop.clone(),
                acked: dec.clone(),
                lost: lost.clone(),
            };
            workers.push(writer(
                decisions,
                "/v1/systems/crash/decisions",
                decision_body,
                format!("r{round}-d{w}"),
            ));
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(150 + seed % 600));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().unwrap();
        }
        let got = std::mem::take(&mut *tok.lock().unwrap());
        assert!(
            !got.is_empty(),
            "round {round}: no token write was acknowledged before the kill"
        );
        acked_tokens.extend(got);
        acked_decisions.extend(std::mem::take(&mut *dec.lock().unwrap()));
        lost_decisions.extend(std::mem::take(&mut *lost.lock().unwrap()));

        // Restart: every acknowledged write is there, at its receipt's index, once.
        let (child2, url) = start(&backend);
        child = child2;
        let client = reqwest::blocking::Client::new();
        let tokens: Value = client
            .get(format!("{url}/v1/tokens"))
            .bearer_auth(&admin)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let tokens = tokens.as_array().unwrap();
        for (name, index) in &acked_tokens {
            let matches: Vec<_> = tokens
                .iter()
                .filter(|t| t["name"] == name.as_str())
                .collect();
            assert_eq!(
                matches.len(),
                1,
                "{name} acknowledged but present {} times",
                matches.len()
            );
            assert_eq!(
                matches[0]["created_index"].as_u64().unwrap(),
                *index,
                "{name} moved"
            );
        }
        let mut seen = std::collections::HashSet::new();
        for t in tokens {
            assert!(
                seen.insert(t["name"].as_str().unwrap().to_owned()),
                "duplicate {}",
                t["name"]
            );
        }
        for (id, index) in &acked_decisions {
            let d: Value = client
                .get(format!("{url}/v1/systems/crash/decisions/{id}"))
                .bearer_auth(&auditor)
                .send()
                .unwrap()
                .json()
                .unwrap();
            assert_eq!(
                d["index"].as_u64(),
                Some(*index),
                "decision {id} acknowledged at {index}: {d}"
            );
            assert_eq!(
                d["subject_ref"]["value"].as_str(),
                Some(format!("subject-{id}").as_str()),
                "{id} lost its vault data"
            );
        }
        for id in &lost_decisions {
            let recorded = client
                .get(format!("{url}/v1/systems/crash/decisions/{id}"))
                .bearer_auth(&auditor)
                .send()
                .unwrap()
                .status()
                .as_u16()
                == 200;
            let subj: Value = client
                .get(format!("{url}/v1/subjects/subject-{id}/decisions"))
                .bearer_auth(&auditor)
                .send()
                .unwrap()
                .json()
                .unwrap();
            let held = subj["decisions"].as_array().unwrap().len();
            assert_eq!(
                held,
                usize::from(recorded),
                "{id}: recorded={recorded} but the vault holds {held} decisions of its subject"
            );
        }
        // Stop it gracefully this time, then the offline check.
        common::stop_server(&mut child);
        let out = Command::new(BIN)
            .arg("verify")
            .args(backend.args())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "verify failed after round {round}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    assert!(
        !acked_decisions.is_empty(),
        "no decision was acknowledged in any round"
    );
}
