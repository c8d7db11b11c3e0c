//! From a manifest on disk to a ready-to-instantiate integration: manifest, limits, schemas,
//! component bytes, compile (or verified cache), import check, pre-instantiation.
//!
//! Everything that can be checked once is checked here, so an invocation does no parsing
//! beyond its own input.
//!
//! # Layout
//! - this module: [`Integration`], loading from a directory or a verified bundle.
//! - [`actions`]: each action's schemas, compiled at load or on the action's first use.

mod actions;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use airlock_host_api::HostState;
use airlock_host_api::bindings::IntegrationPre;
use airlock_host_api::credentials::{CredentialSpec, OAuthGrant, OAuthSpec};
use airlock_host_api::egress::IntegrationEgress;
use airlock_host_api::kv::KvQuota;
use airlock_host_api::policy::{LimitError, Limits};
use airlock_host_api::wasi::{UnlinkedImport, check_import};
use serde::Serialize;
use wasmtime::component::Component;

pub(crate) use actions::ActionSchemas;
pub use actions::SchemaCompile;
use actions::{Action, Parsed};

use crate::bundle::VerifiedBundle;
use crate::cache::CacheOutcome;
use crate::digest::Digest;
use crate::json::{Document, JsonError};
use crate::manifest::{
    ApiKey, CredentialDecl, EgressEntry, Grant, LoadedManifest, MANIFEST_FILE_NAME, Manifest,
    ManifestError, RelativePath,
};
use crate::runtime::Runtime;
use crate::schema::{Schema, SchemaError, Violations};
use airlock_host_api::audit::CodeIdentity;
use airlock_host_api::policy::egress::EgressPolicy;
use airlock_host_api::policy::grant::{self, GrantError};

/// Largest component file accepted, checked before reading it whole.
const MAX_COMPONENT_BYTES: u64 = 64 << 20;

/// A loaded integration: validated manifest, its schemas (compiled, or parsed until their action
/// first runs) and a pre-instantiated component.
pub struct Integration {
    manifest: LoadedManifest,
    digest: Digest,
    limits: Limits,
    /// The kv quota, when the manifest declares `[kv]`.
    kv: Option<KvQuota>,
    config_schema: Option<Schema>,
    actions: BTreeMap<String, Action>,
    imports: Vec<String>,
    cache: CacheOutcome,
    pub(crate) egress: Arc<IntegrationEgress>,
    pub(crate) pre: IntegrationPre<HostState>,
    /// Set when loaded from a verified bundle.
    signed: Option<SignedIdentity>,
    /// The signing key id and statement digest, when loaded through the trust store.
    provenance: Option<(String, String)>,
}

/// Config that passed the integration's config schema; the only kind an invocation accepts.
#[derive(Debug, Clone)]
pub struct ValidatedConfig {
    pub(crate) json: Arc<str>,
}

/// Why an integration could not be loaded. Each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{path}: {source}")]
    Limits { path: PathBuf, source: LimitError },
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("cannot read component {path}: {source}{hint}")]
    ComponentIo {
        path: PathBuf,
        source: std::io::Error,
        hint: &'static str,
    },
    #[error("component {path} is {size} bytes; the most accepted is {max}")]
    ComponentTooLarge { path: PathBuf, size: u64, max: u64 },
    #[error("{path} is not a loadable component: {reason}")]
    Compile { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Import {
        path: PathBuf,
        source: UnlinkedImport,
    },
    #[error("{path} does not fit the airlock:integration world: {reason}")]
    World { path: PathBuf, reason: String },
    #[error("{path} is named by the manifest but missing from the bundle")]
    MissingFromBundle { path: PathBuf },
    #[error("{path} declares {declared}, but the signature covers {signed}")]
    Identity {
        path: PathBuf,
        declared: Box<SignedIdentity>,
        signed: Box<SignedIdentity>,
    },
}

/// Who signed a bundle, and for what: the manifest must declare exactly this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignedIdentity {
    pub publisher: String,
    pub id: String,
    pub version: String,
}

impl std::fmt::Display for SignedIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} by {:?}", self.id, self.version, self.publisher)
    }
}

/// Why config was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config is not valid JSON: {0}")]
    Json(#[from] JsonError),
    #[error("config does not match {schema}:\n{violations}")]
    Schema {
        schema: PathBuf,
        violations: Violations,
    },
    #[error("this integration declares no [config] section, so it takes no config")]
    NotDeclared,
}

/// Where the loader reads an integration's files: a directory on disk (development), or the
/// files of a verified bundle in memory, so that what was verified is exactly what compiles.
enum Files<'a> {
    Disk,
    Bundle(&'a VerifiedBundle, SchemaCompile),
}

impl Files<'_> {
    fn schema(&self, manifest: &LoadedManifest, rel: &RelativePath) -> Result<Schema, LoadError> {
        let path = manifest.resolve(rel);
        match self {
            Files::Disk => Ok(Schema::load(&path)?),
            Files::Bundle(verified, _) => Ok(Schema::parse(&path, bundled(verified, rel, &path)?)?),
        }
    }

    /// One action's schemas, compiled now or (a bundle loaded to run) parsed now and compiled
    /// on the action's first use.
    fn action(
        &self,
        manifest: &LoadedManifest,
        input: &RelativePath,
        output: &RelativePath,
    ) -> Result<Action, LoadError> {
        let Files::Bundle(verified, SchemaCompile::OnFirstUse) = self else {
            return Ok(Action::compiled(ActionSchemas {
                input: self.schema(manifest, input)?,
                output: self.schema(manifest, output)?,
            }));
        };
        let parsed = |rel: &RelativePath| -> Result<Parsed, LoadError> {
            let path = manifest.resolve(rel);
            let value = Schema::read(&path, bundled(verified, rel, &path)?)?;
            Ok(Parsed { path, value })
        };
        Ok(Action::deferred(parsed(input)?, parsed(output)?))
    }

    /// The component's bytes, the path that names it in errors, and its digest (from the
    /// verified statement for a bundle, which hashed it already).
    fn component(
        &self,
        manifest: &LoadedManifest,
    ) -> Result<(PathBuf, Cow<'_, [u8]>, Digest), LoadError> {
        match self {
            Files::Disk => {
                let path = manifest.resolve(&manifest.manifest.integration.component);
                let bytes = read_component(&path)?;
                let digest = Digest::of(&bytes);
                Ok((path, Cow::Owned(bytes), digest))
            }
            Files::Bundle(verified, _) => {
                let path = manifest.dir.join(crate::bundle::COMPONENT);
                let missing = || LoadError::MissingFromBundle { path: path.clone() };
                let bytes = verified
                    .files
                    .get(crate::bundle::COMPONENT)
                    .ok_or_else(missing)?;
                let digest = verified
                    .digests
                    .get(crate::bundle::COMPONENT)
                    .ok_or_else(missing)?;
                Ok((path, Cow::Borrowed(bytes), Digest::from_bytes(*digest)))
            }
        }
    }
}

/// The bytes of the bundle file `rel` (`path` names it in errors).
fn bundled(
    verified: &VerifiedBundle,
    rel: &RelativePath,
    path: &Path,
) -> Result<Vec<u8>, LoadError> {
    verified
        .files
        .get(rel.as_str())
        .cloned()
        .ok_or_else(|| LoadError::MissingFromBundle {
            path: path.to_path_buf(),
        })
}

impl Runtime {
    /// Loads the integration whose manifest is at `path` (a directory or an `airlock.toml`).
    pub fn load(&self, path: &Path) -> Result<Integration, LoadError> {
        self.load_files(LoadedManifest::load(path)?, &Files::Disk)
    }

    /// Loads an integration from a verified bundle's files; `origin` (the bundle's path) names
    /// it in errors. Nothing is read from disk, and nothing compiles unless the manifest's
    /// publisher, id and version are the ones the signature covers. The integration carries the
    /// bundle's signed identity and provenance (signing key, statement digest). `schemas` says
    /// when the actions' schemas compile.
    pub fn load_bundle(
        &self,
        origin: &Path,
        verified: &VerifiedBundle,
        schemas: SchemaCompile,
    ) -> Result<Integration, LoadError> {
        let manifest = bundle_manifest(origin, &verified.files)?;
        let manifest_path = manifest.path.clone();
        let m = &manifest.manifest;
        let declared = SignedIdentity {
            publisher: m.publisher.name.clone(),
            id: m.integration.id.to_string(),
            version: m.integration.version.to_string(),
        };
        let signed = SignedIdentity {
            publisher: verified.publisher.clone(),
            id: verified.id.clone(),
            version: verified.version.clone(),
        };
        if declared != signed {
            return Err(LoadError::Identity {
                path: manifest_path,
                declared: Box::new(declared),
                signed: Box::new(signed),
            });
        }
        let mut integration = self.load_files(manifest, &Files::Bundle(verified, schemas))?;
        integration.signed = Some(signed);
        integration.set_provenance(&verified.key_id, &verified.digest);
        Ok(integration)
    }

    fn load_files(
        &self,
        manifest: LoadedManifest,
        files: &Files,
    ) -> Result<Integration, LoadError> {
        let m = &manifest.manifest;
        let limits =
            Limits::resolve(m.requested_limits(), &self.settings.ceilings).map_err(|source| {
                LoadError::Limits {
                    path: manifest.path.clone(),
                    source,
                }
            })?;
        let kv =
            m.kv.map(|kv| KvQuota::resolve(kv.requested(), &self.settings.ceilings))
                .transpose()
                .map_err(|source| LoadError::Limits {
                    path: manifest.path.clone(),
                    source,
                })?;
        let config_schema = m
            .config
            .as_ref()
            .map(|c| files.schema(&manifest, &c.schema))
            .transpose()?;
        let mut actions = BTreeMap::new();
        for (name, action) in &m.actions {
            let action = files.action(&manifest, &action.input, &action.output)?;
            actions.insert(name.to_string(), action);
        }

        let (component_path, bytes, digest) = files.component(&manifest)?;
        let (component, cache) = self
            .cache
            .load_or_compile(&self.engine, &digest, &bytes)
            .map_err(|e| LoadError::Compile {
                path: component_path.clone(),
                reason: format!("{e:#}"),
            })?;
        let imports =
            check_imports(&self.engine, &component).map_err(|source| LoadError::Import {
                path: component_path.clone(),
                source,
            })?;
        let world = |e: wasmtime::Error| LoadError::World {
            path: component_path.clone(),
            reason: format!("{e:#}"),
        };
        let instance_pre = self.linker.instantiate_pre(&component).map_err(world)?;
        let pre = IntegrationPre::new(instance_pre).map_err(world)?;
        let egress = Arc::new(integration_egress(&manifest.manifest));
        Ok(Integration {
            egress,
            manifest,
            digest,
            limits,
            kv,
            config_schema,
            actions,
            imports,
            cache,
            pre,
            signed: None,
            provenance: None,
        })
    }
}

/// Parses the manifest among a verified bundle's `files` (`origin` names the bundle).
pub fn bundle_manifest(
    origin: &Path,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<LoadedManifest, LoadError> {
    let path = origin.join(MANIFEST_FILE_NAME);
    let text = files
        .get(MANIFEST_FILE_NAME)
        .ok_or(LoadError::MissingFromBundle { path: path.clone() })?;
    let text = std::str::from_utf8(text).map_err(|_| {
        ManifestError::io(
            &path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, "not valid UTF-8"),
        )
    })?;
    Ok(LoadedManifest::parse(&path, text)?)
}

/// The broker's view of an integration: its rules, and how each declared credential travels.
fn integration_egress(manifest: &Manifest) -> IntegrationEgress {
    IntegrationEgress::new(manifest.egress_policy(), credential_specs(manifest))
}

/// How each credential `manifest` declares travels, keyed by name (the broker's view).
pub fn credential_specs(manifest: &Manifest) -> BTreeMap<String, CredentialSpec> {
    manifest
        .credentials
        .iter()
        .map(|(name, decl)| (name.as_str().to_string(), credential_spec(decl.get_ref())))
        .collect()
}

/// A declaration as the broker needs it. Header names were checked when the manifest parsed.
pub fn credential_spec(decl: &CredentialDecl) -> CredentialSpec {
    match decl {
        CredentialDecl::Bearer {} => CredentialSpec::Bearer,
        CredentialDecl::Basic {} => CredentialSpec::Basic,
        CredentialDecl::ApiKey(ApiKey::Header(name)) => CredentialSpec::ApiKeyHeader(name.clone()),
        CredentialDecl::ApiKey(ApiKey::Query(name)) => CredentialSpec::ApiKeyQuery(name.clone()),
        CredentialDecl::Oauth2(oauth) => CredentialSpec::OAuth2(OAuthSpec {
            grant: match oauth.grant {
                Grant::ClientCredentials => OAuthGrant::ClientCredentials,
                Grant::AuthorizationCode => OAuthGrant::AuthorizationCode,
            },
            token_url: oauth.token_url.to_string(),
            scopes: oauth.scopes.clone(),
            per_user: oauth.per_user,
        }),
    }
}

fn read_component(path: &Path) -> Result<Vec<u8>, LoadError> {
    let io = |source: std::io::Error| {
        let hint = if source.kind() == std::io::ErrorKind::NotFound {
            " (build it first: `airlock build <dir>`)"
        } else {
            ""
        };
        LoadError::ComponentIo {
            path: path.to_path_buf(),
            source,
            hint,
        }
    };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > MAX_COMPONENT_BYTES {
        return Err(LoadError::ComponentTooLarge {
            path: path.to_path_buf(),
            size,
            max: MAX_COMPONENT_BYTES,
        });
    }
    std::fs::read(path).map_err(io)
}

/// Checks every import against what the host links; returns the import names, sorted.
fn check_imports(
    engine: &wasmtime::Engine,
    component: &Component,
) -> Result<Vec<String>, UnlinkedImport> {
    let mut names: Vec<String> = component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    names.sort();
    for name in &names {
        check_import(name)?;
    }
    Ok(names)
}

impl Integration {
    /// Validates config text (`None` means `{}`) against the config schema.
    pub fn validate_config(&self, text: Option<&str>) -> Result<ValidatedConfig, ConfigError> {
        let Some(schema) = &self.config_schema else {
            return match text {
                None => Ok(ValidatedConfig { json: "{}".into() }),
                Some(_) => Err(ConfigError::NotDeclared),
            };
        };
        let document = Document::parse(text.unwrap_or("{}"), self.limits.input as usize)?;
        schema
            .validate(&document)
            .map_err(|violations| ConfigError::Schema {
                schema: self.config_schema_path().unwrap_or_default(),
                violations,
            })?;
        Ok(ValidatedConfig {
            // Written again compactly: the config is kept and injected as Airlock wrote it.
            json: document.to_value().to_string().into(),
        })
    }

    fn config_schema_path(&self) -> Option<PathBuf> {
        let section = self.manifest.manifest.config.as_ref()?;
        Some(self.manifest.resolve(&section.schema))
    }

    /// The declared action `name`'s schemas, compiled on first use if they were deferred.
    pub(crate) fn action(&self, name: &str) -> Option<Result<&ActionSchemas, &str>> {
        self.actions.get(name).map(Action::schemas)
    }

    /// The names of the declared actions, sorted.
    pub fn action_names(&self) -> Vec<&str> {
        self.actions.keys().map(String::as_str).collect()
    }

    /// The parsed manifest and where it lives.
    pub fn manifest(&self) -> &LoadedManifest {
        &self.manifest
    }

    /// SHA-256 of the component bytes that were compiled.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The limits every invocation of this integration runs under.
    /// The verified signer, for integrations loaded from a bundle.
    pub fn signed(&self) -> Option<&SignedIdentity> {
        self.signed.as_ref()
    }

    /// The declared credentials and how each travels.
    pub fn credentials(&self) -> &BTreeMap<String, CredentialSpec> {
        self.egress.credentials()
    }

    /// The kv quota, when the integration declares `[kv]`.
    pub fn kv_quota(&self) -> Option<KvQuota> {
        self.kv
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Every import of the component, all of them checked against what the host links.
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// Whether the compiled artifact came from the cache.
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.cache
    }

    /// Cuts egress down to what `grant` approves (a subset of the manifest, or an error naming
    /// the first entry that is not).
    pub fn restrict_egress(&mut self, grant: &grant::Grant) -> Result<(), GrantError> {
        let manifest = &self.manifest.manifest;
        let rules = grant.apply(manifest.egress_policy().rules())?;
        self.egress = Arc::new(IntegrationEgress::new(
            EgressPolicy::new(rules),
            credential_specs(manifest),
        ));
        Ok(())
    }

    /// Records which trusted key signed this integration's bundle, and the bundle's digest.
    pub fn set_provenance(&mut self, key_id: &str, digest: &[u8; 32]) {
        self.provenance = Some((
            key_id.to_string(),
            format!("sha256:{}", hex::encode(digest)),
        ));
    }

    /// What the audit trail names this code by: id, version, the digest of the signed
    /// bundle (of the component, for unsigned development runs) and the signing key.
    pub fn code_identity(&self) -> CodeIdentity {
        let i = &self.manifest.manifest.integration;
        let (key, digest) = match &self.provenance {
            Some((key, digest)) => (Some(key.clone()), digest.clone()),
            None => (None, self.digest.to_string()),
        };
        CodeIdentity {
            id: i.id.to_string(),
            version: i.version.to_string(),
            digest,
            key,
        }
    }

    /// `publisher/name@version`, for messages.
    pub fn label(&self) -> String {
        let i = &self.manifest.manifest.integration;
        format!("{}@{}", i.id, i.version)
    }

    /// A machine-readable account of what the integration declares, for `airlock check`.
    pub fn describe(&self) -> IntegrationSummary<'_> {
        IntegrationSummary {
            manifest: self.manifest.path.as_path(),
            id: self.label(),
            digest: self.digest,
            limits: self.limits,
            actions: self.action_names(),
            config: self.config_schema.is_some(),
            egress: &self.manifest.manifest.egress,
            credentials: self
                .manifest
                .manifest
                .credentials
                .iter()
                .map(|(name, decl)| (name.as_str(), decl.get_ref()))
                .collect(),
            imports: &self.imports,
        }
    }
}

/// What `airlock check` reports.
#[derive(Debug, Serialize)]
pub struct IntegrationSummary<'a> {
    pub manifest: &'a Path,
    pub id: String,
    pub digest: Digest,
    pub limits: Limits,
    pub actions: Vec<&'a str>,
    pub config: bool,
    pub egress: &'a [EgressEntry],
    pub credentials: BTreeMap<&'a str, &'a CredentialDecl>,
    pub imports: &'a [String],
}
