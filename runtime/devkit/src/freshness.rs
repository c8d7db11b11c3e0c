//! Whether a built component is older than the sources it is built from, so `airlock test`
//! and `airlock sign` never run or sign a stale component without saying so.

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What a guest crate's component is built from, relative to its directory.
pub(crate) const SOURCES: &[&str] = &["src", "wit", "build.rs", "Cargo.toml", "Cargo.lock"];

/// The newest source file under `dir` changed after `component` was written, if one was.
pub fn newer_source(dir: &Path, component: &Path) -> io::Result<Option<PathBuf>> {
    let built = std::fs::metadata(component)?.modified()?;
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for name in SOURCES {
        visit(&dir.join(name), &mut |path, meta| {
            let Ok(changed) = meta.modified() else {
                return;
            };
            if changed > built && newest.as_ref().is_none_or(|(at, _)| changed > *at) {
                newest = Some((changed, path.to_path_buf()));
            }
        })?;
    }
    Ok(newest.map(|(_, path)| path))
}

/// Calls `seen` with every file under `path` (itself, if a file) and when it last changed,
/// with its size; hidden files and editor backups (`.lib.rs.swp`, `lib.rs~`) are not sources.
pub(crate) fn visit(
    path: &Path,
    seen: &mut dyn FnMut(&Path, &std::fs::Metadata),
) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !name.starts_with('.') && !name.ends_with('~') {
                visit(&entry.path(), seen)?;
            }
        }
    } else if meta.is_file() {
        seen(path, &meta);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn touch(path: &Path, at: SystemTime) {
        std::fs::File::options()
            .write(true)
            .open(path)
            .and_then(|f| f.set_modified(at))
            .expect("set mtime");
    }

    #[test]
    fn a_source_changed_after_the_build_is_named_and_other_files_and_backups_are_not() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("src/deep")).expect("src");
        for file in ["src/lib.rs", "src/deep/mod.rs", "Cargo.toml", "README.md"] {
            std::fs::write(root.join(file), "x").expect("write");
        }
        let component = root.join("guest.wasm");
        std::fs::write(&component, "wasm").expect("component");
        let then = SystemTime::now() - Duration::from_secs(60);
        for file in ["src/lib.rs", "src/deep/mod.rs", "Cargo.toml", "README.md"] {
            touch(&root.join(file), then - Duration::from_secs(60));
        }
        touch(&component, then);
        assert_eq!(newer_source(root, &component).expect("check"), None);

        touch(&root.join("README.md"), then + Duration::from_secs(5));
        for backup in ["src/.lib.rs.swp", "src/lib.rs~"] {
            std::fs::write(root.join(backup), "editor").expect("backup");
        }
        assert_eq!(newer_source(root, &component).expect("check"), None);
        touch(&root.join("Cargo.toml"), then + Duration::from_secs(5));
        touch(&root.join("src/deep/mod.rs"), then + Duration::from_secs(9));
        assert_eq!(
            newer_source(root, &component).expect("check"),
            Some(root.join("src/deep/mod.rs"))
        );
    }

    #[test]
    fn a_missing_component_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(newer_source(dir.path(), &dir.path().join("none.wasm")).is_err());
    }
}
