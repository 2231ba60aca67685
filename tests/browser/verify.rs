//! "Verify in this browser": the page checks the bundle with WebCrypto against the key
//! the user gives, and fails when what the server sends does not hold.

use serde_json::json;

use crate::harness::{run, run_witnessed, World};

/// An auditor on the page of decision d-1, signed in.
async fn on_decision(w: &World) {
    let p = w.people().await;
    w.deployed(&p, "credit", "1").await;
    w.decide(&p, "credit", "1", "d-1", "subject-a").await;
    w.decide(&p, "credit", "1", "d-2", "subject-b").await;
    w.sign_in(&p.auditor).await;
    w.open("/console/systems/credit/decisions/d-1").await;
}

/// Paste `key`, press Verify, and wait for the verdict: (state, text).
async fn verify_with(w: &World, key: &str, pin: bool) -> (String, String) {
    w.fill("#verifier_key", key).await;
    if pin {
        w.click("#pin_key").await;
    }
    w.click("#verify-form button[type=submit]").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let result = w.find("#verify-result").await;
        let state = result.attr("data-state").await.unwrap().unwrap_or_default();
        if state == "passed" || state == "failed" {
            return (state, result.text().await.unwrap());
        }
        assert!(std::time::Instant::now() < deadline, "no verdict");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_browser_verifies_a_decision_against_the_pinned_key() {
    run(
        "the_browser_verifies_a_decision_against_the_pinned_key",
        |w| async move {
            on_decision(&w).await;
            let key = w.verifier_key().await;
            let (state, text) = verify_with(&w, &key, true).await;
            assert_eq!(state, "passed", "{text}");
            assert!(text.contains("decision d-1 is entry"), "{text}");
            let steps = w.find("#verify-steps").await.text().await.unwrap();
            for step in [
                "checkpoint signed by",
                "(decision) is in the log",
                "(deployment) is in the log",
                "records decision d-1 of credit",
                "subject_ref opens the entry's commitment",
                "inputs opens the entry's commitment",
            ] {
                assert!(steps.contains(step), "{step}: {steps}");
            }
            // The key stays pinned in this browser: the next page has it, and verifies.
            w.open("/console/systems/credit/decisions/d-2").await;
            let pinned = w.find("#verifier_key").await.prop("value").await.unwrap();
            assert_eq!(pinned.as_deref(), Some(key.as_str()));
            w.click("#verify-form button[type=submit]").await;
            w.wait_for_text("#verify-result", "Verified in this browser")
                .await;
        },
    )
    .await;
}

#[tokio::test]
async fn the_browser_rejects_a_tampered_inclusion_proof() {
    run(
        "the_browser_rejects_a_tampered_inclusion_proof",
        |w| async move {
            on_decision(&w).await;
            // The server lies: the decision's proof has one hash changed in transit.
            w.browser
                .execute(
                    r#"const real = window.fetch;
                       window.fetch = async (...args) => {
                         const b = await (await real(...args)).json();
                         const e = b.entries.find((e) => e.role === "decision");
                         const h = e.inclusion_proof[0];
                         e.inclusion_proof[0] = (h[0] === "0" ? "1" : "0") + h.slice(1);
                         return new Response(JSON.stringify(b), {headers: {"content-type": "application/json"}});
                       };"#,
                    vec![],
                )
                .await
                .unwrap();
            let (state, text) = verify_with(&w, &w.verifier_key().await, false).await;
            assert_eq!(state, "failed", "{text}");
            assert!(
                text.contains("(decision): its inclusion proof does not lead to the checkpoint's root"),
                "{text}"
            );
        },
    )
    .await;
}

#[tokio::test]
async fn the_browser_rejects_a_checkpoint_not_signed_by_the_given_key() {
    run(
        "the_browser_rejects_a_checkpoint_not_signed_by_the_given_key",
        |w| async move {
            on_decision(&w).await;
            // A well-formed key of someone else (the signed-note known answer's).
            let other = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
            let (state, text) = verify_with(&w, other, false).await;
            assert_eq!(state, "failed", "{text}");
            assert!(text.contains("no signature by PeterNeumann"), "{text}");
            let stored = w
                .browser
                .execute(
                    "return localStorage.getItem('veritrail.verifier_key')",
                    vec![],
                )
                .await
                .unwrap();
            assert_eq!(stored, json!(null), "an unpinned key is not kept");
        },
    )
    .await;
}

/// Wait until the log's served checkpoint is cosigned by the world's witness and covers
/// every decision made so far.
async fn cosigned(w: &World) {
    let (witness, _) = w.witness.as_ref().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let note = reqwest::get(format!("{}/checkpoint", w.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let latest = reqwest::get(format!("{}/checkpoint?latest", w.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if crate::common::witness::cosigned(&note, &witness.vkey).is_some()
            && crate::common::witness::size_of(&note) == crate::common::witness::size_of(&latest)
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no cosigned checkpoint"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_browser_checks_the_witness_quorum_of_the_given_policy() {
    run_witnessed(
        "the_browser_checks_the_witness_quorum_of_the_given_policy",
        |w| async move {
            on_decision(&w).await;
            cosigned(&w).await;
            let (_, policy) = w.witness.as_ref().unwrap();
            let policy = std::fs::read_to_string(policy).unwrap();
            w.fill("#witness_policy", &policy).await;
            let (state, text) = verify_with(&w, &w.verifier_key().await, false).await;
            assert_eq!(state, "passed", "{text}");
            let steps = w.find("#verify-steps").await.text().await.unwrap();
            assert!(
                steps.contains("meets the witness quorum: cosigned by w0"),
                "{steps}"
            );
            // A policy that needs another witness too refuses the same checkpoint.
            let w9 = veritrail::witness::cosignature::Cosigner::new(
                "w9.example",
                ed25519_dalek::SigningKey::from_bytes(&[9; 32]),
            )
            .unwrap()
            .verifier();
            let other = format!("witness w9 {w9}\n");
            let both = format!(
                "{other}{}",
                policy.replace("quorum w0", "group both all w0 w9\nquorum both")
            );
            w.find("#witness_policy").await.clear().await.unwrap();
            w.fill("#witness_policy", &both).await;
            let (state, text) = verify_with(&w, &w.verifier_key().await, false).await;
            assert_eq!(state, "failed", "{text}");
            assert!(
                text.contains("does not meet the witness quorum both"),
                "{text}"
            );
        },
    )
    .await;
}
