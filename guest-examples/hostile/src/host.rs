//! Attacks on what the host does and holds on the guest's behalf: host calls that block (in a
//! request body, on a response, on a pollable, in a stream read), floods of cheap host calls,
//! and resources and buffers hoarded outside linear memory, where the memory limit cannot see
//! them.
//!
//! Every action here runs until the host stops it, unless the input names a bound the host then
//! honours (a sleep that ends, a response that completes): those return what happened, so tests
//! can tell a stopped guest from a finished one.

use std::hint::black_box;

use airlock_guest::bindings::airlock::integration::log as host_log;
use airlock_guest::bindings::wasi::clocks::monotonic_clock;
use airlock_guest::bindings::wasi::http::outgoing_handler;
use airlock_guest::bindings::wasi::http::types::{
    Fields, FutureIncomingResponse, Method, OutgoingBody, OutgoingRequest, RequestOptions,
};
use airlock_guest::bindings::wasi::io::poll;
use airlock_guest::bindings::wasi::io::streams::StreamError;
use airlock_guest::http::split_url;
use airlock_guest::{Error, Level, kv};
use serde::{Deserialize, Serialize};

/// `wasi:random`, which the integration world leaves to std; imported here to call it directly.
mod wasi_random {
    wit_bindgen::generate!({
        inline: "package hostile:random; world entropy { import wasi:random/random@0.2.12; }",
        path: "../../wit/deps/random.wit",
        world: "hostile:random/entropy",
        generate_all,
    });
}

use wasi_random::wasi::random::random;

/// Input of every action here; each reads the fields it needs.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Abuse {
    url: String,
    ms: u64,
    len: u64,
    count: u32,
    size: u32,
    what: String,
    ns: u64,
}

/// What an action that ended on its own saw.
#[derive(Serialize, Default)]
pub struct Outcome {
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    bytes: u64,
    count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

const HOUR_NS: u64 = 3_600 * 1_000_000_000;

/// A request to `url` with `method`, its body not yet taken.
fn request(method: &Method, url: &str) -> Result<OutgoingRequest, Error> {
    let parts = split_url(url).map_err(|e| Error::invalid_input(e.to_string()))?;
    let request = OutgoingRequest::new(Fields::new());
    let refused = |what: &str| Error::invalid_input(format!("the host refused the {what}"));
    request.set_method(method).map_err(|()| refused("method"))?;
    request
        .set_scheme(Some(&parts.scheme()))
        .map_err(|()| refused("scheme"))?;
    request
        .set_authority(Some(parts.authority))
        .map_err(|()| refused("authority"))?;
    request
        .set_path_with_query(Some(&parts.path_with_query))
        .map_err(|()| refused("path"))?;
    Ok(request)
}

/// Sleeps an hour, over and over: only the host's deadline ends it.
fn block_forever() -> ! {
    loop {
        monotonic_clock::subscribe_duration(HOUR_NS).block();
    }
}

/// Sends a POST, hands it to the host *before* writing its body, then streams the body with
/// blocking writes for as long as the host takes them; whatever happens, it then waits on the
/// response and, after that, forever.
pub fn stream_after_handle(abuse: Abuse) -> Result<Outcome, Error> {
    let request = request(&Method::Post, &abuse.url)?;
    let body = request
        .body()
        .map_err(|()| Error::new("refused", "no request body"))?;
    let stream = body
        .write()
        .map_err(|()| Error::new("refused", "no body stream"))?;
    let future = outgoing_handler::handle(request, None);
    let chunk = [b'x'; 4096];
    while stream.blocking_write_and_flush(&chunk).is_ok() {}
    if let Ok(future) = future {
        wait(&future);
    }
    // Keep the body and its stream alive: an unfinished body must not end the request.
    black_box((&stream, &body));
    block_forever()
}

fn wait(future: &FutureIncomingResponse) {
    future.subscribe().block();
}

/// GETs `url`, waits for the head (a tarpit never sends one), then reads the body with blocking
/// reads to the end (a slow upstream sends it byte by byte); returns what arrived if it ends.
pub fn await_response(abuse: Abuse) -> Result<Outcome, Error> {
    let request = request(&Method::Get, &abuse.url)?;
    let future = outgoing_handler::handle(request, None).map_err(code)?;
    wait(&future);
    let response = match future.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(e))) => return Err(code(e)),
        _ => return Err(Error::new("refused", "no response")),
    };
    let mut outcome = Outcome {
        status: Some(response.status()),
        ..Outcome::default()
    };
    let incoming = response
        .consume()
        .map_err(|()| Error::new("refused", "no body"))?;
    {
        let stream = incoming
            .stream()
            .map_err(|()| Error::new("refused", "no body stream"))?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => outcome.bytes += chunk.len() as u64,
                Err(StreamError::Closed) => break,
                Err(e) => {
                    outcome.error = Some(format!("{e:?}"));
                    break;
                }
            }
        }
    }
    Ok(outcome)
}

fn code(e: airlock_guest::http::ErrorCode) -> Error {
    Error::new("http", format!("{e:?}"))
}

/// Blocks on one clock pollable for `ms` milliseconds (an hour if 0), then reports it woke.
pub fn sleep(abuse: Abuse) -> Result<Outcome, Error> {
    let ns = if abuse.ms == 0 {
        HOUR_NS
    } else {
        abuse.ms * 1_000_000
    };
    monotonic_clock::subscribe_duration(ns).block();
    Ok(Outcome {
        count: abuse.ms,
        ..Outcome::default()
    })
}

/// Polls `count` pollables at once, none of which fires within the hour.
pub fn poll_many(abuse: Abuse) -> Result<Outcome, Error> {
    let pollables: Vec<_> = (0..abuse.count.max(1))
        .map(|_| monotonic_clock::subscribe_duration(HOUR_NS))
        .collect();
    let refs: Vec<_> = pollables.iter().collect();
    loop {
        black_box(poll::poll(&refs));
    }
}

/// Calls a cheap host function (`log`, `kv`, `clock`) forever.
pub fn flood_calls(abuse: Abuse) -> Result<Outcome, Error> {
    let mut n = 0u64;
    loop {
        match abuse.what.as_str() {
            "log" => airlock_guest::log(Level::Debug, "", &[]),
            "kv" => {
                let _ = black_box(kv::get("flood"));
            }
            _ => {
                black_box(monotonic_clock::now());
            }
        }
        n = black_box(n.wrapping_add(1));
    }
}

/// Creates host resources of kind `what`, each holding `size` bytes where the kind holds data,
/// and never drops one: `fields`, `bodies` (outgoing bodies with `size` bytes written, never
/// sent), `pollables`, `requests`, `options`. Reports how many it made if the host refuses one
/// with an error the guest can see.
pub fn hoard(abuse: Abuse) -> Result<Outcome, Error> {
    let size = abuse.size as usize;
    let value = vec![b'v'; size];
    let mut made = 0u64;
    let error = loop {
        let step: Result<(), String> = match abuse.what.as_str() {
            "fields" => {
                let fields = Fields::new();
                match fields.append("x-hoard", &value) {
                    Ok(()) => {
                        std::mem::forget(fields);
                        Ok(())
                    }
                    Err(e) => Err(format!("{e:?}")),
                }
            }
            "bodies" => hoard_body(&value),
            "pollables" => {
                std::mem::forget(monotonic_clock::subscribe_duration(HOUR_NS));
                Ok(())
            }
            "requests" => {
                std::mem::forget(OutgoingRequest::new(Fields::new()));
                Ok(())
            }
            "options" => {
                std::mem::forget(RequestOptions::new());
                Ok(())
            }
            other => return Err(Error::invalid_input(format!("no resource kind {other:?}"))),
        };
        match step {
            Ok(()) => made += 1,
            Err(e) => break e,
        }
    };
    Ok(Outcome {
        count: made,
        error: Some(error),
        ..Outcome::default()
    })
}

/// One outgoing body with `value` written into its pipe, never sent and never dropped.
fn hoard_body(value: &[u8]) -> Result<(), String> {
    let request = OutgoingRequest::new(Fields::new());
    let body: OutgoingBody = request.body().map_err(|()| "no body".to_owned())?;
    let stream = body.write().map_err(|()| "no stream".to_owned())?;
    let mut rest = value;
    while !rest.is_empty() {
        match stream.check_write() {
            Ok(0) | Err(_) => break,
            Ok(permit) => {
                let n = rest
                    .len()
                    .min(usize::try_from(permit).unwrap_or(usize::MAX));
                if stream.write(&rest[..n]).is_err() {
                    break;
                }
                rest = &rest[n..];
            }
        }
    }
    std::mem::forget(stream);
    std::mem::forget(body);
    std::mem::forget(request);
    Ok(())
}

/// Asks the host for `len` random bytes in one call.
pub fn random_bytes(abuse: Abuse) -> Result<Outcome, Error> {
    let bytes = random::get_random_bytes(abuse.len);
    Ok(Outcome {
        bytes: bytes.len() as u64,
        ..Outcome::default()
    })
}

/// Sends `count` GETs to `url` and reads none of the responses, then waits forever.
pub fn hoard_responses(abuse: Abuse) -> Result<Outcome, Error> {
    let mut futures = Vec::new();
    for _ in 0..abuse.count {
        let request = request(&Method::Get, &abuse.url)?;
        if let Ok(future) = outgoing_handler::handle(request, None) {
            futures.push(future);
        }
    }
    // Take each response head and keep it, its body unread.
    let responses: Vec<_> = futures
        .iter()
        .map(|future| {
            wait(future);
            future.get()
        })
        .collect();
    black_box((&futures, &responses));
    block_forever()
}

/// Logs `count` lines, each with one field of `size` bytes.
pub fn log_fields(abuse: Abuse) -> Result<Outcome, Error> {
    let value = "f".repeat(abuse.size as usize);
    for _ in 0..abuse.count {
        airlock_guest::log(Level::Info, "fields", &[("big", &value)]);
    }
    Ok(Outcome {
        count: u64::from(abuse.count),
        ..Outcome::default()
    })
}

/// Logs one line of `size` bytes in a single host call: the host must refuse to copy an
/// argument that large out of linear memory, whatever it would do with it afterwards.
pub fn huge_argument(abuse: Abuse) -> Result<Outcome, Error> {
    let message = "x".repeat(abuse.size as usize);
    host_log::log(Level::Info, &message, &[]);
    Ok(Outcome {
        bytes: message.len() as u64,
        ..Outcome::default()
    })
}

/// Logs one line with `count` fields of one-byte names and values: a list of 2 × `count`
/// tiny strings, which costs the host far more to lift than the guest to pass.
pub fn many_strings(abuse: Abuse) -> Result<Outcome, Error> {
    let fields: Vec<(String, String)> = (0..abuse.count)
        .map(|_| ("k".to_owned(), "v".to_owned()))
        .collect();
    host_log::log(Level::Info, "fields", &fields);
    Ok(Outcome {
        count: u64::from(abuse.count),
        ..Outcome::default()
    })
}

/// Appends `x-h: <size bytes>` to one `fields` up to `count` times; reports how many the host
/// took and the error that stopped it.
pub fn append_fields(abuse: Abuse) -> Result<Outcome, Error> {
    let fields = Fields::new();
    let value = vec![b'v'; abuse.size as usize];
    let mut outcome = Outcome::default();
    for _ in 0..abuse.count {
        match fields.append("x-h", &value) {
            Ok(()) => outcome.count += 1,
            Err(e) => {
                outcome.error = Some(format!("{e:?}"));
                break;
            }
        }
    }
    Ok(outcome)
}

/// GETs `url` with its connect, first-byte and between-bytes timeouts all set to `ns`
/// nanoseconds (0 and `u64::MAX` included), and reports the status or the error.
pub fn timeouts(abuse: Abuse) -> Result<Outcome, Error> {
    let request = request(&Method::Get, &abuse.url)?;
    let options = RequestOptions::new();
    let mut outcome = Outcome::default();
    for (what, set) in [
        ("connect", options.set_connect_timeout(Some(abuse.ns))),
        ("first-byte", options.set_first_byte_timeout(Some(abuse.ns))),
        (
            "between-bytes",
            options.set_between_bytes_timeout(Some(abuse.ns)),
        ),
    ] {
        if set.is_err() {
            outcome.error = Some(format!("the host refused the {what} timeout"));
            return Ok(outcome);
        }
    }
    let future = match outgoing_handler::handle(request, Some(options)) {
        Ok(future) => future,
        Err(e) => {
            outcome.error = Some(format!("{e:?}"));
            return Ok(outcome);
        }
    };
    wait(&future);
    match future.get() {
        Some(Ok(Ok(response))) => outcome.status = Some(response.status()),
        Some(Ok(Err(e))) => outcome.error = Some(format!("{e:?}")),
        _ => outcome.error = Some("no response".to_owned()),
    }
    Ok(outcome)
}

/// Makes `size` fields of its own (each holding `x-own: v`), then uses handle number `count` as
/// a `fields`: one of its own, or one it never made (a handle of an earlier invocation, or of
/// nothing), where the host must trap rather than hand over what the handle once named.
pub fn probe_handle(abuse: Abuse) -> Result<Outcome, Error> {
    let mine: Vec<Fields> = (0..abuse.size)
        .map(|_| {
            let fields = Fields::new();
            let _ = fields.append("x-own", b"v");
            fields
        })
        .collect();
    // SAFETY: deliberately unsound: the guest claims a handle it may not own. The host checks
    // every handle against this instance's own table; the value is forgotten, never dropped.
    let probed = unsafe { Fields::from_handle(abuse.count) };
    let entries = probed.entries();
    std::mem::forget(probed);
    black_box(&mine);
    Ok(Outcome {
        count: entries.len() as u64,
        bytes: entries
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum(),
        ..Outcome::default()
    })
}
