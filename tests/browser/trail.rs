//! The decision trail in the browser: a search by subject, a decision opened, its
//! bundle downloaded and checked with `veritrail verify-bundle`.

use std::time::{Duration, Instant};

use crate::harness::{run, World};

/// A deployed system with three decisions, two of them about `subject-a`.
async fn with_decisions(w: &World) -> crate::People {
    let p = w.people().await;
    w.deployed(&p, "credit", "1").await;
    w.decide(&p, "credit", "1", "d-1", "subject-a").await;
    w.decide(&p, "credit", "1", "d-2", "subject-b").await;
    w.decide(&p, "credit", "1", "d-3", "subject-a").await;
    p
}

#[tokio::test]
async fn a_trail_is_searched_by_subject() {
    run("a_trail_is_searched_by_subject", |w| async move {
        let p = with_decisions(&w).await;
        w.sign_in(&p.auditor).await;
        w.open("/console/systems/credit/decisions").await;
        w.fill("#subject", "subject-a").await;
        w.click("main form.filters button[type=submit]").await;
        let caption = w.wait_for_text("main table caption", "decisions").await;
        assert_eq!(caption, "2 decisions");
        let rows = w.find("main table tbody").await.text().await.unwrap();
        assert!(rows.contains("d-1") && rows.contains("d-3"), "{rows}");
        assert!(!rows.contains("d-2"), "{rows}");
        // The reference was posted: it is in no URL the browser visited.
        let url = w.browser.current_url().await.unwrap();
        assert!(!url.as_str().contains("subject-a"), "{url}");
    })
    .await;
}

#[tokio::test]
async fn a_downloaded_bundle_verifies_offline() {
    run("a_downloaded_bundle_verifies_offline", |w| async move {
        let p = with_decisions(&w).await;
        w.sign_in(&p.auditor).await;
        w.open("/console/systems/credit/decisions").await;
        w.click("main table tbody a[href$='/decisions/d-2']").await;
        let text = w.wait_for_text("main", "Subject reference").await;
        assert!(text.contains("subject-b"), "opened for an auditor: {text}");
        w.click("main a[download]").await;
        let file = w.downloads.path().join("d-2.bundle.json");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !file.exists() {
            assert!(Instant::now() < deadline, "the bundle was not downloaded");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let key = w.verifier_key().await;
        let out = std::process::Command::new(crate::common::BIN)
            .args(["verify-bundle", file.to_str().unwrap(), "--key", &key])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    })
    .await;
}
