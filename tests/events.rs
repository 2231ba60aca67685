//! The live feed (`GET /v1/events`, Server-Sent Events) against the real binary: every
//! entry as a CloudEvent with its index as id, filters, resumption with
//! `Last-Event-ID`, and no personal value in any event.

mod common;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// An open feed, read event by event.
struct Feed {
    resp: reqwest::Response,
    buf: String,
}

impl Feed {
    async fn open(url: &str, token: &str, query: &str, last_event_id: Option<u64>) -> Feed {
        let mut req = reqwest::Client::new()
            .get(format!("{url}/v1/events{query}"))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Feed {
            resp,
            buf: String::new(),
        }
    }

    /// The next event: (id, CloudEvent). Comments are skipped.
    async fn next(&mut self) -> (u64, Value) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut data) = (None, None);
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.parse::<u64>().unwrap());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str::<Value>(v).unwrap());
                    }
                }
                if let (Some(id), Some(data)) = (id, data) {
                    return (id, data);
                }
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.resp.chunk())
                .await
                .expect("an event within 10 s")
                .unwrap()
                .expect("the feed stays open");
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

/// A real server with a deployed system (pipeline, auditor tokens).
async fn server() -> (common::Backend, std::process::Child, String, String, String) {
    // The fixtures call the API with blocking requests: off the async runtime.
    tokio::task::spawn_blocking(start).await.unwrap()
}

fn start() -> (common::Backend, std::process::Child, String, String, String) {
    let backend = common::Backend::new();
    let (child, url) = common::start_server(&backend, &[]);
    let admin = std::fs::read_to_string(backend.path().join("admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    let (pipeline, auditor) = common::setup_system_http(&url, &admin);
    (backend, child, url, pipeline, auditor)
}

async fn decide(url: &str, pipeline: &str, id: &str) {
    let mut d = common::decision(id, "1", "subject-secret-42");
    d["inputs"] = json!({"income": 987654});
    let (url, pipeline) = (url.to_owned(), pipeline.to_owned());
    tokio::task::spawn_blocking(move || {
        common::post_json(&url, &pipeline, "/v1/systems/crash/decisions", d)
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn every_entry_is_an_event_with_its_index_as_id() {
    let (_b, mut child, url, _pipeline, auditor) = server().await;
    let size = reqwest::get(format!("{url}/healthz"))
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["tree_size"]
        .as_u64()
        .unwrap();
    let mut feed = Feed::open(&url, &auditor, "?after=0", None).await;
    let key: Value = reqwest::get(format!("{url}/v1/log/key"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let origin = key["verifier_key"]
        .as_str()
        .unwrap()
        .split('+')
        .next()
        .unwrap()
        .to_owned();
    for expected in 1..size {
        let (id, e) = feed.next().await;
        assert_eq!(id, expected);
        let entry: Value = reqwest::Client::new()
            .get(format!("{url}/v1/log/entries/{id}"))
            .bearer_auth(&auditor)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["id"], id.to_string());
        assert_eq!(e["source"], origin.as_str());
        assert_eq!(
            e["type"],
            format!("veritrail.{}", entry["entry"]["kind"].as_str().unwrap())
        );
        assert_eq!(e["datacontenttype"], "application/json");
        assert_eq!(e["data"]["index"], id);
        assert_eq!(e["data"]["leaf_hash"], entry["leaf_hash"]);
        assert_eq!(e["data"]["body"], entry["entry"]["body"]);
        assert_eq!(
            e["subject"],
            entry["entry"]["system"]
                .as_str()
                .map_or(Value::Null, |s| json!(s))
        );
    }
    tokio::task::spawn_blocking(move || common::stop_server(&mut child))
        .await
        .unwrap();
}

#[tokio::test]
async fn new_entries_reach_an_open_feed() {
    let (_b, mut child, url, pipeline, auditor) = server().await;
    let mut feed = Feed::open(&url, &auditor, "", None).await;
    decide(&url, &pipeline, "live-1").await;
    let (_, e) = feed.next().await;
    assert_eq!(e["type"], "veritrail.decision.recorded");
    assert_eq!(e["data"]["body"]["decision_id"], "live-1");
    drop(feed);
    tokio::task::spawn_blocking(move || common::stop_server(&mut child))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_feed_resumed_with_last_event_id_misses_nothing() {
    let (_b, mut child, url, pipeline, auditor) = server().await;
    let q = "?types=decision.recorded&after=0";
    let mut feed = Feed::open(&url, &auditor, q, None).await;
    decide(&url, &pipeline, "r-1").await;
    decide(&url, &pipeline, "r-2").await;
    let (first, _) = feed.next().await;
    let (last, _) = feed.next().await;
    drop(feed); // the client goes away
    for i in 3..=6 {
        decide(&url, &pipeline, &format!("r-{i}")).await;
    }
    // Last-Event-ID wins over `after`.
    let mut feed = Feed::open(&url, &auditor, q, Some(last)).await;
    let mut seen = Vec::new();
    for _ in 3..=6 {
        let (id, e) = feed.next().await;
        assert!(id > last, "{id} was delivered before");
        seen.push(
            e["data"]["body"]["decision_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(seen, ["r-3", "r-4", "r-5", "r-6"]);
    assert!(first < last);
    drop(feed);
    tokio::task::spawn_blocking(move || common::stop_server(&mut child))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_feed_filters_by_kind_and_wildcard() {
    let (_b, mut child, url, pipeline, auditor) = server().await;
    let mut feed = Feed::open(
        &url,
        &auditor,
        "?after=0&types=model_version.*,token.created",
        None,
    )
    .await;
    let mut kinds = Vec::new();
    for _ in 0..6 {
        kinds.push(feed.next().await.1["type"].as_str().unwrap().to_owned());
    }
    kinds.sort();
    // Four tokens (the admin's, entry 0, is before `after`), then the version's
    // registration and deployment; its review and the decisions are not in this feed.
    let mut expected = vec!["veritrail.token.created"; 4];
    expected.extend([
        "veritrail.model_version.registered",
        "veritrail.model_version.deployed",
    ]);
    expected.sort();
    assert_eq!(kinds, expected);
    decide(&url, &pipeline, "not-in-this-feed").await;
    drop(feed);
    tokio::task::spawn_blocking(move || common::stop_server(&mut child))
        .await
        .unwrap();
}

#[tokio::test]
async fn no_event_holds_a_personal_value() {
    let (_b, mut child, url, pipeline, auditor) = server().await;
    let mut feed = Feed::open(&url, &auditor, "?types=decision.recorded", None).await;
    decide(&url, &pipeline, "p-1").await;
    let (_, e) = feed.next().await;
    let text = e.to_string();
    for personal in ["subject-secret-42", "987654", &"c".repeat(64)] {
        assert!(!text.contains(personal), "{personal} in {text}");
    }
    assert!(
        e["data"]["body"]["subject"].is_string(),
        "the commitment is there"
    );
    drop(feed);
    tokio::task::spawn_blocking(move || common::stop_server(&mut child))
        .await
        .unwrap();
}

#[actix_web::test]
async fn a_type_that_is_no_kind_is_refused_naming_it() {
    let app = common::spawn().await;
    let auditor = app.token("aud", "auditor").await;
    let r = app
        .get("/v1/events?types=decision.recorded,Bad*", Some(&auditor))
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["field"], "types[1]");
    let r = app
        .call(
            actix_web::test::TestRequest::get()
                .uri("/v1/events")
                .insert_header(("authorization", format!("Bearer {auditor}")))
                .insert_header(("last-event-id", "yesterday")),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["field"], "Last-Event-ID");
}

#[tokio::test]
async fn the_service_stops_promptly_with_a_feed_open() {
    let (_b, mut child, url, _pipeline, auditor) = server().await;
    let _feed = Feed::open(&url, &auditor, "", None).await;
    let t = Instant::now();
    tokio::task::spawn_blocking(move || common::stop_server(&mut child))
        .await
        .unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "stopping waited {:?} for the feed",
        t.elapsed()
    );
}

/// Version 2 of the fixture's system, registered (it then awaits review).
async fn register_version_2(url: &str, pipeline: &str) {
    let (url, pipeline) = (url.to_owned(), pipeline.to_owned());
    tokio::task::spawn_blocking(move || {
        common::post_json(
            &url,
            &pipeline,
            "/v1/systems/crash/models",
            json!({"version": "2", "artifact_sha256": "e".repeat(64), "training_data": {"ref": "r2", "sha256": "f".repeat(64)}}),
        )
    })
    .await
    .unwrap();
}

/// The finding entries in the log.
async fn finding_entries(url: &str, auditor: &str) -> Vec<Value> {
    let page: Value = reqwest::Client::new()
        .get(format!("{url}/v1/log/entries?start=0&limit=1000"))
        .bearer_auth(auditor)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["entry"]["kind"].as_str().unwrap().starts_with("finding."))
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_finding_reaches_the_feed_soon_after_the_entry_that_causes_it() {
    let (_b, mut child, url, pipeline, auditor) = server().await;
    let mut feed = Feed::open(&url, &auditor, "?types=finding.*", None).await;
    let t = Instant::now();
    register_version_2(&url, &pipeline).await;
    // The service's first pass may open the fixture's own findings first.
    let e = loop {
        let (_, e) = feed.next().await;
        if e["data"]["body"]["subject"] == "2" {
            break e;
        }
    };
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(e["type"], "veritrail.finding.opened");
    assert_eq!(e["subject"], "crash");
    assert_eq!(e["data"]["body"]["code"], "model_version_awaiting_review");
    assert_eq!(e["data"]["body"]["subject"], "2");
    drop(feed);
    tokio::task::spawn_blocking(move || common::stop_server(&mut child))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_restart_opens_no_finding_twice() {
    let (backend, mut child, url, pipeline, auditor) = server().await;
    let mut feed = Feed::open(&url, &auditor, "?types=finding.opened", None).await;
    register_version_2(&url, &pipeline).await;
    while feed.next().await.1["data"]["body"]["subject"] != "2" {}
    drop(feed);
    tokio::task::spawn_blocking(move || common::stop_server(&mut child))
        .await
        .unwrap();
    // Started again, the service reconciles every system at once: the finding is open
    // already, so nothing is appended.
    let (b, mut child, url) = tokio::task::spawn_blocking(move || {
        let (child, url) = common::start_server(&backend, &[]);
        (backend, child, url)
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let opened: Vec<Value> = finding_entries(&url, &auditor)
        .await
        .into_iter()
        .filter(|e| e["entry"]["body"]["code"] == "model_version_awaiting_review")
        .collect();
    assert_eq!(opened.len(), 1, "{opened:?}");
    tokio::task::spawn_blocking(move || common::stop_server(&mut child))
        .await
        .unwrap();
    drop(b);
}

#[actix_web::test]
async fn a_type_that_names_no_entry_kind_is_refused_naming_it() {
    let app = common::spawn().await;
    let auditor = app.token("aud", "auditor").await;
    for (q, field) in [
        ("decision.recorded,nope", "types[1]"),
        ("nope.*,finding.*", "types[0]"),
        ("decision.recordd", "types[0]"),
    ] {
        let r = app
            .get(&format!("/v1/events?types={q}"), Some(&auditor))
            .await;
        assert_eq!(r.status, 400, "{q}: {}", r.text());
        assert_eq!(r.json()["field"], field, "{q}");
    }
}

#[tokio::test]
async fn the_largest_last_event_id_replays_nothing() {
    let (_b, mut child, url, pipeline, auditor) = server().await;
    decide(&url, &pipeline, "m-1").await;
    let mut feed = Feed::open(&url, &auditor, "?after=0", Some(u64::MAX)).await;
    // Whatever arrives in a second (the opening comment only) holds no event.
    let mut got = String::new();
    let until = Instant::now() + Duration::from_secs(1);
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout(
        until.saturating_duration_since(Instant::now()),
        feed.resp.chunk(),
    )
    .await
    {
        got.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(got.starts_with(": veritrail events"), "{got:?}");
    assert!(
        !got.contains("\nid: ") && !got.starts_with("id: "),
        "{got:?}"
    );
    drop(feed);
    tokio::task::spawn_blocking(move || common::stop_server(&mut child))
        .await
        .unwrap();
}
