//! Backups of the embedded store, and restoring one into an empty data dir (docs/deploy.md,
//! "Backup and restore").
//!
//! A backup is one file ([`frames`]): every tree of the database as its records, the tenants'
//! wrapped data keys, the trust file and the bundles, then a manifest with the SHA-256 of all
//! of it. Records rather than sled's own files, which keep values long since removed (a
//! shredded tenant's among them). Never in it: the master key (kept apart on purpose, so a
//! stolen backup opens nothing; it is backed up on its own), the compile cache and its key
//! (bound to this host, rebuilt on use), the lock and the operator's socket.
//!
//! One moment: the records, the key files and the trust file are copied with the gate shut
//! ([`crate::pause`]), so each change is in the backup whole or not at all: a tenant deleted
//! meanwhile has its key file and its records in it, or neither. Bundles are copied once the
//! gate opens again: each is named by its digest, stored before any installation names it and
//! never removed, so every bundle the copied records name is still there.
//!
//! A restore reads the whole file into a new directory beside the target, which must be absent
//! or empty, and leaves the target alone until [`Staged::commit`] renames it into place. The
//! trail's chain id and checkpoint count are read ([`RestoredTrail`]) but not put back: the
//! checkpoints signed under that id go on describing the original data dir, and the restored
//! records go on as a new chain once checked against them.

mod frames;

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::audit::RestoredTrail;
pub use frames::FrameError;
use frames::{Frame, Reader, Writer};

use super::installations::{BUNDLES_DIR, is_bundle_name};
use super::keys::{KEYS_DIR, tenant_of_key_file};
use super::trust::TRUST_FILE;
use super::{DB_DIR, Store, StoreError, audit, format};
use airlock_runtime::bundle::trusted::MAX_BUNDLE_BYTES;
use airlock_runtime::clock::{now_unix_ms, rfc3339_ms};
use airlock_runtime::fsutil::{self, Confined};

/// The backup format this version writes and reads.
pub const FORMAT: u32 = 1;

/// What a backup file says of itself, last in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The backup format ([`FORMAT`]).
    pub format: u32,
    /// The moment the backup holds (RFC 3339, UTC).
    pub created: String,
    /// The airlock version that wrote it.
    pub airlock: String,
    /// The data dir format of the store in it.
    pub store_format: u32,
    pub trees: u64,
    pub records: u64,
    /// Key files, the trust file and bundles.
    pub files: u64,
    /// How many bytes come before the manifest, and their SHA-256 (hex).
    pub bytes: u64,
    pub digest: String,
    /// The backup's maker's signature over `digest` and `created` ([`Store::backup`]); opaque
    /// to the store.
    pub seal: String,
}

/// Why a backup could not be written or restored. Never carries a record's contents.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{} already exists; a backup never replaces a file", path.display())]
    Exists { path: PathBuf },
    #[error(
        "refusing to restore into {}: it is not an empty directory (restore only into an empty or \
         absent data dir)",
        path.display()
    )]
    Occupied { path: PathBuf },
    // The fields are not `source`: the message holds them, and a chain would say them twice.
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error("the backup {}: {problem}", path.display())]
    Frames { path: PathBuf, problem: FrameError },
    #[error("the backup {} is damaged: {reason}", path.display())]
    Damaged { path: PathBuf, reason: String },
    #[error(
        "the backup {} is of format {found}, written by a newer airlock; this one reads format \
         {FORMAT}",
        path.display()
    )]
    Format { path: PathBuf, found: u32 },
    #[error(
        "the backup {} holds a data dir of format {found}; this airlock restores format {}",
        path.display(),
        format::FORMAT
    )]
    StoreFormat { path: PathBuf, found: u32 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> BackupError + '_ {
    move |error| BackupError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// What was written or read, for the manifest and its check.
#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    trees: u64,
    records: u64,
    files: u64,
}

impl Store {
    /// Writes a backup of this store to the new file `to` (0600; refused if anything is there)
    /// as of one moment (see the module doc) and returns its manifest. While it copies the
    /// records and key files, changes wait. `seal` is given the digest and the time and
    /// returns the maker's signature over them, kept in the manifest for a restore to check.
    pub fn backup(
        &self,
        to: &Path,
        seal: impl FnOnce(&str, &str) -> String,
    ) -> Result<Manifest, BackupError> {
        if fs::symlink_metadata(to).is_ok() {
            return Err(BackupError::Exists {
                path: to.to_path_buf(),
            });
        }
        let dir = fsutil::parent_of(to);
        let temp = tempfile::Builder::new()
            .prefix(".airlock-backup-")
            .permissions(fs::Permissions::from_mode(0o600))
            .tempfile_in(dir)
            .map_err(io_at(dir))?;
        let written = io_at(temp.path());
        let mut out = Writer::new(BufWriter::new(temp.as_file())).map_err(io_at(temp.path()))?;
        let mut counts = Counts::default();
        let created = {
            let _shut = self.gate.shut();
            let created = rfc3339_ms(now_unix_ms());
            self.write_records(&mut out, &mut counts)
                .map_err(io_at(temp.path()))?;
            let trust = self
                .trust_file()?
                .map(|bytes| (TRUST_FILE.to_string(), bytes));
            for (path, bytes) in self
                .key_files()?
                .into_iter()
                .map(|(name, bytes)| (format!("{KEYS_DIR}/{name}"), bytes))
                .chain(trust)
            {
                out.file(&path, &bytes).map_err(io_at(temp.path()))?;
                counts.files += 1;
            }
            created
        };
        self.write_bundles(&mut out, &mut counts)?;
        let (bytes, digest) = out.digest();
        let manifest = Manifest {
            format: FORMAT,
            airlock: env!("CARGO_PKG_VERSION").to_string(),
            store_format: format::FORMAT,
            trees: counts.trees,
            records: counts.records,
            files: counts.files,
            bytes,
            seal: seal(&digest, &created),
            digest,
            created,
        };
        let json = serde_json::to_vec(&manifest).map_err(|e| written(e.into()))?;
        out.finish(&json)
            .and_then(|buffered| {
                buffered
                    .into_inner()
                    .map_err(io::IntoInnerError::into_error)
            })
            .and_then(|file| file.sync_all())
            .map_err(io_at(temp.path()))?;
        // A link, not a rename: it never replaces a file that appeared meanwhile.
        fs::hard_link(temp.path(), to).map_err(|source| match source.kind() {
            io::ErrorKind::AlreadyExists => BackupError::Exists {
                path: to.to_path_buf(),
            },
            _ => io_at(to)(source),
        })?;
        drop(temp);
        fsutil::sync_dir(dir).map_err(io_at(dir))?;
        Ok(manifest)
    }

    /// Every record of every tree (called with the gate shut).
    fn write_records<W: io::Write>(
        &self,
        out: &mut Writer<W>,
        counts: &mut Counts,
    ) -> io::Result<()> {
        let sled = |e: sled::Error| io::Error::other(e.to_string());
        let db = self.db().map_err(|e| io::Error::other(e.to_string()))?;
        for name in db.tree_names() {
            let tree = db.open_tree(&name).map_err(sled)?;
            out.tree(&name)?;
            counts.trees += 1;
            for entry in tree.iter() {
                let (key, value) = entry.map_err(sled)?;
                out.entry(&key, &value)?;
                counts.records += 1;
            }
        }
        Ok(())
    }

    /// Every bundle (after the gate opened again: see the module doc).
    fn write_bundles<W: io::Write>(
        &self,
        out: &mut Writer<W>,
        counts: &mut Counts,
    ) -> Result<(), BackupError> {
        let path = self.data_dir.join(BUNDLES_DIR);
        let Some(dir) = Confined::open(&path).map_err(io_at(&path))? else {
            return Ok(());
        };
        let mut names = dir.file_names().map_err(io_at(&path))?;
        names.retain(|name| is_bundle_name(name));
        names.sort();
        for name in names {
            let read = dir.read(&name, MAX_BUNDLE_BYTES);
            if let Some(bytes) = read.map_err(io_at(&dir.path_of(&name)))? {
                out.file(&format!("{BUNDLES_DIR}/{name}"), &bytes)
                    .map_err(io_at(&path))?;
                counts.files += 1;
            }
        }
        Ok(())
    }
}

/// A backup restored into a new directory beside its target, not yet in place: dropped, it is
/// removed and the target is as it was.
pub struct Staged {
    dir: tempfile::TempDir,
    target: PathBuf,
    manifest: Manifest,
    trail: RestoredTrail,
}

impl Staged {
    /// Where the restored data dir is until it is committed: open the store here to check it.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The trail's metadata as the backup held it.
    pub fn trail(&self) -> &RestoredTrail {
        &self.trail
    }

    /// Renames the restored data dir into place; refused if the target was filled meanwhile
    /// (an empty directory is replaced). Close every store opened on [`Self::path`] first.
    pub fn commit(self) -> Result<PathBuf, BackupError> {
        let staged = self.dir.keep();
        if let Err(source) = fs::rename(&staged, &self.target) {
            // Best effort: what is left is a copy of the backup, named as a temp dir.
            let _ = fs::remove_dir_all(&staged);
            return Err(match source.kind() {
                io::ErrorKind::DirectoryNotEmpty
                | io::ErrorKind::AlreadyExists
                | io::ErrorKind::NotADirectory => BackupError::Occupied { path: self.target },
                _ => io_at(&self.target)(source),
            });
        }
        let parent = fsutil::parent_of(&self.target);
        fsutil::sync_dir(parent).map_err(io_at(parent))?;
        Ok(self.target)
    }
}

/// Restores the backup `from` into a new directory beside `target` (absent, or an empty
/// directory), checking it whole on the way: the header, every frame, the manifest's counts
/// and digest. The target is not touched until [`Staged::commit`].
pub fn stage(from: &Path, target: &Path) -> Result<Staged, BackupError> {
    refuse_occupied(target)?;
    let file = File::open(from).map_err(io_at(from))?;
    let frames = |problem| BackupError::Frames {
        path: from.to_path_buf(),
        problem,
    };
    let mut reader = Reader::new(BufReader::new(file)).map_err(frames)?;
    let parent = fsutil::parent_of(target);
    let dir = tempfile::Builder::new()
        .prefix(".airlock-restore-")
        .permissions(fs::Permissions::from_mode(0o700))
        .tempdir_in(parent)
        .map_err(io_at(parent))?;
    let mut import = Import::new(dir.path(), from)?;
    let (manifest, bytes, digest) = loop {
        match reader.next().map_err(frames)? {
            Frame::Tree(name) => import.tree(name)?,
            Frame::Entry(key, value) => import.entry(key, value)?,
            Frame::File(path, bytes) => import.file(&path, &bytes)?,
            Frame::End {
                manifest,
                bytes,
                digest,
            } => break (manifest, bytes, digest),
        }
    };
    let (counts, trail) = import.finish()?;
    let manifest = checked(from, &manifest, bytes, &digest, &counts)?;
    Ok(Staged {
        dir,
        target: target.to_path_buf(),
        manifest,
        trail,
    })
}

/// Refuses a target that is anything but an absent path or an empty directory.
fn refuse_occupied(target: &Path) -> Result<(), BackupError> {
    let occupied = match fs::read_dir(target) {
        Ok(mut entries) => entries.next().is_some(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => true,
        Err(e) => return Err(io_at(target)(e)),
    };
    match occupied {
        true => Err(BackupError::Occupied {
            path: target.to_path_buf(),
        }),
        false => Ok(()),
    }
}

/// The manifest, if it is this format's and states what was read.
fn checked(
    from: &Path,
    manifest: &[u8],
    bytes: u64,
    digest: &str,
    counts: &Counts,
) -> Result<Manifest, BackupError> {
    let damaged = |reason: String| BackupError::Damaged {
        path: from.to_path_buf(),
        reason,
    };
    let manifest: Manifest = serde_json::from_slice(manifest)
        .map_err(|e| damaged(format!("its manifest does not parse ({e})")))?;
    if manifest.format != FORMAT {
        return Err(BackupError::Format {
            path: from.to_path_buf(),
            found: manifest.format,
        });
    }
    if manifest.bytes != bytes || manifest.digest != digest {
        return Err(damaged(format!(
            "its {bytes} bytes have SHA-256 {digest}, but its manifest says {} bytes with {}: \
             it was changed after it was written",
            manifest.bytes, manifest.digest
        )));
    }
    let stated = Counts {
        trees: manifest.trees,
        records: manifest.records,
        files: manifest.files,
    };
    if &stated != counts {
        return Err(damaged(format!(
            "it holds {counts:?}, but its manifest says {stated:?}"
        )));
    }
    if manifest.store_format != format::FORMAT {
        return Err(BackupError::StoreFormat {
            path: from.to_path_buf(),
            found: manifest.store_format,
        });
    }
    Ok(manifest)
}

/// Where a restore is putting what it reads.
struct Import<'a> {
    root: &'a Path,
    from: &'a Path,
    db: sled::Db,
    into: Next,
    batch: sled::Batch,
    pending: usize,
    counts: Counts,
    trail: RestoredTrail,
}

/// Where the records read next go.
enum Next {
    Nowhere,
    Tree(sled::Tree),
    /// The trail's metadata: read, not put back (see the module doc).
    TrailMeta,
}

impl<'a> Import<'a> {
    fn new(root: &'a Path, from: &'a Path) -> Result<Self, BackupError> {
        Ok(Self {
            db: crate::database::open_db(&root.join(DB_DIR))?,
            root,
            from,
            into: Next::Nowhere,
            batch: sled::Batch::default(),
            pending: 0,
            counts: Counts::default(),
            trail: RestoredTrail::default(),
        })
    }

    fn damaged(&self, reason: String) -> BackupError {
        BackupError::Damaged {
            path: self.from.to_path_buf(),
            reason,
        }
    }

    fn tree(&mut self, name: Vec<u8>) -> Result<(), BackupError> {
        self.apply()?;
        self.counts.trees += 1;
        self.into = if name == audit::META.as_bytes() {
            Next::TrailMeta
        } else {
            Next::Tree(self.db.open_tree(name).map_err(StoreError::from)?)
        };
        Ok(())
    }

    fn entry(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), BackupError> {
        self.counts.records += 1;
        match &self.into {
            Next::Nowhere => Err(self.damaged("it holds a record before any tree".into())),
            Next::TrailMeta => Ok(audit::restored_meta(&mut self.trail, &key, &value)?),
            Next::Tree(_) => {
                self.batch.insert(key, value);
                self.pending += 1;
                if self.pending == format::BATCH {
                    self.apply()?;
                }
                Ok(())
            }
        }
    }

    /// Writes the records batched so far into the tree they belong to.
    fn apply(&mut self) -> Result<(), BackupError> {
        let batch = std::mem::take(&mut self.batch);
        if let Next::Tree(tree) = &self.into {
            tree.apply_batch(batch).map_err(StoreError::from)?;
        }
        self.pending = 0;
        Ok(())
    }

    /// Puts a file where the data dir keeps it: only the names a backup writes are taken.
    fn file(&mut self, path: &str, bytes: &[u8]) -> Result<(), BackupError> {
        self.counts.files += 1;
        let confined = |dir: &str| {
            let at = self.root.join(dir);
            Confined::create(&at, 0o700).map_err(io_at(&self.root.join(dir)))
        };
        let written = match path.split_once('/') {
            None if path == TRUST_FILE => fsutil::write_atomic(&self.root.join(path), bytes),
            Some((KEYS_DIR, name)) if tenant_of_key_file(name).is_some() => {
                confined(KEYS_DIR)?.write_private_new_atomic(name, bytes)
            }
            Some((BUNDLES_DIR, name)) if is_bundle_name(name) => {
                confined(BUNDLES_DIR)?.write_atomic(name, bytes)
            }
            _ => return Err(self.damaged(format!("it holds an unexpected file {path:?}"))),
        };
        written.map_err(|source| match source.kind() {
            io::ErrorKind::AlreadyExists => self.damaged(format!("it holds {path:?} twice")),
            _ => io_at(&self.root.join(path))(source),
        })
    }

    /// Makes everything imported durable; returns what was read.
    fn finish(mut self) -> Result<(Counts, RestoredTrail), BackupError> {
        self.apply()?;
        self.db.flush().map_err(StoreError::from)?;
        fsutil::sync_dir(self.root).map_err(io_at(self.root))?;
        Ok((self.counts, self.trail))
    }
}

#[cfg(test)]
mod tests;
