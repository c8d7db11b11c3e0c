//! The one `bindgen!` for the `airlock:integration/integration` world.
//!
//! Airlock's imports are synchronous (they never block on I/O); the export is called
//! asynchronously so that epoch interruption and brokered HTTP can suspend the guest. WASI
//! interfaces reuse wasmtime-wasi's and wasmtime-wasi-http's own bindings, so their resource
//! types are the ones those crates implement.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "integration",
    exports: { default: async },
    with: {
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
    },
    require_store_data_send: true,
});

pub use self::airlock::integration::{config, kv, log, types};
pub use self::exports::airlock::integration::handler;
