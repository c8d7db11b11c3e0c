//! Small filesystem helpers for files that hold key material, and [`Confined`] directories.

mod confined;

pub use confined::Confined;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

/// Creates `path` with mode 0600 and writes `bytes`, refusing to overwrite an existing file.
///
/// `create_new` closes the race where two processes would both create a key and one would
/// silently lose it.
pub fn write_private_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Replaces `path` with `bytes` atomically: a crash leaves the old file or the new one, never
/// a mix. Writes a sibling temp file, syncs it, renames it over `path`, then syncs the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = parent_of(path);
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// Destroys the file at `path`: overwrites every byte with zeros and syncs that before it
/// unlinks the file and syncs the directory, so no file of the directory keeps its contents.
/// What the device underneath keeps (journals, copy-on-write, flash remapping) is
/// docs/security-model.md's "Deletion" section. Returns false when there was no file.
fn shred(path: &Path) -> std::io::Result<bool> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if meta.is_file() {
        let mut file = OpenOptions::new().write(true).open(path)?;
        zero_fill(&mut file, meta.len())?;
        file.sync_all()?;
    }
    std::fs::remove_file(path)?;
    sync_dir(parent_of(path))?;
    Ok(true)
}

/// Renames `from` over `to`, then overwrites the replaced file's bytes with zeros and syncs
/// them: only once the new file is durably in place, so a crash leaves the old file or the new
/// one, never neither. For a secret that is retired (a replaced key) and must not stay behind.
pub fn rename_shredding(from: &Path, to: &Path) -> std::io::Result<()> {
    let mut old = std::fs::OpenOptions::new().write(true).open(to)?;
    let len = old.metadata()?.len();
    std::fs::rename(from, to)?;
    sync_dir(parent_of(to))?;
    zero_fill(&mut old, len)?;
    old.sync_all()
}

/// Overwrites the first `len` bytes of `file` with zeros.
fn zero_fill(file: &mut impl Write, len: u64) -> std::io::Result<()> {
    let zeros = [0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left.min(zeros.len() as u64)).unwrap_or(zeros.len());
        file.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// [`shred`]s every file under `dir`, then removes the directories.
pub fn shred_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            shred_tree(&entry.path())?;
        } else {
            shred(&entry.path())?;
        }
    }
    std::fs::remove_dir(dir)?;
    sync_dir(parent_of(dir))
}

/// Gives `path` the owner and group of `like` (a no-op when they already match).
pub fn same_owner(path: &Path, like: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let (want, have) = (std::fs::metadata(like)?, std::fs::metadata(path)?);
    if (want.uid(), want.gid()) == (have.uid(), have.gid()) {
        return Ok(());
    }
    std::os::unix::fs::chown(path, Some(want.uid()), Some(want.gid()))
}

/// Makes the entries of `dir` (files created, renamed or removed in it) durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// The directory holding `path` (a bare file name's parent is the empty path: the current
/// directory).
pub fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}
