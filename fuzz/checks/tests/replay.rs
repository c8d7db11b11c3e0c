//! Replays every committed corpus and regression input of every fuzz target through the
//! check its target runs: CI catches a regression without running a fuzzer
//! (`fuzz/run` is the fuzzer).

use std::fs;
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The names of the binaries in `fuzz/fuzz_targets/`.
fn binaries() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(fuzz_dir().join("fuzz_targets"))
        .expect("fuzz/fuzz_targets")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .map(|path| {
            path.file_stem()
                .expect("a name")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// The inputs under `fuzz/<kind>/<target>/`, by file name.
fn inputs(kind: &str, target: &str) -> Vec<(String, Vec<u8>)> {
    let Ok(dir) = fs::read_dir(fuzz_dir().join(kind).join(target)) else {
        return Vec::new();
    };
    let mut inputs: Vec<(String, Vec<u8>)> = dir
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| path.is_file())
        .map(|path| {
            let name = path
                .file_name()
                .expect("a name")
                .to_string_lossy()
                .into_owned();
            (name, fs::read(&path).expect("a readable input"))
        })
        .collect();
    inputs.sort();
    inputs
}

#[test]
fn every_binary_runs_a_check_and_every_check_has_a_binary() {
    let checks: Vec<&str> = airlock_fuzz_checks::TARGETS
        .iter()
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(binaries(), checks);
}

#[test]
fn every_corpus_and_regression_input_passes_its_check() {
    for (target, check) in airlock_fuzz_checks::TARGETS {
        let seeds = inputs("corpus", target);
        assert!(!seeds.is_empty(), "fuzz/corpus/{target} has no seed");
        for kind in ["corpus", "regressions"] {
            for (name, data) in inputs(kind, target) {
                let outcome = std::panic::catch_unwind(|| check(&data));
                assert!(
                    outcome.is_ok(),
                    "fuzz/{kind}/{target}/{name} fails its check"
                );
            }
        }
    }
}
