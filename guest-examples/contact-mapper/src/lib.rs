//! `acme/contact-mapper`: maps CRM contact exports, one or a page at a time, into normalized
//! contact records.
//!
//! Shows the shape of a well-behaved connector: typed input, output and config, business-rule
//! failures as typed errors, and logs that carry ids and counts but never customer data. The
//! mapping itself is plain Rust in [`mapping`].

pub mod mapping;

use airlock_guest::{Error, Guest, Level, export};
use mapping::{Config, Contact, CrmContact, CrmPage, Page};

struct ContactMapper;

impl Guest for ContactMapper {
    fn invoke(action: String, input: String) -> Result<String, Error> {
        match action.as_str() {
            "map-contact" => airlock_guest::handle(&input, map_contact),
            "map-contacts" => airlock_guest::handle(&input, map_contacts),
            other => Err(Error::unknown_action(other)),
        }
    }
}

export!(ContactMapper);

fn map_contact(crm: CrmContact) -> Result<Contact, Error> {
    let config: Config = airlock_guest::config()?;
    let contact =
        mapping::map(crm, &config).map_err(|mapping::Invalid(why)| Error::invalid_input(why))?;
    airlock_guest::log(
        Level::Info,
        "mapped contact",
        &[
            ("external_id", &contact.external_id),
            ("has_email", &contact.email.is_some()),
            ("has_phone", &contact.phone.is_some()),
            ("tags", &contact.tags.len()),
        ],
    );
    Ok(contact)
}

fn map_contacts(page: CrmPage) -> Result<Page, Error> {
    let config: Config = airlock_guest::config()?;
    let page = mapping::map_page(page, &config);
    airlock_guest::log(
        Level::Info,
        "mapped contacts",
        &[
            ("mapped", &page.contacts.len()),
            ("rejected", &page.rejected.len()),
        ],
    );
    Ok(page)
}
