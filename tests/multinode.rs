//! Several nodes, one log: two `veritrail serve` processes on one PostgreSQL database
//! take decisions concurrently (and `veritrail verify` checks the database meanwhile);
//! one is killed with `kill -9` mid-load and the other keeps serving. Afterwards every acknowledged decision is in the log exactly once,
//! the log verifies, and both nodes serve the same checkpoint.
//!
//! Needs a PostgreSQL server: scripts/test starts a throwaway cluster and sets
//! VERITRAIL_TEST_DATABASE_URL; without it this test says so and passes.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

type Log = Arc<Mutex<Vec<(String, u64)>>>;

/// Decision writers against one node until `stop` or the node dies: acknowledged
/// (id, index) into `acked`.
fn writers(
    url: &str,
    token: &str,
    node: &str,
    n: usize,
    stop: &Arc<AtomicBool>,
    acked: &Log,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..n)
        .map(|w| {
            let (url, token, stop, acked) = (
                url.to_owned(),
                token.to_owned(),
                stop.clone(),
                acked.clone(),
            );
            let prefix = format!("{node}-{w}");
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("{prefix}-{i}");
                    i += 1;
                    let body = common::decision(&id, "1", &format!("subject-{id}"));
                    match client
                        .post(format!("{url}/v1/systems/crash/decisions"))
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                    {
                        Ok(r) if r.status().as_u16() == 201 => {
                            let v: Value = r.json().unwrap();
                            let index = v["receipt"]["index"].as_u64().unwrap();
                            acked.lock().unwrap().push((id, index));
                        }
                        Ok(r) => panic!("{id}: {} {}", r.status(), r.text().unwrap()),
                        // The node died mid-request: not acknowledged.
                        Err(_) => break,
                    }
                }
            })
        })
        .collect()
}

fn checkpoint(url: &str) -> String {
    reqwest::blocking::get(format!("{url}/v1/log/checkpoint"))
        .unwrap()
        .text()
        .unwrap()
}

/// Two real nodes on one fresh database, sharing the signing key: (backend A, backend B,
/// node A, its URL, node B, its URL).
fn two_nodes() -> (
    common::Backend,
    common::Backend,
    std::process::Child,
    String,
    std::process::Child,
    String,
) {
    let a = common::Backend::new();
    let b = common::Backend {
        dir: tempfile::tempdir().unwrap(),
        url: a.url.clone(),
    };
    let (node_a, url_a) = common::start_server(&a, &[]);
    let pem = std::fs::read_to_string(a.path().join("signing-key.pem")).unwrap();
    let env = [("VERITRAIL_SIGNING_KEY_PEM", pem.as_str())];
    let (node_b, url_b) = common::start_server(&b, &env);
    (a, b, node_a, url_a, node_b, url_b)
}

#[test]
fn two_nodes_one_log_survive_a_kill_9() {
    let Some(_) = common::backend::server_url() else {
        eprintln!(
            "skipped: needs PostgreSQL ({} unset; scripts/test sets it where initdb and pg_ctl exist)",
            common::backend::DATABASE_ENV
        );
        return;
    };
    let (a, b, mut node_a, url_a, mut node_b, url_b) = two_nodes();
    // One admin token for the log: node A created it; node B found it.
    assert!(!b.path().join("admin-token").exists());
    let admin = std::fs::read_to_string(a.path().join("admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    let (pipeline, auditor) = common::setup_system_http(&url_a, &admin);

    let stop_all = Arc::new(AtomicBool::new(false));
    let (acked_a, acked_b): (Log, Log) = Default::default();
    let mut threads = writers(&url_a, &pipeline, "a", 4, &stop_all, &acked_a);
    threads.extend(writers(&url_b, &pipeline, "b", 4, &stop_all, &acked_b));
    std::thread::sleep(Duration::from_millis(1000));
    // The offline check runs against the shared database while both nodes write: it
    // checks the log as of the head it reads first.
    let out = Command::new(common::BIN)
        .arg("verify")
        .args(a.args())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "verify under load: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    std::thread::sleep(Duration::from_millis(500));
    node_a.kill().unwrap(); // SIGKILL
    node_a.wait().unwrap();
    let b_at_kill = acked_b.lock().unwrap().len();
    std::thread::sleep(Duration::from_millis(1000));
    stop_all.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let acked_a = std::mem::take(&mut *acked_a.lock().unwrap());
    let acked_b = std::mem::take(&mut *acked_b.lock().unwrap());
    assert!(
        !acked_a.is_empty(),
        "node A acknowledged nothing before the kill"
    );
    assert!(
        acked_b.len() > b_at_kill,
        "node B stopped serving when node A died ({b_at_kill} before, {} after)",
        acked_b.len()
    );

    // Node A comes back on the same database and catches up.
    let (mut node_a, url_a) = common::start_server(&a, &[]);
    let client = reqwest::blocking::Client::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = format!("{url_a}/v1/systems/crash/decisions?order=oldest&limit=1000");
        if let Some(c) = &cursor {
            q += &format!("&cursor={c}");
        }
        let page: Value = client
            .get(q)
            .bearer_auth(&auditor)
            .send()
            .unwrap()
            .json()
            .unwrap();
        for d in page["decisions"].as_array().unwrap() {
            let id = d["decision_id"].as_str().unwrap().to_owned();
            let index = d["index"].as_u64().unwrap();
            assert!(seen.insert(id.clone(), index).is_none(), "{id} twice");
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let mut indices = std::collections::HashSet::new();
    for (id, index) in acked_a.iter().chain(&acked_b) {
        assert_eq!(seen.get(id), Some(index), "acknowledged {id} at {index}");
        assert!(indices.insert(*index), "two receipts name index {index}");
    }
    // A decision node A was writing when it died is recorded whole or not at all.
    assert!(seen.len() >= acked_a.len() + acked_b.len());
    for url in [&url_a, &url_b] {
        let d: Value = client
            .get(format!("{url}/v1/systems/crash/decisions/{}", acked_b[0].0))
            .bearer_auth(&auditor)
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(
            d["subject_ref"]["value"],
            format!("subject-{}", acked_b[0].0)
        );
    }

    // Both nodes serve the same checkpoint (a node re-reads the shared head at most
    // every 20 ms when asked).
    std::thread::sleep(Duration::from_millis(50));
    let (cp_a, cp_b) = (checkpoint(&url_a), checkpoint(&url_b));
    assert_eq!(cp_a, cp_b);
    let size: u64 = cp_a.lines().nth(1).unwrap().parse().unwrap();
    assert!(size as usize > seen.len());

    common::stop_server(&mut node_a);
    common::stop_server(&mut node_b);
    let out = Command::new(common::BIN)
        .arg("verify")
        .args(a.args())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "verify: {text}");
    assert!(text.contains(&format!("OK: {size} entries")), "{text}");
    eprintln!(
        "two nodes: {} decisions acknowledged by A before its kill -9, {} by B ({} after), {size} entries verified",
        acked_a.len(),
        acked_b.len(),
        acked_b.len() - b_at_kill
    );
}

/// Both nodes reconcile findings; the writer's check keeps one open entry per finding.
#[test]
fn two_nodes_open_each_finding_once() {
    let Some(_) = common::backend::server_url() else {
        eprintln!(
            "skipped: needs PostgreSQL ({} unset; scripts/test sets it where initdb and pg_ctl exist)",
            common::backend::DATABASE_ENV
        );
        return;
    };
    let (a, _b, mut node_a, url_a, mut node_b, url_b) = two_nodes();
    let admin = std::fs::read_to_string(a.path().join("admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    let (pipeline, auditor) = common::setup_system_http(&url_a, &admin);
    // Several versions awaiting review, registered through either node.
    for (i, url) in [&url_a, &url_b, &url_a, &url_b].into_iter().enumerate() {
        common::post_json(
            url,
            &pipeline,
            "/v1/systems/crash/models",
            serde_json::json!({"version": format!("v{i}"), "artifact_sha256": "e".repeat(64), "training_data": {"ref": "r", "sha256": "f".repeat(64)}}),
        );
    }
    std::thread::sleep(Duration::from_secs(4));
    let page: Value = reqwest::blocking::Client::new()
        .get(format!("{url_b}/v1/log/entries?start=0&limit=1000"))
        .bearer_auth(&auditor)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let mut opened: HashMap<String, usize> = HashMap::new();
    for e in page["entries"].as_array().unwrap() {
        if e["entry"]["kind"] == "finding.opened" {
            let b = &e["entry"]["body"];
            *opened
                .entry(format!("{}/{}", b["code"], b["subject"]))
                .or_default() += 1;
        }
    }
    for v in 0..4 {
        let k = format!("\"model_version_awaiting_review\"/\"v{v}\"");
        assert_eq!(opened.get(&k), Some(&1), "{opened:?}");
    }
    assert!(opened.values().all(|n| *n == 1), "{opened:?}");
    common::stop_server(&mut node_a);
    common::stop_server(&mut node_b);
}

/// One node delivers webhooks, under the lease; `kill -9` of it, and the other node takes
/// over within 15 s from the cursor the first one stored: nothing delivered before is
/// sent again and nothing after is missed, in log order.
#[test]
fn the_other_node_takes_over_delivery_from_the_stored_cursor_when_the_holder_dies() {
    let Some(_) = common::backend::server_url() else {
        eprintln!(
            "skipped: needs PostgreSQL ({} unset; scripts/test sets it where initdb and pg_ctl exist)",
            common::backend::DATABASE_ENV
        );
        return;
    };
    use common::receiver::{subscribe, Receiver, FAST};
    // Node A alone: it takes the delivery lease.
    let a = common::Backend::new();
    let (mut node_a, url_a) = common::start_server(&a, FAST);
    let admin = std::fs::read_to_string(a.path().join("admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    let (pipeline, _) = common::setup_system_http(&url_a, &admin);
    let rx = Receiver::start(0, Duration::ZERO);
    subscribe(
        &url_a,
        &admin,
        &rx.url,
        serde_json::json!(["decision.recorded"]),
    );
    let mut written: Vec<u64> = (0..3)
        .map(|i| common::decide_http(&url_a, &pipeline, &format!("lease-a-{i}")))
        .collect();
    rx.wait_for(3);

    // Node B joins the same log; decisions through it are delivered by A, the holder.
    let b = common::Backend {
        dir: tempfile::tempdir().unwrap(),
        url: a.url.clone(),
    };
    let pem = std::fs::read_to_string(a.path().join("signing-key.pem")).unwrap();
    let mut env = FAST.to_vec();
    env.push(("VERITRAIL_SIGNING_KEY_PEM", pem.as_str()));
    let (mut node_b, url_b) = common::start_server(&b, &env);
    written.extend((0..2).map(|i| common::decide_http(&url_b, &pipeline, &format!("lease-b-{i}"))));
    rx.wait_for(5);
    // The cursor is stored after each batch the holder sends.
    std::thread::sleep(Duration::from_millis(500));

    node_a.kill().unwrap(); // SIGKILL: the lease is not given back, it lapses
    node_a.wait().unwrap();
    let killed = std::time::Instant::now();
    written.extend((0..3).map(|i| common::decide_http(&url_b, &pipeline, &format!("lease-c-{i}"))));
    let got = rx.wait_for(8);
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "node B took over after {took:?}"
    );
    assert_eq!(
        got.iter().map(|g| g.0).collect::<Vec<_>>(),
        written,
        "each event once, in log order, across the hand-over"
    );
    eprintln!("delivery lease: node B delivered {took:?} after node A's kill -9");
    common::stop_server(&mut node_b);
}
