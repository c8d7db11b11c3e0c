//! Limits on failed attempts: per client address, per claimed API key id, per webhook endpoint,
//! in fixed one-minute windows. What a limit refuses is a failure, never a valid key (see
//! [`auth`](super::auth)); beyond the limit, failures are answered `429` and counted rather
//! than recorded, so a flood of them cannot flood the audit trail.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::client::Client;

/// Failed attempts one client (or key id, or webhook endpoint) may make per window…
pub(crate) const MAX_FAILURES: u32 = 10;
/// …and the window.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Keys tracked at most; the oldest windows are dropped first.
const MAX_TRACKED: usize = 10_000;

/// Failures by key (a client's address, a key id, an endpoint), in fixed windows.
pub struct FailureLimiter<K = IpAddr> {
    keys: Mutex<HashMap<K, (Instant, u32)>>,
}

impl<K> Default for FailureLimiter<K> {
    fn default() -> Self {
        Self {
            keys: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone> FailureLimiter<K> {
    /// Seconds until `key` may try again, if it is over the limit.
    pub(crate) fn blocked<Q>(&self, key: &Q) -> Option<u64>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let (start, failures) = keys.get(key)?;
        let left = FAILURE_WINDOW.checked_sub(start.elapsed())?;
        (*failures >= MAX_FAILURES).then(|| left.as_secs().max(1))
    }

    /// Counts a failure; true if it is the one that crosses the limit.
    pub(crate) fn fail(&self, key: &K) -> bool {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if keys.len() >= MAX_TRACKED && !keys.contains_key(key) {
            keys.retain(|_, (start, _)| start.elapsed() < FAILURE_WINDOW);
            if keys.len() >= MAX_TRACKED
                && let Some(oldest) = keys
                    .iter()
                    .min_by_key(|(_, (s, _))| *s)
                    .map(|(k, _)| k.clone())
            {
                keys.remove(&oldest);
            }
        }
        let entry = keys.entry(key.clone()).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= FAILURE_WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
        entry.1 == MAX_FAILURES
    }
}

/// Failed API-key attempts, per client and per claimed key id, on limiters of their own so a
/// flood of made-up key ids cannot push clients out of the table (or the reverse).
#[derive(Default)]
pub struct KeyFailures {
    clients: FailureLimiter<IpAddr>,
    keys: FailureLimiter<String>,
}

impl KeyFailures {
    /// Seconds until failures of `client`, or on key id `claimed`, are answered again, if
    /// either is over its limit.
    pub(super) fn blocked(&self, client: Client, claimed: Option<&str>) -> Option<u64> {
        let by_client = self.clients.blocked(&client.bucket());
        let by_key = claimed.and_then(|id| self.keys.blocked(id));
        by_client.max(by_key)
    }

    /// Counts a failure against `client` and `claimed`; names what crossed its limit with it.
    pub(super) fn fail(&self, client: Client, claimed: Option<&str>) -> Option<&'static str> {
        let client_crossed = self.clients.fail(&client.bucket());
        let key_crossed = claimed.is_some_and(|id| self.keys.fail(&id.to_string()));
        match (client_crossed, key_crossed) {
            (true, true) => Some("client and key"),
            (true, false) => Some("client"),
            (false, true) => Some("key"),
            (false, false) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_limited_after_its_failures_until_the_window_ends() {
        let limiter: FailureLimiter = FailureLimiter::default();
        let peer: IpAddr = "192.0.2.1".parse().expect("ip");
        let other: IpAddr = "192.0.2.2".parse().expect("ip");
        for i in 1..MAX_FAILURES {
            assert!(!limiter.fail(&peer), "failure {i}");
            assert_eq!(limiter.blocked(&peer), None);
        }
        assert!(limiter.fail(&peer), "the limit is crossed once");
        assert!(limiter.blocked(&peer).is_some_and(|s| s <= 60));
        assert_eq!(limiter.blocked(&other), None);
        assert!(!limiter.fail(&peer), "crossing is reported once");
    }

    #[test]
    fn failures_count_against_the_client_and_the_claimed_key_apart() {
        let failures = KeyFailures::default();
        let client = |ip: &str| Client(ip.parse().expect("ip"));
        // Ten guesses at one key id from ten clients: the key id is limited, no client is.
        for i in 1..=MAX_FAILURES {
            let crossed = failures.fail(client(&format!("192.0.2.{i}")), Some("00ff00ff00ff00ff"));
            assert_eq!(crossed, (i == MAX_FAILURES).then_some("key"), "failure {i}");
        }
        assert!(
            failures
                .blocked(client("198.51.100.1"), Some("00ff00ff00ff00ff"))
                .is_some()
        );
        assert_eq!(failures.blocked(client("192.0.2.1"), None), None);
        assert_eq!(
            failures.blocked(client("192.0.2.1"), Some("11ee11ee11ee11ee")),
            None
        );
        // Malformed keys from one client: that client only, and the whole of its IPv6 /64.
        for i in 1..=MAX_FAILURES {
            let crossed = failures.fail(client(&format!("2001:db8::{i}")), None);
            assert_eq!(
                crossed,
                (i == MAX_FAILURES).then_some("client"),
                "failure {i}"
            );
        }
        assert!(failures.blocked(client("2001:db8::ffff"), None).is_some());
        assert!(
            failures
                .blocked(client("2001:db8::1"), Some("11ee11ee11ee11ee"))
                .is_some()
        );
        assert_eq!(failures.blocked(client("2001:db8:0:1::1"), None), None);
    }
}
