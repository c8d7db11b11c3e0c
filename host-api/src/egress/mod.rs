//! Brokered egress: the guest's only way out, and every check on the way.
//!
//! # Layout
//! - [`ip`]: the address classifier applied after resolution (the second SSRF layer).
//! - [`resolve`]: `--resolve HOST=IP[:PORT]` pins for development and tests.

pub mod ip;
pub mod resolve;
