//! The console's decision screens: a system's trail (the API's filters; a subject filter
//! is POSTed so the reference stays out of the URL), one decision with its opened
//! personal fields and its audit bundle, and subject access with erasure. Officers and
//! auditors only, as in the API.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use maud::{html, Markup};

use super::pages::{check_csrf, csrf_field, refuse, FormFields};
use super::session::Viewer;
use super::{page, shown, Nav};
use crate::api::decisions::{decision_view, subject_page, trail_page, DecisionView, TrailQuery};
use crate::api::{ReceiptView, State};
use crate::error::AppError;
use crate::register::projections;
use crate::register::projections::vault::OpenedField;
use crate::tokens::Role;

const DECISION_READERS: &[Role] = &[Role::Officer, Role::Auditor];
/// Decisions on one page of subject access (the erasure form covers them all).
const SUBJECT_PAGE: usize = 50;

type Page = Result<HttpResponse, AppError>;

/// The trail's filters from a form or a query (empty fields are no filter).
fn trail_query(form: &FormFields) -> TrailQuery {
    let field = |name: &str| form.one(name).filter(|v| !v.is_empty()).map(str::to_owned);
    TrailQuery {
        model_version: field("model_version"),
        subject: field("subject"),
        from: field("from"),
        to: field("to"),
        outcome: field("outcome"),
        labelled: field("labelled").and_then(|v| v.parse().ok()),
        order: field("order"),
        cursor: field("cursor"),
        limit: Some(50),
    }
}

/// `GET /console/systems/{system_id}/decisions` (filters without a subject in the
/// query) and `POST` (any filter, the subject among them, in the body).
pub async fn trail(
    state: State,
    req: HttpRequest,
    viewer: Viewer,
    id: web::Path<String>,
    body: web::Bytes,
) -> Page {
    refuse(&viewer, DECISION_READERS)?;
    let is_post = req.method() == actix_web::http::Method::POST;
    let form = if is_post {
        let f = FormFields::parse(&body);
        check_csrf(&viewer, &f)?;
        f
    } else {
        let mut f = FormFields::parse(req.query_string().as_bytes());
        // A subject never travels in a URL: one there is ignored.
        f.0.retain(|(k, _)| k != "subject");
        f
    };
    let q = trail_query(&form);
    let store = &**state.ledger.store();
    let sys = projections::systems::read(store, &id)?;
    let asked = q.clone();
    let filter = q.filter()?;
    let result = trail_page(&state, &id, &filter)?;
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    let body = html! {
        p { a href=(format!("/console/systems/{}", sys.spec.id)) { "← " (sys.spec.name) } }
        h1 { "Decision trail of " (sys.spec.name) }
        form.filters method="post" action=(format!("/console/systems/{}/decisions", sys.spec.id)) {
            (csrf_field(&viewer))
            label for="model_version" { "Model version" }
            input #model_version type="text" name="model_version" value=(value(&asked.model_version));
            label for="subject" { "Subject reference" }
            input #subject type="text" name="subject" autocomplete="off" value=(value(&asked.subject));
            label for="from" { "From (RFC 3339)" }
            input #from type="text" name="from" placeholder="2026-11-01T00:00:00Z" value=(value(&asked.from));
            label for="to" { "To (RFC 3339)" }
            input #to type="text" name="to" value=(value(&asked.to));
            label for="outcome" { "Outcome (JSON)" }
            input #outcome type="text" name="outcome" placeholder="{\"approved\":false}" value=(value(&asked.outcome));
            label for="order" { "Order" }
            select #order name="order" {
                option value="newest" selected[asked.order.as_deref() != Some("oldest")] { "newest first" }
                option value="oldest" selected[asked.order.as_deref() == Some("oldest")] { "oldest first" }
            }
            button type="submit" { "Search" }
        }
        @if result.decisions.is_empty() { p { "No decision matches." } }
        @else {
            table {
                caption { (result.decisions.len()) " decisions" }
                thead { tr {
                    th scope="col" { "Decision" } th scope="col" { "Occurred" } th scope="col" { "Version" }
                    th scope="col" { "Output" } th scope="col" { "Confidence" } th scope="col" { "Human review" }
                } }
                tbody { @for d in &result.decisions {
                    tr {
                        td { a href=(format!("/console/systems/{}/decisions/{}", sys.spec.id, d.decision_id)) { (d.decision_id) } }
                        td { (shown(&d.occurred_at)) }
                        td { (d.model_version) }
                        td { code { (d.output.to_string()) } }
                        td { (d.confidence.map(|c| c.to_string()).unwrap_or_default()) }
                        td { (d.human_review.as_ref().map(|h| format!("{:?} by {}", h.action, h.reviewer).to_lowercase()).unwrap_or_default()) }
                    }
                } }
            }
        }
        @if let Some(next) = &result.next_cursor {
            // The next page continues with the same filters, posted again.
            form method="post" action=(format!("/console/systems/{}/decisions", sys.spec.id)) {
                (csrf_field(&viewer))
                @for (name, v) in [("model_version", &asked.model_version), ("subject", &asked.subject), ("from", &asked.from), ("to", &asked.to), ("outcome", &asked.outcome), ("order", &asked.order)] {
                    @if let Some(v) = v { input type="hidden" name=(name) value=(v); }
                }
                input type="hidden" name="cursor" value=(next);
                button type="submit" { "Next page" }
            }
        }
    };
    Ok(page(
        actix_web::http::StatusCode::OK,
        "Decision trail",
        Some((&viewer, Nav::Overview)),
        body,
    ))
}

fn opened(label: &str, f: &OpenedField) -> Markup {
    html! {
        dt { (label) }
        dd {
            @if f.erased { "erased " } @else { code { (f.value.as_ref().map(|v| v.to_string()).unwrap_or_default()) } }
            br; small { "commitment " code { (f.commitment) } @if let Some(s) = &f.salt { ", salt " code { (s) } } }
        }
    }
}

fn decision_body(d: &DecisionView) -> Markup {
    html! {
        dl.spec {
            dt { "Model version" } dd { (d.model_version) }
            dt { "Occurred" } dd { (shown(&d.occurred_at)) }
            dt { "Recorded" } dd { (shown(&d.recorded_at)) " by " (d.recorded_by) " (entry " (d.index) ")" }
            dt { "Leaf hash" } dd { code { (d.leaf_hash) } }
            dt { "Output" } dd { code { (d.output.to_string()) } }
            dt { "Confidence" } dd { (d.confidence.map(|c| c.to_string()).unwrap_or_else(|| "none".into())) }
            dt { "Reasons" } dd { (d.reasons.join(", ")) }
            dt { "Human oversight" } dd {
                @match &d.human_review {
                    Some(h) => { (format!("{:?}", h.action).to_lowercase()) " by " (h.reviewer) " after " (h.review_ms) " ms" }
                    None => { "none" }
                }
            }
            (opened("Subject reference", &d.subject_ref))
            @if let Some(f) = &d.input_sha256 { (opened("Inputs digest", f)) }
            @if let Some(u) = &d.input_sha256_uncommitted { dt { "Inputs digest" } dd { code { (u) } " (written before digests were committed)" } }
            @if let Some(f) = &d.inputs { (opened("Inputs", f)) }
            @if let Some(p) = &d.proxy { dt { "Proxy metrics" } dd { code { (serde_json::to_string(p).unwrap_or_default()) } } }
            @if d.exploration == Some(true) { dt { "Exploration" } dd { "chosen by randomised exploration" } }
            @if let Some(c) = &d.counterfactual_output { dt { "Counterfactual" } dd { code { (c.to_string()) } } }
            @if let Some(k) = &d.equivalence_key { dt { "Equivalence key" } dd { code { (k) } } }
            @if let Some(v) = &d.validation {
                dt { "Validation" }
                dd { (v.method) ": " (if v.passed { "passed" } else { "failed" }) @if !v.sources.is_empty() { " against " (v.sources.join(", ")) } }
            }
            @if let Some(i) = &d.integration {
                dt { "Integration" }
                dd { (i.upstream) " → " (i.downstream) ", contract " code { (i.contract_version) } ", " (format!("{:?}", i.status).to_lowercase()) " in " (i.latency_ms) " ms" }
            }
            @if let Some(b) = d.blind_review { dt { "Blind review" } dd { (if b { "drawn by the writer" } else { "not drawn" }) } }
            @if !d.outcomes.is_empty() {
                dt { "Outcomes" }
                dd { ul.outcomes { @for o in &d.outcomes {
                    li {
                        "label " code { (o.label.to_string()) } ", observed " (shown(&o.observed_at)) " (" (o.source) ", entry " (o.index) ")"
                        @if !o.business.is_empty() { ", " code { (serde_json::to_string(&o.business).unwrap_or_default()) } }
                        @if let Some(s) = o.supersedes { " — corrects entry " (s) }
                        @if !o.in_force { " — superseded" }
                        @if let Some(n) = &o.note { br; "note: " @if n.erased { "erased" } @else { (n.value.as_ref().and_then(|v| v.as_str()).unwrap_or_default()) } }
                    }
                } } }
            }
            @if !d.contests.is_empty() {
                dt { "Contests" }
                dd { ul.contests { @for c in &d.contests {
                    li {
                        "received " (shown(&c.received_at)) " (entry " (c.id) ", recorded by " (c.recorded_by) "): "
                        @if c.grounds.erased { "grounds erased" } @else { (c.grounds.value.as_ref().and_then(|v| v.as_str()).unwrap_or_default()) }
                        br;
                        @match &c.resolution {
                            Some(r) => { strong { (super::pages::label(&r.outcome)) } " by " (r.resolved_by) " on " (shown(&r.resolved_at)) ": " (r.rationale) }
                            None => { "unresolved" }
                        }
                    }
                } } }
            }
        }
    }
}

/// `GET /console/systems/{system_id}/decisions/{decision_id}`.
pub async fn decision(state: State, viewer: Viewer, path: web::Path<(String, String)>) -> Page {
    refuse(&viewer, DECISION_READERS)?;
    let (id, decision_id) = path.into_inner();
    let index = projections::decisions::find(&**state.ledger.store(), &id, &decision_id)?;
    let d = decision_view(&state, index)?;
    let body = html! {
        p { a href=(format!("/console/systems/{id}/decisions")) { "← the trail of " (id) } }
        h1 { "Decision " (d.decision_id) }
        (decision_body(&d))
        p { a href=(format!("/console/systems/{id}/decisions/{decision_id}/audit")) download=(format!("{decision_id}.bundle.json")) {
            "Download its audit bundle" } " — check it offline with " code { "veritrail verify-bundle FILE --key VERIFIER_KEY" } }
        (verify_panel())
    };
    Ok(page(
        actix_web::http::StatusCode::OK,
        &format!("Decision {decision_id}"),
        Some((&viewer, Nav::Overview)),
        body,
    ))
}

/// "Verify in this browser": `verify.js` fetches the audit bundle and checks it with
/// WebCrypto against the verifier key the user gives (never one the page offers), so
/// the result does not rest on the server's word. Without script, the form stays hidden
/// and the bundle download is the way.
fn verify_panel() -> Markup {
    html! {
        section #verify aria-labelledby="verify-heading" {
            h2 #verify-heading { "Verify in this browser" }
            p { "Checks, with this browser's own cryptography, that the log's checkpoint is signed by the key you trust, that this decision's entry and the entries it rests on are in the tree that checkpoint commits to, that the entry is the decision this address names, and that each opened personal field opens its commitment. Paste the verifier key the log's operator published (not one this page shows you)." }
            form #verify-form hidden {
                label for="verifier_key" { "The log's verifier key" }
                input #verifier_key type="text" name="verifier_key" autocomplete="off" spellcheck="false" placeholder="name+keyid+base64";
                label for="witness_policy" { "Witness policy (optional): refuse a checkpoint without its quorum of cosignatures" }
                textarea #witness_policy name="witness_policy" rows="4" autocomplete="off" spellcheck="false" placeholder="witness w1 name+keyid+base64
    quorum w1" {}
                label { input #pin_key type="checkbox"; " Pin this key (and policy) in this browser" }
                button type="submit" { "Verify" }
            }
            noscript { p { "This check needs JavaScript; without it, download the audit bundle and run " code { "veritrail verify-bundle" } "." } }
            p { output #verify-result role="status" aria-live="polite" {} }
            ol #verify-steps.steps {}
        }
        script src="/console/static/verify.js" defer {}
    }
}

/// `GET /console/systems/{system_id}/decisions/{decision_id}/audit`: the API's audit
/// bundle, as a download.
pub async fn bundle(state: State, viewer: Viewer, path: web::Path<(String, String)>) -> Page {
    refuse(&viewer, DECISION_READERS)?;
    let (id, decision_id) = path.into_inner();
    let b = crate::audit::build(
        &state.ledger,
        &id,
        &decision_id,
        state.witness_policy.as_deref(),
    )?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{decision_id}.bundle.json\""),
        ))
        .json(b))
}

/// `GET /console/subjects` (the form) and `POST` (every decision about the subject
/// posted, across systems; for officers, its erasure).
pub async fn subjects(state: State, req: HttpRequest, viewer: Viewer, body: web::Bytes) -> Page {
    refuse(&viewer, DECISION_READERS)?;
    let mut subject = None;
    let mut cursor = None;
    let mut receipt: Option<(u64, ReceiptView)> = None;
    if req.method() == actix_web::http::Method::POST {
        let form = FormFields::parse(&body);
        check_csrf(&viewer, &form)?;
        cursor = form
            .one("cursor")
            .filter(|c| !c.is_empty())
            .map(str::to_owned);
        let s = form.one("subject_ref").unwrap_or_default().to_owned();
        crate::register::validate_text("subject_ref", &s, 256, true)?;
        if form.one("erase") == Some("yes") {
            refuse(&viewer, &[Role::Officer])?;
            let reason = form.one("reason").unwrap_or_default().to_owned();
            crate::register::validate_text("reason", &reason, 2000, true)?;
            let done =
                crate::api::decisions::erase_subject(&state, viewer.name(), s.clone(), reason)
                    .await?;
            receipt = Some((done.erased, done.receipt));
        }
        subject = Some(s);
    }
    let (found, next) = match &subject {
        Some(s) => subject_page(&state, s, cursor.as_deref(), SUBJECT_PAGE)?,
        None => (Vec::new(), None),
    };
    let body = html! {
        h1 { "Subject access" }
        p { "Every decision about one data subject, across systems (GDPR Art. 15, 22). The reference is posted, never put in a URL." }
        form method="post" action="/console/subjects" {
            (csrf_field(&viewer))
            label for="subject_ref" { "Subject reference" }
            input #subject_ref type="text" name="subject_ref" autocomplete="off" required value=(subject.clone().unwrap_or_default());
            button type="submit" { "Find decisions" }
        }
        @if let Some((erased, r)) = &receipt {
            section.receipt aria-label="Receipt" {
                h2 { "Erased: " (erased) " decisions' personal data (entry " (r.index) ")" }
                pre.checkpoint { (r.checkpoint) }
            }
        }
        @if let Some(s) = &subject {
            h2 { (found.len()) " decisions" @if cursor.is_some() { " (a later page)" } }
            @for (sys, d) in &found {
                section {
                    h3 { a href=(format!("/console/systems/{sys}/decisions/{}", d.decision_id)) { (sys) " / " (d.decision_id) } }
                    (decision_body(d))
                }
            }
            @if let Some(next) = &next {
                form method="post" action="/console/subjects" {
                    (csrf_field(&viewer))
                    input type="hidden" name="subject_ref" value=(s);
                    input type="hidden" name="cursor" value=(next);
                    button type="submit" { "Next page" }
                }
            }
            @if viewer.is(&[Role::Officer]) && !found.is_empty() {
                h2 { "Erase this subject's personal data" }
                form method="post" action="/console/subjects" {
                    (csrf_field(&viewer))
                    input type="hidden" name="subject_ref" value=(s);
                    input type="hidden" name="erase" value="yes";
                    label for="reason" { "Reason (e.g. the request's reference)" }
                    input #reason type="text" name="reason" required;
                    button type="submit" { "Erase (crypto-shred)" }
                }
            }
        }
    };
    Ok(page(
        actix_web::http::StatusCode::OK,
        "Subject access",
        Some((&viewer, Nav::Subjects)),
        body,
    ))
}
