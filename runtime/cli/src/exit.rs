//! How a command ends: the [`Exit`] table is `airlock_runtime::exit` (docs/cli.md mirrors it);
//! here, which exit each service's error ends a verb with.
//!
//! A verb returns the [`Exit`] it ends with; a failure carries one through [`fail`], and an
//! error without one is a host failure. clap's own usage errors exit 2 too.

use airlock_platform::install::{CredentialSetError, InstallError, ScheduleError, WebhookError};
use airlock_runtime::invoke::InvokeError;

pub(crate) use airlock_runtime::exit::Exit;

/// Which [`Exit`] a typed error ends the command with (the table is `airlock_runtime::exit`).
pub(crate) trait Exits {
    fn exit(&self) -> Exit;
}

impl Exits for InvokeError {
    fn exit(&self) -> Exit {
        self.into()
    }
}

/// An installer's refusal: trust failures exit 6, the store or trail failing is the host's
/// failure, anything else is what the operator asked for.
impl Exits for InstallError {
    fn exit(&self) -> Exit {
        match self {
            e if e.trust_reason().is_some() => Exit::Trust,
            InstallError::Store(_) | InstallError::Audit(_) => Exit::Host,
            _ => Exit::Usage,
        }
    }
}

impl Exits for CredentialSetError {
    fn exit(&self) -> Exit {
        match self {
            CredentialSetError::Install(e) => e.exit(),
            _ => Exit::Usage,
        }
    }
}

impl Exits for WebhookError {
    fn exit(&self) -> Exit {
        match self {
            WebhookError::Install(e) => e.exit(),
            _ => Exit::Usage,
        }
    }
}

impl Exits for ScheduleError {
    fn exit(&self) -> Exit {
        match self {
            ScheduleError::Install(e) => e.exit(),
            _ => Exit::Usage,
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
    E: Exits + std::error::Error + Send + Sync + 'static,
{
    fail(error.exit(), error)
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

    #[test]
    fn an_error_without_an_exit_is_a_host_failure() {
        assert_eq!(of_error(&anyhow::anyhow!("disk full")), Exit::Host);
        assert_eq!(
            of_error(&fail(Exit::Trust, anyhow::anyhow!("revoked"))),
            Exit::Trust
        );
    }
}
