//! The review gate in the browser: an awaiting-review finding, four eyes, an approval
//! that clears the finding.

use serde_json::json;

use crate::harness::{run, World};

/// A system whose version 2 an officer registered and nobody has reviewed.
async fn awaiting(w: &World) -> crate::People {
    let p = w.people().await;
    w.deployed(&p, "credit", "1").await;
    w.api(
        "POST",
        "/v1/systems/credit/models",
        &p.officer,
        common_version("2"),
    )
    .await;
    let t = w
        .api(
            "POST",
            "/v1/systems/credit/models/2/tests",
            &p.pipeline,
            crate::common::external_test(true),
        )
        .await;
    assert!(t["id"].is_u64());
    p
}

fn common_version(v: &str) -> serde_json::Value {
    crate::common::version(v, Some("1"))
}

#[tokio::test]
async fn an_officer_sees_a_version_awaiting_review_on_the_overview() {
    run(
        "an_officer_sees_a_version_awaiting_review_on_the_overview",
        |w| async move {
            let p = awaiting(&w).await;
            w.sign_in(&p.officer).await;
            let row = w.find("main table tbody tr").await.text().await.unwrap();
            assert!(row.contains("Credit scoring"), "{row}");
            assert!(row.contains("model_version_awaiting_review"), "{row}");
        },
    )
    .await;
}

#[tokio::test]
async fn the_registrant_cannot_approve_and_a_second_officer_can() {
    run(
        "the_registrant_cannot_approve_and_a_second_officer_can",
        |w| async move {
            let p = awaiting(&w).await;
            // The registrant: the page says why, the option is off, and the gate refuses
            // an approval forced through anyway.
            w.sign_in(&p.officer).await;
            w.open("/console/systems/credit/models/2").await;
            let note = w.find("main .notice[role=note]").await.text().await.unwrap();
            assert!(note.contains("four eyes"), "{note}");
            let approve = w.find("input[name=outcome][value=approved]").await;
            assert!(!approve.is_enabled().await.unwrap());
            w.browser
                .execute(
                    "document.querySelector('input[name=outcome][value=approved]').disabled = false;",
                    vec![],
                )
                .await
                .unwrap();
            w.click("input[name=outcome][value=approved]").await;
            w.fill("#rationale", "my own work is fine").await;
            w.click("main form button[type=submit]").await;
            let alert = w.wait_for_text("main .problem[role=alert]", "self-approval").await;
            assert!(alert.contains("cannot approve it"), "{alert}");
            w.click("header form.signout button").await;
            // A second officer approves, citing the test; the receipt is shown.
            w.sign_in(&p.officer2).await;
            w.open("/console/systems/credit/models/2").await;
            w.click("input[name=outcome][value=approved]").await;
            w.fill("#rationale", "bias test passed, changelog reviewed")
                .await;
            w.click("input[name=evidence]").await;
            w.click("main form button[type=submit]").await;
            let receipt = w.wait_for_text("main .receipt", "Recorded: entry").await;
            assert!(receipt.contains("— "), "the signed checkpoint: {receipt}");
            let state = w.find("main dl.spec dd").await.text().await.unwrap();
            assert_eq!(state, "approved");
            // The finding has cleared.
            w.open("/console/").await;
            let row = w.find("main table tbody tr").await.text().await.unwrap();
            assert!(!row.contains("model_version_awaiting_review"), "{row}");
            let reviews = w
                .api("GET", "/v1/systems/credit/models/2", &p.auditor, json!(null))
                .await;
            assert_eq!(reviews["status"], "approved");
        },
    )
    .await;
}
