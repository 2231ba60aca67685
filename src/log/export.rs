//! The export format: a range of the log as raw entries with the signed checkpoint
//! that covers them, checkable offline with the verifier key alone.
//!
//! ```text
//! "VERITRAIL-EXPORT 1\n"
//! u32 BE length ‖ the signed checkpoint note at tree size `end`
//! u64 BE start
//! u8 count ‖ (u8 level ‖ 32-byte hash)*   the tree of the first `start` leaves (its right edge)
//! (u32 BE length ‖ entry bytes)*          entries start .. end, as stored and hashed
//! ```

use std::io::Read;

use super::chain::Chain;
use super::merkle::{Frontier, Hash};
use super::note::{Checkpoint, NoteVerifier};

pub const MAGIC: &[u8] = b"VERITRAIL-EXPORT 1\n";

/// The export's header bytes.
pub fn header(note: &str, start: u64, frontier: &[(u8, Hash)]) -> Vec<u8> {
    let mut v = MAGIC.to_vec();
    v.extend_from_slice(&(note.len() as u32).to_be_bytes());
    v.extend_from_slice(note.as_bytes());
    v.extend_from_slice(&start.to_be_bytes());
    v.push(frontier.len() as u8);
    for (l, h) in frontier {
        v.push(*l);
        v.extend_from_slice(h);
    }
    v
}

/// Entries as export records.
pub fn records(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut v = Vec::new();
    for e in entries {
        v.extend_from_slice(&(e.len() as u32).to_be_bytes());
        v.extend_from_slice(e);
    }
    v
}

#[derive(Debug, Clone)]
pub struct ExportReport {
    pub start: u64,
    pub end: u64,
    pub root: Hash,
}

fn read_exact<R: Read>(r: &mut R, n: usize, what: &str) -> Result<Vec<u8>, String> {
    let mut b = vec![0u8; n];
    r.read_exact(&mut b)
        .map_err(|e| format!("truncated {what}: {e}"))?;
    Ok(b)
}

/// Check an export: the checkpoint's signature, every entry's index and `prev` link
/// (from the second on, for a range not starting at 0), and that the entries extend the
/// given left part of the tree to exactly the signed root.
pub fn verify<R: Read>(mut r: R, key: &NoteVerifier) -> Result<ExportReport, String> {
    if read_exact(&mut r, MAGIC.len(), "header")? != MAGIC {
        return Err("not a Veritrail export".into());
    }
    let n = u32::from_be_bytes(read_exact(&mut r, 4, "header")?.try_into().unwrap()) as usize;
    let note = String::from_utf8(read_exact(&mut r, n, "checkpoint")?)
        .map_err(|_| "checkpoint is not UTF-8")?;
    let cp = Checkpoint::open(&note, key).map_err(|e| format!("checkpoint: {e}"))?;
    let start = u64::from_be_bytes(read_exact(&mut r, 8, "header")?.try_into().unwrap());
    let count = read_exact(&mut r, 1, "header")?[0] as usize;
    let mut nodes = Vec::with_capacity(count);
    for _ in 0..count {
        let b = read_exact(&mut r, 33, "tree edge")?;
        nodes.push((b[0], b[1..].try_into().unwrap()));
    }
    let mut frontier = Frontier::from_nodes(nodes).ok_or("malformed tree edge")?;
    if frontier.size() != start {
        return Err(format!(
            "the tree edge covers {} entries, not start = {start}",
            frontier.size()
        ));
    }
    // A range not starting at 0 has no leaf hash before it to link its first entry to.
    let mut chain = Chain::resume(start, (start == 0).then_some([0; 32]), 0);
    let mut index = start;
    loop {
        let mut len = [0u8; 4];
        match r.read(&mut len[..1]) {
            Ok(0) => break,
            Ok(_) => r
                .read_exact(&mut len[1..])
                .map_err(|_| format!("entry {index}: truncated"))?,
            Err(e) => return Err(e.to_string()),
        }
        let bytes = read_exact(
            &mut r,
            u32::from_be_bytes(len) as usize,
            &format!("entry {index}"),
        )?;
        let link = chain
            .check(index, &bytes)
            .map_err(|e| format!("entry {index}: {e}"))?;
        frontier.push(link.leaf);
        index += 1;
    }
    if index != cp.size {
        return Err(format!(
            "the export ends at {index} but its checkpoint is for {}",
            cp.size
        ));
    }
    if frontier.root() != cp.root {
        return Err("the entries do not produce the signed root".into());
    }
    Ok(ExportReport {
        start,
        end: index,
        root: cp.root,
    })
}
