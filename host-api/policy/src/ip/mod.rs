//! Decides whether an address a hostname resolved to may be dialed: only public unicast may.
//!
//! This is the second of egress's two independent SSRF layers (security catalogue §2.2,
//! smokescreen rule 1). The hostname allow-list decides which *names* a guest may reach. This
//! module checks every *address* those names resolved to, because an allowed name can resolve to
//! `127.0.0.1`, `10.0.0.5` or `169.254.169.254` (EG-04), and an IP literal can be spelled in ways
//! a URL check misses (EG-02). Classifying the resolver's answer catches all of them. The caller
//! resolves once, passes the answer to [`IpClassifier::filter`], and dials only what it returns
//! (EG-05, EG-06). The module does no I/O, so every rule is unit-tested without a resolver.
//!
//! # What is denied
//! The IANA special-purpose registries for IPv4 and IPv6, plus smokescreen's and Spin's extras.
//! [`classify`] gives the reason.
//! - IPv4: `0.0.0.0` and the rest of `0.0.0.0/8`, `10/8`, `172.16/12`, `192.168/16`, `100.64/10`,
//!   `127/8`, `169.254/16`, `192.0.0/24`, the three documentation /24s, `198.18/15`,
//!   `192.88.99/24`, `224/4`, `240/4` and `255.255.255.255`.
//! - IPv6: `::`, `::1`, `fe80::/10`, `fc00::/7`, `ff00::/8`, `100::/64`, `2001::/23`,
//!   `2001:db8::/32`, `3fff::/20`, `5f00::/16`, and everything outside global unicast `2000::/3`.
//! - Known cloud metadata and credential endpoints, reported as [`IpDenyReason::Metadata`] (see
//!   `METADATA_V4` and `METADATA_V6` below).
//!
//! # IPv4 inside IPv6
//! - **IPv4-mapped** `::ffff:a.b.c.d` is treated as `a.b.c.d` in every respect: its reason, the
//!   allow-range exemption, and the self-address check. A mapped address opens an IPv4 connection,
//!   so this treats it exactly like the address the kernel dials.
//! - **Transition embeddings** are denied outright, whatever they carry: IPv4-compatible `::/96`,
//!   NAT64 `64:ff9b::/96`, local-use NAT64 `64:ff9b:1::/48`, 6to4 `2002::/16` and Teredo
//!   `2001::/32`. They give a second spelling of an IPv4 destination that some gateway turns back
//!   into IPv4. Airlock never needs them, and no allow-range or "is the inner address public?"
//!   check can be wrong about an address that is never dialed. The reason,
//!   [`IpDenyReason::Ipv4Embedded`], still names the embedded IPv4 address for the audit record.
//!   The IPv4-compatible rule starts only after `::` and `::1`, because `::1` is loopback, not
//!   `0.0.0.1` (catalogue §3.1). Not decoded: 6rd and ISATAP. They carry IPv4 only across tunnel
//!   interfaces this host doesn't configure, and they fall in global unicast. Outright NAT64
//!   denial has one cost: on an IPv6-only host behind DNS64, IPv4-only upstreams become
//!   unreachable. Supporting that deployment means allowing NAT64 when the inner address is
//!   public, and that change belongs here, with a test.
//!
//! # Exemptions
//! [`AllowRanges`] (`--allow-private`) exempts addresses inside its ranges from the
//! private-network denials only ([`IpDenyReason::is_exemptible`]): a loopback mock is reachable in
//! tests, but metadata endpoints, unspecified, multicast, broadcast, reserved space, transition
//! embeddings and the runtime's own listeners stay denied. Documentation ranges are exemptible
//! because test fixtures use them as "public" upstreams (EG-05 and EG-06 use `203.0.113.10`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;
use thiserror::Error;

use IpDenyReason as R;
use Ipv4Embedding as E;
use V6Rule::{Deny, Embeds};

mod allow;
mod classifier;
#[cfg(test)]
mod tests;

pub use allow::{AllowRangeError, AllowRanges};
pub use classifier::IpClassifier;

/// Why an address may not be dialed. [`code`](Self::code) is the stable kebab-case name that
/// audit records store. It is also the `code` tag when the reason is serialized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error, Serialize)]
#[serde(tag = "code", rename_all = "kebab-case")]
pub enum IpDenyReason {
    /// `0.0.0.0` or `::`. Linux treats a connect to either as a connect to this host.
    #[error("unspecified address (0.0.0.0 or ::), which connects to this host")]
    Unspecified,
    /// The rest of `0.0.0.0/8` ("this network").
    #[error("\"this network\" address (0.0.0.0/8)")]
    ThisNetwork,
    /// `127.0.0.0/8` or `::1`: the host's own services.
    #[error("loopback address (127.0.0.0/8 or ::1)")]
    Loopback,
    /// RFC 1918 space: the operator's internal network.
    #[error("private-use address (10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16)")]
    Private,
    /// `100.64.0.0/10`: carrier-grade NAT and cloud-internal services (smokescreen PR #265).
    #[error("shared address space (100.64.0.0/10, carrier-grade NAT)")]
    SharedCgnat,
    /// `169.254.0.0/16` or `fe80::/10`.
    #[error("link-local address (169.254.0.0/16 or fe80::/10)")]
    LinkLocal,
    /// A cloud metadata or credential endpoint. The prize in most SSRF attacks, so it is never
    /// exempted, even when an allow range covers it.
    #[error("cloud metadata or credential endpoint")]
    Metadata,
    /// `fc00::/7`: the IPv6 counterpart of RFC 1918.
    #[error("unique local IPv6 address (fc00::/7)")]
    UniqueLocal,
    /// `224.0.0.0/4` or `ff00::/8`. Not a single destination.
    #[error("multicast address (224.0.0.0/4 or ff00::/8)")]
    Multicast,
    /// `255.255.255.255`.
    #[error("limited broadcast address (255.255.255.255)")]
    Broadcast,
    /// Documentation prefixes. Real destinations never use them, but test fixtures do.
    #[error(
        "documentation address (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32 or 3fff::/20)"
    )]
    Documentation,
    /// `198.18.0.0/15` or `2001:2::/48`, for benchmarking.
    #[error("benchmarking address (198.18.0.0/15 or 2001:2::/48)")]
    Benchmarking,
    /// IETF protocol assignments `192.0.0.0/24` and `2001::/23`: anycast services and tunnel
    /// endpoints an integration never needs.
    #[error("IETF protocol assignment (192.0.0.0/24 or 2001::/23)")]
    ProtocolAssignment,
    /// `100::/64`: traffic to it is discarded by design.
    #[error("discard-only address (100::/64)")]
    Discard,
    /// Reserved or deprecated space: `240.0.0.0/4`, the retired 6to4 relay anycast
    /// `192.88.99.0/24`, SRv6 SIDs `5f00::/16`, and every IPv6 address outside `2000::/3`.
    #[error("reserved or non-global address")]
    Reserved,
    /// An IPv6 transition address carrying an IPv4 address. Always denied (see the module
    /// docs). `inner` is the carried IPv4 address. For Teredo, which carries two, it is the
    /// client, unless only the server is special-purpose.
    #[error("IPv6 {embedding} address embedding IPv4 {inner} ({})", describe_inner(.inner))]
    Ipv4Embedded {
        /// How the IPv4 address is embedded.
        embedding: Ipv4Embedding,
        /// The embedded IPv4 address.
        inner: Ipv4Addr,
    },
    /// One of the runtime's own listeners. A guest must not reach the admin, API or metrics port
    /// through egress (EG-19, smokescreen `ipDenySelfConnection`).
    #[error("one of this runtime's own listening addresses")]
    SelfAddress,
    /// [`IpClassifier::filter`] was given an empty answer, so there is nothing to dial. Keeps
    /// `Ok` meaning "at least one address".
    #[error("the resolver answer contained no addresses")]
    NoAddresses,
}

impl IpDenyReason {
    /// The stable kebab-case code for audit records and metrics.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::ThisNetwork => "this-network",
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::SharedCgnat => "shared-cgnat",
            Self::LinkLocal => "link-local",
            Self::Metadata => "metadata",
            Self::UniqueLocal => "unique-local",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::Documentation => "documentation",
            Self::Benchmarking => "benchmarking",
            Self::ProtocolAssignment => "protocol-assignment",
            Self::Discard => "discard",
            Self::Reserved => "reserved",
            Self::Ipv4Embedded { .. } => "ipv4-embedded",
            Self::SelfAddress => "self-address",
            Self::NoAddresses => "no-addresses",
        }
    }

    /// Whether [`AllowRanges`] may lift this denial. True only for the private-network
    /// categories a developer legitimately points a test at (a loopback mock, a LAN service).
    /// Never for metadata, unspecified, multicast, broadcast, reserved space, transition
    /// embeddings or the runtime's own listeners.
    pub const fn is_exemptible(&self) -> bool {
        matches!(
            self,
            Self::Loopback
                | Self::Private
                | Self::SharedCgnat
                | Self::LinkLocal
                | Self::UniqueLocal
                | Self::Documentation
                | Self::Benchmarking
        )
    }

    /// For [`Ipv4Embedded`](Self::Ipv4Embedded), the reason the embedded IPv4 address would get
    /// on its own (`None` if it is public). Lets an audit record tell "NAT64 to the metadata
    /// endpoint" apart from "NAT64 to a public host".
    pub fn inner_reason(&self) -> Option<IpDenyReason> {
        match self {
            Self::Ipv4Embedded { inner, .. } => classify_v4(*inner).err(),
            _ => None,
        }
    }
}

fn describe_inner(inner: &Ipv4Addr) -> String {
    match classify_v4(*inner) {
        Ok(()) => "public, but transition addresses are never dialed".to_owned(),
        Err(reason) => reason.to_string(),
    }
}

/// How an IPv6 transition address carries an IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ipv4Embedding {
    /// `::a.b.c.d` (`::/96`, deprecated by RFC 4291).
    Ipv4Compatible,
    /// The well-known NAT64 prefix `64:ff9b::/96` (RFC 6052), IPv4 address in the low 32 bits.
    Nat64,
    /// The local-use NAT64 prefix `64:ff9b:1::/48` (RFC 8215). The operator picks where the IPv4
    /// address sits. `inner` reports the low 32 bits (the /96 layout), but the whole /48 is
    /// denied either way.
    Nat64LocalUse,
    /// 6to4 `2002::/16` (RFC 3056), IPv4 address in bits 16..48.
    #[serde(rename = "6to4")]
    SixToFour,
    /// Teredo `2001::/32` (RFC 4380): server IPv4 in bits 32..64, client IPv4 inverted in the
    /// low 32 bits.
    Teredo,
}

impl Ipv4Embedding {
    /// The stable kebab-case code, matching the serialized form.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::Ipv4Compatible => "ipv4-compatible",
            Self::Nat64 => "nat64",
            Self::Nat64LocalUse => "nat64-local-use",
            Self::SixToFour => "6to4",
            Self::Teredo => "teredo",
        }
    }

    /// The IPv4 address `ip` carries. For Teredo, the client, unless only the server is
    /// special-purpose: the audit record should name the dangerous one.
    fn decode(self, ip: Ipv6Addr) -> Ipv4Addr {
        let bits = u128::from(ip);
        // The `as u32` casts keep the low 32 bits on purpose: that is where the address sits.
        match self {
            Self::Ipv4Compatible | Self::Nat64 | Self::Nat64LocalUse => Ipv4Addr::from(bits as u32),
            Self::SixToFour => Ipv4Addr::from((bits >> 80) as u32),
            Self::Teredo => {
                let server = Ipv4Addr::from((bits >> 64) as u32);
                let client = Ipv4Addr::from(!(bits as u32));
                if classify_v4(client).is_ok() && classify_v4(server).is_err() {
                    server
                } else {
                    client
                }
            }
        }
    }
}

impl fmt::Display for Ipv4Embedding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ipv4Compatible => "IPv4-compatible",
            Self::Nat64 => "NAT64",
            Self::Nat64LocalUse => "local-use NAT64",
            Self::SixToFour => "6to4",
            Self::Teredo => "Teredo",
        })
    }
}

/// Cloud metadata and credential endpoints. They are checked before the range tables, so they get
/// [`IpDenyReason::Metadata`] and are never exempted. Most already sit in a denied range; the
/// distinct reason keeps `--allow-private 169.254.0.0/16` from exposing instance credentials.
const METADATA_V4: [Ipv4Addr; 6] = [
    Ipv4Addr::new(169, 254, 169, 254), // AWS, GCP, Azure, OCI, OpenStack, DigitalOcean IMDS
    Ipv4Addr::new(169, 254, 170, 2),   // AWS ECS task metadata and role credentials
    Ipv4Addr::new(169, 254, 170, 23),  // AWS EKS Pod Identity agent
    Ipv4Addr::new(100, 100, 100, 200), // Alibaba Cloud (inside CGNAT; metadata is more specific)
    Ipv4Addr::new(192, 0, 0, 192),     // Oracle Cloud Classic (inside 192.0.0.0/24)
    Ipv4Addr::new(168, 63, 129, 16),   // Azure WireServer: a public address only VMs can reach
];
const METADATA_V6: [Ipv6Addr; 3] = [
    Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254), // AWS IMDS over IPv6
    Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23),  // AWS EKS Pod Identity agent
    Ipv6Addr::new(0xfd20, 0xce, 0, 0, 0, 0, 0, 0x254),  // GCP metadata server over IPv6
];

/// IPv4 special-purpose ranges as (network, prefix length, reason). The first match wins, so
/// `0.0.0.0/32` and `255.255.255.255/32` come before the wider ranges that contain them.
const V4_RANGES: [(Ipv4Addr, u8, IpDenyReason); 17] = [
    (Ipv4Addr::new(0, 0, 0, 0), 32, R::Unspecified),
    (Ipv4Addr::new(0, 0, 0, 0), 8, R::ThisNetwork), // RFC 791
    (Ipv4Addr::new(10, 0, 0, 0), 8, R::Private),    // RFC 1918
    (Ipv4Addr::new(100, 64, 0, 0), 10, R::SharedCgnat), // RFC 6598
    (Ipv4Addr::new(127, 0, 0, 0), 8, R::Loopback),  // RFC 1122
    (Ipv4Addr::new(169, 254, 0, 0), 16, R::LinkLocal), // RFC 3927
    (Ipv4Addr::new(172, 16, 0, 0), 12, R::Private), // RFC 1918
    (Ipv4Addr::new(192, 0, 0, 0), 24, R::ProtocolAssignment), // RFC 6890
    (Ipv4Addr::new(192, 0, 2, 0), 24, R::Documentation), // RFC 5737 TEST-NET-1
    (Ipv4Addr::new(192, 88, 99, 0), 24, R::Reserved), // RFC 7526: retired 6to4 relay anycast
    (Ipv4Addr::new(192, 168, 0, 0), 16, R::Private), // RFC 1918
    (Ipv4Addr::new(198, 18, 0, 0), 15, R::Benchmarking), // RFC 2544
    (Ipv4Addr::new(198, 51, 100, 0), 24, R::Documentation), // RFC 5737 TEST-NET-2
    (Ipv4Addr::new(203, 0, 113, 0), 24, R::Documentation), // RFC 5737 TEST-NET-3
    (Ipv4Addr::new(224, 0, 0, 0), 4, R::Multicast), // RFC 5771
    (Ipv4Addr::new(255, 255, 255, 255), 32, R::Broadcast), // RFC 919
    (Ipv4Addr::new(240, 0, 0, 0), 4, R::Reserved),  // RFC 1112
];

/// What an IPv6 range means: a plain denial, or a transition prefix whose embedded IPv4 address
/// is decoded for the audit record.
#[derive(Clone, Copy)]
enum V6Rule {
    Deny(IpDenyReason),
    Embeds(Ipv4Embedding),
}

/// IPv6 special-purpose ranges. The first match wins. `::` and `::1` come before
/// IPv4-compatible `::/96`, and Teredo `2001::/32` and `2001:2::/48` before `2001::/23`.
/// Anything that matches nothing here and lies outside `2000::/3` is [`IpDenyReason::Reserved`].
const V6_RANGES: [(Ipv6Addr, u8, V6Rule); 16] = [
    (Ipv6Addr::UNSPECIFIED, 128, Deny(R::Unspecified)),
    (Ipv6Addr::LOCALHOST, 128, Deny(R::Loopback)),
    (Ipv6Addr::UNSPECIFIED, 96, Embeds(E::Ipv4Compatible)), // RFC 4291 (deprecated)
    (v6(0x64, 0xff9b, 0), 96, Embeds(E::Nat64)),            // RFC 6052
    (v6(0x64, 0xff9b, 1), 48, Embeds(E::Nat64LocalUse)),    // RFC 8215
    (v6(0x100, 0, 0), 64, Deny(R::Discard)),                // RFC 6666
    (v6(0x2001, 0, 0), 32, Embeds(E::Teredo)),              // RFC 4380
    (v6(0x2001, 2, 0), 48, Deny(R::Benchmarking)),          // RFC 5180
    (v6(0x2001, 0, 0), 23, Deny(R::ProtocolAssignment)),    // RFC 2928
    (v6(0x2001, 0xdb8, 0), 32, Deny(R::Documentation)),     // RFC 3849
    (v6(0x2002, 0, 0), 16, Embeds(E::SixToFour)),           // RFC 3056
    (v6(0x3fff, 0, 0), 20, Deny(R::Documentation)),         // RFC 9637
    (v6(0x5f00, 0, 0), 16, Deny(R::Reserved)),              // RFC 9602: SRv6 SIDs
    (v6(0xfc00, 0, 0), 7, Deny(R::UniqueLocal)),            // RFC 4193
    (v6(0xfe80, 0, 0), 10, Deny(R::LinkLocal)),             // RFC 4291
    (v6(0xff00, 0, 0), 8, Deny(R::Multicast)),              // RFC 4291
];

/// Global unicast `2000::/3`. Everything outside it that no table entry names is reserved.
const GLOBAL_UNICAST: (Ipv6Addr, u8) = (v6(0x2000, 0, 0), 3);

const fn v6(a: u16, b: u16, c: u16) -> Ipv6Addr {
    Ipv6Addr::new(a, b, c, 0, 0, 0, 0, 0)
}

fn v4_contains(net: Ipv4Addr, len: u8, ip: Ipv4Addr) -> bool {
    len == 0 || (u32::from(net) ^ u32::from(ip)) >> (32 - u32::from(len)) == 0
}

fn v6_contains(net: Ipv6Addr, len: u8, ip: Ipv6Addr) -> bool {
    len == 0 || (u128::from(net) ^ u128::from(ip)) >> (128 - u32::from(len)) == 0
}

/// The default policy: `Ok` if `ip` is public unicast, else the reason it is not. It sees no
/// allow ranges and no self addresses, so egress must use [`IpClassifier::check`]. This is the
/// table the tests pin down.
pub fn classify(ip: IpAddr) -> Result<(), IpDenyReason> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Result<(), IpDenyReason> {
    if METADATA_V4.contains(&ip) {
        return Err(R::Metadata);
    }
    match V4_RANGES
        .iter()
        .find(|(net, len, _)| v4_contains(*net, *len, ip))
    {
        Some((_, _, reason)) => Err(*reason),
        None => Ok(()),
    }
}

fn classify_v6(ip: Ipv6Addr) -> Result<(), IpDenyReason> {
    // A mapped address opens an IPv4 connection, so it is judged as that IPv4 address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    if METADATA_V6.contains(&ip) {
        return Err(R::Metadata);
    }
    match V6_RANGES
        .iter()
        .find(|(net, len, _)| v6_contains(*net, *len, ip))
    {
        Some((_, _, Deny(reason))) => Err(*reason),
        Some((_, _, Embeds(embedding))) => Err(R::Ipv4Embedded {
            embedding: *embedding,
            inner: embedding.decode(ip),
        }),
        None if !v6_contains(GLOBAL_UNICAST.0, GLOBAL_UNICAST.1, ip) => Err(R::Reserved),
        None => Ok(()),
    }
}

/// True for addresses that reach this host whatever its interface addresses are: loopback and
/// unspecified (Linux turns a connect to `0.0.0.0` or `::` into a loopback connect).
fn is_host_local(ip: IpAddr) -> bool {
    ip.is_loopback() || ip.is_unspecified()
}
