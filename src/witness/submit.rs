//! Witnessing by the log: a task per witness of the policy sends it, at most once per
//! interval, the log's newest checkpoint with a consistency proof from the size the
//! witness last cosigned (C2SP tlog-witness `add-checkpoint`), and keeps the cosignatures
//! it returns beside the checkpoint, in the operational-state store. Nothing of it runs
//! on the append path: receipts carry the log's own checkpoint at once.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use super::cosignature::split_note;
use super::policy::Policy;
use crate::error::AppError;
use crate::log::merkle::Hash;
use crate::log::{Ledger, Published};
use crate::storage::Store;

/// How the log witnesses (from `serve`'s options).
#[derive(Debug, Clone)]
pub struct WitnessingConfig {
    pub policy: Arc<Policy>,
    /// At most one request per witness this often.
    pub interval: Duration,
    /// A quorum missing this long is the finding `witnessing_lag`.
    pub lag_after: Duration,
}

const COSIGNATURES: &[u8] = b"cos\0";
const QUORUM: &[u8] = b"cosq\0";
const WITNESS: &[u8] = b"wit\0";
const SINCE: &[u8] = b"wsince\0";
const FAILING: &[u8] = b"wfail\0";

fn key(family: &[u8], tail: &[u8]) -> Vec<u8> {
    [family, tail].concat()
}

fn u64_pair(v: &[u8]) -> Option<(u64, u64)> {
    (v.len() == 16).then(|| {
        (
            u64::from_be_bytes(v[..8].try_into().expect("8 bytes")),
            u64::from_be_bytes(v[8..].try_into().expect("8 bytes")),
        )
    })
}

fn pair(a: u64, b: u64) -> Vec<u8> {
    [a.to_be_bytes(), b.to_be_bytes()].concat()
}

/// The cosignature lines gathered for the checkpoint of `size`.
pub fn cosignatures(store: &dyn Store, size: u64) -> Result<String, AppError> {
    Ok(store
        .ops_get(&key(COSIGNATURES, &size.to_be_bytes()))?
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default())
}

/// The newest checkpoint that met the quorum: (size, when it did, unix µs).
pub fn quorum_size(store: &dyn Store) -> Result<Option<(u64, u64)>, AppError> {
    Ok(store.ops_get(QUORUM)?.as_deref().and_then(u64_pair))
}

/// The size a witness last cosigned and when (unix µs).
pub fn witness_size(store: &dyn Store, name: &str) -> Result<Option<(u64, u64)>, AppError> {
    Ok(store
        .ops_get(&key(WITNESS, name.as_bytes()))?
        .as_deref()
        .and_then(u64_pair))
}

/// Since when (unix µs) a witness has failed to cosign, if its last request failed.
pub fn failing_since(store: &dyn Store, name: &str) -> Result<Option<u64>, AppError> {
    Ok(store
        .ops_get(&key(FAILING, name.as_bytes()))?
        .and_then(|v| v.try_into().ok().map(u64::from_be_bytes)))
}

/// Note the outcome of a request to a witness: a failure starts (or continues) its
/// failing streak, a cosignature ends it.
async fn note_outcome(store: &Arc<dyn Store>, name: &str, ok: bool) {
    let (s, k) = (store.clone(), key(FAILING, name.as_bytes()));
    let now = crate::log::sequencer::now_micros();
    let _ = actix_web::rt::task::spawn_blocking(move || -> Result<(), AppError> {
        match (ok, s.ops_get(&k)?) {
            (true, Some(_)) => s.ops_delete(&k)?,
            (false, None) => s.ops_put(&k, &now.to_be_bytes())?,
            _ => {}
        }
        Ok(())
    })
    .await;
}

/// The signed note of the checkpoint of `size` with every cosignature gathered for it.
pub fn cosigned_note(store: &dyn Store, size: u64) -> Result<Option<String>, AppError> {
    let Some(note) = store.checkpoint(size)? else {
        return Ok(None);
    };
    Ok(Some(note + &cosignatures(store, size)?))
}

/// The checkpoint to serve: with a policy that asks for witnesses, the newest that met
/// the quorum, with its cosignatures (none yet: `None`); without, the newest signed.
pub fn served_checkpoint<E>(
    ledger: &Ledger<E>,
    policy: Option<&Policy>,
) -> Result<Option<(u64, String)>, AppError> {
    match policy {
        Some(p) if p.requires_witnesses() => {
            let store = &**ledger.store();
            let Some((size, _)) = quorum_size(store)? else {
                return Ok(None);
            };
            Ok(cosigned_note(store, size)?.map(|n| (size, n)))
        }
        _ => {
            let l = ledger.latest();
            Ok(Some((l.size, l.note)))
        }
    }
}

/// A valid cosignature a witness returned.
struct Cosigned {
    /// The witness, by its place in the policy.
    witness: usize,
    size: u64,
    /// The checkpoint's note text.
    text: String,
    line: String,
    at: u64,
}

/// Keep a witness's cosignature beside its checkpoint, and move the quorum mark when the
/// checkpoint now meets it. `lock` orders the read-modify-writes of this process's
/// witness tasks.
fn keep(
    store: &dyn Store,
    policy: &Policy,
    c: &Cosigned,
    lock: &Mutex<()>,
) -> Result<(), AppError> {
    let _g = lock.lock().expect("cosignature lock");
    let (w, size, text, line, now) = (c.witness, c.size, c.text.as_str(), c.line.as_str(), c.at);
    // This witness's earlier line for the size is replaced; another's stays, even under
    // the same key name.
    let by = &policy.witnesses[w].key;
    let mut lines: Vec<String> = cosignatures(store, size)?
        .lines()
        .filter(|l| !by.names_key_of(l))
        .map(|l| format!("{l}\n"))
        .collect();
    lines.push(line.to_owned());
    let all = lines.concat();
    store.ops_put(&key(COSIGNATURES, &size.to_be_bytes()), all.as_bytes())?;
    store.ops_put(
        &key(WITNESS, policy.witnesses[w].name.as_bytes()),
        &pair(size, now),
    )?;
    let valid: BTreeSet<usize> = policy
        .cosigned_by(text, &all)
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    if policy.satisfied(&valid) && quorum_size(store)?.is_none_or(|(s, _)| s < size) {
        store.ops_put(QUORUM, &pair(size, now))?;
    }
    Ok(())
}

/// Start a task per witness of the policy that has a URL; they end once `stopping`
/// is set.
pub fn start(
    ledger: Ledger<AppError>,
    config: WitnessingConfig,
    stopping: Arc<AtomicBool>,
) -> Vec<actix_web::rt::task::JoinHandle<()>> {
    let lock = Arc::new(Mutex::new(()));
    let store = ledger.store().clone();
    let now = crate::log::sequencer::now_micros();
    // Since when the quorum could be missing: the first start with this policy.
    if let Ok(None) = store.ops_get(SINCE) {
        let _ = store.ops_put(SINCE, &now.to_be_bytes());
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client");
    (0..config.policy.witnesses.len())
        .filter(|w| config.policy.witnesses[*w].url.is_some())
        .map(|w| {
            actix_web::rt::spawn(follow(
                ledger.clone(),
                config.clone(),
                w,
                client.clone(),
                lock.clone(),
                stopping.clone(),
            ))
        })
        .collect()
}

/// The witness's answer to one request, as this side acts on it.
enum Answer {
    Cosigned(String),
    /// 409: the witness's size is this.
    Conflict(u64),
    Refused(String),
}

/// One witness, for as long as the service runs.
async fn follow(
    ledger: Ledger<AppError>,
    config: WitnessingConfig,
    w: usize,
    client: reqwest::Client,
    lock: Arc<Mutex<()>>,
    stopping: Arc<AtomicBool>,
) {
    let mut f = Follower::new(ledger, config, w, client, lock);
    loop {
        if f.conflicts == 0 {
            tokio::time::sleep(f.wait).await;
        }
        if stopping.load(Ordering::Relaxed) {
            return;
        }
        f.round().await;
    }
}

/// The longest wait between requests to a failing witness.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// One witness's task: whom it asks, and what it knows between requests.
struct Follower {
    ledger: Ledger<AppError>,
    store: Arc<dyn Store>,
    policy: Arc<Policy>,
    interval: Duration,
    /// The witness, by its place in the policy.
    w: usize,
    client: reqwest::Client,
    lock: Arc<Mutex<()>>,
    url: String,
    lease: String,
    holder: String,
    /// The size the witness holds, as far as this task knows.
    old: u64,
    wait: Duration,
    /// 409s in a row.
    conflicts: u32,
}

impl Follower {
    /// Set up the task of witness `w`: its URL, its lease, and the size it last cosigned.
    fn new(
        ledger: Ledger<AppError>,
        config: WitnessingConfig,
        w: usize,
        client: reqwest::Client,
        lock: Arc<Mutex<()>>,
    ) -> Self {
        let policy = config.policy.clone();
        let witness = &policy.witnesses[w];
        let url = format!(
            "{}/add-checkpoint",
            witness.url.as_deref().expect("a witness with a URL")
        );
        let lease = format!("witness:{}", witness.name);
        let holder = format!("{:016x}", rand::random::<u64>());
        let store = ledger.store().clone();
        let old = witness_size(&*store, &witness.name)
            .ok()
            .flatten()
            .map_or(0, |(s, _)| s);
        Self {
            ledger,
            store,
            policy,
            interval: config.interval,
            w,
            client,
            lock,
            url,
            lease,
            holder,
            old,
            wait: config.interval,
            conflicts: 0,
        }
    }

    /// The witness this task follows.
    fn witness(&self) -> &super::policy::Witness {
        &self.policy.witnesses[self.w]
    }

    /// Wait twice as long before the next request, a minute at most.
    fn back_off(&mut self) {
        self.wait = (self.wait * 2).min(MAX_WAIT);
    }

    /// One request to the witness, when this node holds its lease and the log has
    /// grown past what it cosigned (or it asked for another size).
    async fn round(&mut self) {
        let Some(cosigned) = self.hold_lease().await else {
            self.wait = self.interval;
            return;
        };
        let latest = self.ledger.latest();
        if self.conflicts == 0 && cosigned.is_some_and(|(s, _)| s >= latest.size) {
            self.wait = self.interval;
            return;
        }
        if self.old > latest.size {
            tracing::error!(witness = %self.witness().name, witness_size = self.old, log_size = latest.size, "the witness has cosigned a larger tree than this log's: is another log using this key?");
            note_outcome(&self.store, &self.witness().name, false).await;
            self.back_off();
            return;
        }
        let Some(proof) = self.proof(latest.size).await else {
            self.back_off();
            return;
        };
        let answer = self.ask(&proof, &latest.note).await;
        self.act(answer, &latest).await;
    }

    /// Take the witness's lease; and (another node may have held it) read what the
    /// witness last cosigned. `None` when the lease is another node's or unreadable.
    async fn hold_lease(&self) -> Option<Option<(u64, u64)>> {
        let now = crate::log::sequencer::now_micros();
        let (s, l, h, name) = (
            self.store.clone(),
            self.lease.clone(),
            self.holder.clone(),
            self.witness().name.clone(),
        );
        let held = actix_web::rt::task::spawn_blocking(move || {
            if !s.ops_lease(&l, &h, now, now + 10_000_000)? {
                return Ok(None);
            }
            witness_size(&*s, &name).map(Some)
        })
        .await;
        let Ok(Ok::<_, AppError>(Some(cosigned))) = held else {
            return None;
        };
        Some(cosigned)
    }

    /// The consistency proof from the witness's size to `size` (none needed from 0 or
    /// to the same size); `None`, logged, when the log cannot give it.
    async fn proof(&self, size: u64) -> Option<Vec<Hash>> {
        let old = self.old;
        if old == 0 || old == size {
            return Some(Vec::new());
        }
        let reader = self.ledger.clone();
        let proof =
            actix_web::rt::task::spawn_blocking(move || reader.consistency(old, Some(size))).await;
        match proof {
            Ok(Ok((_, p))) => Some(p),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "witnessing: no consistency proof");
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "witnessing: no consistency proof");
                None
            }
        }
    }

    /// Send the witness the checkpoint `note` with `proof` (C2SP `add-checkpoint`),
    /// and read its answer.
    async fn ask(&self, proof: &[Hash], note: &str) -> Answer {
        let mut body = format!("old {}\n", self.old);
        for h in proof {
            body.push_str(&B64.encode(h));
            body.push('\n');
        }
        body.push('\n');
        body.push_str(note);
        match self.client.post(&self.url).body(body).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                let text = r.text().await.unwrap_or_default();
                match status {
                    200 => Answer::Cosigned(text),
                    409 => match text.trim_end_matches('\n').parse() {
                        Ok(size) => Answer::Conflict(size),
                        Err(_) => Answer::Refused("409 without a size".into()),
                    },
                    s => Answer::Refused(format!("HTTP {s}: {}", text.trim())),
                }
            }
            Err(e) => Answer::Refused(format!("unreachable: {e}")),
        }
    }

    /// Act on the witness's answer about the checkpoint `latest`.
    async fn act(&mut self, answer: Answer, latest: &Published) {
        match answer {
            Answer::Cosigned(lines) => {
                self.conflicts = 0;
                self.keep_cosignature(&lines, latest).await;
            }
            Answer::Conflict(size) => {
                // The witness holds another size: prove from it, at once (twice at most
                // in a row, then wait as usual).
                self.old = size;
                self.conflicts += 1;
                if self.conflicts > 2 {
                    self.conflicts = 0;
                    self.back_off();
                }
            }
            Answer::Refused(why) => {
                self.conflicts = 0;
                tracing::warn!(witness = %self.witness().name, reason = %why, "the witness did not cosign");
                note_outcome(&self.store, &self.witness().name, false).await;
                self.back_off();
            }
        }
    }

    /// Keep the witness's valid cosignature of `latest` among `lines` (none: a failure).
    async fn keep_cosignature(&mut self, lines: &str, latest: &Published) {
        let witness = &self.policy.witnesses[self.w];
        let (text, _) = split_note(&latest.note).expect("the log's checkpoint is a note");
        let Some(line) = lines
            .lines()
            .find(|l| witness.key.verify_line(text, l).is_some())
        else {
            tracing::warn!(witness = %witness.name, "the witness answered without a valid cosignature by its key");
            note_outcome(&self.store, &witness.name, false).await;
            self.back_off();
            return;
        };
        let cosigned = Cosigned {
            witness: self.w,
            size: latest.size,
            text: text.to_owned(),
            line: format!("{line}\n"),
            at: crate::log::sequencer::now_micros(),
        };
        let (s, p, lock) = (self.store.clone(), self.policy.clone(), self.lock.clone());
        let kept =
            actix_web::rt::task::spawn_blocking(move || keep(&*s, &p, &cosigned, &lock)).await;
        if !matches!(kept, Ok(Ok(()))) {
            tracing::error!(witness = %witness.name, "cannot store a cosignature");
        }
        note_outcome(&self.store, &witness.name, true).await;
        self.old = latest.size;
        self.wait = self.interval;
    }
}

/// The witnessing metrics (Prometheus text) for a log of `log_size` entries at `now`.
pub fn metrics(
    store: &dyn Store,
    policy: &Policy,
    log_size: u64,
    now: u64,
) -> Result<String, AppError> {
    let mut out = String::from(
        "# HELP veritrail_witness_cosigned_size The tree size each witness last cosigned\n# TYPE veritrail_witness_cosigned_size gauge\n",
    );
    for w in &policy.witnesses {
        let size = witness_size(store, &w.name)?.map_or(0, |(s, _)| s);
        // Witness names come from the operator's policy file (no spaces, no quotes).
        out += &format!(
            "veritrail_witness_cosigned_size{{witness=\"{}\"}} {size}\n",
            w.name.replace(['"', '\\', '\n'], "_")
        );
    }
    let (size, at) = quorum_size(store)?.unwrap_or((0, 0));
    let lag = if size >= log_size || at == 0 {
        0.0
    } else {
        now.saturating_sub(at) as f64 / 1e6
    };
    out += &format!(
        "# HELP veritrail_witness_quorum_size The newest tree size that met the witness quorum\n# TYPE veritrail_witness_quorum_size gauge\nveritrail_witness_quorum_size {size}\n\
         # HELP veritrail_witness_quorum_lag_seconds Seconds since a checkpoint last met the quorum while the log has grown past it (0: the newest is cosigned)\n# TYPE veritrail_witness_quorum_lag_seconds gauge\nveritrail_witness_quorum_lag_seconds {lag:.3}\n"
    );
    Ok(out)
}

/// The findings about witnessing at `now`: while no checkpoint has met the quorum for
/// `lag_after` and the log has grown past the newest that did, `witnessing_lag` for each
/// witness that has failed to cosign for `lag_after` (no system; subject: the witness's
/// name in the policy).
pub fn findings(
    store: &dyn Store,
    policy: &Policy,
    now: u64,
    lag_after: Duration,
) -> Result<Vec<crate::register::projections::findings::Finding>, AppError> {
    use crate::fields::rfc3339;
    if !policy.requires_witnesses() {
        return Ok(Vec::new());
    }
    let lag = lag_after.as_micros() as u64;
    let log_size = store.head()?.map_or(0, |h| h.size);
    let since = store
        .ops_get(SINCE)?
        .and_then(|v| v.try_into().ok().map(u64::from_be_bytes))
        .unwrap_or(now);
    let (cosigned, at) = quorum_size(store)?.unwrap_or((0, since));
    if cosigned >= log_size || now.saturating_sub(at) < lag {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for w in &policy.witnesses {
        let Some(failing) = failing_since(store, &w.name)? else {
            continue;
        };
        if now.saturating_sub(failing) < lag {
            continue;
        }
        let last = witness_size(store, &w.name)?;
        out.push(crate::register::projections::findings::Finding {
            code: "witnessing_lag".into(),
            severity: crate::register::projections::findings::Severity::High,
            explanation: format!(
                "no checkpoint has met the witness quorum since {} (the newest cosigned has {cosigned} entries, the log {log_size}); witness {} has failed to cosign since {} (last cosigned: {})",
                rfc3339(at),
                w.name,
                rfc3339(failing),
                last.map_or("never".to_owned(), |(s, t)| format!("size {s} at {}", rfc3339(t)))
            ),
            // The last entry the newest cosigned checkpoint covers.
            evidence: cosigned.checked_sub(1).into_iter().collect(),
            since: rfc3339(failing.max(at)),
            model_version: None,
            subject: Some(w.name.clone()),
        });
    }
    Ok(out)
}
