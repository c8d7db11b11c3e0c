//! The operator's `--allow-private` ranges: the one way to loosen the address policy, for tests
//! and development only.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The operator's development switch (`--allow-private 127.0.0.0/8`): ranges exempted from the
/// private-network denials ([`IpDenyReason::is_exemptible`]), so tests can reach a loopback mock
/// or a LAN service. Never exempts metadata, unspecified, multicast, broadcast, reserved space,
/// transition embeddings or the runtime's own listeners.
///
/// Parses one CIDR (`127.0.0.0/8`), a bare address (a host route), or a comma-separated list of
/// them. A list lets `Display` output parse back. Host bits must be zero: `10.0.0.1/8` is
/// rejected rather than silently widened, because this setting removes a security control.
/// IPv4-mapped ranges (`::ffff:127.0.0.0/104`) are stored as IPv4 (`127.0.0.0/8`), because mapped
/// addresses are checked as IPv4. In config files this is a list of strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct AllowRanges(Vec<IpNet>);

impl AllowRanges {
    /// No exemptions: the production default.
    pub fn none() -> Self {
        Self::default()
    }

    /// True when nothing is exempted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The ranges, normalized as described on the type.
    pub fn ranges(&self) -> &[IpNet] {
        &self.0
    }

    /// Whether `ip` (IPv4-mapped addresses as their IPv4 address) lies in an allowed range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    fn parse_one(entry: &str) -> Result<IpNet, AllowRangeError> {
        let entry = entry.trim();
        if entry.is_empty() {
            return Err(AllowRangeError::Empty);
        }
        let invalid = || AllowRangeError::Invalid {
            input: entry.to_owned(),
        };
        let net = if entry.contains('/') {
            entry.parse::<IpNet>().map_err(|_| invalid())?
        } else {
            IpNet::from(entry.parse::<IpAddr>().map_err(|_| invalid())?)
        };
        if net.addr() != net.network() {
            return Err(AllowRangeError::HostBitsSet {
                input: entry.to_owned(),
                network: net.trunc(),
            });
        }
        Ok(match net {
            IpNet::V6(v6net) if v6net.prefix_len() >= 96 => v6net
                .network()
                .to_ipv4_mapped()
                .and_then(|v4| Ipv4Net::new(v4, v6net.prefix_len() - 96).ok())
                .map_or(net, IpNet::V4),
            other => other,
        })
    }
}

impl FromStr for AllowRanges {
    type Err = AllowRangeError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        input
            .split(',')
            .map(Self::parse_one)
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }
}

impl fmt::Display for AllowRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, net) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

/// Merges repeated flags: `--allow-private 127.0.0.0/8 --allow-private ::1`.
impl FromIterator<AllowRanges> for AllowRanges {
    fn from_iter<I: IntoIterator<Item = AllowRanges>>(iter: I) -> Self {
        Self(iter.into_iter().flat_map(|ranges| ranges.0).collect())
    }
}

impl TryFrom<Vec<String>> for AllowRanges {
    type Error = AllowRangeError;

    fn try_from(entries: Vec<String>) -> Result<Self, Self::Error> {
        entries
            .iter()
            .map(|entry| Self::parse_one(entry))
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }
}

impl From<AllowRanges> for Vec<String> {
    fn from(ranges: AllowRanges) -> Self {
        ranges.0.iter().map(ToString::to_string).collect()
    }
}

/// Why an allow range was rejected. The input is quoted with `{:?}`, so control characters
/// cannot reach a terminal unescaped.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AllowRangeError {
    /// An empty entry (`""`, or `"a,,b"`).
    #[error("empty allow range; expected a CIDR such as 127.0.0.0/8")]
    Empty,
    /// Neither a CIDR nor an IP address (zone IDs such as `fe80::1%eth0` included).
    #[error("invalid allow range {input:?}; expected a CIDR such as 127.0.0.0/8 or an IP address")]
    Invalid {
        /// The offending entry.
        input: String,
    },
    /// Bits set below the prefix length, which usually means the author meant a narrower range.
    #[error("allow range {input:?} has host bits set; the network is {network}")]
    HostBitsSet {
        /// The offending entry.
        input: String,
        /// The network the entry would have covered.
        network: IpNet,
    },
}
