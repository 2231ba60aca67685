//! The auditor's monitor and offline tools against the real binary: a live server
//! audited across runs, then a server whose storage was tampered with, a forked state
//! and a wrong key — each an alert with a non-zero exit.

use std::process::{Child, Command};

mod common;

use common::BIN;

fn start(backend: &common::Backend) -> (Child, String) {
    common::start_server(backend, &[])
}

fn audit(url: &str, key: &str, token: &str, state: &std::path::Path) -> (i32, String) {
    let out = Command::new(BIN)
        .args([
            "audit", "--url", url, "--key", key, "--token", token, "--state",
        ])
        .arg(state)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn monitor_follows_a_live_log_and_alerts_on_tampering() {
    let backend = common::Backend::new();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("audit-state.json");
    let (mut child, url) = start(&backend);
    let admin = std::fs::read_to_string(backend.path().join("admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    let key: serde_json::Value = reqwest::blocking::get(format!("{url}/v1/log/key"))
        .unwrap()
        .json()
        .unwrap();
    let key = key["verifier_key"].as_str().unwrap().to_owned();
    let auditor = common::post_json(
        &url,
        &admin,
        "/v1/tokens",
        serde_json::json!({"name": "auditor", "role": "auditor"}),
    )["token"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 0..30 {
        common::post_json(
            &url,
            &admin,
            "/v1/tokens",
            serde_json::json!({"name": format!("t{i}"), "role": "pipeline"}),
        );
    }
    let (code, out) = audit(&url, &key, &auditor, &state);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("OK: 32 entries"), "{out}");
    for i in 30..40 {
        common::post_json(
            &url,
            &admin,
            "/v1/tokens",
            serde_json::json!({"name": format!("t{i}"), "role": "pipeline"}),
        );
    }
    let (code, out) = audit(&url, &key, &auditor, &state);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("10 new since 32"), "{out}");

    // A wrong key: bad signature.
    let other = veritrail::log::note::NoteSigner::new(
        "localhost/veritrail",
        ed25519_dalek::SigningKey::from_bytes(&[3; 32]),
    )
    .unwrap()
    .verifier()
    .to_string();
    let (code, out) = audit(&url, &other, &auditor, &work.path().join("x.json"));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("ALERT") && out.contains("signature"), "{out}");

    // A state that remembers a different root for a smaller tree: a fork.
    let mut forged: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    forged["size"] = serde_json::json!(20);
    forged["root"] = serde_json::json!("11".repeat(32));
    let forged_path = work.path().join("forged.json");
    std::fs::write(&forged_path, forged.to_string()).unwrap();
    let (code, out) = audit(&url, &key, &auditor, &forged_path);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("ALERT: fork"), "{out}");
    common::stop_server(&mut child);

    // Tamper with an early entry on disk (the server still starts: recovery checks the tail).
    backend.tamper_entries(|e| {
        let n = e[5].len();
        e[5][n - 3] ^= 0x01; // inside the entry's body
    });
    let (mut child, url) = start(&backend);
    let (code, out) = audit(&url, &key, &auditor, &work.path().join("fresh.json"));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("ALERT: rewrite"), "{out}");
    // A monitor that already checked entry 5 while it was intact has nothing new to
    // download; the consistency of the signed checkpoints still holds, so it passes.
    // The rewrite is caught by any monitor that reads the entry again, as above.
    let (code, out) = audit(&url, &key, &auditor, &state);
    assert_eq!(code, 0, "{out}");
    common::stop_server(&mut child);
    // And the offline verify names the entry.
    let out = Command::new(BIN)
        .arg("verify")
        .args(backend.args())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("at index 5"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
