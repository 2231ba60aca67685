//! Webhooks against the real binary and real HTTP receivers started here: signatures as
//! Standard Webhooks defines them (checked by an implementation written here), at least
//! once and in log order across failures and `kill -9`, a dead receiver delaying nobody,
//! and a failing subscription becoming a finding.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::receiver::{subscribe, verifies, Receiver};
use serde_json::{json, Value};

/// A real server with the fixture system: (backend, child, url, admin, pipeline, auditor).
fn server() -> (
    common::Backend,
    std::process::Child,
    String,
    String,
    String,
    String,
) {
    let backend = common::Backend::new();
    let (child, url) = common::start_server(&backend, common::receiver::FAST);
    let admin = std::fs::read_to_string(backend.path().join("admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    let (pipeline, auditor) = common::setup_system_http(&url, &admin);
    (backend, child, url, admin, pipeline, auditor)
}

#[test]
fn deliveries_are_cloudevents_signed_as_standard_webhooks_do() {
    let (_b, mut child, url, admin, pipeline, _) = server();
    let rx = Receiver::start(0, Duration::ZERO);
    let (_, secret) = subscribe(&url, &admin, &rx.url, json!(["decision.recorded"]));
    let indices: Vec<u64> = (0..3)
        .map(|i| common::decide_http(&url, &pipeline, &format!("w-{i}")))
        .collect();
    let got = rx.wait_for(3);
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), indices);
    for g in rx.got.lock().unwrap().iter() {
        assert!(verifies(&secret, g), "a signature does not verify");
        assert_eq!(g.headers["content-type"], "application/cloudevents+json");
        let ts: i64 = g.headers["webhook-timestamp"].parse().unwrap();
        assert!((chrono::Utc::now().timestamp() - ts).abs() < 60);
        let e: Value = serde_json::from_slice(&g.body).unwrap();
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["id"], g.headers["webhook-id"].as_str());
        assert_eq!(e["type"], "veritrail.decision.recorded");
        assert!(
            !String::from_utf8_lossy(&g.body).contains("s-1"),
            "a subject reference in an event"
        );
    }
    common::stop_server(&mut child);
}

#[test]
fn a_receiver_that_fails_for_a_while_gets_every_event_in_order_after_it_recovers() {
    let (_b, mut child, url, admin, pipeline, _) = server();
    let rx = Receiver::start(5, Duration::ZERO);
    subscribe(&url, &admin, &rx.url, json!(["decision.recorded"]));
    let indices: Vec<u64> = (0..4)
        .map(|i| common::decide_http(&url, &pipeline, &format!("f-{i}")))
        .collect();
    let got = rx.wait_for(4);
    assert_eq!(
        got.iter().map(|g| g.0).collect::<Vec<_>>(),
        indices,
        "each once, in log order"
    );
    let failed = rx
        .got
        .lock()
        .unwrap()
        .iter()
        .filter(|g| g.status == 500)
        .count();
    assert_eq!(failed, 5);
    common::stop_server(&mut child);
}

#[test]
fn a_dead_receiver_does_not_delay_another() {
    if !common::backend::sled_run("a_dead_receiver_does_not_delay_another") {
        return;
    }
    let (_b, mut child, url, admin, pipeline, _) = server();
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap(); // closed again
    subscribe(
        &url,
        &admin,
        &format!("http://{dead}/hook"),
        json!(["decision.recorded"]),
    );
    let rx = Receiver::start(0, Duration::ZERO);
    subscribe(&url, &admin, &rx.url, json!(["decision.recorded"]));
    let t = Instant::now();
    for i in 0..5 {
        common::decide_http(&url, &pipeline, &format!("d-{i}"));
    }
    rx.wait_for(5);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    common::stop_server(&mut child);
}

#[test]
fn kill_9_mid_delivery_loses_nothing() {
    if !common::backend::sled_run("kill_9_mid_delivery_loses_nothing") {
        return;
    }
    let (backend, mut child, url, admin, pipeline, _) = server();
    let rx = Receiver::start(0, Duration::from_millis(40));
    subscribe(&url, &admin, &rx.url, json!(["decision.recorded"]));
    let indices: Vec<u64> = (0..30)
        .map(|i| common::decide_http(&url, &pipeline, &format!("k-{i}")))
        .collect();
    rx.wait_for(5);
    child.kill().unwrap(); // SIGKILL, mid-delivery
    child.wait().unwrap();
    let (mut child, _url) = common::start_server(&backend, common::receiver::FAST);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ids: std::collections::BTreeSet<u64> =
            rx.delivered().into_iter().map(|g| g.0).collect();
        if indices.iter().all(|i| ids.contains(i)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "missing after the restart: {:?}",
            indices
                .iter()
                .filter(|i| !ids.contains(i))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Duplicates may come (at least once); each carries its event's id.
    for (id, e) in rx.delivered() {
        assert_eq!(e["id"], id.to_string());
    }
    common::stop_server(&mut child);
}

#[test]
fn a_failing_subscription_becomes_a_finding_and_its_entry_holds_no_secret() {
    if !common::backend::sled_run(
        "a_failing_subscription_becomes_a_finding_and_its_entry_holds_no_secret",
    ) {
        return;
    }
    let (_b, mut child, url, admin, pipeline, auditor) = server();
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (id, secret) = subscribe(&url, &admin, &format!("http://{dead}/hook"), json!([]));
    common::decide_http(&url, &pipeline, "x-1");
    let deadline = Instant::now() + Duration::from_secs(15);
    let entries = loop {
        let page: Value = reqwest::blocking::Client::new()
            .get(format!("{url}/v1/log/entries?start=0&limit=1000"))
            .bearer_auth(&auditor)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let entries = page["entries"].as_array().unwrap().clone();
        if entries
            .iter()
            .any(|e| e["entry"]["body"]["code"] == "subscription_failing")
        {
            break entries;
        }
        assert!(Instant::now() < deadline, "no subscription_failing finding");
        std::thread::sleep(Duration::from_millis(200));
    };
    let f = entries
        .iter()
        .find(|e| e["entry"]["body"]["code"] == "subscription_failing")
        .unwrap();
    assert_eq!(f["entry"]["kind"], "finding.opened");
    assert_eq!(f["entry"]["system"], Value::Null);
    assert_eq!(f["entry"]["body"]["subject"], id.to_string());
    let created = entries
        .iter()
        .find(|e| e["entry"]["kind"] == "subscription.created")
        .unwrap();
    assert!(
        !created.to_string().contains(&secret["whsec_".len()..]),
        "the secret is in the log"
    );
    // The attempts are there to see.
    let d: Value = reqwest::blocking::Client::new()
        .get(format!("{url}/v1/subscriptions/{id}/deliveries"))
        .bearer_auth(&admin)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let first = &d["deliveries"][0];
    assert_eq!(first["status"], Value::Null);
    assert_eq!(first["error"], "could not connect");
    common::stop_server(&mut child);
}

#[actix_web::test]
async fn subscriptions_refuse_what_is_no_http_target_naming_the_field() {
    let app = common::spawn().await;
    let admin = app.admin.clone();
    for url in [
        "ftp://example.com/x",
        "http://user:pw@example.com/x",
        "not a url",
    ] {
        let r = app
            .post("/v1/subscriptions", &admin, json!({"url": url}))
            .await;
        assert_eq!(r.status, 400, "{url}: {}", r.text());
        assert_eq!(r.json()["field"], "url");
    }
    let r = app
        .post(
            "/v1/subscriptions",
            &admin,
            json!({"url": "https://example.com/h", "types": ["Bad"]}),
        )
        .await;
    assert_eq!(r.json()["field"], "types[0]");
}

#[actix_web::test]
async fn a_subscription_to_a_type_that_names_no_entry_kind_is_refused() {
    let app = common::spawn().await;
    let admin = app.admin.clone();
    let r = app
        .post(
            "/v1/subscriptions",
            &admin,
            json!({"url": "https://example.com/h", "types": ["decision.recorded", "nope.*"]}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["field"], "types[1]");
}

#[actix_web::test]
async fn only_admins_see_the_subscriptions_of_others() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    let r = app
        .post(
            "/v1/subscriptions",
            &crew.pipeline,
            json!({"url": "https://ci.example.com/veritrail"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["subscription"]["id"].as_u64().unwrap();
    assert_eq!(
        app.get(&format!("/v1/subscriptions/{id}"), Some(&crew.officer))
            .await
            .status,
        404
    );
    assert_eq!(
        app.get(&format!("/v1/subscriptions/{id}"), Some(&crew.pipeline))
            .await
            .status,
        200
    );
    assert_eq!(
        app.get(&format!("/v1/subscriptions/{id}"), Some(&app.admin.clone()))
            .await
            .status,
        200
    );
    let mine = app
        .get("/v1/subscriptions", Some(&crew.officer))
        .await
        .json();
    assert_eq!(mine["subscriptions"], json!([]));
    assert_eq!(
        app.delete(&format!("/v1/subscriptions/{id}"), &crew.pipeline)
            .await
            .status,
        200
    );
    assert_eq!(
        app.get(&format!("/v1/subscriptions/{id}"), Some(&crew.pipeline))
            .await
            .status,
        404
    );
}

/// A real server with the fixture system and `env`: (backend, child, url, admin, pipeline).
fn server_with(
    env: &[(&str, &str)],
) -> (common::Backend, std::process::Child, String, String, String) {
    let backend = common::Backend::new();
    let (child, url) = common::start_server(&backend, env);
    let admin = std::fs::read_to_string(backend.path().join("admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    let (pipeline, _) = common::setup_system_http(&url, &admin);
    (backend, child, url, admin, pipeline)
}

/// POST a subscription to `target` on a real server: (status, answer).
fn try_subscribe(url: &str, admin: &str, target: &str) -> (u16, Value) {
    let r = reqwest::blocking::Client::new()
        .post(format!("{url}/v1/subscriptions"))
        .bearer_auth(admin)
        .json(&json!({"url": target, "types": ["decision.recorded"]}))
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap())
}

/// The loopback receivers of these tests, one per form of the address: (url form, receiver).
fn loopback_receivers() -> Vec<(String, Receiver)> {
    let v4 = Receiver::start_on("127.0.0.1:0", 0, Duration::ZERO);
    let v6 = Receiver::start_on("[::1]:0", 0, Duration::ZERO);
    let named = Receiver::start_on("127.0.0.1:0", 0, Duration::ZERO);
    let named_url = named.url.replace("127.0.0.1", "localhost");
    vec![
        (v4.url.clone(), v4),
        (v6.url.clone(), v6),
        (named_url, named),
    ]
}

#[test]
fn loopback_targets_are_refused_by_default_and_their_receivers_get_nothing() {
    let (_b, mut child, url, admin, pipeline) = server_with(common::receiver::FAST_DEFAULT_RULE);
    let receivers = loopback_receivers();
    for (target, _) in &receivers {
        let (status, p) = try_subscribe(&url, &admin, target);
        assert_eq!(status, 400, "{target}: {p}");
        assert_eq!(p["field"], "url", "{p}");
        assert!(p["detail"].as_str().unwrap().contains("loopback"), "{p}");
    }
    common::decide_http(&url, &pipeline, "after-refusal");
    std::thread::sleep(Duration::from_millis(500));
    for (target, rx) in &receivers {
        assert!(rx.got.lock().unwrap().is_empty(), "{target} got a request");
    }
    common::stop_server(&mut child);
}

#[test]
fn loopback_targets_are_delivered_to_once_the_allow_list_names_them() {
    let mut env = common::receiver::FAST_DEFAULT_RULE.to_vec();
    env.push((
        "VERITRAIL_WEBHOOK_ALLOWED_HOSTS",
        "127.0.0.1,[::1],localhost",
    ));
    let (_b, mut child, url, admin, pipeline) = server_with(&env);
    let receivers = loopback_receivers();
    for (target, _) in &receivers {
        let (status, p) = try_subscribe(&url, &admin, target);
        assert_eq!(status, 201, "{target}: {p}");
    }
    let index = common::decide_http(&url, &pipeline, "allowed");
    for (target, rx) in &receivers {
        let got = rx.wait_for(1);
        assert_eq!(got[0].0, index, "{target}");
    }
    common::stop_server(&mut child);
}

#[test]
fn a_stored_subscription_the_rule_now_refuses_stays_listed_marked_and_undelivered() {
    let backend = common::Backend::new();
    let (mut child, url) = common::start_server(&backend, common::receiver::FAST);
    let admin = std::fs::read_to_string(backend.path().join("admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    let (pipeline, _) = common::setup_system_http(&url, &admin);
    let rx = Receiver::start(0, Duration::ZERO);
    let (id, _) = subscribe(&url, &admin, &rx.url, json!(["decision.recorded"]));
    common::decide_http(&url, &pipeline, "before");
    rx.wait_for(1);
    common::stop_server(&mut child);

    // The operator drops the allow-list: the stored target is now refused.
    let (mut child, url, log) =
        common::start_server_logging(&backend, common::receiver::FAST_DEFAULT_RULE);
    let named = format!("subscription={id}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains(&named) && l.contains("refused"))
    {
        assert!(
            Instant::now() < deadline,
            "the start-up log names the refused subscription:\n{}",
            log.lock().unwrap().join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let view: Value = reqwest::blocking::Client::new()
        .get(format!("{url}/v1/subscriptions/{id}"))
        .bearer_auth(&admin)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(
        view["refused"]
            .as_str()
            .is_some_and(|r| r.contains("loopback")),
        "{view}"
    );
    common::decide_http(&url, &pipeline, "after");
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(rx.delivered().len(), 1, "a refused target got a delivery");
    common::stop_server(&mut child);
}
