//! [`TestCa`]: a throwaway certificate authority and the server certificates it issues.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

use crate::error::LoopbackError;

/// A throwaway certificate authority; its PEM is what `--extra-root-ca` gets.
///
/// A fresh CA per test means no test can pass because another test's CA happened to be trusted.
/// Keys are ECDSA P-256 (rcgen's default, via `ring`); certificates use rcgen's default validity
/// (1975 to 4096), so a test never fails on the clock.
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    cert_pem: String,
}

impl TestCa {
    pub fn new() -> Result<Self, LoopbackError> {
        // A distinct name per CA: a verifier looks issuers up by name, so two CAs sharing one
        // would turn "unknown issuer" into a confusing "bad signature".
        static SERIAL: AtomicUsize = AtomicUsize::new(0);
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("Airlock loopback CA {} #{serial}", std::process::id()),
        );
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate()?)?;
        let cert_pem = issuer.pem();
        Ok(Self { issuer, cert_pem })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate in DER, for building a client root store directly.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// Writes the CA certificate to `dir/ca.pem` and returns the path.
    pub fn write_pem(&self, dir: &Path) -> std::io::Result<PathBuf> {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.cert_pem)?;
        Ok(path)
    }

    /// A TLS acceptor with a certificate from this CA for `names` (DNS names, or IP addresses,
    /// which become IP subject-alternative names), offering HTTP/1.1 only by ALPN.
    pub fn acceptor(&self, names: &[&str]) -> Result<TlsAcceptor, LoopbackError> {
        let (chain, key) = self.issue(names)?;
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// A server certificate for `names`: the chain (leaf only) and its key.
    fn issue(
        &self,
        names: &[&str],
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), LoopbackError> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(names.clone())?;
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, first.as_str());
        }
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = rcgen::KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((vec![cert.der().clone()], key))
    }
}
