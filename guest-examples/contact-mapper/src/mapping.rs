//! The mapping itself, free of any host API: plain Rust from a CRM contact and a config to a
//! normalized contact. The component (`lib.rs`) wraps it; the comparison benchmark
//! (`runtime/core/benches/compare.rs`) runs the very same code natively, as the physical floor.

use serde::{Deserialize, Serialize};

/// The installation's settings (`schemas/config.json`).
#[derive(Deserialize)]
pub struct Config {
    /// Country calling code for numbers written in national form, e.g. `"44"`.
    pub default_country_code: String,
    /// Prepended to every tag so they stay distinguishable from tags of other sources.
    #[serde(default)]
    pub tag_prefix: String,
}

/// A contact as the CRM exports it (`schemas/map-contact.in.json`).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CrmContact {
    id: String,
    first_name: Option<String>,
    last_name: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    company: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

/// The normalized contact (`schemas/map-contact.out.json`). Every key is always present, `null`
/// when unknown, so consumers need not tell "missing" from "empty".
#[derive(Serialize)]
pub struct Contact {
    pub external_id: String,
    pub full_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub company: Option<String>,
    pub tags: Vec<String>,
}

/// A page of contacts as the CRM exports it (`schemas/map-contacts.in.json`).
#[derive(Deserialize)]
pub struct CrmPage {
    contacts: Vec<CrmContact>,
}

/// A page mapped (`schemas/map-contacts.out.json`): the contacts that map, and for each one that
/// does not, its index in the page and why.
#[derive(Serialize)]
pub struct Page {
    pub contacts: Vec<Contact>,
    pub rejected: Vec<Rejected>,
}

#[derive(Serialize)]
pub struct Rejected {
    pub index: usize,
    pub reason: &'static str,
}

/// Why a contact cannot be mapped: the input's fault, in words that quote none of it.
#[derive(Debug, PartialEq, Eq)]
pub struct Invalid(pub &'static str);

/// Maps one contact.
pub fn map(crm: CrmContact, config: &Config) -> Result<Contact, Invalid> {
    let email = non_blank(crm.email).map(|email| email.to_lowercase());
    let phone = non_blank(crm.phone)
        .map(|phone| to_e164(&phone, &config.default_country_code))
        .transpose()?;
    if email.is_none() && phone.is_none() {
        return Err(Invalid(
            "the contact has neither an email nor a phone number",
        ));
    }
    let name = [crm.first_name, crm.last_name]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Contact {
        external_id: crm.id.trim().to_owned(),
        full_name: non_blank(Some(title_case(&name))),
        email,
        phone,
        company: non_blank(crm.company),
        tags: normalize_tags(crm.tags, &config.tag_prefix),
    })
}

/// Maps a page of contacts; one that cannot be mapped is rejected, the rest still map.
pub fn map_page(page: CrmPage, config: &Config) -> Page {
    let mut out = Page {
        contacts: Vec::with_capacity(page.contacts.len()),
        rejected: Vec::new(),
    };
    for (index, crm) in page.contacts.into_iter().enumerate() {
        match map(crm, config) {
            Ok(contact) => out.contacts.push(contact),
            Err(Invalid(reason)) => out.rejected.push(Rejected { index, reason }),
        }
    }
    out
}

/// Trims a CRM field, treating blank as absent (CRMs export empty fields as `""` or `null`).
fn non_blank(field: Option<String>) -> Option<String> {
    field.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// Title-cases a name: each word starts upper-case, the rest is lower-case, and `-` and `'` start
/// a new word (`"o'neil-SMITH"` → `"O'Neil-Smith"`). Whitespace runs collapse to one space.
fn title_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for word in name.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        let mut word_start = true;
        for c in word.chars() {
            if word_start {
                out.extend(c.to_uppercase());
            } else {
                out.extend(c.to_lowercase());
            }
            word_start = matches!(c, '-' | '\'');
        }
    }
    out
}

/// Normalizes a phone number to E.164: `+`, then 8 to 15 digits, the first not `0`.
///
/// Accepts `+44 20 …`, `0044 20 …` and the national `020 …`, whose trunk `0` is dropped before
/// `country_code` is prepended; a `(0)` (the trunk digit in `+44 (0)20 …`) is dropped; spaces, dots,
/// dashes, slashes and brackets are ignored. Anything else (letters, extensions) is refused rather
/// than guessed at. A production connector would use
/// a numbering-plan library: trunk prefixes differ by country.
fn to_e164(phone: &str, country_code: &str) -> Result<String, Invalid> {
    let refuse = || Invalid("Phone is not a phone number this connector understands");
    let phone = phone.replace("(0)", "");
    let (international, rest) = match phone.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, phone.as_str()),
    };
    let mut digits = String::with_capacity(rest.len());
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '.' | '-' | '/' | '(' | ')' => {}
            _ => return Err(refuse()),
        }
    }
    let number = if international {
        digits
    } else if let Some(subscriber) = digits.strip_prefix("00") {
        subscriber.to_owned()
    } else {
        let national = digits.strip_prefix('0').unwrap_or(&digits);
        format!("{country_code}{national}")
    };
    if (8..=15).contains(&number.len()) && !number.starts_with('0') {
        Ok(format!("+{number}"))
    } else {
        Err(refuse())
    }
}

/// Trims and lower-cases tags, drops blank ones and duplicates (keeping first-seen order), and
/// prefixes them with `prefix`.
fn normalize_tags(tags: Vec<String>, prefix: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for tag in tags {
        let tag = tag.trim().to_lowercase();
        if tag.is_empty() {
            continue;
        }
        let tag = format!("{prefix}{tag}");
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_cases_names() {
        assert_eq!(title_case("  ada   LOVELACE "), "Ada Lovelace");
        assert_eq!(title_case("o'neil-SMITH"), "O'Neil-Smith");
        assert_eq!(title_case(""), "");
    }

    #[test]
    fn normalizes_phones_to_e164() {
        let e164 = |phone| to_e164(phone, "44").ok();
        assert_eq!(e164("020 7946 0958").as_deref(), Some("+442079460958"));
        assert_eq!(
            e164("+44 (0)20 7946 0958").as_deref(),
            Some("+442079460958")
        );
        assert_eq!(e164("+1 415-555-0100").as_deref(), Some("+14155550100"));
        assert_eq!(e164("0049 30 901820").as_deref(), Some("+4930901820"));
        assert_eq!(e164("020 7946 0958 ext 12"), None);
        assert_eq!(e164("12"), None);
    }

    #[test]
    fn normalizes_tags() {
        let tags = vec![" VIP ".into(), "vip".into(), "".into(), "Newsletter".into()];
        assert_eq!(normalize_tags(tags, "crm:"), ["crm:vip", "crm:newsletter"]);
    }
}
