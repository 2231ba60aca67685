//! `veritrail migrate`: a sled log copied into PostgreSQL and back, entry by entry, with
//! the same root on every side; the copies serve the same data (vault included), take
//! new writes, and verify.
//!
//! Needs a PostgreSQL server (see tests/multinode.rs); without one it says so and passes.

mod common;

use std::process::Command;

use serde_json::{json, Value};

fn veritrail(args: &[&str]) -> (bool, String) {
    let out = Command::new(common::BIN).args(args).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn a_log_copied_to_postgres_and_back_keeps_its_root() {
    let Some(server) = common::backend::server_url() else {
        eprintln!(
            "skipped: needs PostgreSQL ({} unset; scripts/test sets it where initdb and pg_ctl exist)",
            common::backend::DATABASE_ENV
        );
        return;
    };
    // A sled log with decisions (and their vault rows).
    let sled = common::Backend {
        dir: tempfile::tempdir().unwrap(),
        url: None,
    };
    let (mut child, url) = common::start_server(&sled, &[]);
    let admin = std::fs::read_to_string(sled.path().join("admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    let (pipeline, auditor) = common::setup_system_http(&url, &admin);
    let client = reqwest::blocking::Client::new();
    for i in 0..30 {
        let r = client
            .post(format!("{url}/v1/systems/crash/decisions"))
            .bearer_auth(&pipeline)
            .json(&common::decision(
                &format!("m-{i}"),
                "1",
                &format!("person-{i}"),
            ))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
    }
    let key: Value = client
        .get(format!("{url}/v1/log/key"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let key = key["verifier_key"].as_str().unwrap().to_owned();
    // The finding follower appends about a second after the entries that cause findings:
    // take the checkpoint once the log has stood still for two seconds.
    let served = || {
        client
            .get(format!("{url}/v1/log/checkpoint"))
            .send()
            .unwrap()
            .text()
            .unwrap()
    };
    let mut checkpoint = served();
    loop {
        std::thread::sleep(std::time::Duration::from_secs(2));
        let now = served();
        if now == checkpoint {
            break;
        }
        checkpoint = now;
    }
    let root = checkpoint.lines().nth(2).unwrap().to_owned();
    common::stop_server(&mut child);

    // sled -> PostgreSQL (the key comes from the data dir's key file).
    let pg_url = common::backend::fresh_database(&server);
    let from = sled.path().display().to_string();
    let (ok, out) = veritrail(&["migrate", "--from", &from, "--to", &pg_url]);
    assert!(ok, "{out}");
    let root_hex = hex_of_b64(&root);
    assert!(out.contains(&root_hex), "{out}");
    // Into a destination that holds a log: refused.
    let (ok, out) = veritrail(&["migrate", "--from", &from, "--to", &pg_url]);
    assert!(!ok && out.contains("already holds a log"), "{out}");

    // PostgreSQL -> a new data dir (the key given).
    let back = tempfile::tempdir().unwrap();
    let to = back.path().join("copy").display().to_string();
    let (ok, out) = veritrail(&["migrate", "--from", &pg_url, "--to", &to, "--key", &key]);
    assert!(ok, "{out}");
    assert!(out.contains(&root_hex), "{out}");
    let (ok, out) = veritrail(&["verify", "--data-dir", &to, "--key", &key]);
    assert!(ok && out.contains(&root_hex), "{out}");

    // The PostgreSQL copy serves the same data and takes new writes.
    let pg = common::Backend {
        dir: tempfile::tempdir().unwrap(),
        url: Some(pg_url),
    };
    let pem = std::fs::read_to_string(sled.path().join("signing-key.pem")).unwrap();
    let (mut child, url) =
        common::start_server(&pg, &[("VERITRAIL_SIGNING_KEY_PEM", pem.as_str())]);
    assert_eq!(
        client
            .get(format!("{url}/v1/log/checkpoint"))
            .send()
            .unwrap()
            .text()
            .unwrap(),
        checkpoint
    );
    let d: Value = client
        .get(format!("{url}/v1/systems/crash/decisions/m-7"))
        .bearer_auth(&auditor)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(d["subject_ref"]["value"], json!("person-7"), "{d}");
    let r = client
        .post(format!("{url}/v1/systems/crash/decisions"))
        .bearer_auth(&pipeline)
        .json(&common::decision("m-new", "1", "person-new"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    // The same decision again is recognised (the idempotency index was rebuilt).
    let r = client
        .post(format!("{url}/v1/systems/crash/decisions"))
        .bearer_auth(&pipeline)
        .json(&common::decision("m-3", "1", "person-3"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    common::stop_server(&mut child);
}

fn hex_of_b64(b64: &str) -> String {
    use base64::Engine;
    hex::encode(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
}
