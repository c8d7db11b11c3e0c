//! The conformance suite: the behaviour and the guarantees of the storage traits, written
//! against [`Storage`] only, so every backend runs the same cases unchanged.
//!
//! A backend's tests call [`conformance_suite!`](crate::conformance_suite) with an expression
//! that makes a fresh, empty [`Subject`]; each case becomes one `#[test]`. The races run
//! [`RACERS`] threads against one record and count the winners, so a backend that checks and
//! then writes outside one transaction fails them.
//!
//! Compiled for this crate's tests and, with the `conformance` feature, for other backends'.

pub mod audit;
pub mod members;
pub mod oauth;
pub mod races;
pub mod records;
pub mod runs;
pub mod schedules;
pub mod trust;

use std::sync::Arc;

use airlock_runtime::ids::{InstallationId, TenantId};

use crate::Storage;

/// How many threads race for one record in the concurrency cases.
pub const RACERS: usize = 8;

/// A fresh, empty storage under test, and whatever must live as long as it (a temp dir, a
/// database connection).
pub struct Subject {
    pub storage: Arc<dyn Storage>,
    _keep: Box<dyn Send + Sync>,
}

impl Subject {
    pub fn new(storage: Arc<dyn Storage>, keep: impl Send + Sync + 'static) -> Self {
        Self {
            storage,
            _keep: Box::new(keep),
        }
    }
}

/// A tenant id for the cases.
pub fn tenant(name: &str) -> TenantId {
    name.parse().expect("a valid tenant id")
}

/// An installation id for the cases.
pub fn installation(name: &str) -> InstallationId {
    name.parse().expect("a valid installation id")
}

/// Runs `race` on [`RACERS`] threads started together; their results, in thread order.
pub fn race<T: Send>(race: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let start = std::sync::Barrier::new(RACERS);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..RACERS)
            .map(|n| {
                let (start, race) = (&start, &race);
                scope.spawn(move || {
                    start.wait();
                    race(n)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a racer panicked"))
            .collect()
    })
}

/// One `#[test]` per conformance case, each on a fresh subject made by `$fresh`
/// (an expression of type [`Subject`], evaluated once per case). With `optional:`, `$fresh`
/// is an `Option<Subject>`: `None` skips the case (the backend is not available, and
/// `$fresh` said why).
#[macro_export]
macro_rules! conformance_suite {
    ($fresh:expr) => {
        $crate::conformance_suite!(optional: Some($fresh));
    };
    (optional: $fresh:expr) => {
        $crate::conformance_suite!(@cases $fresh;
            records::a_fresh_store_holds_the_current_schema,
            records::tenants_are_created_once_listed_and_deleted,
            records::deleting_a_tenant_removes_everything_it_owns,
            records::api_keys_authenticate_until_revoked,
            records::installations_and_bundles_round_trip,
            records::credentials_are_listed_without_values_and_read_only_as_their_type,
            records::webhook_endpoints_belong_to_their_tenant_and_rotate,
            records::kv_values_round_trip_and_count_toward_usage,
            oauth::connections_round_trip_and_replace_only_the_revision_read,
            oauth::consents_are_taken_once_by_the_browser_that_started_them,
            oauth::offered_consents_are_taken_once_and_expired_ones_purged,
            races::a_delivery_id_is_first_for_exactly_one_caller,
            races::an_offered_consent_is_taken_by_exactly_one_caller,
            races::a_consent_state_is_taken_by_exactly_one_caller,
            races::a_connection_revision_is_replaced_at_most_once,
            races::a_use_in_flight_never_undoes_a_revoke,
            races::concurrent_kv_writers_never_pass_the_quota_together,
            audit::audit_records_are_never_overwritten,
            audit::records_appended_together_are_written_together_or_not_at_all,
            audit::a_record_is_never_seen_without_its_index_entries,
            audit::audit_records_are_read_in_sequence_order,
            audit::an_empty_audit_log_reads_nothing,
            audit::the_checkpoint_count_is_never_lowered,
            audit::the_chain_id_is_named_by_the_first_writer,
            audit::index_reads_keep_to_their_prefix_in_key_order,
            trust::trusted_keys_are_listed_as_added,
            trust::a_stored_key_id_is_never_added_again,
            trust::a_revoke_stands_and_a_revoked_key_never_comes_back,
            trust::the_trust_revision_changes_with_every_change,
            trust::a_key_is_added_by_exactly_one_of_concurrent_callers,
            trust::concurrent_adds_of_different_keys_are_all_kept,
            members::live_members_are_listed_until_they_leave_or_expire,
            runs::runs_are_claimed_once_when_due_and_finished_once,
            runs::a_lapsed_claim_is_claimed_again_and_its_attempt_refused,
            runs::a_dead_run_is_retried_while_its_input_is_kept,
            runs::the_run_history_is_paged_by_installation_status_and_time,
            runs::each_claim_goes_to_one_caller,
            runs::an_installations_kv_runs_and_record_are_deleted_and_no_one_elses,
            runs::a_tenant_may_keep_only_so_many_runs_pending,
            oauth::an_installations_consents_are_deleted_and_no_one_elses,
            schedules::each_tick_fires_once_and_queues_a_run_with_the_schedules_input,
            schedules::racing_callers_fire_a_tick_once,
            schedules::a_tick_a_full_queue_refuses_is_skipped,
            schedules::schedules_are_paused_resumed_listed_and_deleted,
            schedules::a_tick_whose_run_is_queued_already_only_moves_the_schedule_on,
        );
    };
    (@cases $fresh:expr; $($module:ident :: $case:ident),+ $(,)?) => {
        $(
            #[test]
            fn $case() {
                if let Some(subject) = $fresh {
                    $crate::conformance::$module::$case(subject);
                }
            }
        )+
    };
}
