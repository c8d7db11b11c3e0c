//! A strictly parsed JSON text kept flat: one vector of items in document order, with strings
//! borrowed from the text wherever they have no escapes.
//!
//! Every input and output is checked against its schema, and that check only needs to walk the
//! document once. A `serde_json::Value` costs an allocation per string, array and object to build
//! and as many frees to drop: on a 400-byte document that was most of what Airlock adds to an
//! invocation (docs/benchmarks.md). A [`Document`] is one vector, usually borrowing every
//! string. The schema validator reads it in place (`crate::schema`), and a `Value` is built from
//! it only where a caller keeps one.
//!
//! Parsing goes through serde_json's own deserializer, so syntax errors, the nesting limit and
//! numbers are serde_json's; duplicate keys are refused as they are read.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::{JsonError, syntax_error};

/// Objects with more members than this keep a sorted index of their keys: beyond it, looking a
/// key up by scanning costs more than a binary search, and duplicates are found with a hash set.
const SCANNED_MEMBERS: usize = 16;

/// A JSON text parsed strictly (see [`Document::parse`]), borrowing from the text.
#[derive(Debug, PartialEq)]
pub struct Document<'t> {
    items: Vec<Item<'t>>,
    /// For each object with more than [`SCANNED_MEMBERS`] members, its key items' positions,
    /// sorted by key; the object's `sorted` says where its run starts.
    sorted: Vec<usize>,
}

/// One item of a [`Document`]; a container's members or elements follow it.
#[derive(Debug, Clone, PartialEq)]
pub enum Item<'t> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'t, str>),
    /// `len` elements follow; the item after the last one is at `end`.
    Array {
        len: usize,
        end: usize,
    },
    /// `len` members follow, each a [`Item::Key`] and then its value; the item after the last
    /// one is at `end`. `sorted` is where the object's run of sorted key positions starts, for
    /// an object with more than [`SCANNED_MEMBERS`] members.
    Object {
        len: usize,
        end: usize,
        sorted: Option<usize>,
    },
    /// A member's name; its value is the next item.
    Key(Cow<'t, str>),
}

impl<'t> Document<'t> {
    /// Parses JSON text from an untrusted source.
    ///
    /// Refuses texts over `limit` bytes without looking at them, duplicate object keys (so
    /// every later reader sees the document the validator saw), trailing characters, and
    /// nesting deeper than serde_json's limit of 127 containers.
    pub fn parse(text: &'t str, limit: usize) -> Result<Document<'t>, JsonError> {
        if text.len() > limit {
            return Err(JsonError::TooLarge {
                size: text.len(),
                limit,
            });
        }
        let mut builder = Builder::for_text(text.len());
        let duplicate = RefCell::new(None);
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let parsed = Build {
            builder: &mut builder,
            path: &Path::Root,
            duplicate: &duplicate,
        }
        .deserialize(&mut deserializer)
        .and_then(|()| deserializer.end());
        parsed.map_err(|error| match duplicate.into_inner() {
            Some(found) => found,
            None => syntax_error(&error),
        })?;
        Ok(Document {
            items: builder.items,
            sorted: builder.sorted,
        })
    }

    /// The document's root value.
    pub fn root(&self) -> Cursor<'_> {
        Cursor {
            items: &self.items,
            sorted: &self.sorted,
            at: 0,
        }
    }

    /// The document as a `serde_json::Value`, for callers that keep it.
    pub fn to_value(&self) -> Value {
        self.root().to_value()
    }
}

/// One value of a document: where it is, and the document's items around it.
#[derive(Debug, Clone, Copy)]
pub struct Cursor<'a> {
    items: &'a [Item<'a>],
    sorted: &'a [usize],
    at: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor on a lone string, outside any document, backed by `item`.
    pub fn string(item: &'a [Item<'a>; 1]) -> Cursor<'a> {
        Cursor {
            items: item,
            sorted: &[],
            at: 0,
        }
    }

    /// The item this cursor is on.
    pub fn item(&self) -> &'a Item<'a> {
        &self.items[self.at]
    }

    /// How many elements this value has, if it is an array.
    pub fn array_len(&self) -> Option<usize> {
        match self.item() {
            Item::Array { len, .. } => Some(*len),
            _ => None,
        }
    }

    /// How many members this value has, if it is an object.
    pub fn object_len(&self) -> Option<usize> {
        match self.item() {
            Item::Object { len, .. } => Some(*len),
            _ => None,
        }
    }

    /// An array's elements in order; none for any other value.
    pub fn elements(&self) -> Elements<'a> {
        Elements {
            next: self.at(self.at + 1),
            remaining: self.array_len().unwrap_or(0),
        }
    }

    /// An object's members in document order; none for any other value.
    pub fn members(&self) -> Members<'a> {
        Members {
            next: self.at(self.at + 1),
            remaining: self.object_len().unwrap_or(0),
        }
    }

    /// An object member's value by name.
    pub fn get(&self, name: &str) -> Option<Cursor<'a>> {
        let Item::Object { len, sorted, .. } = *self.item() else {
            return None;
        };
        let Some(start) = sorted else {
            return self.members().find(|(key, _)| *key == name).map(|(_, v)| v);
        };
        let keys = &self.sorted[start..start + len];
        let found = keys.binary_search_by(|&at| key_at(self.items, at).as_ref().cmp(name));
        found.ok().map(|index| self.at(keys[index] + 1))
    }

    /// This value as a `serde_json::Value`.
    pub fn to_value(&self) -> Value {
        match self.item() {
            Item::Null => Value::Null,
            Item::Bool(value) => Value::Bool(*value),
            Item::Number(number) => Value::Number(number.clone()),
            Item::String(string) | Item::Key(string) => Value::String(string.as_ref().to_owned()),
            Item::Array { len, .. } => {
                let mut elements = Vec::with_capacity(*len);
                elements.extend(self.elements().map(|element| element.to_value()));
                Value::Array(elements)
            }
            Item::Object { .. } => {
                let mut members = Map::new();
                for (name, value) in self.members() {
                    members.insert(name.to_owned(), value.to_value());
                }
                Value::Object(members)
            }
        }
    }

    fn at(&self, at: usize) -> Cursor<'a> {
        Cursor { at, ..*self }
    }

    /// The position just past this value.
    fn end(&self) -> usize {
        match self.item() {
            Item::Array { end, .. } | Item::Object { end, .. } => *end,
            _ => self.at + 1,
        }
    }
}

/// An array's elements ([`Cursor::elements`]).
pub struct Elements<'a> {
    next: Cursor<'a>,
    remaining: usize,
}

impl<'a> Iterator for Elements<'a> {
    type Item = Cursor<'a>;

    fn next(&mut self) -> Option<Cursor<'a>> {
        self.remaining = self.remaining.checked_sub(1)?;
        let element = self.next;
        self.next = element.at(element.end());
        Some(element)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

/// An object's members ([`Cursor::members`]).
pub struct Members<'a> {
    next: Cursor<'a>,
    remaining: usize,
}

impl<'a> Iterator for Members<'a> {
    type Item = (&'a str, Cursor<'a>);

    fn next(&mut self) -> Option<(&'a str, Cursor<'a>)> {
        self.remaining = self.remaining.checked_sub(1)?;
        let key = self.next;
        let value = key.at(key.at + 1);
        self.next = value.at(value.end());
        Some((key_at(key.items, key.at).as_ref(), value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

fn key_at<'i, 't>(items: &'i [Item<'t>], at: usize) -> &'i Cow<'t, str> {
    match &items[at] {
        Item::Key(key) => key,
        _ => unreachable!("a member starts with its key"),
    }
}

/// The items built so far.
struct Builder<'t> {
    items: Vec<Item<'t>>,
    sorted: Vec<usize>,
}

impl<'t> Builder<'t> {
    /// Room for the items a small text of `len` bytes usually holds (one per eight bytes or
    /// more), so building it allocates once; a large text's vector grows as it fills.
    fn for_text(len: usize) -> Self {
        Builder {
            items: Vec::with_capacity((len / 8 + 1).min(4096)),
            sorted: Vec::new(),
        }
    }

    /// The key positions of the object at `at`, whose members so far end where the items do.
    fn keys_of(&self, at: usize) -> impl Iterator<Item = usize> + '_ {
        let mut next = at + 1;
        std::iter::from_fn(move || {
            let key = next;
            let value = key + 1;
            (value < self.items.len()).then(|| {
                next = match &self.items[value] {
                    Item::Array { end, .. } | Item::Object { end, .. } => *end,
                    _ => value + 1,
                };
                key
            })
        })
    }
}

/// Where a value sits in the document, as a chain of borrowed segments: nothing is allocated
/// unless a duplicate key needs its pointer rendered.
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Key(parent, key) => {
                write!(f, "{parent}/{}", key.replace('~', "~0").replace('/', "~1"))
            }
            Path::Index(parent, index) => write!(f, "{parent}/{index}"),
        }
    }
}

/// Appends one value to the builder, recording the first duplicate key in `duplicate`.
struct Build<'b, 't> {
    builder: &'b mut Builder<'t>,
    path: &'b Path<'b>,
    duplicate: &'b RefCell<Option<JsonError>>,
}

impl<'t> Build<'_, 't> {
    fn push(self, item: Item<'t>) {
        self.builder.items.push(item);
    }
}

impl<'de> DeserializeSeed<'de> for Build<'_, 'de> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Build<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.push(Item::Bool(v));
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.push(Item::Number(v.into()));
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.push(Item::Number(v.into()));
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        // serde_json never produces NaN or infinities from text, so this is never `Null`.
        self.push(Number::from_f64(v).map_or(Item::Null, Item::Number));
        Ok(())
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<(), E> {
        self.push(Item::String(Cow::Borrowed(v)));
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.push(Item::String(Cow::Owned(v.to_owned())));
        Ok(())
    }

    fn visit_string<E>(self, v: String) -> Result<(), E> {
        self.push(Item::String(Cow::Owned(v)));
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.push(Item::Null);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let at = self.builder.items.len();
        self.builder.items.push(Item::Array { len: 0, end: 0 });
        let mut len = 0;
        loop {
            let path = Path::Index(self.path, len);
            let seed = Build {
                builder: &mut *self.builder,
                path: &path,
                duplicate: self.duplicate,
            };
            if seq.next_element_seed(seed)?.is_none() {
                break;
            }
            len += 1;
        }
        let end = self.builder.items.len();
        self.builder.items[at] = Item::Array { len, end };
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<(), A::Error> {
        let builder = self.builder;
        let at = builder.items.len();
        builder.items.push(Item::Object {
            len: 0,
            end: 0,
            sorted: None,
        });
        let mut len = 0;
        // Past `SCANNED_MEMBERS`, duplicates are found by hashing (SipHash: keys are untrusted).
        let mut seen: Option<HashSet<Cow<'de, str>>> = None;
        while let Some(key) = access.next_key_seed(KeySeed)? {
            let taken = match &mut seen {
                Some(seen) => !seen.insert(key.clone()),
                None => builder
                    .keys_of(at)
                    .any(|at| *key_at(&builder.items, at) == key),
            };
            if taken {
                *self.duplicate.borrow_mut() = Some(JsonError::DuplicateKey {
                    pointer: self.path.to_string(),
                    key: key.into_owned(),
                });
                return Err(de::Error::custom("duplicate key"));
            }
            len += 1;
            if seen.is_none() && len > SCANNED_MEMBERS {
                let keys = builder
                    .keys_of(at)
                    .map(|at| key_at(&builder.items, at).clone());
                seen = Some(keys.chain([key.clone()]).collect());
            }
            builder.items.push(Item::Key(key.clone()));
            let path = Path::Key(self.path, &key);
            access.next_value_seed(Build {
                builder: &mut *builder,
                path: &path,
                duplicate: self.duplicate,
            })?;
        }
        let sorted = (len > SCANNED_MEMBERS).then(|| {
            let start = builder.sorted.len();
            let keys: Vec<usize> = builder.keys_of(at).collect();
            builder.sorted.extend(keys);
            let items = &builder.items;
            builder.sorted[start..]
                .sort_unstable_by(|&a, &b| key_at(items, a).cmp(key_at(items, b)));
            start
        });
        let end = builder.items.len();
        builder.items[at] = Item::Object { len, end, sorted };
        Ok(())
    }
}

/// Reads an object key, borrowing it from the text when it has no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}
