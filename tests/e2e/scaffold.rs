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

/// A data dir, and a work dir holding a new `normalizer` crate from the transform template
/// (its path third).
fn normalizer() -> (TempDir, TempDir, std::path::PathBuf) {
    let data = TempDir::new().expect("temp");
    let work = TempDir::new().expect("temp");
    ok(
        &airlock_in(
            work.path(),
            data.path(),
            &["new", "normalizer", "--template", "transform"],
        ),
        "new",
    );
    let dir = work.path().join("normalizer");
    (data, work, dir)
}

/// A connector author's edit loop: `airlock test` and `airlock sign` build first, so an edited
/// source is what runs and what is signed; with `--no-build` a component older than its
/// sources is refused, naming the file, and `check` warns of it; `keygen` leaves the public key beside the private one;
/// `sign` never replaces a bundle without `--force`.
#[test]
fn test_and_sign_never_use_a_stale_component_and_sign_never_replaces_a_bundle() {
    let (data, work, dir) = normalizer();
    ok(&airlock_in(&dir, data.path(), &["build"]), "build");
    ok(&airlock_in(&dir, data.path(), &["test"]), "test");

    let source = dir.join("src/lib.rs");
    let original = std::fs::read_to_string(&source).expect("source");
    assert!(original.contains(".to_lowercase()"), "the template changed");
    let edited = original.replace(".to_lowercase()", ".to_uppercase()");
    std::fs::write(&source, &edited).expect("edit");

    let stale = airlock_in(&dir, data.path(), &["test", "--no-build"]);
    assert_eq!(stale.status.code(), Some(2), "{}", stdout(&stale));
    assert!(
        stderr(&stale).contains("is older than") && stderr(&stale).contains("src/lib.rs"),
        "{}",
        stderr(&stale)
    );
    let checked = airlock_in(&dir, data.path(), &["check", "."]);
    ok(&checked, "check");
    assert!(
        stderr(&checked).contains("is older than") && stdout(&checked).contains("stale build"),
        "{}\n{}",
        stdout(&checked),
        stderr(&checked)
    );
    // Built first: the edit runs, and the fixture's lower-case output no longer matches.
    let rebuilt = airlock_in(&dir, data.path(), &["test"]);
    assert_eq!(rebuilt.status.code(), Some(1), "{}", stdout(&rebuilt));
    assert!(
        stderr(&rebuilt).contains("airlock: built"),
        "{}",
        stderr(&rebuilt)
    );
    assert!(stdout(&rebuilt).contains("FAILED"), "{}", stdout(&rebuilt));
    std::fs::write(&source, &original).expect("undo the edit");
    ok(
        &airlock_in(&dir, data.path(), &["test"]),
        "test after the undo",
    );

    let key = work.path().join("acme.key");
    let key_arg = key.display().to_string();
    let made = airlock_in(work.path(), data.path(), &["keygen", "--out", &key_arg]);
    ok(&made, "keygen");
    let public = std::fs::read_to_string(work.path().join("acme.pub")).expect("acme.pub");
    assert_eq!(public.trim(), stdout(&made).trim());

    let bundle = work.path().join("normalizer.airlock");
    let bundle_arg = bundle.display().to_string();
    let sign = ["sign", ".", "--key", &key_arg, "--out", &bundle_arg];
    ok(&airlock_in(&dir, data.path(), &sign), "sign");
    let first = std::fs::read(&bundle).expect("bundle");
    let again = airlock_in(&dir, data.path(), &sign);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));
    assert_eq!(
        std::fs::read(&bundle).expect("bundle"),
        first,
        "left as it was"
    );
    let mut forced = sign.to_vec();
    forced.push("--force");
    ok(&airlock_in(&dir, data.path(), &forced), "sign --force");

    // An action the manifest declares and the code does not answer: `check` names it.
    let manifest = dir.join("airlock.toml");
    let declared = std::fs::read_to_string(&manifest).expect("manifest");
    let (_, action) = declared
        .split_once("[actions.")
        .expect("the template declares an action");
    let schemas = &action[action.find("\ninput = ").expect("input")..];
    let undone =
        format!("{declared}\n[actions.denormalize]\ndescription = \"Not written yet.\"{schemas}");
    std::fs::write(&manifest, &undone).expect("declare");
    let checked = airlock_in(&dir, data.path(), &["check", "."]);
    ok(&checked, "check");
    assert!(
        stderr(&checked)
            .contains("declares action \"denormalize\", which the component does not export"),
        "{}",
        stderr(&checked)
    );
    assert!(
        !stderr(&checked).contains("\"normalize"),
        "the action it has is not named: {}",
        stderr(&checked)
    );
    std::fs::write(&manifest, &declared).expect("undeclare");
    let checked = airlock_in(&dir, data.path(), &["check", "."]);
    assert!(
        stdout(&checked).contains("is ready to run"),
        "{}",
        stdout(&checked)
    );
}

/// `airlock watch` reruns the cases when a source or a case file changes, one summary line a
/// run, rebuilding first, and stops cleanly on Ctrl-C.
#[test]
fn watch_reruns_the_cases_on_every_change_and_stops_on_ctrl_c() {
    let (data, _work, dir) = normalizer();
    let mut watch = Watch::start(&dir, data.path());
    watch.expect("[run 1] first run: ok. 3 passed, 0 failed");

    let source = dir.join("src/lib.rs");
    let original = std::fs::read_to_string(&source).expect("source");
    let edited = original.replace(".to_lowercase()", ".to_uppercase()");
    std::fs::write(&source, &edited).expect("edit");
    watch.expect("[run 2] src/lib.rs changed: FAILED.");
    std::fs::write(&source, &original).expect("undo");
    watch.expect("[run 3] src/lib.rs changed: ok. 3 passed, 0 failed");
    std::fs::write(&source, format!("{original}\nfn broken( {{\n")).expect("break");
    watch.expect("[run 4] src/lib.rs changed: error: build command failed");
    std::fs::write(&source, &original).expect("mend");
    watch.expect("[run 5] src/lib.rs changed: ok. 3 passed, 0 failed");

    let cases = std::fs::read_dir(dir.join("tests"))
        .expect("tests/")
        .map(|entry| entry.expect("entry").path())
        .find(|path| path.extension().is_some_and(|e| e == "toml"))
        .expect("a case file");
    let text = std::fs::read_to_string(&cases).expect("cases");
    std::fs::write(&cases, format!("{text}\n# touched\n")).expect("touch");
    let name = cases
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    watch.expect(&format!(
        "[run 6] tests/{name} changed: ok. 3 passed, 0 failed"
    ));
    // An editor's swap file is not a change.
    std::fs::write(dir.join("src/.lib.rs.swp"), "editor").expect("swap");
    std::thread::sleep(std::time::Duration::from_secs(2));

    let (code, rest) = watch.interrupt();
    assert_eq!(code, Some(0), "{rest:?}");
    assert_eq!(rest, ["airlock watch: stopped"], "nothing ran after run 6");
}

/// A running `airlock watch`, its stdout read line by line; killed if the test fails.
struct Watch {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Watch {
    fn start(dir: &std::path::Path, data: &std::path::Path) -> Watch {
        let mut child = crate::support::airlock_command(data, &["watch"])
            .current_dir(dir)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("airlock watch starts");
        let stdout = child.stdout.take().expect("stdout");
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Watch {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for the next summary line and asserts it starts with `wanted`.
    fn expect(&mut self, wanted: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no {wanted:?} ({e}); saw {:#?}", self.seen));
            self.seen.push(line.clone());
            if line.starts_with("[run ") {
                assert!(
                    line.starts_with(wanted),
                    "wanted {wanted:?}; saw {:#?}",
                    self.seen
                );
                return;
            }
        }
    }

    /// Sends SIGINT, as Ctrl-C does; returns the exit code and the lines printed after the
    /// last summary.
    fn interrupt(mut self) -> (Option<i32>, Vec<String>) {
        // SAFETY: kill(2) on our own child's pid, which it still is until we wait for it.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGINT);
        }
        let status = self.child.wait().expect("wait");
        let rest = self.lines.iter().collect();
        (status.code(), rest)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
