//! Airlock's services: every change to a tenant's state, together with its audit record, in
//! one place. The CLI and the server are thin adapters over these functions, so a change is
//! checked, stored and recorded the same way whichever door it came through.
//!
//! # Layout
//! - [`install`]: installing signed bundles for tenants, grants, upgrades and approvals,
//!   installations' credentials and webhook endpoints.
//! - [`connections`]: OAuth connections: offering a consent, the browser's start link and
//!   callback, and disconnecting.
//! - [`alerts`]: alert rules over the security events, counted as records are written.
//! - [`api_keys`]: issuing and revoking API keys for Airlock's own API.
//! - [`tenants`]: creating and deleting tenants.
//! - [`trust`]: trusting and revoking publisher keys.
//! - [`master_key`]: rotating the master key that wraps the tenants' data keys.
//! - [`deliveries`]: inbound webhook deliveries: verified, claimed once, given back on failure.
//! - [`timetable`]: when a cron schedule's ticks fall, in its time zone, and which were missed.
//! - [`backup`]: sealed backups of the embedded store, and restores checked before they are
//!   put in place.
//!
//! # Must never depend on
//! axum or clap: services take typed values and return typed errors; HTTP status codes, cookies
//! and exit codes are the adapters' business.

pub mod alerts;
pub mod api_keys;
pub mod backup;
pub mod connections;
pub mod deliveries;
pub mod install;
pub mod master_key;
pub mod tenants;
pub mod timetable;
pub mod trust;
