//! A tip for a mode flag that became a subcommand (`install --list` is `install list` now).
//!
//! clap already suggests `run --resolve` for an option given before the verb it moved to; this
//! adds the other direction, read from the command tree, so it can only name a subcommand
//! that exists.

use clap::Command;
use clap::error::{ContextKind, ContextValue, ErrorKind};

/// `error` with a tip when the unknown `--NAME` is a subcommand of the command it was given to.
pub(crate) fn with_hint(mut error: clap::Error, root: &Command, args: &[String]) -> clap::Error {
    if error.kind() != ErrorKind::UnknownArgument {
        return error;
    }
    let Some(ContextValue::String(invalid)) = error.get(ContextKind::InvalidArg) else {
        return error;
    };
    let Some(name) = invalid.strip_prefix("--") else {
        return error;
    };
    let (path, command) = given_to(root, args);
    let Some(sub) = command.find_subcommand(name) else {
        return error;
    };
    let tip = format!(
        "`{invalid}` is a subcommand now: `{} {}`",
        path.join(" "),
        sub.get_name()
    );
    error.insert(
        ContextKind::Suggested,
        ContextValue::StyledStrs(vec![tip.into()]),
    );
    error
}

/// The deepest command `args` name, and the names on the way to it.
fn given_to<'a>(root: &'a Command, args: &[String]) -> (Vec<&'a str>, &'a Command) {
    let mut path = vec![root.get_name()];
    let mut command = root;
    for arg in args.iter().skip(1) {
        if let Some(sub) = command.find_subcommand(arg) {
            path.push(sub.get_name());
            command = sub;
        }
    }
    (path, command)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;
    use crate::Cli;

    fn error_of(line: &str) -> String {
        let args: Vec<String> = line.split(' ').map(String::from).collect();
        let error = Cli::try_parse_from(&args).expect_err("a usage error");
        with_hint(error, &Cli::command(), &args).to_string()
    }

    #[test]
    fn a_removed_mode_flag_names_its_subcommand() {
        for (line, tip) in [
            ("airlock install --list", "`airlock install list`"),
            (
                "airlock install --pending --json",
                "`airlock install pending`",
            ),
            (
                "airlock install --approve --tenant acme --installation x",
                "`airlock install approve`",
            ),
        ] {
            let error = error_of(line);
            assert!(error.contains(tip), "{line}: {error}");
        }
    }

    #[test]
    fn an_option_given_before_its_verb_is_pointed_to_it() {
        let error = error_of("airlock --resolve a.test=127.0.0.1 run x --action a --input {}");
        assert!(error.contains("'run --resolve' exists"), "{error}");
    }

    #[test]
    fn other_errors_are_left_alone() {
        let error = error_of("airlock keygen --resolve a.test=127.0.0.1 --out k");
        assert!(!error.contains("subcommand now"), "{error}");
        assert!(error.contains("unexpected argument '--resolve'"), "{error}");
    }
}
