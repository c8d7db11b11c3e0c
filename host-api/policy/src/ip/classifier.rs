//! [`IpClassifier`]: the default denials plus the operator's allow ranges and the runtime's own
//! listeners, applied to every resolved address before it is dialed.

use std::net::{IpAddr, SocketAddr};

use super::{AllowRanges, IpDenyReason, classify, is_host_local};

/// The egress address policy: the default denials of [`classify`], the operator's
/// [`AllowRanges`], and the runtime's own listeners.
#[derive(Debug, Clone, Default)]
pub struct IpClassifier {
    allow: AllowRanges,
    self_addrs: Vec<SocketAddr>,
}

impl IpClassifier {
    /// A classifier exempting `allow` (use [`AllowRanges::none`] in production), with no self
    /// addresses until [`with_self_addresses`](Self::with_self_addresses).
    pub fn new(allow: AllowRanges) -> Self {
        Self {
            allow,
            self_addrs: Vec::new(),
        }
    }

    /// Sets the runtime's own listening addresses, as actually bound (after port 0 is
    /// resolved). A target is self if its port matches and either the IP matches or both are
    /// host-local (loopback or unspecified, of either family). So a listener on `0.0.0.0:P`,
    /// `[::]:P` or `127.0.0.1:P` covers every loopback and unspecified address on port P. That
    /// is wider than the kernel needs, deliberately: a false "self" costs a test a port
    /// change, and a missed one exposes the admin API. A wildcard listener is also reachable on
    /// the host's interface addresses. The caller should list those explicitly, because this
    /// module does not enumerate interfaces.
    pub fn with_self_addresses(mut self, addrs: Vec<SocketAddr>) -> Self {
        self.self_addrs = addrs;
        self
    }

    /// The configured allow ranges.
    pub fn allow_ranges(&self) -> &AllowRanges {
        &self.allow
    }

    /// The configured self addresses.
    pub fn self_addresses(&self) -> &[SocketAddr] {
        &self.self_addrs
    }

    /// May `addr` be dialed? In order: the runtime's own listeners are denied, then the default
    /// policy applies, with exemptible reasons lifted for addresses inside an allow range. The
    /// port matters only for the self check. IPv4-mapped addresses are treated as their IPv4
    /// address throughout.
    pub fn check(&self, addr: SocketAddr) -> Result<(), IpDenyReason> {
        let ip = addr.ip().to_canonical();
        if self.is_self(ip, addr.port()) {
            return Err(IpDenyReason::SelfAddress);
        }
        match classify(ip) {
            Err(reason) if reason.is_exemptible() && self.allow.contains(ip) => Ok(()),
            verdict => verdict,
        }
    }

    /// Of a resolver's answer, the addresses that may be dialed, in their original order. If
    /// none may, `Err` carries the first denial (or [`IpDenyReason::NoAddresses`] for an empty
    /// answer). `Ok` is never empty. Dial only the returned addresses, so a mixed answer or a
    /// happy-eyeballs fallback never reaches a denied one (EG-06).
    pub fn filter(&self, addrs: &[SocketAddr]) -> Result<Vec<SocketAddr>, IpDenyReason> {
        let mut first_denial = None;
        let allowed: Vec<SocketAddr> = addrs
            .iter()
            .copied()
            .filter(|addr| match self.check(*addr) {
                Ok(()) => true,
                Err(reason) => {
                    first_denial.get_or_insert(reason);
                    false
                }
            })
            .collect();
        if allowed.is_empty() {
            Err(first_denial.unwrap_or(IpDenyReason::NoAddresses))
        } else {
            Ok(allowed)
        }
    }

    fn is_self(&self, ip: IpAddr, port: u16) -> bool {
        self.self_addrs.iter().any(|own| {
            let own_ip = own.ip().to_canonical();
            own.port() == port && (own_ip == ip || (is_host_local(own_ip) && is_host_local(ip)))
        })
    }
}
