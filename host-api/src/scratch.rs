//! Scratch space: a fresh, empty directory for one invocation of an integration that declares
//! `[scratch] size`, preopened at `/scratch` (WASI filesystem over a `cap-std` directory, so
//! `..`, absolute paths and symlinks cannot leave it) and removed when the invocation ends.
//!
//! The declared size is enforced here, not by the host's disk: every call that can make the
//! directory larger (a write, a stream write, `set-size`) is charged the bytes it adds before
//! it happens, and refused with `insufficient-space` (the guest's "no space left on device")
//! once the files' sizes would pass it; a new file, directory or symlink past [`MAX_ENTRIES`]
//! is refused the same way, and more than [`MAX_OPEN`] open at once with `quota`. Sizes are
//! the files' lengths, so a sparse file counts in full. A call that shrank it (truncate,
//! unlink, rename, remove) makes the next charge count again: the files under the directory,
//! and the files the guest still holds open that no name reaches any more (an unlinked file
//! keeps its bytes while it is open). Hard links are refused: one file under two names would
//! count twice or escape the count.
//!
//! A directory left by a process that died mid-invocation is removed by the next runtime that
//! starts on the data dir ([`sweep`]).

mod fs;

use std::io;
use std::os::unix::fs::{DirBuilderExt as _, FileExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use bytes::Bytes;
use wasmtime_wasi::p2::bindings::filesystem::types::ErrorCode;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

pub use fs::{ScratchFilesystem, ScratchFs};

/// The guest path the directory is preopened at.
pub const GUEST_PATH: &str = "/scratch";
/// Most files, directories and symlinks one scratch directory may hold.
pub const MAX_ENTRIES: u64 = 1024;
/// Most files and directories one invocation may hold open in it at once.
pub const MAX_OPEN: usize = 64;
/// The most one stream write takes at once.
const STREAM_CAPACITY: usize = 64 * 1024;

/// Removes the scratch directories under `root` whose process is gone (it died
/// mid-invocation); the live ones of other processes sharing the data dir are left alone.
pub fn sweep(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix("inv-"))
            .and_then(|n| n.split('-').next())
            .and_then(|pid| pid.parse::<libc::pid_t>().ok());
        // SAFETY: kill(2) with signal 0 sends nothing; it only asks whether the pid exists.
        let gone = pid.is_some_and(|pid| unsafe { libc::kill(pid, 0) } != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH));
        if gone {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// One invocation's scratch directory: removed, with everything in it, when dropped.
pub struct Scratch {
    dir: tempfile::TempDir,
    quota: Arc<Quota>,
}

impl Scratch {
    /// Makes a fresh directory of at most `size` bytes under `root` (created if missing,
    /// readable by this user only).
    pub fn create(root: &Path, size: u64) -> io::Result<Self> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("inv-{}-", std::process::id()))
            .tempdir_in(root)?;
        let quota = Arc::new(Quota {
            root: dir.path().to_path_buf(),
            limit: size,
            used: Mutex::new(Some(0)),
            open: Mutex::new(Vec::new()),
        });
        Ok(Self { dir, quota })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn quota(&self) -> Arc<Quota> {
        self.quota.clone()
    }
}

/// What one scratch directory may hold, and what it holds.
#[derive(Debug)]
pub(crate) struct Quota {
    root: PathBuf,
    limit: u64,
    /// Bytes in use; `None` when a shrinking call means they must be counted again.
    used: Mutex<Option<u64>>,
    /// What the guest opened, to count files it holds that no name reaches.
    open: Mutex<Vec<Weak<std::fs::File>>>,
}

impl Quota {
    /// Charges `bytes` about to be added, or refuses them if they would pass the size.
    pub(crate) fn grow(&self, bytes: u64) -> Result<(), ErrorCode> {
        if bytes == 0 {
            return Ok(());
        }
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        let now = match *used {
            Some(now) => now,
            None => self.count().map_err(|_| ErrorCode::Io)?.0,
        };
        match now.checked_add(bytes).filter(|&after| after <= self.limit) {
            Some(after) => {
                *used = Some(after);
                Ok(())
            }
            None => {
                *used = Some(now);
                Err(ErrorCode::InsufficientSpace)
            }
        }
    }

    /// Something may have shrunk: count again before the next charge.
    pub(crate) fn stale(&self) {
        *self.used.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Keeps `file` in mind while the guest holds it.
    pub(crate) fn opened(&self, file: &Arc<std::fs::File>) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.retain(|f| f.strong_count() > 0);
        open.push(Arc::downgrade(file));
    }

    /// Refuses an open past [`MAX_OPEN`].
    pub(crate) fn room_to_open(&self) -> Result<(), ErrorCode> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.retain(|f| f.strong_count() > 0);
        if open.len() >= MAX_OPEN {
            return Err(ErrorCode::Quota);
        }
        Ok(())
    }

    /// Refuses a new entry past [`MAX_ENTRIES`].
    pub(crate) fn room_for_entry(&self) -> Result<(), ErrorCode> {
        let (_, entries) = self.count().map_err(|_| ErrorCode::Io)?;
        if entries >= MAX_ENTRIES {
            return Err(ErrorCode::InsufficientSpace);
        }
        Ok(())
    }

    /// The bytes of the files under the root and of the open files no name reaches, and the
    /// entries, symlinks not followed.
    fn count(&self) -> io::Result<(u64, u64)> {
        let (mut bytes, mut entries) = (0u64, 0u64);
        let held: Vec<Arc<std::fs::File>> = self
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for file in held {
            let meta = file.metadata()?;
            if meta.is_file() && meta.nlink() == 0 {
                bytes = bytes.saturating_add(meta.len());
            }
        }
        let mut dirs = vec![self.root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let meta = std::fs::symlink_metadata(entry.path())?;
                entries += 1;
                if meta.is_dir() {
                    dirs.push(entry.path());
                } else if meta.is_file() {
                    bytes = bytes.saturating_add(meta.len());
                }
            }
        }
        Ok((bytes, entries))
    }
}

/// Where a stream writes: from a position on, or at the end.
#[derive(Debug, Clone, Copy)]
pub(crate) enum StreamAt {
    Position(u64),
    Append,
}

/// A file's output stream that charges the quota before each write. Writes are made at once,
/// on the invocation's own thread (a scratch file is local and at most the declared size).
pub(crate) struct QuotaStream {
    pub(crate) file: Arc<std::fs::File>,
    pub(crate) at: StreamAt,
    pub(crate) quota: Arc<Quota>,
}

impl QuotaStream {
    fn write_now(&mut self, bytes: &[u8]) -> Result<(), ErrorCode> {
        let len = self.file.metadata().map_err(|e| ErrorCode::from(&e))?.len();
        let at = match self.at {
            StreamAt::Position(at) => at,
            StreamAt::Append => len,
        };
        let end = at.saturating_add(bytes.len() as u64);
        self.quota.grow(end.saturating_sub(len))?;
        self.file
            .write_all_at(bytes, at)
            .map_err(|e| ErrorCode::from(&e))?;
        if let StreamAt::Position(at) = &mut self.at {
            *at = end;
        }
        Ok(())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for QuotaStream {
    async fn ready(&mut self) {}
}

impl OutputStream for QuotaStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_now(&bytes).map_err(|code| {
            // The guest reads the code back through `filesystem-error-code`, which knows
            // `std::io::Error`s.
            let error = match code {
                ErrorCode::InsufficientSpace => io::Error::from_raw_os_error(libc::ENOSPC),
                _ => io::Error::other(format!("{code:?}")),
            };
            StreamError::LastOperationFailed(wasmtime::Error::new(error))
        })
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(STREAM_CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quota_charges_growth_and_counts_again_after_a_shrink() {
        let root = tempfile::tempdir().expect("tempdir");
        let scratch = Scratch::create(&root.path().join("scratch"), 1000).expect("scratch");
        let quota = scratch.quota();
        quota.grow(600).expect("within");
        assert_eq!(quota.grow(401), Err(ErrorCode::InsufficientSpace));
        quota.grow(400).expect("up to the size");
        // Nothing was written: counted again, the directory is empty.
        quota.stale();
        quota.grow(1000).expect("all of it again");
        std::fs::write(scratch.path().join("a"), vec![0; 900]).expect("write");
        quota.stale();
        assert_eq!(quota.grow(101), Err(ErrorCode::InsufficientSpace));
        quota.grow(100).expect("what is left");
        let path = scratch.path().to_path_buf();
        drop(scratch);
        assert!(!path.exists(), "removed with the invocation");
    }

    /// A stream write past the size fails as a full disk does: the guest's
    /// `filesystem-error-code` reads `insufficient-space` from it.
    #[test]
    fn a_stream_write_past_the_size_fails_as_a_full_disk() {
        let root = tempfile::tempdir().expect("tempdir");
        let scratch = Scratch::create(root.path(), 100).expect("scratch");
        let file = std::fs::File::create(scratch.path().join("a")).expect("create");
        let mut stream = QuotaStream {
            file: Arc::new(file),
            at: StreamAt::Position(0),
            quota: scratch.quota(),
        };
        stream.write(Bytes::from(vec![1; 60])).expect("within");
        stream
            .write(Bytes::from(vec![2; 40]))
            .expect("up to the size");
        let Err(StreamError::LastOperationFailed(error)) = stream.write(Bytes::from_static(b"x"))
        else {
            panic!("a byte past the size is refused");
        };
        let io = error.downcast_ref::<io::Error>().expect("an io error");
        assert_eq!(ErrorCode::from(io), ErrorCode::InsufficientSpace);
        assert_eq!(
            std::fs::metadata(scratch.path().join("a"))
                .expect("a")
                .len(),
            100
        );
        let mut overwrite = QuotaStream {
            file: stream.file.clone(),
            at: StreamAt::Position(0),
            quota: scratch.quota(),
        };
        overwrite
            .write(Bytes::from(vec![3; 100]))
            .expect("rewriting what is there adds nothing");
    }

    /// A file unlinked while it is held open keeps its bytes: the count sees it until it is
    /// closed.
    #[test]
    fn an_unlinked_file_still_open_still_counts() {
        let root = tempfile::tempdir().expect("tempdir");
        let scratch = Scratch::create(root.path(), 1000).expect("scratch");
        let quota = scratch.quota();
        let path = scratch.path().join("a");
        let file = Arc::new(std::fs::File::create(&path).expect("create"));
        quota.opened(&file);
        quota.grow(900).expect("within");
        file.write_all_at(&[7; 900], 0).expect("write");
        std::fs::remove_file(&path).expect("unlink");
        quota.stale();
        assert_eq!(quota.grow(101), Err(ErrorCode::InsufficientSpace));
        drop(file);
        quota.stale();
        quota.grow(1000).expect("closed: its bytes are gone");
    }

    #[test]
    fn dead_processes_scratch_is_swept_and_live_ones_kept() {
        let root = tempfile::tempdir().expect("tempdir");
        let live = Scratch::create(root.path(), 10).expect("scratch");
        let dead = root.path().join("inv-999999999-abc");
        std::fs::create_dir(&dead).expect("a dead process's");
        sweep(root.path());
        assert!(!dead.exists());
        assert!(live.path().exists(), "this process is alive");
    }

    #[test]
    fn entries_past_the_most_are_refused() {
        let root = tempfile::tempdir().expect("tempdir");
        let scratch = Scratch::create(root.path(), 1 << 20).expect("scratch");
        let quota = scratch.quota();
        for n in 0..MAX_ENTRIES {
            quota.room_for_entry().expect("room");
            std::fs::write(scratch.path().join(n.to_string()), b"").expect("create");
        }
        assert_eq!(quota.room_for_entry(), Err(ErrorCode::InsufficientSpace));
    }
}
