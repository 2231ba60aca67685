//! Audit trail on demand: decision trails, subject access, audit bundles verified
//! offline, compliance findings, and log exports.

mod common;

use serde_json::{json, Value};
use veritrail::audit::{self, Bundle};

struct World<S> {
    app: common::TestApp<S>,
    pipeline: String,
    officer: String,
    officer2: String,
    auditor: String,
}

async fn world() -> World<
    impl actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
    >,
> {
    let app = common::spawn().await;
    let pipeline = app.token("deploy-bot", "pipeline").await;
    let officer = app.token("officer-ana", "officer").await;
    let officer2 = app.token("officer-ben", "officer").await;
    let auditor = app.token("auditor-eve", "auditor").await;
    World {
        app,
        pipeline,
        officer,
        officer2,
        auditor,
    }
}

fn decision_at(id: &str, v: &str, subject: &str, minute: u32, approved: bool) -> Value {
    let mut d = common::decision(id, v, subject);
    d["occurred_at"] = json!(format!("2026-11-25T10:{minute:02}:00Z"));
    d["output"] = json!({"approved": approved});
    d
}

#[actix_web::test]
async fn trails_subject_access_bundles_and_exports() {
    let w = world().await;
    let app = &w.app;
    let v = app.state.ledger.verifier().clone();
    for sys in ["credit", "loans"] {
        assert_eq!(
            app.post("/v1/systems", &w.officer, common::system(sys))
                .await
                .status,
            201
        );
        assert_eq!(
            app.post(
                &format!("/v1/systems/{sys}/models"),
                &w.pipeline,
                common::version("1", None)
            )
            .await
            .status,
            201
        );
        let t = app
            .post(
                &format!("/v1/systems/{sys}/models/1/tests"),
                &w.pipeline,
                common::external_test(true),
            )
            .await
            .json()["id"]
            .clone();
        let r = app
            .post(
                &format!("/v1/systems/{sys}/models/1/reviews"),
                &w.officer,
                json!({"outcome": "approved", "rationale": "ok", "evidence": [t]}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(
            app.post(
                &format!("/v1/systems/{sys}/models/1/deployments"),
                &w.pipeline,
                json!({})
            )
            .await
            .status,
            201
        );
    }
    // 40 decisions on credit (v1), over 40 minutes, alternating outcome; subject s-3 also on loans.
    for i in 0..40u32 {
        let r = app
            .post(
                "/v1/systems/credit/decisions",
                &w.pipeline,
                decision_at(
                    &format!("c-{i}"),
                    "1",
                    &format!("s-{}", i % 5),
                    i,
                    i % 2 == 0,
                ),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
    }
    assert_eq!(
        app.post(
            "/v1/systems/loans/decisions",
            &w.pipeline,
            decision_at("l-1", "1", "s-3", 50, true)
        )
        .await
        .status,
        201
    );
    // The register is revised after the decisions: bundles must name the earlier revision.
    let mut rev = common::system("credit");
    rev["purpose"] = json!("changed later");
    assert_eq!(
        app.put("/v1/systems/credit", &w.officer, rev).await.status,
        200
    );
    // v2 supersedes v1.
    assert_eq!(
        app.post(
            "/v1/systems/credit/models",
            &w.pipeline,
            common::version("2", Some("1"))
        )
        .await
        .status,
        201
    );
    assert_eq!(
        app.post(
            "/v1/systems/credit/models/2/tests",
            &w.pipeline,
            common::external_test(true)
        )
        .await
        .status,
        201
    );
    assert_eq!(
        app.post(
            "/v1/systems/credit/models/2/reviews",
            &w.officer2,
            json!({"outcome": "approved", "rationale": "ok"})
        )
        .await
        .status,
        201
    );
    assert_eq!(
        app.post(
            "/v1/systems/credit/models/2/deployments",
            &w.pipeline,
            json!({})
        )
        .await
        .status,
        201
    );
    assert_eq!(
        app.post(
            "/v1/systems/credit/decisions",
            &w.pipeline,
            decision_at("c-99", "2", "s-1", 59, true)
        )
        .await
        .status,
        201
    );

    // Trails: pages with cursors cover everything once, newest first by default.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("/v1/systems/credit/decisions?limit=7&cursor={c}"),
            None => "/v1/systems/credit/decisions?limit=7".into(),
        };
        let page = app.get(&q, Some(&w.auditor)).await.json();
        for d in page["decisions"].as_array().unwrap() {
            seen.push(d["decision_id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 41);
    assert_eq!(seen[0], "c-99");
    assert_eq!(seen[40], "c-0");
    let ids = |v: &Value| {
        v["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["decision_id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let r = app
        .get(
            "/v1/systems/credit/decisions?model_version=2",
            Some(&w.auditor),
        )
        .await
        .json();
    assert_eq!(ids(&r), ["c-99"]);
    let r = app
        .get(
            "/v1/systems/credit/decisions?subject=s-3&order=oldest",
            Some(&w.officer),
        )
        .await
        .json();
    assert_eq!(
        ids(&r),
        ["c-3", "c-8", "c-13", "c-18", "c-23", "c-28", "c-33", "c-38"]
    );
    // The subject's own index drives these pages (its rows in other systems skipped):
    // newest first with cursors, and within a time range.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("/v1/systems/credit/decisions?subject=s-3&limit=3&cursor={c}"),
            None => "/v1/systems/credit/decisions?subject=s-3&limit=3".into(),
        };
        let page = app.get(&q, Some(&w.officer)).await.json();
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        seen,
        ["c-38", "c-33", "c-28", "c-23", "c-18", "c-13", "c-8", "c-3"]
    );
    let r = app.get("/v1/systems/credit/decisions?subject=s-3&from=2026-11-25T10:10:00Z&to=2026-11-25T10:28:00Z&order=oldest", Some(&w.officer)).await.json();
    assert_eq!(ids(&r), ["c-13", "c-18", "c-23", "c-28"]);
    let r = app.get("/v1/systems/credit/decisions?subject=s-3&from=2026-11-25T10:10:00Z&to=2026-11-25T10:28:00Z", Some(&w.officer)).await.json();
    assert_eq!(ids(&r), ["c-28", "c-23", "c-18", "c-13"]);
    let r = app.get("/v1/systems/credit/decisions?from=2026-11-25T10:10:00Z&to=2026-11-25T10:12:00Z&order=oldest", Some(&w.auditor)).await.json();
    assert_eq!(ids(&r), ["c-10", "c-11", "c-12"]);
    let r = app.get("/v1/systems/credit/decisions?outcome=%7B%22approved%22%3Afalse%7D&model_version=1&limit=1000", Some(&w.auditor)).await.json();
    assert_eq!(r["decisions"].as_array().unwrap().len(), 20);
    assert_eq!(
        app.get("/v1/systems/credit/decisions", Some(&w.pipeline))
            .await
            .status,
        403
    );
    let r = app
        .get("/v1/systems/credit/decisions?cursor=zzz", Some(&w.auditor))
        .await;
    assert_eq!(
        (r.status, r.json()["field"].as_str()),
        (400, Some("cursor"))
    );
    // Subject access across systems (GDPR Art. 15).
    let r = app
        .get("/v1/subjects/s-3/decisions", Some(&w.officer))
        .await
        .json();
    let systems: Vec<&str> = r["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["system_id"].as_str().unwrap())
        .collect();
    assert_eq!(systems.len(), 9);
    assert!(systems.contains(&"loans") && systems.contains(&"credit"));
    assert_eq!(r["decisions"][0]["subject_ref"]["value"], "s-3");
    assert_eq!(r["decisions"][0]["human_review"]["action"], "accepted");
    let r = app
        .get("/v1/subjects/s-3/decisions?limit=4", Some(&w.officer))
        .await
        .json();
    let c = r["next_cursor"].as_str().unwrap().to_owned();
    let r2 = app
        .get(
            &format!("/v1/subjects/s-3/decisions?cursor={c}"),
            Some(&w.officer),
        )
        .await
        .json();
    assert_eq!(r2["decisions"].as_array().unwrap().len(), 5);

    // The audit bundle of a v1 decision: verifies offline with the key alone.
    let b: Bundle = serde_json::from_value(
        app.get("/v1/systems/credit/decisions/c-7/audit", Some(&w.auditor))
            .await
            .json(),
    )
    .unwrap();
    let report = audit::verify(&b, &v);
    assert!(report.ok(), "{:?}", report.failures());
    let roles: Vec<&str> = b.entries.iter().map(|e| e.role.as_str()).collect();
    for r in [
        "decision",
        "model_version",
        "review",
        "test",
        "deployment",
        "retirement",
        "register_revision",
        "next_register_revision",
    ] {
        assert!(roles.contains(&r), "bundle lacks {r}: {roles:?}");
    }
    assert_eq!(b.summary.register_revision, 1);
    assert_eq!(b.summary.approved_by, "officer-ana");
    assert_eq!(b.openings.subject_ref.as_ref().unwrap().value, json!("s-2"));
    // Tampering is named.
    let fails = |b: &Bundle| audit::verify(b, &v).failures().join("; ");
    let mut t = b.clone();
    t.summary.approved_by = "someone-else".into();
    assert!(
        fails(&t).contains("summary names the approval"),
        "{}",
        fails(&t)
    );
    let mut t = b.clone();
    t.openings.subject_ref.as_mut().unwrap().value = json!("s-4");
    assert!(fails(&t).contains("subject_ref opens its commitment"));
    let mut t = b.clone();
    let i = t.entries.iter().position(|e| e.role == "test").unwrap();
    t.entries.remove(i);
    assert!(fails(&t).contains("is in the bundle"), "{}", fails(&t));
    let mut t = b.clone();
    let e = t.entries.iter_mut().find(|e| e.role == "review").unwrap();
    e.inclusion_proof[0] = "00".repeat(32);
    assert!(fails(&t).contains("inclusion proof"), "{}", fails(&t));
    let mut t = b.clone();
    t.checkpoint = t.checkpoint.replacen('\n', "\n1", 1);
    assert!(fails(&t).contains("checkpoint signature"));
    let other = veritrail::log::note::NoteSigner::new(
        "localhost/veritrail",
        ed25519_dalek::SigningKey::from_bytes(&[9; 32]),
    )
    .unwrap()
    .verifier();
    assert!(
        !audit::verify(&b, &other).ok(),
        "another key must not verify it"
    );
    // The command-line check, with nothing but the key.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec(&b).unwrap()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_veritrail"))
        .arg("verify-bundle")
        .arg(file.path())
        .args(["--key", &v.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("VERIFIED"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let mut t = b.clone();
    t.summary.model_version = "9".into();
    std::fs::write(file.path(), serde_json::to_vec(&t).unwrap()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_veritrail"))
        .arg("verify-bundle")
        .arg(file.path())
        .args(["--key", &v.to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("FAIL  decision is what the summary says"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // A bundle with an erased subject still verifies, the field shown as erased.
    let mut t = b.clone();
    t.openings.subject_ref = None;
    t.summary.subject_ref = "erased".into();
    assert!(
        audit::verify(&t, &v).ok(),
        "{:?}",
        audit::verify(&t, &v).failures()
    );

    // Export: the whole log and a range, checked offline; a flipped byte is caught.
    for q in ["/v1/log/export", "/v1/log/export?start=17"] {
        let r = app.get(q, Some(&w.auditor)).await;
        assert_eq!(r.status, 200);
        let rep =
            veritrail::log::export::verify(&r.body[..], &v).unwrap_or_else(|e| panic!("{q}: {e}"));
        assert_eq!(rep.end, app.state.ledger.latest().size);
        let mut bad = r.body.clone();
        let n = bad.len();
        bad[n - 10] ^= 1;
        assert!(veritrail::log::export::verify(&bad[..], &v).is_err());
    }
}

#[actix_web::test]
async fn compliance_findings() {
    let w = world().await;
    let app = &w.app;
    let mut sys = common::system("credit");
    sys["policy"] = json!({"required_tests": [], "max_bias_test_age_days": 30, "max_drift_test_age_days": 7, "max_decision_gap_hours": 24});
    assert_eq!(app.post("/v1/systems", &w.officer, sys).await.status, 201);
    let r = app
        .get("/v1/systems/credit/compliance", Some(&w.auditor))
        .await
        .json();
    assert_eq!(r["status"], "compliant", "{r}");
    // A substantial modification approved without a conformity assessment, and deployed.
    let mut v1 = common::version("1", None);
    v1["substantial_modification"] = json!(true);
    assert_eq!(
        app.post("/v1/systems/credit/models", &w.pipeline, v1)
            .await
            .status,
        201
    );
    assert_eq!(
        app.post(
            "/v1/systems/credit/models/1/reviews",
            &w.officer,
            json!({"outcome": "approved", "rationale": "ok"})
        )
        .await
        .status,
        201
    );
    assert_eq!(
        app.post(
            "/v1/systems/credit/models/1/deployments",
            &w.pipeline,
            json!({})
        )
        .await
        .status,
        201
    );
    // A failing drift test on the deployed version; a version awaiting review.
    let drift = json!({"evaluator": "ks", "input": {"baseline": (0..200).map(|i| i as f64).collect::<Vec<_>>(), "current": (0..200).map(|i| i as f64 + 80.0).collect::<Vec<_>>()}});
    let r = app
        .post("/v1/systems/credit/models/1/tests", &w.pipeline, drift)
        .await;
    assert_eq!(
        (r.status, r.json()["passed"].as_bool()),
        (201, Some(false)),
        "{}",
        r.text()
    );
    assert_eq!(
        app.post(
            "/v1/systems/credit/models",
            &w.pipeline,
            common::version("2", Some("1"))
        )
        .await
        .status,
        201
    );
    // Human oversight atrophy: 40 reviewed decisions, all accepted, review time collapsing.
    for i in 0..40u64 {
        let mut d = common::decision(&format!("d-{i}"), "1", "s");
        d["occurred_at"] = json!(format!("2026-11-25T11:{:02}:00Z", i));
        d["human_review"] = json!({"reviewer": "analyst-7", "action": "accepted", "review_ms": if i < 20 { 60_000 } else { 4_000 }});
        assert_eq!(
            app.post("/v1/systems/credit/decisions", &w.pipeline, d)
                .await
                .status,
            201
        );
    }
    let r = app
        .get("/v1/systems/credit/compliance", Some(&w.auditor))
        .await
        .json();
    assert_eq!(r["status"], "action_required");
    let codes: Vec<&str> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    for c in [
        "substantial_modification_without_conformity_assessment",
        "retraining_trigger",
        "model_version_awaiting_review",
        "bias_test_missing",
        "human_oversight_atrophy",
    ] {
        assert!(codes.contains(&c), "missing {c} in {codes:?}");
    }
    for f in r["findings"].as_array().unwrap() {
        assert!(
            !f["evidence"].as_array().unwrap().is_empty()
                && f["since"].as_str().is_some()
                && f["explanation"].as_str().is_some(),
            "{f}"
        );
    }
    // In 100 days: the register review is overdue, the drift test stale, a logging gap.
    let store = app.state.ledger.store().clone();
    let rec = veritrail::register::systems::read(&*store, "credit").unwrap();
    let later = veritrail::log::sequencer::now_micros() + 100 * 86_400_000_000;
    let f = veritrail::register::compliance::findings(&*store, &rec, later).unwrap();
    let codes: Vec<&str> = f.iter().map(|f| f.code.as_str()).collect();
    for c in ["register_review_overdue", "drift_test_stale", "logging_gap"] {
        assert!(codes.contains(&c), "missing {c} in {codes:?}");
    }
    let all = app.get("/v1/compliance", Some(&w.officer)).await.json();
    assert_eq!(all[0]["system_id"], "credit");
    assert_eq!(
        app.get("/v1/compliance", Some(&w.pipeline)).await.status,
        403
    );
}
