//! What the host holds on one guest's behalf, bounded and charged like its linear memory.
//!
//! A guest's memory limit covers only its linear memories. Everything the host allocates for
//! it lives outside them: `wasi:http` fields, requests and bodies waiting in the resource table,
//! connection buffers of requests in flight, log lines, the result of a `wasi:random` call. The
//! [`HostBudget`] counts those after every host call (wasmtime's call hook), keeps the peak for
//! the audit record, and ends the invocation when the total passes the manifest's
//! `limits.host-memory`, or when the guest has made more host calls than any real integration
//! needs. The resource table itself is capped at [`MAX_RESOURCES`] handles, so no single burst
//! between two checks can hold more than that many (each of bounded size: see
//! docs/security-model.md).

use std::any::{Any, TypeId};

use wasmtime::component::ResourceTable;
use wasmtime_wasi_http::p2::body::HostOutgoingBody;
use wasmtime_wasi_http::p2::types::{HostIncomingResponse, HostOutgoingRequest};
use wasmtime_wasi_http::{FieldMap, FieldMapError};

use crate::policy::units::ByteSize;

/// Live resource handles one invocation may hold. The examples peak at a few dozen (measured:
/// docs/security-model.md); a hostile guest hoarding `fields` or pollables hits this long before
/// it matters to the host.
pub const MAX_RESOURCES: usize = 1_024;

/// Host calls one invocation may make. A million log lines and a 10 MiB body read in 64 KiB
/// chunks are far below it; a guest that only calls cheap host functions in a loop is stopped
/// here even under the longest timeout an operator allows.
pub const MAX_HOST_CALLS: u64 = 10_000_000;

/// Bytes one host call may copy out of linear memory (wasmtime's hostcall fuel): strings and
/// lists are lifted into host allocations before any host function sees them, so without this
/// a guest with a large memory limit makes the host copy that much on every call. The biggest
/// real argument is a kv value or a body chunk; lists are charged at their host size (a
/// `(String, String)` is 48 bytes), which stops lists of millions of tiny strings too.
pub const MAX_HOSTCALL_BYTES: usize = 16 << 20;

/// What each live resource costs besides its contents: the table slot, the boxed value.
const PER_RESOURCE: u64 = 128;

/// The largest `fields` resource a guest may build (the in-memory size wasmtime-wasi-http
/// counts); real request headers are a few KiB.
pub const FIELD_SIZE_LIMIT: usize = 16 * 1024;

/// Chunks of an outgoing body waiting for the connection, and the size of each: a request body
/// the guest writes but nobody reads yet holds at most `(chunks + 1) * size` bytes.
pub const BODY_BUFFER_CHUNKS: usize = 1;
pub const BODY_CHUNK_SIZE: usize = 64 * 1024;
const PER_BODY: u64 = ((BODY_BUFFER_CHUNKS + 1) * BODY_CHUNK_SIZE) as u64;

/// Whether `error` is a `fields` resource refusing to grow past [`FIELD_SIZE_LIMIT`] (which
/// wasmtime-wasi-http raises as a trap): a host-memory limit, not a fault of the guest's code.
pub fn fields_overflowed(error: &wasmtime::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<FieldMapError>(),
            Some(FieldMapError::TotalSizeTooBig | FieldMapError::TooManyFields)
        )
    })
}

/// Why the host stopped a guest for what it made the host hold or do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostLimitExceeded {
    #[error("host memory budget of {limit} exceeded: the host held {held} for the guest")]
    Memory { limit: ByteSize, held: ByteSize },
    #[error("the guest held more than {MAX_RESOURCES} host resources at once")]
    Resources,
    #[error("the guest made more than {MAX_HOST_CALLS} host calls")]
    Calls,
}

/// One invocation's account of host-side memory and host calls.
#[derive(Debug)]
pub struct HostBudget {
    limit: u64,
    /// What the host held at the last measurement.
    current: u64,
    calls: u64,
    peak: u64,
    peak_resources: usize,
    tripped: Option<HostLimitExceeded>,
}

/// What the host holds outside the resource table, measured by its owners.
#[derive(Debug, Clone, Copy, Default)]
pub struct Held {
    /// Guest log text and pending stdio, with per-line overhead.
    pub log: u64,
    /// Connection buffers of requests in flight.
    pub egress: u64,
}

impl HostBudget {
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            current: 0,
            calls: 0,
            peak: 0,
            peak_resources: 0,
            tripped: None,
        }
    }

    /// Counts one host call and re-measures what the host holds; an error ends the invocation.
    pub(crate) fn after_call(
        &mut self,
        table: &mut ResourceTable,
        held: Held,
    ) -> Result<(), HostLimitExceeded> {
        self.calls += 1;
        if self.calls > MAX_HOST_CALLS {
            return Err(self.trip(HostLimitExceeded::Calls));
        }
        let (resources, bytes) = measure(table);
        self.peak_resources = self.peak_resources.max(resources);
        self.current = bytes + held.log + held.egress;
        self.charge(self.current)
    }

    /// Checks that `extra` more bytes, held only for the call in progress, fit beside what the
    /// host held at the last measurement.
    pub(crate) fn reserve(&mut self, extra: u64) -> Result<(), HostLimitExceeded> {
        self.charge(self.current.saturating_add(extra))
    }

    fn charge(&mut self, total: u64) -> Result<(), HostLimitExceeded> {
        self.peak = self.peak.max(total);
        if total > self.limit {
            return Err(self.trip(HostLimitExceeded::Memory {
                limit: ByteSize(self.limit),
                held: ByteSize(total),
            }));
        }
        Ok(())
    }

    /// Notes that the resource table refused a handle (it is full).
    pub fn resources_exhausted(&mut self) -> HostLimitExceeded {
        self.trip(HostLimitExceeded::Resources)
    }

    fn trip(&mut self, why: HostLimitExceeded) -> HostLimitExceeded {
        *self.tripped.get_or_insert(why)
    }

    /// The limit that stopped the guest, if one did.
    pub fn tripped(&self) -> Option<HostLimitExceeded> {
        self.tripped
    }

    /// The most the host held for the guest at once, in bytes.
    pub fn peak(&self) -> u64 {
        self.peak
    }

    /// The most resource handles the guest held at once.
    pub fn peak_resources(&self) -> usize {
        self.peak_resources
    }

    /// Host calls made so far.
    pub fn calls(&self) -> u64 {
        self.calls
    }
}

/// Live handles in `table`, and what they hold: a fixed cost each, plus header bytes of
/// fields, requests and responses, plus the pipe of every outgoing body.
fn measure(table: &mut ResourceTable) -> (usize, u64) {
    let fields = TypeId::of::<FieldMap>();
    let request = TypeId::of::<HostOutgoingRequest>();
    let response = TypeId::of::<HostIncomingResponse>();
    let body = TypeId::of::<HostOutgoingBody>();
    let mut count = 0;
    let mut bytes = 0u64;
    for entry in table.iter_mut() {
        count += 1;
        bytes += PER_RESOURCE;
        // One dynamic type check per handle: this runs after every host call.
        let kind = Any::type_id(&*entry);
        if kind == fields {
            bytes += entry
                .downcast_ref::<FieldMap>()
                .map_or(0, |f| header_bytes(f));
        } else if kind == request {
            bytes += entry.downcast_ref::<HostOutgoingRequest>().map_or(0, |r| {
                header_bytes(&r.headers)
                    + r.authority.as_ref().map_or(0, |a| a.len() as u64)
                    + r.path_with_query.as_ref().map_or(0, |p| p.len() as u64)
            });
        } else if kind == response {
            bytes += entry
                .downcast_ref::<HostIncomingResponse>()
                .map_or(0, |r| header_bytes(&r.headers));
        } else if kind == body {
            bytes += PER_BODY;
        }
    }
    (count, bytes)
}

/// Names and values, plus what `http::HeaderMap` spends per entry.
fn header_bytes(map: &http::HeaderMap) -> u64 {
    map.iter()
        .map(|(name, value)| (name.as_str().len() + value.len() + 32) as u64)
        .sum()
}
