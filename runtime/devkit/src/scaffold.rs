//! `airlock new`: a ready integration crate that builds and passes its own fixture tests with
//! no edits, outside this repository.
//!
//! Everything it needs is written into it: the `airlock-guest` helper crate with the WIT it
//! binds (both embedded in this binary, so a scaffold always matches the host that made it),
//! and the guest examples' `Cargo.lock`, so the dependencies resolve to the versions the
//! examples are built and tested with. The crate is written into a temporary directory beside
//! the target and renamed into place, so a failure leaves nothing half-written.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Which kind of integration to start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Template {
    /// Calls an HTTP API with a host-injected credential (`get-item`).
    Http,
    /// Transforms its input, with no network (`normalize`).
    Transform,
}

/// The WIT package, as this binary was built with it.
const WIT: &[(&str, &str)] = &[
    ("config.wit", include_str!("../../../wit/config.wit")),
    ("handler.wit", include_str!("../../../wit/handler.wit")),
    ("kv.wit", include_str!("../../../wit/kv.wit")),
    ("log.wit", include_str!("../../../wit/log.wit")),
    ("types.wit", include_str!("../../../wit/types.wit")),
    ("world.wit", include_str!("../../../wit/world.wit")),
    (
        "deps/README.md",
        include_str!("../../../wit/deps/README.md"),
    ),
    ("deps/cli.wit", include_str!("../../../wit/deps/cli.wit")),
    (
        "deps/clocks.wit",
        include_str!("../../../wit/deps/clocks.wit"),
    ),
    (
        "deps/filesystem.wit",
        include_str!("../../../wit/deps/filesystem.wit"),
    ),
    ("deps/http.wit", include_str!("../../../wit/deps/http.wit")),
    ("deps/io.wit", include_str!("../../../wit/deps/io.wit")),
    (
        "deps/random.wit",
        include_str!("../../../wit/deps/random.wit"),
    ),
    (
        "deps/sockets.wit",
        include_str!("../../../wit/deps/sockets.wit"),
    ),
];

/// The guest helper crate's sources.
const GUEST_LIB: &str = include_str!("../../../guest-examples/airlock-guest/src/lib.rs");
const GUEST_HTTP: &str = include_str!("../../../guest-examples/airlock-guest/src/http.rs");
/// Where the examples' copy of `airlock-guest` finds the WIT, and where a scaffold's does.
const EXAMPLES_WIT_PATH: &str = "path: \"../../wit\"";
const SCAFFOLD_WIT_PATH: &str = "path: \"wit\"";

const EXAMPLES_MANIFEST: &str = include_str!("../../../guest-examples/Cargo.toml");
const EXAMPLES_LOCK: &str = include_str!("../../../guest-examples/Cargo.lock");

const CARGO_TOML: &str = include_str!("../templates/Cargo.toml.tmpl");
const GUEST_CARGO_TOML: &str = include_str!("../templates/airlock-guest.Cargo.toml.tmpl");
const GITIGNORE: &str = include_str!("../templates/gitignore");
const README: &str = include_str!("../templates/README.md.tmpl");

/// A template's own files: (path in the new crate, text).
fn template_files(template: Template) -> [(&'static str, &'static str); 5] {
    match template {
        Template::Http => [
            (
                "airlock.toml",
                include_str!("../templates/http/airlock.toml"),
            ),
            ("src/lib.rs", include_str!("../templates/http/lib.rs")),
            (
                "schemas/get-item.in.json",
                include_str!("../templates/http/get-item.in.json"),
            ),
            (
                "schemas/get-item.out.json",
                include_str!("../templates/http/get-item.out.json"),
            ),
            (
                "tests/get-item.toml",
                include_str!("../templates/http/get-item.toml"),
            ),
        ],
        Template::Transform => [
            (
                "airlock.toml",
                include_str!("../templates/transform/airlock.toml"),
            ),
            ("src/lib.rs", include_str!("../templates/transform/lib.rs")),
            (
                "schemas/normalize.in.json",
                include_str!("../templates/transform/normalize.in.json"),
            ),
            (
                "schemas/normalize.out.json",
                include_str!("../templates/transform/normalize.out.json"),
            ),
            (
                "tests/normalize.toml",
                include_str!("../templates/transform/normalize.toml"),
            ),
        ],
    }
}

/// Why no crate was made.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error(
        "{0:?} cannot name an integration: use lower-case letters, digits and `-`, starting \
         with a letter, at most 64 characters (e.g. crm-sync)"
    )]
    Name(String),
    #[error("{0} already exists; choose another name or directory")]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("this build of airlock carries an inconsistent template: {0}")]
    Template(&'static str),
}

/// Makes the integration crate `name` at `dir` (which must not exist) from `template`.
/// Returns the files written, relative to `dir`.
pub fn create(dir: &Path, name: &str, template: Template) -> Result<Vec<String>, ScaffoldError> {
    check_name(name)?;
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir.to_path_buf()));
    }
    let files = files(name, template)?;
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ScaffoldError::Io { path, source }
    };
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}.new-"))
        .tempdir_in(parent)
        .map_err(io(parent))?;
    for (relative, text) in &files {
        let path = staging.path().join(relative);
        if let Some(up) = path.parent() {
            fs::create_dir_all(up).map_err(io(up))?;
        }
        fs::write(&path, text).map_err(io(&path))?;
    }
    // Renaming onto an existing path would replace an empty directory made meanwhile: check
    // again, as late as possible.
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir.to_path_buf()));
    }
    // The staging directory was made private (0700); the crate is an ordinary directory.
    fs::set_permissions(staging.path(), fs::Permissions::from_mode(0o755))
        .map_err(io(staging.path()))?;
    // On failure the staging directory is removed when `staging` drops; after the rename
    // there is nothing left at its old path to remove.
    fs::rename(staging.path(), dir).map_err(io(dir))?;
    Ok(files.into_iter().map(|(path, _)| path).collect())
}

/// Names cargo refuses for a package (Rust keywords that fit the name rule).
const RUST_KEYWORDS: &[&str] = &[
    "as", "async", "await", "box", "break", "const", "continue", "crate", "do", "dyn", "else",
    "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl", "in", "let", "loop",
    "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref", "return", "self",
    "static", "struct", "super", "trait", "true", "try", "type", "typeof", "unsafe", "unsized",
    "use", "virtual", "where", "while", "yield",
];

/// Lower-case letters, digits and single dashes, starting with a letter: a crate name, a
/// directory name and the name half of an integration id alike.
fn check_name(name: &str) -> Result<(), ScaffoldError> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && !name.contains("--")
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name != "airlock-guest"
        && !RUST_KEYWORDS.contains(&name);
    if ok {
        Ok(())
    } else {
        Err(ScaffoldError::Name(name.to_string()))
    }
}

/// Every file of the new crate, with `{{…}}` filled in.
fn files(name: &str, template: Template) -> Result<Vec<(String, String)>, ScaffoldError> {
    let description = match template {
        Template::Http => "reads items from an HTTP API with a host-injected credential",
        Template::Transform => "transforms its input, with no network",
    };
    let wit_bindgen = wit_bindgen_version()?;
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{description}}", description)
            .replace("{{wit_bindgen}}", &wit_bindgen)
    };
    if !GUEST_LIB.contains(EXAMPLES_WIT_PATH) {
        return Err(ScaffoldError::Template(
            "airlock-guest no longer names its WIT as ../../wit",
        ));
    }
    let mut out: Vec<(String, String)> = vec![
        ("Cargo.toml".into(), fill(CARGO_TOML)),
        ("Cargo.lock".into(), EXAMPLES_LOCK.to_string()),
        (".gitignore".into(), GITIGNORE.to_string()),
        ("README.md".into(), fill(README)),
        ("airlock-guest/Cargo.toml".into(), fill(GUEST_CARGO_TOML)),
        (
            "airlock-guest/src/lib.rs".into(),
            GUEST_LIB.replace(EXAMPLES_WIT_PATH, SCAFFOLD_WIT_PATH),
        ),
        ("airlock-guest/src/http.rs".into(), GUEST_HTTP.to_string()),
    ];
    out.extend(
        WIT.iter()
            .map(|(path, text)| (format!("airlock-guest/wit/{path}"), text.to_string())),
    );
    out.extend(
        template_files(template)
            .iter()
            .map(|(path, text)| (path.to_string(), fill(text))),
    );
    Ok(out)
}

/// The wit-bindgen requirement the examples build with (guest-examples/Cargo.toml).
fn wit_bindgen_version() -> Result<String, ScaffoldError> {
    let manifest: toml::Table = toml::from_str(EXAMPLES_MANIFEST)
        .map_err(|_| ScaffoldError::Template("guest-examples/Cargo.toml does not parse"))?;
    manifest
        .get("workspace")
        .and_then(|w| w.get("dependencies"))
        .and_then(|d| d.get("wit-bindgen"))
        .and_then(toml::Value::as_str)
        .map(str::to_string)
        .ok_or(ScaffoldError::Template(
            "guest-examples/Cargo.toml names no wit-bindgen version",
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_wit_is_the_whole_package() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit");
        let mut on_disk = Vec::new();
        for dir in ["", "deps"] {
            for entry in fs::read_dir(root.join(dir)).expect("wit dir") {
                let path = entry.expect("entry").path();
                if path.is_file() {
                    let name = path.file_name().expect("name").to_string_lossy();
                    let relative = if dir.is_empty() {
                        name.into_owned()
                    } else {
                        format!("{dir}/{name}")
                    };
                    on_disk.push((relative, fs::read_to_string(&path).expect("read")));
                }
            }
        }
        on_disk.sort();
        let mut embedded: Vec<(String, String)> = WIT
            .iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect();
        embedded.sort();
        assert_eq!(
            embedded, on_disk,
            "a WIT file was added or removed: list it in WIT"
        );
    }

    #[test]
    fn names_that_cannot_be_crates_and_ids_are_refused() {
        for bad in [
            "",
            "Demo",
            "1conn",
            "-x",
            "x-",
            "a--b",
            "a_b",
            "a b",
            "airlock-guest",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for good in ["demo-conn", "crm2slack", "a"] {
            assert!(check_name(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn a_scaffold_is_written_whole_or_not_at_all() {
        let parent = tempfile::TempDir::new().expect("temp");
        let dir = parent.path().join("demo-conn");
        let written = create(&dir, "demo-conn", Template::Http).expect("created");
        assert!(written.contains(&"tests/get-item.toml".to_string()));
        let manifest = fs::read_to_string(dir.join("airlock.toml")).expect("manifest");
        assert!(manifest.contains("id = \"my-org/demo-conn\""), "{manifest}");
        assert!(manifest.contains("release/demo_conn.wasm"), "{manifest}");
        let lib = fs::read_to_string(dir.join("airlock-guest/src/lib.rs")).expect("lib");
        assert!(lib.contains(SCAFFOLD_WIT_PATH));
        let fixture = fs::read_to_string(dir.join("tests/get-item.toml")).expect("fixture");
        assert!(
            fixture.contains("{{credential.api}}"),
            "left for airlock test"
        );
        let ignored = fs::read_to_string(dir.join(".gitignore")).expect("gitignore");
        assert!(ignored.contains("*.key") && ignored.contains("secrets.toml"));
        // Again: refused, and nothing of the first is touched.
        let again = create(&dir, "demo-conn", Template::Transform);
        assert!(matches!(again, Err(ScaffoldError::Exists(_))));
        assert!(dir.join("tests/get-item.toml").is_file());
        let leftovers: Vec<_> = fs::read_dir(parent.path())
            .expect("parent")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "no staging directory left behind");
    }
}
