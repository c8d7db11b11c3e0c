//! `acme/slack-notifier`: posts an alert to a Slack channel with `chat.postMessage`.
//!
//! The host holds the workspace's OAuth token (`[credentials.slack]`), refreshes it and adds it to
//! the one request the manifest allows; this code only builds the message. Slack reports most
//! failures as `200 {"ok": false, "error": "channel_not_found"}`, so the status alone says little:
//! the `ok` flag decides, and Slack's error code becomes the message of an `upstream` error.

use airlock_guest::http::Request;
use airlock_guest::{Error, Guest, Level, export};
use serde::{Deserialize, Serialize};

struct SlackNotifier;

impl Guest for SlackNotifier {
    fn invoke(action: String, input: String) -> Result<String, Error> {
        match action.as_str() {
            "post-alert" => airlock_guest::handle(&input, post_alert),
            other => Err(Error::unknown_action(other)),
        }
    }
}

export!(SlackNotifier);

const POST_MESSAGE: &str = "https://slack.com/api/chat.postMessage";
const USER_AGENT: &str = concat!("acme-slack-notifier/", env!("CARGO_PKG_VERSION"));

/// `schemas/post-alert.in.json`.
#[derive(Deserialize)]
struct Alert {
    channel: String,
    text: String,
    #[serde(default)]
    severity: Severity,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Severity {
    #[default]
    Info,
    Warning,
    Critical,
}

impl Severity {
    /// The emoji shortcode that opens the message, so the severity shows at a glance.
    fn emoji(self) -> &'static str {
        match self {
            Self::Info => ":information_source:",
            Self::Warning => ":warning:",
            Self::Critical => ":rotating_light:",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// The `chat.postMessage` request body.
#[derive(Serialize)]
struct PostMessage<'a> {
    channel: &'a str,
    text: String,
}

/// The fields of Slack's answer this connector reads.
#[derive(Deserialize)]
struct SlackAnswer {
    ok: bool,
    #[serde(default)]
    ts: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// `schemas/post-alert.out.json`.
#[derive(Serialize)]
struct Posted {
    ok: bool,
    ts: String,
}

fn post_alert(alert: Alert) -> Result<Posted, Error> {
    let message = PostMessage {
        channel: &alert.channel,
        text: format!("{} {}", alert.severity.emoji(), alert.text),
    };
    let response = Request::post(POST_MESSAGE)
        .header("content-type", "application/json; charset=utf-8")
        .header("user-agent", USER_AGENT)
        .json(&message)
        .send()?;
    if !response.is_success() {
        return Err(Error::new(
            "upstream",
            format!("Slack answered {}", response.status),
        ));
    }
    let ts = accept(response.json()?)?;
    airlock_guest::log(
        Level::Info,
        "posted alert",
        &[
            ("channel", &alert.channel),
            ("severity", &alert.severity.name()),
        ],
    );
    Ok(Posted { ok: true, ts })
}

/// The message timestamp from an `ok` answer; Slack's error code as an `upstream` error otherwise.
fn accept(answer: SlackAnswer) -> Result<String, Error> {
    match answer {
        SlackAnswer {
            ok: true,
            ts: Some(ts),
            ..
        } => Ok(ts),
        SlackAnswer { ok: true, .. } => Err(Error::new(
            "upstream",
            "Slack answered ok without a message timestamp",
        )),
        SlackAnswer { error, .. } => Err(Error::new(
            "upstream",
            error.unwrap_or_else(|| "Slack answered ok: false without an error code".into()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(json: &str) -> Result<String, Error> {
        accept(serde_json::from_str(json).unwrap())
    }

    #[test]
    fn accepts_ok_answers() {
        let ts =
            answer(r#"{"ok": true, "channel": "C123", "ts": "1503435956.000247", "message": {}}"#);
        assert_eq!(ts.unwrap(), "1503435956.000247");
    }

    #[test]
    fn maps_slack_errors_to_upstream() {
        let error = answer(r#"{"ok": false, "error": "channel_not_found"}"#).unwrap_err();
        assert_eq!(error.code, "upstream");
        assert_eq!(error.message, "channel_not_found");
        assert_eq!(answer(r#"{"ok": false}"#).unwrap_err().code, "upstream");
    }

    #[test]
    fn prefixes_text_with_severity() {
        let alert: Alert = serde_json::from_str(
            r#"{"channel": "C0123ABCD", "text": "disk full", "severity": "critical"}"#,
        )
        .unwrap();
        assert_eq!(alert.severity.emoji(), ":rotating_light:");
        let default: Alert = serde_json::from_str(r#"{"channel": "C1", "text": "x"}"#).unwrap();
        assert_eq!(default.severity.name(), "info");
    }
}
