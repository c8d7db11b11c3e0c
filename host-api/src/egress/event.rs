//! Egress events: one metadata-only record per request attempt, for the invocation summary and
//! the audit trail. Never a body, a header value, a query string or a secret; the trail keeps
//! not even the path a guest built, only the rule it matched and a keyed hash (docs/audit.md).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Attempts recorded in detail per invocation; later ones are only counted (AL-08): a guest
/// looping on denied requests must not grow host memory or the audit trail without bound.
pub const MAX_DETAILED_EVENTS: usize = 128;

/// What became of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// Sent, and a response head came back.
    Allowed,
    /// Refused by policy before any connection was made.
    Denied,
    /// Allowed by policy, but resolution, connection, TLS or the exchange failed.
    Failed,
}

/// One egress attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressEvent {
    pub method: String,
    /// The canonical target without its query, for the caller's own summary; absent when the
    /// URL was refused unparsed. Its path is built from the caller's data, so the audit trail
    /// never stores it: it keeps [`Self::via`] and [`Self::target_hash`] instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The matched rule's canonical URL: its origin and path prefix, as the manifest declares
    /// them (`https://api.github.com/repos`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// Keyed hash of the target, set by the audit trail when it stores the event: equal targets
    /// under one trail have equal hashes, and none can be read back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_hash: Option<String>,
    /// Position of the matching rule in the manifest, from 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<usize>,
    /// The name (never the value) of the credential the rule injects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    pub decision: Decision,
    /// Stable reason code for a denial or failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Seconds a 429 or 503 asked the client to wait (`Retry-After`, capped at a day): a
    /// queued run that failed after it waits at least this long before its next attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u64>,
    pub duration_us: u64,
    /// The checked address the connection went to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,
    /// Request body bytes sent.
    #[serde(default)]
    pub bytes_out: u64,
    /// Response body bytes received, as they came off the wire.
    #[serde(default)]
    pub bytes_in: u64,
    /// Echoes of the injected credential scrubbed from this exchange's response.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub redactions: u64,
    /// An author's own run only ([`super::settings::EgressSettings::with_explained_denials`]):
    /// a request the policy denied, and why. It holds the request's URL, so it is never
    /// serialized and the audit trail clears it.
    #[serde(skip)]
    pub hint: Option<DenialHint>,
}

/// A denied request as its author's report shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenialHint {
    /// The URL as the guest sent it, without its query (as every report shows a target).
    pub url: String,
    /// The rules on its host and what the request was ([`airlock_policy::egress::EgressPolicy::explain_denial`]).
    pub rules: Option<String>,
}

/// The longest `Retry-After` taken at its word.
const MAX_RETRY_AFTER_S: u64 = 24 * 3600;

/// The wait a 429 or 503 response asks for: `Retry-After` as delta-seconds or an HTTP date
/// (from `now`), at most a day. Other statuses, and values that parse as neither, ask none.
pub fn retry_after(status: u16, value: Option<&[u8]>, now: std::time::SystemTime) -> Option<u64> {
    if !matches!(status, 429 | 503) {
        return None;
    }
    let value = std::str::from_utf8(value?).ok()?.trim();
    let seconds = match value.parse::<u64>() {
        Ok(seconds) => seconds,
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .map_or(0, |wait| wait.as_secs()),
    };
    Some(seconds.min(MAX_RETRY_AFTER_S))
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Attempts past [`MAX_DETAILED_EVENTS`] with the same decision and reason, counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppressed {
    pub decision: Decision,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub count: u64,
}

/// What one exchange moved, filled in while its bodies stream; read when the log is taken.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    pub(crate) sent: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) redacted: AtomicU64,
    pub(crate) peer: OnceLock<IpAddr>,
    /// The exchange in full, when a recording tap is set.
    pub(crate) capture: Option<Arc<super::tap::Capture>>,
    /// The response body reached its end, or was dropped by the guest: nothing is in flight.
    pub(crate) settled: AtomicBool,
    /// Wakes [`Traffic::settled`] waiters.
    pub(crate) settling: tokio::sync::Notify,
    /// Why the response body failed after its head came (a class such as
    /// `response-body-reset`); the exchange is then recorded as failed with it.
    pub(crate) body_failure: OnceLock<&'static str>,
}

impl Traffic {
    pub(crate) fn settle(&self) {
        self.settled.store(true, Ordering::Relaxed);
        self.settling.notify_waiters();
    }

    /// Returns once nothing of the exchange is in flight any more.
    pub(crate) async fn settled(&self) {
        let notified = self.settling.notified();
        tokio::pin!(notified);
        // Registered before the flag is read, so a settle in between still wakes it.
        notified.as_mut().enable();
        if self.settled.load(Ordering::Relaxed) {
            return;
        }
        notified.await;
    }

    /// The response body failed as `class`: nothing more is in flight.
    pub(crate) fn fail_body(&self, class: &'static str) {
        let _ = self.body_failure.set(class);
        self.settle();
    }

    pub(crate) fn add_sent(&self, n: usize) {
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn add_received(&self, n: usize) {
        self.received.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Where redactions are counted: the invocation's total and the exchange's own.
#[derive(Debug, Clone)]
pub(crate) struct RedactionTally {
    pub(crate) invocation: Arc<AtomicU64>,
    pub(crate) exchange: Arc<Traffic>,
}

impl RedactionTally {
    pub(crate) fn add(&self, n: u64) {
        self.invocation.fetch_add(n, Ordering::Relaxed);
        self.exchange.redacted.fetch_add(n, Ordering::Relaxed);
    }
}

/// The events of one invocation, shared with the futures that complete them.
#[derive(Debug, Clone, Default)]
pub struct EgressLog(Arc<Mutex<Entries>>);

#[derive(Debug, Default)]
struct Entries {
    detailed: Vec<(EgressEvent, Option<Arc<Traffic>>)>,
    suppressed: BTreeMap<(Decision, Option<String>), u64>,
    /// Requests sent and not yet answered or failed, by [`Pending`] slot.
    pending: Vec<Option<(EgressEvent, Instant)>>,
}

impl Entries {
    fn record(&mut self, event: EgressEvent, traffic: Option<Arc<Traffic>>) {
        if self.detailed.len() < MAX_DETAILED_EVENTS {
            self.detailed.push((event, traffic));
        } else {
            *self
                .suppressed
                .entry((event.decision, event.reason))
                .or_default() += 1;
        }
    }
}

/// The reason recorded for a request still in flight when its invocation ended: the host
/// aborted it (a response head never came, or its body was still being read).
pub const ABORTED: &str = "aborted";

/// A request in flight, registered so that an invocation ending first still records it.
#[derive(Debug)]
pub(crate) struct Pending(usize);

impl EgressLog {
    /// Registers a request about to be sent; [`Self::finish`] records how it ended.
    pub(crate) fn start(&self, event: EgressEvent, started: Instant) -> Pending {
        let mut entries = self.lock();
        entries.pending.push(Some((event, started)));
        Pending(entries.pending.len() - 1)
    }

    /// Records how a request registered with [`Self::start`] ended, unless the invocation's
    /// events were already taken (it ended first and recorded the request as aborted).
    pub(crate) fn finish(&self, pending: Pending, event: EgressEvent, traffic: Arc<Traffic>) {
        let mut entries = self.lock();
        if entries
            .pending
            .get_mut(pending.0)
            .and_then(Option::take)
            .is_some()
        {
            entries.record(event, Some(traffic));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn push(&self, event: EgressEvent, traffic: Option<Arc<Traffic>>) {
        self.lock().record(event, traffic);
    }

    /// Takes the events recorded so far, with their byte counts as of now, and the counts of
    /// the attempts past the detailed ones. Called when the invocation ends: a request still
    /// waiting for its response, or whose response body was still being read, is recorded as
    /// [`ABORTED`] (the broker aborts them: [`super::BrokeredHttp::end`]).
    pub fn take(&self) -> (Vec<EgressEvent>, Vec<Suppressed>) {
        let mut entries = std::mem::take(&mut *self.lock());
        for (mut event, started) in std::mem::take(&mut entries.pending).into_iter().flatten() {
            event.decision = Decision::Failed;
            event.reason = Some(ABORTED.to_string());
            event.duration_us = started.elapsed().as_micros() as u64;
            entries.record(event, None);
        }
        let events = entries
            .detailed
            .into_iter()
            .map(|(mut event, traffic)| {
                if let Some(traffic) = traffic {
                    event.bytes_out = traffic.sent.load(Ordering::Relaxed);
                    event.bytes_in = traffic.received.load(Ordering::Relaxed);
                    event.redactions = traffic.redacted.load(Ordering::Relaxed);
                    event.address = traffic.peer.get().copied();
                    let in_flight = event.decision == Decision::Allowed
                        && !traffic.settled.load(Ordering::Relaxed);
                    if in_flight {
                        event.reason = Some(ABORTED.to_string());
                    } else if let Some(class) = traffic.body_failure.get() {
                        event.decision = Decision::Failed;
                        event.reason = Some((*class).to_string());
                    }
                }
                event
            })
            .collect();
        let suppressed = entries
            .suppressed
            .into_iter()
            .map(|((decision, reason), count)| Suppressed {
                decision,
                reason,
                count,
            })
            .collect();
        (events, suppressed)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::{MAX_RETRY_AFTER_S, retry_after};

    #[test]
    fn retry_after_is_read_from_429_and_503_as_seconds_or_a_date_and_capped() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(retry_after(503, Some(b"120"), now), Some(120));
        assert_eq!(retry_after(429, Some(b" 7 "), now), Some(7));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(retry_after(503, Some(later.as_bytes()), now), Some(90));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(retry_after(503, Some(earlier.as_bytes()), now), Some(0));
        assert_eq!(
            retry_after(503, Some(b"99999999"), now),
            Some(MAX_RETRY_AFTER_S)
        );
        assert_eq!(retry_after(503, Some(b"soon"), now), None);
        assert_eq!(retry_after(503, None, now), None);
        assert_eq!(
            retry_after(500, Some(b"5"), now),
            None,
            "only 429 and 503 ask"
        );
    }
}
