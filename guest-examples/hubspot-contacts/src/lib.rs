//! `acme/hubspot-contacts`: lists CRM contacts a cursor page at a time and creates contacts.
//!
//! The worked example of docs/connector-guide.md ("A worked example: a paginated API"):
//! cursor pagination that hands the cursor back when it stops early, a JSON POST, and
//! HubSpot's refusals mapped to error codes an operator can act on, with `rate-limited` and
//! `upstream-unavailable` declared retryable in the manifest. The host adds the `hubspot`
//! bearer token to each request itself; this code never sees it.

use airlock_guest::http::{Request, Response};
use airlock_guest::{Error, Guest, Level, export};
use serde::{Deserialize, Serialize};

struct HubspotContacts;

impl Guest for HubspotContacts {
    fn invoke(action: String, input: String) -> Result<String, Error> {
        match action.as_str() {
            "list" => airlock_guest::handle(&input, list),
            "create" => airlock_guest::handle(&input, create),
            other => Err(Error::unknown_action(other)),
        }
    }
}

export!(HubspotContacts);

const CONTACTS: &str = "https://api.hubapi.com/crm/v3/objects/contacts";
/// The contact properties this connector reads; HubSpot returns only the ones asked for.
const PROPERTIES: &str = "email,firstname,lastname";

/// `schemas/list.in.json`.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct List {
    #[serde(default = "default_limit")]
    limit: u32,
    #[serde(default = "default_max_pages")]
    max_pages: u32,
    after: Option<String>,
}

fn default_limit() -> u32 {
    100
}

fn default_max_pages() -> u32 {
    5
}

/// `schemas/list.out.json`.
#[derive(Serialize)]
struct Contacts {
    contacts: Vec<Contact>,
    pages: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// One contact, in `list`'s output and as HubSpot's `properties` holds it.
#[derive(Serialize, Deserialize, Default)]
struct Contact {
    #[serde(default)]
    id: String,
    email: Option<String>,
    firstname: Option<String>,
    lastname: Option<String>,
}

/// A page of HubSpot's list: `{"results": [...], "paging": {"next": {"after": "…"}}}`.
#[derive(Deserialize)]
struct Page {
    results: Vec<Object>,
    paging: Option<Paging>,
}

#[derive(Deserialize)]
struct Object {
    id: String,
    #[serde(default)]
    properties: Contact,
}

#[derive(Deserialize)]
struct Paging {
    next: Option<Cursor>,
}

#[derive(Deserialize)]
struct Cursor {
    after: String,
}

fn list(input: List) -> Result<Contacts, Error> {
    let mut out = Contacts {
        contacts: Vec::new(),
        pages: 0,
        next: None,
    };
    let mut after = input.after;
    loop {
        let mut url = format!(
            "{CONTACTS}?limit={}&properties={PROPERTIES}",
            input.limit.clamp(1, 100)
        );
        if let Some(cursor) = &after {
            url.push_str("&after=");
            url.push_str(&percent_encode(cursor));
        }
        let page: Page = answer(Request::get(url).header("accept", "application/json"))?.json()?;
        out.pages += 1;
        out.contacts
            .extend(page.results.into_iter().map(|object| Contact {
                id: object.id,
                ..object.properties
            }));
        after = page.paging.and_then(|p| p.next).map(|next| next.after);
        // Stopping early hands the cursor back, so the caller (a schedule, say) continues
        // where this run ended rather than starting over.
        if after.is_none() || out.pages >= input.max_pages {
            out.next = after;
            break;
        }
    }
    airlock_guest::log(
        Level::Info,
        "listed contacts",
        &[("contacts", &out.contacts.len()), ("pages", &out.pages)],
    );
    Ok(out)
}

/// `schemas/create.in.json`, sent to HubSpot as `{"properties": {…}}`.
#[derive(Deserialize, Serialize)]
struct Create {
    email: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    firstname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lastname: Option<String>,
}

/// `schemas/create.out.json`.
#[derive(Serialize)]
struct Created {
    id: String,
    email: String,
}

fn create(input: Create) -> Result<Created, Error> {
    #[derive(Serialize)]
    struct Body<'a> {
        properties: &'a Create,
    }
    let request = Request::post(CONTACTS).json(&Body { properties: &input });
    let created: Object = answer(request)?.json()?;
    airlock_guest::log(Level::Info, "created contact", &[("id", &created.id)]);
    Ok(Created {
        id: created.id,
        email: input.email,
    })
}

/// Sends `request` and returns a 2xx response, or the error HubSpot's answer maps to.
fn answer(request: Request) -> Result<Response, Error> {
    let response = request.send()?;
    if response.is_success() {
        return Ok(response);
    }
    Err(refusal(&response))
}

/// HubSpot's refusal as an error code the operator can act on. The message carries HubSpot's
/// own `category` (never the body: it may quote customer data).
fn refusal(response: &Response) -> Error {
    #[derive(Deserialize)]
    struct Problem {
        category: Option<String>,
    }
    let category = response
        .json::<Problem>()
        .ok()
        .and_then(|p| p.category)
        .map_or_else(String::new, |category| format!(" {category}"));
    let status = response.status;
    let (code, what) = match status {
        401 => (
            "unauthorized",
            "HubSpot refused the token: reconnect the account or replace the credential",
        ),
        403 => (
            "forbidden",
            "the token lacks a scope (crm.objects.contacts.read or .write)",
        ),
        409 => ("conflict", "a contact with this email exists"),
        429 => ("rate-limited", "HubSpot's rate limit; try again later"),
        500..=599 => ("upstream-unavailable", "HubSpot failed; try again later"),
        _ => ("upstream", "HubSpot refused the request"),
    };
    Error::new(code, format!("{what} ({status}{category})"))
}

/// Percent-encodes all but RFC 3986's unreserved characters: a cursor is opaque, and may hold
/// `=`, `&` or `+`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
