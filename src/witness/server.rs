//! `veritrail witness`: a C2SP tlog-witness server. For each log it follows (origin and
//! verifier key) it keeps the latest checkpoint it cosigned (size and root), checked and
//! written durably under one lock before it answers, so it never cosigns two
//! inconsistent checkpoints of one origin, across restarts and `kill -9`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use actix_web::{web, HttpResponse};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use super::cosignature::{split_note, Cosigner};
use crate::log::merkle::{self, Hash};
use crate::log::note::{Checkpoint, NoteError, NoteVerifier};

/// The latest cosigned (size, root) of each origin.
type Records = HashMap<String, (u64, Hash)>;

pub struct Witness {
    cosigner: Cosigner,
    logs: HashMap<String, NoteVerifier>,
    records: Mutex<Records>,
    path: PathBuf,
}

const STATE_FILE: &str = "witness-state";
const KEY_FILE: &str = "witness-key.pem";
pub const VKEY_FILE: &str = "witness.vkey";

impl Witness {
    /// Open the witness in `dir`: its key (created 0600 on first start), its verifier key
    /// written beside it, and its records.
    pub fn open(dir: &Path, name: &str, logs: &[NoteVerifier]) -> anyhow::Result<Self> {
        crate::log::keyfile::private_dir(dir)?;
        let (key, _) = crate::log::keyfile::load_or_create(&dir.join(KEY_FILE))?;
        let cosigner = Cosigner::new(name, key)?;
        std::fs::write(dir.join(VKEY_FILE), format!("{}\n", cosigner.verifier()))?;
        let path = dir.join(STATE_FILE);
        let records = match std::fs::read_to_string(&path) {
            Ok(text) => parse_records(&text)
                .ok_or_else(|| anyhow::anyhow!("{} is not a witness state file", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Records::new(),
            Err(e) => return Err(e.into()),
        };
        Ok(Self {
            cosigner,
            logs: logs
                .iter()
                .map(|v| (v.name().to_owned(), v.clone()))
                .collect(),
            records: Mutex::new(records),
            path,
        })
    }

    pub fn verifier_key(&self) -> String {
        self.cosigner.verifier().to_string()
    }

    /// One `add-checkpoint` request: the status and the body to answer.
    pub fn add_checkpoint(&self, body: &str) -> (u16, &'static str, String) {
        let plain = "text/plain; charset=utf-8";
        let request = match AddCheckpoint::parse(body) {
            Ok(r) => r,
            Err(why) => return (400, plain, format!("{why}\n")),
        };
        let Some(key) = self.logs.get(&request.checkpoint.origin) else {
            return (404, plain, "unknown log origin\n".into());
        };
        match key.verify(request.note) {
            Ok(_) => {}
            Err(NoteError::Unverified(_)) | Err(NoteError::Malformed(_)) => {
                return (403, plain, "no valid signature by the log's key\n".into())
            }
            Err(e) => return (400, plain, format!("{e}\n")),
        }
        let (old, new) = (request.old, &request.checkpoint);
        if old > new.size {
            return (
                400,
                plain,
                "the old size is larger than the checkpoint's\n".into(),
            );
        }
        // Check and persist under one lock: two requests never both move the record.
        let mut records = self.records.lock().expect("witness records");
        let (known_size, known_root) = records
            .get(&new.origin)
            .copied()
            .unwrap_or((0, merkle::empty_root()));
        if old != known_size {
            return (409, "text/x.tlog.size", format!("{known_size}\n"));
        }
        if new.size == 0 && new.root != merkle::empty_root() {
            return (
                422,
                plain,
                "a tree of size 0 has the empty tree's root\n".into(),
            );
        }
        let consistent = if old == 0 {
            request.proof.is_empty()
        } else if old == new.size {
            request.proof.is_empty() && known_root == new.root
        } else {
            merkle::verify_consistency(old, new.size, &known_root, &new.root, &request.proof)
                .is_ok()
        };
        if !consistent {
            tracing::warn!(origin = %new.origin, old, size = new.size, "refused an inconsistent checkpoint");
            return (
                422,
                plain,
                "the checkpoint is not consistent with the one cosigned before\n".into(),
            );
        }
        let mut next = records.clone();
        next.insert(new.origin.clone(), (new.size, new.root));
        if let Err(e) = persist(&self.path, &next) {
            tracing::error!(error = %e, "cannot store the witness state");
            return (500, plain, "cannot store the witness state\n".into());
        }
        *records = next;
        drop(records);
        let now = chrono::Utc::now().timestamp().max(1) as u64;
        (200, plain, self.cosigner.cosign(request.text, now))
    }
}

/// A parsed `add-checkpoint` body.
struct AddCheckpoint<'a> {
    old: u64,
    proof: Vec<Hash>,
    note: &'a str,
    text: &'a str,
    checkpoint: Checkpoint,
}

impl<'a> AddCheckpoint<'a> {
    fn parse(body: &'a str) -> Result<Self, String> {
        let (head, note) = body
            .split_once("\n\n")
            .ok_or("expected the old size, the proof, an empty line and the checkpoint")?;
        let mut lines = head.split('\n');
        let old = lines
            .next()
            .and_then(|l| l.strip_prefix("old "))
            .filter(|s| {
                !s.is_empty()
                    && s.bytes().all(|b| b.is_ascii_digit())
                    && (s.len() == 1 || !s.starts_with('0'))
            })
            .and_then(|s| s.parse().ok())
            .ok_or("the first line must be `old <size>`")?;
        let proof = lines
            .map(|l| {
                B64.decode(l)
                    .ok()
                    .and_then(|v| <Hash>::try_from(v).ok())
                    .ok_or("a proof line is not a base64 hash")
            })
            .collect::<Result<Vec<Hash>, _>>()?;
        if proof.len() > 63 {
            return Err("more than 63 proof lines".into());
        }
        let (text, _) = split_note(note).ok_or("the checkpoint is not a signed note")?;
        let checkpoint = Checkpoint::parse(text).map_err(|e| e.to_string())?;
        Ok(Self {
            old,
            proof,
            note,
            text,
            checkpoint,
        })
    }
}

fn parse_records(text: &str) -> Option<Records> {
    text.lines()
        .map(|l| {
            let mut w = l.split(' ');
            let origin = w.next()?.to_owned();
            let size = w.next()?.parse().ok()?;
            let root = B64.decode(w.next()?).ok()?.try_into().ok()?;
            Some((origin, (size, root)))
        })
        .collect()
}

/// Write the records durably and atomically: a new file, synced, renamed over the old,
/// the directory synced.
fn persist(path: &Path, records: &Records) -> std::io::Result<()> {
    use std::io::Write;
    let mut text = String::new();
    let mut origins: Vec<_> = records.iter().collect();
    origins.sort();
    for (origin, (size, root)) in origins {
        text.push_str(&format!("{origin} {size} {}\n", B64.encode(root)));
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Serve the witness at `bind` until SIGINT/SIGTERM.
pub async fn serve(bind: &str, witness: Witness) -> anyhow::Result<()> {
    let witness = Arc::new(witness);
    let shared = witness.clone();
    let server = actix_web::HttpServer::new(move || {
        let w = shared.clone();
        actix_web::App::new()
            .app_data(web::PayloadConfig::new(64 * 1024))
            .route(
                "/add-checkpoint",
                web::post().to(move |body: web::Bytes| {
                    let w = w.clone();
                    async move {
                        let Ok(text) = std::str::from_utf8(&body) else {
                            return HttpResponse::BadRequest().body("the body is not UTF-8\n");
                        };
                        let text = text.to_owned();
                        let (status, ct, out) =
                            match web::block(move || w.add_checkpoint(&text)).await {
                                Ok(r) => r,
                                Err(_) => (500, "text/plain; charset=utf-8", String::new()),
                            };
                        HttpResponse::build(
                            actix_web::http::StatusCode::from_u16(status).expect("a status"),
                        )
                        .content_type(ct)
                        .body(out)
                    }
                }),
            )
    })
    .workers(2)
    .bind(bind)?
    .run();
    println!("{}", witness.verifier_key());
    tracing::info!(%bind, key = %witness.verifier_key(), "witness serving");
    server.await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_file_round_trips() {
        let mut r = Records::new();
        r.insert("example.com/log".into(), (42, [9; 32]));
        r.insert("other/log".into(), (0, merkle::empty_root()));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        persist(&path, &r).unwrap();
        assert_eq!(
            parse_records(&std::fs::read_to_string(&path).unwrap()),
            Some(r)
        );
    }
}
