//! End-to-end tests for Airlock live in `e2e/`; `build.rs` builds the guest examples first.
