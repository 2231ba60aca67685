//! Faults beyond `kill -9`, against the real binary on the embedded store: a filesystem
//! that fills while writers run (507 `storage-full`, reads go on, writes resume by
//! themselves when space returns), and I/O errors on write and sync injected by an
//! `LD_PRELOAD` shim built here (tests/faults/iofail.c): nothing whose write or sync
//! failed is acknowledged, the writer stops (503 `storage-failed`, `/readyz` failing)
//! instead of trusting a retried sync, and a restart without the shim recovers every
//! acknowledged entry. They run once, on the sled run (PostgreSQL keeps its own disk).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// What the writers saw: acknowledged decisions (id, index) and every other answer
/// (status, problem type).
#[derive(Default)]
struct Seen {
    acked: Vec<(String, u64)>,
    refused: Vec<(u16, String)>,
}

/// Writer threads posting decisions (their inputs go to the vault) until `stop`.
struct Writers {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Writers {
    fn start(url: &str, pipeline: &str, n: usize, tag: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<Seen>> = Default::default();
        let threads = (0..n)
            .map(|w| {
                let (url, token, stop, seen) = (
                    url.to_owned(),
                    pipeline.to_owned(),
                    stop.clone(),
                    seen.clone(),
                );
                let name = format!("{tag}-w{w}");
                std::thread::spawn(move || {
                    let client = reqwest::blocking::Client::new();
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let id = format!("{name}-{i}");
                        i += 1;
                        let (status, body) = post_decision(&client, &url, &token, &id);
                        let mut s = seen.lock().unwrap();
                        if status == 201 {
                            s.acked
                                .push((id, body["receipt"]["index"].as_u64().unwrap()));
                        } else {
                            s.refused.push((status, problem_type(&body)));
                            drop(s);
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            seen,
            threads,
        }
    }

    /// Wait until `f` holds of what they saw (at most 60 s).
    fn until(&self, what: &str, f: impl Fn(&Seen) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !f(&self.seen.lock().unwrap()) {
            assert!(Instant::now() < deadline, "timed out waiting: {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        Arc::try_unwrap(self.seen)
            .ok()
            .unwrap()
            .into_inner()
            .unwrap()
    }
}

fn post_decision(
    client: &reqwest::blocking::Client,
    url: &str,
    token: &str,
    id: &str,
) -> (u16, Value) {
    let body = json!({"decision_id": id, "model_version": "1", "occurred_at": "2026-11-25T10:00:00Z",
        "subject_ref": format!("subject-{id}"), "input_sha256": "c".repeat(64),
        "inputs": {"k": id, "pad": "p".repeat(2000)}, "output": {"approved": true}, "reasons": []});
    let r = client
        .post(format!("{url}/v1/systems/crash/decisions"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn problem_type(p: &Value) -> String {
    p["type"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches("urn:veritrail:problem:")
        .to_owned()
}

fn status_of(url: &str, path: &str, token: Option<&str>) -> u16 {
    let mut r = reqwest::blocking::Client::new().get(format!("{url}{path}"));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().unwrap().status().as_u16()
}

fn admin_token(backend: &common::Backend) -> String {
    std::fs::read_to_string(backend.path().join("admin-token"))
        .unwrap()
        .trim()
        .to_owned()
}

/// After a restart: every acknowledged decision is there, at its receipt's index, and
/// the offline verification of the whole log passes.
fn assert_recovered(backend: &common::Backend, acked: &[(String, u64)], auditor: &str) {
    let (mut child, url) = common::start_server(backend, &[]);
    let client = reqwest::blocking::Client::new();
    for (id, index) in acked {
        let d: Value = client
            .get(format!("{url}/v1/systems/crash/decisions/{id}"))
            .bearer_auth(auditor)
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(d["index"].as_u64(), Some(*index), "{id} acknowledged: {d}");
    }
    common::stop_server(&mut child);
    let out = Command::new(common::BIN)
        .arg("verify")
        .args(backend.args())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---- a filesystem that fills ----

/// A tmpfs of `mb` MiB mounted for this test (root only: without the right to mount,
/// the test fails, as a missing browser does), unmounted when dropped.
struct Tmpfs {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Tmpfs {
    fn mount(mb: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fs");
        std::fs::create_dir(&path).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mb}m,mode=0700"),
                "tmpfs",
            ])
            .arg(&path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a size-limited tmpfs and needs the right to (run as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { _dir: dir, path }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Bytes available on the filesystem holding `p`.
fn available(p: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a statvfs to fill.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    st.f_bavail as u64 * st.f_frsize as u64
}

/// Fill the filesystem of `dir` until `leave` bytes are available, with real bytes (a
/// sparse file would take no space).
fn fill(dir: &Path, leave: u64) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0x5a; 1 << 20];
    while available(dir) > leave + chunk.len() as u64 {
        f.write_all(&chunk).unwrap();
    }
    f.sync_all().unwrap();
    path
}

const RESERVE_MB: u64 = 8;

#[test]
fn a_full_filesystem_refuses_writes_with_507_serves_reads_and_resumes_when_space_returns() {
    if !common::backend::sled_run("a_full_filesystem_refuses_writes_with_507") {
        return;
    }
    let fs = Tmpfs::mount(160);
    let backend = common::Backend {
        dir: tempfile::tempdir_in(&fs.path).unwrap(),
        url: None,
    };
    let reserve = RESERVE_MB.to_string();
    let env = [
        ("VERITRAIL_STORAGE_RESERVE_MB", reserve.as_str()),
        ("VERITRAIL_CACHE_MB", "16"),
    ];
    let (mut child, url) = common::start_server(&backend, &env);
    let admin = admin_token(&backend);
    let (pipeline, auditor) = common::setup_system_http(&url, &admin);
    // Leave a few MiB above the reserve, then let writers use them up.
    let filler = fill(&fs.path, (RESERVE_MB + 6) << 20);
    let writers = Writers::start(&url, &pipeline, 2, "full");
    writers.until("the writers meet a full disk", |s| {
        s.refused.len() >= 4 && !s.acked.is_empty()
    });

    // While it lasts: writes refused whole, reads served, not ready.
    assert_eq!(status_of(&url, "/readyz", None), 503);
    assert_eq!(status_of(&url, "/v1/log/checkpoint", Some(&auditor)), 200);
    let (status, p) = post_decision(
        &reqwest::blocking::Client::new(),
        &url,
        &pipeline,
        "full-now",
    );
    assert_eq!(
        (status, problem_type(&p).as_str()),
        (507, "storage-full"),
        "{p}"
    );

    // Space returns: writes resume by themselves.
    let before = writers.seen.lock().unwrap().acked.len();
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while status_of(&url, "/readyz", None) != 200 {
        assert!(Instant::now() < deadline, "not ready after space returned");
        std::thread::sleep(Duration::from_millis(50));
    }
    writers.until("writes are acknowledged again", |s| {
        s.acked.len() > before + 10
    });
    let seen = writers.stop();
    for (status, kind) in &seen.refused {
        assert_eq!(
            (*status, kind.as_str()),
            (507, "storage-full"),
            "every refusal while full is 507 storage-full"
        );
    }

    // Nothing acknowledged is lost across a kill -9.
    child.kill().unwrap();
    child.wait().unwrap();
    assert_recovered(&backend, &seen.acked, &auditor);
}

// ---- I/O errors on write and sync ----

/// The shim, built once per test run.
fn shim() -> &'static Path {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/faults/iofail.c");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("libiofail.so");
        let built = Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&out)
            .arg(&src)
            .arg("-ldl")
            .output()
            .expect("run cc");
        assert!(
            built.status.success(),
            "building the I/O fault shim: {}",
            String::from_utf8_lossy(&built.stderr)
        );
        out
    })
}

/// Run writers against a server whose I/O under `scope` (a directory of its data dir)
/// fails in `mode` once the trigger file exists; then restart without the shim.
fn io_fault(mode: &str, scope: &str) {
    let backend = common::Backend::new();
    let work = tempfile::tempdir().unwrap();
    let trigger = work.path().join("trigger");
    let faults = work.path().join("faults.log");
    let scope_dir = backend.path().join(scope);
    std::fs::create_dir_all(&scope_dir).unwrap();
    let (s, t, l) = (
        scope_dir.display().to_string(),
        trigger.display().to_string(),
        faults.display().to_string(),
    );
    let shim = shim().display().to_string();
    let env = [
        ("LD_PRELOAD", shim.as_str()),
        ("VERITRAIL_FAULT_DIR", s.as_str()),
        ("VERITRAIL_FAULT_TRIGGER", t.as_str()),
        ("VERITRAIL_FAULT_MODE", mode),
        ("VERITRAIL_FAULT_LOG", l.as_str()),
    ];
    let (mut child, url) = common::start_server(&backend, &env);
    let admin = admin_token(&backend);
    let (pipeline, auditor) = common::setup_system_http(&url, &admin);
    let writers = Writers::start(&url, &pipeline, 2, mode);
    writers.until("writes land", |s| s.acked.len() >= 20);
    std::fs::write(&trigger, b"").unwrap();
    writers.until("a write meets the failure", |s| !s.refused.is_empty());
    // The fault passes (for `sync-once` it already has: the next sync would succeed);
    // the writer must not trust a retry.
    std::fs::remove_file(&trigger).unwrap();
    let failed_at = writers.seen.lock().unwrap().acked.len();
    std::thread::sleep(Duration::from_millis(300));
    let seen = writers.stop();
    assert!(
        std::fs::read_to_string(&faults).is_ok_and(|f| !f.is_empty()),
        "the shim injected no failure"
    );
    assert_eq!(
        seen.acked.len(),
        failed_at,
        "a write was acknowledged after the store failed"
    );
    for (status, kind) in &seen.refused {
        assert_eq!((*status, kind.as_str()), (503, "storage-failed"));
    }
    assert_eq!(status_of(&url, "/readyz", None), 503);
    assert_eq!(status_of(&url, "/v1/log/checkpoint", Some(&auditor)), 200);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_recovered(&backend, &seen.acked, &auditor);
}

#[test]
fn a_failed_sync_is_never_acknowledged_and_stops_the_writer() {
    if common::backend::sled_run("a_failed_sync_is_never_acknowledged_and_stops_the_writer") {
        io_fault("sync", "ledger");
    }
}

#[test]
fn a_sync_that_fails_once_is_not_retried_into_a_false_success() {
    if common::backend::sled_run("a_sync_that_fails_once_is_not_retried_into_a_false_success") {
        io_fault("sync-once", "ledger/entries");
    }
}

#[test]
fn a_failed_write_is_never_acknowledged_and_stops_the_writer() {
    if common::backend::sled_run("a_failed_write_is_never_acknowledged_and_stops_the_writer") {
        io_fault("write", "ledger/entries");
    }
}
