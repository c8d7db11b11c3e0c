//! `acme/github-issues`: lists a repository's open issues and opens new ones.
//!
//! Shows a connector that calls an HTTP API: requests go out through
//! [`airlock_guest::http`], the host checks them against the manifest's `[[egress]]` rules and
//! adds the `github` bearer token itself, so this code never sets `Authorization` and never sees
//! the token. Pagination follows GitHub's `Link: <…>; rel="next"` header, but only to
//! `https://api.github.com/` and only for a few pages.

use airlock_guest::http::{HttpError, Request, Response};
use airlock_guest::{Error, Guest, Level, export};
use serde::{Deserialize, Serialize};

struct GithubIssues;

impl Guest for GithubIssues {
    fn invoke(action: String, input: String) -> Result<String, Error> {
        match action.as_str() {
            "list-open" => airlock_guest::handle(&input, list_open),
            "create" => airlock_guest::handle(&input, create),
            other => Err(Error::unknown_action(other)),
        }
    }
}

export!(GithubIssues);

const API: &str = "https://api.github.com/";
const USER_AGENT: &str = concat!("acme-github-issues/", env!("CARGO_PKG_VERSION"));
/// The most pages `list-open` fetches, however many GitHub has.
const MAX_PAGES: u32 = 5;
const DEFAULT_PER_PAGE: u32 = 30;

/// `schemas/list-open.in.json`.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ListOpen {
    owner: String,
    repo: String,
    per_page: Option<u32>,
}

/// `schemas/list-open.out.json`.
#[derive(Serialize)]
struct IssueList {
    issues: Vec<IssueRef>,
    pages: u32,
}

#[derive(Serialize)]
struct IssueRef {
    number: u64,
    title: String,
    url: String,
}

/// The fields of GitHub's issue object this connector reads.
#[derive(Deserialize)]
struct GithubIssue {
    number: u64,
    title: String,
    html_url: String,
    /// Present when the "issue" is a pull request (GitHub lists both on this endpoint).
    #[serde(default)]
    pull_request: Option<serde::de::IgnoredAny>,
}

fn list_open(input: ListOpen) -> Result<IssueList, Error> {
    let repo = repo_path(&input.owner, &input.repo)?;
    let per_page = input.per_page.unwrap_or(DEFAULT_PER_PAGE).clamp(1, 100);
    let mut next = Some(format!("{API}{repo}/issues?state=open&per_page={per_page}"));
    let mut list = IssueList {
        issues: Vec::new(),
        pages: 0,
    };
    let mut seen = Vec::new();
    while let Some(url) = next.take() {
        let response = github(Request::get(&url))?;
        if !response.is_success() {
            return Err(upstream(&response));
        }
        let page: Vec<GithubIssue> = response.json()?;
        list.pages += 1;
        list.issues.extend(
            page.into_iter()
                .filter(|issue| issue.pull_request.is_none())
                .map(|issue| IssueRef {
                    number: issue.number,
                    title: issue.title,
                    url: issue.html_url,
                }),
        );
        seen.push(url);
        if list.pages >= MAX_PAGES {
            break;
        }
        next = response
            .header("link")
            .and_then(next_link)
            .filter(|url| url.starts_with(API) && !seen.iter().any(|s| s == url))
            .map(str::to_owned);
    }
    airlock_guest::log(
        Level::Info,
        "listed open issues",
        &[("issues", &list.issues.len()), ("pages", &list.pages)],
    );
    Ok(list)
}

/// `schemas/create.in.json`.
#[derive(Deserialize, Serialize)]
struct Create {
    #[serde(skip_serializing)]
    owner: String,
    #[serde(skip_serializing)]
    repo: String,
    title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<String>,
}

/// `schemas/create.out.json`.
#[derive(Serialize)]
struct Created {
    number: u64,
    url: String,
}

/// The fields of GitHub's created issue this connector reads.
#[derive(Deserialize)]
struct GithubCreated {
    number: u64,
    html_url: String,
}

fn create(input: Create) -> Result<Created, Error> {
    let repo = repo_path(&input.owner, &input.repo)?;
    // Serialized without owner and repo: the body is `{"title": …, "body": …}`.
    let response = github(Request::post(format!("{API}{repo}/issues")).json(&input))?;
    if !response.is_success() {
        return Err(upstream(&response));
    }
    let created: GithubCreated = response.json()?;
    airlock_guest::log(Level::Info, "created issue", &[("number", &created.number)]);
    Ok(Created {
        number: created.number,
        url: created.html_url,
    })
}

/// Sends a request with the headers GitHub asks for. No `Authorization`: the host adds it.
fn github(request: Request) -> Result<Response, HttpError> {
    request
        .header("accept", "application/vnd.github+json")
        .header("x-github-api-version", "2022-11-28")
        .header("user-agent", USER_AGENT)
        .send()
}

fn upstream(response: &Response) -> Error {
    Error::new("upstream", format!("GitHub answered {}", response.status))
}

/// `repos/{owner}/{repo}`, refusing names that are not plain GitHub names. The input schema
/// already says so; this keeps `..` or a `/` from ever reaching a URL if the two drift apart.
fn repo_path(owner: &str, repo: &str) -> Result<String, Error> {
    for (what, name) in [("owner", owner), ("repo", repo)] {
        let plain = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if name.is_empty() || !plain || name.bytes().all(|b| b == b'.') {
            return Err(Error::invalid_input(format!("{what} is not a GitHub name")));
        }
    }
    Ok(format!("repos/{owner}/{repo}"))
}

/// The `rel="next"` target of a `Link` header (RFC 8288), e.g.
/// `<https://api.github.com/…&page=2>; rel="next", <…>; rel="last"`.
fn next_link(header: &str) -> Option<&str> {
    let mut rest = header;
    loop {
        let start = rest.find('<')?;
        let end = start + rest[start..].find('>')?;
        let target = &rest[start + 1..end];
        let after = &rest[end + 1..];
        // Parameters run up to the next link, i.e. the next `<`.
        let params_end = after.find('<').unwrap_or(after.len());
        let is_next = after[..params_end]
            .split([';', ','])
            .filter_map(|param| param.split_once('='))
            .any(|(key, value)| {
                key.trim().eq_ignore_ascii_case("rel")
                    && value
                        .trim()
                        .trim_matches('"')
                        .split_ascii_whitespace()
                        .any(|rel| rel.eq_ignore_ascii_case("next"))
            });
        if is_next {
            return Some(target);
        }
        rest = &after[params_end..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_next_link() {
        let header = "<https://api.github.com/repositories/1300192/issues?state=open&page=2>; rel=\"next\", \
                      <https://api.github.com/repositories/1300192/issues?state=open&page=9>; rel=\"last\"";
        assert_eq!(
            next_link(header),
            Some("https://api.github.com/repositories/1300192/issues?state=open&page=2")
        );
        let last_first =
            "<https://x.test/?page=1>; rel=\"prev\", <https://x.test/?page=3>; rel=next";
        assert_eq!(next_link(last_first), Some("https://x.test/?page=3"));
        assert_eq!(next_link("<https://x.test/?page=1>; rel=\"prev\""), None);
        assert_eq!(next_link("garbage"), None);
        assert_eq!(next_link(""), None);
    }

    #[test]
    fn builds_repo_paths_from_plain_names_only() {
        assert_eq!(
            repo_path("rust-lang", "rust.vim").unwrap(),
            "repos/rust-lang/rust.vim"
        );
        for (owner, repo) in [
            ("..", "x"),
            ("a", "."),
            ("a/b", "c"),
            ("a", ""),
            ("a", "b?c"),
        ] {
            assert!(repo_path(owner, repo).is_err(), "{owner}/{repo}");
        }
    }

    #[test]
    fn create_body_has_title_and_body_only() {
        let input: Create = serde_json::from_str(
            r#"{"owner": "acme", "repo": "widgets", "title": "Broken", "body": "It broke."}"#,
        )
        .unwrap();
        assert_eq!(
            serde_json::to_string(&input).unwrap(),
            r#"{"title":"Broken","body":"It broke."}"#
        );
    }
}
