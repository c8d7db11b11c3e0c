//! An operator's data dir for tests: a trusted publisher key for the examples, a tenant
//! `acme`, and helpers to sign example bundles and install them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tempfile::TempDir;

use crate::support::{
    airlock_command, airlock_with, custom_integration, read_example, stderr, stdout,
};

/// `run` of acme's `exfil` installation's `fetch`.
pub const RUN_FETCH: [&str; 7] = [
    "run",
    "--tenant",
    "acme",
    "--installation",
    "exfil",
    "--action",
    "fetch",
];

/// A data dir with a trusted publisher key for the examples, and a tenant `acme`.
pub struct Operator {
    pub data: TempDir,
    /// The publisher key, signed bundles and grant files.
    pub keys: TempDir,
    /// What every command gets in its environment besides the data dir (the store, the
    /// master key).
    env: Vec<(String, String)>,
}

impl Operator {
    pub fn new() -> Self {
        Self::with_env(
            Vec::new(),
            TempDir::new().expect("temp dir"),
            TempDir::new().expect("temp dir"),
        )
    }

    /// An operator whose data dir is made under `data` and whose audit dir is `audit`: disks
    /// a test can fill or make read-only.
    pub fn on_disks(data: &Path, audit: &Path) -> Self {
        let env = vec![("AIRLOCK_AUDIT_DIR".into(), audit.display().to_string())];
        Self::with_env(
            env,
            TempDir::new_in(data).expect("temp dir"),
            TempDir::new().expect("temp dir"),
        )
    }

    /// An operator whose state is in the PostgreSQL database `url` (`--store`), with a master
    /// key file of its own (`AIRLOCK_MASTER_KEY_FILE`), as every node of a cluster has it.
    pub fn on_postgres(url: &str) -> Self {
        use base64::Engine as _;
        use std::io::{Read as _, Write as _};
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut key = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut random| random.read_exact(&mut key))
            .expect("random bytes");
        let keys = TempDir::new().expect("temp dir");
        let master = keys.path().join("master.key");
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&master)
            .and_then(|mut file| {
                let text = base64::engine::general_purpose::STANDARD.encode(key);
                file.write_all(text.as_bytes())
            })
            .expect("master key file");
        let env = vec![
            ("AIRLOCK_STORE".into(), url.into()),
            (
                "AIRLOCK_MASTER_KEY_FILE".into(),
                master.display().to_string(),
            ),
        ];
        Self::with_env(env, TempDir::new().expect("temp dir"), keys)
    }

    fn with_env(env: Vec<(String, String)>, data: TempDir, keys: TempDir) -> Self {
        let op = Self { data, keys, env };
        let key = op.keys.path().join("publisher.key").display().to_string();
        let out = op.ok(&["keygen", "--out", &key]);
        let public = stdout(&out).trim().to_string();
        op.ok(&["trust", "add", &public, "--publisher", "Airlock Examples"]);
        op.ok(&["tenant", "create", "acme"]);
        op
    }

    /// The master key file: `AIRLOCK_MASTER_KEY_FILE` if this operator sets it, else the
    /// data dir's.
    pub fn master_key(&self) -> PathBuf {
        self.env
            .iter()
            .find(|(k, _)| k == "AIRLOCK_MASTER_KEY_FILE")
            .map_or_else(|| self.data().join("master.key"), |(_, v)| PathBuf::from(v))
    }

    pub fn data(&self) -> &Path {
        self.data.path()
    }

    pub fn airlock(&self, args: &[&str]) -> Output {
        self.command(self.data.path(), args)
            .output()
            .expect("airlock runs")
    }

    /// `airlock ARGS…` on the data dir `data` with this operator's environment.
    pub fn command(&self, data: &Path, args: &[&str]) -> Command {
        let mut command = airlock_command(data, args);
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Runs `airlock ARGS…` and asserts it succeeds.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.airlock(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "airlock {args:?}\n{}\n{}",
            stdout(&out),
            stderr(&out)
        );
        out
    }

    /// Signs the example `name` (component `wasm`) with `manifest`, as `file`.
    pub fn sign(&self, name: &str, wasm: &str, manifest: &str, file: &str) -> PathBuf {
        let manifest = manifest.replace(
            &format!("component = \"../target/wasm32-wasip2/release/{wasm}\""),
            "component = \"component.wasm\"",
        );
        let dir = custom_integration(name, wasm, &manifest);
        let bundle = self.keys.path().join(file);
        let key = self.keys.path().join("publisher.key");
        // Built by the tests' build script: nothing to build in the copy. A test may ask for
        // the same example twice: the same files under the same key sign to the same bundle.
        self.ok(&[
            "sign",
            "--no-build",
            "--force",
            &dir.path().display().to_string(),
            "--key",
            &key.display().to_string(),
            "--out",
            &bundle.display().to_string(),
        ]);
        bundle
    }

    /// The example `name`, published as "Airlock Examples" (the trusted key's publisher).
    pub fn example(&self, name: &str, wasm: &str) -> PathBuf {
        let mut manifest = String::new();
        let mut in_publisher = false;
        for line in read_example(name, "airlock.toml").lines() {
            if line.starts_with('[') {
                in_publisher = line == "[publisher]";
            }
            if in_publisher && line.starts_with("name = ") {
                manifest.push_str("name = \"Airlock Examples\"\n");
            } else {
                manifest.push_str(line);
                manifest.push('\n');
            }
        }
        self.sign(name, wasm, &manifest, &format!("{name}.airlock"))
    }

    /// Signs exfil as `version`, with `extra` appended to its egress rules.
    pub fn exfil(&self, version: &str, extra: &str) -> PathBuf {
        let manifest = read_example("exfil", "airlock.toml")
            .replace("version = \"0.1.0\"", &format!("version = \"{version}\""))
            .replace(
                "[credentials.token]",
                &format!("{extra}\n[credentials.token]"),
            );
        self.sign(
            "exfil",
            "exfil.wasm",
            &manifest,
            &format!("exfil-{version}.airlock"),
        )
    }

    /// Writes a grant file and returns its path.
    pub fn grant(&self, name: &str, text: &str) -> String {
        let path = self.keys.path().join(name);
        std::fs::write(&path, text).expect("write grant");
        path.display().to_string()
    }

    /// `airlock install --tenant acme BUNDLE EXTRA…`.
    pub fn install(&self, bundle: &Path, extra: &[&str]) -> Output {
        let bundle = bundle.display().to_string();
        let mut args = vec!["install", "--tenant", "acme", &bundle];
        args.extend(extra);
        self.airlock(&args)
    }

    /// Installs `bundle` for acme with the grant `text` and asserts it succeeds.
    pub fn install_granted(&self, bundle: &Path, text: &str) -> Output {
        let grant = self.grant("grant.toml", text);
        let bundle = bundle.display().to_string();
        self.ok(&["install", "--tenant", "acme", &bundle, "--grant", &grant])
    }

    /// `airlock credentials set --tenant T --installation I NAME` with `value` on stdin.
    pub fn set_credential(
        &self,
        tenant: &str,
        installation: &str,
        name: &str,
        value: &str,
    ) -> Output {
        airlock_with(
            self.data.path(),
            &[
                "credentials",
                "set",
                "--tenant",
                tenant,
                "--installation",
                installation,
                name,
            ],
            value,
            &[],
        )
    }

    pub fn installations(&self) -> Vec<Value> {
        let out = self.ok(&["install", "list", "--json"]);
        serde_json::from_str(&stdout(&out)).expect("JSON list")
    }
}
