//! `veritrail audit`: an auditor's monitor of a live log. Each run fetches the latest
//! checkpoint and verifies its signature, proves it consistent with the checkpoint seen
//! last time (kept in a state file), downloads the new entries, checks their `prev`
//! links and recomputes the root from them. A fork, a rewrite, a rollback or a bad
//! signature is an alert.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::log::chain::Chain;
use crate::log::merkle::{self, Frontier, Hash};
use crate::log::note::{Checkpoint, NoteVerifier};

/// What the monitor remembers between runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MonitorState {
    pub origin: String,
    pub size: u64,
    pub root: String,
    pub last_leaf: String,
    /// The right edge of the tree: `[level, hash]`, largest first.
    pub frontier: Vec<(u8, String)>,
    pub checkpoint: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Alert {
    #[error("ALERT: the checkpoint's signature does not verify with the given key: {0}")]
    BadSignature(String),
    #[error("ALERT: fork: {0}")]
    Fork(String),
    #[error("ALERT: the log shrank from {old} to {new} entries (rollback)")]
    Rollback { old: u64, new: u64 },
    #[error("ALERT: rewrite at entry {index}: {reason}")]
    Rewrite { index: u64, reason: String },
    #[error("ALERT: {0}")]
    Unwitnessed(String),
    #[error("cannot check the log: {0}")]
    Unreachable(String),
}

#[derive(Debug, Clone)]
pub struct MonitorReport {
    pub previous_size: u64,
    pub size: u64,
    pub new_entries: u64,
    pub root: Hash,
    /// The witnesses of the policy whose cosignatures verified (none without a policy).
    pub cosigned_by: Vec<String>,
}

fn h(s: &str) -> Result<Hash, Alert> {
    hex::decode(s)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| Alert::Unreachable(format!("{s:?} is not a hash")))
}

/// One monitoring run.
pub fn run(
    url: &str,
    key: &NoteVerifier,
    token: Option<&str>,
    state_path: Option<&Path>,
    policy: Option<&crate::witness::policy::Policy>,
) -> Result<MonitorReport, Alert> {
    let server = Server::new(url, token)?;
    let note = server
        .get("/v1/log/checkpoint")?
        .text()
        .map_err(|e| Alert::Unreachable(e.to_string()))?;
    let cp = Checkpoint::open(&note, key).map_err(|e| Alert::BadSignature(e.to_string()))?;
    let cosigned_by = match policy {
        Some(p) => p.check(&note).map_err(Alert::Unwitnessed)?,
        None => Vec::new(),
    };
    let old = load_state(state_path)?;
    let (mut frontier, prev, start) = match &old {
        Some(s) => resume(&server, s, &cp)?,
        None => (Frontier::new(), [0u8; 32], 0),
    };
    let prev = follow(&server, &cp, &mut frontier, prev, start)?;
    if frontier.root() != cp.root {
        return Err(Alert::Rewrite {
            index: start,
            reason: format!(
                "the entries from {start} do not produce the signed root of size {}",
                cp.size
            ),
        });
    }
    if let Some(p) = state_path {
        save_state(p, &cp, prev, &frontier, note)?;
    }
    Ok(MonitorReport {
        previous_size: start,
        size: cp.size,
        new_entries: cp.size - start,
        root: cp.root,
        cosigned_by,
    })
}

/// The log's server, as the monitor reads it.
struct Server<'a> {
    client: reqwest::blocking::Client,
    url: &'a str,
    token: Option<&'a str>,
}

impl<'a> Server<'a> {
    fn new(url: &'a str, token: Option<&'a str>) -> Result<Self, Alert> {
        let client = reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| Alert::Unreachable(e.to_string()))?;
        Ok(Self {
            client,
            url: url.trim_end_matches('/'),
            token,
        })
    }

    fn get(&self, path: &str) -> Result<reqwest::blocking::Response, Alert> {
        let mut r = self.client.get(format!("{}{path}", self.url));
        if let Some(t) = self.token {
            r = r.bearer_auth(t);
        }
        let res = r
            .send()
            .map_err(|e| Alert::Unreachable(format!("GET {path}: {e}")))?;
        if !res.status().is_success() {
            return Err(Alert::Unreachable(format!(
                "GET {path}: HTTP {}",
                res.status()
            )));
        }
        Ok(res)
    }
}

/// What the last run saw, if a state file holds it.
fn load_state(state_path: Option<&Path>) -> Result<Option<MonitorState>, Alert> {
    match state_path {
        Some(p) if p.exists() => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| Alert::Unreachable(format!("state file: {e}")))?;
            Ok(Some(serde_json::from_str(&text).map_err(|e| {
                Alert::Unreachable(format!("state file: {e}"))
            })?))
        }
        _ => Ok(None),
    }
}

/// The new checkpoint must extend the one seen before (same origin, no rollback, the
/// same root at the same size, a consistency proof otherwise); returns where to go on
/// from: (the right edge seen, its last leaf, its size).
fn resume(
    server: &Server<'_>,
    s: &MonitorState,
    cp: &Checkpoint,
) -> Result<(Frontier, Hash, u64), Alert> {
    if s.origin != cp.origin {
        return Err(Alert::Fork(format!(
            "the state file is for log {:?}, not {:?}",
            s.origin, cp.origin
        )));
    }
    let old_root = h(&s.root)?;
    if cp.size < s.size {
        return Err(Alert::Rollback {
            old: s.size,
            new: cp.size,
        });
    }
    if cp.size == s.size && cp.root != old_root {
        return Err(Alert::Fork(format!(
            "two different signed roots for size {}",
            cp.size
        )));
    }
    if cp.size > s.size && s.size > 0 {
        #[derive(Deserialize)]
        struct P {
            hashes: Vec<String>,
        }
        let p: P = server
            .get(&format!(
                "/v1/log/proofs/consistency?from={}&to={}",
                s.size, cp.size
            ))?
            .json()
            .map_err(|e| Alert::Unreachable(e.to_string()))?;
        let proof = p
            .hashes
            .iter()
            .map(|x| h(x))
            .collect::<Result<Vec<_>, _>>()?;
        merkle::verify_consistency(s.size, cp.size, &old_root, &cp.root, &proof).map_err(|e| {
            Alert::Fork(format!(
                "checkpoint {} is not an extension of the {} seen before: {e}",
                cp.size, s.size
            ))
        })?;
    }
    let nodes = s
        .frontier
        .iter()
        .map(|(l, x)| Ok((*l, h(x)?)))
        .collect::<Result<Vec<_>, Alert>>()?;
    let f = Frontier::from_nodes(nodes)
        .ok_or_else(|| Alert::Unreachable("state file frontier is malformed".into()))?;
    Ok((f, h(&s.last_leaf)?, s.size))
}

/// Read the entries from `start` to the checkpoint's size, checking their chain and
/// extending `frontier`; returns the last leaf.
fn follow(
    server: &Server<'_>,
    cp: &Checkpoint,
    frontier: &mut Frontier,
    mut prev: Hash,
    start: u64,
) -> Result<Hash, Alert> {
    #[derive(Deserialize)]
    struct Page {
        entries: Vec<E>,
    }
    #[derive(Deserialize)]
    struct E {
        index: u64,
        raw: String,
    }
    let mut next = start;
    // The leaf before `start` is known (the state file's, or zeros at 0); the time of
    // the entry before is not, so the order is checked from `start` on.
    let mut chain = Chain::resume(start, Some(prev), 0);
    while next < cp.size {
        let limit = (cp.size - next).min(1000);
        let page: Page = server
            .get(&format!("/v1/log/entries?start={next}&limit={limit}"))?
            .json()
            .map_err(|e| Alert::Unreachable(e.to_string()))?;
        if page.entries.is_empty() {
            return Err(Alert::Rewrite {
                index: next,
                reason: "the server has no entry the signed checkpoint covers".into(),
            });
        }
        for e in page.entries {
            if e.index != next {
                return Err(Alert::Rewrite {
                    index: next,
                    reason: format!("served entry {} in its place", e.index),
                });
            }
            let raw = B64.decode(&e.raw).map_err(|_| Alert::Rewrite {
                index: next,
                reason: "raw is not base64".into(),
            })?;
            let link = chain.check(next, &raw).map_err(|x| Alert::Rewrite {
                index: next,
                reason: x.to_string(),
            })?;
            prev = link.leaf;
            frontier.push(prev);
            next += 1;
            if next == cp.size {
                break;
            }
        }
    }
    Ok(prev)
}

/// Keep what this run saw for the next one (written whole, then renamed).
fn save_state(
    p: &Path,
    cp: &Checkpoint,
    prev: Hash,
    frontier: &Frontier,
    note: String,
) -> Result<(), Alert> {
    let st = MonitorState {
        origin: cp.origin.clone(),
        size: cp.size,
        root: hex::encode(cp.root),
        last_leaf: hex::encode(prev),
        frontier: frontier
            .nodes()
            .iter()
            .map(|(l, x)| (*l, hex::encode(x)))
            .collect(),
        checkpoint: note,
    };
    let tmp = p.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&st).expect("state encodes"))
        .map_err(|e| Alert::Unreachable(format!("state file: {e}")))?;
    std::fs::rename(&tmp, p).map_err(|e| Alert::Unreachable(format!("state file: {e}")))?;
    Ok(())
}
