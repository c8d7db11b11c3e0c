//! What a guest may not put in a request (docs/security-model.md, "Headers and parameters a
//! guest may not send").
//!
//! Two kinds of rule. Header names that re-route a request or take over the broker's own work
//! are refused on every request, when the guest sets them ([`is_refused_header`]: the fields API
//! answers `HeaderForbidden`, as for `Authorization`). Names that carry a credential
//! ([`is_credential_carrier`]) and query parameters that override the method
//! ([`is_method_override_param`]) can only be judged once the request is sent, against the rule
//! it matched: the broker refuses the request then.
//!
//! Names are compared as servers read them: case-insensitively, and with `_` read as `-`
//! (CGI, PHP, Rack and WSGI turn both into `HTTP_X_FORWARDED_FOR`).

use std::borrow::Cow;

use http::HeaderName;
use percent_encoding::percent_decode_str;
use wasmtime_wasi_http::DEFAULT_FORBIDDEN_HEADERS;

/// Header names no guest may set, whatever the request.
const REFUSED: &[&str] = &[
    // Hop-by-hop fields, framing and proxy control: the broker's HTTP client owns the
    // connection. `connection` could name the injected header as hop-by-hop (`Connection:
    // X-Api-Key`) for an intermediary to drop; `trailer` is what would let trailers out.
    "connection",
    "keep-alive",
    "proxy",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
    "expect",
    "max-forwards",
    "via",
    "host",
    // Credentials: the host injects the only one a request carries (`proxy-*` below).
    "authorization",
    "cookie",
    "cookie2",
    // Method overrides (Express, Symfony, ASP.NET, Google frontends).
    "x-method-override",
    // Path, host and scheme overrides (IIS and nginx rewrites, Symfony, proxies).
    "x-host",
    "x-http-host-override",
    "forwarded",
    "x-url-scheme",
    "x-scheme",
    "front-end-https",
    "x-arr-ssl",
    "cf-visitor",
    // The client's address or certificate, as a trusted proxy would assert it.
    "x-client-ip",
    "client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "cf-connecting-ipv6",
    "fastly-client-ip",
    "x-cluster-client-ip",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    "x-proxyuser-ip",
    "x-azure-clientip",
    "x-azure-socketip",
    "x-arr-clientcert",
    "x-client-cert",
    "x-ssl-client-cert",
    "ssl-client-cert",
    // The user, as an authenticating proxy would assert it.
    "remote-user",
    "x-remote-user",
    "x-credential-identifier",
    "x-anonymous-consumer",
    "x-userinfo",
];

/// Families of header names no guest may set, by prefix.
const REFUSED_PREFIXES: &[&str] = &[
    // `-override` and the rest of the method overrides.
    "x-http-method",
    // `-for`, `-host`, `-proto`, `-port`, `-prefix`, `-server`, `-scheme`, `-ssl`, `-uri`,
    // `-path`, `-client-cert`, `-user` and any other.
    "x-forwarded",
    // `-url`, `-uri`, `-method`, `-host`, `-forwarded-for`…
    "x-original",
    "x-rewrite",
    "x-override",
    // `-ip` and the like.
    "x-real-",
    // `-authorization`, `-connection`, `-authenticate`.
    "proxy-",
    "x-envoy-",
    "x-appengine-",
    // Identities asserted by authenticating proxies (Google IAP, Azure App Service, AWS ALB,
    // oauth2-proxy, Kong).
    "x-goog-authenticated-",
    "x-goog-iap-",
    "x-ms-client-principal",
    "x-ms-token-",
    "x-amzn-oidc-",
    "x-amzn-mtls-",
    "x-auth-request-",
    "x-authenticated-",
    "x-consumer-",
];

/// True when no guest may set header `name` on any request.
pub(crate) fn is_refused_header(name: &HeaderName) -> bool {
    if DEFAULT_FORBIDDEN_HEADERS.contains(name) {
        return true;
    }
    let name = as_server_reads(name);
    REFUSED.contains(&name.as_ref())
        || REFUSED_PREFIXES
            .iter()
            .any(|prefix| name.starts_with(prefix))
}

/// True when `a` and `b` name the same header for a server that reads `_` as `-`.
pub(crate) fn same_header(a: &HeaderName, b: &HeaderName) -> bool {
    as_server_reads(a) == as_server_reads(b)
}

/// `name` (already lowercase) with `_` read as `-`.
fn as_server_reads(name: &HeaderName) -> Cow<'_, str> {
    let name = name.as_str();
    if name.contains('_') {
        Cow::Owned(name.replace('_', "-"))
    } else {
        Cow::Borrowed(name)
    }
}

/// Words that make a name a credential carrier wherever they appear in it.
const CREDENTIAL_WORDS: &[&str] = &[
    "auth",
    "authorization",
    "authentication",
    "bearer",
    "apikey",
    "hapikey",
    "apitoken",
    "accesstoken",
    "authtoken",
    "idtoken",
    "refreshtoken",
    "privatetoken",
    "oauthtoken",
    "sessiontoken",
    "securitytoken",
    "accesskey",
    "secretkey",
    "secret",
    "password",
    "passwd",
    "pwd",
    "credential",
    "credentials",
    "signature",
    "sig",
    "jwt",
    "cookie",
    "session",
    "sessionid",
];

/// Before `token`, words of a pagination or sync cursor (`page_token`, `nextToken`), not a
/// credential.
const CURSOR_WORDS: &[&str] = &[
    "page",
    "pagination",
    "next",
    "prev",
    "previous",
    "continuation",
    "sync",
    "resume",
    "cursor",
    "skip",
    "delta",
    "change",
    "changes",
    "start",
    "end",
];

/// Before `key`, words that make it a credential (`api_key`, `X-Functions-Key`); other keys
/// (`Idempotency-Key`, `projectKey`, `sort_key`) name data.
const KEY_OWNERS: &[&str] = &[
    "api",
    "access",
    "secret",
    "private",
    "subscription",
    "app",
    "application",
    "client",
    "consumer",
    "auth",
    "functions",
    "master",
    "signing",
    "developer",
    "license",
    "service",
    "account",
    "user",
];

/// True when a header or query parameter named `name` looks like it carries a credential:
/// a word of it (see [`words`]) is one of [`CREDENTIAL_WORDS`]; or it is `token`, unless a
/// cursor word comes just before; or it is `key`, alone or just after a word that makes it a
/// credential. On a request the host injects a credential into, such a name is the guest's
/// own credential, which could make the upstream act as another account.
pub(crate) fn is_credential_carrier(name: &str) -> bool {
    let words = words(name);
    words.iter().enumerate().any(|(i, word)| {
        let before = i.checked_sub(1).map(|j| words[j].as_str());
        match word.as_str() {
            "token" => !before.is_some_and(|b| CURSOR_WORDS.contains(&b)),
            "key" => words.len() == 1 || before.is_some_and(|b| KEY_OWNERS.contains(&b)),
            word => CREDENTIAL_WORDS.contains(&word),
        }
    })
}

/// The parameter names that override a request's method (besides the header names), with `_`
/// read as `-` and any leading `-` or `$` removed.
const METHOD_OVERRIDE_PARAMS: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "http-method",
    "method-override",
];

/// True when query parameter `name` (decoded) overrides the request's method: `_method`
/// (Rails, Laravel, Symfony, Express method-override) or a method-override header name.
/// A plain `method` is data, not an override.
pub(crate) fn is_method_override_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase().replace('_', "-");
    let bare = name.trim_start_matches(['-', '$']);
    (bare == "method" && bare.len() < name.len()) || METHOD_OVERRIDE_PARAMS.contains(&bare)
}

/// The decoded name of one `name=value` query parameter: `+` is a space, then percent-decoded,
/// as servers read it.
pub(crate) fn param_name(pair: &str) -> String {
    let name = pair.split_once('=').map_or(pair, |(name, _)| name);
    percent_decode_str(&name.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// The decoded names of a query's parameters, split at `&` and at `;` (which some servers also
/// read as a separator).
pub(crate) fn query_names(query: &str) -> impl Iterator<Item = String> + '_ {
    query
        .split(['&', ';'])
        .filter(|pair| !pair.is_empty())
        .map(param_name)
}

/// The words of a name, lowercase: split at every character that is not an ASCII letter or
/// digit, and where camelCase starts a word (`pageToken` → `page`, `token`; `AWSAccessKeyId`
/// → `aws`, `access`, `key`, `id`).
fn words(name: &str) -> Vec<String> {
    let chars: Vec<char> = name.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_ascii_alphanumeric() {
            words.extend((!word.is_empty()).then(|| std::mem::take(&mut word)));
            continue;
        }
        let prev = i.checked_sub(1).map(|j| chars[j]);
        let next = chars.get(i + 1);
        let starts_word = c.is_ascii_uppercase()
            && prev.is_some_and(|p| {
                p.is_ascii_lowercase()
                    || p.is_ascii_digit()
                    || (p.is_ascii_uppercase() && next.is_some_and(char::is_ascii_lowercase))
            });
        if starts_word && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        word.push(c.to_ascii_lowercase());
    }
    words.extend((!word.is_empty()).then_some(word));
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str) -> HeaderName {
        HeaderName::from_bytes(name.as_bytes()).expect("valid header name")
    }

    #[test]
    fn routing_and_credential_headers_are_refused_however_spelled() {
        let refused = [
            "Authorization",
            "PROXY-AUTHORIZATION",
            "Cookie",
            "cookie2",
            "Host",
            "Connection",
            "Keep-Alive",
            "Transfer-Encoding",
            "TE",
            "Trailer",
            "Upgrade",
            "Expect",
            "Max-Forwards",
            "Via",
            "Proxy",
            "X-HTTP-Method-Override",
            "x-http-method",
            "X-Method-Override",
            "X-Original-URL",
            "X-Original-URI",
            "X-Original-Method",
            "X-Original-Host",
            "X-Rewrite-URL",
            "X-Override-URL",
            "Forwarded",
            "X-Forwarded-For",
            "X-Forwarded-Host",
            "X-Forwarded-Proto",
            "X-Forwarded-Port",
            "X-Forwarded-Prefix",
            "X-Forwarded-Server",
            "X-Forwarded-Scheme",
            "X-Forwarded-Ssl",
            "X-Forwarded-Uri",
            "X-Forwarded-Client-Cert",
            "X-Forwarded",
            "X-Real-IP",
            "True-Client-IP",
            "CF-Connecting-IP",
            "X-Client-IP",
            "X-Envoy-Original-Path",
            "X-AppEngine-User-IP",
            "X-ARR-ClientCert",
            "X-Goog-Authenticated-User-Email",
            "X-MS-CLIENT-PRINCIPAL-NAME",
            "X-Amzn-Oidc-Identity",
            "X-Auth-Request-User",
            "X-Consumer-Username",
            // `_` is read as `-` (CGI, Rack, WSGI).
            "X_Forwarded_For",
            "x_http_method_override",
            "X-Original_URL",
            "x_real_ip",
        ];
        for name in refused {
            assert!(is_refused_header(&header(name)), "{name} must be refused");
        }
        let allowed = [
            "Accept",
            "Content-Type",
            "Content-Length",
            "User-Agent",
            "Idempotency-Key",
            "X-Request-Id",
            "X-GitHub-Api-Version",
            "X-Api-Key",
            "If-None-Match",
            "X-Originating-Id",
            "X-Method",
            "Forwarded-Thing",
        ];
        for name in allowed {
            assert!(!is_refused_header(&header(name)), "{name} must be allowed");
        }
        assert!(same_header(&header("X_Api_Key"), &header("x-api-key")));
        assert!(!same_header(&header("x-api-key2"), &header("x-api-key")));
    }

    #[test]
    fn credential_carriers_are_told_from_cursors_and_data_keys() {
        let carriers = [
            // Headers.
            "X-Api-Key",
            "x_api_key",
            "Api-Key",
            "X-ApiKey",
            "X-Auth-Token",
            "X-Auth-Key",
            "X-Access-Token",
            "Private-Token",
            "X-Vault-Token",
            "X-Amz-Security-Token",
            "X-Goog-Api-Key",
            "Ocp-Apim-Subscription-Key",
            "X-Functions-Key",
            "DD-Application-Key",
            "X-Client-Secret",
            "X-Authorization",
            "X-Session-Id",
            "X-CSRF-Token",
            // Query parameters.
            "access_token",
            "accessToken",
            "api_key",
            "apiKey",
            "apikey",
            "hapikey",
            "key",
            "KEY",
            "token",
            "client_secret",
            "password",
            "auth",
            "jwt",
            "sig",
            "Signature",
            "X-Amz-Signature",
            "X-Amz-Credential",
            "AWSAccessKeyId",
            "oauth_token",
            "oauth_consumer_key",
            "refresh_token",
            "id_token",
            "sessionid",
            "api_key[]",
        ];
        for name in carriers {
            assert!(is_credential_carrier(name), "{name} carries a credential");
        }
        let data = [
            "Accept",
            "Content-Type",
            "Idempotency-Key",
            "X-Request-Id",
            "X-GitHub-Api-Version",
            "page_token",
            "pageToken",
            "nextPageToken",
            "next_token",
            "continuationToken",
            "sync_token",
            "$skiptoken",
            "$deltatoken",
            "projectKey",
            "sort_key",
            "author",
            "authors",
            "keyword",
            "monkey",
            "state",
            "page",
            "q",
            "",
        ];
        for name in data {
            assert!(!is_credential_carrier(name), "{name} is data");
        }
    }

    #[test]
    fn words_split_at_separators_and_camel_case() {
        let cases: &[(&str, &[&str])] = &[
            ("X-Amz-Security-Token", &["x", "amz", "security", "token"]),
            ("AWSAccessKeyId", &["aws", "access", "key", "id"]),
            ("nextPageToken", &["next", "page", "token"]),
            ("api_key[]", &["api", "key"]),
            ("sha256Sig", &["sha256", "sig"]),
            ("__", &[]),
        ];
        for (name, expected) in cases {
            assert_eq!(words(name), *expected, "{name}");
        }
    }

    #[test]
    fn method_overrides_in_the_query() {
        for name in [
            "_method",
            "_METHOD",
            "__method",
            "$method",
            "X-HTTP-Method-Override",
            "x_http_method_override",
            "X-HTTP-Method",
            "x-method-override",
        ] {
            assert!(is_method_override_param(name), "{name}");
        }
        for name in ["method", "payment_method", "methods", "_methods", ""] {
            assert!(!is_method_override_param(name), "{name}");
        }
    }

    #[test]
    fn query_names_are_decoded_as_servers_read_them() {
        let names: Vec<String> =
            query_names("a=1&api%5Fkey=x&&b+c=2;access_token=y&flag&%C3%A9=3").collect();
        assert_eq!(names, ["a", "api_key", "b c", "access_token", "flag", "é"]);
    }
}
