//! The one `bindgen!` for the `airlock:integration/integration` world.
//!
//! Imports are synchronous (they never block on I/O); the export is called asynchronously so
//! that epoch interruption and, later, async host calls (brokered HTTP) can suspend the guest.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "integration",
    exports: { default: async },
});

pub use self::airlock::integration::{config, log, types};
pub use self::exports::airlock::integration::handler;
