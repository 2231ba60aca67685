//! Console sessions: signing in with an API token makes a server-side session behind a
//! cookie; the session holds the token's SHA-256 (never the token) and a CSRF token.
//! Every request authenticates the token's hash again, so revoking the token ends its
//! sessions at once. Sessions live in this node's memory: a restart signs everyone out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::future::{ready, Ready};

use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::http::{header, StatusCode};
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError};
use sha2::{Digest, Sha256};

use crate::error::AppError;
use crate::storage::Store;
use crate::tokens::{self, Role, TokenRecord};

/// The session cookie's name.
pub const COOKIE: &str = "veritrail_session";
/// A session unused this long ends.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after sign-in, used or not.
pub const ABSOLUTE: Duration = Duration::from_secs(12 * 60 * 60);

struct Session {
    /// SHA-256 of the token signed in with.
    token_sha256: Vec<u8>,
    csrf: String,
    created: Instant,
    last_used: Instant,
}

/// The sessions of this node, by SHA-256 of their cookie value.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
}

/// A signed-in user: the token's record (name, role) and the session's CSRF token.
pub struct Viewer {
    pub token: TokenRecord,
    pub csrf: String,
    id: [u8; 32],
}

impl Viewer {
    pub fn name(&self) -> &str {
        &self.token.name
    }

    pub fn role(&self) -> Role {
        self.token.role
    }

    pub fn is(&self, roles: &[Role]) -> bool {
        roles.contains(&self.token.role)
    }
}

/// A page asked for without a live session: the answer sends the browser to sign in.
#[derive(Debug)]
pub struct SignIn;

impl std::fmt::Display for SignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("sign in first")
    }
}

impl ResponseError for SignIn {
    fn status_code(&self) -> StatusCode {
        StatusCode::SEE_OTHER
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::SeeOther()
            .insert_header((header::LOCATION, "/console/login"))
            .finish()
    }
}

/// A console handler's viewer: its session, live, of a token still live; taken before
/// any body is read, and without one the browser is sent to sign in.
impl FromRequest for Viewer {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, actix_web::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(state) = req.app_data::<crate::api::State>() else {
            return ready(Err(AppError::internal("no application state").into()));
        };
        ready(match state.sessions.viewer(&**state.ledger.store(), req) {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(SignIn.into()),
            Err(e) => Err(e.into()),
        })
    }
}

fn random_hex() -> String {
    let mut b = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut b);
    hex::encode(b)
}

fn key(cookie_value: &str) -> [u8; 32] {
    Sha256::digest(cookie_value.as_bytes()).into()
}

impl Sessions {
    /// Start a session for a live token: the cookie to set. Pipelines and blind reviewers
    /// do not sign in.
    pub fn sign_in(
        &self,
        store: &dyn Store,
        secret: &str,
        secure: bool,
    ) -> Result<Result<Cookie<'static>, &'static str>, AppError> {
        let Some(rec) = tokens::authenticate(store, secret.trim())? else {
            return Ok(Err("unknown or revoked token"));
        };
        if rec.role == Role::Pipeline {
            return Ok(Err("pipeline tokens do not sign in to the console"));
        }
        if rec.role == Role::Reviewer {
            // Every console screen shows decisions; a blind reviewer sees none.
            return Ok(Err("reviewer tokens do not sign in to the console: blind cases are judged through the API"));
        }
        let value = random_hex();
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| live(s, now));
        map.insert(
            key(&value),
            Session {
                token_sha256: rec.secret_sha256,
                csrf: random_hex(),
                created: now,
                last_used: now,
            },
        );
        Ok(Ok(Cookie::build(COOKIE, value)
            .path("/console")
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(secure)
            .finish()))
    }

    /// The viewer of a request: its session, live, of a token still live.
    pub fn viewer(&self, store: &dyn Store, req: &HttpRequest) -> Result<Option<Viewer>, AppError> {
        let Some(cookie) = req.cookie(COOKIE) else {
            return Ok(None);
        };
        let id = key(cookie.value());
        let now = Instant::now();
        let (token_sha256, csrf) = {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            match map.get_mut(&id) {
                Some(s) if live(s, now) => {
                    s.last_used = now;
                    (s.token_sha256.clone(), s.csrf.clone())
                }
                Some(_) => {
                    map.remove(&id);
                    return Ok(None);
                }
                None => return Ok(None),
            }
        };
        match tokens::authenticate_hash(store, &token_sha256)? {
            Some(token) => Ok(Some(Viewer { token, csrf, id })),
            None => {
                // The token was revoked: its sessions end now.
                self.end_token(&token_sha256);
                Ok(None)
            }
        }
    }

    /// End one session.
    pub fn sign_out(&self, viewer: &Viewer) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&viewer.id);
    }

    /// End every session of a token.
    pub fn end_token(&self, token_sha256: &[u8]) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, s| s.token_sha256 != token_sha256);
    }

    /// Sessions now held (expired ones included until they are next swept).
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn live(s: &Session, now: Instant) -> bool {
    now.duration_since(s.last_used) < IDLE && now.duration_since(s.created) < ABSOLUTE
}

/// The cookie that removes the session cookie.
pub fn removal() -> Cookie<'static> {
    let mut c = Cookie::build(COOKIE, "")
        .path("/console")
        .http_only(true)
        .same_site(SameSite::Strict)
        .finish();
    c.make_removal();
    c
}

/// Whether a form's CSRF token is the session's (in constant time).
pub fn csrf_ok(viewer: &Viewer, sent: &str) -> bool {
    use subtle::ConstantTimeEq;
    sent.len() == viewer.csrf.len() && bool::from(sent.as_bytes().ct_eq(viewer.csrf.as_bytes()))
}
