//! `airlock serve --config FILE`: every flag of `serve` in one TOML file (docs/deploy.md, "The
//! config file").
//!
//! A key is a long flag without its dashes (`max-concurrent = 64`, `trusted-proxy =
//! ["10.0.0.0/8"]`, `no-console = true`). What the command line or the environment gives wins
//! over the file, and the file over the defaults. Each value is parsed by the flag's own parser,
//! so the file cannot accept what the flag would refuse; a key that is no flag of `serve`, a
//! value of the wrong shape or one its flag refuses is named with its file and line, and
//! nothing starts.

use std::ffi::OsString;
use std::ops::Range;
use std::path::{Path, PathBuf};

use airlock_host_api::egress::ip::AllowRanges;
use airlock_platform::alerts::Rule;
use airlock_policy::webhook::WebhookSecret;
use airlock_runtime::fsutil;
use airlock_server::alerting::{AlertSettings, NotifyEndpoint};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};
use zeroize::Zeroizing;

/// The flags that say how to read the file, not what to serve: they cannot be in it.
pub(crate) const NOT_IN_FILE: [&str; 4] = ["config", "check-config", "help", "version"];
/// The file's tables, which no flag carries: alert rules and notification endpoints.
const SECTIONS: [&str; 2] = ["alert", "notify"];

/// The file's `[[alert]]` and `[[notify]]` tables.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct Sections {
    /// The alert rules; `None` when the file has none (the defaults apply).
    pub alert: Option<Vec<Rule>>,
    #[serde(default)]
    pub notify: Vec<Notify>,
}

/// One `[[notify]]` endpoint, as written.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct Notify {
    /// An https:// URL.
    pub url: String,
    /// A file (mode 0600) holding the endpoint's Standard Webhooks secret, `whsec_…`.
    pub secret_file: PathBuf,
    /// Private ranges the endpoint may be in (CIDR).
    #[serde(default)]
    pub allow_private: Vec<String>,
}

/// What is wrong with a config file, named with where.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: {key}: {why}")]
    Setting {
        path: PathBuf,
        key: String,
        why: String,
    },
    #[error("{path}:{line}: {key}: {why}")]
    Key {
        path: PathBuf,
        line: usize,
        key: String,
        why: String,
    },
}

impl Sections {
    /// The server's alert settings: the file's rules (else the defaults), and each endpoint
    /// with its secret read from its file (relative to the config file's directory).
    pub(crate) fn alert_settings(self, file: Option<&Path>) -> Result<AlertSettings, ConfigError> {
        let path = file.map(Path::to_path_buf).unwrap_or_default();
        let invalid = |why: String| ConfigError::Setting {
            path: path.clone(),
            key: "notify".to_owned(),
            why,
        };
        let base = file.map_or(Path::new("."), fsutil::parent_of);
        let mut notify = Vec::new();
        for (n, endpoint) in self.notify.into_iter().enumerate() {
            // Not echoed: a webhook URL's path often holds a token.
            airlock_policy::egress::RequestTarget::parse(&endpoint.url)
                .map_err(|d| invalid(format!("the url of endpoint {}: {d}", n + 1)))?;
            let secret_file = base.join(&endpoint.secret_file);
            let secret = read_secret(&secret_file)
                .map_err(|why| invalid(format!("secret-file {}: {why}", secret_file.display())))?;
            let allow_private = endpoint
                .allow_private
                .iter()
                .map(|cidr| cidr.parse::<AllowRanges>())
                .collect::<Result<AllowRanges, _>>()
                .map_err(|e| invalid(format!("allow-private: {e}")))?;
            notify.push(NotifyEndpoint {
                url: endpoint.url,
                secret,
                allow_private,
            });
        }
        Ok(AlertSettings {
            rules: self.alert.unwrap_or_else(Rule::defaults),
            notify,
        })
    }
}

/// A Standard Webhooks secret from a file only its owner can read.
fn read_secret(path: &Path) -> Result<WebhookSecret, String> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "mode {mode:04o}: others could read it (chmod 600 {})",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    WebhookSecret::standard(Zeroizing::new(text)).map_err(|e| e.to_string())
}

/// A config file, read and parsed, not yet checked against the flags.
pub(crate) struct ConfigFile {
    path: PathBuf,
    text: String,
    document: toml_edit::Document<String>,
}

impl ConfigFile {
    /// Reads and parses `path`.
    pub(crate) fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let document =
            toml_edit::Document::parse(text.clone()).map_err(|e| ConfigError::Syntax {
                path: path.to_path_buf(),
                message: e.to_string().trim_end().to_owned(),
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            text,
            document,
        })
    }

    /// The file's settings as command-line arguments of `serve` (the subcommand `command`),
    /// leaving out every flag `given` has from the command line or the environment. Each value
    /// is checked by its flag's parser (`parse_one` parses a `serve` command line of one flag).
    pub(crate) fn arguments(
        &self,
        command: &Command,
        given: &ArgMatches,
        parse_one: impl Fn(&[OsString]) -> Result<(), clap::Error>,
    ) -> Result<Vec<OsString>, ConfigError> {
        let mut args = Vec::new();
        for (key, item) in self.document.as_table().iter() {
            if SECTIONS.contains(&key) {
                continue;
            }
            let at = self.line_of(
                self.document
                    .as_table()
                    .get_key_value(key)
                    .and_then(|(k, _)| k.span()),
            );
            let error = |why: String| ConfigError::Key {
                path: self.path.clone(),
                line: at,
                key: key.to_owned(),
                why,
            };
            let arg = flag(command, key).ok_or_else(|| error(unknown(command, key)))?;
            let values = values_of(arg, item).map_err(error)?;
            let mut one = Vec::new();
            for value in &values {
                one.push(OsString::from(format!("--{key}")));
                if let Some(value) = value {
                    one.push(OsString::from(value));
                }
            }
            parse_one(&one).map_err(|e| error(clap_reason(&e)))?;
            let from_caller = matches!(
                given.value_source(arg.get_id().as_str()),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            );
            if !from_caller {
                args.extend(one);
            }
        }
        Ok(args)
    }

    /// The file's `[[alert]]` and `[[notify]]` tables, each checked: an unknown key, a
    /// missing one or a bad value named with its line.
    pub(crate) fn sections(&self) -> Result<Sections, ConfigError> {
        for name in SECTIONS {
            if let Some(item) = self.document.as_table().get(name)
                && item.as_array_of_tables().is_none()
            {
                return Err(ConfigError::Key {
                    path: self.path.clone(),
                    line: self.line_of(item.span()),
                    key: name.to_owned(),
                    why: format!("a table list is expected: write [[{name}]] before each"),
                });
            }
        }
        let sections: Sections = toml::from_str(&self.text).map_err(|e| {
            let line = self.line_of(e.span());
            ConfigError::Key {
                path: self.path.clone(),
                line,
                key: self.table_at(line),
                why: e.message().to_owned(),
            }
        })?;
        if let Some(rules) = &sections.alert {
            let tables = self
                .document
                .as_table()
                .get("alert")
                .and_then(toml_edit::Item::as_array_of_tables);
            let line = |index: Option<usize>| {
                let table = tables.and_then(|t| index.and_then(|i| t.get(i)));
                self.line_of(table.and_then(toml_edit::Table::span))
            };
            let refused = |index, e: airlock_platform::alerts::RuleError| ConfigError::Key {
                path: self.path.clone(),
                line: line(index),
                key: "alert".to_owned(),
                why: e.to_string(),
            };
            for (index, rule) in rules.iter().enumerate() {
                Rule::check_all(std::slice::from_ref(rule)).map_err(|e| refused(Some(index), e))?;
            }
            Rule::check_all(rules).map_err(|e| refused(None, e))?;
        }
        Ok(sections)
    }

    /// The `[[table]]` line `line` falls under, as written (`[[alert]]`), for errors inside one.
    fn table_at(&self, line: usize) -> String {
        self.text
            .lines()
            .take(line)
            .filter_map(|l| {
                l.trim()
                    .strip_prefix("[[")?
                    .split_once("]]")
                    .map(|(t, _)| t)
            })
            .last()
            .map_or_else(
                || "[[alert]] or [[notify]]".to_owned(),
                |t| format!("[[{}]]", t.trim()),
            )
    }

    /// The 1-based line of a byte span's start.
    fn line_of(&self, span: Option<Range<usize>>) -> usize {
        let start = span.map_or(0, |s| s.start).min(self.text.len());
        self.text[..start].matches('\n').count() + 1
    }
}

/// The flag of `command` whose long name is `key`, unless it cannot be in a file.
fn flag<'c>(command: &'c Command, key: &str) -> Option<&'c Arg> {
    if NOT_IN_FILE.contains(&key) {
        return None;
    }
    command
        .get_arguments()
        .find(|arg| arg.get_long() == Some(key) && !arg.is_hide_set())
}

/// Why `key` is not a setting, with the nearest one if there is one close enough.
fn unknown(command: &Command, key: &str) -> String {
    let nearest = command
        .get_arguments()
        .filter_map(Arg::get_long)
        .filter(|long| !NOT_IN_FILE.contains(long))
        .map(|long| (strsim::jaro(key, long), long))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let mut why = "not a setting of airlock serve (a setting is a long flag of `airlock serve \
                   --help`, without its dashes)"
        .to_owned();
    if let Some((_, long)) = nearest {
        why.push_str(&format!("; did you mean `{long}`?"));
    }
    why
}

/// The command-line values a TOML item gives `arg`: `None` is a flag's presence.
fn values_of(arg: &Arg, item: &toml_edit::Item) -> Result<Vec<Option<String>>, String> {
    let Some(value) = item.as_value() else {
        return Err(format!(
            "a {}, where a value is expected (this key is a flag)",
            item.type_name()
        ));
    };
    if matches!(arg.get_action(), ArgAction::SetTrue) {
        return match value.as_bool() {
            Some(true) => Ok(vec![None]),
            Some(false) => Ok(Vec::new()),
            None => Err(format!(
                "a {}, where true or false is expected",
                value.type_name()
            )),
        };
    }
    match value.as_array() {
        Some(array) if matches!(arg.get_action(), ArgAction::Append) => {
            array.iter().map(|v| scalar(v).map(Some)).collect()
        }
        Some(_) => Err("a list, where one value is expected".to_owned()),
        None => Ok(vec![Some(scalar(value)?)]),
    }
}

/// A string, integer or float as the command line would spell it.
fn scalar(value: &toml_edit::Value) -> Result<String, String> {
    match value {
        toml_edit::Value::String(s) => Ok(s.value().clone()),
        toml_edit::Value::Integer(i) => Ok(i.value().to_string()),
        toml_edit::Value::Float(f) => Ok(f.value().to_string()),
        other => Err(format!(
            "a {}, where a string or a number is expected",
            other.type_name()
        )),
    }
}

/// The first line of clap's message, without its `error: ` and styling.
fn clap_reason(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    let first = rendered.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}
