//! A stand-in third-party API on loopback TLS, for `airlock demo` and the benchmarks: a CA made
//! fresh for each process, a certificate for the names given, HTTP/1.1, and a handler that
//! answers each request. Never a production listener: it binds 127.0.0.1 only.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Answers one request: the request head and body in, the whole response out.
pub type Handler = Arc<dyn Fn(&Request<Bytes>) -> Response<Bytes> + Send + Sync>;

/// The listener; it stops when dropped.
pub struct LoopbackApi {
    addr: SocketAddr,
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    task: JoinHandle<()>,
}

/// The server could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoopbackError {
    #[error("cannot make a certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("cannot configure TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot listen on loopback: {0}")]
    Io(#[from] std::io::Error),
}

impl LoopbackApi {
    /// Serves `names` (DNS names) on 127.0.0.1 with a fresh CA, answering with `handler`.
    pub async fn start(names: &[&str], handler: Handler) -> Result<Self, LoopbackError> {
        let (ca_pem, ca_der, chain, key) = certificates(names)?;
        let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let handler = handler.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |request| {
                        let handler = handler.clone();
                        async move { Ok::<_, Infallible>(answer(&handler, request).await) }
                    });
                    // No `Date`: an answer is exactly what the handler made, so fixture
                    // runs see the same bytes every time.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .auto_date_header(false)
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Ok(Self {
            addr,
            ca_pem,
            ca_der,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CA certificate, for clients built in the same process.
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// Writes the CA certificate to `dir/loopback-ca.pem`, for `--extra-root-ca`.
    pub fn write_ca(&self, dir: &Path) -> std::io::Result<PathBuf> {
        let path = dir.join("loopback-ca.pem");
        std::fs::write(&path, &self.ca_pem)?;
        Ok(path)
    }
}

impl Drop for LoopbackApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads the whole request (bodies here are small) and asks the handler.
async fn answer(
    handler: &Handler,
    request: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    handler(&Request::from_parts(parts, body)).map(Full::new)
}

type Chain = (
    String,
    CertificateDer<'static>,
    Vec<CertificateDer<'static>>,
    PrivateKeyDer<'static>,
);

/// A fresh CA (PEM and DER) and a server certificate it signed for `names`, with its key.
fn certificates(names: &[&str]) -> Result<Chain, rcgen::Error> {
    let mut ca = rcgen::CertificateParams::default();
    ca.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("Airlock loopback CA (pid {})", std::process::id()),
    );
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let issuer = rcgen::CertifiedIssuer::self_signed(ca, rcgen::KeyPair::generate()?)?;
    let mut leaf =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
    leaf.is_ca = rcgen::IsCa::ExplicitNoCa;
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    let key = rcgen::KeyPair::generate()?;
    let cert = leaf.signed_by(&key, &issuer)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok((
        issuer.pem(),
        issuer.der().clone(),
        vec![cert.der().clone()],
        key,
    ))
}
