//! The console's screens. Each reads what the API's routes read (the projections and
//! the log, never a scan of the log) and writes through the same commands, so a review
//! made here is the same entry, checked by the same gate, with the same receipt.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use maud::{html, Markup};
use serde::Deserialize;

use super::session::{self, Viewer};
use super::{page, shown, shown_us, Nav};
use crate::api::systems::SystemView;
use crate::api::{ReceiptView, State};
use crate::error::{AppError, ErrorCode};
use crate::log::entry;
use crate::register::projections::findings::Finding;
use crate::register::projections::findings::Severity;
use crate::register::projections::models::Answer;
use crate::register::projections::models::ReviewOutcome;
use crate::register::projections::models::ReviewSpec;
use crate::register::projections::models::VersionStatus;
use crate::register::rfc3339;
use crate::register::{commands, projections, reports};
use crate::tokens::{self, Role};

/// Who may see the register, versions and the log: every role that signs in.
const READERS: &[Role] = &[Role::Admin, Role::Officer, Role::Auditor];

type Page = Result<HttpResponse, AppError>;

fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .finish()
}

pub(super) fn refuse(viewer: &Viewer, roles: &[Role]) -> Result<(), AppError> {
    if viewer.is(roles) {
        return Ok(());
    }
    Err(AppError::new(
        ErrorCode::Forbidden,
        format!(
            "{} has role {}, and this page is not for it",
            viewer.name(),
            viewer.role().as_str()
        ),
    ))
}

/// A form's fields, repeated names kept in order (evidence is a list).
pub(super) struct FormFields(pub(super) Vec<(String, String)>);

impl FormFields {
    pub(super) fn parse(body: &[u8]) -> Self {
        Self(form_urlencoded::parse(body).into_owned().collect())
    }
    pub(super) fn one(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Refuse a form whose CSRF token is not the session's.
pub(super) fn check_csrf(viewer: &Viewer, form: &FormFields) -> Result<(), AppError> {
    if form
        .one("csrf")
        .is_some_and(|sent| session::csrf_ok(viewer, sent))
    {
        Ok(())
    } else {
        Err(AppError::new(
            ErrorCode::Forbidden,
            "the form's CSRF token is missing or not this session's; reload the page",
        ))
    }
}

pub(super) fn csrf_field(viewer: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(viewer.csrf); }
}

/// A value's name as the API spells it (its JSON string).
pub(super) fn label<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

fn receipt_box(r: &ReceiptView) -> Markup {
    html! {
        section.receipt aria-label="Receipt" {
            h2 { "Recorded: entry " (r.index) }
            dl {
                dt { "Leaf hash" } dd { code { (r.leaf_hash) } }
                dt { "Tree size" } dd { (r.tree_size) }
                dt { "Inclusion proof" } dd { (r.inclusion_proof.len()) " hashes" }
            }
            pre.checkpoint { (r.checkpoint) }
        }
    }
}

// Sign-in and sign-out.

const LOGIN_COOKIE: &str = "veritrail_login";

/// `GET /console/login`: the sign-in form (its CSRF token doubles as a cookie).
pub async fn login_form(req: HttpRequest) -> HttpResponse {
    login_page(&req, None, actix_web::http::StatusCode::OK)
}

fn login_page(
    req: &HttpRequest,
    problem: Option<&str>,
    status: actix_web::http::StatusCode,
) -> HttpResponse {
    let mut b = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut b);
    let csrf = hex::encode(b);
    let body = html! {
        h1 { "Sign in" }
        p { "Sign in with an API token (admin, officer or auditor). It is checked on every page: revoking it signs you out." }
        @if let Some(p) = problem { p.problem role="alert" { (p) } }
        form method="post" action="/console/login" {
            input type="hidden" name="csrf" value=(csrf);
            label for="token" { "API token" }
            input #token type="password" name="token" autocomplete="off" required;
            button type="submit" { "Sign in" }
        }
    };
    let cookie = actix_web::cookie::Cookie::build(LOGIN_COOKIE, csrf)
        .path("/console/login")
        .http_only(true)
        .same_site(actix_web::cookie::SameSite::Strict)
        .secure(is_https(req))
        .finish();
    let mut res = page(status, "Sign in", None, body);
    res.add_cookie(&cookie).ok();
    res
}

fn is_https(req: &HttpRequest) -> bool {
    req.connection_info().scheme() == "https"
}

/// `POST /console/login`: start a session.
pub async fn login(state: State, req: HttpRequest, body: web::Bytes) -> Page {
    let form = FormFields::parse(&body);
    let expected = req.cookie(LOGIN_COOKIE).map(|c| c.value().to_owned());
    let csrf_ok = matches!((form.one("csrf"), expected.as_deref()), (Some(a), Some(b)) if !a.is_empty() && a == b);
    if !csrf_ok {
        return Ok(login_page(
            &req,
            Some("The sign-in form expired; try again."),
            actix_web::http::StatusCode::FORBIDDEN,
        ));
    }
    let token = form.one("token").unwrap_or_default();
    match state
        .sessions
        .sign_in(&**state.ledger.store(), token, is_https(&req))?
    {
        Ok(cookie) => {
            let mut res = see_other("/console/");
            res.add_cookie(&cookie).map_err(AppError::internal)?;
            Ok(res)
        }
        Err(why) => Ok(login_page(
            &req,
            Some(why),
            actix_web::http::StatusCode::UNAUTHORIZED,
        )),
    }
}

/// `POST /console/logout`: end the session.
pub async fn logout(state: State, viewer: Viewer, body: web::Bytes) -> Page {
    check_csrf(&viewer, &FormFields::parse(&body))?;
    state.sessions.sign_out(&viewer);
    let mut res = see_other("/console/login");
    res.add_cookie(&session::removal())
        .map_err(AppError::internal)?;
    Ok(res)
}

// The register overview.

#[derive(Deserialize)]
pub struct OverviewQuery {
    risk_class: Option<String>,
    finding: Option<String>,
}

fn severity_counts(findings: &[Finding]) -> (usize, usize, usize) {
    let n = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    (n(Severity::High), n(Severity::Medium), n(Severity::Low))
}

/// `GET /console/`: every system, the most out of compliance first.
pub async fn overview(state: State, viewer: Viewer, q: web::Query<OverviewQuery>) -> Page {
    refuse(&viewer, READERS)?;
    let store = &**state.ledger.store();
    let now = crate::log::sequencer::now_micros();
    let mut rows = Vec::new();
    for rec in projections::systems::list(store)? {
        let findings = reports::compliance::findings(store, &rec, now)?;
        let view = SystemView::from(rec);
        let keep = q
            .risk_class
            .as_deref()
            .filter(|r| !r.is_empty())
            .is_none_or(|r| label(&view.spec.risk_class) == r)
            && q.finding
                .as_deref()
                .filter(|f| !f.is_empty())
                .is_none_or(|f| findings.iter().any(|x| x.code == f));
        if keep {
            rows.push((view, findings));
        }
    }
    rows.sort_by(|(a, fa), (b, fb)| {
        severity_counts(fb)
            .cmp(&severity_counts(fa))
            .then_with(|| a.spec.id.cmp(&b.spec.id))
    });
    let body = html! {
        h1 { "Register overview" }
        form.filters method="get" action="/console/" {
            label for="risk_class" { "Risk class" }
            select #risk_class name="risk_class" {
                option value="" { "any" }
                @for r in ["prohibited", "high", "limited", "minimal"] {
                    option value=(r) selected[q.risk_class.as_deref() == Some(r)] { (r) }
                }
            }
            label for="finding" { "Finding" }
            select #finding name="finding" {
                option value="" { "any" }
                @for (code, _, _) in projections::findings::CODES {
                    option value=(code) selected[q.finding.as_deref() == Some(*code)] { (code) }
                }
            }
            button type="submit" { "Filter" }
        }
        @if rows.is_empty() { p { "No system matches." } }
        @else {
            table {
                caption { (rows.len()) " systems, the most out of compliance first" }
                thead { tr {
                    th scope="col" { "System" } th scope="col" { "Risk class" } th scope="col" { "Owner" }
                    th scope="col" { "Deployed version" } th scope="col" { "Findings" } th scope="col" { "Register review due" }
                } }
                tbody {
                    @for (v, findings) in &rows {
                        tr {
                            td { a href=(format!("/console/systems/{}", v.spec.id)) { (v.spec.name) } br; small { code { (v.spec.id) } } }
                            td { (label(&v.spec.risk_class)) }
                            td { (v.spec.owner.name) br; small { (v.spec.owner.email) } }
                            td { (v.deployed_version.as_deref().unwrap_or("none")) }
                            td { (findings_list(findings)) }
                            td { (shown(&v.review_due_at)) }
                        }
                    }
                }
            }
        }
    };
    Ok(page(
        actix_web::http::StatusCode::OK,
        "Register overview",
        Some((&viewer, Nav::Overview)),
        body,
    ))
}

fn findings_list(findings: &[Finding]) -> Markup {
    html! {
        @if findings.is_empty() { span.ok { "compliant" } }
        @else {
            ul.findings {
                @for f in findings {
                    li class=(format!("sev-{}", label(&f.severity))) {
                        strong { (label(&f.severity)) } " " code { (f.code) }
                        @if let Some(v) = &f.model_version { " (" (v) ")" }
                    }
                }
            }
        }
    }
}

// One system.

#[derive(Deserialize)]
pub struct AtQuery {
    at: Option<String>,
}

/// `GET /console/systems/{system_id}`: the register entry, its revisions, versions,
/// latest tests and findings; with `?at=` the revision in force then, from the log.
pub async fn system(
    state: State,
    viewer: Viewer,
    id: web::Path<String>,
    q: web::Query<AtQuery>,
) -> Page {
    refuse(&viewer, READERS)?;
    let store = &**state.ledger.store();
    let rec = projections::systems::read(store, &id)?;
    let revisions = projections::systems::revisions(store, &id)?;
    let as_of = match q.at.as_deref().filter(|a| !a.is_empty()) {
        None => None,
        Some(at) => {
            let at_us = crate::api::body::query_time("at", at)?;
            let (rev, body) =
                projections::systems::revision_at(store, &id, at_us)?.ok_or_else(|| {
                    AppError::new(
                        ErrorCode::SystemNotFound,
                        format!("{:?} was not yet registered at {at}", id.as_str()),
                    )
                })?;
            Some((rev, body.spec, at_us))
        }
    };
    let now = crate::log::sequencer::now_micros();
    let findings = reports::compliance::findings(store, &rec, now)?;
    // The failure-mode report, as the API's route gives it (officers and auditors).
    let modes = match (&as_of, viewer.is(&[Role::Officer, Role::Auditor])) {
        (_, false) => None,
        (None, true) => Some(reports::failure_modes::report(
            store, &id, &rec.spec, now, true,
        )?),
        (Some((_, spec, at)), true) => Some(reports::failure_modes::report(
            store, &id, spec, *at, false,
        )?),
    };
    let versions = projections::models::list(store, &id)?;
    let charts = match as_of {
        None => super::charts::system_charts(&state, &id)?,
        Some(_) => Vec::new(),
    };
    let view = SystemView::from(rec);
    let spec = as_of.as_ref().map(|(_, s, _)| s).unwrap_or(&view.spec);
    let body = html! {
        h1 { (spec.name) " " small { code { (spec.id) } } }
        @if let Some((rev, _, _)) = &as_of {
            p.notice role="status" { "Revision " (rev.revision) " as it stood from " (shown_us(rev.time)) " (entry " (rev.index) "). "
                a href=(format!("/console/systems/{}", view.spec.id)) { "Current revision" } }
        }
        dl.spec {
            dt { "Purpose" } dd { (spec.purpose) }
            dt { "Risk class" } dd { (label(&spec.risk_class)) }
            dt { "Owner" } dd { (spec.owner.name) " <" (spec.owner.email) ">" }
            dt { "Regulations" } dd { (spec.regulations.join(", ")) }
            dt { "Required tests" } dd { (spec.policy.required_tests.join(", ")) }
            dt { "Status" } dd { (label(&spec.status)) @if spec.legal_hold { " — under legal hold" } }
            @if as_of.is_none() {
                dt { "Deployed version" } dd { (view.deployed_version.as_deref().unwrap_or("none")) }
                dt { "Register review due" } dd { (shown(&view.review_due_at)) }
            }
        }
        h2 { "Findings" }
        (findings_list(&findings))
        @if let Some(r) = &modes { (failure_mode_table(r)) }
        h2 { "Revisions" }
        ol.timeline {
            @for r in &revisions {
                li { a href=(format!("/console/systems/{}?at={}", view.spec.id, urlencode(&rfc3339(r.time)))) {
                    "Revision " (r.revision) } " — " (shown_us(r.time)) " (entry " (r.index) ")" }
            }
        }
        h2 { "Model versions" }
        table {
            thead { tr { th scope="col" { "Version" } th scope="col" { "State" } th scope="col" { "Registered by" } th scope="col" { "Latest tests" } } }
            tbody {
                @for v in &versions {
                    tr {
                        td { a href=(format!("/console/systems/{}/models/{}", view.spec.id, v.spec.version)) { (v.spec.version) } }
                        td { (projections::models::status_name(v.status)) }
                        td { (v.registered_by) }
                        td { ul.tests { @for (evaluator, t) in &v.latest_tests {
                            li { (evaluator) ": " @if t.passed { span.ok { "passed" } } @else { span.fail { "failed" } } " (test " (t.id) ")" }
                        } } }
                    }
                }
            }
        }
        @if viewer.is(&[Role::Officer, Role::Auditor]) {
            p { a href=(format!("/console/systems/{}/decisions", view.spec.id)) { "Decision trail" } }
        }
        @if as_of.is_none() {
            section.charts aria-labelledby="charts-heading" {
                h2 #charts-heading { "Charts" }
                @if charts.is_empty() { p { "No decision or test is recorded yet." } }
                @for c in &charts { (c.render()) }
            }
        }
    };
    Ok(page(
        actix_web::http::StatusCode::OK,
        &spec.name,
        Some((&viewer, Nav::Overview)),
        body,
    ))
}

/// The seven failure modes: status, the figures over their window, and the findings.
fn failure_mode_table(r: &reports::failure_modes::Report) -> Markup {
    let shown_figure = |v: &serde_json::Value| match v {
        // Counts as they are, fractions to four places.
        serde_json::Value::Number(n) if n.is_f64() => n
            .as_f64()
            .map(|f| format!("{f:.4}"))
            .unwrap_or_else(|| n.to_string()),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::Null => "—".into(),
        other => other.to_string(),
    };
    html! {
        section aria-labelledby="modes-heading" {
            h2 #modes-heading { "Failure modes" }
            p { "As of " (shown(&r.at)) @if let Some(v) = &r.model_version { ", for version " (v) " in service" } ". "
                "Figures over each mode's window; no data until a window holds enough records." }
            table.modes {
                thead { tr { th scope="col" { "Mode" } th scope="col" { "Status" } th scope="col" { "Figures" } th scope="col" { "Findings" } } }
                tbody {
                    @for m in &r.modes {
                        tr {
                            th scope="row" { (m.code) " " small { (m.name) } }
                            td { span class=(match m.status {
                                reports::failure_modes::Status::Ok => "ok",
                                reports::failure_modes::Status::Failing => "fail",
                                _ => "",
                            }) { (label(&m.status).replace('_', " ")) } }
                            td { ul.figures {
                                @for (k, v) in &m.figures {
                                    @match v {
                                        serde_json::Value::Object(inner) => {
                                            @for (p, bs) in inner { @if let serde_json::Value::Object(bs) = bs { @for (b, r) in bs {
                                                li { (k) " " (p) "/" (b) ": " (shown_figure(r)) }
                                            } } }
                                        }
                                        serde_json::Value::Null => {}
                                        _ => { li { (k) ": " (shown_figure(v)) } }
                                    }
                                }
                            } }
                            td { (findings_list(&m.findings)) }
                        }
                    }
                }
            }
        }
    }
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

// One model version, and its review.

/// `GET /console/systems/{system_id}/models/{version}`.
pub async fn version(state: State, viewer: Viewer, path: web::Path<(String, String)>) -> Page {
    refuse(&viewer, READERS)?;
    let (id, version) = path.into_inner();
    version_page(&state, &viewer, &id, &version, None, None)
}

fn version_page(
    state: &State,
    viewer: &Viewer,
    id: &str,
    version: &str,
    receipt: Option<ReceiptView>,
    problem: Option<AppError>,
) -> Page {
    let store = &**state.ledger.store();
    let rec = projections::models::read(store, id, version)?;
    let mut tests = Vec::new();
    for index in projections::models::test_ids(store, id, version)? {
        if let Some(bytes) = state.ledger.entry(index)? {
            let e = entry::entry_json(&bytes).map_err(AppError::internal)?;
            tests.push((index, e));
        }
    }
    let reviewable = matches!(
        rec.status,
        VersionStatus::PendingReview | VersionStatus::ChangesRequested | VersionStatus::Approved
    );
    let own = viewer.name() == rec.registered_by;
    let status = if problem.is_some() {
        actix_web::http::StatusCode::CONFLICT
    } else {
        actix_web::http::StatusCode::OK
    };
    let body = html! {
        p { a href=(format!("/console/systems/{id}")) { "← " (id) } }
        h1 { "Version " (version) " of " (id) }
        @if let Some(r) = &receipt { (receipt_box(r)) }
        @if let Some(p) = &problem {
            p.problem role="alert" { strong { (p.code.spec().code) } ": " (p.detail) }
        }
        dl.spec {
            dt { "State" } dd { (projections::models::status_name(rec.status)) }
            dt { "Registered by" } dd { (rec.registered_by) " (entry " (rec.registered_index) ", " (shown_us(rec.registered_time)) ")" }
            dt { "Parent version" } dd { (rec.spec.parent_version.as_deref().unwrap_or("none")) }
            dt { "Changelog" } dd { (rec.spec.changelog) }
            dt { "Artifact SHA-256" } dd { code { (rec.spec.artifact_sha256) } }
            dt { "Training data" } dd { (rec.spec.training_data.reference) " " code { (rec.spec.training_data.sha256) } }
            dt { "Substantial modification" } dd { @if rec.spec.substantial_modification { "yes (AI Act Art. 43(4))" } @else { "no" } }
        }
        @if rec.status == VersionStatus::Rejected {
            p.notice role="status" { "This version was rejected. A rejection is final: register a new version." }
        }
        h2 { "Tests" }
        @if tests.is_empty() { p { "No test is recorded for this version." } }
        @else { table {
            thead { tr { th scope="col" { "Test" } th scope="col" { "Evaluator" } th scope="col" { "Kind" } th scope="col" { "Figures" } th scope="col" { "Verdict" } } }
            tbody { @for (index, e) in &tests {
                tr {
                    td { (index) }
                    td { (e["body"]["evaluator"].as_str().unwrap_or("")) }
                    td { (e["body"]["kind"].as_str().unwrap_or("")) }
                    td { code { (e["body"]["figures"].to_string()) } }
                    td { @if e["body"]["passed"] == true { span.ok { "passed" } } @else { span.fail { "failed" } } }
                }
            } }
        } }
        h2 { "Reviews" }
        @if rec.reviews.is_empty() { p { "No review yet." } }
        ol { @for r in &rec.reviews {
            li { (label(&r.outcome)) " by " (r.reviewer) " — " (shown_us(r.time)) " (entry " (r.id) ")" }
        } }
        @if viewer.is(&[Role::Officer]) && reviewable {
            h2 { "Review this version" }
            @if own {
                p.notice role="note" { "You registered this version, so you cannot approve it (four eyes): another officer must. You may reject it or ask for changes." }
            }
            form method="post" action=(format!("/console/systems/{id}/models/{version}/reviews")) {
                (csrf_field(viewer))
                fieldset {
                    legend { "Outcome" }
                    @for (value, text) in [("approved", "Approve"), ("changes_requested", "Request changes"), ("rejected", "Reject (final)")] {
                        label { input type="radio" name="outcome" value=(value) required disabled[own && value == "approved"]; " " (text) }
                    }
                }
                label for="rationale" { "Rationale" }
                textarea #rationale name="rationale" rows="4" required {}
                fieldset {
                    legend { "Evidence: the tests this review relies on" }
                    @for (index, e) in &tests {
                        label { input type="checkbox" name="evidence" value=(index); " test " (index) " — " (e["body"]["evaluator"].as_str().unwrap_or("")) }
                    }
                }
                fieldset {
                    legend { "Checklist" }
                    label { input type="checkbox" name="checklist.conformity_assessment" value="true"; " Conformity assessment done (AI Act Art. 43)" }
                    label { input type="checkbox" name="checklist.dpia_done" value="true"; " DPIA done (GDPR Art. 35)" }
                }
                button type="submit" { "Record the review" }
            }
        }
    };
    Ok(page(
        status,
        &format!("{id} {version}"),
        Some((viewer, Nav::Overview)),
        body,
    ))
}

/// `POST /console/systems/{system_id}/models/{version}/reviews`: the API's review
/// command, with the form's fields under the API's names.
pub async fn review(
    state: State,
    viewer: Viewer,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Page {
    refuse(&viewer, &[Role::Officer])?;
    let form = FormFields::parse(&body);
    check_csrf(&viewer, &form)?;
    let (id, version) = path.into_inner();
    let outcome = match form.one("outcome") {
        Some("approved") => ReviewOutcome::Approved,
        Some("rejected") => ReviewOutcome::Rejected,
        Some("changes_requested") => ReviewOutcome::ChangesRequested,
        _ => return Err(AppError::invalid("outcome", "choose an outcome")),
    };
    let evidence = form
        .all("evidence")
        .map(|e| {
            e.parse::<u64>()
                .map_err(|_| AppError::invalid("evidence", "a test id is a number"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let checklist = form
        .0
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("checklist.")
                .map(|name| (name.to_owned(), Answer::Yes(v == "true")))
        })
        .collect();
    let spec = ReviewSpec {
        outcome,
        rationale: form.one("rationale").unwrap_or_default().to_owned(),
        evidence,
        checklist,
    };
    spec.validate()?;
    let result = state
        .ledger
        .append(
            viewer.name(),
            commands::models::review_command(id.clone(), version.clone(), spec),
        )
        .await;
    match result {
        Ok(receipt) => version_page(&state, &viewer, &id, &version, Some(receipt.into()), None),
        Err(e) => version_page(&state, &viewer, &id, &version, None, Some(e.into())),
    }
}

// The log.

/// `GET /console/log`: the latest checkpoint, the verifier key, the newest entries.
pub async fn log(state: State, viewer: Viewer) -> Page {
    refuse(&viewer, READERS)?;
    let latest = state.ledger.latest();
    let start = latest.size.saturating_sub(25);
    let mut recent = Vec::new();
    for (i, bytes) in state.ledger.entries(start, 25)?.iter().enumerate() {
        recent.push((
            start + i as u64,
            entry::entry_json(bytes).map_err(AppError::internal)?,
        ));
    }
    recent.reverse();
    let body = html! {
        h1 { "The log" }
        dl.spec {
            dt { "Size" } dd { (latest.size) " entries" }
            dt { "Signed" } dd { (shown_us(latest.signed_at)) }
            dt { "Verifier key" } dd { code { (state.ledger.verifier().to_string()) } }
        }
        h2 { "Latest checkpoint" }
        pre.checkpoint { (latest.note) }
        h2 { "Newest entries" }
        table {
            thead { tr { th scope="col" { "Index" } th scope="col" { "Kind" } th scope="col" { "System" } th scope="col" { "Actor" } th scope="col" { "Time" } } }
            tbody { @for (index, e) in &recent {
                tr {
                    td { a href=(format!("/v1/log/entries/{index}")) { (index) } }
                    td { code { (e["kind"].as_str().unwrap_or("")) } }
                    td { (e["system"].as_str().unwrap_or("")) }
                    td { (e["actor"].as_str().unwrap_or("")) }
                    td { (e["time"].as_u64().map(rfc3339).unwrap_or_default()) }
                }
            } }
        }
    };
    Ok(page(
        actix_web::http::StatusCode::OK,
        "The log",
        Some((&viewer, Nav::Log)),
        body,
    ))
}

// Tokens (admin).

/// `GET /console/tokens`.
pub async fn tokens(state: State, viewer: Viewer) -> Page {
    refuse(&viewer, &[Role::Admin])?;
    tokens_page(&state, &viewer, None, None, None)
}

fn tokens_page(
    state: &State,
    viewer: &Viewer,
    created: Option<(String, String)>,
    receipt: Option<ReceiptView>,
    problem: Option<AppError>,
) -> Page {
    let list = tokens::list(&**state.ledger.store())?;
    let status = if problem.is_some() {
        actix_web::http::StatusCode::CONFLICT
    } else {
        actix_web::http::StatusCode::OK
    };
    let body = html! {
        h1 { "Tokens" }
        @if let Some(r) = &receipt { (receipt_box(r)) }
        @if let Some((name, secret)) = &created {
            section.notice role="status" {
                p { "Token " strong { (name) } " created. Its secret is shown this once: copy it now." }
                pre.secret { (secret) }
            }
        }
        @if let Some(p) = &problem {
            p.problem role="alert" { strong { (p.code.spec().code) } ": " (p.detail) }
        }
        table {
            thead { tr { th scope="col" { "Name" } th scope="col" { "Role" } th scope="col" { "Created" } th scope="col" { "State" } } }
            tbody { @for t in &list {
                tr {
                    td { (t.name) }
                    td { (t.role.as_str()) }
                    td { (shown_us(t.created_time)) " (entry " (t.created_index) ")" }
                    td {
                        @if let Some(i) = t.revoked_index { "revoked (entry " (i) ")" }
                        @else {
                            form.inline method="post" action=(format!("/console/tokens/{}/revoke", t.name)) {
                                (csrf_field(viewer))
                                button type="submit" aria-label=(format!("Revoke {}", t.name)) { "Revoke" }
                            }
                        }
                    }
                }
            } }
        }
        h2 { "Create a token" }
        form method="post" action="/console/tokens" {
            (csrf_field(viewer))
            label for="name" { "Name" }
            input #name type="text" name="name" required pattern="[a-z0-9][a-z0-9._-]{0,63}";
            label for="role" { "Role" }
            select #role name="role" {
                @for r in ["auditor", "officer", "pipeline", "reviewer", "admin"] { option value=(r) { (r) } }
            }
            button type="submit" { "Create" }
        }
    };
    Ok(page(status, "Tokens", Some((viewer, Nav::Tokens)), body))
}

/// `POST /console/tokens`: create a token (its secret shown once).
pub async fn create_token(state: State, viewer: Viewer, body: web::Bytes) -> Page {
    refuse(&viewer, &[Role::Admin])?;
    let form = FormFields::parse(&body);
    check_csrf(&viewer, &form)?;
    let name = form.one("name").unwrap_or_default().to_owned();
    let role = match form.one("role") {
        Some("admin") => Role::Admin,
        Some("pipeline") => Role::Pipeline,
        Some("officer") => Role::Officer,
        Some("auditor") => Role::Auditor,
        Some("reviewer") => Role::Reviewer,
        _ => return Err(AppError::invalid("role", "choose a role")),
    };
    tokens::validate_name(&name)?;
    let secret = tokens::new_secret();
    let result = state
        .ledger
        .append(
            viewer.name(),
            tokens::create_command(name.clone(), role, tokens::secret_hash(&secret)),
        )
        .await;
    match result {
        Ok(r) => tokens_page(&state, &viewer, Some((name, secret)), Some(r.into()), None),
        Err(e) => tokens_page(&state, &viewer, None, None, Some(e.into())),
    }
}

/// `POST /console/tokens/{name}/revoke`.
pub async fn revoke_token(
    state: State,
    viewer: Viewer,
    name: web::Path<String>,
    body: web::Bytes,
) -> Page {
    refuse(&viewer, &[Role::Admin])?;
    check_csrf(&viewer, &FormFields::parse(&body))?;
    let result = state
        .ledger
        .append(viewer.name(), tokens::revoke_command(name.into_inner()))
        .await;
    match result {
        Ok(r) => tokens_page(&state, &viewer, None, Some(r.into()), None),
        Err(e) => tokens_page(&state, &viewer, None, None, Some(e.into())),
    }
}
