//! Signing in to the console and using it over HTTP (actix's test service), for the
//! console's tests.

use actix_web::test::TestRequest;

use super::{AppService, Resp, TestApp};

/// The session cookie (`name=value`) an answer sets, if any.
pub fn set_cookie(r: &Resp, name: &str) -> Option<String> {
    r.headers
        .get_all("set-cookie")
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

pub fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

/// The value of `name="csrf" value="…"` in a page.
pub fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[at..at + 64].to_owned()
}

/// Sign in with `token`: the session cookie pair (`veritrail_session=…`).
pub async fn sign_in<S: AppService<B>, B: actix_web::body::MessageBody>(
    app: &TestApp<S>,
    token: &str,
) -> Resp {
    let form = app.call(TestRequest::get().uri("/console/login")).await;
    let login_cookie = pair(&set_cookie(&form, "veritrail_login").unwrap());
    let csrf = csrf_of(&form.text());
    app.call(
        TestRequest::post()
            .uri("/console/login")
            .insert_header(("cookie", login_cookie))
            .insert_header(("content-type", "application/x-www-form-urlencoded"))
            .set_payload(format!("csrf={csrf}&token={token}")),
    )
    .await
}

pub async fn session<S: AppService<B>, B: actix_web::body::MessageBody>(
    app: &TestApp<S>,
    token: &str,
) -> String {
    let r = sign_in(app, token).await;
    assert_eq!(r.status, 303, "{}", r.text());
    pair(&set_cookie(&r, "veritrail_session").expect("a session cookie"))
}

pub async fn get<S: AppService<B>, B: actix_web::body::MessageBody>(
    app: &TestApp<S>,
    cookie: &str,
    path: &str,
) -> Resp {
    app.call(
        TestRequest::get()
            .uri(path)
            .insert_header(("cookie", cookie.to_owned())),
    )
    .await
}

pub async fn post_form<S: AppService<B>, B: actix_web::body::MessageBody>(
    app: &TestApp<S>,
    cookie: &str,
    path: &str,
    form: &str,
) -> Resp {
    app.call(
        TestRequest::post()
            .uri(path)
            .insert_header(("cookie", cookie.to_owned()))
            .insert_header(("content-type", "application/x-www-form-urlencoded"))
            .set_payload(form.to_owned()),
    )
    .await
}
