//! [`LoadedManifest::load`] against real files: directories, missing files, bad bytes, size cap.

use std::path::PathBuf;

use super::{VALID, valid_with};
use crate::manifest::{LoadedManifest, MANIFEST_FILE_NAME, MAX_MANIFEST_BYTES, ManifestError};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "airlock-manifest-test-{tag}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn load_accepts_a_directory_or_a_file() {
    let tmp = TempDir::new("load");
    let file = tmp.0.join(MANIFEST_FILE_NAME);
    std::fs::write(&file, VALID).expect("write manifest");
    let from_dir = LoadedManifest::load(&tmp.0).expect("load dir");
    assert_eq!(from_dir.path, file);
    assert_eq!(from_dir.dir, tmp.0);
    let from_file = LoadedManifest::load(&file).expect("load file");
    assert_eq!(from_file, from_dir);
}

#[test]
fn load_of_directory_without_manifest_says_so() {
    let tmp = TempDir::new("empty");
    let err = LoadedManifest::load(&tmp.0).expect_err("no manifest");
    let ManifestError::Io { path, source } = &err else {
        panic!("expected Io, got {err:?}");
    };
    assert_eq!(path, &tmp.0.join(MANIFEST_FILE_NAME));
    assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
    let text = err.to_string();
    assert!(text.starts_with("cannot read "), "{text}");
    assert!(text.contains("contains no airlock.toml"), "{text}");
}

#[test]
fn load_of_missing_file_is_io_error() {
    let tmp = TempDir::new("missing");
    let err = LoadedManifest::load(&tmp.0.join("nope.toml")).expect_err("missing");
    assert!(matches!(err, ManifestError::Io { .. }), "{err:?}");
    assert!(err.to_string().starts_with("cannot read "), "{err}");
}

#[test]
fn load_reports_parse_errors_with_the_file_path() {
    let tmp = TempDir::new("bad");
    let file = tmp.0.join(MANIFEST_FILE_NAME);
    std::fs::write(&file, valid_with("\"10s\"", "\"0s\"")).expect("write");
    let err = LoadedManifest::load(&tmp.0).expect_err("zero timeout");
    let prefix = format!("{}:17:11: ", file.display());
    assert!(err.to_string().starts_with(&prefix), "{err}");
}

#[test]
fn load_rejects_invalid_utf8_with_position() {
    let tmp = TempDir::new("utf8");
    let file = tmp.0.join(MANIFEST_FILE_NAME);
    std::fs::write(&file, b"[integration]\nid = \"\xff\"\n").expect("write");
    match LoadedManifest::load(&file) {
        Err(ManifestError::Parse {
            line,
            column,
            message,
            ..
        }) => {
            assert_eq!((line, column), (2, 7));
            assert!(message.contains("UTF-8"), "{message}");
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn load_refuses_oversized_manifests() {
    let tmp = TempDir::new("big");
    let file = tmp.0.join(MANIFEST_FILE_NAME);
    let padding = "#".repeat(usize::try_from(MAX_MANIFEST_BYTES).expect("fits"));
    std::fs::write(&file, format!("{VALID}{padding}")).expect("write");
    let err = LoadedManifest::load(&file).expect_err("too big");
    assert!(err.to_string().contains("larger than 1 MiB"), "{err}");
}
