//! Small filesystem helpers for files that hold key material.

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
    // A bare file name's parent is the empty path: that is the current directory.
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}
