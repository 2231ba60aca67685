//! A free-space reserve for the local store: sled 0.34 stays failed after an I/O error
//! (a write that found the disk full included), so the store refuses a batch while the
//! filesystems it writes to hold less than the reserve plus what the batch needs, and
//! takes batches again as soon as space returns. Nothing is written for a refused batch.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::storage::{StoreError, StoreResult};

/// The default reserve: room for sled's own segment rewrites and a few large batches.
pub const DEFAULT_RESERVE: u64 = 64 << 20;

pub struct Space {
    /// The directories written to (the tree with the vault, the entry segments): each
    /// may be on a filesystem of its own.
    dirs: Vec<PathBuf>,
    reserve: AtomicU64,
    /// What the last refused write needed (0: none refused since one succeeded), so
    /// readiness answers for the write that was refused, not for an empty one.
    refused_need: AtomicU64,
}

impl Space {
    pub fn new(dirs: &[&Path]) -> Self {
        Self {
            dirs: dirs.iter().map(|d| d.to_path_buf()).collect(),
            reserve: AtomicU64::new(DEFAULT_RESERVE),
            refused_need: AtomicU64::new(0),
        }
    }

    pub fn set_reserve(&self, bytes: u64) {
        self.reserve.store(bytes, Ordering::Relaxed);
    }

    /// Refuse, as [`StoreError::Full`], when a directory's filesystem has less than the
    /// reserve plus `need` bytes available.
    pub fn check(&self, need: u64) -> StoreResult<()> {
        let checked = self.check_room(need);
        match &checked {
            Err(StoreError::Full(_)) => self.refused_need.store(need.max(1), Ordering::Relaxed),
            Ok(()) if need > 0 => self.refused_need.store(0, Ordering::Relaxed),
            _ => {}
        }
        checked
    }

    /// Whether the last refused write would fit now (any write, when none was refused).
    pub fn ready(&self) -> StoreResult<()> {
        self.check_room(self.refused_need.load(Ordering::Relaxed))
    }

    /// [`Self::check`] without noting the outcome for readiness (small operational writes).
    pub fn check_room(&self, need: u64) -> StoreResult<()> {
        let reserve = self.reserve.load(Ordering::Relaxed);
        for dir in &self.dirs {
            let free = available(dir)?;
            if free < reserve.saturating_add(need) {
                return Err(StoreError::Full(format!(
                    "the filesystem of {} has {} MiB available; {} MiB are kept in reserve",
                    dir.display(),
                    free >> 20,
                    reserve >> 20
                )));
            }
        }
        Ok(())
    }
}

/// Bytes available to this process on the filesystem holding `dir`.
fn available(dir: &Path) -> StoreResult<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| StoreError::refused("a store path holds a NUL byte"))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string and `st` a statvfs the call fills.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return Err(StoreError::backend(
            format!("free space of {}", dir.display()),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserve_larger_than_the_filesystem_refuses_as_full() {
        let dir = tempfile::tempdir().unwrap();
        let space = Space::new(&[dir.path()]);
        space.set_reserve(0);
        assert!(space.check(0).is_ok());
        space.set_reserve(u64::MAX / 2);
        assert!(matches!(space.check(0), Err(StoreError::Full(_))));
    }
}
