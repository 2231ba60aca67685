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
//! Files: `<ledger>/entries/<first index, 20 digits>.seg`, each a run of bundles
//! (`(u32 BE length ‖ entry bytes)*`), a new file after [`SEGMENT_BYTES`].

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use super::store::{StoreError, StoreResult};

/// A new segment file is started once the current one is this long.
pub const SEGMENT_BYTES: u64 = 256 << 20;

/// First byte of a location value. A bundle stored inline (as older logs did) starts
/// with its first entry's u32 BE length, whose first byte would be 0xFF only for an
/// entry of over 4 GiB.
pub const LOCATION_TAG: u8 = 0xff;

/// Where a bundle is: (file's first index, offset, length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub file: u64,
    pub offset: u64,
    pub len: u32,
}

impl Location {
    pub const LEN: usize = 1 + 8 + 8 + 4;

    pub fn to_bytes(self) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::LEN);
        v.push(LOCATION_TAG);
        v.extend_from_slice(&self.file.to_be_bytes());
        v.extend_from_slice(&self.offset.to_be_bytes());
        v.extend_from_slice(&self.len.to_be_bytes());
        v
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
        })
    }
}

fn io(what: &str, e: std::io::Error) -> StoreError {
    StoreError::Backend(format!("entry segments: {what}: {e}"))
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
    /// sled tree holds (`None`: no bundle lives in a file): anything after it was
    /// written by a batch whose head never landed.
    pub fn open(dir: &Path, last: Option<Location>) -> StoreResult<Self> {
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

    /// Remove every byte after `last` (and every file after its file).
    pub fn cut_after(&self, last: Option<Location>) -> StoreResult<()> {
        let mut tail = self.tail.lock().expect("segment tail");
        *tail = None;
        self.readers.write().expect("segment readers").clear();
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
                    } else if len < end {
                        return Err(StoreError::Corrupt(format!(
                            "entry segment {f} is {len} bytes but the log points to byte {end}"
                        )));
                    }
                }
                _ => {
                    std::fs::remove_file(self.path(f)).map_err(|e| io("removing", e))?;
                }
            }
        }
        Ok(())
    }

    /// Append one bundle of the batch starting at `first_index` and make it durable.
    pub fn append(&self, first_index: u64, bundle: &[u8]) -> StoreResult<Location> {
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
            .map_err(|_| StoreError::Backend("an entry bundle over 4 GiB".into()))?;
        t.handle.write_all(bundle).map_err(|e| io("writing", e))?;
        t.handle.sync_data().map_err(|e| io("syncing", e))?;
        let loc = Location {
            file: t.file,
            offset: t.len,
            len,
        };
        t.len += u64::from(len);
        Ok(loc)
    }

    /// The bundle at `loc`.
    pub fn read(&self, loc: Location) -> StoreResult<Vec<u8>> {
        let file = {
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
        };
        let mut buf = vec![0u8; loc.len as usize];
        file.read_exact_at(&mut buf, loc.offset).map_err(|e| {
            StoreError::Corrupt(format!(
                "entry segment {} lacks bytes {}..{}: {e}",
                loc.file,
                loc.offset,
                loc.offset + u64::from(loc.len)
            ))
        })?;
        Ok(buf)
    }
}
