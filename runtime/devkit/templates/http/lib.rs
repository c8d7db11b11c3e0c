//! {{name}}: an Airlock integration, built into a WebAssembly component by `airlock build`.
//!
//! Requests go out through `airlock_guest::http`: the host checks each against the manifest's
//! `[[egress]]` rules and adds the `api` credential itself, so this code never sets
//! `Authorization` and never sees the token. `airlock test` runs the cases in `tests/`.

use airlock_guest::http::Request;
use airlock_guest::{Error, Guest, Level, export};
use serde::{Deserialize, Serialize};

struct Connector;

impl Guest for Connector {
    fn invoke(action: String, input: String) -> Result<String, Error> {
        match action.as_str() {
            "get-item" => airlock_guest::handle(&input, get_item),
            other => Err(Error::unknown_action(other)),
        }
    }
}

export!(Connector);

const API: &str = "https://api.example.com/v1/";

/// `schemas/get-item.in.json`.
#[derive(Deserialize)]
struct GetItem {
    id: String,
}

/// `schemas/get-item.out.json`, and the fields of the API's item this connector reads.
#[derive(Serialize, Deserialize)]
struct Item {
    id: String,
    name: String,
}

fn get_item(input: GetItem) -> Result<Item, Error> {
    // The input schema allows only letters, digits, `-` and `_` in an id, so it cannot change
    // the path.
    let response = Request::get(format!("{API}items/{}", input.id))
        .header("accept", "application/json")
        .send()?;
    match response.status {
        200 => {
            let item: Item = response.json()?;
            airlock_guest::log(Level::Info, "read item", &[("id", &item.id)]);
            Ok(item)
        }
        404 => Err(Error::new(
            "not-found",
            format!("there is no item {}", input.id),
        )),
        status => Err(Error::new("upstream", format!("the API answered {status}"))),
    }
}
