//! [`Confined`]: a directory that every name is resolved beneath.

use std::io::{self, Read, Write};
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt as _};

/// A directory of the data dir opened as a capability (`cap-std`): every name is resolved
/// beneath it, and `..`, absolute paths and symlinks that lead out are refused by the
/// handle itself. So no name from a bundle, a request or the database can reach outside it,
/// whatever checks its caller did or forgot. Bundles, the compile cache and the tenant keys
/// are kept through one (docs/security-model.md).
pub struct Confined {
    dir: Dir,
    path: PathBuf,
}

impl Confined {
    /// Opens `path`, creating it and missing parents with `mode` first.
    pub fn create(path: &Path, mode: u32) -> io::Result<Self> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(path)?;
        let dir = Dir::open_ambient_dir(path, cap_std::ambient_authority())?;
        Ok(Self {
            dir,
            path: path.to_path_buf(),
        })
    }

    /// Opens the existing directory `path`; `None` if there is none.
    pub fn open(path: &Path) -> io::Result<Option<Self>> {
        match Dir::open_ambient_dir(path, cap_std::ambient_authority()) {
            Ok(dir) => Ok(Some(Self {
                dir,
                path: path.to_path_buf(),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The directory's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where `name` is, for messages.
    pub fn path_of(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The contents of file `name`, refused past `max` bytes; `None` if there is none.
    pub fn read(&self, name: &str, max: u64) -> io::Result<Option<Vec<u8>>> {
        let file = match self.dir.open(name) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        // Sized from the metadata, so a large entry (a compiled artifact) is read into one
        // allocation instead of a vector doubling its way up; still capped by `take`.
        let size = file.metadata().map_or(0, |m| m.len().min(max + 1));
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        file.take(max + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > max {
            return Err(io::Error::other(format!("larger than {max} bytes")));
        }
        Ok(Some(bytes))
    }

    /// Whether an entry `name` exists (a link is not followed).
    pub fn contains(&self, name: &str) -> io::Result<bool> {
        match self.dir.symlink_metadata(name) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The names of the files directly in the directory.
    pub fn file_names(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in self.dir.entries()? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        Ok(names)
    }

    /// Replaces `name` with `bytes` atomically: a crash leaves the old file or the new one.
    pub fn write_atomic(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let temp = self.write_temp(bytes)?;
        if let Err(e) = self.dir.rename(&temp, &self.dir, name) {
            let _ = self.dir.remove_file(&temp);
            return Err(e);
        }
        self.sync()
    }

    /// [`Self::write_atomic`] over an existing `name`, then the replaced file's bytes
    /// overwritten with zeros and synced: only once the new file is durably in place, so a
    /// crash leaves the old file or the new one, never neither.
    pub fn replace_shredding(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::MetadataExt as _;
        let mut old = self
            .dir
            .open_with(name, OpenOptions::new().write(true))?
            .into_std();
        let was = old.metadata()?;
        self.write_atomic(name, bytes)?;
        // Owned as the old file was: a rotation run as root leaves the service its files.
        std::os::unix::fs::lchown(self.path_of(name), Some(was.uid()), Some(was.gid()))?;
        super::zero_fill(&mut old, was.len())?;
        old.sync_all()
    }

    /// Creates `name` holding `bytes` (mode 0600) only if nothing is there yet, atomically: a
    /// reader sees no file or the whole of it. `AlreadyExists` when another writer got there
    /// first (its file is kept).
    pub fn write_private_new_atomic(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let temp = self.write_temp(bytes)?;
        let linked = self.dir.hard_link(&temp, &self.dir, name);
        self.dir.remove_file(&temp)?;
        linked?;
        self.sync()
    }

    /// Destroys file `name`: overwrites it with zeros and syncs that before it unlinks it and
    /// syncs the directory (what the device keeps: docs/security-model.md, "Deletion").
    /// Returns false when there was no file.
    pub fn shred(&self, name: &str) -> io::Result<bool> {
        let meta = match self.dir.symlink_metadata(name) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        if meta.is_file() {
            let mut file = self.dir.open_with(name, OpenOptions::new().write(true))?;
            super::zero_fill(&mut file, meta.len())?;
            file.sync_all()?;
        }
        self.dir.remove_file(name)?;
        self.sync()?;
        Ok(true)
    }

    /// Makes the directory's entries (files created, renamed or removed) durable.
    pub fn sync(&self) -> io::Result<()> {
        // The handle itself may be `O_PATH`, which cannot be synced; `.` opened through it can.
        self.dir.open(".")?.sync_all()
    }

    /// Writes `bytes` to a new, synced, mode-0600 temp file named `.tmp…`; returns its name.
    fn write_temp(&self, bytes: &[u8]) -> io::Result<String> {
        let name = format!(".tmp{}", hex::encode(rand::random::<[u8; 8]>()));
        let mut file = self.dir.open_with(
            &name,
            OpenOptions::new().write(true).create_new(true).mode(0o600),
        )?;
        let written = file.write_all(bytes).and_then(|()| file.sync_all());
        if let Err(e) = written {
            let _ = self.dir.remove_file(&name);
            return Err(e);
        }
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_returns_the_whole_file_and_refuses_one_past_its_cap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let confined = Confined::create(&dir.path().join("d"), 0o700).expect("dir");
        let bytes: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        confined.write_atomic("entry", &bytes).expect("write");
        assert_eq!(confined.read("entry", 70_000).expect("read"), Some(bytes));
        let refused = confined.read("entry", 69_999).expect_err("one byte over");
        assert!(
            refused.to_string().contains("larger than 69999 bytes"),
            "{refused}"
        );
        assert_eq!(confined.read("absent", 10).expect("read"), None);
    }

    #[test]
    fn names_that_lead_outside_are_refused() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::write(root.path().join("outside"), b"secret").expect("write");
        let inner = Confined::create(&root.path().join("inner"), 0o700).expect("dir");
        std::os::unix::fs::symlink(root.path().join("outside"), inner.path_of("link"))
            .expect("symlink");
        let outside = root.path().join("outside");
        for name in ["../outside", outside.to_str().expect("utf-8")] {
            assert!(inner.read(name, 100).is_err(), "read {name}");
            assert!(inner.write_atomic(name, b"x").is_err(), "write {name}");
            assert!(
                inner.write_private_new_atomic(name, b"x").is_err(),
                "create {name}"
            );
            assert!(inner.shred(name).is_err(), "shred {name}");
        }
        // A link out is not followed: reading it is refused, writing replaces the link itself.
        assert!(inner.read("link", 100).is_err());
        assert!(inner.write_private_new_atomic("link", b"x").is_err());
        inner
            .write_atomic("link", b"x")
            .expect("the link is replaced");
        assert_eq!(inner.read("link", 100).expect("read"), Some(b"x".to_vec()));
        assert_eq!(std::fs::read(&outside).expect("kept"), b"secret");
    }

    #[test]
    fn files_are_written_whole_once_and_shredded() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = Confined::create(&root.path().join("d"), 0o700).expect("dir");
        assert_eq!(dir.read("a", 10).expect("read"), None);
        dir.write_atomic("a", b"one").expect("write");
        dir.write_atomic("a", b"two").expect("replace");
        assert_eq!(dir.read("a", 10).expect("read"), Some(b"two".to_vec()));
        assert!(dir.read("a", 2).is_err(), "past the cap");
        dir.write_private_new_atomic("k", b"key").expect("create");
        let again = dir.write_private_new_atomic("k", b"other");
        assert_eq!(
            again.expect_err("kept").kind(),
            io::ErrorKind::AlreadyExists
        );
        assert_eq!(dir.read("k", 10).expect("read"), Some(b"key".to_vec()));
        let mut names = dir.file_names().expect("names");
        names.sort();
        assert_eq!(names, ["a", "k"], "no temp file left");
        assert!(dir.shred("k").expect("shred"));
        assert!(!dir.shred("k").expect("again"));
    }
}
