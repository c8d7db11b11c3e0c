//! `[[egress]]` and `[credentials.<name>]`: where an integration may send requests, and the
//! credentials the host injects on them.
//!
//! Rules parse with the same grammar the runtime enforces ([`EgressRule::parse`]), so what
//! `airlock check` accepts is exactly what the broker allows. Credentials are declarations only:
//! their values never appear in a manifest.

use std::collections::BTreeMap;
use std::ops::Range;
use std::str::FromStr;

use airlock_host_api::policy::egress::{EgressRule, parse_credential};
use serde::de::{self, Deserialize, Deserializer};
use serde::{Serialize, Serializer};
use toml::Spanned;

use super::fields::{InvalidValue, invalid, string_newtype_serde};
use super::urls::HttpsUrl;

/// `[[egress]]`: one rule, e.g. `url = "https://slack.com/api/chat.postMessage"`,
/// `methods = ["POST"]`, `credential = "slack"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressEntry {
    rule: EgressRule,
    /// Where `credential = "…"` stands, to point at it if no table declares that credential.
    credential_span: Option<Range<usize>>,
}

impl EgressEntry {
    pub fn rule(&self) -> &EgressRule {
        &self.rule
    }
}

impl Serialize for EgressEntry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.rule.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for EgressEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            url: String,
            methods: Vec<String>,
            #[serde(default)]
            credential: Option<Spanned<String>>,
            /// Send the invocation's W3C trace context (`traceparent`) with these requests.
            #[serde(default)]
            trace: bool,
        }
        let raw = Raw::deserialize(deserializer)?;
        let credential = raw.credential.as_ref().map(|c| c.get_ref().as_str());
        let rule = EgressRule::parse(&raw.url, &raw.methods, credential)
            .map_err(|e| de::Error::custom(format!("invalid egress rule {}: {e}", e.part())))?
            .with_trace(raw.trace);
        Ok(Self {
            rule,
            credential_span: raw.credential.map(|c| c.span()),
        })
    }
}

/// The name of a declared credential: `[a-z0-9-]`, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CredentialName(String);

impl CredentialName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for CredentialName {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_credential(s)
            .map(Self)
            .map_err(|e| invalid(format!("credential name {s:?} {e}")))
    }
}

string_newtype_serde!(CredentialName, "a credential name");

/// `[credentials.<name>]`: how the host authenticates requests made under rules naming it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum CredentialDecl {
    /// `Authorization: Bearer <secret>`.
    Bearer {},
    /// `Authorization: Basic base64(user:password)`; the secret is `user:password`.
    Basic {},
    /// An API key in one header or one query parameter.
    ApiKey(ApiKey),
    /// OAuth 2.0: the host obtains and refreshes the token; the guest never sees it.
    Oauth2(OAuth2),
}

/// Where an API key goes. Exactly one of `header` or `query`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(try_from = "RawApiKey", into = "RawApiKey")]
pub enum ApiKey {
    /// Header name, e.g. `x-api-key` (lowercased).
    Header(http::HeaderName),
    /// Query parameter name, e.g. `api_key`; audit records always omit queries.
    Query(String),
}

#[derive(Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApiKey {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    query: Option<String>,
}

/// Headers the host owns or that carry other credentials: an API key may not be sent in them.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
];

impl TryFrom<RawApiKey> for ApiKey {
    type Error = String;

    fn try_from(raw: RawApiKey) -> Result<Self, String> {
        match (raw.header, raw.query) {
            (Some(header), None) => {
                let name = http::HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| format!("api-key header {header:?} is not a valid header name"))?;
                if RESERVED_HEADERS.contains(&name.as_str()) {
                    return Err(format!(
                        "api-key header {header:?} is reserved; name another"
                    ));
                }
                Ok(Self::Header(name))
            }
            (None, Some(query)) => {
                let valid = !query.is_empty()
                    && query
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
                if !valid {
                    return Err(format!(
                        "api-key query parameter {query:?} must be letters, digits, '-', '_' or '.'"
                    ));
                }
                Ok(Self::Query(query))
            }
            (Some(_), Some(_)) => Err("an api-key goes in `header` or `query`, not both".into()),
            (None, None) => Err("an api-key needs `header = \"…\"` or `query = \"…\"`".into()),
        }
    }
}

impl From<ApiKey> for RawApiKey {
    fn from(key: ApiKey) -> Self {
        match key {
            ApiKey::Header(h) => Self {
                header: Some(h.as_str().to_string()),
                query: None,
            },
            ApiKey::Query(q) => Self {
                header: None,
                query: Some(q),
            },
        }
    }
}

/// An OAuth 2.0 credential. The declared scopes are the most any connection may request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(try_from = "RawOAuth2", into = "RawOAuth2")]
pub struct OAuth2 {
    pub grant: Grant,
    pub token_url: HttpsUrl,
    /// Present exactly for the authorization-code grant.
    pub authorize_url: Option<HttpsUrl>,
    pub scopes: Vec<String>,
    /// Authorization-code only: each end user connects their own account, and an invocation
    /// uses the account of the user it names.
    pub per_user: bool,
}

/// How the host obtains tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Grant {
    /// The host holds a client id and secret and asks for tokens itself.
    ClientCredentials,
    /// A person consents once (per tenant or user); the host keeps and refreshes the tokens.
    AuthorizationCode,
}

#[derive(Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawOAuth2 {
    grant: Grant,
    token_url: HttpsUrl,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    authorize_url: Option<HttpsUrl>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    per_user: bool,
}

impl TryFrom<RawOAuth2> for OAuth2 {
    type Error = String;

    fn try_from(raw: RawOAuth2) -> Result<Self, String> {
        match (raw.grant, &raw.authorize_url) {
            (Grant::AuthorizationCode, None) => {
                return Err("the authorization-code grant needs `authorize-url`".into());
            }
            (Grant::ClientCredentials, Some(_)) => {
                return Err("`authorize-url` is only used by the authorization-code grant".into());
            }
            (Grant::ClientCredentials, None) if raw.per_user => {
                return Err(
                    "`per-user` needs the authorization-code grant: a client's own \
                            tokens belong to no user"
                        .into(),
                );
            }
            _ => {}
        }
        for (i, scope) in raw.scopes.iter().enumerate() {
            // RFC 6749 §3.3 scope-token: %x21 / %x23-5B / %x5D-7E.
            let token = !scope.is_empty()
                && scope
                    .bytes()
                    .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E));
            if !token {
                return Err(format!("scope {scope:?} is not a valid OAuth scope token"));
            }
            if raw.scopes[..i].contains(scope) {
                return Err(format!("scope {scope:?} is listed twice"));
            }
        }
        Ok(Self {
            grant: raw.grant,
            token_url: raw.token_url,
            authorize_url: raw.authorize_url,
            scopes: raw.scopes,
            per_user: raw.per_user,
        })
    }
}

impl From<OAuth2> for RawOAuth2 {
    fn from(o: OAuth2) -> Self {
        Self {
            grant: o.grant,
            token_url: o.token_url,
            authorize_url: o.authorize_url,
            scopes: o.scopes,
            per_user: o.per_user,
        }
    }
}

/// Every credential a rule names is declared, and every declared credential is used by a rule
/// (least privilege: a credential no rule can send is one nobody should have to store).
pub(super) fn check_links(
    egress: &[EgressEntry],
    credentials: &BTreeMap<CredentialName, Spanned<CredentialDecl>>,
) -> Result<(), (Range<usize>, String)> {
    for entry in egress {
        if let (Some(name), Some(span)) = (entry.rule.credential(), &entry.credential_span)
            && !credentials.keys().any(|k| k.as_str() == name)
        {
            return Err((
                span.clone(),
                format!(
                    "credential `{name}` is not declared: add a [credentials.{name}] table (in `egress`)"
                ),
            ));
        }
    }
    for (name, decl) in credentials {
        let used = egress
            .iter()
            .any(|e| e.rule.credential() == Some(name.as_str()));
        if !used {
            return Err((
                decl.span(),
                format!(
                    "credential `{name}` is declared but no [[egress]] rule uses it; remove it (in `credentials.{name}`)"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::manifest::{LoadedManifest, ManifestError};

    const BASE: &str = r#"[integration]
id = "acme/notifier"
version = "0.1.0"
description = "Posts alerts."
component = "n.wasm"
[publisher]
name = "Acme"
support = "mailto:s@acme.example"
privacy-policy = "https://acme.example/privacy"
[actions.post]
description = "Posts."
input = "in.json"
output = "out.json"
"#;

    fn parse(extra: &str) -> Result<LoadedManifest, ManifestError> {
        LoadedManifest::parse(Path::new("airlock.toml"), &format!("{BASE}{extra}"))
    }

    /// The error's (line, column) relative to the start of `extra`, and its message.
    fn error(extra: &str) -> (usize, usize, String) {
        match parse(extra) {
            Ok(_) => panic!("accepted:\n{extra}"),
            Err(ManifestError::Parse {
                line,
                column,
                message,
                ..
            }) => (line - BASE.lines().count(), column, message),
            Err(e) => panic!("not a parse error: {e}"),
        }
    }

    #[test]
    fn egress_rules_and_credentials_parse_into_the_enforced_policy() {
        let loaded = parse(
            r#"
[[egress]]
url = "https://slack.com/api/chat.postMessage"
methods = ["POST"]
credential = "slack"
[[egress]]
url = "https://*.example.com"
methods = ["get", "HEAD"]
[credentials.slack]
type = "oauth2"
grant = "authorization-code"
token-url = "https://slack.com/api/oauth.v2.access"
authorize-url = "https://slack.com/oauth/v2/authorize"
scopes = ["chat:write"]
"#,
        )
        .expect("valid");
        let m = &loaded.manifest;
        let policy = m.egress_policy();
        assert_eq!(policy.rules().len(), 2);
        let allowed = policy
            .check("POST", "https://slack.com/api/chat.postMessage")
            .expect("allowed");
        assert_eq!(allowed.rule.credential(), Some("slack"));
        assert!(policy.check("GET", "https://a.example.com/x").is_ok());
        assert!(policy.check("GET", "https://example.com/").is_err());
        let decl = m.credentials.values().next().expect("one credential");
        let CredentialDecl::Oauth2(oauth) = decl.get_ref() else {
            panic!("oauth2 expected: {decl:?}");
        };
        assert_eq!(oauth.grant, Grant::AuthorizationCode);
        assert_eq!(oauth.scopes, ["chat:write"]);
    }

    #[test]
    fn every_credential_type_parses() {
        let cases = [
            ("type = \"bearer\"", CredentialDecl::Bearer {}),
            ("type = \"basic\"", CredentialDecl::Basic {}),
            (
                "type = \"api-key\"\nheader = \"X-Api-Key\"",
                CredentialDecl::ApiKey(ApiKey::Header(http::HeaderName::from_static("x-api-key"))),
            ),
            (
                "type = \"api-key\"\nquery = \"api_key\"",
                CredentialDecl::ApiKey(ApiKey::Query("api_key".into())),
            ),
        ];
        for (table, expected) in cases {
            let extra = format!(
                "[[egress]]\nurl = \"https://api.example.com\"\nmethods = [\"GET\"]\ncredential = \"k\"\n[credentials.k]\n{table}\n"
            );
            let loaded = parse(&extra).unwrap_or_else(|e| panic!("{table}: {e}"));
            let decl = loaded
                .manifest
                .credentials
                .values()
                .next()
                .expect("declared");
            assert_eq!(decl.get_ref(), &expected, "{table}");
        }
    }

    #[test]
    fn invalid_egress_and_credentials_are_located_and_named() {
        let rule = "[[egress]]\nurl = \"https://api.example.com\"\nmethods = [\"GET\"]\ncredential = \"k\"\n";
        let cases: Vec<(String, (usize, usize), &str)> = vec![
            (
                "\n[[egress]]\nurl = \"http://api.example.com\"\nmethods = [\"GET\"]\n".into(),
                (2, 1),
                "plain http",
            ),
            (
                "\n[[egress]]\nurl = \"https://127.0.0.1\"\nmethods = [\"GET\"]\n".into(),
                (2, 1),
                "invalid egress rule url",
            ),
            (
                "\n[[egress]]\nurl = \"https://*.com\"\nmethods = [\"GET\"]\n".into(),
                (2, 1),
                "invalid egress rule url",
            ),
            (
                "\n[[egress]]\nurl = \"https://api.example.com\"\nmethods = []\n".into(),
                (2, 1),
                "invalid egress rule methods",
            ),
            (
                "\n[[egress]]\nurl = \"https://api.example.com\"\nmethods = [\"GET\"]\nproxy = \"x\"\n".into(),
                (5, 1),
                "unknown field `proxy`",
            ),
            (format!("\n{rule}"), (5, 14), "credential `k` is not declared"),
            (
                "\n[credentials.unused]\ntype = \"bearer\"\n".into(),
                (2, 1),
                "credential `unused` is declared but no [[egress]] rule uses it",
            ),
            (
                format!("\n{rule}[credentials.k]\ntype = \"api-key\"\n"),
                (6, 1),
                "needs `header",
            ),
            (
                format!("\n{rule}[credentials.k]\ntype = \"api-key\"\nheader = \"Authorization\"\n"),
                (6, 1),
                "reserved",
            ),
            (
                format!("\n{rule}[credentials.k]\ntype = \"api-key\"\nheader = \"x\"\nquery = \"y\"\n"),
                (6, 1),
                "not both",
            ),
            (
                format!("\n{rule}[credentials.k]\ntype = \"oauth2\"\ngrant = \"authorization-code\"\ntoken-url = \"https://a.example/t\"\n"),
                (6, 1),
                "needs `authorize-url`",
            ),
            (
                format!("\n{rule}[credentials.k]\ntype = \"oauth2\"\ngrant = \"client-credentials\"\ntoken-url = \"https://a.example/t\"\nper-user = true\n"),
                (6, 1),
                "`per-user` needs the authorization-code grant",
            ),
            (
                format!("\n{rule}[credentials.k]\ntype = \"oauth2\"\ngrant = \"client-credentials\"\ntoken-url = \"https://a.example/t\"\nscopes = [\"a b\"]\n"),
                (6, 1),
                "not a valid OAuth scope token",
            ),
            (
                format!("\n{rule}[credentials.k]\ntype = \"password\"\n"),
                (7, 8),
                "unknown variant `password`",
            ),
            (
                format!("\n{rule}[credentials.K]\ntype = \"bearer\"\n"),
                (6, 14),
                "must start with a lowercase letter",
            ),
        ];
        for (extra, (line, column), fragment) in cases {
            let (got_line, got_column, message) = error(&extra);
            assert!(message.contains(fragment), "{extra}\n→ {message}");
            assert_eq!(
                (got_line, got_column),
                (line, column),
                "{extra}\n→ {message}"
            );
        }
    }
}
