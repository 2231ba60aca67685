//! Witnesses against real processes: two `veritrail witness` servers and a log whose
//! policy needs both; cosignatures checked with a `cosignature/v1` verifier written from
//! the spec (tests/common/witness.rs); a witness down, a forked log, and `kill -9` of a
//! witness mid-request. They do not depend on the log's backend: they run once, on the
//! sled run.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::witness::{cosigned, free_port, size_of, start_witness, WitnessProc};
use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePrivateKey};
use serde_json::Value;

/// The log's signing key (PEM) and verifier key: every log of these tests uses this one,
/// so a second log with it is a fork.
fn log_key() -> (String, String) {
    let key = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let vkey = veritrail::log::note::NoteSigner::new("localhost/veritrail", key)
        .unwrap()
        .verifier()
        .to_string();
    (pem, vkey)
}

/// A policy needing both witnesses, written to `dir/policy`.
fn policy_for(dir: &Path, w: &[&WitnessProc]) -> std::path::PathBuf {
    let mut text = String::from("# both witnesses must cosign\n");
    for (i, w) in w.iter().enumerate() {
        text += &format!("witness w{i} {} {}\n", w.vkey, w.url);
    }
    text += "group both all w0 w1\nquorum both\n";
    let path = dir.join("policy");
    std::fs::write(&path, text).unwrap();
    path
}

use common::RealLog as Log;

/// A real log witnessed per `policy` (findings every second, a quorum missing for a
/// second is `witnessing_lag`), with the fixture system.
fn log_with(policy: &Path) -> Log {
    let (pem, _) = log_key();
    let policy = policy.to_str().unwrap().to_owned();
    let env = [
        ("VERITRAIL_SIGNING_KEY_PEM", pem.as_str()),
        ("VERITRAIL_WITNESS_POLICY", policy.as_str()),
        ("VERITRAIL_WITNESS_INTERVAL_MS", "100"),
        ("VERITRAIL_WITNESS_LAG_SECS", "1"),
        ("VERITRAIL_FINDINGS_INTERVAL_SECS", "1"),
    ];
    Log::start(&env)
}

fn get(url: &str) -> reqwest::blocking::Response {
    reqwest::blocking::get(url).unwrap()
}

fn decide(log: &Log, id: &str) -> u64 {
    common::decide_http(&log.url, &log.pipeline, id)
}

/// Wait until `f` holds (20 s at most).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn audit(log: &Log, policy: &Path) -> std::process::Output {
    let (_, vkey) = log_key();
    Command::new(common::BIN)
        .args([
            "audit",
            "--url",
            &log.url,
            "--key",
            &vkey,
            "--token",
            &log.auditor,
        ])
        .arg("--witness-policy")
        .arg(policy)
        .output()
        .unwrap()
}

/// The log's entries that are findings with `code` and `subject`: their kinds, in order.
fn finding_kinds(log: &Log, code: &str, subject: &str) -> Vec<String> {
    let page: Value = reqwest::blocking::Client::new()
        .get(format!("{}/v1/log/entries?start=0&limit=1000", log.url))
        .bearer_auth(&log.auditor)
        .send()
        .unwrap()
        .json()
        .unwrap();
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["entry"]["body"]["code"] == code && e["entry"]["body"]["subject"] == subject)
        .map(|e| e["entry"]["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn checkpoints_carry_both_cosignatures_and_the_audit_requires_them() {
    if !common::backend::sled_run("checkpoints_carry_both_cosignatures_and_the_audit_requires_them")
    {
        return;
    }
    let (_, vkey) = log_key();
    let dirs = tempfile::tempdir().unwrap();
    let w0 = start_witness(&dirs.path().join("w0"), "w0.example", free_port(), &[&vkey]);
    let w1 = start_witness(&dirs.path().join("w1"), "w1.example", free_port(), &[&vkey]);
    let policy = policy_for(dirs.path(), &[&w0, &w1]);
    let log = log_with(&policy);
    let mut last = 0;
    for i in 0..5 {
        last = decide(&log, &format!("w-{i}"));
    }

    eventually(
        "the served checkpoint covers the decisions, cosigned",
        || {
            let note = get(&format!("{}/checkpoint", log.url)).text().unwrap();
            size_of(&note) > last
                && cosigned(&note, &w0.vkey).is_some()
                && cosigned(&note, &w1.vkey).is_some()
        },
    );
    let note = get(&format!("{}/v1/log/checkpoint", log.url))
        .text()
        .unwrap();
    let now = chrono::Utc::now().timestamp() as u64;
    for w in [&w0, &w1] {
        let t = cosigned(&note, &w.vkey).expect("cosigned");
        assert!(now.abs_diff(t) < 60, "a cosignature's time is now");
    }
    // The newest signed checkpoint is there too, cosigned or not.
    let latest = get(&format!("{}/checkpoint?latest", log.url))
        .text()
        .unwrap();
    assert!(size_of(&latest) >= size_of(&note));

    let out = audit(&log, &policy);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("cosigned by w0, w1"), "{text}");

    // A bundle is proven against the cosigned checkpoint and verifies under the policy.
    let bundle = reqwest::blocking::Client::new()
        .get(format!("{}/v1/systems/crash/decisions/w-0/audit", log.url))
        .bearer_auth(&log.auditor)
        .send()
        .unwrap()
        .text()
        .unwrap();
    let b: Value = serde_json::from_str(&bundle).unwrap();
    assert!(cosigned(b["checkpoint"].as_str().unwrap(), &w1.vkey).is_some());
    let file = dirs.path().join("bundle.json");
    std::fs::write(&file, &bundle).unwrap();
    let out = Command::new(common::BIN)
        .args(["verify-bundle", "--key", &vkey, "--witness-policy"])
        .arg(&policy)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn two_witnesses_left_at_one_default_name_are_told_apart_by_key() {
    if !common::backend::sled_run("two_witnesses_left_at_one_default_name_are_told_apart_by_key") {
        return;
    }
    let (_, vkey) = log_key();
    let dirs = tempfile::tempdir().unwrap();
    let name = "veritrail-witness";
    let w0 = start_witness(&dirs.path().join("w0"), name, free_port(), &[&vkey]);
    let w1 = start_witness(&dirs.path().join("w1"), name, free_port(), &[&vkey]);
    assert_ne!(w0.vkey, w1.vkey, "two keys under one name");
    let policy = policy_for(dirs.path(), &[&w0, &w1]);
    let log = log_with(&policy);
    let last = decide(&log, "same-name");

    eventually("the quorum of both is met and served", || {
        let note = get(&format!("{}/checkpoint", log.url)).text().unwrap();
        size_of(&note) > last
            && cosigned(&note, &w0.vkey).is_some()
            && cosigned(&note, &w1.vkey).is_some()
    });
    let out = audit(&log, &policy);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("cosigned by w0, w1"), "{text}");
}

#[test]
fn with_a_witness_down_the_quorum_is_missed_and_the_lag_finding_opens_then_clears() {
    if !common::backend::sled_run(
        "with_a_witness_down_the_quorum_is_missed_and_the_lag_finding_opens_then_clears",
    ) {
        return;
    }
    let (_, vkey) = log_key();
    let dirs = tempfile::tempdir().unwrap();
    let w0 = start_witness(&dirs.path().join("w0"), "w0.example", free_port(), &[&vkey]);
    let port1 = free_port();
    let w1 = start_witness(&dirs.path().join("w1"), "w1.example", port1, &[&vkey]);
    let policy = policy_for(dirs.path(), &[&w0, &w1]);
    let log = log_with(&policy);
    let first = decide(&log, "d-0");
    eventually("a cosigned checkpoint", || {
        let note = get(&format!("{}/checkpoint", log.url)).text().unwrap();
        size_of(&note) > first && cosigned(&note, &w1.vkey).is_some()
    });

    drop(w1); // killed
    let later = decide(&log, "d-1");
    eventually("witnessing_lag opens for the witness that is down", || {
        finding_kinds(&log, "witnessing_lag", "w1") == ["finding.opened"]
    });
    // The served checkpoint stayed where the quorum was last met; the newest is beyond.
    let served = get(&format!("{}/checkpoint", log.url)).text().unwrap();
    assert!(
        size_of(&served) <= later,
        "a checkpoint only one witness saw was served: {served} (d-1 at {later})"
    );
    assert!(cosigned(&served, &w0.vkey).is_some());
    assert!(
        size_of(
            &get(&format!("{}/checkpoint?latest", log.url))
                .text()
                .unwrap()
        ) > later
    );
    let out = audit(&log, &policy);
    assert!(out.status.success(), "the cosigned checkpoint still audits");
    // The witness that is up is not blamed.
    assert!(finding_kinds(&log, "witnessing_lag", "w0").is_empty());
    // The metrics say how long the quorum has been missing.
    let metrics = reqwest::blocking::Client::new()
        .get(format!("{}/metrics", log.url))
        .bearer_auth(&log.auditor)
        .send()
        .unwrap()
        .text()
        .unwrap();
    let lag: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("veritrail_witness_quorum_lag_seconds "))
        .expect("the quorum lag metric")
        .parse()
        .unwrap();
    assert!(lag >= 1.0, "{metrics}");
    assert!(metrics.contains("veritrail_witness_cosigned_size{witness=\"w1\"}"));

    let w1 = start_witness(&dirs.path().join("w1"), "w1.example", port1, &[&vkey]);
    eventually("the quorum is met again and the finding clears", || {
        finding_kinds(&log, "witnessing_lag", "w1") == ["finding.opened", "finding.resolved"]
    });
    let note = get(&format!("{}/checkpoint", log.url)).text().unwrap();
    assert!(size_of(&note) > later);
    assert!(cosigned(&note, &w0.vkey).is_some() && cosigned(&note, &w1.vkey).is_some());
}

#[test]
fn a_forked_log_gets_no_cosignature_and_an_auditor_requiring_the_quorum_refuses_it() {
    if !common::backend::sled_run(
        "a_forked_log_gets_no_cosignature_and_an_auditor_requiring_the_quorum_refuses_it",
    ) {
        return;
    }
    let (_, vkey) = log_key();
    let dirs = tempfile::tempdir().unwrap();
    let w0 = start_witness(&dirs.path().join("w0"), "w0.example", free_port(), &[&vkey]);
    let w1 = start_witness(&dirs.path().join("w1"), "w1.example", free_port(), &[&vkey]);
    let policy = policy_for(dirs.path(), &[&w0, &w1]);
    let honest = log_with(&policy);
    let mut last = 0;
    for i in 0..3 {
        last = decide(&honest, &format!("h-{i}"));
    }
    let cosigned_past = |log: &Log, index: u64| {
        let note = get(&format!("{}/checkpoint", log.url)).text().unwrap();
        size_of(&note) > index
            && cosigned(&note, &w0.vkey).is_some()
            && cosigned(&note, &w1.vkey).is_some()
    };
    eventually("the honest log is cosigned", || {
        cosigned_past(&honest, last)
    });

    // The same key and origin, another history: a split view.
    let fork = log_with(&policy);
    for i in 0..40 {
        decide(&fork, &format!("f-{i}"));
    }
    std::thread::sleep(Duration::from_secs(2));
    let r = get(&format!("{}/checkpoint", fork.url));
    assert_eq!(
        r.headers()
            .get("veritrail-quorum")
            .map(|v| v.to_str().unwrap()),
        Some("unmet")
    );
    let note = r.text().unwrap();
    assert!(cosigned(&note, &w0.vkey).is_none() && cosigned(&note, &w1.vkey).is_none());
    // The fork's checkpoint verifies with the log's key: only the quorum tells it apart.
    let out = audit(&fork, &policy);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not meet the witness quorum"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And the honest log goes on being cosigned.
    let more = decide(&honest, "h-more");
    eventually("the honest log is cosigned past the fork", || {
        cosigned_past(&honest, more)
    });
}

/// `old <size>`, the proof lines, a blank line and the checkpoint note.
fn add_checkpoint_body(old: u64, proof: &[String], note: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    let mut body = format!("old {old}\n");
    for h in proof {
        body += &b64.encode(hex::decode(h).unwrap());
        body.push('\n');
    }
    body + "\n" + note
}

/// Checkpoints of a log (no witnesses) at growing sizes: (size, note), one per decision.
fn checkpoints(log: &Log, prefix: &str, n: usize) -> Vec<(u64, String)> {
    (0..n)
        .map(|i| {
            let r = common::post_json(
                &log.url,
                &log.pipeline,
                "/v1/systems/crash/decisions",
                common::decision(&format!("{prefix}-{i}"), "1", "s-1"),
            );
            let note = r["receipt"]["checkpoint"].as_str().unwrap().to_owned();
            (size_of(&note), note)
        })
        .collect()
}

fn consistency(log: &Log, from: u64, to: u64) -> Vec<String> {
    let v: Value = reqwest::blocking::Client::new()
        .get(format!(
            "{}/v1/log/proofs/consistency?from={from}&to={to}",
            log.url
        ))
        .bearer_auth(&log.auditor)
        .send()
        .unwrap()
        .json()
        .unwrap();
    v["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_owned())
        .collect()
}

/// The size the witness holds for the log, as it answers `old 0` with the log's first
/// checkpoint: 409 and its size, or (holding nothing) a cosignature of that checkpoint.
fn witness_size(w: &str, client: &reqwest::blocking::Client, first: &str) -> u64 {
    let r = client
        .post(format!("{w}/add-checkpoint"))
        .body(add_checkpoint_body(0, &[], first))
        .send()
        .unwrap();
    match r.status().as_u16() {
        409 => r.text().unwrap().trim().parse().unwrap(),
        200 => size_of(first),
        s => panic!("expected 409 or 200, got {s}"),
    }
}

#[test]
fn a_witness_killed_mid_request_never_cosigns_an_inconsistent_checkpoint_after_restart() {
    if !common::backend::sled_run(
        "a_witness_killed_mid_request_never_cosigns_an_inconsistent_checkpoint_after_restart",
    ) {
        return;
    }
    let (_, vkey) = log_key();
    let dirs = tempfile::tempdir().unwrap();
    let no_witnesses = dirs.path().join("none");
    std::fs::write(&no_witnesses, "quorum none\n").unwrap();
    let honest = log_with(&no_witnesses);
    let fork = log_with(&no_witnesses);
    let good = checkpoints(&honest, "h", 40);
    let forked = checkpoints(&fork, "f", 60);
    let first = good[0].1.clone();
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let (port, dir) = (free_port(), dirs.path().join("w"));
    let mut cosigned_up_to = 0u64;
    let mut next = 0usize;
    for round in 0..8 {
        let mut w = start_witness(&dir, "w.example", port, &[&vkey]);
        // After the restart the witness holds at least what it last cosigned.
        let held = witness_size(&w.url, &client, &first);
        assert!(
            held >= cosigned_up_to,
            "round {round}: rolled back from {cosigned_up_to} to {held}"
        );
        cosigned_up_to = held;
        // A checkpoint of the fork, proven from the size it holds, is refused.
        if let Some((size, note)) = forked.iter().find(|(s, _)| *s > held) {
            let proof = consistency(&fork, held, *size);
            let r = client
                .post(format!("{}/add-checkpoint", w.url))
                .body(add_checkpoint_body(held, &proof, note))
                .send()
                .unwrap();
            assert_eq!(
                r.status().as_u16(),
                422,
                "round {round}: the fork was not refused"
            );
        }
        // Feed it the honest log's checkpoints from the size it holds, and kill it at a
        // moment the test does not choose.
        let mut old = held;
        let kill_after = Duration::from_millis(20 + 37 * round as u64 % 120);
        let started = Instant::now();
        while next < good.len() && started.elapsed() < kill_after {
            let (size, note) = &good[next];
            if *size <= old {
                next += 1;
                continue;
            }
            let proof = if old == 0 {
                Vec::new()
            } else {
                consistency(&honest, old, *size)
            };
            match client
                .post(format!("{}/add-checkpoint", w.url))
                .body(add_checkpoint_body(old, &proof, note))
                .send()
            {
                Ok(r) if r.status().is_success() => {
                    assert!(cosigned(&(note.clone() + &r.text().unwrap()), &w.vkey).is_some());
                    cosigned_up_to = *size;
                    old = *size;
                    next += 1;
                }
                Ok(r) => panic!("round {round}: {} for a consistent checkpoint", r.status()),
                Err(_) => break,
            }
        }
        w.child.kill().unwrap(); // SIGKILL
        w.child.wait().unwrap();
    }
    assert!(cosigned_up_to > 0, "nothing was cosigned");
}
