//! `airlock.toml`: the manifest every integration ships.
//!
//! Parsing is strict: every table denies unknown keys, and every value with rules of its own is
//! a validating newtype ([`IntegrationId`], [`ActionName`], [`SupportContact`], [`HttpsUrl`],
//! [`RelativePath`], [`ByteSize`], [`HumanDuration`]) whose `Deserialize` impl rejects bad input
//! with `serde::de::Error::custom`, so the `toml` crate attaches the span of the offending key
//! or value. [`ManifestError::Parse`] turns that span into a 1-based line and column, and names
//! the key at fault, e.g.
//!
//! ```text
//! integrations/acme/airlock.toml:16:1: unknown field `memroy`, expected one of `memory`, `timeout`, `output` (in `limits`)
//! ```
//!
//! Strings from the manifest are untrusted: messages are single-line and control characters in
//! them are escaped.
//!
//! # Layout
//! - `fields`, `urls`: the validating newtypes.
//! - `egress`: `[[egress]]` rules and `[credentials.<name>]` declarations.
//! - `checks`: rules for plain fields, run inside deserialization so errors carry a span.
//! - `locate`: toml error span → line, column and the key at fault.

mod checks;
mod egress;
mod fields;
mod locate;
mod urls;

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use airlock_host_api::policy::egress::RequestTarget;
use serde::{Deserialize, Serialize};

pub use airlock_host_api::policy::units::{ByteSize, HumanDuration};
pub use checks::MAX_DESCRIPTION_CHARS;
pub use egress::{ApiKey, CredentialDecl, CredentialName, EgressEntry, Grant, OAuth2};
pub use fields::{
    ActionName, ErrorCode, IntegrationId, InvalidValue, MAX_NAME_CHARS, RelativePath,
};
pub use urls::{HttpsUrl, MAX_URL_BYTES, SupportContact};

/// The manifest's file name inside an integration directory.
pub const MANIFEST_FILE_NAME: &str = airlock_bundle::MANIFEST;

/// Manifests larger than this are refused before parsing.
pub const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// A parsed `airlock.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Manifest {
    pub integration: Integration,
    pub publisher: Publisher,
    #[serde(default)]
    pub limits: ManifestLimits,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigSection>,
    /// At least one action.
    #[serde(deserialize_with = "checks::actions")]
    pub actions: BTreeMap<ActionName, Action>,
    /// `[[egress]]`: the only places the integration may send requests; none means no network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<EgressEntry>,
    /// `[credentials.<name>]`: declared credentials, each used by at least one egress rule.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub credentials: BTreeMap<CredentialName, toml::Spanned<CredentialDecl>>,
    /// `[kv]`: a key-value store that outlives invocations; none means no store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv: Option<KvSection>,
    /// `[scratch]`: a fresh directory at `/scratch` for each invocation; none means no
    /// filesystem at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scratch: Option<ScratchSection>,
}

/// `[scratch]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ScratchSection {
    /// The most its files may hold together (the operator's ceiling bounds it).
    #[serde(deserialize_with = "checks::required_positive_size")]
    pub size: ByteSize,
}

impl Manifest {
    /// The limits this manifest asks for, before the operator's ceilings apply.
    pub fn requested_limits(&self) -> airlock_host_api::policy::RequestedLimits {
        airlock_host_api::policy::RequestedLimits {
            memory: self.limits.memory.map(|b| b.0),
            timeout: self.limits.timeout.map(|d| d.0),
            output: self.limits.output.map(|b| b.0),
            host_memory: self.limits.host_memory.map(|b| b.0),
            scratch: self.scratch.as_ref().map(|s| s.size.0),
        }
    }

    /// The origins credential `name` is sent to, deduplicated: those of the rules naming it,
    /// and for an `oauth2` credential its token endpoint's (where the client secret and refresh
    /// token go). A stored value is bound to these (docs/security-model.md).
    pub fn credential_origins(&self, name: &str) -> Vec<String> {
        let token_endpoint = self
            .credentials
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .and_then(|(_, decl)| match decl.get_ref() {
                CredentialDecl::Oauth2(oauth) => {
                    RequestTarget::parse(oauth.token_url.as_str()).ok()
                }
                _ => None,
            })
            .map(|target| target.origin());
        let mut origins: Vec<String> = self
            .egress
            .iter()
            .filter(|e| e.rule().credential() == Some(name))
            .map(|e| e.rule().origin().to_string())
            .chain(token_endpoint)
            .collect();
        origins.sort();
        origins.dedup();
        origins
    }

    /// The action named `name`, if declared.
    pub fn action(&self, name: &str) -> Option<&Action> {
        self.actions
            .iter()
            .find_map(|(n, action)| (n.as_str() == name).then_some(action))
    }

    /// The egress policy the broker enforces for this integration.
    pub fn egress_policy(&self) -> airlock_host_api::policy::egress::EgressPolicy {
        airlock_host_api::policy::egress::EgressPolicy::new(
            self.egress.iter().map(|e| e.rule().clone()).collect(),
        )
    }
}

/// `[integration]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Integration {
    pub id: IntegrationId,
    #[serde(with = "checks::semver_version")]
    pub version: semver::Version,
    /// Non-empty, at most [`MAX_DESCRIPTION_CHARS`] characters.
    #[serde(deserialize_with = "checks::description")]
    pub description: String,
    /// Relative to the manifest's directory; ends in `.wasm`.
    #[serde(deserialize_with = "checks::component")]
    pub component: RelativePath,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildSection>,
}

/// `[integration.build]`: how `airlock build` produces the component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BuildSection {
    /// Non-empty.
    #[serde(deserialize_with = "checks::command")]
    pub command: String,
}

/// `[publisher]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Publisher {
    /// Non-empty, no control characters.
    #[serde(deserialize_with = "checks::publisher_name")]
    pub name: String,
    pub support: SupportContact,
    pub privacy_policy: HttpsUrl,
}

/// `[limits]`: each key optional. Sizes must be greater than zero.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ManifestLimits {
    #[serde(
        default,
        deserialize_with = "checks::positive_size",
        skip_serializing_if = "Option::is_none"
    )]
    pub memory: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    #[serde(
        default,
        deserialize_with = "checks::positive_size",
        skip_serializing_if = "Option::is_none"
    )]
    pub output: Option<ByteSize>,
    /// What the host may hold for one invocation outside its linear memory.
    #[serde(
        default,
        deserialize_with = "checks::positive_size",
        skip_serializing_if = "Option::is_none"
    )]
    pub host_memory: Option<ByteSize>,
}

/// `[kv]`: the quota of the installation's key-value store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KvSection {
    /// Keys and values together.
    #[serde(deserialize_with = "checks::required_positive_size")]
    pub max_bytes: ByteSize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_keys: Option<u64>,
    #[serde(
        default,
        deserialize_with = "checks::positive_size",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_value_bytes: Option<ByteSize>,
}

impl KvSection {
    /// The quota asked for, before the operator's ceilings apply.
    pub fn requested(&self) -> airlock_host_api::kv::RequestedKv {
        airlock_host_api::kv::RequestedKv {
            max_bytes: self.max_bytes.bytes(),
            max_keys: self.max_keys,
            max_value_bytes: self.max_value_bytes.map(|b| b.bytes()),
        }
    }
}

/// `[config]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigSection {
    /// JSON Schema for the integration's configuration.
    pub schema: RelativePath,
}

/// `[actions.<name>]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Action {
    /// Non-empty, at most [`MAX_DESCRIPTION_CHARS`] characters.
    #[serde(deserialize_with = "checks::description")]
    pub description: String,
    /// JSON Schema for the action's input.
    pub input: RelativePath,
    /// JSON Schema for the action's output.
    pub output: RelativePath,
    /// Attempts a queued run of this action makes before it is dead (1 to
    /// [`MAX_ATTEMPTS`]; the operator's ceiling bounds it); default [`DEFAULT_ATTEMPTS`].
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "checks::max_attempts"
    )]
    pub max_attempts: Option<u32>,
    /// Codes of the action's own errors worth another attempt: the failure may pass (an
    /// upstream's `rate-limited`, say). Failures of the host's kind are judged by the host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retryable: Vec<ErrorCode>,
    /// Whether tenants may give the action cron schedules.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub schedulable: bool,
    /// `[actions.<name>.webhook]`: how webhook deliveries run it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSection>,
}

/// Attempts a queued run makes when its action does not say.
pub const DEFAULT_ATTEMPTS: u32 = 3;
/// The most attempts an action may ask for.
pub const MAX_ATTEMPTS: u32 = 100;

impl Action {
    /// Attempts a queued run of the action makes, within the operator's `ceiling`.
    pub fn attempts(&self, ceiling: u32) -> u32 {
        self.max_attempts
            .unwrap_or(DEFAULT_ATTEMPTS)
            .min(ceiling)
            .max(1)
    }

    /// Whether webhook deliveries wait for the action's output rather than queue a run.
    pub fn answers_webhooks(&self) -> bool {
        self.webhook
            .as_ref()
            .is_some_and(|w| w.mode == WebhookMode::Sync)
    }
}

/// `[actions.<name>.webhook]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WebhookSection {
    pub mode: WebhookMode,
}

/// How a webhook delivery runs its action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WebhookMode {
    /// Verified, deduplicated, queued as a run and answered `202` at once (the default).
    Async,
    /// Run while the sender waits, answered with the action's output (a sender that reads
    /// it, like Slack's URL verification).
    Sync,
}

/// Why a manifest could not be loaded. `Display` is one line, led by `path:line:column` for
/// parse errors.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read (missing, unreadable, too large, or a directory without an
    /// `airlock.toml`).
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: Arc<std::io::Error>,
    },
    /// The file is not a valid manifest. `line` and `column` are 1-based; the column counts
    /// characters. `message` names the key at fault.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

impl ManifestError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        ManifestError::Io {
            path: path.to_path_buf(),
            source: Arc::new(source),
        }
    }
}

/// A parsed manifest plus where it lives, so relative paths resolve against its directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct LoadedManifest {
    /// The manifest file.
    pub path: PathBuf,
    /// The directory containing it (`.` when `path` has no parent).
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl LoadedManifest {
    /// Accepts a directory (uses DIR/airlock.toml) or a path to a manifest file.
    pub fn load(path: &Path) -> Result<LoadedManifest, ManifestError> {
        let is_dir = path.is_dir();
        let file = if is_dir {
            path.join(MANIFEST_FILE_NAME)
        } else {
            path.to_path_buf()
        };
        let bytes = match read_capped(&file) {
            Ok(bytes) => bytes,
            Err(e) if is_dir && e.kind() == std::io::ErrorKind::NotFound => {
                let message = format!(
                    "the directory {} contains no {MANIFEST_FILE_NAME}",
                    path.display()
                );
                return Err(ManifestError::io(
                    &file,
                    std::io::Error::new(std::io::ErrorKind::NotFound, message),
                ));
            }
            Err(e) => return Err(ManifestError::io(&file, e)),
        };
        let text = String::from_utf8(bytes).map_err(|e| {
            let offset = e.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(e.as_bytes());
            let (line, column) = locate::line_column(&text, offset);
            ManifestError::Parse {
                path: file.clone(),
                line,
                column,
                message: "the file is not valid UTF-8".into(),
            }
        })?;
        Self::parse(&file, &text)
    }

    /// Parses `text` as the manifest at `path` without touching the file system (for tests and
    /// bundles). `path` is used for error messages and to derive `dir`.
    pub fn parse(path: &Path, text: &str) -> Result<LoadedManifest, ManifestError> {
        let manifest: Manifest =
            toml::from_str(text).map_err(|e| locate::parse_error(path, text, &e))?;
        egress::check_links(&manifest.egress, &manifest.credentials).map_err(
            |(span, message)| {
                let (line, column) = locate::line_column(text, span.start);
                ManifestError::Parse {
                    path: path.to_path_buf(),
                    line,
                    column,
                    message,
                }
            },
        )?;
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok(LoadedManifest {
            path: path.to_path_buf(),
            dir,
            manifest,
        })
    }

    /// `dir.join(rel)`.
    pub fn resolve(&self, rel: &RelativePath) -> PathBuf {
        self.dir.join(rel.as_path())
    }
}

/// Reads at most [`MAX_MANIFEST_BYTES`]; a larger file is an error.
fn read_capped(path: &Path) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("manifest is larger than {}", ByteSize(MAX_MANIFEST_BYTES)),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests;
