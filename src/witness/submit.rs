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
use crate::log::Ledger;
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
    let name = &policy.witnesses[w].key;
    let prefix = format!("\u{2014} {} ", name.name());
    let mut lines: Vec<String> = cosignatures(store, size)?
        .lines()
        .filter(|l| !l.starts_with(&prefix))
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
    let policy = config.policy.clone();
    let witness = &policy.witnesses[w];
    let url = format!(
        "{}/add-checkpoint",
        witness.url.as_deref().expect("a witness with a URL")
    );
    let lease = format!("witness:{}", witness.name);
    let holder = format!("{:016x}", rand::random::<u64>());
    let store = ledger.store().clone();
    let mut old = witness_size(&*store, &witness.name)
        .ok()
        .flatten()
        .map_or(0, |(s, _)| s);
    let mut wait = config.interval;
    let mut conflicts = 0;
    loop {
        if conflicts == 0 {
            tokio::time::sleep(wait).await;
        }
        if stopping.load(Ordering::Relaxed) {
            return;
        }
        let now = crate::log::sequencer::now_micros();
        let (s, l, h, name) = (
            store.clone(),
            lease.clone(),
            holder.clone(),
            witness.name.clone(),
        );
        // The lease, and (another node may have held it) what the witness last cosigned.
        let held = actix_web::rt::task::spawn_blocking(move || {
            if !s.ops_lease(&l, &h, now, now + 10_000_000)? {
                return Ok(None);
            }
            witness_size(&*s, &name).map(Some)
        })
        .await;
        let Ok(Ok::<_, AppError>(Some(cosigned))) = held else {
            wait = config.interval;
            continue;
        };
        let latest = ledger.latest();
        if conflicts == 0 && cosigned.is_some_and(|(s, _)| s >= latest.size) {
            wait = config.interval;
            continue;
        }
        if old > latest.size {
            tracing::error!(witness = %witness.name, witness_size = old, log_size = latest.size, "the witness has cosigned a larger tree than this log's: is another log using this key?");
            note_outcome(&store, &witness.name, false).await;
            wait = (wait * 2).min(Duration::from_secs(60));
            continue;
        }
        let proof = if old == 0 || old == latest.size {
            Vec::new()
        } else {
            let (reader, size) = (ledger.clone(), latest.size);
            let proof =
                actix_web::rt::task::spawn_blocking(move || reader.consistency(old, Some(size)))
                    .await;
            match proof {
                Ok(Ok((_, p))) => p,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "witnessing: no consistency proof");
                    wait = (wait * 2).min(Duration::from_secs(60));
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "witnessing: no consistency proof");
                    wait = (wait * 2).min(Duration::from_secs(60));
                    continue;
                }
            }
        };
        let mut body = format!("old {old}\n");
        for h in &proof {
            body.push_str(&B64.encode(h));
            body.push('\n');
        }
        body.push('\n');
        body.push_str(&latest.note);
        let answer = match client.post(&url).body(body).send().await {
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
        };
        match answer {
            Answer::Cosigned(lines) => {
                conflicts = 0;
                let (text, _) = split_note(&latest.note).expect("the log's checkpoint is a note");
                let Some(line) = lines
                    .lines()
                    .find(|l| witness.key.verify_line(text, l).is_some())
                else {
                    tracing::warn!(witness = %witness.name, "the witness answered without a valid cosignature by its key");
                    note_outcome(&store, &witness.name, false).await;
                    wait = (wait * 2).min(Duration::from_secs(60));
                    continue;
                };
                let cosigned = Cosigned {
                    witness: w,
                    size: latest.size,
                    text: text.to_owned(),
                    line: format!("{line}\n"),
                    at: crate::log::sequencer::now_micros(),
                };
                let (s, p, lock) = (store.clone(), policy.clone(), lock.clone());
                let kept =
                    actix_web::rt::task::spawn_blocking(move || keep(&*s, &p, &cosigned, &lock))
                        .await;
                if !matches!(kept, Ok(Ok(()))) {
                    tracing::error!(witness = %witness.name, "cannot store a cosignature");
                }
                note_outcome(&store, &witness.name, true).await;
                old = latest.size;
                wait = config.interval;
            }
            Answer::Conflict(size) => {
                // The witness holds another size: prove from it, at once (twice at most
                // in a row, then wait as usual).
                old = size;
                conflicts += 1;
                if conflicts > 2 {
                    conflicts = 0;
                    wait = (wait * 2).min(Duration::from_secs(60));
                }
            }
            Answer::Refused(why) => {
                conflicts = 0;
                tracing::warn!(witness = %witness.name, reason = %why, "the witness did not cosign");
                note_outcome(&store, &witness.name, false).await;
                wait = (wait * 2).min(Duration::from_secs(60));
            }
        }
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
) -> Result<Vec<crate::register::compliance::Finding>, AppError> {
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
        out.push(crate::register::compliance::Finding {
            code: "witnessing_lag".into(),
            severity: crate::register::compliance::Severity::High,
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
