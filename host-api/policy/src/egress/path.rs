//! Path segments: one canonical form for rule prefixes and request paths.
//!
//! A prefix matches whole segments, so both sides must agree on what a segment is. The
//! canonical form is RFC 3986 normalisation (§6.2.2): percent-encoded unreserved characters are
//! decoded, other escapes get uppercase hex, and characters RFC 3986 never allows raw are
//! encoded. Anything that different servers may read as a different path is refused outright:
//! encoded `/` or `\`, dot segments however they are hidden (`%2e`, `%252e`, `..;x`), encoded
//! controls and invalid escapes. What is checked is exactly what is sent.

/// How many nested layers of percent-encoding are inspected before giving up.
const MAX_DECODE_ROUNDS: usize = 4;

/// Why a path (prefix) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("must start with '/'")]
    NotAbsolute,
    #[error("contains an empty segment (//)")]
    EmptySegment,
    #[error("contains a dot segment (. or .., possibly percent-encoded or followed by ;)")]
    DotSegment,
    #[error("contains an encoded '/' or '\\' (%2F, %5C), which hides a segment boundary")]
    EncodedSeparator,
    #[error("contains a backslash")]
    Backslash,
    #[error("contains an encoded control character")]
    EncodedControl,
    #[error("contains an invalid percent-escape")]
    InvalidEscape,
    #[error("is percent-encoded more than {MAX_DECODE_ROUNDS} times over")]
    DeepEncoding,
    #[error("contains {0:?}, which must be percent-encoded")]
    InvalidChar(char),
}

/// What to do with a character RFC 3986 does not allow raw in a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Raw {
    /// Refuse it: rule authors write the canonical form.
    Refuse,
    /// Percent-encode it: request paths come from WHATWG, which leaves `|`, `^`, `[` raw.
    Encode,
}

/// Parses a rule's path prefix into canonical segments; `/` (or nothing) means any path.
/// One trailing slash is ignored: `/api/` and `/api` both name the `api` segment.
pub(crate) fn parse_prefix(path: &str) -> Result<Vec<String>, PathError> {
    if path.is_empty() || path == "/" {
        return Ok(Vec::new());
    }
    let rest = path.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    rest.split('/')
        .map(|segment| match segment {
            "" => Err(PathError::EmptySegment),
            _ => canonical_segment(segment, Raw::Refuse),
        })
        .collect()
}

/// Canonicalises a request path that WHATWG has already cleaned of literal dot segments.
pub(crate) fn canonical_path(path: &str) -> Result<String, PathError> {
    let rest = path.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
    let mut out = String::with_capacity(path.len() + 8);
    for segment in rest.split('/') {
        out.push('/');
        out.push_str(&canonical_segment(segment, Raw::Encode)?);
    }
    Ok(out)
}

/// True when `path` (canonical) starts with the `prefix` segments, compared whole.
pub(crate) fn prefix_matches(prefix: &[String], path: &str) -> bool {
    let mut segments = path.strip_prefix('/').unwrap_or(path).split('/');
    prefix
        .iter()
        .all(|want| segments.next().is_some_and(|got| got == want))
}

/// Renders prefix segments back into `/a/b` form.
pub(crate) fn render_prefix(prefix: &[String]) -> String {
    prefix.iter().fold(String::new(), |mut out, segment| {
        out.push('/');
        out.push_str(segment);
        out
    })
}

fn canonical_segment(raw: &str, mode: Raw) -> Result<String, PathError> {
    check_unambiguous(raw.as_bytes())?;
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let value = hex_pair(bytes, i + 1).ok_or(PathError::InvalidEscape)?;
            if is_unreserved(value) {
                out.push(char::from(value));
            } else {
                push_escape(&mut out, value);
            }
            i += 3;
            continue;
        }
        if is_unreserved(b) || is_sub_delim(b) || b == b':' || b == b'@' {
            out.push(char::from(b));
        } else if mode == Raw::Encode && (b.is_ascii_graphic() || !b.is_ascii()) {
            push_escape(&mut out, b);
        } else {
            let c = raw.get(i..).and_then(|rest| rest.chars().next());
            return Err(PathError::InvalidChar(
                c.unwrap_or(char::REPLACEMENT_CHARACTER),
            ));
        }
        i += 1;
    }
    Ok(out)
}

/// Refuses a segment that any layer of percent-decoding turns into a separator, a control
/// character or a dot segment: some servers and proxies decode more than once, and a prefix
/// check must hold for all of them.
fn check_unambiguous(raw: &[u8]) -> Result<(), PathError> {
    if raw.contains(&b'\\') {
        return Err(PathError::Backslash);
    }
    let mut current = raw.to_vec();
    for round in 0..=MAX_DECODE_ROUNDS {
        if round > 0 && current.iter().any(|&b| b == b'/' || b == b'\\') {
            return Err(PathError::EncodedSeparator);
        }
        if current.iter().any(|&b| b < 0x20 || b == 0x7f) {
            return Err(PathError::EncodedControl);
        }
        let head = current.split(|&b| b == b';').next().unwrap_or(&[]);
        if head == b"." || head == b".." {
            return Err(PathError::DotSegment);
        }
        let next = decode_once(&current);
        if next == current {
            return Ok(());
        }
        current = next;
    }
    Err(PathError::DeepEncoding)
}

fn decode_once(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], hex_pair(bytes, i + 1)) {
            (b'%', Some(value)) => {
                out.push(value);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

fn hex_pair(bytes: &[u8], at: usize) -> Option<u8> {
    let hi = char::from(*bytes.get(at)?).to_digit(16)?;
    let lo = char::from(*bytes.get(at + 1)?).to_digit(16)?;
    u8::try_from(hi * 16 + lo).ok()
}

fn push_escape(out: &mut String, value: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(value >> 4)]));
    out.push(char::from(HEX[usize::from(value & 0xf)]));
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_paths_canonicalise_to_rfc_3986_normal_form() {
        let cases: &[(&str, Result<&str, PathError>)] = &[
            ("/", Ok("/")),
            ("/api/v1/", Ok("/api/v1/")),
            ("/%61pi/%7e%41", Ok("/api/~A")),
            ("/caf%c3%a9", Ok("/caf%C3%A9")),
            ("/a|b^c[d]", Ok("/a%7Cb%5Ec%5Bd%5D")),
            ("/a;b=c/@:x", Ok("/a;b=c/@:x")),
            ("/a%2Fb", Err(PathError::EncodedSeparator)),
            ("/a%5cb", Err(PathError::EncodedSeparator)),
            ("/a%252Fb", Err(PathError::EncodedSeparator)),
            ("/x/%252e%252e/y", Err(PathError::DotSegment)),
            ("/x/..;jsessionid=1/y", Err(PathError::DotSegment)),
            ("/x/%2e;/y", Err(PathError::DotSegment)),
            ("/a%00b", Err(PathError::EncodedControl)),
            ("/a%zz", Err(PathError::InvalidEscape)),
            ("/a%", Err(PathError::InvalidEscape)),
            ("/%2525252525", Err(PathError::DeepEncoding)),
            ("/100%25", Ok("/100%25")),
        ];
        for (path, expected) in cases {
            assert_eq!(
                canonical_path(path).as_deref(),
                expected.as_ref().map(|s| *s),
                "{path:?}"
            );
        }
    }

    #[test]
    fn prefixes_match_whole_segments() {
        let api = vec!["api".to_owned()];
        let cases = [
            ("/api", true),
            ("/api/", true),
            ("/api/x", true),
            ("/apix", false),
            ("/ap", false),
            ("/", false),
            ("//api", false),
        ];
        for (path, expected) in cases {
            assert_eq!(prefix_matches(&api, path), expected, "{path:?}");
        }
        assert!(prefix_matches(&[], "/anything"));
    }
}
