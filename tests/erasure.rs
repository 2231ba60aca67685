//! Personal data off the log: erasure (crypto-shredding) and retention leave every
//! entry, checkpoint, proof and bundle valid, and the values leave the disk.

mod common;

use serde_json::json;

const NEEDLE: &str = "subj-ALICE-5150-ZQX";
const INPUT_NEEDLE: &str = "Alice Zyxwvut-Quorn";

#[actix_web::test]
async fn erasure_and_retention_keep_the_log_valid_and_clear_the_disk() {
    let app = common::spawn().await;
    let v = app.state.ledger.verifier().clone();
    let pipeline = app.token("deploy-bot", "pipeline").await;
    let officer = app.token("officer-ana", "officer").await;
    let officer2 = app.token("officer-ben", "officer").await;
    let auditor = app.token("auditor-eve", "auditor").await;
    for sys in ["credit", "loans"] {
        let mut s = common::system(sys);
        s["policy"] = json!({});
        assert_eq!(app.post("/v1/systems", &officer, s).await.status, 201);
        assert_eq!(
            app.post(
                &format!("/v1/systems/{sys}/models"),
                &pipeline,
                common::version("1", None)
            )
            .await
            .status,
            201
        );
        assert_eq!(
            app.post(
                &format!("/v1/systems/{sys}/models/1/reviews"),
                &officer2,
                json!({"outcome": "approved", "rationale": "ok"})
            )
            .await
            .status,
            201
        );
        assert_eq!(
            app.post(
                &format!("/v1/systems/{sys}/models/1/deployments"),
                &pipeline,
                json!({})
            )
            .await
            .status,
            201
        );
    }
    let mut d = common::decision("d-1", "1", NEEDLE);
    d["inputs"] = json!({"name_on_file": INPUT_NEEDLE});
    assert_eq!(
        app.post("/v1/systems/credit/decisions", &pipeline, d)
            .await
            .status,
        201
    );
    assert_eq!(
        app.post(
            "/v1/systems/loans/decisions",
            &pipeline,
            common::decision("l-1", "1", NEEDLE)
        )
        .await
        .status,
        201
    );
    assert_eq!(
        app.post(
            "/v1/systems/credit/decisions",
            &pipeline,
            common::decision("d-2", "1", "someone-else")
        )
        .await
        .status,
        201
    );
    app.state.ledger.store().vault_compact().unwrap();
    assert!(
        !app.backend.holding(NEEDLE.as_bytes()).is_empty(),
        "the value should be in the vault before erasure"
    );
    let r = app
        .get(&format!("/v1/subjects/{NEEDLE}/decisions"), Some(&auditor))
        .await
        .json();
    assert_eq!(r["decisions"].as_array().unwrap().len(), 2);

    // Under legal hold, erasure is refused and nothing changes.
    let mut held = common::system("loans");
    held["policy"] = json!({});
    held["legal_hold"] = json!(true);
    assert_eq!(
        app.put("/v1/systems/loans", &officer, held.clone())
            .await
            .status,
        200
    );
    let size = app.state.ledger.latest().size;
    let r = app
        .post(
            &format!("/v1/subjects/{NEEDLE}/erasure"),
            &officer,
            json!({"reason": "Art. 17 request 7"}),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["type"].as_str()),
        (409, Some("urn:veritrail:problem:legal-hold")),
        "{}",
        r.text()
    );
    assert!(r.json()["detail"].as_str().unwrap().contains("loans"));
    assert_eq!(app.state.ledger.latest().size, size);
    assert_eq!(
        app.post(
            &format!("/v1/subjects/{NEEDLE}/erasure"),
            &pipeline,
            json!({"reason": "x"})
        )
        .await
        .status,
        403
    );
    held["legal_hold"] = json!(false);
    assert_eq!(
        app.put("/v1/systems/loans", &officer, held).await.status,
        200
    );

    // Erasure.
    let r = app
        .post(
            &format!("/v1/subjects/{NEEDLE}/erasure"),
            &officer,
            json!({"reason": "Art. 17 request 7"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["erased"], 2);
    common::check_receipt(&r.json()["receipt"], &v);
    let idx = r.json()["receipt"]["index"].as_u64().unwrap();
    let e = app
        .get(&format!("/v1/log/entries/{idx}"), Some(&auditor))
        .await
        .json();
    assert_eq!(e["entry"]["kind"], "subject.erased");
    assert_eq!(e["entry"]["actor"], "officer-ana");
    assert_eq!(e["entry"]["body"]["count"], 2);
    // Afterwards: subject access is empty, the decision reads as erased, the rest is intact.
    let r = app
        .get(&format!("/v1/subjects/{NEEDLE}/decisions"), Some(&auditor))
        .await
        .json();
    assert!(r["decisions"].as_array().unwrap().is_empty());
    let d1 = app
        .get("/v1/systems/credit/decisions/d-1", Some(&auditor))
        .await
        .json();
    assert_eq!(
        (
            d1["subject_ref"]["erased"].as_bool(),
            d1["inputs"]["erased"].as_bool()
        ),
        (Some(true), Some(true))
    );
    assert!(d1["subject_ref"]["value"].is_null());
    assert_eq!(
        app.get("/v1/systems/credit/decisions/d-2", Some(&auditor))
            .await
            .json()["subject_ref"]["value"],
        "someone-else"
    );
    let r = app
        .post(
            &format!("/v1/subjects/{NEEDLE}/erasure"),
            &officer,
            json!({"reason": "again"}),
        )
        .await;
    assert_eq!(r.status, 404);
    // The bundle still verifies, the fields shown as erased.
    let b: veritrail::audit::Bundle = serde_json::from_value(
        app.get("/v1/systems/credit/decisions/d-1/audit", Some(&auditor))
            .await
            .json(),
    )
    .unwrap();
    let rep = veritrail::audit::verify(&b, &v);
    assert!(rep.ok(), "{:?}", rep.failures());
    assert_eq!(
        (b.summary.subject_ref.as_str(), b.summary.inputs.as_str()),
        ("erased", "erased")
    );
    // Every stored entry and checkpoint still verifies; the values are in no entry, no
    // export, and no file of the data directory.
    veritrail::log::verify::verify_store(&**app.state.ledger.store(), &v).unwrap();
    let export = app.get("/v1/log/export", Some(&auditor)).await;
    veritrail::log::export::verify(&export.body[..], &v).unwrap();
    for needle in [NEEDLE, INPUT_NEEDLE] {
        assert!(
            !export
                .body
                .windows(needle.len())
                .any(|w| w == needle.as_bytes()),
            "{needle} in the export"
        );
        assert_eq!(
            app.backend.holding(needle.as_bytes()),
            Vec::<String>::new(),
            "{needle} still on disk"
        );
    }
    // A replay of the erased decision cannot be matched: refused, not re-recorded.
    let r = app
        .post(
            "/v1/systems/credit/decisions",
            &pipeline,
            common::decision("d-1", "1", NEEDLE),
        )
        .await;
    assert_eq!(r.status, 409);

    // Retention: 200 days on, data past its period (183 days) is shredded, except under legal hold.
    assert_eq!(
        app.post(
            "/v1/systems/loans/decisions",
            &pipeline,
            common::decision("l-2", "1", "bob")
        )
        .await
        .status,
        201
    );
    let mut held = common::system("loans");
    held["policy"] = json!({});
    held["legal_hold"] = json!(true);
    assert_eq!(
        app.put("/v1/systems/loans", &officer, held).await.status,
        200
    );
    let later = veritrail::log::sequencer::now_micros() + 200 * 86_400_000_000;
    let n = veritrail::register::commands::erasure::run_retention(&app.state.ledger, later)
        .await
        .unwrap();
    assert_eq!(n, 1, "only d-2 (credit) expires; l-2 is under legal hold");
    assert_eq!(
        app.get("/v1/systems/credit/decisions/d-2", Some(&auditor))
            .await
            .json()["subject_ref"]["erased"],
        true
    );
    assert_eq!(
        app.get("/v1/systems/loans/decisions/l-2", Some(&auditor))
            .await
            .json()["subject_ref"]["value"],
        "bob"
    );
    let last = app.state.ledger.latest().size - 1;
    assert_eq!(
        app.get(&format!("/v1/log/entries/{last}"), Some(&auditor))
            .await
            .json()["entry"]["kind"],
        "retention.expired"
    );
    assert_eq!(
        veritrail::register::commands::erasure::run_retention(&app.state.ledger, later)
            .await
            .unwrap(),
        0,
        "nothing left to shred"
    );
    veritrail::log::verify::verify_store(&**app.state.ledger.store(), &v).unwrap();
}
