//! How jsonschema reads an instance: a [`Document`](crate::json::Document) in place, through
//! its [`Cursor`]s, so validating builds no `serde_json::Value` (docs/benchmarks.md).

use std::borrow::Cow;

use jsonschema::JsonType;
use jsonschema::json::{Array, Json, Node, NodeIdentity, Object};
use serde_json::{Number, Value};

use crate::json::document::{Elements, Members};
use crate::json::{Cursor, Item};

/// The representation [`Schema`](super::Schema)'s validators are built for.
pub(super) struct Flat;

impl Json for Flat {
    type Node<'a> = Cursor<'a>;
    type PreparedKey = Box<str>;
    type StringBuffer = ();

    /// A lookup scans the members of an object of up to 16 (`json::document`), so a pass over
    /// the members pays off sooner than with a hash or tree lookup.
    const KEYS_PER_LOOKUP: usize = 4;
    const ACYCLIC: bool = true;

    fn prepare_key(key: &str) -> Box<str> {
        key.into()
    }

    fn with_string_node<T>((): &mut (), string: &str, f: impl FnOnce(Cursor<'_>) -> T) -> T {
        let item = [Item::String(Cow::Borrowed(string))];
        f(Cursor::string(&item))
    }
}

impl<'a> Node<'a, Flat> for Cursor<'a> {
    type Object = Cursor<'a>;
    type Array = Cursor<'a>;
    type Number = &'a Number;

    fn as_object(&self) -> Option<Cursor<'a>> {
        self.object_len().map(|_| *self)
    }

    fn as_array(&self) -> Option<Cursor<'a>> {
        self.array_len().map(|_| *self)
    }

    fn as_string(&self) -> Option<Cow<'a, str>> {
        match self.item() {
            Item::String(string) => Some(Cow::Borrowed(string)),
            _ => None,
        }
    }

    fn as_number(&self) -> Option<&'a Number> {
        match self.item() {
            Item::Number(number) => Some(number),
            _ => None,
        }
    }

    fn as_boolean(&self) -> Option<bool> {
        match self.item() {
            Item::Bool(value) => Some(*value),
            _ => None,
        }
    }

    fn is_null(&self) -> bool {
        matches!(self.item(), Item::Null)
    }

    fn json_type(&self) -> JsonType {
        match self.item() {
            Item::Null => JsonType::Null,
            Item::Bool(_) => JsonType::Boolean,
            Item::Number(_) => JsonType::Number,
            Item::String(_) | Item::Key(_) => JsonType::String,
            Item::Array { .. } => JsonType::Array,
            Item::Object { .. } => JsonType::Object,
        }
    }

    fn string_length_within(&self, min: u64, max: u64) -> Option<bool> {
        let Item::String(string) = self.item() else {
            return None;
        };
        // A code point is one to four bytes: the byte length often decides without counting.
        let bytes = string.len() as u64;
        if bytes < min || bytes.div_ceil(4) > max {
            return Some(false);
        }
        if min <= bytes.div_ceil(4) && bytes <= max {
            return Some(true);
        }
        Some((min..=max).contains(&(string.chars().count() as u64)))
    }

    fn to_value(&self) -> Cow<'a, Value> {
        Cow::Owned(Cursor::to_value(self))
    }

    fn identity(&self) -> Option<NodeIdentity> {
        // Every value is an item of its own, so the item's address tells values apart.
        Some(NodeIdentity::new(std::ptr::from_ref(self.item()) as usize))
    }
}

impl<'a> Object<'a, Flat> for Cursor<'a> {
    type Node = Cursor<'a>;
    type MemberName = &'a str;
    type MembersIter = Members<'a>;

    fn len(&self) -> usize {
        self.object_len().unwrap_or(0)
    }

    fn get(&self, key: &Box<str>) -> Option<Cursor<'a>> {
        Cursor::get(self, key)
    }

    fn members(&self) -> Members<'a> {
        Cursor::members(self)
    }
}

impl<'a> Array<'a, Flat> for Cursor<'a> {
    type Node = Cursor<'a>;
    type ElementsIter = Elements<'a>;

    fn len(&self) -> usize {
        self.array_len().unwrap_or(0)
    }

    fn elements(&self) -> Elements<'a> {
        Cursor::elements(self)
    }
}
