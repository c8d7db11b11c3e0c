//! The wire types send exactly what the records they mirror serialize to, and take exactly
//! what the domain types accept: typing the API changed no response and no request.

use airlock_host_api::credentials::{AccountSource, CredentialType, ProviderAccount};
use airlock_host_api::log::{GuestLog, LogLine, LogSource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::keys::{ApiKey, ApiScope};
use super::tenants::Tenant;
use super::trust::TrustedKey;
use crate::wire::{self, Connection, Credential, Installation, Webhook, WebhookScheme};
use airlock_platform::api_keys::{ApiKeyRecord, Scope};
use airlock_platform::install::{Grant, GrantedEgress};
use airlock_policy::webhook::Scheme;
use airlock_store::CredentialInfo;
use airlock_store::TenantInfo;
use airlock_store::{ConnectionInfo, ConnectionStatus};
use airlock_store::{EndpointInfo, SecretInfo};
use airlock_store::{InstallationRecord, PendingUpgrade};

/// `record` and its wire form serialize alike.
fn same<R: Serialize + Clone, W: Serialize + From<R>>(record: &R) {
    let wire = W::from(record.clone());
    let (record, wire) = (json!(record), json!(wire));
    assert_eq!(record, wire);
}

/// Each input parses as the domain type exactly when it parses as the wire type, to the same
/// value, and with the same error.
fn parses_alike<D, W>(inputs: &[&str])
where
    D: DeserializeOwned + Serialize,
    W: DeserializeOwned + Into<D>,
{
    for input in inputs {
        let domain = serde_json::from_str::<D>(input).map(|d| json!(d));
        let wire = serde_json::from_str::<W>(input).map(|w| json!(Into::<D>::into(w)));
        match (domain, wire) {
            (Ok(d), Ok(w)) => assert_eq!(d, w, "{input}"),
            (Err(d), Err(w)) => assert_eq!(d.to_string(), w.to_string(), "{input}"),
            (d, w) => panic!("{input}: the domain type gives {d:?}, the wire type {w:?}"),
        }
    }
}

fn grant() -> Grant {
    Grant {
        egress: vec![GrantedEgress {
            url: "https://api.github.com/repos".into(),
            methods: vec!["GET".into(), "POST".into()],
        }],
    }
}

#[test]
fn installations_are_sent_as_stored() {
    let mut record = InstallationRecord {
        tenant: "acme".into(),
        installation: "mapper".into(),
        integration: "contact-mapper".into(),
        version: "1.2.0".into(),
        bundle: "ab".repeat(32),
        key: "0123456789abcdef".into(),
        grant: grant(),
        config: None,
        created: 1,
        updated: 2,
        pending: None,
        quarantine: None,
    };
    same::<_, Installation>(&record);
    record.quarantine = Some(airlock_store::records::Quarantine {
        rule: "egress-probing".into(),
        since: 4,
    });
    same::<_, Installation>(&record);
    record.config = Some(r#"{"region":"eu"}"#.into());
    for admin_only in [vec![], vec!["credential github: token-url".to_string()]] {
        record.pending = Some(PendingUpgrade {
            version: "1.3.0".into(),
            bundle: "cd".repeat(32),
            key: "0123456789abcdef".into(),
            additions: vec!["egress https://example.com GET".into()],
            admin_only,
            requested: 3,
        });
        same::<_, Installation>(&record);
    }
}

#[test]
fn grants_parse_as_the_cli_grant() {
    parses_alike::<Grant, wire::Grant>(&[
        "{}",
        r#"{"egress": []}"#,
        r#"{"egress": [{"url": "https://api.github.com/repos", "methods": ["GET"]}]}"#,
        r#"{"egress": [{"url": "https://a.example", "methods": ["GET"], "extra": 1}]}"#,
        r#"{"egress": [{"url": "https://a.example"}]}"#,
        r#"{"other": []}"#,
        r#"{"egress": {}}"#,
        "[]",
    ]);
}

#[test]
fn credentials_and_connections_are_sent_as_listed() {
    for (credential_type, rotated) in [
        (CredentialType::Bearer, None),
        (CredentialType::Basic, Some(9)),
        (CredentialType::ApiKey, None),
        (CredentialType::OAuth2, Some(9)),
    ] {
        same::<_, Credential>(&CredentialInfo {
            name: "github".into(),
            credential_type,
            origins: vec!["https://api.github.com:443".into()],
            created: 1,
            rotated,
        });
    }
    let mut connection = ConnectionInfo {
        credential: "slack".into(),
        user: None,
        user_ref: None,
        status: ConnectionStatus::Connected,
        scopes: vec!["chat:write".into()],
        connected: 1,
        updated: 2,
        expires_at: None,
        refreshable: false,
        account: None,
    };
    same::<_, Connection>(&connection);
    connection.user = Some("U024BE7LH".into());
    connection.user_ref = Some("u-0123".into());
    connection.status = ConnectionStatus::NeedsReconsent;
    connection.expires_at = Some(3);
    connection.refreshable = true;
    for (workspace, source) in [
        (Some("T123".to_string()), AccountSource::TokenResponse),
        (None, AccountSource::IdTokenUnverified),
    ] {
        connection.account = Some(ProviderAccount {
            id: "U024BE7LH".into(),
            workspace,
            source,
        });
        same::<_, Connection>(&connection);
    }
}

#[test]
fn webhooks_are_sent_as_listed_and_schemes_parse_alike() {
    for scheme in [Scheme::Standard, Scheme::Github, Scheme::Slack] {
        same::<_, Webhook>(&EndpointInfo {
            id: format!("wh-{}", "0f".repeat(16)),
            tenant: "acme".into(),
            installation: "bot".into(),
            action: "on-event".into(),
            scheme,
            path: "/v1/hooks/wh-…".into(),
            created: 1,
            secrets: vec![
                SecretInfo {
                    created: 2,
                    expires: None,
                },
                SecretInfo {
                    created: 1,
                    expires: Some(5),
                },
            ],
        });
    }
    parses_alike::<Scheme, WebhookScheme>(&[
        r#""standard""#,
        r#""github""#,
        r#""slack""#,
        r#""Slack""#,
        r#""gitlab""#,
        "1",
    ]);
}

#[test]
fn keys_tenants_and_trusted_keys_are_sent_as_stored() {
    let mut record = ApiKeyRecord {
        id: "0123456789abcdef".into(),
        tenant: None,
        scopes: Vec::new(),
        created: 1,
        expires: None,
        last_used: None,
        revoked: None,
        suspended: None,
        hash: "ab".repeat(32),
    };
    same::<_, ApiKey>(&record);
    record.tenant = Some("acme".into());
    record.scopes = Scope::ALL.to_vec();
    record.expires = Some(2);
    record.last_used = Some(3);
    record.revoked = Some(4);
    record.suspended = Some(airlock_platform::api_keys::Suspension {
        rule: "scope-probing".into(),
        since: 5,
    });
    same::<_, ApiKey>(&record);
    let scopes: Vec<String> = Scope::ALL.iter().map(|s| json!(s).to_string()).collect();
    let mut inputs: Vec<&str> = scopes.iter().map(String::as_str).collect();
    inputs.extend([r#""admin""#, r#""Invoke""#, "null"]);
    parses_alike::<Scope, ApiScope>(&inputs);

    same::<_, Tenant>(&TenantInfo {
        id: "acme".into(),
        created: 1,
    });
    for revoked in [None, Some(2)] {
        same::<_, TrustedKey>(&airlock_runtime::trust::TrustedKey {
            key_id: "0123456789abcdef".into(),
            public_key: "airlock-ed25519 AAAA acme".into(),
            publisher: "acme".into(),
            added: 1,
            revoked,
        });
    }
}

#[test]
fn guest_logs_are_sent_as_captured() {
    let log = GuestLog {
        lines: vec![
            LogLine {
                source: LogSource::Info,
                message: "mapped contact".into(),
                fields: vec![("id".into(), "7".into())],
            },
            LogLine {
                source: LogSource::Stderr,
                message: "oops".into(),
                fields: Vec::new(),
            },
        ],
        dropped: 3,
    };
    same::<_, wire::GuestLog>(&log);
    let sources = [
        LogSource::Trace,
        LogSource::Debug,
        LogSource::Info,
        LogSource::Warn,
        LogSource::Error,
        LogSource::Stdout,
        LogSource::Stderr,
    ];
    for source in sources {
        let line = LogLine {
            source,
            message: String::new(),
            fields: Vec::new(),
        };
        let log = GuestLog {
            lines: vec![line],
            dropped: 0,
        };
        same::<_, wire::GuestLog>(&log);
    }
}
