//! Which attempts of a queued run are tried again, and when (docs/api.md, "Runs").
//!
//! An attempt is worth repeating when its failure may pass: the host's own (a timeout, a
//! failure of the host or its trail, a busy tenant), the upstream's (the action failed after
//! its last request met a 5xx, a 429 or no connection), or one of the action's error codes its
//! manifest lists as `retryable`. The next attempt waits a random time up to an exponential
//! bound (full jitter), and at least what the upstream's `Retry-After` asked.

use std::time::Duration;

use airlock_host_api::egress::{Decision, EgressEvent};
use airlock_runtime::invoke::InvokeError;
use airlock_runtime::manifest::Action;

/// The first retry waits up to this long; each next one up to twice as long…
const BACKOFF_BASE_MS: u64 = 1_000;
/// …but never longer than this.
const BACKOFF_CAP_MS: u64 = 300_000;

/// How an attempt went, as the run's record keeps it: metadata only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Judged {
    /// `ok`, the failure's class (`limit-timeout`, `upstream-503`…), or, for a retryable error
    /// of the action's own, `guest-error:` and its declared code.
    pub outcome: String,
    pub retryable: bool,
    /// The least the next attempt waits: what the upstream's `Retry-After` asked.
    pub wait_at_least: Option<Duration>,
}

impl Judged {
    /// A failure before the action ran (the host was busy, the installation gone…).
    pub(crate) fn unstarted(class: &str) -> Self {
        Self {
            outcome: class.to_string(),
            retryable: host_retryable(class),
            wait_at_least: None,
        }
    }
}

/// Classes of the host's own failures that may not happen again.
fn host_retryable(class: &str) -> bool {
    matches!(
        class,
        "limit-timeout" | "host-failure" | "audit-unavailable" | "busy" | "internal"
    )
}

/// Judges an attempt of `action` that ended in `result` after the requests `egress`.
pub(crate) fn judge(
    result: Result<(), &InvokeError>,
    egress: &[EgressEvent],
    action: Option<&Action>,
) -> Judged {
    let Err(error) = result else {
        return Judged {
            outcome: "ok".into(),
            retryable: false,
            wait_at_least: None,
        };
    };
    if let InvokeError::Guest { code, .. } = error
        && let Some(code) = action.and_then(|a| a.retryable.iter().find(|c| c.as_str() == code))
    {
        return Judged {
            outcome: format!("guest-error:{code}"),
            retryable: true,
            wait_at_least: upstream_wait(egress),
        };
    }
    if let Some(upstream) = egress.last().and_then(upstream_failure) {
        return Judged {
            outcome: upstream,
            retryable: true,
            wait_at_least: upstream_wait(egress),
        };
    }
    Judged::unstarted(error.class())
}

/// The upstream's failure an action may have failed of: a 5xx or 429 answer, or no answer.
fn upstream_failure(last: &EgressEvent) -> Option<String> {
    match (last.decision, last.status) {
        (Decision::Allowed, Some(status)) if status == 429 || status >= 500 => {
            Some(format!("upstream-{status}"))
        }
        (Decision::Failed, _) => Some("upstream-unreachable".into()),
        _ => None,
    }
}

fn upstream_wait(egress: &[EgressEvent]) -> Option<Duration> {
    egress
        .last()
        .and_then(|e| e.retry_after_s)
        .map(Duration::from_secs)
}

/// When attempt `made` (1-based) is tried again, from `now` (Unix ms): full jitter below a
/// doubling bound, but not before `wait_at_least` has passed.
pub(crate) fn next_attempt_at(now: u64, made: usize, wait_at_least: Option<Duration>) -> u64 {
    let floor = wait_at_least.map_or(0, |w| u64::try_from(w.as_millis()).unwrap_or(u64::MAX));
    now.saturating_add(backoff(made).max(floor))
}

/// Full jitter: a random wait up to the exponential bound of attempt `made` (1-based).
fn backoff(made: usize) -> u64 {
    let exponent = u32::try_from(made.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(20);
    let bound = BACKOFF_BASE_MS
        .saturating_mul(1 << exponent)
        .min(BACKOFF_CAP_MS);
    rand::random_range(0..=bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(
        decision: Decision,
        status: Option<u16>,
        retry_after_s: Option<u64>,
    ) -> EgressEvent {
        EgressEvent {
            method: "GET".into(),
            target: None,
            via: None,
            target_hash: None,
            rule: Some(0),
            credential: None,
            decision,
            reason: None,
            status,
            retry_after_s,
            duration_us: 1,
            address: None,
            bytes_out: 0,
            bytes_in: 0,
            redactions: 0,
            hint: None,
        }
    }

    fn action(retryable: &[&str]) -> Action {
        Action {
            description: "sync".into(),
            input: "input.json".parse().expect("path"),
            output: "output.json".parse().expect("path"),
            max_attempts: None,
            retryable: retryable.iter().map(|c| c.parse().expect("code")).collect(),
            schedulable: false,
            webhook: None,
        }
    }

    fn guest(code: &str) -> InvokeError {
        InvokeError::Guest {
            code: code.into(),
            message: "upstream said no".into(),
        }
    }

    #[test]
    fn backoff_is_jittered_below_a_doubling_bound_and_capped() {
        for made in 1..30 {
            let bound = (BACKOFF_BASE_MS << (made - 1).min(20)).min(BACKOFF_CAP_MS);
            for _ in 0..50 {
                assert!(backoff(made) <= bound, "attempt {made}");
            }
        }
        let draws: std::collections::HashSet<u64> = (0..50).map(|_| backoff(5)).collect();
        assert!(draws.len() > 10, "full jitter spreads the waits: {draws:?}");
    }

    #[test]
    fn an_upstreams_retry_after_is_the_least_wait() {
        for _ in 0..50 {
            // The jitter (at most 1 s on a first retry) stays under the 30 s asked for.
            assert_eq!(
                next_attempt_at(1_000, 1, Some(Duration::from_secs(30))),
                31_000
            );
        }
        assert!(next_attempt_at(1_000, 1, None) <= 1_000 + BACKOFF_BASE_MS);
    }

    #[test]
    fn an_action_failing_after_its_upstream_failed_is_retried() {
        let failed = guest("upstream");
        let judged = judge(
            Err(&failed),
            &[exchange(Decision::Allowed, Some(503), Some(7))],
            None,
        );
        assert_eq!(judged.outcome, "upstream-503");
        assert!(judged.retryable);
        assert_eq!(judged.wait_at_least, Some(Duration::from_secs(7)));
        let judged = judge(
            Err(&failed),
            &[exchange(Decision::Failed, None, None)],
            None,
        );
        assert_eq!(
            (judged.outcome.as_str(), judged.retryable),
            ("upstream-unreachable", true)
        );
        let judged = judge(
            Err(&failed),
            &[exchange(Decision::Allowed, Some(404), None)],
            None,
        );
        assert_eq!(
            (judged.outcome.as_str(), judged.retryable),
            ("guest-error", false)
        );
        let judged = judge(
            Err(&failed),
            &[exchange(Decision::Denied, None, None)],
            None,
        );
        assert!(!judged.retryable, "a request the policy denied fails again");
    }

    #[test]
    fn only_the_codes_the_manifest_lists_are_retried_and_named() {
        let declared = action(&["rate-limited"]);
        let judged = judge(Err(&guest("rate-limited")), &[], Some(&declared));
        assert_eq!(
            (judged.outcome.as_str(), judged.retryable),
            ("guest-error:rate-limited", true)
        );
        let judged = judge(Err(&guest("customer 42 missing")), &[], Some(&declared));
        assert_eq!(
            (judged.outcome.as_str(), judged.retryable),
            ("guest-error", false),
            "an undeclared code is the guest's to choose: it is not recorded"
        );
    }

    #[test]
    fn the_hosts_passing_failures_are_retried_and_its_lasting_ones_not() {
        assert!(Judged::unstarted("limit-timeout").retryable);
        assert!(Judged::unstarted("busy").retryable);
        assert!(!Judged::unstarted("input-rejected").retryable);
        assert!(!Judged::unstarted("guest-trap").retryable);
        assert!(!Judged::unstarted("unknown-action").retryable);
        assert_eq!(judge(Ok(()), &[], None).outcome, "ok");
    }
}
