//! `airlock new`: a ready integration crate (see [`airlock_devkit::scaffold`]).

use std::path::PathBuf;

use clap::Args;

use super::exit::{Exit, fail};
use airlock_devkit::scaffold::{self, Template};

#[derive(Debug, Args)]
pub(crate) struct NewArgs {
    /// The integration's name: lower-case letters, digits and `-`, e.g. crm-sync
    name: String,
    /// What to start from
    #[arg(long, value_enum, default_value = "http")]
    template: Template,
    /// Where to make it [default: ./NAME]
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub(crate) fn new(args: NewArgs) -> anyhow::Result<Exit> {
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    let written =
        scaffold::create(&dir, &args.name, args.template).map_err(|e| fail(Exit::Usage, e))?;
    eprintln!(
        "airlock: made {} ({} files) in {}",
        args.name,
        written.len(),
        dir.display()
    );
    println!(
        "next:\n  cd {}\n  airlock build\n  airlock test\n\nthen fill in [publisher] in \
         airlock.toml before you sign it (docs/connector-guide.md)",
        dir.display()
    );
    Ok(Exit::Success)
}
