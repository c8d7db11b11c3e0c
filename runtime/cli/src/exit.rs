//! Every exit code `airlock` uses, and which kind of failure gets which: the one place scripts
//! can rely on (the table in docs/cli.md mirrors [`Exit`]).
//!
//! A verb returns the [`Exit`] it ends with; a failure carries one through [`fail`], and an
//! error without one is a host failure. clap's own usage errors exit 2 too.

use std::process::ExitCode;

use airlock_platform::install::{CredentialSetError, InstallError, WebhookError};
use airlock_runtime::invoke::InvokeError;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Exit {
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
    pub(crate) const TEST_FAILED: Self = Self::Host;
    /// `airlock policy check`: the broker would deny the request.
    pub(crate) const DENIED: Self = Self::Guest;

    /// The process exit code.
    pub(crate) const fn code(self) -> u8 {
        self as u8
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}

/// The exit of an invocation that failed. The summary's `exit_code` and the server's status
/// come from [`InvokeError::exit_code`]; a test keeps the two equal.
impl From<&InvokeError> for Exit {
    fn from(error: &InvokeError) -> Self {
        match error {
            InvokeError::UnknownAction { .. } => Self::Usage,
            InvokeError::InputJson(_)
            | InvokeError::Input { .. }
            | InvokeError::OutputJson(_)
            | InvokeError::Output { .. } => Self::Schema,
            InvokeError::Guest { .. } | InvokeError::Trap(_) => Self::Guest,
            InvokeError::Limit(_) => Self::Limit,
            InvokeError::Host(_) | InvokeError::Audit(_) => Self::Host,
        }
    }
}

/// An installer's refusal: trust failures exit 6, the store or trail failing is the host's
/// failure, anything else is what the operator asked for.
impl From<&InstallError> for Exit {
    fn from(error: &InstallError) -> Self {
        match error {
            e if e.trust_reason().is_some() => Self::Trust,
            InstallError::Store(_) | InstallError::Audit(_) => Self::Host,
            _ => Self::Usage,
        }
    }
}

impl From<&CredentialSetError> for Exit {
    fn from(error: &CredentialSetError) -> Self {
        match error {
            CredentialSetError::Install(e) => e.into(),
            _ => Self::Usage,
        }
    }
}

impl From<&WebhookError> for Exit {
    fn from(error: &WebhookError) -> Self {
        match error {
            WebhookError::Install(e) => e.into(),
            _ => Self::Usage,
        }
    }
}

/// An error that carries the exit it should produce.
#[derive(Debug, thiserror::Error)]
#[error("{error:#}")]
pub(crate) struct Failure {
    pub(crate) exit: Exit,
    error: anyhow::Error,
}

/// Wraps an error with the exit it should produce.
pub(crate) fn fail(exit: Exit, error: impl Into<anyhow::Error>) -> anyhow::Error {
    Failure {
        exit,
        error: error.into(),
    }
    .into()
}

/// Wraps a typed error with the exit its kind maps to.
pub(crate) fn failed<E>(error: E) -> anyhow::Error
where
    E: std::error::Error + Send + Sync + 'static,
    for<'a> &'a E: Into<Exit>,
{
    fail((&error).into(), error)
}

/// The exit of a command's error: the one it carries, else a host failure.
pub(crate) fn of_error(error: &anyhow::Error) -> Exit {
    error
        .downcast_ref::<Failure>()
        .map_or(Exit::Host, |f| f.exit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_runtime::LimitKind;
    use airlock_runtime::json::parse_strict;

    #[test]
    fn invocations_exit_with_the_code_their_summary_reports() {
        let json_error = || parse_strict("{", 16).expect_err("not JSON");
        let errors = [
            InvokeError::UnknownAction {
                action: "a".into(),
                available: "b".into(),
            },
            InvokeError::InputJson(json_error()),
            InvokeError::OutputJson(json_error()),
            InvokeError::Guest {
                code: "c".into(),
                message: "m".into(),
            },
            InvokeError::Trap("t".into()),
            InvokeError::Limit(LimitKind::Stack),
            InvokeError::Host("h".into()),
            InvokeError::Audit("a".into()),
        ];
        for error in &errors {
            assert_eq!(Exit::from(error).code(), error.exit_code(), "{error}");
        }
    }

    #[test]
    fn an_error_without_an_exit_is_a_host_failure() {
        assert_eq!(of_error(&anyhow::anyhow!("disk full")), Exit::Host);
        assert_eq!(
            of_error(&fail(Exit::Trust, anyhow::anyhow!("revoked"))),
            Exit::Trust
        );
    }
}
