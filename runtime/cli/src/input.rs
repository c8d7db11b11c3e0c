//! `JSON|@FILE|@-` arguments, read with a size cap so a huge file is refused, not slurped.

use std::io::Read;

use super::exit::{Exit, fail};

/// Reads an inline value, `@FILE`, or `@-` (stdin), refusing more than `limit` bytes.
pub(crate) fn read_arg(what: &str, arg: &str, limit: u64) -> anyhow::Result<String> {
    let Some(path) = arg.strip_prefix('@') else {
        return Ok(arg.to_string());
    };
    let source: Box<dyn Read> = if path == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path).map_err(|e| {
            fail(
                Exit::Usage,
                anyhow::anyhow!("cannot read {what} file {path}: {e}"),
            )
        })?)
    };
    let mut text = String::new();
    source
        .take(limit + 1)
        .read_to_string(&mut text)
        .map_err(|e| {
            fail(
                Exit::Usage,
                anyhow::anyhow!("cannot read {what} from {arg}: {e}"),
            )
        })?;
    Ok(text)
}
