//! The tlog-tiles read API read by an independent client: Cloudflare's `tlog_tiles` (Go's
//! sumdb/tlog, ported) reconstructs the tree from the served hash tiles and checks every
//! tile against the checkpoint's root, and `signed_note` checks the log's signature on
//! the checkpoint. At sizes around the 256 and 65,536 boundaries, partial tiles included,
//! its proofs agree with the service's own, and entry bundles hash to the level-0 tiles.

mod common;

use std::cell::Cell;

use serde_json::{json, Value};
use signed_note::{Note, StandardVerifier, VerifierList};
use tlog_tiles::{
    prove_record, record_hash, tree_hash, Checkpoint, HashReader, Tile, TileHashReader, TileReader,
};

/// Reads tiles over HTTP from `/tile/<L>/<N>[.p/<W>]` (tlog-tiles drops Go's height
/// segment: the height is always 8).
struct HttpTiles {
    url: String,
    client: reqwest::blocking::Client,
    fetched: Cell<usize>,
}

impl TileReader for HttpTiles {
    fn height(&self) -> u8 {
        8
    }

    fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, tlog_tiles::Error> {
        tiles
            .iter()
            .map(|t| {
                let path = t.path();
                let c2sp = path.replacen("tile/8/", "tile/", 1);
                let r = self
                    .client
                    .get(format!("{}/{c2sp}", self.url))
                    .send()
                    .map_err(|_| tlog_tiles::Error::InvalidTile)?;
                if r.status() != 200 {
                    return Err(tlog_tiles::Error::InvalidTile);
                }
                let cache = r.headers()["cache-control"].to_str().unwrap().to_owned();
                assert_eq!(
                    cache.contains("immutable"),
                    t.width() == 256,
                    "{c2sp}: {cache}"
                );
                self.fetched.set(self.fetched.get() + 1);
                Ok(r.bytes().unwrap().to_vec())
            })
            .collect()
    }

    fn save_tiles(&self, _: &[Tile], _: &[Vec<u8>]) {}
}

/// A real log with the fixture system, and its verifier key.
struct Log {
    real: common::RealLog,
    vkey: String,
}

impl std::ops::Deref for Log {
    type Target = common::RealLog;
    fn deref(&self) -> &common::RealLog {
        &self.real
    }
}

fn log() -> Log {
    let real = common::RealLog::start(&[]);
    let key: Value = reqwest::blocking::get(format!("{}/v1/log/key", real.url))
        .unwrap()
        .json()
        .unwrap();
    Log {
        real,
        vkey: key["verifier_key"].as_str().unwrap().to_owned(),
    }
}

/// Append decisions in batches until the log holds at least `size` entries; its
/// checkpoint then (the note).
fn grow_to(log: &Log, size: u64, next_id: &mut u64) -> String {
    loop {
        let note = reqwest::blocking::get(format!("{}/checkpoint", log.url))
            .unwrap()
            .text()
            .unwrap();
        let have = common::witness::size_of(&note);
        if have >= size {
            return note;
        }
        let n = (size - have).min(10_000);
        let decisions: Vec<Value> = (0..n)
            .map(|i| common::decision(&format!("t-{}", *next_id + i), "1", "s-1"))
            .collect();
        *next_id += n;
        common::post_json(
            &log.url,
            &log.pipeline,
            "/v1/systems/crash/decisions/batch",
            json!({ "decisions": decisions }),
        );
    }
}

/// The independent client's view at `note`: the checkpoint verified with `signed_note`,
/// the tree hash rebuilt from the tiles with `tlog_tiles`, its proofs compared with the
/// service's for `indices`, and the right edge's entry bundle against the level-0 tile.
fn check_at(log: &Log, note: &str, indices: &[u64]) {
    let verifier = StandardVerifier::new(&log.vkey).unwrap();
    let parsed = Note::from_bytes(note.as_bytes()).unwrap();
    let (verified, _) = parsed
        .verify(&VerifierList::new(vec![Box::new(verifier)]))
        .expect("the log's signature verifies with signed_note");
    assert_eq!(verified.len(), 1);
    let cp = Checkpoint::from_bytes(parsed.text()).unwrap();
    let size = cp.size();
    let tiles = HttpTiles {
        url: log.url.clone(),
        client: reqwest::blocking::Client::new(),
        fetched: Cell::new(0),
    };
    let reader = TileHashReader::new(size, *cp.hash(), &tiles);
    // TileHashReader checks each tile it loads against the checkpoint's root.
    assert_eq!(tree_hash(size, &reader).unwrap(), *cp.hash(), "size {size}");
    assert!(tiles.fetched.get() > 0);
    let client = reqwest::blocking::Client::new();
    for &i in indices.iter().filter(|i| **i < size) {
        let theirs = prove_record(size, i, &reader).unwrap();
        let ours: Value = client
            .get(format!(
                "{}/v1/log/proofs/inclusion?index={i}&tree_size={size}",
                log.url
            ))
            .bearer_auth(&log.auditor)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let ours: Vec<String> = ours["hashes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap().to_owned())
            .collect();
        let theirs: Vec<String> = theirs.iter().map(|h| hex::encode(h.0)).collect();
        assert_eq!(ours, theirs, "inclusion proof of {i} at {size}");
    }
    // The last entry bundle (partial unless the size is a multiple of 256).
    let (n, w) = (size / 256, size % 256);
    let (n, w) = if w == 0 { (n - 1, 256) } else { (n, w) };
    let bundle_path =
        Tile::new(8, 0, n, w as u32, false)
            .path()
            .replacen("tile/8/0/", "tile/entries/", 1);
    let r = client
        .get(format!("{}/{bundle_path}", log.url))
        .bearer_auth(&log.auditor)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{bundle_path}");
    let bytes = r.bytes().unwrap();
    let mut at = 0;
    let mut k = 0u64;
    while at < bytes.len() {
        let len = u16::from_be_bytes([bytes[at], bytes[at + 1]]) as usize;
        let entry = &bytes[at + 2..at + 2 + len];
        let leaf = reader
            .read_hashes(&[tlog_tiles::stored_hash_index(0, n * 256 + k)])
            .unwrap()[0];
        assert_eq!(
            record_hash(entry),
            leaf,
            "entry {} of {bundle_path}",
            n * 256 + k
        );
        at += 2 + len;
        k += 1;
    }
    assert_eq!(k, w, "{bundle_path} holds {k} entries");
}

#[test]
fn an_independent_client_rebuilds_the_tree_from_the_tiles_around_256_and_65536() {
    let log = log();
    let mut next = 0;
    let mut seen = Vec::new();
    for target in [255, 256, 257, 511, 65_535, 65_536, 65_537, 65_800] {
        let note = grow_to(&log, target, &mut next);
        let size = common::witness::size_of(&note);
        check_at(
            &log,
            &note,
            &[0, 1, 254, 255, 256, 65_535, 65_536, size - 1],
        );
        seen.push(note);
    }
    // The partial tiles of earlier checkpoints are still served, as prefixes.
    for note in &seen[..3] {
        check_at(&log, note, &[0, 200]);
    }
}

#[test]
fn entry_bundles_need_a_reader_token_and_hash_tiles_do_not() {
    let log = log();
    let size = common::witness::size_of(&grow_to(&log, 3, &mut 0));
    let client = reqwest::blocking::Client::new();
    let path = format!("{}/tile/entries/000.p/{size}", log.url);
    assert_eq!(client.get(&path).send().unwrap().status(), 401);
    assert_eq!(
        client
            .get(&path)
            .bearer_auth(&log.auditor)
            .send()
            .unwrap()
            .status(),
        200
    );
    let tile = client
        .get(format!("{}/tile/0/000.p/{size}", log.url))
        .send()
        .unwrap();
    assert_eq!(tile.status(), 200);
    assert_eq!(tile.headers()["content-type"], "application/octet-stream");
    assert_eq!(tile.bytes().unwrap().len(), size as usize * 32);
    // Beyond the log, or not a tlog-tiles path: 404.
    for bad in [
        format!("tile/0/000.p/{}", size + 1),
        "tile/0/000".into(),
        "tile/0/0".into(),
        "tile/1/000.p/1".into(),
    ] {
        assert_eq!(
            client
                .get(format!("{}/{bad}", log.url))
                .send()
                .unwrap()
                .status(),
            404,
            "{bad}"
        );
    }
}

#[test]
fn a_bundles_tlog_proof_verifies_with_an_independent_client() {
    use base64::Engine as _;
    let log = log();
    grow_to(&log, 300, &mut 0);
    let bundle: Value = reqwest::blocking::Client::new()
        .get(format!("{}/v1/systems/crash/decisions/t-7/audit", log.url))
        .bearer_auth(&log.auditor)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let proof = bundle["tlog_proof"].as_str().unwrap();
    // c2sp.org/tlog-proof@v1: the header, `index N`, base64 hashes, a blank line, the
    // checkpoint.
    let (head, checkpoint) = proof.split_once("\n\n").unwrap();
    let mut lines = head.lines();
    assert_eq!(lines.next(), Some("c2sp.org/tlog-proof@v1"));
    let index: u64 = lines
        .next()
        .unwrap()
        .strip_prefix("index ")
        .unwrap()
        .parse()
        .unwrap();
    let hashes: Vec<tlog_tiles::Hash> = lines
        .map(|l| {
            tlog_tiles::Hash(
                base64::engine::general_purpose::STANDARD
                    .decode(l)
                    .unwrap()
                    .try_into()
                    .unwrap(),
            )
        })
        .collect();
    let note = Note::from_bytes(checkpoint.as_bytes()).unwrap();
    note.verify(&VerifierList::new(vec![Box::new(
        StandardVerifier::new(&log.vkey).unwrap(),
    )]))
    .unwrap();
    let cp = Checkpoint::from_bytes(note.text()).unwrap();
    // The entry, from the bundle: its record hash is what the proof binds.
    let entry = bundle["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["role"] == "decision")
        .unwrap();
    assert_eq!(entry["index"], index);
    let raw = base64::engine::general_purpose::STANDARD
        .decode(entry["raw"].as_str().unwrap())
        .unwrap();
    tlog_tiles::check_record(&hashes, cp.size(), *cp.hash(), index, record_hash(&raw))
        .expect("the tlog-proof verifies");
}

#[test]
fn public_entries_serves_entry_bundles_without_a_token() {
    let backend = common::Backend::new();
    let (mut child, url) = common::start_server(&backend, &[("VERITRAIL_PUBLIC_ENTRIES", "true")]);
    let r = reqwest::blocking::get(format!("{url}/tile/entries/000.p/1")).unwrap();
    assert_eq!(r.status(), 200);
    let bytes = r.bytes().unwrap();
    let len = u16::from_be_bytes([bytes[0], bytes[1]]) as usize;
    assert_eq!(bytes.len(), 2 + len, "one entry, length-prefixed");
    common::stop_server(&mut child);
}

/// An entry bundle that needs a token is never kept by a shared cache for other callers
/// (a blind reviewer among them); hash tiles are public.
#[actix_web::test]
async fn token_gated_entry_bundles_are_private_to_caches() {
    let app = common::spawn().await;
    let auditor = app.token("auditor-eve", "auditor").await;
    let r = app.get("/tile/entries/000.p/1", Some(&auditor)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let cache = r.headers.get("cache-control").unwrap().to_str().unwrap();
    assert!(cache.starts_with("private"), "{cache}");
    let r = app.get("/tile/0/000.p/1", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r
        .headers
        .get("cache-control")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("public"));
}
