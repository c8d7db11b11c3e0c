//! What `airlock watch` watches: the files a fixture run depends on (the component's sources,
//! the manifest, the schemas it names and the fixture cases), and whether any changed.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use airlock_runtime::manifest::LoadedManifest;

use crate::fixtures::FIXTURE_DIR;
use crate::freshness::{SOURCES, visit};

/// The paths to watch for the integration in `dir` (files or directories, present or not). The
/// schemas are the ones its manifest names when it loads; a manifest being edited into shape
/// is watched itself, and names them again once it loads.
pub fn watched(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = SOURCES.iter().map(|name| dir.join(name)).collect();
    paths.push(dir.join(FIXTURE_DIR));
    match LoadedManifest::load(dir) {
        Ok(loaded) => {
            let manifest = &loaded.manifest;
            let schemas = manifest.config.iter().map(|config| &config.schema).chain(
                manifest
                    .actions
                    .values()
                    .flat_map(|action| [&action.input, &action.output]),
            );
            paths.extend(schemas.map(|schema| loaded.resolve(schema)));
            paths.push(loaded.path);
        }
        Err(_) => paths.push(dir.join(airlock_runtime::manifest::MANIFEST_FILE_NAME)),
    }
    paths.sort();
    paths.dedup();
    paths
}

/// Every file under the watched paths with when it last changed and its size: two snapshots
/// differ when a file was written, added or removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Snapshot(BTreeMap<PathBuf, (Option<SystemTime>, u64)>);

impl Snapshot {
    pub fn take(paths: &[PathBuf]) -> io::Result<Snapshot> {
        let mut files = BTreeMap::new();
        for path in paths {
            visit(path, &mut |file, meta| {
                files.insert(file.to_path_buf(), (meta.modified().ok(), meta.len()));
            })?;
        }
        Ok(Snapshot(files))
    }

    /// Takes `path` as `now` has it: for a file the run itself writes (a build updates
    /// `Cargo.lock`), which is no change to run again for.
    pub fn adopt(&mut self, now: &Snapshot, path: &Path) {
        match now.0.get(path) {
            Some(seen) => self.0.insert(path.to_path_buf(), *seen),
            None => self.0.remove(path),
        };
    }

    /// A file that differs between `earlier` and this snapshot (written, added or removed), if
    /// any: the one a change is reported by.
    pub fn changed_since<'a>(&'a self, earlier: &'a Snapshot) -> Option<&'a Path> {
        let written_or_added = self
            .0
            .iter()
            .find(|(path, seen)| earlier.0.get(*path) != Some(seen))
            .map(|(path, _)| path.as_path());
        written_or_added.or_else(|| {
            earlier
                .0
                .keys()
                .find(|path| !self.0.contains_key(*path))
                .map(PathBuf::as_path)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"[integration]
id = "acme/watched"
version = "0.1.0"
description = "Watched."
component = "target/release/x.wasm"

[publisher]
name = "Acme"
support = "mailto:support@acme.example"
privacy-policy = "https://acme.example/privacy"

[config]
schema = "schemas/config.json"

[actions.get]
description = "Gets."
input = "schemas/get.in.json"
output = "schemas/get.out.json"
"#;

    #[test]
    fn sources_schemas_manifest_and_cases_are_watched_and_builds_are_not() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        for sub in ["src", "schemas", "tests", "target/release"] {
            std::fs::create_dir_all(root.join(sub)).expect("dir");
        }
        std::fs::write(root.join("airlock.toml"), MANIFEST).expect("manifest");
        let files = ["src/lib.rs", "tests/cases.toml", "target/release/x.wasm"];
        for file in files {
            std::fs::write(root.join(file), "1").expect("write");
        }
        let paths = watched(root);
        for named in ["airlock.toml", "schemas/config.json", "schemas/get.in.json"] {
            assert!(paths.contains(&root.join(named)), "{named} in {paths:?}");
        }
        let before = Snapshot::take(&paths).expect("snapshot");
        assert_eq!(
            Snapshot::take(&paths)
                .expect("again")
                .changed_since(&before),
            None
        );

        std::fs::write(root.join("target/release/x.wasm"), "built again").expect("build");
        std::fs::write(root.join("src/.lib.rs.swp"), "editor").expect("swap");
        assert_eq!(
            Snapshot::take(&paths)
                .expect("build")
                .changed_since(&before),
            None
        );

        std::fs::write(root.join("tests/cases.toml"), "12").expect("case");
        let after = Snapshot::take(&paths).expect("case");
        assert_eq!(
            after.changed_since(&before),
            Some(root.join("tests/cases.toml").as_path())
        );

        std::fs::remove_file(root.join("src/lib.rs")).expect("remove");
        let removed = Snapshot::take(&paths).expect("removed");
        assert_eq!(
            removed.changed_since(&after),
            Some(root.join("src/lib.rs").as_path())
        );
    }
}
