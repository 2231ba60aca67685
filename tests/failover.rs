//! Losing the database primary: two Veritrail nodes on a Patroni cluster of two
//! PostgreSQL nodes with strict synchronous replication (scripts/pg-ha, etcd beside),
//! writers on both, and the primary's postmaster killed with `kill -9` three times in a
//! row. The nodes reconnect to the new primary through the multi-host URL
//! (`target_session_attrs=read-write`); a write whose answer was lost is not assumed:
//! its writer sends it again and reads the answer (the same decision id is the same
//! entry). Nothing acknowledged is lost, no index is given twice (no fork), every
//! checkpoint the nodes served stays consistent with the last, and the log verifies.
//! Runs once, on the sled run (it brings its own database), when
//! `VERITRAIL_FAILOVER_TEST=1`; needs patroni and etcd (`.ci/run` installs them).

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

type Acked = Arc<Mutex<Vec<(String, u64)>>>;

/// `scripts/pg-ha CMD DIR EXTRA…`: its output.
fn pg_ha(cmd: &str, dir: &Path, extra: &[&str]) -> String {
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-ha"))
        .arg(cmd)
        .arg(dir)
        .args(extra)
        .output()
        .expect("run scripts/pg-ha");
    assert!(
        out.status.success(),
        "scripts/pg-ha {cmd} {extra:?} (exit {:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The cluster, stopped and removed when dropped.
struct Cluster {
    dir: tempfile::TempDir,
    url: String,
}

impl Cluster {
    fn start() -> Self {
        // A short path: PostgreSQL's socket path is limited.
        let dir = tempfile::Builder::new()
            .prefix("ha")
            .tempdir_in("/tmp")
            .unwrap();
        let url = pg_ha("start", &dir.path().join("c"), &[]);
        Self { dir, url }
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("c")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-ha"))
            .arg("stop")
            .arg(self.path())
            .output();
    }
}

/// Writers on one node: each decision is sent until it is answered 201 (an error or a
/// lost answer is unknown, never assumed: the same id again is the same entry).
fn writers(
    url: &str,
    token: &str,
    node: &str,
    stop: &Arc<AtomicBool>,
    acked: &Acked,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..2)
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
                    .timeout(Duration::from_secs(15))
                    .build()
                    .unwrap();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("{prefix}-{i}");
                    i += 1;
                    let body = common::decision(&id, "1", &format!("subject-{id}"));
                    loop {
                        let sent = client
                            .post(format!("{url}/v1/systems/crash/decisions"))
                            .bearer_auth(&token)
                            .json(&body)
                            .send();
                        match sent {
                            Ok(r) if r.status().is_success() => {
                                let v: Value = r.json().unwrap();
                                acked
                                    .lock()
                                    .unwrap()
                                    .push((id.clone(), v["receipt"]["index"].as_u64().unwrap()));
                                break;
                            }
                            Ok(r) if r.status().as_u16() == 503 => {}
                            Ok(r) => panic!("{id}: {} {}", r.status(), r.text().unwrap()),
                            Err(_) => {}
                        }
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            })
        })
        .collect()
}

fn get(url: &str, token: &str) -> Value {
    reqwest::blocking::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .unwrap()
        .json()
        .unwrap()
}

/// The signed checkpoint a node serves: (size, note).
fn checkpoint(url: &str) -> (u64, String) {
    let note = reqwest::blocking::get(format!("{url}/v1/log/checkpoint"))
        .unwrap()
        .text()
        .unwrap();
    (note.lines().nth(1).unwrap().parse().unwrap(), note)
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn three_primary_failovers_lose_nothing_acknowledged_and_fork_nothing() {
    if !common::backend::sled_run(
        "three_primary_failovers_lose_nothing_acknowledged_and_fork_nothing",
    ) {
        return;
    }
    // Not yet part of the test command: in about one run of three, after a failover the
    // nodes fail to connect to either host for longer than the test waits (under
    // investigation; see the README's "Losing the primary").
    if std::env::var_os("VERITRAIL_FAILOVER_TEST").is_none() {
        eprintln!("skipped: set VERITRAIL_FAILOVER_TEST=1 to run the failover test");
        return;
    }
    let cluster = Cluster::start();
    // Every host of the cluster, the writable one chosen at each connection; a connection
    // to a host that died is given up within seconds rather than waited on.
    let url = format!(
        "{}&connect_timeout=5&tcp_user_timeout=10000&keepalives_idle=5",
        cluster.url
    );
    let a = common::Backend {
        dir: tempfile::tempdir().unwrap(),
        url: Some(url.clone()),
    };
    let b = common::Backend {
        dir: tempfile::tempdir().unwrap(),
        url: Some(url),
    };
    let (mut node_a, url_a, log_a) = common::start_server_logging(&a, &[]);
    let pem = std::fs::read_to_string(a.path().join("signing-key.pem")).unwrap();
    let (mut node_b, url_b, log_b) =
        common::start_server_logging(&b, &[("VERITRAIL_SIGNING_KEY_PEM", pem.as_str())]);
    let logs = |n: usize| {
        [&log_a, &log_b]
            .iter()
            .map(|l| {
                let l = l.lock().unwrap();
                l[l.len().saturating_sub(n)..].join("\n")
            })
            .collect::<Vec<_>>()
            .join("\n----\n")
    };
    let admin = std::fs::read_to_string(a.path().join("admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    let (pipeline, auditor) = common::setup_system_http(&url_a, &admin);

    let stop = Arc::new(AtomicBool::new(false));
    let acked: Acked = Default::default();
    let mut threads = writers(&url_a, &pipeline, "a", &stop, &acked);
    threads.extend(writers(&url_b, &pipeline, "b", &stop, &acked));
    let mut checkpoints = Vec::new();
    for round in 0..3 {
        let before = acked.lock().unwrap().len();
        wait_for("writes before the kill", 60, || {
            acked.lock().unwrap().len() > before + 20
        });
        checkpoints.push(checkpoint(&url_a));
        let old = pg_ha("leader", &cluster.path(), &[]);
        let pid = pg_ha("primary", &cluster.path(), &[]);
        assert!(Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap()
            .success());
        let new = pg_ha("wait-failover", &cluster.path(), &[&old]);
        assert_ne!(new, old, "round {round}: the same primary");
        let at_kill = acked.lock().unwrap().len();
        let deadline = Instant::now() + Duration::from_secs(90);
        while acked.lock().unwrap().len() <= at_kill + 40 {
            assert!(
                Instant::now() < deadline,
                "round {round}: no writes after the failover to port {new}; nodes' logs:\n{}",
                logs(15)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        checkpoints.push(checkpoint(&url_b));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());

    // Every acknowledged decision, at its index, once; no index given twice.
    let mut indices = HashMap::new();
    for (id, index) in &acked {
        assert!(
            indices.insert(*index, id.clone()).is_none(),
            "two receipts name index {index}"
        );
        let d = get(
            &format!("{url_b}/v1/systems/crash/decisions/{id}"),
            &auditor,
        );
        assert_eq!(d["index"].as_u64(), Some(*index), "acknowledged {id}: {d}");
    }
    // Every checkpoint served stays consistent with the newest (one log, no fork): each
    // verifies under the log's key, and the proof between it and the newest checks.
    let verifier = veritrail::log::note::NoteVerifier::parse(
        get(&format!("{url_a}/v1/log/key"), &auditor)["verifier_key"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let newest = checkpoint(&url_a).1;
    let last = veritrail::log::note::Checkpoint::open(&newest, &verifier).unwrap();
    for (_, note) in &checkpoints {
        let cp = veritrail::log::note::Checkpoint::open(note, &verifier).unwrap();
        let p = get(
            &format!(
                "{url_a}/v1/log/proofs/consistency?from={}&to={}",
                cp.size, last.size
            ),
            &auditor,
        );
        let proof: Vec<[u8; 32]> = p["hashes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                hex::decode(h.as_str().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap()
            })
            .collect();
        veritrail::log::merkle::verify_consistency(
            cp.size, last.size, &cp.root, &last.root, &proof,
        )
        .unwrap_or_else(|e| {
            panic!(
                "checkpoint {} is not consistent with {}: {e}",
                cp.size, last.size
            )
        });
    }
    let out = Command::new(common::BIN)
        .arg("verify")
        .args(a.args())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "verify: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    common::stop_server(&mut node_a);
    common::stop_server(&mut node_b);
}
