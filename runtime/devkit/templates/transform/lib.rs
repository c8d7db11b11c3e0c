//! {{name}}: an Airlock integration, built into a WebAssembly component by `airlock build`.
//!
//! The host has checked the input against `schemas/normalize.in.json` before this code runs,
//! and checks the output against `schemas/normalize.out.json` after; `airlock test` runs the
//! cases in `tests/`.

use airlock_guest::{Error, Guest, Level, export};
use serde::{Deserialize, Serialize};

struct Connector;

impl Guest for Connector {
    fn invoke(action: String, input: String) -> Result<String, Error> {
        match action.as_str() {
            "normalize" => airlock_guest::handle(&input, normalize),
            other => Err(Error::unknown_action(other)),
        }
    }
}

export!(Connector);

/// `schemas/normalize.in.json`.
#[derive(Deserialize)]
struct Person {
    name: String,
    email: String,
}

/// `schemas/normalize.out.json`.
#[derive(Serialize)]
struct Normalized {
    name: String,
    email: String,
    domain: String,
}

fn normalize(person: Person) -> Result<Normalized, Error> {
    let name = person.name.split_whitespace().collect::<Vec<_>>().join(" ");
    let email = person.email.trim().to_lowercase();
    let domain = match email.split_once('@') {
        Some((_, domain)) if !domain.is_empty() => domain.to_string(),
        _ => return Err(Error::invalid_input("the email has no domain")),
    };
    // Logs carry counts and ids, never the person's data.
    airlock_guest::log(
        Level::Info,
        "normalized",
        &[("name_words", &name.split(' ').count())],
    );
    Ok(Normalized {
        name,
        email,
        domain,
    })
}
