//! The PostgreSQL backend: the same [`Store`] over tables (`schemas/postgres/`), for
//! several `veritrail serve` nodes sharing one log.
//!
//! Sequencing is serialised in the database, not in a process: a node's writer opens a
//! transaction and locks the single head row (`SELECT … FOR UPDATE`, no advisory locks,
//! so it ports to PostgreSQL-compatible engines), re-reads the head, checks the
//! requests of its batch against the projections, and writes entries, tiles,
//! projections, vault rows, the checkpoint and the new head in that one transaction.
//! Any other node's writer waits on the row lock meanwhile, so the projections it
//! reads after taking the lock include every committed batch.
//!
//! Connections: the `postgres` client drives its own small runtime and must not be
//! called from inside another (actix's handler threads are). Each connection therefore
//! lives on its own thread and is handed closures over a channel: one writer thread
//! (which holds the transaction between `lock_head` and `commit`) and a pool of
//! readers. Every method is a plain blocking call, safe from any thread.

use std::sync::{mpsc, Arc, Mutex};

use postgres::{Client, NoTls};

use std::ops::ControlFlow;

use super::rows::successor;
use super::{
    CommitBatch, Head, LogStore, OpsStore, RowStore, Rows, Store, StoreError, StoreResult, TileId,
    VaultStore,
};

/// Schema migrations, in order: (version, SQL).
pub const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../../schemas/postgres/0001_init.sql")),
    (2, include_str!("../../schemas/postgres/0002_ops.sql")),
];

fn pg(e: postgres::Error) -> StoreError {
    // The server's own message and SQLSTATE, which `Display` of the error leaves out.
    let what = match (e.as_db_error(), std::error::Error::source(&e)) {
        (Some(db), _) => format!("postgres: {} (SQLSTATE {})", db.message(), db.code().code()),
        (None, Some(cause)) => format!("postgres: {cause}"),
        (None, None) => "postgres".to_owned(),
    };
    StoreError::backend(what, e)
}

type Params<'a> = &'a [&'a (dyn postgres::types::ToSql + Sync)];

/// One connection, reopened when it breaks (outside a transaction only), with its
/// prepared statements (a statement prepared per query would cost a round trip more).
struct Conn {
    url: String,
    client: Option<Client>,
    /// Inside the writer's transaction (between `lock_head` and `commit`/`release`).
    in_tx: bool,
    statements: std::collections::HashMap<String, postgres::Statement>,
}

impl Conn {
    fn statement(&mut self, sql: &str) -> StoreResult<postgres::Statement> {
        if let Some(s) = self.statements.get(sql) {
            if self.client.as_ref().is_some_and(|c| !c.is_closed()) {
                return Ok(s.clone());
            }
        }
        let s = self.client()?.prepare(sql).map_err(pg)?;
        self.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    fn query(&mut self, sql: &str, params: Params<'_>) -> StoreResult<Vec<postgres::Row>> {
        let s = self.statement(sql)?;
        self.client()?.query(&s, params).map_err(pg)
    }

    fn query_opt(&mut self, sql: &str, params: Params<'_>) -> StoreResult<Option<postgres::Row>> {
        let s = self.statement(sql)?;
        self.client()?.query_opt(&s, params).map_err(pg)
    }

    fn execute(&mut self, sql: &str, params: Params<'_>) -> StoreResult<u64> {
        let s = self.statement(sql)?;
        self.client()?.execute(&s, params).map_err(pg)
    }

    fn client(&mut self) -> StoreResult<&mut Client> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.statements.clear();
            if self.in_tx {
                // The transaction (and its lock) died with the connection: whatever it
                // staged is gone, and nothing may be written outside a transaction.
                self.in_tx = false;
                self.client = None;
                return Err(StoreError::refused(
                    "postgres: the connection holding the log-head lock was lost",
                ));
            }
            let mut c = Client::connect(&self.url, NoTls).map_err(pg)?;
            c.batch_execute("SET plan_cache_mode = force_custom_plan")
                .map_err(pg)?;
            self.client = Some(c);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }
}

type Job = Box<dyn FnOnce(&mut Conn) + Send>;

/// Threads that each own one connection and run the closures sent to them.
struct Workers {
    tx: Mutex<mpsc::Sender<Job>>,
}

impl Workers {
    fn start(url: &str, n: usize, name: &str) -> StoreResult<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..n.max(1) {
            let rx = rx.clone();
            let mut conn = Conn {
                url: url.to_owned(),
                client: None,
                in_tx: false,
                statements: Default::default(),
            };
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || loop {
                    let job = rx.lock().expect("job queue").recv();
                    match job {
                        Ok(job) => job(&mut conn),
                        Err(_) => return,
                    }
                })
                .map_err(|e| StoreError::backend(format!("cannot start {name} thread"), e))?;
        }
        Ok(Self { tx: Mutex::new(tx) })
    }

    fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Conn) -> StoreResult<R> + Send + 'static,
    ) -> StoreResult<R> {
        let (rtx, rrx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |conn| {
            let _ = rtx.send(f(conn));
        });
        self.tx
            .lock()
            .expect("job queue")
            .send(job)
            .map_err(|_| StoreError::refused("postgres: connection threads stopped"))?;
        rrx.recv()
            .map_err(|_| StoreError::refused("postgres: a connection thread died"))?
    }

    /// Run `f` with a connected client.
    fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<R, postgres::Error> + Send + 'static,
    ) -> StoreResult<R> {
        self.run(move |conn| f(conn.client()?).map_err(pg))
    }
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn idx(n: u64) -> StoreResult<i64> {
    i64::try_from(n).map_err(|_| StoreError::Corrupt(format!("index {n} out of range")))
}

fn hash32(b: Vec<u8>, what: &str) -> StoreResult<[u8; 32]> {
    b.try_into()
        .map_err(|_| StoreError::Corrupt(format!("{what} is not 32 bytes")))
}

/// A key-value table (projections or vault) read by ranges.
#[derive(Clone, Copy)]
struct Table(&'static str);

const PROJECTION: Table = Table("veritrail_projection");
const VAULT: Table = Table("veritrail_vault");

impl Table {
    fn get(self, w: &Workers, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        let key = key.to_vec();
        let sql = format!("SELECT v FROM {} WHERE k = $1", self.0);
        w.run(move |c| Ok(c.query_opt(&sql, &[&key])?.map(|r| r.get(0))))
    }

    /// Rows with `lo <= k` (or `lo < k` when `lo_excl`) and `k < hi`, ordered, at most `n`.
    fn rows(
        self,
        w: &Workers,
        lo: Option<(Vec<u8>, bool)>,
        hi: Option<Vec<u8>>,
        reverse: bool,
        n: usize,
    ) -> StoreResult<Rows> {
        let mut sql = format!("SELECT k, v FROM {} WHERE true", self.0);
        let mut args: Vec<Vec<u8>> = Vec::new();
        if let Some((lo, excl)) = lo {
            args.push(lo);
            sql += &format!(" AND k {} ${}", if excl { ">" } else { ">=" }, args.len());
        }
        if let Some(hi) = hi {
            args.push(hi);
            sql += &format!(" AND k < ${}", args.len());
        }
        sql += if reverse {
            " ORDER BY k DESC"
        } else {
            " ORDER BY k"
        };
        sql += &format!(" LIMIT ${}", args.len() + 1);
        let n = limit(n);
        w.run(move |c| {
            let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> = args
                .iter()
                .map(|a| a as &(dyn postgres::types::ToSql + Sync))
                .collect();
            params.push(&n);
            Ok(c.query(&sql, &params)?
                .into_iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect())
        })
    }

    fn range(
        self,
        w: &Workers,
        lo: &[u8],
        hi: &[u8],
        reverse: bool,
        n: usize,
    ) -> StoreResult<Rows> {
        if lo >= hi {
            return Ok(Vec::new());
        }
        self.rows(w, Some((lo.to_vec(), false)), Some(hi.to_vec()), reverse, n)
    }

    fn scan(
        self,
        w: &Workers,
        prefix: &[u8],
        cursor: Option<&[u8]>,
        reverse: bool,
        n: usize,
    ) -> StoreResult<Rows> {
        let end = successor(prefix);
        let (lo, hi) = match (cursor, reverse) {
            (None, _) => (Some((prefix.to_vec(), false)), end),
            (Some(c), false) => (Some((c.to_vec().max(prefix.to_vec()), c >= prefix)), end),
            (Some(c), true) => {
                let hi = match end {
                    Some(e) if e.as_slice() < c => e,
                    _ => c.to_vec(),
                };
                (Some((prefix.to_vec(), false)), Some(hi))
            }
        };
        self.rows(w, lo, hi, reverse, n)
    }

    /// Upserts and deletes, inside the caller's transaction.
    fn write(
        self,
        c: &mut Conn,
        rows: std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    ) -> StoreResult<()> {
        let (mut pk, mut pv, mut del) = (Vec::new(), Vec::new(), Vec::new());
        for (k, v) in rows {
            match v {
                Some(v) => {
                    pk.push(k);
                    pv.push(v);
                }
                None => del.push(k),
            }
        }
        if !del.is_empty() {
            c.execute(
                &format!("DELETE FROM {} WHERE k = ANY($1)", self.0),
                &[&del],
            )?;
        }
        if !pk.is_empty() {
            c.execute(
                &format!(
                    "INSERT INTO {} (k, v) SELECT * FROM unnest($1::bytea[], $2::bytea[]) \
                     ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
                    self.0
                ),
                &[&pk, &pv],
            )?;
        }
        Ok(())
    }
}

/// The PostgreSQL store. Cheap to share; every method blocks its caller only.
pub struct PgStore {
    writer: Workers,
    readers: Workers,
}

impl PgStore {
    /// Connect (`url` in libpq form, `postgres://user@host:port/db`), apply any missing
    /// migrations, and start `readers` reader connections besides the writer's.
    pub fn open(url: &str, readers: usize) -> StoreResult<Self> {
        let store = Self {
            writer: Workers::start(url, 1, "veritrail-pg-writer")?,
            readers: Workers::start(url, readers, "veritrail-pg-reader")?,
        };
        store.migrate()?;
        Ok(store)
    }

    /// The schema version the database is at after applying what is missing.
    pub fn migrate(&self) -> StoreResult<i32> {
        self.writer.call(|c| {
            // Two nodes starting together: the table lock makes the second wait and
            // then find the migrations applied.
            let exists: bool = c
                .query_one(
                    "SELECT to_regclass('veritrail_schema_version') IS NOT NULL",
                    &[],
                )?
                .get(0);
            if !exists {
                // Another node may create it at the same moment: then this fails and
                // the table is there.
                let _ = c.batch_execute(
                    "CREATE TABLE IF NOT EXISTS veritrail_schema_version (
                         version int PRIMARY KEY,
                         applied_at timestamptz NOT NULL DEFAULT now())",
                );
            }
            let mut tx = c.transaction()?;
            tx.batch_execute("LOCK TABLE veritrail_schema_version IN EXCLUSIVE MODE")?;
            let have: i32 = tx
                .query_one(
                    "SELECT coalesce(max(version), 0) FROM veritrail_schema_version",
                    &[],
                )?
                .get(0);
            let mut at = have;
            for (version, sql) in MIGRATIONS {
                if *version > have {
                    tx.batch_execute(sql)?;
                    tx.execute(
                        "INSERT INTO veritrail_schema_version (version) VALUES ($1)",
                        &[version],
                    )?;
                    at = *version;
                }
            }
            tx.commit()?;
            Ok(at)
        })
    }

    fn head_row(row: Option<postgres::Row>) -> StoreResult<Option<Head>> {
        let Some(r) = row else {
            return Err(StoreError::Corrupt("the head row is missing".into()));
        };
        let size: Option<i64> = r.get(0);
        let Some(size) = size else { return Ok(None) };
        Ok(Some(Head {
            size: size as u64,
            root: hash32(r.get(1), "head root")?,
            last_time: r.get::<_, i64>(2) as u64,
            last_leaf: hash32(r.get(3), "head last leaf")?,
        }))
    }
}

const HEAD_SQL: &str = "SELECT size, root, last_time, last_leaf FROM veritrail_head WHERE id = 1";
const LOCK_HEAD_SQL: &str =
    "SELECT size, root, last_time, last_leaf FROM veritrail_head WHERE id = 1 FOR UPDATE";

impl LogStore for PgStore {
    fn head(&self) -> StoreResult<Option<Head>> {
        let row = self.readers.run(|c| c.query_opt(HEAD_SQL, &[]))?;
        Self::head_row(row)
    }

    fn shared(&self) -> bool {
        true
    }

    fn lock_head(&self) -> StoreResult<Option<Head>> {
        let row = self.writer.run(|conn| {
            if conn.in_tx {
                // A round that ended without commit or release: start clean.
                conn.client()?.batch_execute("ROLLBACK").map_err(pg)?;
                conn.in_tx = false;
            }
            conn.client()?.batch_execute("BEGIN").map_err(pg)?;
            conn.in_tx = true;
            match conn.query_opt(LOCK_HEAD_SQL, &[]) {
                Ok(row) => Ok(row),
                Err(e) => {
                    if let Some(c) = conn.client.as_mut() {
                        let _ = c.batch_execute("ROLLBACK");
                    }
                    conn.in_tx = false;
                    Err(e)
                }
            }
        })?;
        Self::head_row(row)
    }

    fn release(&self) -> StoreResult<()> {
        self.writer.run(|conn| {
            if conn.in_tx {
                conn.in_tx = false;
                if let Some(c) = conn.client.as_mut() {
                    c.batch_execute("ROLLBACK").map_err(pg)?;
                }
            }
            Ok(())
        })
    }

    fn meta(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        let name = name.to_owned();
        self.readers.run(move |c| {
            Ok(
                c.query_opt("SELECT value FROM veritrail_meta WHERE name = $1", &[&name])?
                    .map(|r| r.get(0)),
            )
        })
    }

    fn entries(&self, start: u64, end: u64) -> StoreResult<Vec<Vec<u8>>> {
        if start >= end {
            return Ok(Vec::new());
        }
        let (s, e) = (idx(start)?, idx(end.min(i64::MAX as u64))?);
        let rows: Vec<(i64, Vec<u8>)> = self.readers.run(move |c| {
            Ok(c.query(
                "SELECT idx, bytes FROM veritrail_entry WHERE idx >= $1 AND idx < $2 ORDER BY idx",
                &[&s, &e],
            )?
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
        })?;
        // Entries are contiguous: stop at a gap rather than return a later one.
        let mut out = Vec::with_capacity(rows.len());
        for (i, b) in rows {
            if i as u64 != start + out.len() as u64 {
                break;
            }
            out.push(b);
        }
        Ok(out)
    }

    fn for_each_entry(
        &self,
        start: u64,
        f: &mut dyn FnMut(u64, &[u8]) -> ControlFlow<()>,
    ) -> StoreResult<()> {
        const CHUNK: i64 = 4096;
        let mut from = idx(start)?;
        loop {
            let rows: Vec<(i64, Vec<u8>)> = self.readers.run(move |c| {
                Ok(c.query(
                    "SELECT idx, bytes FROM veritrail_entry WHERE idx >= $1 ORDER BY idx LIMIT $2",
                    &[&from, &CHUNK],
                )?
                .into_iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect())
            })?;
            let n = rows.len() as i64;
            for (i, b) in rows {
                if f(i as u64, &b).is_break() {
                    return Ok(());
                }
                from = i + 1;
            }
            if n < CHUNK {
                return Ok(());
            }
        }
    }

    fn tile(&self, (level, index): TileId) -> StoreResult<Option<Vec<u8>>> {
        let (l, i) = (i16::from(level), idx(index)?);
        self.readers.run(move |c| {
            Ok(c.query_opt(
                "SELECT hashes FROM veritrail_tile WHERE level = $1 AND idx = $2",
                &[&l, &i],
            )?
            .map(|r| r.get(0)))
        })
    }

    fn checkpoint(&self, size: u64) -> StoreResult<Option<String>> {
        let s = idx(size)?;
        self.readers.run(move |c| {
            Ok(c.query_opt(
                "SELECT note FROM veritrail_checkpoint WHERE size = $1",
                &[&s],
            )?
            .map(|r| r.get(0)))
        })
    }

    fn checkpoints(&self, from: u64, n: usize) -> StoreResult<Vec<(u64, String)>> {
        let (f, n) = (idx(from)?, limit(n));
        self.readers.run(move |c| {
            Ok(c.query(
                "SELECT size, note FROM veritrail_checkpoint WHERE size >= $1 ORDER BY size LIMIT $2",
                &[&f, &n],
            )?
            .into_iter()
            .map(|r| (r.get::<_, i64>(0) as u64, r.get(1)))
            .collect())
        })
    }

    fn previous_checkpoint(&self, size: u64) -> StoreResult<Option<u64>> {
        let s = idx(size)?;
        self.readers.run(move |c| {
            Ok(c.query_opt(
                "SELECT size FROM veritrail_checkpoint WHERE size < $1 ORDER BY size DESC LIMIT 1",
                &[&s],
            )?
            .map(|r| r.get::<_, i64>(0) as u64))
        })
    }

    fn truncate_entries(&self, size: u64) -> StoreResult<usize> {
        // Under the head lock: entries beyond the head cannot exist (a batch commits
        // whole), but a log copied in by hand might hold some.
        let s = idx(size)?;
        self.writer.call(move |c| {
            let mut tx = c.transaction()?;
            let head: Option<i64> = tx
                .query_one(
                    "SELECT size FROM veritrail_head WHERE id = 1 FOR UPDATE",
                    &[],
                )?
                .get(0);
            let from = head.unwrap_or(0).max(s);
            let n = tx.execute("DELETE FROM veritrail_entry WHERE idx >= $1", &[&from])?;
            tx.commit()?;
            Ok(n as usize)
        })
    }
}

impl RowStore for PgStore {
    fn range(&self, lo: &[u8], hi: &[u8], reverse: bool, n: usize) -> StoreResult<Rows> {
        PROJECTION.range(&self.readers, lo, hi, reverse, n)
    }

    fn get(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        PROJECTION.get(&self.readers, key)
    }

    fn get_many(&self, keys: &[Vec<u8>]) -> StoreResult<Vec<Option<Vec<u8>>>> {
        let want = keys.to_vec();
        let found: std::collections::HashMap<Vec<u8>, Vec<u8>> = self.readers.run(move |c| {
            Ok(c.query(
                "SELECT k, v FROM veritrail_projection WHERE k = ANY($1)",
                &[&want],
            )?
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
        })?;
        Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
    }

    fn scan(
        &self,
        prefix: &[u8],
        cursor: Option<&[u8]>,
        reverse: bool,
        n: usize,
    ) -> StoreResult<Rows> {
        PROJECTION.scan(&self.readers, prefix, cursor, reverse, n)
    }

    fn clear_projections(&self) -> StoreResult<()> {
        self.writer
            .call(|c| c.batch_execute("TRUNCATE veritrail_projection"))
    }
}

impl VaultStore for PgStore {
    fn vault_get(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        VAULT.get(&self.readers, key)
    }

    fn vault_scan(&self, prefix: &[u8], n: usize) -> StoreResult<Rows> {
        VAULT.scan(&self.readers, prefix, None, false, n)
    }

    fn vault_range(&self, lo: &[u8], hi: &[u8], reverse: bool, n: usize) -> StoreResult<Rows> {
        VAULT.range(&self.readers, lo, hi, reverse, n)
    }

    fn vault_recover(&self, _log_size: u64) -> StoreResult<usize> {
        // Vault rows commit in the batch's transaction: nothing is ever half-written.
        Ok(0)
    }

    fn vault_compact(&self) -> StoreResult<usize> {
        // Deleted rows are gone from every query at commit; VACUUM returns their space
        // for reuse. (Their bytes can persist in free space until overwritten, and in
        // WAL archives and backups: see the README's erasure section.)
        self.readers.call(|c| {
            c.batch_execute("VACUUM veritrail_vault")?;
            Ok(c.query_one("SELECT count(*) FROM veritrail_vault", &[])?
                .get::<_, i64>(0) as usize)
        })
    }
}

const OPS: Table = Table("veritrail_ops");

impl OpsStore for PgStore {
    fn ops_get(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        OPS.get(&self.readers, key)
    }

    fn ops_put(&self, key: &[u8], value: &[u8]) -> StoreResult<()> {
        let (k, v) = (key.to_vec(), value.to_vec());
        self.readers.call(move |c| {
            c.execute(
                "INSERT INTO veritrail_ops (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
                &[&k, &v],
            )
            .map(|_| ())
        })
    }

    fn ops_delete(&self, key: &[u8]) -> StoreResult<()> {
        let k = key.to_vec();
        self.readers.call(move |c| {
            c.execute("DELETE FROM veritrail_ops WHERE k = $1", &[&k])
                .map(|_| ())
        })
    }

    fn ops_lease(&self, name: &str, holder: &str, now: u64, until: u64) -> StoreResult<bool> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        let (now, until) = (now as i64, until as i64);
        self.readers.call(move |c| {
            let mut tx = c.transaction()?;
            tx.execute(
                "INSERT INTO veritrail_lease (name, holder, until) VALUES ($1, '', 0) ON CONFLICT (name) DO NOTHING",
                &[&name],
            )?;
            let row = tx.query_one(
                "SELECT holder, until FROM veritrail_lease WHERE name = $1 FOR UPDATE",
                &[&name],
            )?;
            let (h, u): (String, i64) = (row.get(0), row.get(1));
            let mine = h == holder || u < now;
            if mine {
                tx.execute(
                    "UPDATE veritrail_lease SET holder = $2, until = $3 WHERE name = $1",
                    &[&name, &holder, &until],
                )?;
            }
            tx.commit()?;
            Ok(mine)
        })
    }
}

impl Store for PgStore {
    fn commit(&self, batch: CommitBatch) -> StoreResult<()> {
        self.writer.run(move |conn| {
            if !conn.in_tx {
                // Projection or vault rows alone (a reindex, a copy's vault) need no
                // lock; anything that moves the log does.
                if batch.head.is_some() || !batch.entries.is_empty() {
                    return Err(StoreError::refused(
                        "postgres: commit of entries without the log-head lock",
                    ));
                }
                conn.client()?.batch_execute("BEGIN").map_err(pg)?;
                conn.in_tx = true;
            }
            let result = (|| -> StoreResult<()> {
                let c = &mut *conn;
                if !batch.entries.is_empty() {
                    let first = batch.first_index as i64;
                    let idxs: Vec<i64> =
                        (0..batch.entries.len() as i64).map(|i| first + i).collect();
                    c.execute(
                        "INSERT INTO veritrail_entry (idx, bytes) \
                         SELECT * FROM unnest($1::int8[], $2::bytea[])",
                        &[&idxs, &batch.entries],
                    )?;
                }
                if !batch.tiles.is_empty() {
                    let (mut ls, mut is, mut hs) = (Vec::new(), Vec::new(), Vec::new());
                    for ((l, i), h) in batch.tiles {
                        ls.push(i16::from(l));
                        is.push(i as i64);
                        hs.push(h);
                    }
                    c.execute(
                        "INSERT INTO veritrail_tile (level, idx, hashes) \
                         SELECT * FROM unnest($1::int2[], $2::int8[], $3::bytea[]) \
                         ON CONFLICT (level, idx) DO UPDATE SET hashes = EXCLUDED.hashes",
                        &[&ls, &is, &hs],
                    )?;
                }
                if !batch.checkpoints.is_empty() {
                    let (sizes, notes): (Vec<i64>, Vec<&str>) = batch
                        .checkpoints
                        .iter()
                        .map(|(s, n)| (*s as i64, n.as_str()))
                        .unzip();
                    c.execute(
                        "INSERT INTO veritrail_checkpoint (size, note) \
                         SELECT * FROM unnest($1::int8[], $2::text[])",
                        &[&sizes, &notes],
                    )?;
                }
                PROJECTION.write(c, batch.projections)?;
                VAULT.write(c, batch.vault)?;
                for (name, value) in &batch.meta {
                    c.execute(
                        "INSERT INTO veritrail_meta (name, value) VALUES ($1, $2) \
                         ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
                        &[name, value],
                    )?;
                }
                if let Some(h) = batch.head {
                    c.execute(
                        "UPDATE veritrail_head SET size = $1, root = $2, last_time = $3, \
                         last_leaf = $4 WHERE id = 1",
                        &[
                            &(h.size as i64),
                            &h.root.as_slice(),
                            &(h.last_time as i64),
                            &h.last_leaf.as_slice(),
                        ],
                    )?;
                }
                c.client()?.batch_execute("COMMIT").map_err(pg)
            })();
            conn.in_tx = false;
            if let Err(e) = result {
                if let Some(c) = conn.client.as_mut() {
                    let _ = c.batch_execute("ROLLBACK");
                }
                return Err(e);
            }
            Ok(())
        })
    }
}
