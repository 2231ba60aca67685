//! Damaged and rolled-back files on the embedded store, against the real binary: a store
//! put back to an older copy beside newer entry segments (a partial restore), the last
//! acknowledged batch record cut short, and a flipped byte inside a segment. Recovery
//! drops at most the one batch a crash leaves unacknowledged; beyond that it refuses to
//! start, names the file and index, and removes nothing; `verify` finds the flipped
//! byte. They run once, on the sled run.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A log on a real server: `n` decisions written one at a time (a batch each), then a
/// graceful stop. The fixture system is made on the first start (`pipeline` keeps its
/// token for the next). The acknowledged indices.
fn write_decisions(
    backend: &common::Backend,
    pipeline: &mut Option<String>,
    from: usize,
    n: usize,
) -> Vec<u64> {
    let (mut child, url) = common::start_server(backend, &[]);
    let admin = std::fs::read_to_string(backend.path().join("admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    let token = pipeline
        .get_or_insert_with(|| common::setup_system_http(&url, &admin).0)
        .clone();
    let indices = (from..from + n)
        .map(|i| common::decide_http(&url, &token, &format!("d-{i}")))
        .collect();
    common::stop_server(&mut child);
    indices
}

fn segments(backend: &common::Backend) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(backend.path().join("ledger/entries"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

/// Start the server and expect it to refuse: its exit status and what it logged.
fn refused_start(backend: &common::Backend) -> String {
    let mut child = Command::new(common::BIN)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .args(backend.args())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            assert!(!status.success(), "the server exited successfully: {err}");
            return err;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server started on a damaged store");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Copy a directory tree (files and directories only).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

fn bytes_of(paths: &[PathBuf]) -> Vec<Vec<u8>> {
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

#[test]
fn a_store_restored_beside_newer_segments_refuses_to_start_and_removes_nothing() {
    if !common::backend::sled_run("a_store_restored_beside_newer_segments_refuses_to_start") {
        return;
    }
    let backend = common::Backend::new();
    let mut pipeline = None;
    write_decisions(&backend, &mut pipeline, 0, 5);
    // A backup of the store (tree and vault), without the entry segments.
    let ledger = backend.path().join("ledger");
    let backup = tempfile::tempdir().unwrap();
    copy_dir(&ledger, backup.path());
    std::fs::remove_dir_all(backup.path().join("entries")).unwrap();
    let later = write_decisions(&backend, &mut pipeline, 5, 20);

    // Put the store back to the copy; the segments stay as they are.
    for e in std::fs::read_dir(&ledger).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "entries" {
            let p = e.path();
            if p.is_dir() {
                std::fs::remove_dir_all(&p).unwrap();
            } else {
                std::fs::remove_file(&p).unwrap();
            }
        }
    }
    copy_dir(backup.path(), &ledger);
    let files = segments(&backend);
    let before = bytes_of(&files);

    let err = refused_start(&backend);
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(err.contains(&name), "names the segment file: {err}");
    let from: u64 = err
        .split("entries from ")
        .nth(1)
        .and_then(|t| t.split(';').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("names no index: {err}"));
    assert!(from <= later[0], "the first index it would drop: {err}");
    assert_eq!(bytes_of(&segments(&backend)), before, "nothing removed");
}

#[test]
fn the_last_acknowledged_batch_cut_short_refuses_to_start_naming_file_and_index() {
    if !common::backend::sled_run("the_last_acknowledged_batch_cut_short_refuses_to_start") {
        return;
    }
    let backend = common::Backend::new();
    let indices = write_decisions(&backend, &mut None, 0, 4);
    let last = *indices.last().unwrap();
    let file = segments(&backend).pop().unwrap();
    let whole = std::fs::read(&file).unwrap();
    let record = 20; // the last record's header, at least
                     // Offsets inside the last batch record: its header, its entry, its offset table.
    let len = whole.len();
    for cut in [len - 1, len - 4, len - 40, len - 200] {
        assert!(cut > record);
        std::fs::write(&file, &whole[..cut]).unwrap();
        let err = refused_start(&backend);
        assert!(
            err.contains(&file.file_name().unwrap().to_string_lossy().into_owned()),
            "cut at {cut}: names the file: {err}"
        );
        let named: u64 = err
            .split("batch of entries ")
            .nth(1)
            .and_then(|t| t.split("..").next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("cut at {cut}: names no index: {err}"));
        assert!(
            named >= last,
            "cut at {cut}: the last batch, not {named}: {err}"
        );
    }
    // Made whole again, it starts and holds every entry.
    std::fs::write(&file, &whole).unwrap();
    let out = Command::new(common::BIN)
        .arg("verify")
        .args(backend.args())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_flipped_byte_inside_a_segment_is_found_by_verify() {
    if !common::backend::sled_run("a_flipped_byte_inside_a_segment_is_found_by_verify") {
        return;
    }
    let backend = common::Backend::new();
    write_decisions(&backend, &mut None, 0, 6);
    let file = segments(&backend).remove(0);
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();
    let out = Command::new(common::BIN)
        .arg("verify")
        .args(backend.args())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "verify passed a flipped byte: {text}"
    );
    assert!(
        text.contains("does not verify at index"),
        "names where: {text}"
    );
}
