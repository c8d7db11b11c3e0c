//! Where credential values come from ([`SecretSource`]: the encrypted store, or the secrets a
//! local run was given) and [`Credentials`], the broker that reads them for one installation
//! and runs OAuth for oauth2 credentials.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{
    BoxFuture, ConnectionTokens, CredentialBroker, CredentialError, CredentialSpec, CredentialType,
    OAuthTokens, Secret,
};

/// Whose credentials: one installation of one tenant, and the end user an invocation runs for,
/// if any. Token caches and stores key on it, so one tenant's or user's value is never used for
/// another's request (CR-13).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CredentialScope {
    pub tenant: String,
    pub installation: String,
    /// Used only by credentials declared per user; the others are the installation's.
    pub user: Option<String>,
}

impl CredentialScope {
    pub fn new(tenant: impl Into<String>, installation: impl Into<String>) -> Self {
        Self {
            tenant: tenant.into(),
            installation: installation.into(),
            user: None,
        }
    }

    /// The scope of a local `airlock run`: its own tenant, never an operator's.
    pub fn local() -> Self {
        Self::new("local", "local")
    }
}

/// A held turn to refresh tokens ([`SecretSource::refresh_turn`]): released when dropped.
pub type RefreshTurn = Box<dyn Send + Sync>;

/// Stored credential values of one scope.
pub trait SecretSource: Send + Sync {
    /// The value of credential `name`, validated as `kind`; `None` when it is not set.
    fn get(&self, name: &str, kind: CredentialType) -> Result<Option<Secret>, CredentialError>;

    /// Replaces the value of `name` with one the host derived (an OAuth client holding a
    /// rotated refresh token), keeping the credential's metadata.
    fn replace(&self, name: &str, value: &Secret) -> Result<(), CredentialError>;

    /// The origins `name` was stored for (those of the rules naming it when it was set), or
    /// `None` when values are not bound to origins (a local run's own). A bound value is never
    /// sent to another origin, whatever a later manifest says.
    fn origins(&self, name: &str) -> Result<Option<Vec<String>>, CredentialError> {
        let _ = name;
        Ok(None)
    }

    /// The tokens of the connection (consent) of `name` for `user` (`None`: the
    /// installation's own), if one was made. Sources without connections have none.
    fn connection(
        &self,
        name: &str,
        user: Option<&str>,
    ) -> Result<Option<ConnectionTokens>, CredentialError> {
        let _ = (name, user);
        Ok(None)
    }

    /// Stores refreshed tokens in place of the connection's revision `replaces`; false (and
    /// nothing stored) when the connection was removed or replaced since it was read.
    fn update_connection(
        &self,
        name: &str,
        user: Option<&str>,
        replaces: u64,
        tokens: &ConnectionTokens,
    ) -> Result<bool, CredentialError> {
        let _ = (name, user, replaces, tokens);
        Ok(false)
    }

    /// Waits for, then holds while the returned guard lives, the turn to call the token
    /// endpoint for `name` and `user` among every process that shares this source's store, so
    /// nodes of a cluster refresh one at a time and the later ones find the earlier one's
    /// tokens stored (one token call however many nodes wait). `None`: this process is the
    /// only one (the token cache already takes turns within it).
    fn refresh_turn(
        &self,
        name: &str,
        user: Option<&str>,
    ) -> Result<Option<RefreshTurn>, CredentialError> {
        let _ = (name, user);
        Ok(None)
    }

    /// Marks revision `replaces` of the connection as needing the person's consent again (its
    /// refresh token was refused), so the status shows it and no process keeps asking.
    fn mark_needs_reauth(
        &self,
        name: &str,
        user: Option<&str>,
        replaces: u64,
    ) -> Result<(), CredentialError> {
        let _ = (name, user, replaces);
        Ok(())
    }
}

/// Values given to one local run (`--secret`, `--secrets-file`), already validated.
#[derive(Debug, Default, Clone)]
pub struct StaticSecrets(BTreeMap<String, Secret>);

impl StaticSecrets {
    pub fn new(values: BTreeMap<String, Secret>) -> Self {
        Self(values)
    }
}

impl SecretSource for StaticSecrets {
    fn get(&self, name: &str, _kind: CredentialType) -> Result<Option<Secret>, CredentialError> {
        Ok(self.0.get(name).cloned())
    }

    /// A local run's values live as long as the process: the token cache keeps the rotated
    /// refresh token, and there is nowhere to write it back to.
    fn replace(&self, _name: &str, _value: &Secret) -> Result<(), CredentialError> {
        Ok(())
    }
}

/// The credential broker of one installation.
pub struct Credentials {
    scope: CredentialScope,
    source: Arc<dyn SecretSource>,
    tokens: Arc<OAuthTokens>,
}

impl Credentials {
    pub fn new(
        scope: CredentialScope,
        source: Arc<dyn SecretSource>,
        tokens: Arc<OAuthTokens>,
    ) -> Self {
        Self {
            scope,
            source,
            tokens,
        }
    }

    fn stored(&self, name: &str, kind: CredentialType) -> Result<Secret, CredentialError> {
        self.source
            .get(name, kind)?
            .ok_or_else(|| CredentialError::Missing(name.to_string()))
    }
}

impl CredentialBroker for Credentials {
    fn current<'a>(
        &'a self,
        name: &'a str,
        spec: &'a CredentialSpec,
        origin: &'a str,
    ) -> BoxFuture<'a, Result<Secret, CredentialError>> {
        Box::pin(async move {
            // Before the token cache: a cached token is bound like the value it came from.
            if let Some(bound) = self.source.origins(name)?
                && !bound.iter().any(|o| o == origin)
            {
                return Err(CredentialError::Unbound {
                    name: name.to_string(),
                    origin: origin.to_string(),
                });
            }
            match spec {
                CredentialSpec::OAuth2(oauth) => {
                    // A per-user credential is the invoking user's, and there is none without
                    // one; any other is the installation's, whoever invokes.
                    let scope = if oauth.per_user {
                        if self.scope.user.is_none() {
                            return Err(CredentialError::NoUser(name.to_string()));
                        }
                        self.scope.clone()
                    } else {
                        CredentialScope {
                            user: None,
                            ..self.scope.clone()
                        }
                    };
                    self.tokens
                        .access_token(&scope, name, oauth, self.source.as_ref())
                        .await
                }
                _ => self.stored(name, spec.credential_type()),
            }
        })
    }
}
