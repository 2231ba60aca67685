//! Sessions and escaping in the browser: signing out ends the session; names an
//! attacker chose render as text.

use serde_json::json;

use crate::harness::{run, World};

#[tokio::test]
async fn signing_out_ends_the_session() {
    run("signing_out_ends_the_session", |w| async move {
        let p = w.people().await;
        w.sign_in(&p.auditor).await;
        let cookie = w
            .browser
            .get_named_cookie("veritrail_session")
            .await
            .expect("a session cookie")
            .value()
            .to_owned();
        w.click("header form.signout button").await;
        w.find("#token").await;
        assert!(w
            .browser
            .get_named_cookie("veritrail_session")
            .await
            .is_err());
        // The old cookie, sent again, opens nothing: the session is gone on the server.
        let r = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(format!("{}/console/", w.url))
            .header("cookie", format!("veritrail_session={cookie}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        assert_eq!(r.headers()["location"], "/console/login");
    })
    .await;
}

/// A system named like a script and an owner whose email holds quotes.
async fn hostile(w: &World) -> crate::People {
    let p = w.people().await;
    let mut sys = crate::common::system("hostile");
    sys["name"] = json!("<script>alert(1)</script>");
    sys["owner"]["email"] = json!("\"o'neil\"@example.com");
    w.api("POST", "/v1/systems", &p.officer, sys).await;
    p
}

#[tokio::test]
async fn names_an_attacker_chose_render_as_text() {
    run("names_an_attacker_chose_render_as_text", |w| async move {
        let p = hostile(&w).await;
        w.sign_in(&p.officer).await;
        for path in ["/console/", "/console/systems/hostile"] {
            w.open(path).await;
            let text = w.main_text().await;
            assert!(text.contains("<script>alert(1)</script>"), "{path}: {text}");
            // No script ran (an alert would be open) and none was added to the page.
            assert!(
                w.browser.get_alert_text().await.is_err(),
                "{path}: an alert opened"
            );
            let scripts = w
                .browser
                .execute(
                    "return document.querySelectorAll('main script').length",
                    vec![],
                )
                .await
                .unwrap();
            assert_eq!(scripts, json!(0), "{path}");
        }
        let owner = w.main_text().await;
        assert!(owner.contains("\"o'neil\"@example.com"), "{owner}");
    })
    .await;
}
