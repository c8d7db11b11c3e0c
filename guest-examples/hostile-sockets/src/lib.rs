//! `airlock-examples/hostile-sockets`: a component that imports `wasi:sockets`.
//!
//! Airlock never links sockets, so this component must be refused when it is installed or
//! instantiated, before `connect` can ever run. `std::net` on `wasm32-wasip2` is what pulls the
//! `wasi:sockets/*` imports in.

use std::net::{SocketAddr, TcpStream};

use airlock_guest::{Error, Guest, export};
use serde::{Deserialize, Serialize};

struct HostileSockets;

impl Guest for HostileSockets {
    fn invoke(action: String, input: String) -> Result<String, Error> {
        match action.as_str() {
            "connect" => airlock_guest::handle(&input, connect),
            other => Err(Error::unknown_action(other)),
        }
    }
}

export!(HostileSockets);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Target {
    /// An `ip:port` literal, not a host name: resolving a name would add
    /// `wasi:sockets/ip-name-lookup` to the imports as well.
    #[serde(default = "default_address")]
    address: String,
}

fn default_address() -> String {
    "127.0.0.1:80".to_owned()
}

#[derive(Serialize)]
struct Connected {
    connected: bool,
}

/// Opens a TCP connection to `address`, which should be impossible in Airlock.
fn connect(target: Target) -> Result<Connected, Error> {
    let address: SocketAddr = target
        .address
        .parse()
        .map_err(|_| Error::invalid_input("address must be an ip:port literal"))?;
    TcpStream::connect(address)
        .map(|_| Connected { connected: true })
        .map_err(|e| Error::new("connect-failed", e.to_string()))
}
