//! Personal values stay where erasure reaches them: the inputs' digest is committed
//! like the inputs (decisions written before keep reading and verifying), no log line
//! at any level holds a subject reference, inputs or their digest, and the data dir is
//! its owner's alone.

mod common;

use serde_json::{json, Value};

const SUBJECT: &str = "subj-PRIVACY-7741";
const DIGEST: &str = "7f3c9a1e5b2d4c6f8a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f";

fn decision_with_digest(id: &str) -> Value {
    let mut d = common::decision(id, "1.0.0", SUBJECT);
    d["input_sha256"] = json!(DIGEST);
    d
}

/// The pipeline logs decision "p-1" (with [`DIGEST`]) to "credit": its entry index.
async fn log_p1<S: common::AppService<B>, B: actix_web::body::MessageBody>(
    app: &common::TestApp<S>,
    c: &common::Crew,
) -> u64 {
    let r = app
        .post(
            "/v1/systems/credit/decisions",
            &c.pipeline,
            decision_with_digest("p-1"),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["receipt"]["index"].as_u64().unwrap()
}

/// Does `value` with `salt` (hex) open `commitment` (hex)?
fn opens(commitment: &Value, value: &Value, salt: &Value) -> bool {
    let salt: [u8; 32] = hex::decode(salt.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let c = veritrail::register::projections::vault::commit(&salt, value).unwrap();
    hex::encode(c) == commitment.as_str().unwrap()
}

#[actix_web::test]
async fn the_inputs_digest_enters_the_entry_only_as_a_commitment() {
    let app = common::spawn().await;
    let c = common::crew(&app).await;
    common::deployed_system(&app, &c, "credit", "1.0.0").await;
    let index = log_p1(&app, &c).await;
    let raw = app.state.ledger.entry(index).unwrap().unwrap();
    let digest = hex::decode(DIGEST).unwrap();
    assert!(
        !raw.windows(32).any(|w| w == digest.as_slice()),
        "the digest's bytes are in the entry"
    );
    assert!(!String::from_utf8_lossy(&raw).contains(DIGEST));
    // Readers with the right see it opened, checkable against the commitment.
    let v = app
        .get("/v1/systems/credit/decisions/p-1", Some(&c.auditor))
        .await
        .json();
    let d = &v["input_sha256"];
    assert_eq!(d["value"], DIGEST);
    assert!(opens(&d["commitment"], &d["value"], &d["salt"]));
    let entry = app
        .get(&format!("/v1/log/entries/{index}"), Some(&c.auditor))
        .await
        .json();
    assert_eq!(
        entry["entry"]["body"]["input_sha256_commitment"],
        d["commitment"]
    );
    assert!(entry["entry"]["body"].get("input_sha256").is_none());
}

#[actix_web::test]
async fn erasure_shreds_the_inputs_digest() {
    let app = common::spawn().await;
    let c = common::crew(&app).await;
    common::deployed_system(&app, &c, "credit", "1.0.0").await;
    log_p1(&app, &c).await;
    let r = app
        .post(
            &format!("/v1/subjects/{SUBJECT}/erasure"),
            &c.officer,
            json!({"reason": "GDPR Art. 17"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = app
        .get("/v1/systems/credit/decisions/p-1", Some(&c.auditor))
        .await
        .json();
    assert_eq!(v["input_sha256"]["erased"], true);
    assert!(v["input_sha256"]["value"].is_null());
    assert!(
        app.backend.holding(DIGEST.as_bytes()).is_empty(),
        "the digest's text is still on disk"
    );
}

#[actix_web::test]
async fn bundles_open_the_inputs_digest_and_verify() {
    let app = common::spawn().await;
    let c = common::crew(&app).await;
    common::deployed_system(&app, &c, "credit", "1.0.0").await;
    log_p1(&app, &c).await;
    let bundle = app
        .get("/v1/systems/credit/decisions/p-1/audit", Some(&c.auditor))
        .await
        .json();
    assert_eq!(bundle["openings"]["input_sha256"]["value"], DIGEST);
    assert_eq!(bundle["summary"]["input_sha256"], "opened");
    let b: veritrail::audit::Bundle = serde_json::from_value(bundle).unwrap();
    let report = veritrail::audit::verify(&b, app.state.ledger.verifier());
    assert!(report.ok(), "{:?}", report.failures());
    assert!(report
        .checks
        .iter()
        .any(|(name, r)| name == "input_sha256 opens its commitment" && r.is_ok()));
}

/// Write a decision as the service did before the digest was committed: the digest in
/// the clear in the entry, no opening of it in the vault.
async fn legacy_decision<S>(app: &common::TestApp<S>, id: &str, subject: &str) -> u64 {
    use veritrail::register::projections::activity::OversightAction;
    use veritrail::register::projections::decisions::DecisionBody;
    use veritrail::register::projections::decisions::HumanReview;
    use veritrail::register::projections::vault::commit;
    use veritrail::register::projections::vault::DecisionVault;
    use veritrail::register::projections::vault::Opening;
    let (subject_salt, inputs_salt) = ([1u8; 32], [2u8; 32]);
    let subject_json = json!(subject);
    let inputs = json!({"income": 52000, "age_band": "30-39"});
    let occurred_at = chrono::DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
        .unwrap()
        .timestamp_micros() as u64;
    let body = DecisionBody {
        decision_id: id.to_owned(),
        model_version: "1.0.0".into(),
        occurred_at,
        subject: commit(&subject_salt, &subject_json).unwrap().to_vec(),
        input_sha256: Some(serde_bytes::ByteBuf::from(hex::decode(DIGEST).unwrap())),
        input_sha256_commitment: None,
        inputs: Some(serde_bytes::ByteBuf::from(
            commit(&inputs_salt, &inputs).unwrap().to_vec(),
        )),
        output: r#"{"approved":false,"score":0.41}"#.into(),
        confidence: Some(veritrail::evaluators::decimal(0.87)),
        reasons: vec!["debt_ratio_high".into()],
        human_review: Some(HumanReview {
            reviewer: "analyst-7".into(),
            action: OversightAction::Accepted,
            review_ms: 45000,
        }),
        proxy: None,
        exploration: None,
        counterfactual_output: None,
        equivalence_key: None,
        validation: None,
        integration: None,
        blind_review: None,
    };
    let row = DecisionVault {
        system: "credit".into(),
        subject: Opening::new(subject_salt, &subject_json).unwrap(),
        inputs: Some(Opening::new(inputs_salt, &inputs).unwrap()),
        expires_at: u64::MAX / 2,
        occurred_at,
        input_sha256: None,
    };
    let subject = subject.to_owned();
    let cmd: veritrail::log::Command<veritrail::error::AppError> = Box::new(move |s| {
        let index = s.index();
        s.vault_put(
            veritrail::register::projections::keys::decision_key(index),
            serde_cbor::ser::to_vec_packed(&row).unwrap(),
        );
        s.vault_put(
            veritrail::register::projections::keys::subject_key(&subject, occurred_at, index),
            serde_cbor::ser::to_vec_packed(
                &veritrail::register::projections::decisions::SubjectRow {
                    system: "credit".into(),
                },
            )
            .unwrap(),
        );
        Ok(veritrail::log::Prepared::Append(
            veritrail::log::Drafts::one(veritrail::log::Draft {
                kind: "decision.recorded".into(),
                system: Some("credit".into()),
                // Through the bytes, as the service builds bodies (value::to_value drops
                // the decimal's tag).
                body: serde_cbor::from_slice(&serde_cbor::to_vec(&body).unwrap()).unwrap(),
            }),
        ))
    });
    app.state
        .ledger
        .append("deploy-bot", cmd)
        .await
        .unwrap()
        .index
}

#[actix_web::test]
async fn decisions_written_before_the_digest_was_committed_keep_reading_and_verifying() {
    let app = common::spawn().await;
    let c = common::crew(&app).await;
    common::deployed_system(&app, &c, "credit", "1.0.0").await;
    let index = legacy_decision(&app, "old-1", SUBJECT).await;
    let v = app
        .get("/v1/systems/credit/decisions/old-1", Some(&c.auditor))
        .await
        .json();
    assert!(v["input_sha256"].is_null(), "{v}");
    assert_eq!(v["input_sha256_uncommitted"], DIGEST);
    assert_eq!(v["subject_ref"]["value"], SUBJECT);
    let bundle = app
        .get("/v1/systems/credit/decisions/old-1/audit", Some(&c.auditor))
        .await
        .json();
    assert_eq!(bundle["summary"]["input_sha256"], "uncommitted");
    let b: veritrail::audit::Bundle = serde_json::from_value(bundle).unwrap();
    let report = veritrail::audit::verify(&b, app.state.ledger.verifier());
    assert!(report.ok(), "{:?}", report.failures());
    // Sent again as it was, it is the same decision: the original receipt.
    let mut again = decision_with_digest("old-1");
    again["subject_ref"] = json!(SUBJECT);
    let r = app
        .post("/v1/systems/credit/decisions", &c.pipeline, again)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["receipt"]["index"], index);
}

#[test]
fn no_log_line_holds_a_personal_value() {
    let backend = common::Backend::new();
    let (mut child, url, log) = common::start_server_logging(&backend, &[("RUST_LOG", "trace")]);
    let admin = std::fs::read_to_string(backend.path().join("admin-token")).unwrap();
    let (pipeline, auditor) = common::setup_system_http(&url, admin.trim());
    let officer = common::post_json(
        &url,
        admin.trim(),
        "/v1/tokens",
        json!({"name": "privacy-officer", "role": "officer"}),
    )["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut d = common::decision("p-1", "1", SUBJECT);
    d["input_sha256"] = json!(DIGEST);
    d["inputs"] = json!({"name_on_file": "Zyxwvut Quorn"});
    common::post_json(&url, &pipeline, "/v1/systems/crash/decisions", d);
    let client = reqwest::blocking::Client::new();
    for path in [
        format!("/v1/subjects/{SUBJECT}/decisions"),
        "/v1/systems/crash/decisions/p-1".to_owned(),
        format!("/v1/systems/crash/decisions?subject={SUBJECT}"),
        format!("/v1/subjects/{SUBJECT}/nothing"),
    ] {
        client
            .get(format!("{url}{path}"))
            .bearer_auth(&auditor)
            .send()
            .unwrap();
    }
    let r = client
        .post(format!("{url}/v1/subjects/{SUBJECT}/erasure"))
        .bearer_auth(&officer)
        .json(&json!({"reason": "GDPR Art. 17"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    common::stop_server(&mut child);
    let lines = log.lock().unwrap();
    assert!(
        lines.iter().any(|l| l.contains("request")),
        "the server logged no requests at trace level: {lines:?}"
    );
    for needle in [SUBJECT, DIGEST, "Zyxwvut"] {
        let hits: Vec<&String> = lines.iter().filter(|l| l.contains(needle)).collect();
        assert!(hits.is_empty(), "{needle} in the log: {hits:?}");
    }
}

#[test]
fn the_data_dir_and_what_the_server_creates_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let backend = common::Backend::new();
    std::fs::set_permissions(backend.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (mut child, url) = common::start_server(&backend, &[]);
    let admin = std::fs::read_to_string(backend.path().join("admin-token")).unwrap();
    // Something written, so the stores have created their files.
    common::setup_system_http(&url, admin.trim());
    common::stop_server(&mut child);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(backend.path()), 0o700, "the data dir");
    let mut dirs = vec![backend.path().to_path_buf()];
    let mut files = 0;
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                assert_eq!(mode(&p), 0o700, "{}", p.display());
                dirs.push(p);
            } else {
                assert_eq!(mode(&p), 0o600, "{}", p.display());
                files += 1;
            }
        }
    }
    assert!(files >= 2, "the key and the admin token at least");
}
