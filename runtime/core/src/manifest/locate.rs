//! Turns a toml error's byte span into a 1-based line and column and the name of the key at
//! fault, so an author can find the problem without knowing toml's internals.

use std::ops::Range;
use std::path::Path;

use super::ManifestError;

pub(super) fn parse_error(path: &Path, text: &str, error: &toml::de::Error) -> ManifestError {
    let span = error.span();
    let (line, column) = span
        .as_ref()
        .map_or((1, 1), |span| line_column(text, span.start));
    let mut message = error.message().trim_end().to_owned();
    if let Some(span) = span
        && let Some(context) = key_context(text, &span, &message)
    {
        message.push_str(" (");
        message.push_str(&context);
        message.push(')');
    }
    ManifestError::Parse {
        path: path.to_path_buf(),
        line,
        column,
        message: escape_controls(&message),
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`. Offsets past the end or
/// inside a character are clamped.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Escapes control characters (newlines, ANSI escapes) so a message stays on one line and cannot
/// drive a terminal.
fn escape_controls(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Names the key an error span points at: `in `limits`` for an error on a key (unknown field,
/// bad action name) or on a whole table (missing field), `in `limits.timeout`` for an error on a
/// value, `at top level` for the root. `None` if the document cannot be re-parsed (a syntax
/// error: toml's message already says what is wrong).
///
/// toml's `de::Error` records the key path internally but does not expose it, so the path is
/// recovered by re-parsing into a spanned `DeTable` and finding the narrowest key or value whose
/// span contains the error's span.
fn key_context(text: &str, span: &Range<usize>, message: &str) -> Option<String> {
    let root = toml::de::DeTable::parse(text).ok()?;
    // An empty span (toml uses 0..0 for the root table) means the document as a whole.
    if span.is_empty() {
        return Some("at top level".into());
    }
    let mut best = None;
    let mut path = Vec::new();
    find_key(root.get_ref(), span, &mut path, &mut best);
    let Some(found) = best else {
        return Some("at top level".into());
    };
    // A span exactly on a key comes from the key itself (unknown field, bad action name): name
    // the table the key is in. For `[a.b]` headers, the implicit table `a` has key span equal to
    // value span; a missing field in it is reported on the table, everything else on the key.
    let on_key = found.key_hit && !(found.key_equals_value && message.starts_with("missing field"));
    let segments = if on_key {
        &found.path[..found.path.len() - 1]
    } else {
        &found.path[..]
    };
    if segments.is_empty() {
        Some("at top level".into())
    } else {
        Some(format!("in `{}`", dotted(segments)))
    }
}

struct KeyHit {
    width: usize,
    path: Vec<String>,
    key_hit: bool,
    key_equals_value: bool,
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

fn find_key(
    table: &toml::de::DeTable<'_>,
    span: &Range<usize>,
    path: &mut Vec<String>,
    best: &mut Option<KeyHit>,
) {
    for (key, value) in table {
        path.push(key.get_ref().to_string());
        let (key_span, value_span) = (key.span(), value.span());
        let key_equals_value = key_span == value_span;
        // Values first so that, on a tie, the key wins (only a key hit replaces an equal width).
        for (candidate, key_hit) in [(&value_span, false), (&key_span, true)] {
            if contains(candidate, span) {
                let width = candidate.len();
                if best
                    .as_ref()
                    .is_none_or(|b| width < b.width || (key_hit && width == b.width))
                {
                    *best = Some(KeyHit {
                        width,
                        path: path.clone(),
                        key_hit,
                        key_equals_value,
                    });
                }
            }
        }
        match value.get_ref() {
            toml::de::DeValue::Table(inner) => find_key(inner, span, path, best),
            toml::de::DeValue::Array(items) => {
                for item in items.iter() {
                    if let toml::de::DeValue::Table(inner) = item.get_ref() {
                        find_key(inner, span, path, best);
                    }
                }
            }
            _ => {}
        }
        path.pop();
    }
}

/// Renders a key path the way TOML writes it: bare keys as-is, others quoted.
fn dotted(segments: &[String]) -> String {
    segments
        .iter()
        .map(|s| {
            let bare = !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if bare { s.clone() } else { format!("{s:?}") }
        })
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_characters_from_one() {
        let text = "a = 1\né = \"ü\"\r\nb";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 4), (1, 5));
        assert_eq!(line_column(text, 6), (2, 1));
        // "é" is two bytes; the byte after "é = " is the fourth character on the line.
        assert_eq!(line_column(text, 6 + "é = ".len()), (2, 5));
        assert_eq!(line_column(text, text.len() - 1), (3, 1));
        assert_eq!(
            line_column(text, 7),
            (2, 1),
            "inside a character clamps back"
        );
        assert_eq!(line_column(text, 10_000), (3, 2), "past the end clamps");
        assert_eq!(line_column("", 0), (1, 1));
    }
}
