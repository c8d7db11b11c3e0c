//! Invalid manifests, each with the line, column and message fragments its error must have.

use super::{VALID, valid_with};

/// (name, manifest text, line, column, substrings the message must contain)
type ErrorCase = (&'static str, String, usize, usize, &'static [&'static str]);

pub(super) fn error_cases() -> Vec<ErrorCase> {
    vec![
        (
            "unknown key at top level",
            format!("colour = \"blue\"\n{VALID}"),
            1,
            1,
            &["unknown field `colour`", "at top level"],
        ),
        (
            "unknown table at top level",
            format!("{VALID}\n[extras.thing]\nx = 1\n"),
            28,
            2,
            &["unknown field `extras`", "at top level"],
        ),
        (
            "unknown key in [limits]",
            valid_with("memory = ", "memroy = "),
            16,
            1,
            &[
                "unknown field `memroy`, expected one of `memory`, `timeout`, `output`",
                "(in `limits`)",
            ],
        ),
        (
            "unknown key in an action",
            valid_with("output = \"schemas/map", "outptu = \"schemas/map"),
            26,
            1,
            &["unknown field `outptu`", "in `actions.map-contact`"],
        ),
        (
            "unknown key in [integration.build]",
            valid_with("command = ", "cmd = "),
            8,
            1,
            &["unknown field `cmd`", "in `integration.build`"],
        ),
        (
            "snake_case privacy_policy is unknown",
            valid_with("privacy-policy", "privacy_policy"),
            13,
            1,
            &[
                "unknown field `privacy_policy`",
                "`privacy-policy`",
                "in `publisher`",
            ],
        ),
        (
            "missing privacy-policy",
            valid_with("privacy-policy = \"https://acme.example/privacy\"\n", ""),
            10,
            1,
            &["missing field `privacy-policy`", "in `publisher`"],
        ),
        (
            "missing [publisher]",
            valid_with(
                "[publisher]\nname = \"Acme Integrations\"\nsupport = \"mailto:support@acme.example\"\nprivacy-policy = \"https://acme.example/privacy\"\n",
                "",
            ),
            1,
            1,
            &["missing field `publisher`", "at top level"],
        ),
        (
            "support over plain http",
            valid_with("mailto:support@acme.example", "http://acme.example/help"),
            12,
            11,
            &[
                "invalid support contact",
                "http://",
                "in `publisher.support`",
            ],
        ),
        (
            "support neither mailto nor https",
            valid_with("mailto:support@acme.example", "support@acme.example"),
            12,
            11,
            &[
                "expected a mailto: address or an https:// URL",
                "publisher.support",
            ],
        ),
        (
            "privacy policy over http",
            valid_with(
                "https://acme.example/privacy",
                "http://acme.example/privacy",
            ),
            13,
            18,
            &["invalid URL", "in `publisher.privacy-policy`"],
        ),
        (
            "uppercase id",
            valid_with("acme/contact-mapper", "Acme/Contact"),
            2,
            6,
            &[
                "invalid integration id \"Acme/Contact\"",
                "lowercase",
                "in `integration.id`",
            ],
        ),
        (
            "id without publisher",
            valid_with("acme/contact-mapper", "acme"),
            2,
            6,
            &[
                "invalid integration id \"acme\"",
                "publisher/name",
                "in `integration.id`",
            ],
        ),
        (
            "id with leading dash",
            valid_with("acme/contact-mapper", "acme/-x"),
            2,
            6,
            &[
                "invalid integration id \"acme/-x\"",
                "start or end with '-'",
                "integration.id",
            ],
        ),
        (
            "id with two slashes",
            valid_with("acme/contact-mapper", "a/b/c"),
            2,
            6,
            &[
                "invalid integration id \"a/b/c\"",
                "exactly one '/'",
                "integration.id",
            ],
        ),
        (
            "bad version",
            valid_with("\"0.1.0\"", "\"0.1\""),
            3,
            11,
            &["invalid version \"0.1\"", "in `integration.version`"],
        ),
        (
            "version as a number",
            valid_with("\"0.1.0\"", "0.1"),
            3,
            11,
            &[
                "invalid type: floating point `0.1`",
                "semantic version",
                "integration.version",
            ],
        ),
        (
            "absolute component path",
            valid_with(
                "../target/wasm32-wasip2/release/contact_mapper.wasm",
                "/opt/contact_mapper.wasm",
            ),
            5,
            13,
            &["not absolute", "in `integration.component`"],
        ),
        (
            "component not a .wasm file",
            valid_with("contact_mapper.wasm", "contact_mapper.wat"),
            5,
            13,
            &["must name a .wasm file", "in `integration.component`"],
        ),
        (
            "empty description",
            valid_with("\"Maps CRM contacts to the Acme schema.\"", "\"  \""),
            4,
            15,
            &[
                "description must not be empty",
                "in `integration.description`",
            ],
        ),
        (
            "zero timeout",
            valid_with("\"10s\"", "\"0s\""),
            17,
            11,
            &["must be greater than zero", "in `limits.timeout`"],
        ),
        (
            "negative timeout",
            valid_with("\"10s\"", "\"-5s\""),
            17,
            11,
            &["must not be negative", "in `limits.timeout`"],
        ),
        (
            "timeout as a bare number",
            valid_with("\"10s\"", "-5"),
            17,
            11,
            &["invalid type: integer `-5`", "limits.timeout"],
        ),
        (
            "unknown byte unit",
            valid_with("\"64 MiB\"", "\"64 mb\""),
            16,
            10,
            &["unknown unit \"mb\"", "in `limits.memory`"],
        ),
        (
            "zero memory",
            valid_with("\"64 MiB\"", "0"),
            16,
            10,
            &["must be greater than zero", "in `limits.memory`"],
        ),
        (
            "negative output size",
            valid_with("output = \"1 MiB\"", "output = -1"),
            18,
            10,
            &["must not be negative", "in `limits.output`"],
        ),
        (
            "empty [actions] table",
            valid_with(
                "[actions.map-contact]\ndescription = \"Map one contact.\"\ninput = \"schemas/map-contact.in.json\"\noutput = \"schemas/map-contact.out.json\"\n",
                "[actions]\n",
            ),
            23,
            1,
            &["at least one action is required", "in `actions`"],
        ),
        (
            "no actions at all",
            valid_with(
                "[actions.map-contact]\ndescription = \"Map one contact.\"\ninput = \"schemas/map-contact.in.json\"\noutput = \"schemas/map-contact.out.json\"\n",
                "",
            ),
            1,
            1,
            &["missing field `actions`", "at top level"],
        ),
        (
            "action name with uppercase",
            valid_with("[actions.map-contact]", "[actions.Map-Contact]"),
            23,
            10,
            &["invalid action name \"Map-Contact\"", "in `actions`"],
        ),
        (
            "action name starting with a digit",
            valid_with("[actions.map-contact]", "[actions.1st]"),
            23,
            10,
            &[
                "invalid action name \"1st\"",
                "start with a lowercase letter",
            ],
        ),
        (
            "action missing input",
            valid_with("input = \"schemas/map-contact.in.json\"\n", ""),
            23,
            1,
            &["missing field `input`", "in `actions.map-contact`"],
        ),
        (
            "action path with NUL",
            valid_with(
                "\"schemas/map-contact.in.json\"",
                "\"schemas/\\u0000.json\"",
            ),
            25,
            9,
            &["must not contain NUL", "in `actions.map-contact.input`"],
        ),
        (
            "config schema absolute",
            valid_with(
                "\"schemas/config.json\"",
                "\"C:\\\\schemas\\\\config.json\"",
            ),
            21,
            10,
            &["not absolute", "in `config.schema`"],
        ),
        (
            "missing key in a table only implied by [integration.build]",
            valid_with(
                "[integration]\nid = \"acme/contact-mapper\"\nversion = \"0.1.0\"\ndescription = \"Maps CRM contacts to the Acme schema.\"\ncomponent = \"../target/wasm32-wasip2/release/contact_mapper.wasm\"\n",
                "",
            ),
            2,
            2,
            &["missing field `id`", "in `integration`"],
        ),
        (
            "invalid value under a dotted key",
            format!(
                "limits.memory = \"64 Mi\"\n{}",
                valid_with(
                    "[limits]\nmemory = \"64 MiB\"\ntimeout = \"10s\"\noutput = \"1 MiB\"\n",
                    ""
                )
            ),
            1,
            17,
            &["unknown unit \"Mi\"", "in `limits.memory`"],
        ),
        (
            "TOML syntax error",
            valid_with("timeout = \"10s\"", "timeout = "),
            17,
            11,
            &["string"],
        ),
    ]
}
