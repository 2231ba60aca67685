//! The ledger core on a real store (sled in a temp dir, or PostgreSQL on that run),
//! with real signatures.

mod common;

use std::io::Write;
use std::sync::Arc;

use veritrail::log::keyfile;
use veritrail::log::merkle::{self, verify_consistency, verify_inclusion};
use veritrail::log::note::{Checkpoint, NoteSigner, NoteVerifier};
use veritrail::log::verify::verify_store;
use veritrail::log::{entry, AppendError, Command, Draft, Drafts, Ledger, LedgerError, Prepared};
use veritrail::storage::Store;

#[test]
fn signed_note_known_answer() {
    let signer = NoteSigner::from_key_string(
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
    )
    .unwrap();
    let text = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    let note = signer.sign(text);
    assert_eq!(
        note,
        format!("{text}\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n")
    );
    let vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    assert_eq!(signer.verifier().to_string(), vkey);
    let v = NoteVerifier::parse(vkey).unwrap();
    assert_eq!(v.to_string(), vkey);
    assert_eq!(v.verify(&note).unwrap(), text);
    // A changed text, a changed signature, or another key's name do not verify.
    assert!(v
        .verify(&note.replacen("cryptography", "cryptographY", 1))
        .is_err());
    assert!(v.verify(&note.replacen("x08go", "x08gp", 1)).is_err());
    assert!(NoteVerifier::parse(
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    )
    .is_err());
    assert!(NoteVerifier::parse("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq").is_err());
}

#[test]
fn checkpoint_text_round_trips() {
    let cp = Checkpoint {
        origin: "example.com/log".into(),
        size: 12345,
        root: [7; 32],
    };
    let text = cp.to_text();
    assert_eq!(
        text,
        "example.com/log\n12345\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n"
    );
    assert_eq!(Checkpoint::parse(&text).unwrap(), cp);
    assert!(Checkpoint::parse("o\n012\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n").is_err());
    assert!(Checkpoint::parse("o\n12\nBwcH\n").is_err());
}

#[test]
fn key_file_is_created_private_and_an_open_one_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.pem");
    let (k1, created) = keyfile::load_or_create(&path).unwrap();
    assert!(created);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (k2, created) = keyfile::load_or_create(&path).unwrap();
    assert!(!created);
    assert_eq!(k1.to_bytes(), k2.to_bytes());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = keyfile::load_or_create(&path).unwrap_err().to_string();
    assert!(err.contains("readable by group or others"), "{err}");
}

fn signer() -> NoteSigner {
    let key = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    NoteSigner::new("test.example/log", key).unwrap()
}

fn body(n: u64) -> serde_cbor::Value {
    use serde_cbor::Value;
    let mut m = std::collections::BTreeMap::new();
    m.insert(Value::Text("n".into()), Value::Integer(n.into()));
    m.insert(Value::Text("pad".into()), Value::Text("x".repeat(200)));
    Value::Map(m)
}

fn cmd(n: u64) -> Command<String> {
    Box::new(move |_s| {
        Ok(Prepared::Append(Drafts::one(Draft {
            kind: "test.appended".into(),
            system: Some("sys".into()),
            body: body(n),
        })))
    })
}

fn open(
    backend: &common::Backend,
) -> (Ledger<String>, veritrail::log::WriterHandle, Arc<dyn Store>) {
    let store = backend.open();
    let (l, h) = Ledger::open(
        store.clone(),
        signer(),
        Default::default(),
        Arc::new(|_| {}),
    )
    .unwrap();
    (l, h, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_get_verifiable_receipts_and_survive_reopen() {
    let backend = common::Backend::new();
    let (ledger, writer, store) = open(&backend);
    let v = ledger.verifier().clone();
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let l = ledger.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..50u64 {
                out.push(l.append("tester", cmd(t * 1000 + i)).await.unwrap());
            }
            out
        }));
    }
    let mut receipts = Vec::new();
    for t in tasks {
        receipts.extend(t.await.unwrap());
    }
    assert_eq!(receipts.len(), 800);
    let mut indices: Vec<u64> = receipts.iter().map(|r| r.index).collect();
    indices.sort();
    assert_eq!(indices, (0..800).collect::<Vec<_>>());
    for r in &receipts {
        let cp = Checkpoint::open(&r.checkpoint, &v).unwrap();
        assert_eq!(cp.size, r.tree_size);
        verify_inclusion(r.index, cp.size, &r.leaf_hash, &r.inclusion_proof, &cp.root).unwrap();
        let bytes = ledger.entry(r.index).unwrap().unwrap();
        assert_eq!(merkle::leaf_hash(&bytes), r.leaf_hash);
    }
    // Batching happened: fewer checkpoints than entries.
    let cps = store.checkpoints(0, usize::MAX).unwrap();
    assert!(cps.len() < 800, "{} checkpoints", cps.len());
    // Every checkpoint is consistent with the latest.
    let latest = ledger.latest();
    for (size, note) in &cps {
        let cp = Checkpoint::open(note, &v).unwrap();
        let (_, proof) = ledger.consistency(*size, None).unwrap();
        verify_consistency(*size, latest.size, &cp.root, &latest.root, &proof).unwrap();
    }
    // Entries chain and times never go back.
    let all = ledger.entries(0, 1000).unwrap();
    let mut prev = [0u8; 32];
    let mut t = 0;
    for (i, b) in all.iter().enumerate() {
        let e = entry::decode_header(b).unwrap();
        assert_eq!(e.index, i as u64);
        assert_eq!(e.prev_hash().unwrap(), prev);
        assert!(e.time >= t);
        t = e.time;
        prev = merkle::leaf_hash(b);
    }
    let report = verify_store(&*store, &v).unwrap();
    assert_eq!(report.entries, 800);
    drop(ledger);
    writer.join();
    drop(store);
    // Reopen: recovery accepts it and appends continue the same chain.
    let (ledger, writer, store) = open(&backend);
    assert_eq!(ledger.latest().size, 800);
    let r = ledger.append("tester", cmd(9)).await.unwrap();
    assert_eq!(r.index, 800);
    assert_eq!(
        entry::decode_header(&ledger.entry(800).unwrap().unwrap())
            .unwrap()
            .prev_hash()
            .unwrap(),
        prev
    );
    verify_store(&*store, &v).unwrap();
    drop(ledger);
    writer.join();
}

#[tokio::test]
async fn a_rejected_command_appends_nothing_and_others_in_the_batch_land() {
    let backend = common::Backend::new();
    let (ledger, writer, _store) = open(&backend);
    let reqs = vec![
        veritrail::log::AppendRequest {
            actor: "a".into(),
            reads: Vec::new(),
            command: cmd(1),
        },
        veritrail::log::AppendRequest {
            actor: "a".into(),
            reads: Vec::new(),
            command: Box::new(|s| {
                s.put(b"k".to_vec(), b"must not land".to_vec());
                Err("refused".to_string())
            }),
        },
        veritrail::log::AppendRequest {
            actor: "a".into(),
            reads: Vec::new(),
            command: cmd(2),
        },
    ];
    let out = ledger.append_many(reqs).await;
    assert_eq!(out[0].as_ref().unwrap().index, 0);
    assert!(matches!(&out[1], Err(AppendError::Rejected(e)) if e == "refused"));
    assert_eq!(out[2].as_ref().unwrap().index, 1);
    assert_eq!(ledger.store().get(b"k").unwrap(), None);
    assert_eq!(ledger.latest().size, 2);
    drop(ledger);
    writer.join();
}

#[test]
fn written_entries_match_the_cddl_schema() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let backend = common::Backend::new();
    let (ledger, writer, _s) = open(&backend);
    rt.block_on(async {
        for i in 0..3 {
            ledger.append("tester", cmd(i)).await.unwrap();
        }
    });
    let cddl = std::fs::read_to_string("schemas/entry.cddl").unwrap();
    for bytes in ledger.entries(0, 3).unwrap() {
        cddl::validate_cbor_from_slice(&cddl, &bytes, None).unwrap();
    }
    // And the validator really checks: a wrong envelope is refused.
    let bad = serde_cbor::to_vec(&serde_json::json!({"v": 2, "index": 0})).unwrap();
    assert!(cddl::validate_cbor_from_slice(&cddl, &bad, None).is_err());
    drop(ledger);
    writer.join();
}

fn build_log(backend: &common::Backend, n: u64) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (ledger, writer, _s) = open(backend);
    rt.block_on(async {
        for i in 0..n {
            ledger.append("tester", cmd(i)).await.unwrap();
        }
    });
    drop(ledger);
    writer.join();
}

fn first_bad_index(backend: &common::Backend) -> u64 {
    let store = backend.open();
    match verify_store(&*store, &signer().verifier()) {
        Err(LedgerError::Inconsistent { index, .. }) => index,
        other => panic!("tampering not caught: {other:?}"),
    }
}

#[test]
fn verify_catches_a_flipped_byte_a_deleted_entry_and_a_swap() {
    for (name, want, f) in [
        (
            "flip",
            5u64,
            Box::new(|e: &mut Vec<Vec<u8>>| {
                let last = e[5].len() - 3;
                e[5][last] ^= 0x20;
            }) as Box<dyn FnOnce(&mut Vec<Vec<u8>>) + Send>,
        ),
        (
            "delete",
            4,
            Box::new(|e: &mut Vec<Vec<u8>>| {
                e.remove(4);
            }),
        ),
        ("swap", 3, Box::new(|e: &mut Vec<Vec<u8>>| e.swap(3, 7))),
    ] {
        let backend = common::Backend::new();
        build_log(&backend, 10);
        assert_eq!(
            verify_store(&*backend.open(), &signer().verifier())
                .unwrap()
                .entries,
            10
        );
        backend.tamper_entries(f);
        assert_eq!(first_bad_index(&backend), want, "{name}");
        if name == "delete" {
            // Recovery checks the tail since the previous checkpoint against the tiles and
            // the head; a deletion shortens the whole log, which that check always sees.
            let err = Ledger::<String>::open(
                backend.open(),
                signer(),
                Default::default(),
                Arc::new(|_| {}),
            )
            .err();
            assert!(
                matches!(err, Some(LedgerError::Inconsistent { .. })),
                "{name}: {err:?}"
            );
        }
    }
}

#[test]
fn recovery_refuses_a_tail_that_disagrees_with_the_checkpoint() {
    let backend = common::Backend::new();
    build_log(&backend, 10);
    backend.tamper_entries(|e| {
        let last = e[9].len() - 3;
        e[9][last] ^= 0x20;
    });
    match Ledger::<String>::open(
        backend.open(),
        signer(),
        Default::default(),
        Arc::new(|_| {}),
    ) {
        Err(LedgerError::Inconsistent { index, reason }) => assert_eq!(index, 9, "{reason}"),
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("opened a tampered log"),
    }
}

#[test]
fn bytes_after_the_last_durable_batch_are_cut_on_open() {
    // A crash between appending a batch's bundle to its segment file and committing the
    // tree that points to it leaves bytes nobody acknowledged: they are cut on open,
    // and the log continues from its head.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger");
    let open_at = |p: &std::path::Path| {
        // sled lets go of its file lock when its last handle's background threads end,
        // which under a loaded machine can be a moment after the writer joined.
        let mut tries = 0;
        let store: Arc<dyn Store> = loop {
            match veritrail::storage::sled::SledStore::open(
                p,
                &veritrail::register::projections::keys::packing(),
            ) {
                Ok(s) => break Arc::new(s),
                Err(e) if tries < 50 && e.to_string().contains("lock") => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(e) => panic!("{e}"),
            }
        };
        Ledger::<String>::open(store, signer(), Default::default(), Arc::new(|_| {})).unwrap()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (ledger, writer) = open_at(&path);
    rt.block_on(async {
        for i in 0..5 {
            ledger.append("tester", cmd(i)).await.unwrap();
        }
    });
    drop(ledger);
    writer.join();
    let seg = std::fs::read_dir(path.join("entries"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let len = std::fs::metadata(&seg).unwrap().len();
    // The record of batch 5 (one entry), whole, as the writer appends it: its header
    // (magic, first index, count, body length), then its body.
    let mut record = veritrail::storage::sled::segments::RECORD_MAGIC.to_vec();
    record.extend_from_slice(&5u64.to_be_bytes());
    record.extend_from_slice(&1u32.to_be_bytes());
    record.extend_from_slice(&1000u32.to_be_bytes());
    record.extend_from_slice(&[0xab; 1000]);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&seg)
        .unwrap()
        .write_all(&record)
        .unwrap();
    let (ledger, writer) = open_at(&path);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), len);
    assert_eq!(ledger.latest().size, 5);
    let r = rt.block_on(ledger.append("tester", cmd(5))).unwrap();
    assert_eq!(r.index, 5);
    assert_eq!(ledger.entries(0, 10).unwrap().len(), 6);
    verify_store(&**ledger.store(), &signer().verifier()).unwrap();
    drop(ledger);
    writer.join();
}

#[test]
fn reindex_refuses_entries_whose_chain_breaks() {
    let backend = common::Backend::new();
    build_log(&backend, 10);
    assert_eq!(veritrail::reindex::reindex(&*backend.open()).unwrap(), 10);
    backend.tamper_entries(|e| e.swap(3, 7));
    let err = veritrail::reindex::reindex(&*backend.open())
        .expect_err("a swapped pair of entries must not be reindexed")
        .to_string();
    assert!(err.contains("at index 3"), "{err}");
}

/// The public key of a PKCS#8 PEM private key, as `openssl pkey -pubout` prints it.
fn openssl_public_key(key_file: &std::path::Path) -> String {
    let out = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(key_file)
        .output()
        .expect("openssl is installed (.ci/run installs it)");
    assert!(
        out.status.success(),
        "openssl pkey cannot read the key: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_new_data_dirs_signing_key_reads_with_openssl_pkey() {
    use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePublicKey};
    let backend = common::Backend::new();
    let (mut child, _url) = common::start_server(&backend, &[]);
    common::stop_server(&mut child);
    let path = backend.path().join("signing-key.pem");
    let key = veritrail::log::keyfile::from_pem(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let ours = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    assert_eq!(openssl_public_key(&path), ours);
}

#[test]
fn a_key_file_written_with_its_public_key_still_loads() {
    use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePrivateKey};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signing-key.pem");
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    // What earlier versions wrote: PKCS#8 v2, the public key beside the private one.
    let v2 = key.to_pkcs8_pem(LineEnding::LF).unwrap();
    veritrail::log::keyfile::write_secret_file(&path, v2.as_bytes()).unwrap();
    let (loaded, created) = veritrail::log::keyfile::load_or_create(&path).unwrap();
    assert!(!created);
    assert_eq!(loaded.to_bytes(), key.to_bytes());
}

#[test]
fn a_sigterm_as_soon_as_the_service_listens_is_a_graceful_stop() {
    let backend = common::Backend::new();
    for _ in 0..3 {
        let (mut child, _url) = common::start_server(&backend, &[]);
        common::stop_server(&mut child);
    }
}
