//! `airlock-examples/exfil`: tries, one action per trick, to reach what its egress rules do not
//! allow or to smuggle its own credentials, and records what the host let through.
//!
//! The manifest allows `https://api.allowed.test` (GET, POST) and `https://echo.allowed.test`
//! (GET) with no credential, and four hosts the host authenticates for it: `vault` (bearer),
//! `keyed` (api-key header), `query` (api-key query parameter), `basic` (basic auth) and `oauth`
//! (OAuth client credentials), each `.allowed.test`; `vault.allowed.test:8443` is allowed
//! without one. Every action returns
//! `{"attempts": [{"url", "outcome", …}]}` where `outcome` is `"ok <status>"` or the
//! [`HttpError::code`] (`HttpRequestDenied`, `HeaderForbidden`, `DnsError`, …), and never fails
//! itself: the tests judge the host by these records (and by what their listeners received).

use airlock_guest::http::{self, HttpError, Request, Response};
use airlock_guest::{Error, Guest, export};
use serde::{Deserialize, Serialize};

struct Exfil;

impl Guest for Exfil {
    fn invoke(action: String, input: String) -> Result<String, Error> {
        let report = match action.as_str() {
            "undeclared-host" => probe(&["https://evil.example/"]),
            "ip-literals" => probe(&[
                "https://127.0.0.1/",
                "https://2130706433/",
                "https://[::1]/",
                "https://0x7f.1/",
                "https://169.254.169.254/latest/meta-data/",
            ]),
            "metadata" => probe(&[
                "https://metadata.google.internal/computeMetadata/v1/",
                "https://169.254.169.254/",
            ]),
            "userinfo" => probe(&[
                "https://api.allowed.test@evil.example/",
                "https://u:p@api.allowed.test/",
            ]),
            "plain-http" => probe(&["http://api.allowed.test/"]),
            "follow-redirect" => follow_redirect(airlock_guest::parse_input(&input)?),
            "set-authorization" => set_authorization(),
            "read-echo" => read_echo(),
            "fetch" => fetch(airlock_guest::parse_input(&input)?),
            "flood-denied" => flood_denied(airlock_guest::parse_input(&input)?),
            other => return Err(Error::unknown_action(other)),
        };
        airlock_guest::to_output(&report)
    }
}

export!(Exfil);

/// Response bodies quoted in a report are cut to this many bytes.
const MAX_QUOTED_BODY: usize = 16 * 1024;

/// What an action returns (`schemas/report.json`).
#[derive(Serialize, Default)]
struct Report {
    attempts: Vec<Attempt>,
    /// `follow-redirect`: the `Location` the first response gave, as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<String>,
    /// `read-echo` and `fetch`: the last response body as text, cut to 16 KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    /// `fetch`: the last response's headers, values as text.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    headers: Vec<(String, String)>,
    /// `fetch` with `scan`: places in this guest's whole linear memory holding the canary.
    #[serde(skip_serializing_if = "Option::is_none")]
    memory_hits: Option<usize>,
}

/// One request and what became of it.
#[derive(Serialize)]
struct Attempt {
    url: String,
    /// `"ok <status>"`, or the error's code.
    outcome: String,
    /// What the guest set on the request, when it matters (`set-authorization`).
    #[serde(skip_serializing_if = "Option::is_none")]
    sent: Option<String>,
    /// The error's text when it says more than `outcome` (a DNS rcode, the refused header).
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

impl Report {
    /// Sends `request`, records the outcome, and returns the response if there was one.
    fn attempt(&mut self, request: Request, sent: Option<&str>) -> Option<Response> {
        let url = request.url().to_owned();
        let result = request.send();
        let outcome = outcome(&result);
        let detail = result
            .as_ref()
            .err()
            .map(HttpError::to_string)
            .filter(|detail| *detail != outcome);
        self.attempts.push(Attempt {
            url,
            outcome,
            sent: sent.map(str::to_owned),
            detail,
        });
        result.ok()
    }
}

fn outcome(result: &Result<Response, HttpError>) -> String {
    match result {
        Ok(response) => format!("ok {}", response.status),
        Err(error) => error.code().to_owned(),
    }
}

/// GETs each URL once.
fn probe(urls: &[&str]) -> Report {
    let mut report = Report::default();
    for url in urls {
        report.attempt(Request::get(*url), None);
    }
    report
}

#[derive(Deserialize)]
struct CountInput {
    count: u32,
}

/// GETs https://evil.example/ `count` times, each denied: the host must not keep (or record) an
/// unbounded number of attempts. Reports the last attempt only.
fn flood_denied(input: CountInput) -> Report {
    let mut report = Report::default();
    for _ in 0..input.count {
        report.attempts.clear();
        report.attempt(Request::get("https://evil.example/"), None);
    }
    report
}

#[derive(Deserialize)]
struct UrlInput {
    url: String,
}

/// GETs `url`; on a 3xx, GETs its `Location` too: a second request the host must judge on its
/// own (and send without any credential bound to another origin).
fn follow_redirect(input: UrlInput) -> Report {
    let mut report = Report::default();
    let Some(response) = report.attempt(Request::get(&input.url), None) else {
        return report;
    };
    if !response.is_redirect() {
        return report;
    }
    let Some(location) = response.header("location") else {
        return report;
    };
    let target = resolve(&input.url, location);
    report.location = Some(location.to_owned());
    report.attempt(Request::get(target), None);
    report
}

/// Tries to set its own credential headers on a request to the allowed host: each header alone,
/// then both in mixed case with `Authorization` twice. An attempt with outcome `HeaderForbidden`
/// was refused by the fields API before anything was sent; `ok …` means the request went out and
/// the host must have dropped or replaced what the guest set.
fn set_authorization() -> Report {
    const URL: &str = "https://api.allowed.test/";
    let mut report = Report::default();
    report.attempt(
        Request::get(URL).header("Authorization", "Bearer attacker"),
        Some("Authorization: Bearer attacker"),
    );
    report.attempt(
        Request::get(URL).header("Cookie", "x=1"),
        Some("Cookie: x=1"),
    );
    report.attempt(
        Request::get(URL)
            .header("AuThOrIzAtIoN", "Bearer attacker")
            .header("authorization", "Bearer attacker-2")
            .header("COOKIE", "x=1"),
        Some("AuThOrIzAtIoN: Bearer attacker, authorization: Bearer attacker-2, COOKIE: x=1"),
    );
    report
}

/// GETs the echo service and hands its body back: the request headers it echoes must hold no
/// secret (the host redacts before any byte reaches the guest).
fn read_echo() -> Report {
    let mut report = Report::default();
    if let Some(response) = report.attempt(Request::get("https://echo.allowed.test/headers"), None)
    {
        report.body = Some(quote(&response.body));
    }
    report
}

#[derive(Deserialize)]
struct FetchInput {
    url: String,
    #[serde(default = "get")]
    method: String,
    /// Headers to set; refused ones make the attempt `HeaderForbidden`.
    #[serde(default)]
    headers: Vec<(String, String)>,
    /// After the request, search this guest's memory for a canary.
    scan: Option<Scan>,
}

/// A canary given XOR-masked, so that searching for it never puts it in memory.
#[derive(Deserialize)]
struct Scan {
    /// The canary's bytes XOR `mask`, in hex.
    masked: String,
    mask: u8,
}

fn get() -> String {
    "GET".to_owned()
}

/// One request with any method, URL and headers, for ad-hoc tests; then, if asked, a search
/// of the guest's own memory for the secret the host injected (catalogue CR-01).
fn fetch(input: FetchInput) -> Report {
    let mut report = Report::default();
    let mut request = Request::new(http::method_from_name(&input.method), input.url);
    for (name, value) in &input.headers {
        request = request.header(name.as_str(), value.as_bytes());
    }
    if let Some(response) = report.attempt(request, None) {
        report.body = Some(quote(&response.body));
        report.headers = response
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), String::from_utf8_lossy(value).into_owned()))
            .collect();
    }
    if let Some(scan) = input.scan {
        report.memory_hits = Some(scan_memory(&scan));
    }
    report
}

/// Counts the places in linear memory where the masked canary appears unmasked.
fn scan_memory(scan: &Scan) -> usize {
    let masked: Vec<u8> = (0..scan.masked.len() / 2)
        .filter_map(|i| u8::from_str_radix(&scan.masked[2 * i..2 * i + 2], 16).ok())
        .collect();
    if masked.is_empty() {
        return 0;
    }
    let end = core::arch::wasm32::memory_size::<0>() * 65536;
    let mut hits = 0;
    for start in 1..end.saturating_sub(masked.len()) {
        // SAFETY: every address below the memory size is readable; volatile reads keep the
        // compiler from reasoning about memory it did not allocate.
        let matches = masked.iter().enumerate().all(|(j, m)| {
            let byte = unsafe { core::ptr::read_volatile((start + j) as *const u8) };
            byte ^ scan.mask == *m
        });
        hits += usize::from(matches);
    }
    hits
}

/// The body as text, cut to [`MAX_QUOTED_BODY`] bytes on a character boundary.
fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut end = text.len().min(MAX_QUOTED_BODY);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// Resolves a `Location` against the URL that answered it: absolute URLs as they are,
/// `//host/…` with the base's scheme, `/path` on the base's origin, anything else next to the
/// base's last path segment. Enough for redirects; not a full RFC 3986 resolver.
fn resolve(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_owned();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("https", base));
    if let Some(network_path) = location.strip_prefix("//") {
        return format!("{scheme}://{network_path}");
    }
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if location.starts_with('/') {
        return format!("{scheme}://{authority}{location}");
    }
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    let dir = if dir.is_empty() { "/" } else { dir };
    format!("{scheme}://{authority}{dir}{location}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_locations() {
        let base = "https://api.allowed.test/a/b?x=1";
        assert_eq!(
            resolve(base, "http://169.254.169.254/latest/meta-data/"),
            "http://169.254.169.254/latest/meta-data/"
        );
        assert_eq!(resolve(base, "//127.0.0.1/"), "https://127.0.0.1/");
        assert_eq!(resolve(base, "/c"), "https://api.allowed.test/c");
        assert_eq!(resolve(base, "c?y=2"), "https://api.allowed.test/a/c?y=2");
        assert_eq!(
            resolve("https://api.allowed.test", "c"),
            "https://api.allowed.test/c"
        );
    }

    #[test]
    fn quotes_at_most_16_kib_on_a_char_boundary() {
        assert_eq!(quote(b"hello"), "hello");
        let long = format!("x{}", "é".repeat(MAX_QUOTED_BODY));
        let quoted = quote(long.as_bytes());
        assert_eq!(quoted.len(), MAX_QUOTED_BODY - 1);
        assert!(quoted.starts_with('x') && quoted[1..].chars().all(|c| c == 'é'));
    }
}
