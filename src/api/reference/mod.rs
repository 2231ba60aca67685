//! `/docs`: the API reference, readable on a machine without internet. The viewer
//! (Scalar's browser build, vendored from its npm package at a pinned version with its
//! licence: `scalar/VERSION`, `scalar/LICENSE`, `scripts/vendor-scalar`) and the
//! script that starts it on `/openapi.json` are compiled into the binary and served from
//! `/docs/assets/`. The page's Content-Security-Policy allows scripts, styles, fonts,
//! images and requests from this service only; the viewer's own style element carries
//! the page's nonce (it reads it from `meta[property=csp-nonce]`).

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpResponse};

const VIEWER: &str = include_str!("scalar/standalone.js");
const INIT: &str = include_str!("init.js");
/// The vendored viewer's record: its package, version and digest.
pub const VIEWER_RECORD: &str = include_str!("scalar/VERSION");

/// Mount `/docs/assets/…` (the page itself, `/docs`, is in the API description).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/docs/assets/{name}", web::get().to(asset));
}

fn csp(nonce: &str) -> String {
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self' 'nonce-{nonce}'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// The `/docs` page.
pub fn page() -> HttpResponse {
    let mut b = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut b);
    let nonce = hex::encode(b);
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta property=\"csp-nonce\" content=\"{nonce}\">\
         <title>Veritrail API reference</title></head><body>\
         <noscript><p>The reference viewer needs JavaScript. The API description itself is \
         <a href=\"/openapi.json\">/openapi.json</a>.</p></noscript>\
         <div id=\"reference\"></div>\
         <script src=\"/docs/assets/{viewer}\"></script>\
         <script src=\"/docs/assets/init.js\"></script></body></html>",
        viewer = viewer_name(),
    );
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, csp(&nonce)))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(html)
}

/// The viewer's file name carries its version, so it can be cached for good.
fn viewer_name() -> String {
    let version = VIEWER_RECORD
        .lines()
        .find_map(|l| l.strip_prefix("version: "))
        .unwrap_or("0");
    format!("scalar-{version}.js")
}

async fn asset(name: web::Path<String>) -> HttpResponse {
    let (body, cache) = if *name == viewer_name() {
        (VIEWER, "public, max-age=31536000, immutable")
    } else if name.as_str() == "init.js" {
        (INIT, "public, max-age=3600")
    } else {
        return HttpResponse::NotFound().finish();
    };
    let mut res = HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .body(body);
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    res.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn the_vendored_viewer_is_the_one_its_record_pins() {
        let pinned = VIEWER_RECORD
            .lines()
            .find_map(|l| l.strip_prefix("sha256: "))
            .expect("a sha256 line");
        assert_eq!(hex::encode(Sha256::digest(VIEWER.as_bytes())), pinned);
    }
}
