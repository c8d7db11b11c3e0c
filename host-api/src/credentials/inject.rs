//! [`Injection`]: one credential turned into what goes on the wire, and the forms of it the
//! redactor must scrub from the response.
//!
//! Built by the host from the declared type and the stored value, never from anything the
//! guest sent. Headers are marked sensitive so no `Debug` of the request prints them (CR-10),
//! and exactly one copy is sent: whatever the guest set under that name is removed first (CR-04).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use super::{CredentialSpec, Secret, SecretError};
use crate::egress::fields::param_name;
use crate::egress::redact::SecretForms;

/// Where the value goes.
enum Placement {
    Header(HeaderName, HeaderValue),
    /// Parameter name and the percent-encoded value.
    Query(String, String),
}

/// A credential ready to inject into one request.
pub struct Injection {
    placement: Placement,
    forms: SecretForms,
}

impl Injection {
    /// The injection for a credential declared as `spec` holding `secret` (for oauth2, the
    /// current access token).
    pub fn new(spec: &CredentialSpec, secret: &Secret) -> Result<Self, SecretError> {
        let value = secret.expose();
        let header = |name: HeaderName, text: String| {
            let mut value = HeaderValue::from_str(&text).map_err(|_| SecretError::Character {
                what: "byte not allowed in a header",
                at: 0,
            })?;
            value.set_sensitive(true);
            Ok::<_, SecretError>(Placement::Header(name, value))
        };
        let (placement, forms) = match spec {
            CredentialSpec::Bearer | CredentialSpec::OAuth2(_) => (
                header(AUTHORIZATION, format!("Bearer {value}"))?,
                SecretForms::token(value),
            ),
            CredentialSpec::Basic => {
                let (user, password) = value
                    .split_once(':')
                    .ok_or(SecretError::Basic("there is no `:`"))?;
                (
                    header(AUTHORIZATION, format!("Basic {}", STANDARD.encode(value)))?,
                    SecretForms::basic(user, password),
                )
            }
            CredentialSpec::ApiKeyHeader(name) => (
                header(name.clone(), value.to_string())?,
                SecretForms::token(value),
            ),
            CredentialSpec::ApiKeyQuery(name) => (
                Placement::Query(
                    name.clone(),
                    utf8_percent_encode(value, NON_ALPHANUMERIC).to_string(),
                ),
                SecretForms::token(value),
            ),
        };
        Ok(Self { placement, forms })
    }

    /// Puts the credential on a request: replaces any header of the same name the guest set,
    /// or any query parameter of the same name in `path_and_query`, which is returned rewritten.
    pub fn apply(&self, headers: &mut HeaderMap, path_and_query: &str) -> String {
        match &self.placement {
            Placement::Header(name, value) => {
                headers.remove(name);
                headers.insert(name.clone(), value.clone());
                path_and_query.to_string()
            }
            Placement::Query(name, value) => with_query_param(path_and_query, name, value),
        }
    }

    /// Every form of the value a response might echo.
    pub fn forms(&self) -> &SecretForms {
        &self.forms
    }

    /// Takes the forms, for the response redactor.
    pub fn into_forms(self) -> SecretForms {
        self.forms
    }
}

/// `path_and_query` without any `name=` parameter (however the guest encoded the name), plus
/// `name=value` at the end. The broker refuses a request that already carries the name
/// (`guest-credential`); this keeps the injection to one copy whoever calls it.
fn with_query_param(path_and_query: &str, name: &str, value: &str) -> String {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut out = String::from(path);
    out.push('?');
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        if param_name(pair) != name {
            out.push_str(pair);
            out.push('&');
        }
    }
    out.push_str(name);
    out.push('=');
    out.push_str(value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::CredentialType;

    fn secret(kind: CredentialType, value: &str) -> Secret {
        Secret::new(kind, value.to_string()).expect("valid")
    }

    #[test]
    fn headers_replace_guest_copies_and_are_sensitive() {
        let cases = [
            (
                CredentialSpec::Bearer,
                secret(CredentialType::Bearer, "tok"),
                "authorization",
                "Bearer tok",
            ),
            (
                CredentialSpec::Basic,
                secret(CredentialType::Basic, "alice:open sesame"),
                "authorization",
                "Basic YWxpY2U6b3BlbiBzZXNhbWU=",
            ),
            (
                CredentialSpec::ApiKeyHeader(HeaderName::from_static("x-api-key")),
                secret(CredentialType::ApiKey, "k-123"),
                "x-api-key",
                "k-123",
            ),
        ];
        for (spec, secret, name, want) in cases {
            let mut headers = HeaderMap::new();
            headers.append(name, HeaderValue::from_static("attacker"));
            headers.append(name, HeaderValue::from_static("attacker-2"));
            let injection = Injection::new(&spec, &secret).expect("injects");
            let uri = injection.apply(&mut headers, "/x?a=1");
            assert_eq!(uri, "/x?a=1");
            let values: Vec<_> = headers.get_all(name).iter().collect();
            assert_eq!(values.len(), 1, "{name}: exactly one copy");
            assert_eq!(values[0], want);
            assert!(values[0].is_sensitive());
            assert!(!format!("{headers:?}").contains(want));
        }
    }

    #[test]
    fn query_keys_replace_guest_parameters_however_encoded() {
        let spec = CredentialSpec::ApiKeyQuery("api_key".into());
        let injection =
            Injection::new(&spec, &secret(CredentialType::ApiKey, "a/b+c")).expect("injects");
        let mut headers = HeaderMap::new();
        let cases = [
            ("/v1/items", "/v1/items?api_key=a%2Fb%2Bc"),
            ("/v1/items?", "/v1/items?api_key=a%2Fb%2Bc"),
            ("/v1?page=2", "/v1?page=2&api_key=a%2Fb%2Bc"),
            (
                "/v1?api_key=evil&page=2&api%5Fkey=evil2&api_key",
                "/v1?page=2&api_key=a%2Fb%2Bc",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(injection.apply(&mut headers, input), want, "{input}");
        }
        assert!(headers.is_empty());
    }
}
