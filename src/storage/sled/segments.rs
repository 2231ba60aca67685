//! Entry bundles in append-only segment files beside the sled tree.
//!
//! sled keeps whole leaf nodes (16 keys) as one value and copies a node on every insert,
//! so entry bundles of hundreds of KiB stored as sled values made every batch copy and
//! rewrite megabytes (measured: leaf blobs of 6–11 MiB, the writer's profile dominated
//! by memmove and blob writes). Bundles therefore go to files, and sled keeps a 21-byte
//! location per bundle, written in the same atomic batch as the head.
//!
//! Order of durability: a bundle is appended and the file synced *before* the sled
//! batch that points to it is applied, so every location sled holds names durable
//! bytes. Bytes a crash left after the last location are cut off when the files are
//! opened (they were never acknowledged).
//!
//! Files: `<ledger>/entries/<first index, 20 digits>.seg`, each a run of batch records,
//! a new file after [`SEGMENT_BYTES`]. A record is a header ([`RECORD_MAGIC`], the
//! batch's first index u64 BE, its entry count u32 BE, the body's length u32 BE), then
//! the body: the batch's entries back to back, then the end offset of each within the
//! body (u32 BE each), so one entry is read with two small reads and a batch with one.
//! A location points at the body. (Records written before headers have none; they are
//! only ever read through their locations.)
//!
//! Recovery removes at most the one batch a crash can leave written but not committed.
//! The headers let it count what lies past the last location: more than one record
//! there (a store restored from an older copy beside newer segments, say) are
//! acknowledged entries the store has lost track of, and opening refuses, naming the
//! file and index, and removes nothing.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crate::storage::{StoreError, StoreResult};

/// A new segment file is started once the current one is this long.
pub const SEGMENT_BYTES: u64 = 256 << 20;

/// The first bytes of a batch record's header.
pub const RECORD_MAGIC: [u8; 4] = *b"VTr1";
/// A record header's length: magic, first index, count, body length.
const HEADER: u64 = 4 + 8 + 4 + 4;

/// First byte of a location value. A bundle stored inline (as older logs did) starts
/// with its first entry's u32 BE length, whose first byte would be 0xFF only for an
/// entry of over 4 GiB.
pub const LOCATION_TAG: u8 = 0xff;

/// Where a batch record is: (file's first index, offset, length, entries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub file: u64,
    pub offset: u64,
    pub len: u32,
    pub count: u32,
}

impl Location {
    pub const LEN: usize = 1 + 8 + 8 + 4 + 4;

    pub fn to_bytes(self) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::LEN);
        v.push(LOCATION_TAG);
        v.extend_from_slice(&self.file.to_be_bytes());
        v.extend_from_slice(&self.offset.to_be_bytes());
        v.extend_from_slice(&self.len.to_be_bytes());
        v.extend_from_slice(&self.count.to_be_bytes());
        v
    }

    /// Where the table of end offsets starts, within the record.
    fn table(self) -> u64 {
        u64::from(self.len) - 4 * u64::from(self.count)
    }

    /// A location, or `None` for a value that is a bundle itself (older logs).
    pub fn parse(b: &[u8]) -> Option<Self> {
        if b.len() != Self::LEN || b[0] != LOCATION_TAG {
            return None;
        }
        Some(Self {
            file: u64::from_be_bytes(b[1..9].try_into().ok()?),
            offset: u64::from_be_bytes(b[9..17].try_into().ok()?),
            len: u32::from_be_bytes(b[17..21].try_into().ok()?),
            count: u32::from_be_bytes(b[21..25].try_into().ok()?),
        })
        .filter(|l| 4 * u64::from(l.count) <= u64::from(l.len))
    }
}

/// What lies past the last durable batch: records (a torn one counts), where the first
/// starts, and its first index when its header was whole.
#[derive(Default)]
struct Past {
    records: usize,
    first: Option<(PathBuf, u64)>,
    first_index: Option<u64>,
}

impl Past {
    /// Walk the records of `path` from byte `pos` to `len`.
    fn scan(&mut self, path: &Path, mut pos: u64, len: u64) -> StoreResult<()> {
        if pos >= len {
            return Ok(());
        }
        let file = File::open(path).map_err(|e| io("opening", e))?;
        while pos < len {
            self.records += 1;
            self.first.get_or_insert_with(|| (path.to_owned(), pos));
            if len - pos < HEADER {
                return Ok(()); // a torn header: the record in flight
            }
            let mut h = [0u8; HEADER as usize];
            file.read_exact_at(&mut h, pos)
                .map_err(|e| io("reading", e))?;
            if h[..4] != RECORD_MAGIC {
                return Err(StoreError::Corrupt(format!(
                    "entry segment {}: the bytes at {pos}, past the last durable batch, are no batch record; refusing to start and removing nothing",
                    path.display()
                )));
            }
            let first = u64::from_be_bytes(h[4..12].try_into().expect("8 bytes"));
            let body = u32::from_be_bytes(h[16..20].try_into().expect("4 bytes"));
            self.first_index.get_or_insert(first);
            pos += HEADER + u64::from(body);
        }
        Ok(())
    }
}

fn io(what: &str, e: std::io::Error) -> StoreError {
    StoreError::backend(format!("entry segments: {what}"), e)
}

struct Tail {
    file: u64,
    handle: File,
    len: u64,
}

pub struct Segments {
    dir: PathBuf,
    /// The file being appended to (the writer's).
    tail: Mutex<Option<Tail>>,
    /// Open files for reading, by first index.
    readers: RwLock<std::collections::HashMap<u64, Arc<File>>>,
}

impl Segments {
    fn path(&self, file: u64) -> PathBuf {
        self.dir.join(format!("{file:020}.seg"))
    }

    /// Open the segment directory and cut it back to `last`, the last location the
    /// sled tree holds with its batch's first index (`None`: no bundle lives in a
    /// file): anything after it was written by a batch whose head never landed.
    pub fn open(dir: &Path, last: Option<(u64, Location)>) -> StoreResult<Self> {
        std::fs::create_dir_all(dir).map_err(|e| io("creating the directory", e))?;
        let s = Self {
            dir: dir.to_owned(),
            tail: Mutex::new(None),
            readers: RwLock::new(Default::default()),
        };
        s.cut_after(last)?;
        Ok(s)
    }

    fn files(&self) -> StoreResult<Vec<u64>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir).map_err(|e| io("listing", e))? {
            let name = e.map_err(|e| io("listing", e))?.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name.strip_suffix(".seg").and_then(|n| n.parse().ok()) {
                out.push(n);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Remove every byte after `last` (and every file after its file), which may be at
    /// most one batch record, whole or torn: more is refused (see the module's note).
    pub fn cut_after(&self, last: Option<(u64, Location)>) -> StoreResult<()> {
        let mut tail = self.tail.lock().expect("segment tail");
        *tail = None;
        self.readers.write().expect("segment readers").clear();
        self.refuse_lost_batches(last)?;
        let last = last.map(|(_, l)| l);
        for f in self.files()? {
            match last {
                Some(l) if f < l.file => {}
                Some(l) if f == l.file => {
                    let end = l.offset + u64::from(l.len);
                    let file = OpenOptions::new()
                        .write(true)
                        .open(self.path(f))
                        .map_err(|e| io("opening", e))?;
                    let len = file.metadata().map_err(|e| io("stat", e))?.len();
                    if len > end {
                        tracing::warn!(
                            file = f,
                            bytes = len - end,
                            "cut entry bytes written after the last durable batch"
                        );
                        file.set_len(end).map_err(|e| io("truncating", e))?;
                        file.sync_all().map_err(|e| io("syncing", e))?;
                    }
                }
                _ => {
                    std::fs::remove_file(self.path(f)).map_err(|e| io("removing", e))?;
                }
            }
        }
        Ok(())
    }

    /// Refuse when the bytes past `last` (the last durable batch, with its first index)
    /// are not what one crash leaves: the batch record in flight, whole or torn. The
    /// last acknowledged record must be whole, too.
    fn refuse_lost_batches(&self, last: Option<(u64, Location)>) -> StoreResult<()> {
        let mut past = Past::default();
        for f in self.files()? {
            let path = self.path(f);
            let len = std::fs::metadata(&path).map_err(|e| io("stat", e))?.len();
            let from = match last {
                Some((_, l)) if f < l.file => continue,
                Some((first, l)) if f == l.file => {
                    let end = l.offset + u64::from(l.len);
                    if len < end {
                        return Err(StoreError::Corrupt(format!(
                            "entry segment {} is {len} bytes but the acknowledged batch of entries {first}..{} ends at byte {end}: acknowledged entries are missing; refusing to start",
                            path.display(),
                            first + u64::from(l.count),
                        )));
                    }
                    end
                }
                _ => 0,
            };
            past.scan(&path, from, len)?;
        }
        if past.records > 1 {
            let next = last.map_or(0, |(first, l)| first + u64::from(l.count));
            let (path, at) = past.first.clone().expect("a record was seen");
            return Err(StoreError::Corrupt(format!(
                "entry segment {} holds {} batch records past the last durable batch, from byte {at} (entries from {}; the store's log ends before entry {next}): a crash leaves at most one. Was the store restored from an older copy beside newer entry segments? Refusing to start and removing nothing: restore the store that matches these segments, or decide to drop them (cut the file at byte {at} and remove the later segment files)",
                path.display(),
                past.records,
                past.first_index.map_or_else(|| "an unknown index".to_owned(), |i| i.to_string()),
            )));
        }
        Ok(())
    }

    /// Append the entries of the batch starting at `first_index` as one record and
    /// make it durable.
    pub fn append(&self, first_index: u64, entries: &[Vec<u8>]) -> StoreResult<Location> {
        let body: usize = entries.iter().map(Vec::len).sum();
        let mut record = Vec::with_capacity(body + 4 * entries.len());
        for e in entries {
            record.extend_from_slice(e);
        }
        let mut end = 0usize;
        for e in entries {
            end += e.len();
            let end = u32::try_from(end)
                .map_err(|_| StoreError::refused("a batch of entries over 4 GiB"))?;
            record.extend_from_slice(&end.to_be_bytes());
        }
        let count = u32::try_from(entries.len())
            .map_err(|_| StoreError::refused("too many entries in a batch"))?;
        self.append_record(first_index, &record, count)
    }

    fn append_record(&self, first_index: u64, bundle: &[u8], count: u32) -> StoreResult<Location> {
        let mut guard = self.tail.lock().expect("segment tail");
        let roll = match guard.as_ref() {
            None => true,
            Some(t) => t.len >= SEGMENT_BYTES,
        };
        if roll {
            // Continue the newest file if it has room, else start one at this batch.
            let newest = self.files()?.last().copied();
            let (file, handle) = match newest {
                Some(f) => {
                    let h = OpenOptions::new()
                        .append(true)
                        .open(self.path(f))
                        .map_err(|e| io("opening", e))?;
                    let len = h.metadata().map_err(|e| io("stat", e))?.len();
                    if len < SEGMENT_BYTES {
                        (f, Some((h, len)))
                    } else {
                        (first_index, None)
                    }
                }
                None => (first_index, None),
            };
            let (handle, len) = match handle {
                Some(x) => x,
                None => {
                    let h = OpenOptions::new()
                        .create_new(true)
                        .append(true)
                        .open(self.path(file))
                        .map_err(|e| io("creating", e))?;
                    // The new file's name must survive a crash too.
                    File::open(&self.dir)
                        .and_then(|d| d.sync_all())
                        .map_err(|e| io("syncing the directory", e))?;
                    (h, 0)
                }
            };
            *guard = Some(Tail { file, handle, len });
        }
        let t = guard.as_mut().expect("set above");
        let len = u32::try_from(bundle.len())
            .map_err(|_| StoreError::refused("an entry bundle over 4 GiB"))?;
        let mut record = Vec::with_capacity(HEADER as usize + bundle.len());
        record.extend_from_slice(&RECORD_MAGIC);
        record.extend_from_slice(&first_index.to_be_bytes());
        record.extend_from_slice(&count.to_be_bytes());
        record.extend_from_slice(&len.to_be_bytes());
        record.extend_from_slice(bundle);
        let written = t
            .handle
            .write_all(&record)
            .map_err(|e| io("writing", e))
            .and_then(|()| t.handle.sync_data().map_err(|e| io("syncing", e)));
        if let Err(e) = written {
            // What reached the file is unknown: never append after it on this handle.
            *guard = None;
            return Err(e);
        }
        let t = guard.as_mut().expect("set above");
        let loc = Location {
            file: t.file,
            offset: t.len + HEADER,
            len,
            count,
        };
        t.len += record.len() as u64;
        Ok(loc)
    }

    fn file(&self, loc: Location) -> StoreResult<Arc<File>> {
        Ok({
            let cached = self
                .readers
                .read()
                .expect("segment readers")
                .get(&loc.file)
                .cloned();
            match cached {
                Some(f) => f,
                None => {
                    let f =
                        Arc::new(File::open(self.path(loc.file)).map_err(|e| io("opening", e))?);
                    self.readers
                        .write()
                        .expect("segment readers")
                        .insert(loc.file, f.clone());
                    f
                }
            }
        })
    }

    /// `len` bytes at `at` within the record at `loc`.
    fn read_at(&self, loc: Location, at: u64, len: usize) -> StoreResult<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.file(loc)?
            .read_exact_at(&mut buf, loc.offset + at)
            .map_err(|e| {
                StoreError::Corrupt(format!(
                    "entry segment {} lacks bytes {}..{}: {e}",
                    loc.file,
                    loc.offset + at,
                    loc.offset + at + len as u64
                ))
            })?;
        Ok(buf)
    }

    /// Entry `j` of the record at `loc` (two small reads).
    pub fn read_entry(&self, loc: Location, j: u64) -> StoreResult<Option<Vec<u8>>> {
        if j >= u64::from(loc.count) {
            return Ok(None);
        }
        let table = loc.table();
        let (start, end) = if j == 0 {
            let b = self.read_at(loc, table, 4)?;
            (0, u32::from_be_bytes(b[..4].try_into().expect("4 bytes")))
        } else {
            let b = self.read_at(loc, table + 4 * (j - 1), 8)?;
            (
                u32::from_be_bytes(b[..4].try_into().expect("4 bytes")),
                u32::from_be_bytes(b[4..].try_into().expect("4 bytes")),
            )
        };
        if start > end || u64::from(end) > table {
            return Err(StoreError::Corrupt(format!(
                "entry segment {}: bad offsets in the record at {}",
                loc.file, loc.offset
            )));
        }
        self.read_at(loc, u64::from(start), (end - start) as usize)
            .map(Some)
    }

    /// Every entry of the record at `loc`, in order, to `f` (position, bytes) until it says false.
    pub fn each_entry(
        &self,
        loc: Location,
        mut f: impl FnMut(u64, &[u8]) -> bool,
    ) -> StoreResult<()> {
        let record = self.read_at(loc, 0, loc.len as usize)?;
        let table = loc.table() as usize;
        let bad = || {
            StoreError::Corrupt(format!(
                "entry segment {}: bad offsets in the record at {}",
                loc.file, loc.offset
            ))
        };
        let mut start = 0usize;
        for j in 0..loc.count as usize {
            let end = u32::from_be_bytes(
                record[table + 4 * j..table + 4 * j + 4]
                    .try_into()
                    .expect("4 bytes"),
            ) as usize;
            if end < start || end > table {
                return Err(bad());
            }
            if !f(j as u64, &record[start..end]) {
                return Ok(());
            }
            start = end;
        }
        Ok(())
    }
}
