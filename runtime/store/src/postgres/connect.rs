//! The connection string: a `postgres://` URL as libpq reads it, with TLS by rustls.
//!
//! `sslmode` is honoured: `disable` never uses TLS, `prefer` (libpq's default) uses it when the
//! server offers it, `require`, `verify-ca` and `verify-full` refuse a connection without it.
//! Whenever TLS is used the server's certificate is verified, chain and host name, against
//! `sslrootcert` (a PEM file) or else the public web roots: rustls has no unverified mode, so
//! `require` here is as strict as `verify-full` (docs/deploy.md).

use std::fmt;
use std::future::Future as _;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::config::SslMode;

use crate::StoreError;

/// Why a connection string was refused. Never echoes a password.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("the store `{0}` is neither a directory nor a postgres:// URL")]
    Scheme(String),
    #[error("the PostgreSQL URL {shown} is malformed: {reason}")]
    Malformed { shown: String, reason: String },
    #[error(
        "sslmode `{0}` is not one of disable, prefer, require, verify-ca, verify-full (in the PostgreSQL URL)"
    )]
    SslMode(String),
    #[error("sslrootcert {path}: {reason}")]
    RootCert { path: PathBuf, reason: String },
}

/// A parsed `postgres://` (or `postgresql://`) URL.
#[derive(Clone)]
pub struct StoreUrl {
    config: tokio_postgres::Config,
    ssl_mode: SslMode,
    root_cert: Option<PathBuf>,
    /// The URL without its password.
    shown: String,
}

/// Listens on `channel` through `client` while polling `connection` for its messages, calling
/// `notified` for each notification, until the connection ends.
async fn drive<S, T>(
    client: tokio_postgres::Client,
    mut connection: tokio_postgres::Connection<S, T>,
    channel: &str,
    notified: &(dyn Fn() + Send + Sync),
) -> Result<(), StoreError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let listen = format!("LISTEN {channel}");
    let mut listening = std::pin::pin!(client.batch_execute(&listen));
    let mut listened = false;
    loop {
        // The connection only moves while polled: poll it and the LISTEN together.
        let message = std::future::poll_fn(|cx| {
            if !listened && let std::task::Poll::Ready(done) = listening.as_mut().poll(cx) {
                listened = true;
                if let Err(e) = done {
                    return std::task::Poll::Ready(Some(Err(e)));
                }
            }
            connection.poll_message(cx)
        })
        .await;
        match message {
            Some(Ok(tokio_postgres::AsyncMessage::Notification(_))) => notified(),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => return Ok(()),
        }
    }
}

impl StoreUrl {
    /// Whether `text` names a PostgreSQL database rather than a directory.
    pub fn is_postgres(text: &str) -> bool {
        text.starts_with("postgres://") || text.starts_with("postgresql://")
    }

    /// The connection pool of at most `size` connections (connected lazily, by the caller's
    /// runtime).
    pub(crate) fn pool(&self, size: usize) -> Result<Pool, StoreError> {
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = if self.ssl_mode == SslMode::Disable {
            Manager::from_config(self.config.clone(), tokio_postgres::NoTls, manager_config)
        } else {
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(self.tls_config()?);
            Manager::from_config(self.config.clone(), tls, manager_config)
        };
        Pool::builder(manager)
            .max_size(size)
            .build()
            .map_err(|e| StoreError::Db(Box::new(e)))
    }

    /// Opens one connection outside the pool, listens on `channel` and calls `notified` for
    /// each notification; returns when the connection ends (an error says why).
    pub(crate) async fn listen(
        &self,
        channel: &str,
        notified: &(dyn Fn() + Send + Sync),
    ) -> Result<(), StoreError> {
        if self.ssl_mode == SslMode::Disable {
            let (client, connection) = self.config.connect(tokio_postgres::NoTls).await?;
            drive(client, connection, channel, notified).await
        } else {
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(self.tls_config()?);
            let (client, connection) = self.config.connect(tls).await?;
            drive(client, connection, channel, notified).await
        }
    }

    fn tls_config(&self) -> Result<rustls::ClientConfig, StoreError> {
        let mut roots = rustls::RootCertStore::empty();
        match &self.root_cert {
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            Some(path) => {
                let refused = |reason: String| {
                    StoreError::Db(Box::new(UrlError::RootCert {
                        path: path.clone(),
                        reason,
                    }))
                };
                let pem = std::fs::read(path).map_err(|e| refused(e.to_string()))?;
                for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
                    let cert: rustls::pki_types::CertificateDer<'static> =
                        cert.map_err(|e| refused(e.to_string()))?;
                    roots.add(cert).map_err(|e| refused(e.to_string()))?;
                }
                if roots.is_empty() {
                    return Err(refused("holds no certificate".into()));
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::Db(Box::new(e)))?
            .with_root_certificates(roots)
            .with_no_client_auth())
    }
}

impl FromStr for StoreUrl {
    type Err = UrlError;

    fn from_str(text: &str) -> Result<Self, UrlError> {
        if !Self::is_postgres(text) {
            return Err(UrlError::Scheme(text.chars().take(40).collect()));
        }
        let mut url = url::Url::parse(text).map_err(|e| UrlError::Malformed {
            shown: "(unparsable, not shown)".into(),
            reason: e.to_string(),
        })?;
        let mut shown_url = url.clone();
        if shown_url.password().is_some() {
            let _ = shown_url.set_password(Some("***"));
        }
        let shown = shown_url.to_string();
        let malformed = |reason: String| UrlError::Malformed {
            shown: shown.clone(),
            reason,
        };
        // tokio-postgres knows neither the verify modes nor sslrootcert: take them out here.
        let mut ssl_mode = SslMode::Prefer;
        let mut root_cert = None;
        let mut kept = Vec::new();
        for (name, value) in url.query_pairs() {
            match &*name {
                "sslmode" => {
                    ssl_mode = match &*value {
                        "disable" => SslMode::Disable,
                        "prefer" => SslMode::Prefer,
                        "require" | "verify-ca" | "verify-full" => SslMode::Require,
                        other => return Err(UrlError::SslMode(other.to_string())),
                    }
                }
                "sslrootcert" => root_cert = Some(PathBuf::from(&*value)),
                _ => kept.push((name.into_owned(), value.into_owned())),
            }
        }
        url.set_query(None);
        if !kept.is_empty() {
            url.query_pairs_mut().extend_pairs(kept);
        }
        let mut config =
            tokio_postgres::Config::from_str(url.as_str()).map_err(|e| malformed(e.to_string()))?;
        config.ssl_mode(ssl_mode);
        if config.get_application_name().is_none() {
            config.application_name("airlock");
        }
        Ok(Self {
            config,
            ssl_mode,
            root_cert,
            shown,
        })
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({})", self.shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_is_honoured_and_the_password_never_shown() {
        let url: StoreUrl =
            "postgres://airlock:s3cret@db.internal:5433/airlock?sslmode=verify-full"
                .parse()
                .expect("url");
        assert_eq!(url.ssl_mode, SslMode::Require);
        assert!(!url.to_string().contains("s3cret"), "{url}");
        assert!(!format!("{url:?}").contains("s3cret"));
        let plain: StoreUrl = "postgresql://airlock@127.0.0.1/airlock?sslmode=disable"
            .parse()
            .expect("url");
        assert_eq!(plain.ssl_mode, SslMode::Disable);
        let default: StoreUrl = "postgres://127.0.0.1/airlock".parse().expect("url");
        assert_eq!(default.ssl_mode, SslMode::Prefer);
    }

    #[test]
    fn a_bad_url_is_refused_naming_what() {
        let err = "postgres://a:pw@h/db?sslmode=sometimes"
            .parse::<StoreUrl>()
            .expect_err("refused");
        assert!(err.to_string().contains("sometimes"), "{err}");
        let err = "postgres://a:topsecret@h/db?bogus=1"
            .parse::<StoreUrl>()
            .expect_err("refused");
        assert!(
            err.to_string().contains("bogus") && !err.to_string().contains("topsecret"),
            "{err}"
        );
        assert!(matches!(
            "/var/lib/airlock".parse::<StoreUrl>(),
            Err(UrlError::Scheme(_))
        ));
    }
}
