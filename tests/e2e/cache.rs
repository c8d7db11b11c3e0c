//! The compiled-component cache: reused when its entry opens under this host's key for this
//! component, never deserialized otherwise.

use airlock_runtime::cache::CacheOutcome;

use crate::support::{example, fresh};

fn cache_entries(data: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(data.join("compiled"))
        .expect("cache dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect()
}

#[test]
fn a_second_load_reuses_the_compiled_component() {
    let (data, runtime) = fresh();
    let first = runtime.load(&example("contact-mapper")).expect("loads");
    assert_eq!(first.cache_outcome(), CacheOutcome::Compiled);
    let second = runtime.load(&example("contact-mapper")).expect("loads");
    assert_eq!(second.cache_outcome(), CacheOutcome::Hit);
    assert_eq!(cache_entries(data.path()).len(), 1);
}

#[tokio::test]
async fn a_tampered_entry_is_recompiled_not_deserialized() {
    let (data, runtime) = fresh();
    runtime.load(&example("contact-mapper")).expect("loads");
    let entry = cache_entries(data.path()).pop().expect("one entry");
    let mut bytes = std::fs::read(&entry).expect("read entry");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&entry, &bytes).expect("tamper");

    let reloaded = runtime
        .load(&example("contact-mapper"))
        .expect("still loads");
    assert_eq!(reloaded.cache_outcome(), CacheOutcome::Replaced);
    let again = runtime.load(&example("contact-mapper")).expect("loads");
    assert_eq!(
        again.cache_outcome(),
        CacheOutcome::Hit,
        "the entry was rewritten"
    );
}

#[test]
fn an_entry_from_another_host_key_is_not_trusted() {
    let (data_a, runtime_a) = fresh();
    runtime_a.load(&example("contact-mapper")).expect("loads");
    let (data_b, runtime_b) = fresh();
    // Plant host A's (validly serialized) entry in host B's cache.
    let entry = cache_entries(data_a.path()).pop().expect("entry");
    let planted = data_b
        .path()
        .join("compiled")
        .join(entry.file_name().expect("name"));
    std::fs::copy(&entry, &planted).expect("plant");
    let loaded = runtime_b.load(&example("contact-mapper")).expect("loads");
    assert_eq!(loaded.cache_outcome(), CacheOutcome::Replaced);
}

#[test]
fn an_entry_under_another_components_name_is_not_trusted() {
    let (data, runtime) = fresh();
    runtime.load(&example("contact-mapper")).expect("loads");
    let mapper = cache_entries(data.path()).pop().expect("entry");
    runtime.load(&example("exfil")).expect("loads");
    let exfil = cache_entries(data.path())
        .into_iter()
        .find(|p| *p != mapper)
        .expect("a second entry");
    // The mapper's own valid entry, under exfil's name: bound to the mapper's digest, it must
    // not open as exfil's code.
    std::fs::copy(&mapper, &exfil).expect("swap");
    let loaded = runtime.load(&example("exfil")).expect("loads");
    assert_eq!(loaded.cache_outcome(), CacheOutcome::Replaced);
    assert!(loaded.action_names().contains(&"fetch"));
}

#[test]
fn the_cache_key_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let (data, _runtime) = fresh();
    let mode = std::fs::metadata(data.path().join("cache.key"))
        .expect("key exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}
