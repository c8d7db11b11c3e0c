//! Inputs, outputs and config are checked at the boundary; invalid data is refused with the
//! JSON pointer and keyword named, never the offending value.

use crate::support::{invoke, load, mapper_config, mapper_with, outcome, read_example, shared};

const CANARY: &str = "CANARY-7f3a-not-for-errors";

#[tokio::test]
async fn sample_contact_is_mapped() {
    let mapper = load("contact-mapper");
    let config = mapper_config(&mapper);
    let sample = read_example("contact-mapper", "sample-input.json");
    let ran = invoke(&mapper, &config, "map-contact", &sample).await;
    let output = ran.result.expect("sample maps").to_value();
    let email = output["email"].as_str().expect("email mapped");
    assert_eq!(email, email.trim().to_lowercase(), "email is normalised");
    assert!(ran.memory_peak > 0);
}

#[tokio::test]
async fn invalid_input_is_refused_before_the_guest_runs() {
    let mapper = load("contact-mapper");
    let config = mapper_config(&mapper);
    let invalid = read_example("contact-mapper", "invalid-input.json");
    let ran = invoke(&mapper, &config, "map-contact", &invalid).await;
    assert_eq!(outcome(&ran), "input-rejected", "{:?}", ran.result);
    let error = ran.result.expect_err("rejected").to_string();
    assert!(error.contains('/'), "names a JSON pointer: {error}");
    assert!(ran.log.lines.is_empty(), "the guest never ran");
    assert_eq!(ran.memory_peak, 0, "no sandbox was created");
}

#[tokio::test]
async fn rejections_never_quote_the_offending_value() {
    let mapper = load("contact-mapper");
    let config = mapper_config(&mapper);
    let mut input: serde_json::Value =
        serde_json::from_str(&read_example("contact-mapper", "sample-input.json")).expect("json");
    // Wrong type for every string field, carrying the canary.
    for value in input.as_object_mut().expect("object").values_mut() {
        *value = serde_json::json!({ "nested": CANARY });
    }
    let ran = invoke(&mapper, &config, "map-contact", &input.to_string()).await;
    let error = ran.result.expect_err("rejected");
    assert_eq!(error.class(), "input-rejected");
    assert!(!format!("{error} {error:?}").contains(CANARY), "{error}");
}

#[tokio::test]
async fn duplicate_keys_are_refused() {
    let mapper = load("contact-mapper");
    let config = mapper_config(&mapper);
    let ran = invoke(
        &mapper,
        &config,
        "map-contact",
        r#"{"Email": "a@b.example", "Email": "c@d.example"}"#,
    )
    .await;
    assert_eq!(outcome(&ran), "input-rejected");
    assert!(
        ran.result
            .expect_err("rejected")
            .to_string()
            .contains("duplicate")
    );
}

#[tokio::test]
async fn oversized_input_is_refused_before_parsing() {
    let mapper = load("contact-mapper");
    let config = mapper_config(&mapper);
    let huge = format!("\"{}\"", "x".repeat(2 << 20));
    let ran = invoke(&mapper, &config, "map-contact", &huge).await;
    assert_eq!(outcome(&ran), "input-rejected");
    assert!(
        ran.result
            .expect_err("rejected")
            .to_string()
            .contains("limit")
    );
}

#[tokio::test]
async fn unknown_action_names_the_available_ones() {
    let mapper = load("contact-mapper");
    let config = mapper_config(&mapper);
    let ran = invoke(&mapper, &config, "drop-tables", "{}").await;
    let error = ran.result.expect_err("unknown");
    assert_eq!(error.class(), "unknown-action");
    assert_eq!(error.exit_code(), 2);
    assert!(error.to_string().contains("map-contact"), "{error}");
}

#[tokio::test]
async fn invalid_config_is_refused_with_its_pointer() {
    let mapper = load("contact-mapper");
    let error = mapper
        .validate_config(Some(r#"{"default_country_code": 44, "surprise": true}"#))
        .expect_err("config rejected");
    let message = error.to_string();
    assert!(
        message.contains("config.json"),
        "names the schema: {message}"
    );
    assert!(message.contains('/'), "names a pointer: {message}");
}

#[tokio::test]
async fn config_is_refused_when_none_is_declared() {
    let hostile = load("hostile");
    assert!(hostile.validate_config(Some("{}")).is_err());
}

#[tokio::test]
async fn output_that_breaks_its_schema_is_refused() {
    // The real contact-mapper component, with an output schema it cannot satisfy.
    let dir = mapper_with(
        "schemas/map-contact.out.json",
        br#"{"type": "object", "required": ["never-produced"]}"#,
    );
    let mapper = shared().load(dir.path()).expect("loads");
    let config = mapper_config(&mapper);
    let sample = read_example("contact-mapper", "sample-input.json");
    let ran = shared()
        .invoke(&mapper, &config, "map-contact", &sample)
        .await;
    let error = ran.result.expect_err("output rejected");
    assert_eq!(error.class(), "output-rejected");
    assert_eq!(error.exit_code(), 3);
    assert!(error.to_string().contains("never-produced"), "{error}");
}
