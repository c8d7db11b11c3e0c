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
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) exit: Exit,
    error: anyhow::Error,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&explain(&self.error))
    }
}

impl std::error::Error for Failure {}

/// `error` and its causes, joined by ": ", leaving out a cause whose words are already said:
/// many typed errors quote their source in their own message.
pub(crate) fn explain(error: &anyhow::Error) -> String {
    let mut said = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if said.contains(&cause) {
            continue;
        }
        if !said.is_empty() {
            said.push_str(": ");
        }
        said.push_str(&cause);
    }
    said
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

    #[derive(Debug, thiserror::Error)]
    #[error("audit database: {0}")]
    struct Quoting(#[from] std::io::Error);

    #[test]
    fn a_cause_already_quoted_is_said_once() {
        let quoted = anyhow::Error::from(Quoting(std::io::Error::other("disk on fire")));
        assert_eq!(explain(&quoted), "audit database: disk on fire");
        let wrapped = fail(Exit::Usage, quoted.context("cannot start"));
        assert_eq!(
            explain(&wrapped),
            "cannot start: audit database: disk on fire"
        );
    }
}
