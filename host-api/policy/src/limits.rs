//! Resource limits for one invocation, resolved from what a manifest asks for and what the
//! operator allows.

use std::time::Duration;

use serde::Serialize;

use super::units::{ByteSize, HumanDuration};

/// What a manifest's `[limits]` table asks for; `None` takes the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestedLimits {
    pub memory: Option<u64>,
    pub timeout: Option<Duration>,
    pub output: Option<u64>,
    pub host_memory: Option<u64>,
    /// `[scratch] size`: none means no scratch directory.
    pub scratch: Option<u64>,
}

/// The operator's ceilings: no integration gets more than this, whatever its manifest says.
///
/// One struct so that defaults, the engine's pool sizing and the tests cannot drift apart.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Ceilings {
    /// Largest linear-memory total one invocation may reach.
    pub memory: u64,
    /// Longest wall-clock time one invocation may run.
    #[serde(with = "duration_ms")]
    pub timeout: Duration,
    /// Largest output (JSON text) an action may return.
    pub output: u64,
    /// Largest input (JSON text) accepted before parsing; not negotiable by manifests.
    pub input: u64,
    /// Largest total of guest log text and stdio kept per invocation; the rest is dropped.
    pub guest_log: u64,
    /// Largest kv store (keys and values) one installation may declare.
    pub kv_bytes: u64,
    /// Most kv keys one installation may declare.
    pub kv_keys: u64,
    /// Most memory the host may hold on one invocation's behalf (resources, buffers, log).
    pub host_memory: u64,
    /// Largest scratch directory one invocation may declare.
    pub scratch: u64,
}

impl Default for Ceilings {
    fn default() -> Self {
        Self {
            memory: 256 << 20,
            timeout: Duration::from_secs(60),
            output: 16 << 20,
            input: 1 << 20,
            guest_log: 1 << 20,
            kv_bytes: 64 << 20,
            kv_keys: 100_000,
            host_memory: 64 << 20,
            scratch: 256 << 20,
        }
    }
}

/// The limits one invocation runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    pub memory: u64,
    #[serde(with = "duration_ms")]
    pub timeout: Duration,
    pub output: u64,
    pub input: u64,
    pub guest_log: u64,
    /// What the host may hold for the guest outside its linear memory (`budget`).
    pub host_memory: u64,
    /// Bytes of the invocation's scratch directory; 0: it has none.
    pub scratch: u64,
}

impl Limits {
    /// Defaults for a manifest that names no limits (each still capped by the ceilings).
    pub const DEFAULT_MEMORY: u64 = 64 << 20;
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_OUTPUT: u64 = 1 << 20;
    /// Room for the capped guest log, eight requests in flight and headers, with margin; a
    /// small share of the default memory limit.
    pub const DEFAULT_HOST_MEMORY: u64 = 8 << 20;

    /// Resolves requested limits against the operator's ceilings.
    ///
    /// A request above a ceiling is refused rather than clamped: an integration that silently
    /// runs with less than it declared fails later in ways that are hard to diagnose.
    pub fn resolve(requested: RequestedLimits, ceilings: &Ceilings) -> Result<Self, LimitError> {
        let memory = within(requested.memory, Self::DEFAULT_MEMORY, ceilings.memory).map_err(
            |(requested, ceiling)| LimitError::Memory {
                requested: ByteSize(requested),
                ceiling: ByteSize(ceiling),
            },
        )?;
        let timeout = within(requested.timeout, Self::DEFAULT_TIMEOUT, ceilings.timeout).map_err(
            |(requested, ceiling)| LimitError::Timeout {
                requested: HumanDuration(requested),
                ceiling: HumanDuration(ceiling),
            },
        )?;
        let output = within(requested.output, Self::DEFAULT_OUTPUT, ceilings.output).map_err(
            |(requested, ceiling)| LimitError::Output {
                requested: ByteSize(requested),
                ceiling: ByteSize(ceiling),
            },
        )?;
        let host_memory = within(
            requested.host_memory,
            Self::DEFAULT_HOST_MEMORY,
            ceilings.host_memory,
        )
        .map_err(|(requested, ceiling)| LimitError::HostMemory {
            requested: ByteSize(requested),
            ceiling: ByteSize(ceiling),
        })?;
        let scratch = match requested.scratch {
            Some(size) if size > ceilings.scratch => {
                return Err(LimitError::Scratch {
                    requested: ByteSize(size),
                    ceiling: ByteSize(ceilings.scratch),
                });
            }
            size => size.unwrap_or(0),
        };
        Ok(Self {
            memory,
            timeout,
            output,
            input: ceilings.input,
            guest_log: ceilings.guest_log,
            host_memory,
            scratch,
        })
    }
}

/// The requested value, or the default capped at the ceiling; `Err((requested, ceiling))` when
/// the request is above the ceiling.
fn within<T: PartialOrd + Copy>(requested: Option<T>, default: T, ceiling: T) -> Result<T, (T, T)> {
    match requested {
        Some(value) if value > ceiling => Err((value, ceiling)),
        Some(value) => Ok(value),
        None if default > ceiling => Ok(ceiling),
        None => Ok(default),
    }
}

/// A manifest asked for more than the operator allows.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LimitError {
    #[error("limits.memory = {requested} exceeds the operator's ceiling of {ceiling}")]
    Memory {
        requested: ByteSize,
        ceiling: ByteSize,
    },
    #[error("limits.timeout = {requested} exceeds the operator's ceiling of {ceiling}")]
    Timeout {
        requested: HumanDuration,
        ceiling: HumanDuration,
    },
    #[error("limits.output = {requested} exceeds the operator's ceiling of {ceiling}")]
    Output {
        requested: ByteSize,
        ceiling: ByteSize,
    },
    #[error("limits.host-memory = {requested} exceeds the operator's ceiling of {ceiling}")]
    HostMemory {
        requested: ByteSize,
        ceiling: ByteSize,
    },
    #[error("scratch.size = {requested} exceeds the operator's ceiling of {ceiling}")]
    Scratch {
        requested: ByteSize,
        ceiling: ByteSize,
    },
    #[error("kv.max-bytes = {requested} exceeds the operator's ceiling of {ceiling}")]
    KvBytes {
        requested: ByteSize,
        ceiling: ByteSize,
    },
    #[error("kv.max-keys = {requested} exceeds the operator's ceiling of {ceiling}")]
    KvKeys { requested: u64, ceiling: u64 },
    #[error("kv.max-value-bytes = {requested} is more than kv.max-bytes = {total}")]
    KvValue {
        requested: ByteSize,
        total: ByteSize,
    },
}

mod duration_ms {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u128(d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn resolve_applies_defaults_and_ceilings() {
        let ceilings = Ceilings::default();
        /// (memory bytes, timeout ms, output bytes), or the error message.
        type Expected = Result<(u64, u64, u64), &'static str>;
        let cases: &[(RequestedLimits, Expected)] = &[
            (RequestedLimits::default(), Ok((64 * MIB, 10_000, MIB))),
            (
                RequestedLimits {
                    memory: Some(32 * MIB),
                    timeout: Some(Duration::from_millis(1500)),
                    output: Some(2 * MIB),
                    host_memory: None,
                    scratch: None,
                },
                Ok((32 * MIB, 1500, 2 * MIB)),
            ),
            (
                RequestedLimits {
                    scratch: Some(300 * MIB),
                    ..Default::default()
                },
                Err("scratch.size = 300 MiB exceeds the operator's ceiling of 256 MiB"),
            ),
            (
                RequestedLimits {
                    memory: Some(512 * MIB),
                    ..Default::default()
                },
                Err("limits.memory = 512 MiB exceeds the operator's ceiling of 256 MiB"),
            ),
            (
                RequestedLimits {
                    timeout: Some(Duration::from_secs(3600)),
                    ..Default::default()
                },
                Err("limits.timeout = 1h exceeds the operator's ceiling of 1m"),
            ),
            (
                RequestedLimits {
                    output: Some(17 * MIB),
                    ..Default::default()
                },
                Err("limits.output = 17 MiB exceeds the operator's ceiling of 16 MiB"),
            ),
            (
                RequestedLimits {
                    host_memory: Some(65 * MIB),
                    ..Default::default()
                },
                Err("limits.host-memory = 65 MiB exceeds the operator's ceiling of 64 MiB"),
            ),
        ];
        for (requested, expected) in cases {
            let got = Limits::resolve(*requested, &ceilings)
                .map(|l| (l.memory, l.timeout.as_millis() as u64, l.output))
                .map_err(|e| e.to_string());
            assert_eq!(got, expected.map_err(str::to_string), "{requested:?}");
        }
    }

    #[test]
    fn defaults_never_exceed_a_lower_ceiling() {
        let ceilings = Ceilings {
            memory: 16 * MIB,
            timeout: Duration::from_secs(2),
            output: 1024,
            ..Ceilings::default()
        };
        let limits = Limits::resolve(RequestedLimits::default(), &ceilings).expect("defaults fit");
        assert_eq!(limits.memory, 16 * MIB);
        assert_eq!(limits.timeout, Duration::from_secs(2));
        assert_eq!(limits.output, 1024);
    }

    #[test]
    fn host_memory_defaults_to_a_small_share_and_is_declared_within_its_ceiling() {
        let ceilings = Ceilings::default();
        let default = Limits::resolve(RequestedLimits::default(), &ceilings).expect("defaults");
        assert_eq!(default.host_memory, 8 * MIB);
        assert!(default.host_memory * 4 <= default.memory);
        let asked = RequestedLimits {
            host_memory: Some(2 * MIB),
            ..Default::default()
        };
        let limits = Limits::resolve(asked, &ceilings).expect("within the ceiling");
        assert_eq!(limits.host_memory, 2 * MIB);
        let lower = Ceilings {
            host_memory: MIB,
            ..Ceilings::default()
        };
        let capped = Limits::resolve(RequestedLimits::default(), &lower).expect("default capped");
        assert_eq!(capped.host_memory, MIB);
    }
}
