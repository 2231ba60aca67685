//! The console over HTTP (actix's test service): sign-in and sessions, the security
//! headers, CSRF, escaping, and a review made through it being the API's own command.
//! The same screens in a real browser: `tests/browser/`.

mod common;

use actix_web::test::TestRequest;
use common::console::{csrf_of, get, pair, post_form, session, set_cookie, sign_in};
use serde_json::json;

#[actix_web::test]
async fn signing_in_sets_a_strict_http_only_cookie_and_never_shows_the_token() {
    let app = common::spawn().await;
    let officer = app.token("officer-ana", "officer").await;
    let r = sign_in(&app, &officer).await;
    assert_eq!(r.status, 303, "{}", r.text());
    let cookie = set_cookie(&r, "veritrail_session").unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    assert!(!cookie.contains(&officer));
    let page = get(&app, &pair(&cookie), "/console/").await;
    assert_eq!(page.status, 200);
    assert!(!page.text().contains(&officer), "the token is on the page");
}

#[actix_web::test]
async fn pipelines_and_unknown_tokens_do_not_sign_in() {
    let app = common::spawn().await;
    let pipeline = app.token("deploy-bot", "pipeline").await;
    for token in [pipeline.as_str(), "not-a-token"] {
        let r = sign_in(&app, token).await;
        assert_eq!(r.status, 401, "{}", r.text());
        assert!(set_cookie(&r, "veritrail_session").is_none());
    }
}

#[actix_web::test]
async fn console_pages_carry_the_security_headers() {
    let app = common::spawn().await;
    let cookie = session(&app, &app.admin.clone()).await;
    for path in [
        "/console/login",
        "/console/",
        "/console/log",
        "/console/tokens",
    ] {
        let r = get(&app, &cookie, path).await;
        assert_eq!(r.status, 200, "{path}");
        let csp = r
            .headers
            .get("content-security-policy")
            .unwrap()
            .to_str()
            .unwrap();
        assert!(
            csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert_eq!(r.headers.get("referrer-policy").unwrap(), "no-referrer");
        assert_eq!(r.headers.get("cache-control").unwrap(), "no-store");
    }
}

#[actix_web::test]
async fn a_page_without_a_session_sends_the_browser_to_sign_in() {
    let app = common::spawn().await;
    let r = app.call(TestRequest::get().uri("/console/")).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.headers.get("location").unwrap(), "/console/login");
}

#[actix_web::test]
async fn a_form_without_the_sessions_csrf_token_is_refused() {
    let app = common::spawn().await;
    let cookie = session(&app, &app.admin.clone()).await;
    let size = app.state.ledger.latest().size;
    let r = post_form(&app, &cookie, "/console/tokens", "name=intruder&role=admin").await;
    assert_eq!(r.status, 403, "{}", r.text());
    let r = post_form(
        &app,
        &cookie,
        "/console/tokens",
        &format!("csrf={}&name=intruder&role=admin", "0".repeat(64)),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(app.state.ledger.latest().size, size, "nothing was recorded");
}

#[actix_web::test]
async fn revoking_the_token_ends_its_sessions_at_once() {
    let app = common::spawn().await;
    let auditor = app.token("auditor-eve", "auditor").await;
    let cookie = session(&app, &auditor).await;
    assert_eq!(get(&app, &cookie, "/console/").await.status, 200);
    assert_eq!(
        app.delete("/v1/tokens/auditor-eve", &app.admin.clone())
            .await
            .status,
        200
    );
    let r = get(&app, &cookie, "/console/").await;
    assert_eq!(r.status, 303, "the revoked token's session still works");
}

#[actix_web::test]
async fn signing_out_ends_the_session() {
    let app = common::spawn().await;
    let cookie = session(&app, &app.admin.clone()).await;
    let page = get(&app, &cookie, "/console/").await;
    let csrf = csrf_of(&page.text());
    let r = post_form(&app, &cookie, "/console/logout", &format!("csrf={csrf}")).await;
    assert_eq!(r.status, 303);
    assert_eq!(get(&app, &cookie, "/console/").await.status, 303);
}

#[actix_web::test]
async fn what_users_supply_renders_as_text() {
    let app = common::spawn().await;
    let c = common::crew(&app).await;
    let mut sys = common::system("xss");
    sys["name"] = json!("<script>alert(1)</script>");
    sys["owner"] = json!({"name": "Q \"Quote\" O'Brien", "email": "q\"x@example.com"});
    let r = app.post("/v1/systems", &c.officer, sys).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let cookie = session(&app, &c.officer).await;
    for path in ["/console/", "/console/systems/xss"] {
        let html = get(&app, &cookie, path).await.text();
        assert!(
            !html.contains("<script>alert(1)</script>"),
            "{path}: unescaped"
        );
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{path}"
        );
        assert!(
            !html.contains("q\"x@example.com"),
            "{path}: unescaped quote"
        );
    }
}

#[actix_web::test]
async fn a_review_in_the_console_is_the_apis_command_under_the_same_gate() {
    let app = common::spawn().await;
    let c = common::crew(&app).await;
    common::register_system(&app, &c.officer, "credit").await;
    // The officer registers the version: four eyes will bite.
    let r = app
        .post(
            "/v1/systems/credit/models",
            &c.officer,
            common::version("1.0.0", None),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let t = app
        .post(
            "/v1/systems/credit/models/1.0.0/tests",
            &c.pipeline,
            common::external_test(true),
        )
        .await
        .json()["id"]
        .as_u64()
        .unwrap();
    let overview = get(&app, &session(&app, &c.auditor).await, "/console/")
        .await
        .text();
    // A finding as the table shows it (the filter's options name every code).
    let awaiting = "<code>model_version_awaiting_review</code>";
    assert!(overview.contains(awaiting), "{overview}");

    let path = "/console/systems/credit/models/1.0.0";
    let registrant = session(&app, &c.officer).await;
    let page = get(&app, &registrant, path).await.text();
    assert!(page.contains("four eyes"), "the registrant is told why");
    let form = format!(
        "csrf={}&outcome=approved&rationale=looks+fine&evidence={t}",
        csrf_of(&page)
    );
    let r = post_form(&app, &registrant, &format!("{path}/reviews"), &form).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("self-approval"));

    let second = session(&app, &c.officer2).await;
    let page = get(&app, &second, path).await.text();
    let form = format!(
        "csrf={}&outcome=approved&rationale=bias+within+tolerance&evidence={t}&checklist.dpia_done=true",
        csrf_of(&page)
    );
    let r = post_form(&app, &second, &format!("{path}/reviews"), &form).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let html = r.text();
    assert!(html.contains("Recorded: entry"), "the receipt is shown");
    // The same entry the API writes, by the second officer, citing the test.
    let index = app.state.ledger.latest().size - 1;
    let e = app
        .get(&format!("/v1/log/entries/{index}"), Some(&c.auditor))
        .await
        .json();
    assert_eq!(e["entry"]["kind"], "review.recorded");
    assert_eq!(e["entry"]["actor"], "officer-ben");
    assert_eq!(e["entry"]["body"]["evidence"], json!([t]));
    assert_eq!(e["entry"]["body"]["checklist"]["dpia_done"], true);
    assert_eq!(
        app.get("/v1/systems/credit/models/1.0.0", Some(&c.auditor))
            .await
            .json()["status"],
        "approved"
    );
    let overview = get(&app, &second, "/console/").await.text();
    assert!(!overview.contains(awaiting), "the finding cleared");
}

#[actix_web::test]
async fn an_admin_creates_and_revokes_tokens_in_the_console() {
    let app = common::spawn().await;
    let cookie = session(&app, &app.admin.clone()).await;
    let page = get(&app, &cookie, "/console/tokens").await.text();
    let r = post_form(
        &app,
        &cookie,
        "/console/tokens",
        &format!("csrf={}&name=auditor-x&role=auditor", csrf_of(&page)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let html = r.text();
    let at = html.find("<pre class=\"secret\">").unwrap() + 20;
    let secret = &html[at..at + html[at..].find("</pre>").unwrap()];
    assert_eq!(
        app.get("/v1/systems", Some(secret)).await.status,
        200,
        "the secret shown works"
    );
    let r = post_form(
        &app,
        &cookie,
        "/console/tokens/auditor-x/revoke",
        &format!("csrf={}", csrf_of(&html)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(app.get("/v1/systems", Some(secret)).await.status, 401);
    // The last admin is refused here as in the API.
    let r = post_form(
        &app,
        &cookie,
        "/console/tokens/admin/revoke",
        &format!("csrf={}", csrf_of(&r.text())),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("last-admin"));
}

/// "credit" deployed, two decisions about "subj-1" (one in "loans" too) and one about
/// "subj-2"; an officer's and an auditor's sessions.
async fn with_decisions<S: common::AppService<B>, B: actix_web::body::MessageBody>(
    app: &common::TestApp<S>,
    c: &common::Crew,
) {
    common::deployed_system(app, c, "credit", "1.0.0").await;
    common::deployed_system(app, c, "loans", "1").await;
    for (sys, v, id, subject) in [
        ("credit", "1.0.0", "d-1", "subj-1"),
        ("credit", "1.0.0", "d-2", "subj-2"),
        ("loans", "1", "l-1", "subj-1"),
    ] {
        let r = app
            .post(
                &format!("/v1/systems/{sys}/decisions"),
                &c.pipeline,
                common::decision(id, v, subject),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
    }
}

#[actix_web::test]
async fn the_trail_filters_by_a_posted_subject_never_one_in_the_url() {
    let app = common::spawn().await;
    let c = common::crew(&app).await;
    with_decisions(&app, &c).await;
    let cookie = session(&app, &c.auditor).await;
    // A subject in the URL is ignored: both decisions show.
    let html = get(
        &app,
        &cookie,
        "/console/systems/credit/decisions?subject=subj-1",
    )
    .await
    .text();
    assert!(html.contains(">d-1<") && html.contains(">d-2<"), "{html}");
    let r = post_form(
        &app,
        &cookie,
        "/console/systems/credit/decisions",
        &format!("csrf={}&subject=subj-1&order=newest", csrf_of(&html)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let html = r.text();
    assert!(html.contains(">d-1<") && !html.contains(">d-2<"), "{html}");
}

#[actix_web::test]
async fn a_decision_shows_its_opened_fields_and_its_bundle_verifies() {
    let app = common::spawn().await;
    let c = common::crew(&app).await;
    with_decisions(&app, &c).await;
    let cookie = session(&app, &c.officer).await;
    let html = get(&app, &cookie, "/console/systems/credit/decisions/d-1")
        .await
        .text();
    assert!(
        html.contains("subj-1") && html.contains("debt_ratio_high"),
        "{html}"
    );
    let r = get(&app, &cookie, "/console/systems/credit/decisions/d-1/audit").await;
    assert_eq!(r.status, 200);
    assert!(r
        .headers
        .get("content-disposition")
        .unwrap()
        .to_str()
        .unwrap()
        .contains("attachment"));
    let b: veritrail::audit::Bundle = serde_json::from_slice(&r.body).unwrap();
    let report = veritrail::audit::verify(&b, app.state.ledger.verifier());
    assert!(report.ok(), "{:?}", report.failures());
}

#[actix_web::test]
async fn admins_do_not_see_decisions_in_the_console() {
    let app = common::spawn().await;
    let c = common::crew(&app).await;
    with_decisions(&app, &c).await;
    let cookie = session(&app, &app.admin.clone()).await;
    for path in [
        "/console/systems/credit/decisions",
        "/console/systems/credit/decisions/d-1",
        "/console/subjects",
    ] {
        assert_eq!(get(&app, &cookie, path).await.status, 403, "{path}");
    }
}

#[actix_web::test]
async fn subject_access_finds_every_system_and_an_officer_erases() {
    let app = common::spawn().await;
    let c = common::crew(&app).await;
    with_decisions(&app, &c).await;
    let cookie = session(&app, &c.officer).await;
    let form = get(&app, &cookie, "/console/subjects").await.text();
    let r = post_form(
        &app,
        &cookie,
        "/console/subjects",
        &format!("csrf={}&subject_ref=subj-1", csrf_of(&form)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let html = r.text();
    assert!(
        html.contains("2 decisions")
            && html.contains("credit / d-1")
            && html.contains("loans / l-1"),
        "{html}"
    );
    let r = post_form(
        &app,
        &cookie,
        "/console/subjects",
        &format!(
            "csrf={}&subject_ref=subj-1&erase=yes&reason=GDPR+Art.+17",
            csrf_of(&html)
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("Erased: 2"), "{}", r.text());
    let v = app
        .get("/v1/systems/credit/decisions/d-1", Some(&c.auditor))
        .await
        .json();
    assert_eq!(v["subject_ref"]["erased"], true);
    // An auditor may look, not erase.
    let auditor = session(&app, &c.auditor).await;
    let form = get(&app, &auditor, "/console/subjects").await.text();
    let r = post_form(
        &app,
        &auditor,
        "/console/subjects",
        &format!(
            "csrf={}&subject_ref=subj-2&erase=yes&reason=x",
            csrf_of(&form)
        ),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
}

#[actix_web::test]
async fn subject_access_shows_a_page_at_a_time_and_posts_the_next() {
    let app = common::spawn().await;
    let c = common::crew(&app).await;
    common::deployed_system(&app, &c, "credit", "1").await;
    let decisions: Vec<_> = (0..55)
        .map(|i| common::decision(&format!("p-{i:02}"), "1", "subject-many"))
        .collect();
    let r = app
        .post(
            "/v1/systems/credit/decisions/batch",
            &c.pipeline,
            json!({"decisions": decisions}),
        )
        .await;
    assert!(r.status < 300, "{}", r.text());
    let cookie = session(&app, &c.auditor).await;
    let csrf = csrf_of(&get(&app, &cookie, "/console/subjects").await.text());
    let first = post_form(
        &app,
        &cookie,
        "/console/subjects",
        &format!("csrf={csrf}&subject_ref=subject-many"),
    )
    .await
    .text();
    assert!(first.contains("<h2>50 decisions</h2>"), "{first}");
    let at = first.find("name=\"cursor\" value=\"").expect("a next page") + 21;
    let cursor = &first[at..at + first[at..].find('"').unwrap()];
    let second = post_form(
        &app,
        &cookie,
        "/console/subjects",
        &format!("csrf={csrf}&subject_ref=subject-many&cursor={cursor}"),
    )
    .await
    .text();
    assert!(second.contains("5 decisions (a later page)"), "{second}");
    assert!(
        !second.contains("name=\"cursor\""),
        "no page after the last"
    );
}

#[actix_web::test]
async fn a_system_page_shows_its_failure_modes_to_officers_and_auditors() {
    let app = common::spawn().await;
    let c = common::crew(&app).await;
    common::ground_truth::seed_case(&app, &c, "decay", common::ground_truth::case("decay")).await;
    let cookie = session(&app, &c.auditor).await;
    let html = get(&app, &cookie, "/console/systems/decay").await.text();
    assert!(html.contains("Failure modes"), "{html}");
    for code in ["FM-01", "FM-07", "accuracy_decay", "overconfidence"] {
        assert!(html.contains(code), "{code} missing");
    }
    // As it stood before any decision: no data.
    let before = common::ground_truth::time(common::ground_truth::now() - 30 * 86_400_000_000);
    let r = get(
        &app,
        &cookie,
        &format!("/console/systems/decay?at={before}"),
    )
    .await;
    assert_eq!(r.status, 404, "not yet registered then");
    // An admin sees no failure modes (they are read by officers and auditors).
    let admin = session(&app, &app.admin.clone()).await;
    let html = get(&app, &admin, "/console/systems/decay").await.text();
    assert!(!html.contains("Failure modes"));
}

#[actix_web::test]
async fn a_decision_page_shows_its_outcomes_and_contests() {
    let app = common::spawn().await;
    let c = common::crew(&app).await;
    common::ground_truth::seed_case(&app, &c, "stable", common::ground_truth::case("stable")).await;
    let overturned = common::ground_truth::case("stable")["versions"][0]["overturned"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let cookie = session(&app, &c.officer).await;
    let html = get(
        &app,
        &cookie,
        &format!("/console/systems/stable/decisions/{overturned}"),
    )
    .await
    .text();
    for text in [
        "Outcomes",
        "loan-ledger",
        "Contests",
        "my income was misread",
        "overturned",
    ] {
        assert!(html.contains(text), "{text} missing: {html}");
    }
}

#[actix_web::test]
async fn a_decision_page_shows_its_failure_mode_evidence() {
    let app = common::spawn().await;
    let c = common::crew(&app).await;
    let name = "integration_failing";
    let case = common::decision_evidence::case(name);
    let reviewer = app.token("reviewer-rita", "reviewer").await;
    common::decision_evidence::seed(&app, &c, &reviewer, "integration", case).await;
    let d = case["versions"][0]["decisions"][0]["id"].as_str().unwrap();
    let cookie = session(&app, &c.officer).await;
    let html = get(
        &app,
        &cookie,
        &format!("/console/systems/integration/decisions/{d}"),
    )
    .await
    .text();
    let crossing = &case["versions"][0]["decisions"][0]["integration"];
    for text in [
        "Integration".to_owned(),
        format!("{} → scoring", crossing["upstream"].as_str().unwrap()),
        format!("{} ms", crossing["latency_ms"]),
    ] {
        assert!(html.contains(&text), "{text} missing: {html}");
    }
}
