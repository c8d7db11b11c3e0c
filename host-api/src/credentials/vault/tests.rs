use super::*;

const TENANT: &str = "tenant-a";
const PLAINTEXT: &[u8] = b"sk_live_51Hc0ffee";

fn aad() -> SecretAad<'static> {
    SecretAad {
        tenant: TENANT,
        installation: "inst-1",
        credential: "stripe",
        key_version: 1,
    }
}

/// A master key with distinctive bytes, so leaks are easy to search for.
fn master_with(byte: u8) -> MasterKey {
    MasterKey::from_env_value(&STANDARD.encode([byte; KEY_LEN])).expect("valid key")
}

fn write_key_file(path: &Path, content: &str, mode: u32) {
    fs::write(path, content).expect("write key file");
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

#[test]
fn seal_open_round_trip() {
    let dek = DataKey::generate();
    let sealed = dek.seal(&aad(), PLAINTEXT);
    assert_eq!(sealed.key_version, 1);
    assert_ne!(&sealed.ciphertext[..PLAINTEXT.len()], PLAINTEXT);
    let opened = dek.open(&aad(), &sealed).expect("open");
    assert_eq!(&opened[..], PLAINTEXT);
}

#[test]
fn open_fails_when_any_aad_field_differs() {
    let dek = DataKey::generate();
    let sealed = dek.seal(&aad(), PLAINTEXT);
    let variants = [
        SecretAad {
            tenant: "tenant-b",
            ..aad()
        },
        SecretAad {
            installation: "inst-2",
            ..aad()
        },
        SecretAad {
            credential: "github",
            ..aad()
        },
        SecretAad {
            key_version: 2,
            ..aad()
        },
    ];
    for other in variants {
        let result = dek.open(&other, &sealed);
        assert!(
            matches!(result, Err(VaultError::Decrypt)),
            "{other:?} opened"
        );
    }
}

#[test]
fn open_fails_on_any_flipped_ciphertext_or_nonce_byte() {
    let dek = DataKey::generate();
    let sealed = dek.seal(&aad(), PLAINTEXT);
    for i in 0..sealed.ciphertext.len() {
        let mut bad = sealed.clone();
        bad.ciphertext[i] ^= 0x01;
        assert!(
            matches!(dek.open(&aad(), &bad), Err(VaultError::Decrypt)),
            "ciphertext byte {i}"
        );
    }
    for i in 0..NONCE_LEN {
        let mut bad = sealed.clone();
        bad.nonce[i] ^= 0x80;
        assert!(
            matches!(dek.open(&aad(), &bad), Err(VaultError::Decrypt)),
            "nonce byte {i}"
        );
    }
    let mut truncated = sealed.clone();
    truncated.ciphertext.pop();
    assert!(matches!(
        dek.open(&aad(), &truncated),
        Err(VaultError::Decrypt)
    ));
}

#[test]
fn open_fails_with_other_dek() {
    let sealed = DataKey::generate().seal(&aad(), PLAINTEXT);
    let result = DataKey::generate().open(&aad(), &sealed);
    assert!(matches!(result, Err(VaultError::Decrypt)));
}

#[test]
fn nonces_differ_across_seals() {
    let dek = DataKey::generate();
    let a = dek.seal(&aad(), PLAINTEXT);
    let b = dek.seal(&aad(), PLAINTEXT);
    assert_ne!(a.nonce, b.nonce);
    assert_ne!(a.ciphertext, b.ciphertext);
}

#[test]
fn wrap_unwrap_round_trip() {
    let master = master_with(7);
    let dek = DataKey::generate();
    let wrapped = master.wrap(TENANT, &dek);
    assert_eq!(wrapped.master_version, 1);
    assert_eq!(wrapped.ciphertext.len(), KEY_LEN + 16);
    let unwrapped = master.unwrap(TENANT, &wrapped).expect("unwrap");
    assert_eq!(*unwrapped.0, *dek.0);
    // And it is usable: what one seals the other opens.
    let sealed = dek.seal(&aad(), PLAINTEXT);
    assert_eq!(
        &unwrapped.open(&aad(), &sealed).expect("open")[..],
        PLAINTEXT
    );
}

#[test]
fn unwrap_fails_for_other_tenant_master_key_or_tampering() {
    let master = master_with(7);
    let wrapped = master.wrap(TENANT, &DataKey::generate());
    assert!(matches!(
        master.unwrap("tenant-b", &wrapped),
        Err(VaultError::Decrypt)
    ));
    assert!(matches!(
        master_with(8).unwrap(TENANT, &wrapped),
        Err(VaultError::Decrypt)
    ));
    let mut tampered = wrapped.clone();
    tampered.ciphertext[0] ^= 1;
    assert!(matches!(
        master.unwrap(TENANT, &tampered),
        Err(VaultError::Decrypt)
    ));
}

#[test]
fn unwrap_reports_master_version_mismatch() {
    let master = master_with(7);
    let mut wrapped = master.wrap(TENANT, &DataKey::generate());
    wrapped.master_version = 2;
    let err = master
        .unwrap(TENANT, &wrapped)
        .expect_err("version mismatch");
    assert!(
        matches!(
            err,
            VaultError::MasterVersion {
                found: 2,
                loaded: 1
            }
        ),
        "{err:?}"
    );
}

#[test]
fn aad_encoding_is_length_prefixed_and_domain_separated() {
    assert_ne!(
        encode_aad(SECRET_LABEL, &["ab", "c"], 1),
        encode_aad(SECRET_LABEL, &["a", "bc"], 1)
    );
    assert_ne!(
        encode_aad(SECRET_LABEL, &["t"], 1),
        encode_aad(DEK_LABEL, &["t"], 1)
    );
    // Pin the exact format: changing it would make stored ciphertexts unreadable.
    let mut expected = b"airlock/secret/v1".to_vec();
    expected.extend_from_slice(&[0, 0, 0, 2, b'a', b'b', 0, 0, 0, 1, b'c', 0, 0, 0, 7]);
    assert_eq!(encode_aad(SECRET_LABEL, &["ab", "c"], 7), expected);
}

#[test]
fn an_index_is_stable_per_key_and_says_nothing_without_it() {
    let dek = DataKey::generate();
    let index = dek.index("kv-key", &["crm", "contact:jane"], 1);
    assert_eq!(index, dek.index("kv-key", &["crm", "contact:jane"], 1));
    for other in [
        DataKey::generate().index("kv-key", &["crm", "contact:jane"], 1),
        dek.index("oauth-user", &["crm", "contact:jane"], 1),
        dek.index("kv-key", &["crm", "contact:jan"], 1),
        dek.index("kv-key", &["crmc", "ontact:jane"], 1),
        dek.index("kv-key", &["crm", "contact:jane"], 2),
    ] {
        assert_ne!(index, other);
    }
    // Not the plain HMAC under the DEK itself: the AEAD key is never a MAC key.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&dek.0[..]).expect("key");
    mac.update(&encode_aad(
        INDEX_LABEL,
        &["kv-key", "crm", "contact:jane"],
        1,
    ));
    assert_ne!(index, <[u8; INDEX_LEN]>::from(mac.finalize().into_bytes()));
}

#[test]
fn names_and_configs_open_only_where_they_were_sealed() {
    let dek = DataKey::generate();
    let name = NameAad {
        kind: "kv-key",
        tenant: TENANT,
        installation: "inst-1",
        index: "ab12",
        key_version: 1,
    };
    let sealed = dek.seal(&name, b"contact:jane");
    assert_eq!(
        &dek.open(&name, &sealed).expect("open")[..],
        b"contact:jane"
    );
    for other in [
        NameAad {
            kind: "oauth-user",
            ..name
        },
        NameAad {
            tenant: "tenant-b",
            ..name
        },
        NameAad {
            installation: "inst-2",
            ..name
        },
        NameAad {
            index: "ab13",
            ..name
        },
    ] {
        assert!(matches!(
            dek.open(&other, &sealed),
            Err(VaultError::Decrypt)
        ));
    }
    let config = ConfigAad {
        tenant: TENANT,
        installation: "inst-1",
        key_version: 1,
    };
    let sealed = dek.seal(&config, b"{}");
    assert!(dek.open(&config, &sealed).is_ok());
    let elsewhere = ConfigAad {
        installation: "inst-2",
        ..config
    };
    assert!(matches!(
        dek.open(&elsewhere, &sealed),
        Err(VaultError::Decrypt)
    ));
    // A config is not a credential of the same place, nor the reverse.
    let secret = SecretAad {
        credential: "",
        ..aad()
    };
    assert!(dek.open(&secret, &sealed).is_err());
}

#[test]
fn load_accepts_0600_with_or_without_newline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = STANDARD.encode([9u8; KEY_LEN]);
    for (name, content) in [("a", text.clone()), ("b", format!("{text}\n"))] {
        let path = dir.path().join(name);
        write_key_file(&path, &content, 0o600);
        let key = MasterKey::load(&path).expect("load");
        assert_eq!(*key.bytes, [9u8; KEY_LEN]);
        assert_eq!(key.version(), 1);
    }
}

#[test]
fn load_refuses_group_or_other_readable_modes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("master.key");
    for mode in [0o644, 0o640, 0o400] {
        write_key_file(&path, &STANDARD.encode([9u8; KEY_LEN]), mode);
        let err = MasterKey::load(&path).expect_err("mode refused");
        assert!(matches!(err, VaultError::KeyFileMode { mode: m, .. } if m == mode));
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains(&format!("mode {mode:04o}")), "{msg}");
        assert!(msg.contains("0600") && msg.contains("chmod 600"), "{msg}");
    }
}

#[test]
fn load_refuses_non_regular_and_missing_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = MasterKey::load(dir.path()).expect_err("directory");
    assert!(
        matches!(err, VaultError::KeyFileNotRegular { .. }),
        "{err:?}"
    );
    let missing = dir.path().join("missing");
    let err = MasterKey::load(&missing).expect_err("missing");
    assert!(
        matches!(&err, VaultError::KeyFile { source, .. } if source.kind() == io::ErrorKind::NotFound)
    );
    assert!(err.to_string().contains(&missing.display().to_string()));
}

#[test]
fn load_refuses_bad_content_without_echoing_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("master.key");
    let cases = [
        "SECRETSECRET!!not-base64".to_string(),
        STANDARD.encode([0x5a; KEY_LEN - 1]),
        STANDARD.encode([0x5a; KEY_LEN + 1]),
        STANDARD
            .encode([0x5a; KEY_LEN])
            .trim_end_matches('=')
            .to_string(),
        "A".repeat(200),
    ];
    for content in cases {
        write_key_file(&path, &content, 0o600);
        let err = MasterKey::load(&path).expect_err("bad content");
        assert!(matches!(err, VaultError::KeyFormat { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(
            !msg.contains(&content[..12]),
            "message echoes content: {msg}"
        );
    }
}

#[test]
fn from_env_value_parses_and_rejects_without_echoing() {
    let text = STANDARD.encode([3u8; KEY_LEN]);
    assert_eq!(
        *MasterKey::from_env_value(&text).expect("valid").bytes,
        [3u8; KEY_LEN]
    );
    let short = STANDARD.encode([3u8; 16]);
    let msg = MasterKey::from_env_value(&short)
        .expect_err("short")
        .to_string();
    assert!(
        msg.contains("AIRLOCK_MASTER_KEY") && !msg.contains(&short),
        "{msg}"
    );
}

#[test]
fn generate_creates_0600_file_that_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("master.key");
    let key = MasterKey::generate(&path).expect("generate");
    assert_eq!(mode_of(&path), 0o600);
    assert_eq!(*MasterKey::load(&path).expect("load").bytes, *key.bytes);
    assert_ne!(*key.bytes, [0u8; KEY_LEN]);
    assert_ne!(
        *MasterKey::generate(&dir.path().join("other"))
            .expect("second")
            .bytes,
        *key.bytes
    );
}

#[test]
fn generate_refuses_existing_file_and_leaves_it_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("master.key");
    write_key_file(&path, "existing", 0o600);
    let err = MasterKey::generate(&path).expect_err("exists");
    assert!(matches!(err, VaultError::KeyExists { .. }), "{err:?}");
    assert!(err.to_string().contains(&path.display().to_string()));
    assert_eq!(fs::read_to_string(&path).expect("read"), "existing");
}

#[test]
fn resolve_prefers_env_then_file_then_generates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("master.key");
    let env = STANDARD.encode([4u8; KEY_LEN]);

    let (key, source) = MasterKey::resolve_from(Some(&env), &path).expect("env");
    assert_eq!((source, *key.bytes), (KeySource::Env, [4u8; KEY_LEN]));
    assert!(!path.exists(), "env key must not create a key file");

    // An empty variable counts as unset.
    let (generated, source) = MasterKey::resolve_from(Some(""), &path).expect("generate");
    assert_eq!(source, KeySource::Generated);
    let (loaded, source) = MasterKey::resolve_from(None, &path).expect("file");
    assert_eq!((source, *loaded.bytes), (KeySource::File, *generated.bytes));

    // With a key file present, env still wins.
    let (_, source) = MasterKey::resolve_from(Some(&env), &path).expect("env over file");
    assert_eq!(source, KeySource::Env);
    // A malformed env value is an error, never a silent fallback to the file.
    assert!(matches!(
        MasterKey::resolve_from(Some("garbage"), &path),
        Err(VaultError::KeyFormat { .. })
    ));
}

/// Exercises the public entry point; assumes AIRLOCK_MASTER_KEY is unset, as
/// the tests never set process environment variables.
#[test]
fn resolve_generates_then_loads_at_unique_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("master.key");
    let (first, source) = MasterKey::resolve(&path).expect("first");
    assert_eq!(source, KeySource::Generated);
    let (second, source) = MasterKey::resolve(&path).expect("second");
    assert_eq!(source, KeySource::File);
    assert_eq!(*first.bytes, *second.bytes);
}

#[test]
fn debug_never_shows_key_bytes() {
    let raw = [0xabu8; KEY_LEN];
    let master = master_with(0xab);
    let dek = DataKey(Zeroizing::new(raw));
    let hex_lower: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    for shown in [
        format!("{master:?}"),
        format!("{master:#?}"),
        format!("{dek:?}"),
    ] {
        assert!(
            shown == "MasterKey(..)" || shown == "DataKey(..)",
            "{shown}"
        );
        assert!(!shown.contains(&STANDARD.encode(raw)[..8]));
        assert!(!shown.to_lowercase().contains(&hex_lower[..8]));
        assert!(!shown.contains("171"), "decimal bytes in {shown}");
    }
}
