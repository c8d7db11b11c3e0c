//! Operator-level egress configuration, built once per runtime: limits, the address
//! classifier, `--resolve` pins and the TLS client configuration.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;

use super::body::LimitedRequestBody;
use super::ip::{AllowRanges, IpClassifier};
use super::pool::ConnectionPool;
use super::resolve::{ResolveOverride, Resolver};
use super::tenants::TenantSlots;

/// Per-invocation egress limits (security catalogue §4, "Egress" rows).
#[derive(Debug, Clone, Copy)]
pub struct EgressLimits {
    /// Requests one invocation may make.
    pub requests: u32,
    /// Requests of one invocation in flight at once (more fail `concurrency-limit`).
    pub concurrent: usize,
    /// Requests of one tenant in flight at once, across its invocations (more wait).
    pub tenant_concurrent: usize,
    /// Largest request body a guest may send.
    pub request_body: u64,
    /// Largest response body a guest may receive.
    pub response_body: u64,
    /// Largest response head (status line and headers; also trailers).
    pub response_head: usize,
    pub dns_timeout: Duration,
    pub connect_timeout: Duration,
    /// From sending the request to the response head.
    pub first_byte_timeout: Duration,
    /// Longest silence while reading the response body.
    pub between_bytes_timeout: Duration,
}

impl Default for EgressLimits {
    fn default() -> Self {
        Self {
            requests: 64,
            concurrent: 8,
            tenant_concurrent: 64,
            request_body: 10 << 20,
            response_body: 10 << 20,
            response_head: 64 << 10,
            dns_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(30),
            between_bytes_timeout: Duration::from_secs(30),
        }
    }
}

/// What every brokered request of a runtime shares.
pub struct EgressSettings {
    pub limits: EgressLimits,
    /// Recording only (`airlock test --record`): every exchange in full, credential scrubbed.
    pub(crate) tap: Option<super::tap::Tap>,
    /// Whether a denied request keeps its URL and a hint for the report (an author's own run).
    pub(crate) explain_denials: bool,
    pub(crate) classifier: IpClassifier,
    pub(crate) resolve: Vec<ResolveOverride>,
    pub(crate) resolver: Resolver,
    pub(crate) tls: Arc<rustls::ClientConfig>,
    pub(crate) tenants: TenantSlots,
    /// Keep-alive connections, reused within a tenant's installation only.
    pub(crate) pool: ConnectionPool<LimitedRequestBody>,
}

/// The TLS client configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot configure TLS for egress: {0}")]
pub struct EgressSetupError(String);

impl EgressSettings {
    /// Secure defaults plus the operator's development switches: `resolve` pins names to
    /// addresses, `allow` exempts private ranges, `extra_roots` adds trusted CAs (for mocks).
    pub fn new(
        resolve: Vec<ResolveOverride>,
        allow: AllowRanges,
        extra_roots: Vec<CertificateDer<'static>>,
    ) -> Result<Self, EgressSetupError> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for root in extra_roots {
            roots
                .add(root)
                .map_err(|e| EgressSetupError(format!("extra root CA rejected: {e}")))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| EgressSetupError(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            limits: EgressLimits::default(),
            tap: None,
            explain_denials: false,
            classifier: IpClassifier::new(allow),
            resolve,
            resolver: Resolver::system(),
            tls: Arc::new(tls),
            tenants: TenantSlots::default(),
            pool: ConnectionPool::new(),
        })
    }
}

impl EgressSettings {
    /// Hands every exchange, bodies included, to `tap`: for `airlock test --record` only,
    /// never a server or an ordinary run.
    pub fn with_tap(mut self, tap: Option<super::tap::Tap>) -> Self {
        self.tap = tap;
        self
    }

    /// A request the policy denies keeps its URL and the rules on its host in its `hint`: for
    /// `airlock run` and `airlock test`, where the data is the author's own, never a server.
    pub fn with_explained_denials(mut self, explain: bool) -> Self {
        self.explain_denials = explain;
        self
    }

    /// Never dials `addrs`, the host's own listeners as bound, whatever the allow ranges exempt
    /// (EG-19: see [`IpClassifier::with_self_addresses`]).
    pub fn with_self_addresses(mut self, addrs: Vec<std::net::SocketAddr>) -> Self {
        self.classifier = self.classifier.with_self_addresses(addrs);
        self
    }

    /// Asks `resolver` for names no `--resolve` pin covers. Its answers are classified like the
    /// system's, so it decides where a name points, never what may be reached.
    pub fn with_resolver(mut self, resolver: Resolver) -> Self {
        self.resolver = resolver;
        self
    }
}

impl Default for EgressSettings {
    fn default() -> Self {
        Self::new(Vec::new(), AllowRanges::none(), Vec::new())
            .expect("the bundled web PKI roots and ring's defaults always configure")
    }
}
