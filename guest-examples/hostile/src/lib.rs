//! `airlock-examples/hostile`: one action per way an untrusted component can misbehave.
//!
//! Each attack must end as a clean, typed outcome in the host (timeout, memory limit, trap,
//! output limit, capped logs, an empty sandbox, a kv quota, an output its schema refuses),
//! never as a hung or crashed host. Every action but `kv`, `bad-output` and those of [`host`]
//! takes `{}`. `black_box` keeps the optimizer from proving an attack pointless and deleting it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::io::Write as _;

use airlock_guest::kv::{self, KvError};
use airlock_guest::{Error, Guest, Level, export};
use serde::{Deserialize, Serialize};

mod host;

struct Hostile;

impl Guest for Hostile {
    fn invoke(action: String, input: String) -> Result<String, Error> {
        match action.as_str() {
            "spin-forever" => spin_forever(),
            "grow-memory" => grow_memory(),
            "recurse-forever" => Ok(format!(r#"{{"depth": {}}}"#, recurse(0))),
            "huge-output" => Ok(huge_output()),
            "flood-log" => Ok(flood_log()),
            "read-env" => airlock_guest::to_output(&read_env()),
            "read-files" => airlock_guest::to_output(&read_files()),
            "scratch" => airlock_guest::handle(&input, scratch),
            "bad-output" => airlock_guest::handle(&input, bad_output),
            "kv" => airlock_guest::handle(&input, kv_op),
            "kv-fill" => airlock_guest::to_output(&kv_fill()),
            "stream-after-handle" => airlock_guest::handle(&input, host::stream_after_handle),
            "await-response" => airlock_guest::handle(&input, host::await_response),
            "sleep" => airlock_guest::handle(&input, host::sleep),
            "poll-many" => airlock_guest::handle(&input, host::poll_many),
            "flood-calls" => airlock_guest::handle(&input, host::flood_calls),
            "hoard" => airlock_guest::handle(&input, host::hoard),
            "hoard-responses" => airlock_guest::handle(&input, host::hoard_responses),
            "random-bytes" => airlock_guest::handle(&input, host::random_bytes),
            "log-fields" => airlock_guest::handle(&input, host::log_fields),
            "huge-argument" => airlock_guest::handle(&input, host::huge_argument),
            "many-strings" => airlock_guest::handle(&input, host::many_strings),
            "append-fields" => airlock_guest::handle(&input, host::append_fields),
            "timeouts" => airlock_guest::handle(&input, host::timeouts),
            "probe-handle" => airlock_guest::handle(&input, host::probe_handle),
            other => Err(Error::unknown_action(other)),
        }
    }
}

export!(Hostile);

/// Wraps each value of an object of strings in a list: an output its schema (an object of
/// strings) refuses at every key, which the caller chose.
fn bad_output(input: BTreeMap<String, String>) -> Result<BTreeMap<String, [String; 1]>, Error> {
    Ok(input
        .into_iter()
        .map(|(key, value)| (key, [value]))
        .collect())
}

/// Burns CPU forever: only the host's timeout (epoch or fuel interruption) can stop it.
fn spin_forever() -> ! {
    let mut counter = 0u64;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

/// Allocates and touches 1 MiB chunks forever, keeping them all: only the memory limit stops it.
fn grow_memory() -> ! {
    let mut hoard = Vec::new();
    loop {
        let mut chunk = vec![0u8; 1 << 20];
        for page in chunk.chunks_mut(4096) {
            page[0] = 1;
        }
        hoard.push(black_box(chunk));
    }
}

/// Recurses without bound until the host's wasm stack limit traps.
///
/// Not a tail call: the result passes through `black_box` after the call returns, so LLVM can
/// neither turn the recursion into a loop nor drop it, and the opaque base case keeps it from
/// proving the function never returns. Frames hold only wasm locals, so it is the engine's stack
/// that overflows, not the shadow stack in linear memory.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return 0;
    }
    black_box(recurse(depth + 1)).wrapping_add(depth)
}

/// Returns 8 MiB of valid JSON: eight times the manifest's 1 MiB output limit but a quarter of
/// its 32 MiB memory limit, so only the output limit can refuse it.
fn huge_output() -> String {
    const PAYLOAD: usize = 8 << 20;
    let mut json = Vec::with_capacity(PAYLOAD + 16);
    json.extend_from_slice(b"{\"data\": \"");
    json.resize(json.len() + PAYLOAD, b'x');
    json.extend_from_slice(b"\"}");
    String::from_utf8(json).expect("ASCII is UTF-8")
}

/// Calls `log` 200,000 times with 100-byte lines (thirty times what the 1 MiB log cap keeps) and
/// writes 2,000 lines each to stdout and stderr, then claims success: the host must cap what it
/// keeps and count the rest. The guest side stays cheap (one reused buffer, no fields) so that
/// the host's own cost is what decides whether the flood ends within the timeout, with room to
/// spare on a loaded test machine.
///
/// Write errors are ignored on purpose: `println!` panics (and so traps) once the host stops
/// accepting output, while a hostile guest just keeps going.
fn flood_log() -> String {
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr().lock();
    let padding = "x".repeat(86);
    let mut line = String::with_capacity(128);
    for i in 0..200_000u32 {
        line.clear();
        let _ = write!(line, "flood {i:07} {padding}"); // 100 bytes
        airlock_guest::log(Level::Info, &line, &[]);
        if i % 100 == 0 {
            let _ = writeln!(stdout, "{line}");
            let _ = writeln!(stderr, "{line}");
        }
    }
    r#"{"done": true}"#.to_owned()
}

/// What the guest can see of its process environment (names only).
#[derive(Serialize)]
struct Environment {
    vars: Vec<String>,
    args: Vec<String>,
}

/// Reports environment variable names and arguments: the host should hand over none.
fn read_env() -> Environment {
    Environment {
        vars: std::env::vars_os()
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect(),
        args: std::env::args_os()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect(),
    }
}

/// Which paths the guest could read, and why the others failed.
#[derive(Serialize)]
struct FileProbe {
    read: Vec<String>,
    errors: Vec<String>,
}

/// Tries to read files and list directories: with no preopens, every attempt should fail.
fn read_files() -> FileProbe {
    let mut probe = FileProbe {
        read: Vec::new(),
        errors: Vec::new(),
    };
    for path in ["/etc/passwd", "/", ".", "/proc/self/environ"] {
        match std::fs::read(path) {
            Ok(_) => probe.read.push(path.to_owned()),
            Err(e) => probe.errors.push(format!("read {path}: {}", e.kind())),
        }
    }
    for path in ["/", "."] {
        match std::fs::read_dir(path) {
            Ok(_) => probe.read.push(format!("{path} (read_dir)")),
            Err(e) => probe.errors.push(format!("read_dir {path}: {}", e.kind())),
        }
    }
    probe
}

/// What the `scratch` action writes.
#[derive(Deserialize)]
struct ScratchAttempt {
    bytes: u64,
    name: String,
}

/// Lists `/scratch`, writes `bytes` bytes to `/scratch/{name}` 64 KiB at a time until a write
/// is refused, then tries to leave the directory by `..` and absolute paths. Every answer is a string: what was found
/// (`found`: the entries before writing), how much was written and why it stopped, and for
/// each escape what reading through it gave.
fn scratch(attempt: ScratchAttempt) -> Result<BTreeMap<String, String>, Error> {
    let mut report = BTreeMap::new();
    let found = match std::fs::read_dir("/scratch") {
        Ok(entries) => entries
            .map(|e| {
                e.map_or_else(
                    |e| e.kind().to_string(),
                    |e| e.file_name().to_string_lossy().into_owned(),
                )
            })
            .collect::<Vec<_>>()
            .join(","),
        Err(e) => format!("error: {}", e.kind()),
    };
    report.insert("found".into(), found);
    let path = format!("/scratch/{}", attempt.name);
    let mut written = 0u64;
    let outcome = match std::fs::File::create(&path) {
        Ok(mut file) => {
            let chunk = vec![0x5a; 64 * 1024];
            loop {
                let left = attempt.bytes - written;
                if left == 0 {
                    break "ok".to_string();
                }
                let n = left.min(chunk.len() as u64) as usize;
                match file.write_all(&chunk[..n]) {
                    Ok(()) => written += n as u64,
                    Err(e) => break format!("error: {}", e.kind()),
                }
            }
        }
        Err(e) => format!("error: {}", e.kind()),
    };
    report.insert("written".into(), written.to_string());
    report.insert("write".into(), outcome);
    let kept = std::fs::metadata(&path).map_or(0, |m| m.len());
    report.insert("kept".into(), kept.to_string());
    for escape in [
        "/scratch/../etc/passwd",
        "/etc/passwd",
        "../etc/passwd",
        "/scratch/../../etc/passwd",
    ] {
        let read = std::fs::read(escape).map_or_else(
            |e| format!("error: {}", e.kind()),
            |bytes| format!("read {} bytes", bytes.len()),
        );
        report.insert(escape.into(), read);
    }
    Ok(report)
}

/// One kv call, as the `kv` action's input names it.
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
enum KvOp {
    Get {
        key: String,
    },
    Set {
        key: String,
        value: String,
    },
    Delete {
        key: String,
    },
    List {
        prefix: String,
        after: Option<String>,
    },
}

/// What a kv call returned, or why it did nothing.
#[derive(Serialize, Default)]
struct KvResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    found: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keys: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn kv_error(e: KvError) -> String {
    match e {
        KvError::Unavailable(m) => format!("unavailable: {m}"),
        KvError::InvalidKey(m) => format!("invalid-key: {m}"),
        KvError::QuotaExceeded(m) => format!("quota-exceeded: {m}"),
    }
}

/// Runs one kv call; a refusal is reported in the output, not as an error.
fn kv_op(op: KvOp) -> Result<KvResult, Error> {
    let result = match op {
        KvOp::Get { key } => kv::get(&key).map(|value| KvResult {
            found: Some(value.is_some()),
            value: value.map(|v| String::from_utf8_lossy(&v).into_owned()),
            ..KvResult::default()
        }),
        KvOp::Set { key, value } => kv::set(&key, value.as_bytes()).map(|()| KvResult::default()),
        KvOp::Delete { key } => kv::delete(&key).map(|found| KvResult {
            found: Some(found),
            ..KvResult::default()
        }),
        KvOp::List { prefix, after } => {
            kv::list_keys(&prefix, after.as_deref(), 1_000).map(|keys| KvResult {
                keys: Some(keys),
                ..KvResult::default()
            })
        }
    };
    Ok(result.unwrap_or_else(|e| KvResult {
        error: Some(kv_error(e)),
        ..KvResult::default()
    }))
}

#[derive(Serialize)]
struct Filled {
    written: u32,
    error: Option<String>,
}

/// Writes 1 KiB values under new keys until the host refuses one: only the quota stops it.
fn kv_fill() -> Filled {
    let value = vec![b'x'; 1024];
    let mut written = 0;
    loop {
        match kv::set(&format!("fill-{written:06}"), &value) {
            Ok(()) => written += 1,
            Err(e) => {
                return Filled {
                    written,
                    error: Some(kv_error(e)),
                };
            }
        }
    }
}
