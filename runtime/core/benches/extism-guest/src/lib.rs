//! `map-contact` as an Extism plugin: the same mapping code the `contact-mapper` component runs,
//! with the same JSON in and out, and its config from the plugin manifest's `config` key.

use extism_pdk::{FnResult, config, plugin_fn};

// The component's own mapping code; this plugin runs its one-contact action only.
#[allow(dead_code)]
#[path = "../../../../../guest-examples/contact-mapper/src/mapping.rs"]
mod mapping;

#[plugin_fn]
pub fn map_contact(input: String) -> FnResult<String> {
    let config: mapping::Config =
        serde_json::from_str(&config::get("config")?.unwrap_or_default())?;
    let crm: mapping::CrmContact = serde_json::from_str(&input)?;
    let contact =
        mapping::map(crm, &config).map_err(|mapping::Invalid(why)| extism_pdk::Error::msg(why))?;
    Ok(serde_json::to_string(&contact)?)
}
