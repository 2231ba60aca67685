//! A real browser against the real binary: Debian's `chromium`, headless, driven through
//! `chromedriver` (WebDriver) with fantoccini, and `veritrail serve` on a temp dir.
//!
//! Each test gets its own server, driver and browser, runs in [`run`], and leaves a
//! screenshot under `target/browser-screenshots/` when it fails. Where the browser or
//! its driver is absent the test says it skipped and why (unless
//! `VERITRAIL_REQUIRE_BROWSER=1`, as in CI, makes that a failure). These tests touch no
//! storage of their own, so they run once: on the sled run, not again on PostgreSQL.

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::common;

/// Where the browser's failure screenshots (and the README's picture) are written.
pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-screenshots")
}

/// The browser and driver binaries, or why this machine has none.
fn binaries() -> Result<(PathBuf, PathBuf), String> {
    let find = |names: &[&str], env: &str| -> Option<PathBuf> {
        if let Ok(p) = std::env::var(env) {
            return Some(PathBuf::from(p));
        }
        names
            .iter()
            .flat_map(|n| ["/usr/bin", "/usr/local/bin"].map(|d| Path::new(d).join(n)))
            .find(|p| p.exists())
    };
    let browser = find(&["chromium", "chromium-browser"], "VERITRAIL_CHROMIUM")
        .ok_or("no chromium (Debian package `chromium`)")?;
    let driver = find(&["chromedriver"], "VERITRAIL_CHROMEDRIVER")
        .ok_or("no chromedriver (Debian package `chromium-driver`)")?;
    Ok((browser, driver))
}

/// Whether this run should drive a browser: not on the PostgreSQL run (these tests do
/// not depend on the backend), and only where a browser is installed.
fn should_run(test: &str) -> Option<(PathBuf, PathBuf)> {
    if common::backend::server_url().is_some() {
        eprintln!("{test}: browser tests run once, on the sled run; skipped on PostgreSQL");
        return None;
    }
    match binaries() {
        Ok(b) => Some(b),
        Err(why) => {
            assert!(
                std::env::var("VERITRAIL_REQUIRE_BROWSER").as_deref() != Ok("1"),
                "{test}: VERITRAIL_REQUIRE_BROWSER=1 but {why}"
            );
            eprintln!("{test}: SKIPPED the browser test: {why}");
            None
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills its process when dropped (a failing test leaves nothing running).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One test's world: the real server on a temp dir, its admin token, and a browser.
pub struct World {
    pub url: String,
    pub admin: String,
    /// The server's data dir (removed when the test ends).
    _backend: common::backend::Backend,
    /// Where the browser saves downloads.
    pub downloads: tempfile::TempDir,
    pub browser: Client,
    http: reqwest::Client,
    _server: Killed,
    _driver: Killed,
    /// The witness and its policy file, in a world witnessed by one.
    pub witness: Option<(common::witness::WitnessProc, PathBuf)>,
    _witness_dir: tempfile::TempDir,
}

/// A world whose log is witnessed: one real `veritrail witness`, quorum that witness.
fn witnessed(dir: &Path) -> (common::witness::WitnessProc, PathBuf, String) {
    use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePrivateKey};
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let vkey = veritrail::log::note::NoteSigner::new("localhost/veritrail", key)
        .unwrap()
        .verifier()
        .to_string();
    let w = common::witness::start_witness(
        &dir.join("witness"),
        "w0.example",
        common::witness::free_port(),
        &[&vkey],
    );
    let policy = dir.join("policy");
    std::fs::write(
        &policy,
        format!("witness w0 {} {}\nquorum w0\n", w.vkey, w.url),
    )
    .unwrap();
    (w, policy, pem)
}

impl World {
    async fn start(browser_bin: &Path, driver_bin: &Path, with_witness: bool) -> Self {
        let backend = common::backend::Backend::new();
        let witness_dir = tempfile::tempdir().unwrap();
        let (witness, env) = if with_witness {
            let (w, policy, pem) = witnessed(witness_dir.path());
            let env = vec![
                ("VERITRAIL_SIGNING_KEY_PEM".to_owned(), pem),
                (
                    "VERITRAIL_WITNESS_POLICY".to_owned(),
                    policy.to_str().unwrap().to_owned(),
                ),
                ("VERITRAIL_WITNESS_INTERVAL_MS".to_owned(), "100".to_owned()),
            ];
            (Some((w, policy)), env)
        } else {
            (None, Vec::new())
        };
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (server, url) = common::start_server(&backend, &env);

        let server = Killed(server);
        let admin = std::fs::read_to_string(backend.path().join("admin-token"))
            .unwrap()
            .trim()
            .to_owned();
        let port = free_port();
        let driver = Killed(
            Command::new(driver_bin)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start chromedriver"),
        );
        let webdriver = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while http
            .get(format!("{webdriver}/status"))
            .send()
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let downloads = tempfile::tempdir().unwrap();
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": browser_bin,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1000", "--no-first-run", "--disable-extensions"],
                "prefs": {
                    "download.default_directory": downloads.path(),
                    "download.prompt_for_download": false,
                },
            },
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&webdriver)
            .await
            .expect("a browser session");
        World {
            url,
            admin,
            _backend: backend,
            downloads,
            browser,
            http,
            _server: server,
            _driver: driver,
            witness,
            _witness_dir: witness_dir,
        }
    }

    /// Call the API as `token` (fixtures are made through it, as a pipeline would); the
    /// call must succeed. The answer's JSON.
    pub async fn api(&self, method: &str, path: &str, token: &str, body: Value) -> Value {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = self
            .http
            .request(m, format!("{}{path}", self.url))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// A new token with `role`: its secret.
    pub async fn token(&self, name: &str, role: &str) -> String {
        let t = self
            .api(
                "POST",
                "/v1/tokens",
                &self.admin,
                json!({"name": name, "role": role}),
            )
            .await;
        t["token"].as_str().unwrap().to_owned()
    }

    /// The log's verifier key, as an auditor would have been given it.
    pub async fn verifier_key(&self) -> String {
        let k = self
            .http
            .get(format!("{}/v1/log/key", self.url))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        k["verifier_key"].as_str().unwrap().to_owned()
    }

    pub async fn open(&self, path: &str) {
        self.browser
            .goto(&format!("{}{path}", self.url))
            .await
            .unwrap();
    }

    /// Sign in through the login form, as a person would.
    pub async fn sign_in(&self, token: &str) {
        self.open("/console/login").await;
        self.fill("#token", token).await;
        self.click("form[action='/console/login'] button[type=submit]")
            .await;
        self.browser
            .wait()
            .for_url(&url::Url::parse(&format!("{}/console/", self.url)).unwrap())
            .await
            .expect("signed in: the overview");
    }

    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.browser
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    /// The visible text of the page's `main` element.
    pub async fn main_text(&self) -> String {
        self.find("main").await.text().await.unwrap()
    }

    /// Wait until `css`'s text contains `needle`; its text.
    pub async fn wait_for_text(&self, css: &str, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let text = match self.browser.find(Locator::Css(css)).await {
                Ok(e) => e.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if text.contains(needle) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{css} never said {needle:?}; it says {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Save a PNG of the page to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let png = self.browser.screenshot().await.unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

/// Run one browser test: a fresh world, then `body`; a screenshot under `target/` when
/// it fails. Skips (saying why) where no browser is installed.
pub async fn run<F, Fut>(test: &'static str, body: F)
where
    F: FnOnce(Arc<World>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    run_world(test, false, body).await
}

/// [`run`], with the log witnessed by one real witness (quorum: that witness).
pub async fn run_witnessed<F, Fut>(test: &'static str, body: F)
where
    F: FnOnce(Arc<World>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    run_world(test, true, body).await
}

async fn run_world<F, Fut>(test: &'static str, with_witness: bool, body: F)
where
    F: FnOnce(Arc<World>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some((browser, driver)) = should_run(test) else {
        return;
    };
    let world = Arc::new(World::start(&browser, &driver, with_witness).await);
    let outcome = tokio::spawn(body(world.clone())).await;
    if outcome.is_err() {
        let shot = screenshot_dir().join(format!("{test}.png"));
        world.screenshot(&shot).await;
        eprintln!("{test} failed; its screenshot: {}", shot.display());
    }
    // End the browser through its driver either way (killing the driver alone would
    // leave chromium running).
    world.browser.clone().close().await.ok();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
