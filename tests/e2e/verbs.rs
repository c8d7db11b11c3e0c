//! The command line's shape (docs/cli.md): nouns take subcommands and a removed mode flag
//! names its subcommand; options sit only on the verbs they mean something to; every duration
//! flag parses with the one grammar and its errors name the flag; completion scripts cover
//! the verbs.

use std::process::Output;

use serde_json::Value;
use tempfile::TempDir;

use crate::support::{airlock, example, stderr, stdout};

fn says(out: &Output, text: &str) {
    assert!(stderr(out).contains(text), "{text:?} in:\n{}", stderr(out));
}

fn help(verb: &[&str]) -> String {
    let data = TempDir::new().expect("temp");
    let mut args = verb.to_vec();
    args.push("--help");
    let out = airlock(data.path(), &args);
    assert_eq!(out.status.code(), Some(0), "{verb:?}: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn install_lists_and_approves_with_subcommands_and_the_old_flags_name_them() {
    let data = TempDir::new().expect("temp");
    for list in [&["install", "list"][..], &["install", "pending", "--json"]] {
        let out = airlock(data.path(), list);
        assert_eq!(out.status.code(), Some(0), "{list:?}: {}", stderr(&out));
    }
    assert_eq!(
        stdout(&airlock(data.path(), &["install", "list", "--json"])).trim(),
        "[]"
    );
    for (old, new) in [
        (&["install", "--list"][..], "`airlock install list`"),
        (
            &["install", "--pending", "--json"],
            "`airlock install pending`",
        ),
        (
            &[
                "install",
                "--approve",
                "--tenant",
                "acme",
                "--installation",
                "x",
            ],
            "`airlock install approve`",
        ),
    ] {
        let out = airlock(data.path(), old);
        assert_eq!(out.status.code(), Some(2), "{old:?}");
        says(&out, new);
    }
    // Installing stays the verb's own action.
    let out = airlock(
        data.path(),
        &["install", "--tenant", "acme", "missing.airlock"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    says(&out, "missing.airlock");
}

#[test]
fn options_sit_on_the_verbs_they_mean_something_to() {
    let engine = [
        "--ceiling-memory",
        "--fuel",
        "--resolve",
        "--allow-private",
        "--extra-root-ca",
    ];
    let state = ["--data", "--master-key", "--audit-dir"];
    let keygen = help(&["keygen"]);
    for option in engine.iter().chain(&state) {
        assert!(!keygen.contains(option), "keygen --help shows {option}");
    }
    for verb in [&["run"][..], &["test"], &["serve"], &["demo"]] {
        let shown = help(verb);
        for option in engine.iter().chain(&state) {
            assert!(shown.contains(option), "{verb:?} --help lacks {option}");
        }
    }
    assert!(help(&["run"]).contains("--allow-unsigned"));
    let check = help(&["check"]);
    assert!(check.contains("--ceiling-memory") && check.contains("--data"));
    assert!(!check.contains("--resolve") && !check.contains("--master-key"));
    let policy = help(&["policy", "check"]);
    assert!(policy.contains("--resolve") && policy.contains("--allow-private"));
    assert!(!policy.contains("--extra-root-ca") && !policy.contains("--data"));
    for noun in [
        "tenant",
        "trust",
        "api-key",
        "credentials",
        "webhook",
        "audit",
    ] {
        let shown = help(&[noun, "list"]);
        assert!(shown.contains("--data"), "{noun} list --help lacks --data");
        assert!(
            !shown.contains("--resolve"),
            "{noun} list --help shows --resolve"
        );
    }

    // Given where it means nothing, an option is refused, not ignored; given before the verb,
    // clap points to where it goes.
    let data = TempDir::new().expect("temp");
    let key = data.path().join("k").display().to_string();
    let out = airlock(data.path(), &["keygen", "--out", &key, "--fuel", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!data.path().join("k").exists());
    let mapper = example("contact-mapper").display().to_string();
    let out = airlock(
        data.path(),
        &[
            "--fuel",
            "1",
            "run",
            "--allow-unsigned",
            &mapper,
            "--action",
            "x",
            "--input",
            "{}",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    says(&out, "'run --fuel' exists");
}

#[test]
fn every_duration_flag_takes_the_one_grammar_and_its_errors_name_the_flag() {
    let data = TempDir::new().expect("temp");
    let ok = |args: &[&str]| {
        let out = airlock(data.path(), args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        out
    };
    ok(&["tenant", "create", "acme"]);
    ok(&[
        "api-key",
        "create",
        "--tenant",
        "acme",
        "--scope",
        "invoke",
        "--expires",
        "1h30m",
    ]);
    let keys: Vec<Value> =
        serde_json::from_str(&stdout(&ok(&["api-key", "list", "--json"]))).expect("JSON");
    let lifetime = keys[0]["expires"].as_u64().expect("expires")
        - keys[0]["created"].as_u64().expect("created");
    assert!((5399..=5401).contains(&lifetime), "{lifetime}");
    ok(&["audit", "list", "--since", "1d2h"]);
    ok(&["audit", "list", "--since", "2026-11-29T10:00:00Z"]);

    let mapper = example("contact-mapper").display().to_string();
    let run = [
        "run",
        "--allow-unsigned",
        &mapper,
        "--action",
        "map-contact",
        "--input",
        "{}",
    ];
    let endpoint = format!("wh-{}", "0".repeat(32));
    for (args, flag, why) in [
        (
            vec![
                "api-key",
                "create",
                "--tenant",
                "acme",
                "--scope",
                "invoke",
                "--expires",
                "90",
            ],
            "--expires",
            "missing unit",
        ),
        (
            vec!["api-key", "create", "--admin", "--expires", "2w"],
            "--expires",
            "unknown unit",
        ),
        (
            vec!["audit", "list", "--since", "yesterday"],
            "--since",
            "RFC 3339",
        ),
        (
            vec![
                "webhook",
                "rotate",
                "--tenant",
                "acme",
                &endpoint,
                "--overlap",
                "1.5h",
            ],
            "--overlap",
            "fractions",
        ),
        (
            [&run[..], &["--ceiling-timeout", "0s"]].concat(),
            "--ceiling-timeout",
            "greater than zero",
        ),
    ] {
        let out = airlock(data.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        says(&out, flag);
        says(&out, why);
    }
}

#[test]
fn completion_scripts_cover_the_verbs_and_bash_completes_subcommands() {
    let data = TempDir::new().expect("temp");
    for shell in ["bash", "zsh", "fish"] {
        let out = airlock(data.path(), &["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        for word in ["install", "approve", "api-key", "allow-unsigned"] {
            assert!(script.contains(word), "{shell} lacks {word}");
        }
    }
    let out = airlock(data.path(), &["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));

    // Loaded into bash, the script completes `airlock install <TAB>` to its subcommands.
    let script = data.path().join("airlock.bash");
    std::fs::write(
        &script,
        stdout(&airlock(data.path(), &["completions", "bash"])),
    )
    .expect("write");
    let complete = format!(
        "source {}; COMP_WORDS=(airlock install ''); COMP_CWORD=2; \
         COMP_LINE='airlock install '; COMP_POINT=${{#COMP_LINE}}; \
         _airlock airlock '' install; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display()
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &complete])
        .output()
        .expect("bash runs");
    let words: Vec<String> = stdout(&out).lines().map(String::from).collect();
    for word in ["list", "pending", "approve"] {
        assert!(words.iter().any(|w| w == word), "{word} in {words:?}");
    }
}
