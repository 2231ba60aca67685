//! Crash safety with the real binary: concurrent writers over HTTP, `kill -9` at a
//! random moment, restart. Every write whose receipt came back must be in the log
//! exactly once, and the offline `verify` must pass.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_veritrail");

/// Start `veritrail serve` on a free port; return the child and its base URL.
fn start(dir: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start veritrail");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = loop {
        assert!(Instant::now() < deadline, "server did not start");
        let line = lines
            .next()
            .expect("server exited before listening")
            .unwrap();
        if let Some(rest) = line.strip_prefix("veritrail listening on ") {
            break rest.trim().to_owned();
        }
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, url)
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let rounds = std::env::var("VERITRAIL_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3u32);
    let mut acked: Vec<(String, u64)> = Vec::new();
    let mut seed = 0x2545f4914f6cdd1du64;
    for round in 0..rounds {
        let (mut child, url) = start(dir.path());
        let admin = std::fs::read_to_string(dir.path().join("admin-token"))
            .unwrap()
            .trim()
            .to_owned();
        let stop = Arc::new(AtomicBool::new(false));
        let got = Arc::new(Mutex::new(Vec::new()));
        let mut workers = Vec::new();
        for w in 0..8 {
            let (url, admin, stop, got) = (url.clone(), admin.clone(), stop.clone(), got.clone());
            workers.push(std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let name = format!("r{round}-w{w}-{i}");
                    i += 1;
                    let res = client
                        .post(format!("{url}/v1/tokens"))
                        .bearer_auth(&admin)
                        .json(&serde_json::json!({"name": name, "role": "auditor"}))
                        .send();
                    match res {
                        Ok(r) if r.status().as_u16() == 201 => {
                            let v: serde_json::Value = r.json().unwrap();
                            got.lock()
                                .unwrap()
                                .push((name, v["receipt"]["index"].as_u64().unwrap()));
                        }
                        // The server died mid-request: not acknowledged, may or may not be recorded.
                        _ => break,
                    }
                }
            }));
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
        let got = std::mem::take(&mut *got.lock().unwrap());
        assert!(
            !got.is_empty(),
            "round {round}: no write was acknowledged before the kill"
        );
        acked.extend(got);

        // Restart: every acknowledged write is there, at its receipt's index, once.
        let (mut child, url) = start(dir.path());
        let client = reqwest::blocking::Client::new();
        let tokens: serde_json::Value = client
            .get(format!("{url}/v1/tokens"))
            .bearer_auth(&admin)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let tokens = tokens.as_array().unwrap();
        for (name, index) in &acked {
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
        // Stop it gracefully this time, then the offline check.
        sigterm(&child);
        let status = child.wait().unwrap();
        assert!(status.success(), "graceful stop failed: {status:?}");
        let out = Command::new(BIN)
            .args(["verify", "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "verify failed after round {round}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}
