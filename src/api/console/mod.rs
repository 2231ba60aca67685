//! The console: the register, model versions and their reviews, the log and tokens in a
//! browser, served by the same process from the same projections, writing through the
//! same commands as the API (a review made here is the same entry, checked by the same
//! gate, answered with the same receipt, shown on the page). Pages are rendered on the
//! server (maud, every value escaped); no script is needed to read or act; nothing is
//! loaded from another origin. Sessions: `session.rs`; screens: `pages.rs` (register,
//! versions, log, tokens) and `decisions.rs` (trail, decision, subject access).

pub mod charts;
pub mod decisions;
pub mod pages;
pub mod session;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, HttpResponse};
use maud::{html, Markup, DOCTYPE};

use self::session::Viewer;
use crate::error::AppError;
use crate::tokens::Role;

/// The console's Content-Security-Policy: this origin only, no inline script or style,
/// never framed.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The console's static assets, compiled into the binary: its stylesheet and its one
/// script (the in-browser verification of a decision, `verify.js`).
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("console.css"),
    ),
    (
        "verify.js",
        "text/javascript; charset=utf-8",
        include_str!("verify.js"),
    ),
];

/// A time for reading: to the second, in UTC (the API's answers keep microseconds).
pub fn shown(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.naive_utc().format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| rfc3339.to_owned())
}

/// [`shown`] of a time in unix µs.
pub fn shown_us(micros: u64) -> String {
    shown(&crate::register::rfc3339(micros))
}

/// Mount the console under `/console`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/console")
            .wrap(from_fn(headers))
            .route("", web::get().to(to_overview))
            .route("/", web::get().to(pages::overview))
            .route("/login", web::get().to(pages::login_form))
            .route("/login", web::post().to(pages::login))
            .route("/logout", web::post().to(pages::logout))
            .route("/systems/{system_id}", web::get().to(pages::system))
            .route(
                "/systems/{system_id}/models/{version}",
                web::get().to(pages::version),
            )
            .route(
                "/systems/{system_id}/models/{version}/reviews",
                web::post().to(pages::review),
            )
            .route(
                "/systems/{system_id}/decisions",
                web::get().to(decisions::trail),
            )
            .route(
                "/systems/{system_id}/decisions",
                web::post().to(decisions::trail),
            )
            .route(
                "/systems/{system_id}/decisions/{decision_id}",
                web::get().to(decisions::decision),
            )
            .route(
                "/systems/{system_id}/decisions/{decision_id}/audit",
                web::get().to(decisions::bundle),
            )
            .route("/subjects", web::get().to(decisions::subjects))
            .route("/subjects", web::post().to(decisions::subjects))
            .route("/log", web::get().to(pages::log))
            .route("/tokens", web::get().to(pages::tokens))
            .route("/tokens", web::post().to(pages::create_token))
            .route("/tokens/{name}/revoke", web::post().to(pages::revoke_token))
            .route("/static/{asset}", web::get().to(asset)),
    );
}

async fn to_overview() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/console/"))
        .finish()
}

async fn asset(name: web::Path<String>) -> HttpResponse {
    match ASSETS.iter().find(|(n, _, _)| *n == name.as_str()) {
        Some((_, content_type, body)) => HttpResponse::Ok()
            .content_type(*content_type)
            .insert_header((header::CACHE_CONTROL, "max-age=3600"))
            .body(*body),
        None => HttpResponse::NotFound().finish(),
    }
}

/// Every console answer: the security headers, never cached (pages hold personal and
/// compliance data), and errors as pages rather than problem documents.
async fn headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let res = next.call(req).await?;
    let res = if res.status().is_client_error() || res.status().is_server_error() {
        match res.response().error() {
            Some(e) => {
                let problem = e.as_error::<AppError>().cloned().unwrap_or_else(|| {
                    AppError::new(crate::error::ErrorCode::InvalidBody, e.to_string())
                });
                let (req, _) = res.into_parts();
                ServiceResponse::new(req, error_page(&problem)).map_into_boxed_body()
            }
            None => res.map_into_boxed_body(),
        }
    } else {
        res.map_into_boxed_body()
    };
    let mut res = res;
    let h = res.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(res)
}

/// An error as a page: its status, code and detail.
fn error_page(e: &AppError) -> HttpResponse {
    let spec = e.code.spec();
    let status = StatusCode::from_u16(spec.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = html! {
        h1 { (spec.title) }
        p.problem role="alert" { strong { (spec.code) } @if let Some(f) = &e.field { " (" code { (f) } ")" } ": " (e.detail) }
        p { a href="/console/" { "Back to the register" } }
    };
    page(status, spec.title, None, body)
}

/// The console's sections, for the navigation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Subjects,
    Log,
    Tokens,
}

/// A whole page: the layout, the navigation for the viewer (with sign-out), the body.
pub fn page(
    status: StatusCode,
    title: &str,
    viewer: Option<(&Viewer, Nav)>,
    body: Markup,
) -> HttpResponse {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — Veritrail" }
                link rel="stylesheet" href="/console/static/console.css";
            }
            body {
                header {
                    a.brand href="/console/" { "Veritrail" }
                    @if let Some((v, at)) = viewer {
                        nav aria-label="Sections" { ul {
                            li { a href="/console/" aria-current=[(at == Nav::Overview).then_some("page")] { "Register" } }
                            @if v.is(&[Role::Officer, Role::Auditor]) {
                                li { a href="/console/subjects" aria-current=[(at == Nav::Subjects).then_some("page")] { "Subject access" } }
                            }
                            li { a href="/console/log" aria-current=[(at == Nav::Log).then_some("page")] { "Log" } }
                            @if v.is(&[Role::Admin]) {
                                li { a href="/console/tokens" aria-current=[(at == Nav::Tokens).then_some("page")] { "Tokens" } }
                            }
                        } }
                        form.signout method="post" action="/console/logout" {
                            input type="hidden" name="csrf" value=(v.csrf);
                            span { (v.name()) " (" (v.role().as_str()) ")" }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    };
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(markup.into_string())
}
