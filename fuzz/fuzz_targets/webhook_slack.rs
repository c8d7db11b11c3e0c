//! Webhook verification (slack): headers and body from the sender, any bytes; a refusal,
//! never a panic.
#![no_main]

use airlock_fuzz::{Delivery, verify_delivery};
use airlock_policy::webhook::Scheme;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|delivery: Delivery| verify_delivery(Scheme::Slack, delivery));
