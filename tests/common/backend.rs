//! The storage backend a test runs against: sled in a temp dir (the default), or, when
//! `VERITRAIL_TEST_DATABASE_URL` names a PostgreSQL server (scripts/test starts a
//! throwaway cluster and sets it), a fresh database of its own on that server. One set
//! of tests, two backends.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use veritrail::register::projections::keys::packing;
use veritrail::storage::postgres::PgStore;
use veritrail::storage::sled::SledStore;
use veritrail::storage::{LogStore as _, Store};

pub const DATABASE_ENV: &str = "VERITRAIL_TEST_DATABASE_URL";

/// The server URL of the PostgreSQL run, if this is one.
pub fn server_url() -> Option<String> {
    std::env::var(DATABASE_ENV).ok().filter(|s| !s.is_empty())
}

/// Run `f` with a connection to `url`, on a thread of its own (the synchronous client
/// must not run inside the tests' async runtimes).
pub fn with_pg<R: Send + 'static>(
    url: &str,
    f: impl FnOnce(&mut postgres::Client) -> R + Send + 'static,
) -> R {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
        f(&mut c)
    })
    .join()
    .expect("postgres helper thread")
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, _) = url
        .rsplit_once('/')
        .expect("a postgres:// URL with a database");
    format!("{base}/{db}")
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A new, empty database on the server; its URL.
pub fn fresh_database(server: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let name = format!(
        "vt_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let sql = format!("CREATE DATABASE {name}");
    with_pg(server, move |c| c.batch_execute(&sql).unwrap());
    with_database(server, &name)
}

pub struct Backend {
    /// The data dir (the key and admin token live here with either backend).
    pub dir: tempfile::TempDir,
    /// The database of this test, on the PostgreSQL run.
    pub url: Option<String>,
}

impl Backend {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            url: server_url().map(|s| fresh_database(&s)),
        }
    }

    pub fn name(&self) -> &'static str {
        if self.url.is_some() {
            "postgres"
        } else {
            "sled"
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The store, opened (again) at this backend's location.
    pub fn open(&self) -> Arc<dyn Store> {
        match &self.url {
            Some(url) => Arc::new(PgStore::open(url, 2).unwrap()),
            None => Arc::new(SledStore::open(&self.dir.path().join("ledger"), &packing()).unwrap()),
        }
    }

    /// Arguments that point a `veritrail` command at this backend.
    pub fn args(&self) -> Vec<String> {
        let mut a = vec![
            "--data-dir".to_owned(),
            self.dir.path().display().to_string(),
        ];
        if let Some(url) = &self.url {
            a.extend(["--database-url".to_owned(), url.clone()]);
        }
        a
    }

    /// Rewrite the stored entries behind the service's back, as someone with access to
    /// the storage would (stop the service first).
    pub fn tamper_entries(&self, f: impl FnOnce(&mut Vec<Vec<u8>>) + Send + 'static) {
        match &self.url {
            Some(url) => with_pg(url, move |c| {
                let mut entries: Vec<Vec<u8>> = c
                    .query("SELECT bytes FROM veritrail_entry ORDER BY idx", &[])
                    .unwrap()
                    .into_iter()
                    .map(|r| r.get(0))
                    .collect();
                f(&mut entries);
                let mut tx = c.transaction().unwrap();
                tx.execute("DELETE FROM veritrail_entry", &[]).unwrap();
                for (i, e) in entries.iter().enumerate() {
                    tx.execute(
                        "INSERT INTO veritrail_entry (idx, bytes) VALUES ($1, $2)",
                        &[&(i as i64), e],
                    )
                    .unwrap();
                }
                tx.commit().unwrap();
            }),
            None => tamper_sled(&self.dir.path().join("ledger"), f),
        }
    }

    /// Where `needle` is still stored: files of the data dir (sled), or tables holding
    /// it (PostgreSQL; see the README on erasure and PostgreSQL's own files).
    pub fn holding(&self, needle: &[u8]) -> Vec<String> {
        match &self.url {
            Some(url) => {
                let needle = needle.to_vec();
                with_pg(url, move |c| {
                    let mut out = Vec::new();
                    for (table, col) in [
                        ("veritrail_vault", "v"),
                        ("veritrail_vault", "k"),
                        ("veritrail_projection", "v"),
                        ("veritrail_entry", "bytes"),
                    ] {
                        let n: i64 = c
                            .query_one(
                                &format!(
                                    "SELECT count(*) FROM {table} WHERE position($1::bytea in {col}) > 0"
                                ),
                                &[&needle],
                            )
                            .unwrap()
                            .get(0);
                        if n > 0 {
                            out.push(format!("{table}.{col}"));
                        }
                    }
                    out
                })
            }
            None => files_containing(self.dir.path(), needle),
        }
    }
}

impl Default for Backend {
    fn default() -> Self {
        Self::new()
    }
}

pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    hits.push(p.display().to_string());
                }
            }
        }
    }
    hits
}

/// Tamper with the stored entries of a sled log: read them all, let `f` change them,
/// and write them back as one bundle stored inline in the tree (the form older logs
/// used, which the store still reads), removing the segment files.
fn tamper_sled(path: &Path, f: impl FnOnce(&mut Vec<Vec<u8>>)) {
    let mut entries = {
        let store = SledStore::open(path, &packing()).unwrap();
        store.entries(0, u64::MAX).unwrap()
    };
    f(&mut entries);
    let db = sled::open(path).unwrap();
    let tree = db.open_tree("ledger").unwrap();
    let keys: Vec<_> = tree.scan_prefix(b"e").map(|kv| kv.unwrap().0).collect();
    for k in keys {
        tree.remove(k).unwrap();
    }
    let mut bundle = Vec::new();
    for e in &entries {
        bundle.extend_from_slice(&(e.len() as u32).to_be_bytes());
        bundle.extend_from_slice(e);
    }
    let mut k = vec![b'e'];
    k.extend_from_slice(&0u64.to_be_bytes());
    tree.insert(k, bundle).unwrap();
    db.flush().unwrap();
    drop(db);
    std::fs::remove_dir_all(path.join("entries")).unwrap();
}

/// Whether a test that does not depend on the backend runs here: once, on the sled run
/// (it says so and skips on the PostgreSQL run).
pub fn sled_run(test: &str) -> bool {
    if server_url().is_some() {
        eprintln!("{test}: runs once, on the sled run");
        return false;
    }
    true
}
