//! The failure-mode report on seeded synthetic systems whose truth is known
//! (`tests/data/failure_mode_reference.json`, from `scripts/reference/failure_modes.py`
//! with numpy and scikit-learn): each case raises exactly the findings its truth
//! intends, the figures agree with the reference to 1e-9, statuses follow the rule,
//! `?at=` answers as it stood, and `reindex` rebuilds every window byte for byte.

mod common;

use common::ground_truth::{self as gt, case, close, codes, mode, report, EPS};
use serde_json::{json, Value};

/// The last version's figures of `report` against the fixture's expectation.
fn check_figures(name: &str, rep: &Value, expect: &Value) {
    let fm01 = &mode(rep, "FM-01")["figures"];
    let fm07 = &mode(rep, "FM-07")["figures"];
    let (cur, base) = (&expect["current"], &expect["baseline"]);
    close(
        &fm01["accuracy"],
        &cur["accuracy"],
        &format!("{name} accuracy"),
    );
    close(
        &fm01["baseline_accuracy"],
        &base["accuracy"],
        &format!("{name} baseline accuracy"),
    );
    close(
        &fm01["mean_confidence"],
        &cur["mean_confidence"],
        &format!("{name} mean confidence"),
    );
    close(
        &fm01["baseline_mean_confidence"],
        &base["mean_confidence"],
        &format!("{name} baseline mean confidence"),
    );
    close(
        &fm01["overturned_share"],
        &cur["overturned_share"],
        &format!("{name} overturned share"),
    );
    close(
        &fm01["outcome_coverage"],
        &expect["coverage"],
        &format!("{name} coverage"),
    );
    close(&fm07["ece"], &cur["ece"], &format!("{name} ece"));
    close(&fm07["brier"], &cur["brier"], &format!("{name} brier"));
    close(
        &fm07["high_confidence_wrong_share"],
        &cur["high_confidence_wrong_share"],
        &format!("{name} high-confidence wrong share"),
    );
    let want = cur["proxy_correlation"].as_object().unwrap();
    let got = mode(rep, "FM-04")["figures"]["proxy_correlation"].clone();
    assert_eq!(got.as_object().unwrap().len(), want.len(), "{name}: {got}");
    for (p, bs) in want {
        for (b, r) in bs.as_object().unwrap() {
            close(&got[p][b], r, &format!("{name} r({p}, {b})"));
        }
    }
    assert_eq!(
        mode(rep, "FM-01")["window"]["size"],
        cur["n"],
        "{name} window size"
    );
}

#[actix_web::test]
async fn figures_agree_with_the_reference_to_1e_9() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    for name in ["stable", "decay", "miscalibrated", "proxy", "contested"] {
        gt::seed_case(&app, &crew, name, case(name)).await;
        let rep = report(&app, &crew.auditor, name, "").await;
        check_figures(name, &rep, &case(name)["expect"]);
    }
}

#[actix_web::test]
async fn statuses_follow_the_rule() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    for name in [
        "stable",
        "decay",
        "miscalibrated",
        "proxy",
        "contested",
        "blind",
    ] {
        gt::seed_case(&app, &crew, name, case(name)).await;
        let rep = report(&app, &crew.officer, name, "").await;
        for (code, status) in case(name)["expect"]["status"].as_object().unwrap() {
            assert_eq!(&mode(&rep, code)["status"], status, "{name} {code}: {rep}");
        }
        // Nothing crosses a boundary: FM-05 has nothing to go on; nor has FM-02 with no
        // version before this one to compare the entropy with.
        assert_eq!(mode(&rep, "FM-05")["status"], "no_data", "{name}");
        if case(name)["versions"].as_array().unwrap().len() == 1 {
            assert_eq!(mode(&rep, "FM-02")["status"], "no_data", "{name}");
        }
    }
}

#[actix_web::test]
async fn a_model_that_stays_accurate_raises_no_finding() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    gt::seed_case(&app, &crew, "stable", case("stable")).await;
    let rep = report(&app, &crew.auditor, "stable", "").await;
    assert_eq!(codes(&rep), Vec::<String>::new(), "{rep}");
    let compliance = app
        .get("/v1/systems/stable/compliance", Some(&crew.auditor))
        .await
        .json();
    let found: Vec<&str> = compliance["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    for code in ["accuracy_decay", "overconfidence", "outcome_coverage_low"] {
        assert!(!found.contains(&code), "{found:?}");
    }
}

#[actix_web::test]
async fn accuracy_decay_opens_with_the_windows_first_decision_as_evidence() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    let c = case("decay");
    let indices = gt::seed_case(&app, &crew, "decay", c).await;
    let rep = report(&app, &crew.auditor, "decay", "").await;
    assert_eq!(codes(&rep), ["accuracy_decay", "overconfidence"]);
    let f = mode(&rep, "FM-01")["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "accuracy_decay")
        .unwrap()
        .clone();
    // The window is the last 200 outcomes: its first decision is the 401st labelled.
    let window = gt::reference()["window"].as_u64().unwrap() as usize;
    let outcomes = c["versions"][0]["outcomes"].as_array().unwrap();
    let first = outcomes[outcomes.len() - window]["id"].as_str().unwrap();
    assert_eq!(f["evidence"][0], indices[first], "{f}");
    assert_eq!(f["severity"], "high");
    assert_eq!(f["model_version"], "1");
    // The window runs from the first outcome of its first record to that of its last.
    let outcome_of = |id: &str| {
        let app = &app;
        let token = crew.auditor.clone();
        let id = id.to_owned();
        async move {
            app.get(&format!("/v1/systems/decay/decisions/{id}"), Some(&token))
                .await
                .json()["outcomes"][0]["index"]
                .clone()
        }
    };
    let window_of = &mode(&rep, "FM-01")["window"];
    assert_eq!(window_of["from_index"], outcome_of(first).await);
    let last = outcomes.last().unwrap()["id"].as_str().unwrap();
    assert_eq!(window_of["to_index"], outcome_of(last).await);
    // Confidence stayed: the window's confidences are the baseline's.
    let figures = &mode(&rep, "FM-01")["figures"];
    assert!(
        figures["confidence_shift"].as_f64().unwrap() < 1e-12,
        "{figures}"
    );
}

#[actix_web::test]
async fn a_miscalibrated_model_is_overconfident() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    gt::seed_case(&app, &crew, "miscal", case("miscalibrated")).await;
    let rep = report(&app, &crew.auditor, "miscal", "").await;
    assert_eq!(codes(&rep), ["overconfidence"]);
    assert_eq!(mode(&rep, "FM-07")["status"], "failing");
}

#[actix_web::test]
async fn a_proxy_rising_while_the_business_metric_falls_across_versions_diverges() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    gt::seed_case(&app, &crew, "proxy", case("proxy")).await;
    let rep = report(&app, &crew.auditor, "proxy", "").await;
    assert_eq!(codes(&rep), ["proxy_outcome_divergence"]);
    let m = mode(&rep, "FM-04");
    assert_eq!(m["status"], "failing");
    let why = m["findings"][0]["explanation"].as_str().unwrap();
    assert!(
        why.contains("rose since 1") && why.contains("revenue"),
        "{why}"
    );
    assert_eq!(rep["model_version"], "2");
}

#[actix_web::test]
async fn overturned_contests_above_the_limit_are_contest_rate_high() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    gt::seed_case(&app, &crew, "contested", case("contested")).await;
    let rep = report(&app, &crew.auditor, "contested", "").await;
    assert_eq!(codes(&rep), ["contest_rate_high"]);
    assert_eq!(mode(&rep, "FM-01")["status"], "failing");
}

#[actix_web::test]
async fn a_system_without_outcomes_has_low_coverage() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    gt::seed_case(&app, &crew, "blind", case("blind")).await;
    let rep = report(&app, &crew.auditor, "blind", "").await;
    assert_eq!(codes(&rep), ["outcome_coverage_low"]);
    let m = mode(&rep, "FM-01");
    assert_eq!(
        m["status"], "failing",
        "coverage is judged without a labelled window"
    );
    assert_eq!(m["figures"]["outcome_coverage"], 0.0);
    assert!(m["figures"]["accuracy"].is_null());
}

#[actix_web::test]
async fn findings_of_the_windows_become_entries() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    gt::seed_case(&app, &crew, "decay", case("decay")).await;
    veritrail::register::reports::findings::reconcile(&app.state.ledger, None, gt::now())
        .await
        .unwrap();
    let open = veritrail::register::projections::findings::open(
        &**app.state.ledger.store(),
        Some("decay"),
    )
    .unwrap();
    for code in ["accuracy_decay", "overconfidence"] {
        assert!(
            open.contains_key(&(code.to_owned(), Some("1".to_owned()))),
            "{code} not opened: {:?}",
            open.keys()
        );
    }
}

#[actix_web::test]
async fn a_window_below_the_minimum_is_no_data() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    let r = app
        .post(
            "/v1/systems",
            &crew.officer,
            gt::outcome_system("small", 200),
        )
        .await;
    assert_eq!(r.status, 201);
    common::deploy_version(&app, &crew.pipeline, &crew.officer, "small", "1", None).await;
    // 49 outcomes: below max(30, 200/4) = 50.
    let t = gt::now() - 86_400_000_000;
    let decisions: Vec<Value> = (0..49)
        .map(|i| gt::decision(&format!("s-{i}"), "1", t, true, 0.95))
        .collect();
    gt::post_batches(
        &app,
        &crew.pipeline,
        "/v1/systems/small/decisions/batch",
        "decisions",
        decisions,
    )
    .await;
    let outcomes: Vec<Value> = (0..49)
        .map(|i| {
            let mut o = gt::outcome(false, gt::now());
            o["decision_id"] = json!(format!("s-{i}"));
            o
        })
        .collect();
    gt::post_batches(
        &app,
        &crew.pipeline,
        "/v1/systems/small/outcomes/batch",
        "outcomes",
        outcomes,
    )
    .await;
    let rep = report(&app, &crew.auditor, "small", "").await;
    for code in ["FM-01", "FM-04", "FM-07"] {
        assert_eq!(mode(&rep, code)["status"], "no_data", "{code}");
    }
    assert_eq!(
        codes(&rep),
        Vec::<String>::new(),
        "too few to judge: no finding"
    );
    assert_eq!(mode(&rep, "FM-01")["figures"]["accuracy"], 0.0);
}

#[actix_web::test]
async fn the_report_at_a_past_time_answers_as_it_stood() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    gt::seed_case(&app, &crew, "stable", case("stable")).await;
    let before = report(&app, &crew.auditor, "stable", "").await;
    let t = gt::now();
    std::thread::sleep(std::time::Duration::from_millis(5));
    // Later, more decisions with wrong outcomes.
    let d: Vec<Value> = (0..100)
        .map(|i| gt::decision(&format!("late-{i}"), "1", t - 3_600_000_000, true, 0.99))
        .collect();
    gt::post_batches(
        &app,
        &crew.pipeline,
        "/v1/systems/stable/decisions/batch",
        "decisions",
        d,
    )
    .await;
    let o: Vec<Value> = (0..100)
        .map(|i| {
            let mut o = gt::outcome(false, gt::now());
            o["decision_id"] = json!(format!("late-{i}"));
            o
        })
        .collect();
    gt::post_batches(
        &app,
        &crew.pipeline,
        "/v1/systems/stable/outcomes/batch",
        "outcomes",
        o,
    )
    .await;
    let after = report(&app, &crew.auditor, "stable", "").await;
    assert_ne!(
        mode(&after, "FM-01")["figures"],
        mode(&before, "FM-01")["figures"]
    );
    let then = report(
        &app,
        &crew.auditor,
        "stable",
        &format!("?at={}", gt::time(t)),
    )
    .await;
    for code in ["FM-01", "FM-04", "FM-07"] {
        let (a, b) = (
            &mode(&then, code)["figures"],
            &mode(&before, code)["figures"],
        );
        // Coverage counts decisions as they stand; the windows' figures as they stood.
        for (k, v) in b.as_object().unwrap() {
            if k != "outcome_coverage" {
                assert_eq!(&a[k], v, "{code} {k}");
            }
        }
        assert_eq!(mode(&then, code)["window"], mode(&before, code)["window"]);
    }
}

#[actix_web::test]
async fn reindex_rebuilds_every_window_byte_for_byte() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    // Corrections, overturned contests and two versions.
    gt::seed_case(&app, &crew, "stable", case("stable")).await;
    gt::seed_case(&app, &crew, "proxy", case("proxy")).await;
    let store = app.state.ledger.store().clone();
    let live = common::reindex_reproduces(&*store);
    assert!(live.iter().any(|(k, _)| k.starts_with(b"gtw\0")));
    assert!(live.iter().any(|(k, _)| k.starts_with(b"gth\0")));
}

#[actix_web::test]
async fn compliance_drift_follows_the_open_findings() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    common::deployed_system(&app, &crew, "credit", "1").await;
    let fm06 = |r: &Value| mode(r, "FM-06").clone();
    veritrail::register::reports::findings::reconcile(&app.state.ledger, None, gt::now())
        .await
        .unwrap();
    assert_eq!(
        fm06(&report(&app, &crew.auditor, "credit", "").await)["status"],
        "ok"
    );
    // A version awaiting review: a medium finding.
    let r = app
        .post(
            "/v1/systems/credit/models",
            &crew.pipeline,
            common::version("2", Some("1")),
        )
        .await;
    assert_eq!(r.status, 201);
    veritrail::register::reports::findings::reconcile(&app.state.ledger, None, gt::now())
        .await
        .unwrap();
    let m = fm06(&report(&app, &crew.auditor, "credit", "").await);
    assert_eq!(m["status"], "at_risk", "{m}");
    assert_eq!(m["figures"]["open_findings"], 1);
    // The deployed version's bias test fails: high.
    let r = app
        .post(
            "/v1/systems/credit/models/1/tests",
            &crew.pipeline,
            common::external_test(false),
        )
        .await;
    assert_eq!(r.status, 201);
    veritrail::register::reports::findings::reconcile(&app.state.ledger, None, gt::now())
        .await
        .unwrap();
    let m = fm06(&report(&app, &crew.auditor, "credit", "").await);
    assert_eq!(m["status"], "failing", "{m}");
}

#[actix_web::test]
async fn a_new_window_size_re_sums_the_windows_at_the_revision() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    gt::seed_case(&app, &crew, "decay", case("decay")).await;
    let mut spec = gt::outcome_system("decay", 100);
    spec["name"] = json!("Credit scoring (shorter windows)");
    let r = app.put("/v1/systems/decay", &crew.officer, spec).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let rep = report(&app, &crew.auditor, "decay", "").await;
    let m = mode(&rep, "FM-01");
    assert_eq!(m["window"]["size"], 100, "{m}");
    assert_eq!(m["thresholds"]["max_accuracy_drop"], 0.05);
    // The same sums an incremental count over the last 100 gives: the reference's rows.
    let c = case("decay");
    let outcomes = c["versions"][0]["outcomes"].as_array().unwrap();
    let decisions = c["versions"][0]["decisions"].as_array().unwrap();
    let tail = &outcomes[outcomes.len() - 100..];
    let correct = tail
        .iter()
        .filter(|o| {
            let d = decisions.iter().find(|d| d["id"] == o["id"]).unwrap();
            d["prediction"] == o["label"]
        })
        .count();
    let accuracy = m["figures"]["accuracy"].as_f64().unwrap();
    assert!(
        (accuracy - correct as f64 / 100.0).abs() < EPS,
        "{accuracy}"
    );
}

#[actix_web::test]
async fn a_limit_met_exactly_is_not_crossed() {
    // Baseline 40 right of 50, then 50 of which 37 right: a drop of exactly 0.06,
    // against a limit of 0.06 (an f64 subtraction gives 0.06000000000000005).
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    let mut spec = gt::outcome_system("edge", 50);
    spec["policy"]["outcomes"]["max_accuracy_drop"] = json!(0.06);
    spec["policy"]["outcomes"]["max_confidence_shift"] = json!(0.5);
    assert_eq!(
        app.post("/v1/systems", &crew.officer, spec).await.status,
        201
    );
    common::deploy_version(&app, &crew.pipeline, &crew.officer, "edge", "1", None).await;
    let t = gt::now() - 86_400_000_000;
    let decisions: Vec<Value> = (0..100)
        .map(|i| gt::decision(&format!("e-{i}"), "1", t, true, 0.8))
        .collect();
    gt::post_batches(
        &app,
        &crew.pipeline,
        "/v1/systems/edge/decisions/batch",
        "decisions",
        decisions,
    )
    .await;
    let outcomes: Vec<Value> = (0..100)
        .map(|i| {
            let right = if i < 50 { i < 40 } else { i < 87 };
            let mut o = gt::outcome(right, gt::now());
            o["decision_id"] = json!(format!("e-{i}"));
            o
        })
        .collect();
    gt::post_batches(
        &app,
        &crew.pipeline,
        "/v1/systems/edge/outcomes/batch",
        "outcomes",
        outcomes,
    )
    .await;
    let rep = report(&app, &crew.auditor, "edge", "").await;
    let m = mode(&rep, "FM-01");
    assert!(
        (0.8f64 - 0.74 - 0.06).abs() > 0.0,
        "the float subtraction overshoots"
    );
    assert_eq!(m["figures"]["baseline_accuracy"], 0.8);
    assert_eq!(m["figures"]["accuracy"], 0.74);
    assert!(codes(&rep).is_empty(), "{rep}");
    assert_eq!(
        m["status"], "at_risk",
        "past half the allowance, not past it"
    );
}

#[actix_web::test]
async fn a_correlation_over_too_few_records_is_no_data() {
    let app = common::spawn().await;
    let crew = common::crew(&app).await;
    assert_eq!(
        app.post("/v1/systems", &crew.officer, gt::outcome_system("few", 100))
            .await
            .status,
        201
    );
    common::deploy_version(&app, &crew.pipeline, &crew.officer, "few", "1", None).await;
    let t = gt::now() - 86_400_000_000;
    // 60 labelled decisions, only 3 of them with a proxy and a business metric.
    let decisions: Vec<Value> = (0..60)
        .map(|i| {
            let mut d = gt::decision(&format!("f-{i}"), "1", t, true, 0.8);
            if i < 3 {
                d["proxy"] = json!({"ctr": 0.1 * f64::from(i)});
            }
            d
        })
        .collect();
    gt::post_batches(
        &app,
        &crew.pipeline,
        "/v1/systems/few/decisions/batch",
        "decisions",
        decisions,
    )
    .await;
    let outcomes: Vec<Value> = (0..60)
        .map(|i| {
            // Four in five right: calibrated at 0.8.
            let mut o = gt::outcome(i % 5 != 0, gt::now());
            o["decision_id"] = json!(format!("f-{i}"));
            o["business"] = json!({"revenue": 100 - i});
            o
        })
        .collect();
    gt::post_batches(
        &app,
        &crew.pipeline,
        "/v1/systems/few/outcomes/batch",
        "outcomes",
        outcomes,
    )
    .await;
    let rep = report(&app, &crew.auditor, "few", "").await;
    let m = mode(&rep, "FM-04");
    assert!(
        m["figures"]["proxy_correlation"]["ctr"]["revenue"].is_null(),
        "{m}"
    );
    assert_eq!(m["status"], "no_data");
    assert!(codes(&rep).is_empty());
}
