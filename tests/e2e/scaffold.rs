//! `airlock new` from an empty directory: the new crate builds with `airlock build` and passes
//! its own fixture cases with `airlock test`, for each template, with no edits.

use std::process::Output;

use tempfile::TempDir;

use crate::support::{airlock_in, stderr, stdout};

fn ok(out: &Output, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}\n{}\n{}",
        stdout(out),
        stderr(out)
    );
}

#[test]
fn a_new_integration_builds_and_passes_its_tests_as_it_is() {
    let data = TempDir::new().expect("temp");
    for (name, template, cases) in [("demo-conn", "http", 3), ("normalizer", "transform", 3)] {
        let empty = TempDir::new().expect("temp");
        let out = airlock_in(
            empty.path(),
            data.path(),
            &["new", name, "--template", template],
        );
        ok(&out, "new");
        let dir = empty.path().join(name);
        for file in ["Cargo.toml", "airlock.toml", "src/lib.rs", ".gitignore"] {
            assert!(dir.join(file).is_file(), "{name}: {file}");
        }
        ok(&airlock_in(&dir, data.path(), &["build"]), "build");
        let out = airlock_in(&dir, data.path(), &["test"]);
        ok(&out, "test");
        assert!(
            stdout(&out).contains(&format!("test result: ok. {cases} passed, 0 failed")),
            "{name}: {}",
            stdout(&out)
        );
        // The name is taken now: refused, and the crate is left as it was.
        let again = airlock_in(empty.path(), data.path(), &["new", name]);
        assert_eq!(again.status.code(), Some(2));
        assert!(
            stderr(&again).contains("already exists"),
            "{}",
            stderr(&again)
        );
        assert!(dir.join("target").is_dir(), "the built crate is untouched");
    }
}
