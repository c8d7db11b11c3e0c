//! The schemas of an integration's actions, compiled at load or on each action's first use.
//!
//! Compiling a JSON Schema costs tens of microseconds; a connector declares several actions and
//! a start runs one. An installed bundle's schemas all compiled when it was installed, so when
//! it is loaded again to run (a host starting, another node taking its work) each action's
//! schemas compile the first time that action runs, and a warm start pays only for what it
//! uses (docs/benchmarks.md). Anything loaded to be checked compiles everything at once.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock, PoisonError};

use serde_json::Value;

use crate::schema::{Schema, SchemaError};

/// The input and output schemas of one action.
pub(crate) struct ActionSchemas {
    pub input: Schema,
    pub output: Schema,
}

/// When a loaded bundle's action schemas compile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaCompile {
    /// All of them at load, so an invalid one fails the load (install, upload, check).
    AtLoad,
    /// Each action's on its first use: for a bundle whose schemas compiled when it was installed.
    OnFirstUse,
}

/// A schema parsed (strictly, at load) but not yet compiled, and the file that names it.
pub(crate) struct Parsed {
    pub path: PathBuf,
    pub value: Value,
}

/// One action's schemas, compiled or waiting for the action's first use.
pub(crate) struct Action {
    compiled: OnceLock<Result<ActionSchemas, String>>,
    /// The parsed schemas until they compile; taken by the first use.
    parsed: Mutex<Option<(Parsed, Parsed)>>,
}

impl Action {
    /// An action whose schemas compiled at load.
    pub fn compiled(schemas: ActionSchemas) -> Self {
        Self {
            compiled: OnceLock::from(Ok(schemas)),
            parsed: Mutex::new(None),
        }
    }

    /// An action whose schemas compile on its first use.
    pub fn deferred(input: Parsed, output: Parsed) -> Self {
        Self {
            compiled: OnceLock::new(),
            parsed: Mutex::new(Some((input, output))),
        }
    }

    /// The compiled schemas, compiling them now on first use. A schema that no longer compiles
    /// (one this version of Airlock refuses, though the one that installed it did not) fails
    /// every invocation of the action with the reason, naming the file.
    pub fn schemas(&self) -> Result<&ActionSchemas, &str> {
        self.compiled
            .get_or_init(|| {
                let parsed = self
                    .parsed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                let (input, output) =
                    parsed.expect("an action's schemas are parsed until they compile once");
                compile(&input)
                    .and_then(|input| {
                        Ok(ActionSchemas {
                            input,
                            output: compile(&output)?,
                        })
                    })
                    .map_err(|error| error.to_string())
            })
            .as_ref()
            .map_err(String::as_str)
    }
}

fn compile(parsed: &Parsed) -> Result<Schema, SchemaError> {
    Schema::compile(&parsed.path.display().to_string(), &parsed.value)
}
