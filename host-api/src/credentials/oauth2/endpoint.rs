//! One token call: the form each grant sends, the client authenticated by HTTP Basic, and
//! what the response may say (a bearer token only, an RFC 6749 error code only, the account
//! that consented).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Method};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use zeroize::Zeroizing;

use super::client::{OAuthClient, OAuthGrant, OAuthSpec};
use super::connection::{AccountSource, ProviderAccount};
use crate::credentials::{CredentialError, CredentialType, Secret};
use crate::egress::EgressSettings;
use crate::egress::host::{self, HostRequestError};

/// What `application/x-www-form-urlencoded` leaves as it is: RFC 3986's unreserved characters.
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// Largest token response read.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;
/// Token types sent as `Authorization: Bearer`: RFC 6750's, and Slack's names for its bearer
/// tokens.
const BEARER_TYPES: [&str; 3] = ["bearer", "bot", "user"];
/// Error codes meaning the refresh token is gone for good: RFC 6749's, and Slack's.
const REVOKED: [&str; 3] = ["invalid_grant", "invalid_refresh_token", "token_revoked"];
/// The longest `expires_in` believed: a larger one (up to u64::MAX) would overflow the clock.
const MAX_LIFETIME: u64 = 366 * 24 * 3600;
/// Longest provider account id kept; a longer one (or one with control characters) is dropped.
const MAX_ACCOUNT_ID: usize = 256;

/// A token the endpoint issued.
pub(super) struct Issued {
    pub(super) access: Secret,
    pub(super) refresh: Option<Zeroizing<String>>,
    /// Seconds until the access token expires, if the server said.
    pub(super) lifetime: Option<u64>,
    /// The scopes granted, if the server said (else those asked for).
    pub(super) scopes: Option<Vec<String>>,
    pub(super) account: Option<ProviderAccount>,
}

/// The form of one token call.
pub(super) enum TokenForm<'a> {
    ClientCredentials,
    Refresh(&'a str),
    Code {
        code: &'a str,
        verifier: &'a str,
        redirect_uri: &'a str,
    },
}

/// One token call to `spec`'s token endpoint, through the egress transport (so the token URL
/// passes the same address checks as guest requests).
pub(super) async fn request(
    settings: &EgressSettings,
    credential: &str,
    spec: &OAuthSpec,
    client: &OAuthClient,
    form: TokenForm<'_>,
) -> Result<Issued, CredentialError> {
    let fail = |reason: &str| CredentialError::Token {
        name: credential.to_string(),
        reason: reason.to_string(),
    };
    let encode = |s: &str| utf8_percent_encode(s, FORM).to_string();
    let refreshing = matches!(form, TokenForm::Refresh(_));
    let mut body = Zeroizing::new(match form {
        TokenForm::ClientCredentials => "grant_type=client_credentials".to_string(),
        TokenForm::Refresh(token) => {
            format!("grant_type=refresh_token&refresh_token={}", encode(token))
        }
        TokenForm::Code {
            code,
            verifier,
            redirect_uri,
        } => format!(
            "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={}",
            encode(code),
            encode(redirect_uri),
            encode(verifier)
        ),
    });
    if !spec.scopes.is_empty() && spec.grant == OAuthGrant::ClientCredentials {
        body.push_str("&scope=");
        body.push_str(&encode(&spec.scopes.join(" ")));
    }
    // RFC 6749 §2.3.1: id and secret are form-encoded, then sent as HTTP Basic.
    let basic = Zeroizing::new(format!(
        "Basic {}",
        STANDARD.encode(format!(
            "{}:{}",
            encode(&client.client_id),
            encode(&client.client_secret)
        ))
    ));
    let mut authorization =
        HeaderValue::from_str(&basic).map_err(|_| fail("invalid-client-secret"))?;
    authorization.set_sensitive(true);
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    headers.insert(AUTHORIZATION, authorization);
    let (status, body) = host::send(
        settings,
        Method::POST,
        &spec.token_url,
        headers,
        Bytes::from(body.as_bytes().to_vec()),
        MAX_TOKEN_RESPONSE,
    )
    .await
    .map_err(|e| match e {
        HostRequestError::Unreadable => fail("token-response-unreadable"),
        other => fail(&other.to_string()),
    })?;
    let body: TokenResponse =
        serde_json::from_slice(&body).map_err(|_| fail("token-response-invalid"))?;
    if !status.is_success() || body.access_token.is_none() {
        let code = body.error.as_deref().unwrap_or("no-access-token");
        if refreshing && REVOKED.contains(&code) {
            return Err(CredentialError::NeedsReauth(credential.to_string()));
        }
        // Only the RFC 6749 error code, and only if it looks like one: never free text.
        let code = if code.len() <= 40
            && code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'-')
        {
            code
        } else {
            "token-error"
        };
        return Err(fail(&format!("HTTP {}: {code}", status.as_u16())));
    }
    if let Some(kind) = &body.token_type
        && !BEARER_TYPES.iter().any(|t| kind.eq_ignore_ascii_case(t))
    {
        // A DPoP or MAC token sent as a bearer token would fail, or worse, be replayable.
        return Err(fail("token-type-not-bearer"));
    }
    let account = ProviderAccount::from_response(&body);
    let access = body
        .access_token
        .map(|t| Secret::new(CredentialType::Bearer, t.to_string()))
        .transpose()
        .map_err(|e| CredentialError::Malformed(credential.to_string(), e))?
        .ok_or_else(|| fail("no-access-token"))?;
    // RFC 6749 §5.1 separates scopes with spaces; Slack with commas.
    let scopes = body.scope.map(|s| {
        s.split([' ', ','])
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect()
    });
    Ok(Issued {
        account,
        access,
        refresh: body.refresh_token,
        lifetime: body.expires_in.map(|s| s.min(MAX_LIFETIME)),
        scopes,
    })
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: Option<Zeroizing<String>>,
    token_type: Option<String>,
    expires_in: Option<u64>,
    refresh_token: Option<Zeroizing<String>>,
    scope: Option<String>,
    error: Option<String>,
    /// Who consented, in the forms providers name them (Slack's objects; generic ids).
    authed_user: Option<Value>,
    team: Option<Value>,
    user_id: Option<Value>,
    account_id: Option<Value>,
    id_token: Option<Zeroizing<String>>,
}

impl ProviderAccount {
    /// The account a token response names, if any: Slack's `authed_user.id` (with
    /// `team.id`), else `user_id`, else `account_id`, else an ID token's `sub` (unverified).
    fn from_response(body: &TokenResponse) -> Option<Self> {
        let field = |value: &Option<Value>, key: Option<&str>| {
            let value = match key {
                Some(key) => value.as_ref()?.get(key)?,
                None => value.as_ref()?,
            };
            account_id(value)
        };
        let workspace = field(&body.team, Some("id"));
        let stated = field(&body.authed_user, Some("id"))
            .or_else(|| field(&body.user_id, None))
            .or_else(|| field(&body.account_id, None));
        if let Some(id) = stated {
            return Some(Self {
                id,
                workspace,
                source: AccountSource::TokenResponse,
            });
        }
        let claims = body.id_token.as_deref()?.split('.').nth(1)?;
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?;
        Some(Self {
            id: account_id(claims.get("sub")?)?,
            workspace,
            source: AccountSource::IdTokenUnverified,
        })
    }
}

/// A string or number id, if it is short and has no control characters.
fn account_id(value: &Value) -> Option<String> {
    let id = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!id.is_empty() && id.len() <= MAX_ACCOUNT_ID && !id.chars().any(char::is_control))
        .then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(body: Value) -> TokenResponse {
        serde_json::from_value(body).expect("a token response")
    }

    #[test]
    fn the_account_comes_from_what_the_token_response_names() {
        let slack = response(serde_json::json!({
            "access_token": "xoxb-1", "authed_user": {"id": "U024BE7LH"},
            "team": {"id": "T9TK3CUKW", "name": "Acme"}
        }));
        assert_eq!(
            ProviderAccount::from_response(&slack),
            Some(ProviderAccount {
                id: "U024BE7LH".into(),
                workspace: Some("T9TK3CUKW".into()),
                source: AccountSource::TokenResponse,
            })
        );
        let numeric = response(serde_json::json!({"access_token": "t", "user_id": 4711}));
        assert_eq!(
            ProviderAccount::from_response(&numeric).map(|a| a.id),
            Some("4711".into())
        );
        // An ID token's subject is taken, and marked as unverified.
        let claims = URL_SAFE_NO_PAD.encode(br#"{"sub": "248289761001", "iss": "https://x"}"#);
        let oidc = response(serde_json::json!({
            "access_token": "t", "id_token": format!("e30.{claims}.sig")
        }));
        let account = ProviderAccount::from_response(&oidc).expect("sub");
        assert_eq!(account.id, "248289761001");
        assert_eq!(account.source, AccountSource::IdTokenUnverified);
        // Control characters, an oversized id, objects and nothing at all: no account.
        for body in [
            serde_json::json!({"access_token": "t", "user_id": "U1\nforged"}),
            serde_json::json!({"access_token": "t", "account_id": "x".repeat(300)}),
            serde_json::json!({"access_token": "t", "user_id": {"id": "U1"}}),
            serde_json::json!({"access_token": "t", "id_token": "not-a-jwt"}),
            serde_json::json!({"access_token": "t"}),
        ] {
            assert_eq!(
                ProviderAccount::from_response(&response(body.clone())),
                None,
                "{body}"
            );
        }
    }
}
