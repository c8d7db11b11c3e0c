//! Scrubs injected secrets from upstream responses before an untrusted guest sees them.
//!
//! The broker adds a credential to the guest's outbound request; an upstream that echoes it
//! (reflected headers, `Location` redirects, debug endpoints) must not hand it back. Every known
//! byte form of the secret is replaced by [`Redactor::MARK`] in header values and bodies, across
//! arbitrary chunk boundaries, after undoing any `Content-Encoding` the guest could undo itself.
//!
//! Limits: only the forms listed in [`SecretForms`] are caught (e.g. lowercase percent-escapes or
//! other encodings are not), and a form containing `[` or `]` could be re-assembled next to a
//! `MARK`. The matcher keeps its own copy of the patterns, which is not zeroized.

use std::fmt;
use std::io::{self, Write};

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use flate2::write::{GzDecoder, ZlibDecoder};
use http::header::{CONTENT_ENCODING, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use zeroize::Zeroizing;

use crate::log::GuestLog;

/// Compressed input is fed to the decoder in slices of this size so the decoded-size limit is
/// checked often; each `write` call also emits at most one 32 KiB flate2 buffer.
const WRITE_SLICE: usize = 8 * 1024;

/// Percent-encoding as URL builders do it: RFC 3986 unreserved characters (`-._~`) stay as
/// they are (an email username echoed in a query is `svc%40acme.test`).
const URL_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The byte strings to scrub for one or more injected secrets.
///
/// Empty and duplicate forms are dropped on insertion. Forms are zeroized on drop.
#[derive(Clone, Default)]
pub struct SecretForms {
    forms: Vec<Zeroizing<Vec<u8>>>,
}

impl SecretForms {
    /// Forms of a token-like secret: raw, percent-encoded (every byte but letters and digits,
    /// and as URL builders do: as in a reflected query string) and JSON-escaped (as in a
    /// reflected JSON document).
    pub fn token(secret: &str) -> Self {
        let mut forms = Self::default();
        forms.add_token_forms(secret);
        forms
    }

    /// Forms for HTTP basic auth: the token forms of the password, of the base64 credential (an
    /// echoed `Authorization` header may itself be JSON- or URL-escaped) and of `user:password`;
    /// and of the username alone when it is at least [`Self::MIN_USERNAME`] bytes long or the
    /// password is empty (then the username is the secret). A shorter username (`api`, `admin`)
    /// is redacted only inside those forms: on its own it would blank a common word wherever a
    /// body holds it.
    pub fn basic(user: &str, password: &str) -> Self {
        let mut forms = Self::token(password);
        if user.len() >= Self::MIN_USERNAME || password.is_empty() {
            forms.add_token_forms(user);
        }
        // Pre-sized so no reallocation leaves an unzeroized copy behind.
        let mut pair = Zeroizing::new(String::with_capacity(user.len() + 1 + password.len()));
        pair.push_str(user);
        pair.push(':');
        pair.push_str(password);
        let b64_len = base64::encoded_len(pair.len(), true).unwrap_or(0);
        let mut b64 = Zeroizing::new(String::with_capacity(b64_len));
        STANDARD.encode_string(pair.as_bytes(), &mut b64);
        forms.add_token_forms(&b64);
        forms.add_token_forms(&pair);
        forms
    }

    /// The shortest username a basic credential's redactor scrubs on its own.
    pub const MIN_USERNAME: usize = 8;

    /// Merges the forms of another secret, for responses that may echo several.
    pub fn extend(&mut self, other: SecretForms) {
        for form in other.forms {
            self.add(form);
        }
    }

    /// True when there is nothing to scrub.
    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }

    fn add_token_forms(&mut self, secret: &str) {
        self.add(Zeroizing::new(secret.as_bytes().to_vec()));

        for set in [NON_ALPHANUMERIC, URL_COMPONENT] {
            let mut pct = Zeroizing::new(Vec::with_capacity(secret.len().saturating_mul(3)));
            for piece in utf8_percent_encode(secret, set) {
                pct.extend_from_slice(piece.as_bytes());
            }
            self.add(pct);
        }

        let mut json = Zeroizing::new(Vec::with_capacity(secret.len().saturating_mul(2)));
        for &b in secret.as_bytes() {
            if matches!(b, b'"' | b'\\' | b'/') {
                json.push(b'\\');
            }
            json.push(b);
        }
        self.add(json);
    }

    /// Drops empty forms (they would match everywhere) and duplicates ("only if different").
    fn add(&mut self, form: Zeroizing<Vec<u8>>) {
        if !form.is_empty() && !self.forms.iter().any(|f| f.as_slice() == form.as_slice()) {
            self.forms.push(form);
        }
    }
}

/// Never prints the forms themselves.
impl fmt::Debug for SecretForms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretForms")
            .field("forms", &self.forms.len())
            .finish_non_exhaustive()
    }
}

/// Compiled matcher for a set of [`SecretForms`]; cloning is cheap (the automaton is shared).
#[derive(Clone)]
pub struct Redactor {
    matcher: AhoCorasick,
    /// Longest form, `L`: a stream must hold back `L - 1` bytes to see every match whole.
    max_len: usize,
}

impl Redactor {
    /// Replacement for every occurrence of a form.
    pub const MARK: &'static [u8] = b"[REDACTED]";

    /// Replaces every echo of the credential in header values (`Location` included: CR-08);
    /// returns how many were replaced.
    pub(crate) fn redact_headers(&self, headers: &mut HeaderMap) -> u64 {
        let mut count = 0;
        for value in headers.values_mut() {
            let (redacted, n) = self.redact(value.as_bytes());
            if n > 0 {
                count += n as u64;
                // Redaction only replaces bytes with `[REDACTED]`: still a valid header value.
                *value = HeaderValue::from_bytes(&redacted)
                    .unwrap_or(HeaderValue::from_static("[REDACTED]"));
            }
        }
        count
    }

    /// `None` when `forms` is empty. Building only fails for pattern sets far beyond any real
    /// secret, but that also yields `None`: callers must treat `None` with a non-empty `forms`
    /// as fatal rather than as "nothing to redact".
    pub fn new(forms: &SecretForms) -> Option<Self> {
        let max_len = forms.forms.iter().map(|f| f.len()).max()?;
        let matcher = AhoCorasick::builder()
            // Longest wins so e.g. `user:password` is removed whole, not just its password part.
            .match_kind(MatchKind::LeftmostLongest)
            // Built for every request that carries a credential: a contiguous NFA builds in a
            // fraction of a DFA's time and still scans a body at memory speed for a few forms.
            .kind(Some(AhoCorasickKind::ContiguousNFA))
            .build(forms.forms.iter().map(|f| f.as_slice()))
            .ok()?;
        Some(Self { matcher, max_len })
    }

    /// Redacts a complete value (e.g. a header); returns the result and the replacement count.
    pub fn redact(&self, input: &[u8]) -> (Vec<u8>, usize) {
        self.replace(input, Self::MARK)
    }

    /// Like [`Self::redact`], with `mark` in place of each match (a recorded fixture's
    /// `{{credential.NAME}}`).
    pub fn replace(&self, input: &[u8], mark: &[u8]) -> (Vec<u8>, usize) {
        let mut out = Vec::with_capacity(input.len());
        let mut count = 0;
        let pos = self.scrub(input, usize::MAX, mark, &mut out, &mut count);
        out.extend_from_slice(&input[pos..]);
        (out, count)
    }

    /// Redacts every message and field value of `log`; returns the replacement count.
    pub fn scrub_log(&self, log: &mut GuestLog) -> u64 {
        let mut count = 0;
        let mut scrub = |text: &mut String| {
            let (out, n) = self.redact(text.as_bytes());
            if n > 0 {
                // Forms and the mark are ASCII: cutting them out keeps the text UTF-8.
                *text = String::from_utf8_lossy(&out).into_owned();
                count += n as u64;
            }
        };
        for line in &mut log.lines {
            scrub(&mut line.message);
            for (_, value) in &mut line.fields {
                scrub(value);
            }
        }
        count
    }

    /// Starts redacting a body that arrives in chunks.
    pub fn stream(&self) -> StreamRedactor {
        StreamRedactor {
            redactor: self.clone(),
            held: Vec::new(),
            count: 0,
        }
    }

    /// Appends `buf` with every match starting at or before `last_start` replaced, up to the end
    /// of the last such match, whose offset is returned; the rest of `buf` is left to the caller.
    fn scrub(
        &self,
        buf: &[u8],
        last_start: usize,
        mark: &[u8],
        out: &mut Vec<u8>,
        count: &mut usize,
    ) -> usize {
        let mut pos = 0;
        for m in self.matcher.find_iter(buf) {
            if m.start() > last_start {
                break;
            }
            out.extend_from_slice(&buf[pos..m.start()]);
            out.extend_from_slice(mark);
            pos = m.end();
            *count += 1;
        }
        pos
    }
}

/// Never prints the patterns.
impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("patterns", &self.matcher.patterns_len())
            .finish_non_exhaustive()
    }
}

/// Chunk-boundary-safe redaction; holds back at most `L - 1` bytes between pushes.
///
/// Output equals [`Redactor::redact`] of the whole input, however it is chunked.
pub struct StreamRedactor {
    redactor: Redactor,
    held: Vec<u8>,
    count: usize,
}

impl StreamRedactor {
    /// Returns the bytes that are now safe to release.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.held.len() + chunk.len());
        self.push_into(chunk, &mut out);
        out
    }

    /// Flushes the held tail, redacted. The redactor can then be reused for a new stream.
    pub fn finish(&mut self) -> Vec<u8> {
        let (out, count) = self.redactor.redact(&self.held);
        self.count += count;
        self.held.clear();
        out
    }

    /// Replacements made so far.
    pub fn count(&self) -> usize {
        self.count
    }

    fn push_into(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        self.held.extend_from_slice(chunk);
        let len = self.held.len();
        let max = self.redactor.max_len;
        // A match starting at or before `len - L` is final: every form starting there fits, and
        // nothing further left can still be incomplete. Later starts might grow with more input.
        let pos = match len.checked_sub(max) {
            Some(last_start) => {
                self.redactor
                    .scrub(&self.held, last_start, Redactor::MARK, out, &mut self.count)
            }
            None => 0,
        };
        // No match starts in `pos..=len - L`, so those bytes are clean; only `L - 1` may be a prefix.
        let release = pos.max(len.saturating_sub(max - 1));
        out.extend_from_slice(&self.held[pos..release]);
        self.held.drain(..release);
    }
}

/// `Content-Encoding` of a response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    /// zlib-wrapped deflate, as HTTP's `deflate` is specified.
    Deflate,
}

impl Encoding {
    /// The encoding of a response body the broker must decode to redact, from its headers.
    ///
    /// Exactly one content coding is accepted, and it must be decodable here: anything else
    /// (`br`, `zstd`, an empty value, a list such as `gzip, br`, or `Content-Encoding` repeated)
    /// is refused, because decoding one layer or none would hand the guest a body it can still
    /// decode but the redactor never read. For the same reason a transfer coding other than
    /// `chunked` (which the HTTP client removes) is refused.
    pub fn of_response(headers: &HeaderMap) -> Result<Self, RedactError> {
        for value in headers.get_all(TRANSFER_ENCODING) {
            let value = value
                .to_str()
                .map_err(|_| RedactError::UnsupportedTransferEncoding)?;
            if !value
                .split(',')
                .all(|coding| coding.trim().eq_ignore_ascii_case("chunked"))
            {
                return Err(RedactError::UnsupportedTransferEncoding);
            }
        }
        let mut values = headers.get_all(CONTENT_ENCODING).iter();
        let Some(value) = values.next() else {
            return Ok(Self::Identity);
        };
        if values.next().is_some() {
            return Err(RedactError::UnsupportedEncoding);
        }
        let value = value
            .to_str()
            .map_err(|_| RedactError::UnsupportedEncoding)?
            .trim();
        if value.eq_ignore_ascii_case("identity") {
            Ok(Self::Identity)
        } else if value.eq_ignore_ascii_case("gzip") || value.eq_ignore_ascii_case("x-gzip") {
            Ok(Self::Gzip)
        } else if value.eq_ignore_ascii_case("deflate") {
            Ok(Self::Deflate)
        } else {
            Err(RedactError::UnsupportedEncoding)
        }
    }
}

/// Why a response body cannot be released to the guest.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum RedactError {
    #[error("unsupported content-encoding")]
    UnsupportedEncoding,
    #[error("unsupported transfer-encoding")]
    UnsupportedTransferEncoding,
    #[error("invalid or truncated compressed body")]
    Corrupt,
    #[error("decoded body exceeds {limit} bytes")]
    TooLarge { limit: u64 },
}

/// Decoders write into a `Vec` that is drained after every step.
enum Decoder {
    Identity(Vec<u8>),
    Gzip(Box<GzDecoder<Vec<u8>>>),
    Deflate(Box<ZlibDecoder<Vec<u8>>>),
}

impl Decoder {
    fn write(&mut self, input: &[u8]) -> io::Result<usize> {
        match self {
            Self::Identity(out) => out.write(input),
            Self::Gzip(d) => d.write(input),
            Self::Deflate(d) => d.write(input),
        }
    }

    /// Pushes out decoded bytes flate2 still buffers, so streamed responses are not delayed.
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Identity(_) => Ok(()),
            Self::Gzip(d) => d.flush(),
            Self::Deflate(d) => d.flush(),
        }
    }

    /// Errors if the stream is truncated (or, for gzip, fails its CRC/length check).
    fn finish(&mut self) -> io::Result<()> {
        match self {
            Self::Identity(_) => Ok(()),
            Self::Gzip(d) => d.try_finish(),
            Self::Deflate(d) => d.try_finish(),
        }
    }

    fn output(&mut self) -> &mut Vec<u8> {
        match self {
            Self::Identity(out) => out,
            Self::Gzip(d) => d.get_mut(),
            Self::Deflate(d) => d.get_mut(),
        }
    }
}

/// Decodes a response body incrementally, then redacts it; output is always the decoded body.
///
/// Fail-closed: after an error every call returns that error, and after `finish` every call
/// returns `Corrupt`. Trailing data after the compressed stream (including further gzip members)
/// is rejected as `Corrupt`. An entirely empty body is accepted (e.g. `HEAD`, `304`).
pub struct BodyFilter {
    decoder: Decoder,
    stream: StreamRedactor,
    decoded: u64,
    max_decoded: u64,
    seen_input: bool,
    closed: Option<RedactError>,
}

impl BodyFilter {
    /// `max_decoded` caps the decoded size, bounding memory and time on decompression bombs.
    pub fn new(redactor: &Redactor, encoding: Encoding, max_decoded: u64) -> Self {
        let decoder = match encoding {
            Encoding::Identity => Decoder::Identity(Vec::new()),
            Encoding::Gzip => Decoder::Gzip(Box::new(GzDecoder::new(Vec::new()))),
            Encoding::Deflate => Decoder::Deflate(Box::new(ZlibDecoder::new(Vec::new()))),
        };
        Self {
            decoder,
            stream: redactor.stream(),
            decoded: 0,
            max_decoded,
            seen_input: false,
            closed: None,
        }
    }

    /// Returns the decoded, redacted bytes that are now safe to release.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<u8>, RedactError> {
        self.guard(|filter| filter.push_inner(chunk))
    }

    /// Checks the compressed stream is complete and releases the redacted tail.
    pub fn finish(&mut self) -> Result<Vec<u8>, RedactError> {
        let out = self.guard(Self::finish_inner)?;
        self.closed = Some(RedactError::Corrupt);
        Ok(out)
    }

    /// Replacements made so far.
    pub fn count(&self) -> usize {
        self.stream.count()
    }

    fn guard(
        &mut self,
        op: impl FnOnce(&mut Self) -> Result<Vec<u8>, RedactError>,
    ) -> Result<Vec<u8>, RedactError> {
        if let Some(err) = self.closed {
            return Err(err);
        }
        let result = op(self);
        if let Err(err) = result {
            self.closed = Some(err);
        }
        result
    }

    fn push_inner(&mut self, mut chunk: &[u8]) -> Result<Vec<u8>, RedactError> {
        let mut out = Vec::new();
        self.seen_input |= !chunk.is_empty();
        while !chunk.is_empty() {
            let slice = &chunk[..chunk.len().min(WRITE_SLICE)];
            match self.decoder.write(slice) {
                // The decoder refuses input once its stream has ended: trailing garbage.
                Ok(0) | Err(_) => return Err(RedactError::Corrupt),
                Ok(n) => chunk = &chunk[n..],
            }
            self.release(&mut out)?;
        }
        self.decoder.flush().map_err(|_| RedactError::Corrupt)?;
        self.release(&mut out)?;
        Ok(out)
    }

    fn finish_inner(&mut self) -> Result<Vec<u8>, RedactError> {
        let mut out = Vec::new();
        if self.seen_input {
            self.decoder.finish().map_err(|_| RedactError::Corrupt)?;
            self.release(&mut out)?;
        }
        out.extend_from_slice(&self.stream.finish());
        Ok(out)
    }

    /// Counts newly decoded bytes against the limit before any of them reach the redactor.
    fn release(&mut self, out: &mut Vec<u8>) -> Result<(), RedactError> {
        let decoded = self.decoder.output();
        self.decoded = self.decoded.saturating_add(decoded.len() as u64);
        if self.decoded > self.max_decoded {
            return Err(RedactError::TooLarge {
                limit: self.max_decoded,
            });
        }
        self.stream.push_into(decoded, out);
        decoded.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests;
