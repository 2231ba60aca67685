//! The console for everyone: readable on a narrow window (640 CSS pixels: a 1280-pixel
//! screen at 200 % zoom), every input labelled, every control reached by keyboard; and
//! the README's picture, taken here.

use std::time::Duration;

use serde_json::json;

use crate::harness::{run, screenshot_dir, World};

/// A system with a few days of decisions and oversight, tests, and a version awaiting
/// review: every screen has something to show.
async fn lived_in(w: &World) -> crate::People {
    let p = w.people().await;
    w.deployed(&p, "credit", "1").await;
    let days = [
        "2026-11-20",
        "2026-11-21",
        "2026-11-23",
        "2026-11-24",
        "2026-11-26",
        "2026-11-27",
    ];
    for (i, day) in days.iter().enumerate() {
        for k in 0..(3 + i % 3) {
            let mut d =
                crate::common::decision(&format!("d-{i}-{k}"), "1", &format!("subject-{k}"));
            d["occurred_at"] = json!(format!("{day}T1{k}:00:00Z"));
            d["human_review"]["review_ms"] = json!(45_000 - 4_000 * i as u64 + 1_000 * k as u64);
            w.api("POST", "/v1/systems/credit/decisions", &p.pipeline, d)
                .await;
        }
    }
    let tests = "/v1/systems/credit/models/1/tests";
    for current in [[50, 50], [55, 45], [62, 38]] {
        w.api(
            "POST",
            tests,
            &p.pipeline,
            json!({"evaluator": "psi", "input": {"baseline_counts": [50, 50], "current_counts": current}}),
        )
        .await;
    }
    w.api(
        "POST",
        "/v1/systems/credit/models",
        &p.pipeline,
        crate::common::version("2", Some("1")),
    )
    .await;
    p
}

const PAGES: &[&str] = &[
    "/console/",
    "/console/systems/credit",
    "/console/systems/credit/models/2",
    "/console/systems/credit/decisions",
    "/console/systems/credit/decisions/d-0-0",
    "/console/subjects",
    "/console/log",
];

#[tokio::test]
async fn every_screen_fits_a_narrow_window() {
    run("every_screen_fits_a_narrow_window", |w| async move {
        let p = lived_in(&w).await;
        w.sign_in(&p.officer).await;
        w.browser.set_window_size(640, 900).await.unwrap();
        for path in PAGES {
            w.open(path).await;
            let overflow = w
                .browser
                .execute(
                    "const d = document.documentElement; return d.scrollWidth - d.clientWidth",
                    vec![],
                )
                .await
                .unwrap();
            assert!(
                overflow.as_i64().unwrap() <= 0,
                "{path} scrolls sideways by {overflow} px"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn every_input_has_a_label() {
    run("every_input_has_a_label", |w| async move {
        let p = lived_in(&w).await;
        w.sign_in(&p.officer).await;
        for path in PAGES.iter().chain(&["/console/login"]) {
            w.open(path).await;
            let unlabelled = w
                .browser
                .execute(
                    "return [...document.querySelectorAll('input, select, textarea')]
                       .filter((e) => e.type !== 'hidden' && e.labels.length === 0 && !e.getAttribute('aria-label'))
                       .map((e) => e.outerHTML)",
                    vec![],
                )
                .await
                .unwrap();
            assert_eq!(unlabelled, json!([]), "{path}");
        }
    })
    .await;
}

#[tokio::test]
async fn every_control_is_reached_by_keyboard() {
    run("every_control_is_reached_by_keyboard", |w| async move {
        let p = lived_in(&w).await;
        w.sign_in(&p.officer2).await;
        w.open("/console/systems/credit/models/2").await;
        let controls = w
            .browser
            .execute(
                "return document.querySelectorAll('a[href], button:not([disabled]), input:not([type=hidden]):not([disabled]), select, textarea').length",
                vec![],
            )
            .await
            .unwrap()
            .as_u64()
            .unwrap();
        // Tab through the page, as a keyboard user would, marking what gets the focus.
        let body = w.find("body").await;
        body.click().await.unwrap();
        for _ in 0..controls * 2 {
            w.browser
                .active_element()
                .await
                .unwrap()
                .send_keys(&char::from(fantoccini::key::Key::Tab).to_string())
                .await
                .unwrap();
            w.browser
                .execute("document.activeElement.dataset.reached = 'yes'", vec![])
                .await
                .unwrap();
        }
        let missed = w
            .browser
            .execute(
                "return [...document.querySelectorAll('a[href], button:not([disabled]), input:not([type=hidden]):not([disabled]), select, textarea')]
                   .filter((e) => e.dataset.reached !== 'yes' && !(e.type === 'radio' && document.querySelector(`input[name='${e.name}'][data-reached=yes]`)))
                   .map((e) => e.outerHTML)",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(missed, json!([]), "not reached by Tab");
    })
    .await;
}

/// The README's picture of the console: a system's page, taken from the real binary.
/// `UPDATE_SCREENSHOTS=1` writes it where the README shows it from.
#[tokio::test]
async fn the_readme_screenshot_is_taken_from_the_console() {
    run(
        "the_readme_screenshot_is_taken_from_the_console",
        |w| async move {
            let p = lived_in(&w).await;
            w.sign_in(&p.officer).await;
            w.browser.set_window_size(1280, 1500).await.unwrap();
            w.open("/console/systems/credit").await;
            w.find("figure.chart svg").await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let shot = screenshot_dir().join("console-system.png");
            w.screenshot(&shot).await;
            let png = std::fs::read(&shot).unwrap();
            assert_eq!(&png[1..4], b"PNG");
            if std::env::var("UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
                let readme = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/browser/console-system.png");
                std::fs::write(readme, png).unwrap();
            }
        },
    )
    .await;
}
