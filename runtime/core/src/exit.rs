//! Every exit code `airlock` uses, and which kind of failure gets which: the one table scripts
//! can rely on (docs/cli.md mirrors [`Exit`]). It lives here, below the CLI, because an
//! invocation's summary reports its exit code and the server's error body carries it too.

/// How a command (or one invocation) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// 0: it did what was asked.
    Success = 0,
    /// 1: the host failed (I/O, engine, storage); also [`Exit::TEST_FAILED`].
    Host = 1,
    /// 2: a usage error, or an invalid manifest, schema, component, import, config or grant.
    Usage = 2,
    /// 3: input or output rejected by its schema (or not valid JSON, or over its size limit).
    Schema = 3,
    /// 4: the guest returned an error or trapped; also [`Exit::DENIED`].
    Guest = 4,
    /// 5: a limit stopped the guest (timeout, memory, stack, table, fuel, output, host memory,
    /// host resources or host calls).
    Limit = 5,
    /// 6: untrusted code: unsigned, unknown or revoked key, digest or publisher mismatch,
    /// malformed bundle, a rollback.
    Trust = 6,
    /// 7: `audit verify` found the trail altered, or records missing from its index.
    Audit = 7,
}

impl Exit {
    /// A test failed, like a failing `cargo test`: a fixture case (`airlock test`), or a
    /// step's check in `airlock demo`.
    pub const TEST_FAILED: Self = Self::Host;
    /// `airlock policy check`: the broker would deny the request.
    pub const DENIED: Self = Self::Guest;

    /// The process exit code.
    pub const fn code(self) -> u8 {
        self as u8
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        Self::from(exit.code())
    }
}
