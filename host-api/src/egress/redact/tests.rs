use std::io::Write as _;

use flate2::Compression;
use flate2::write::{GzEncoder, ZlibEncoder};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

fn forms_of(forms: &SecretForms) -> Vec<Vec<u8>> {
    forms.forms.iter().map(|f| f.to_vec()).collect()
}

fn strs(list: &[&str]) -> Vec<Vec<u8>> {
    list.iter().map(|s| s.as_bytes().to_vec()).collect()
}

fn occurrences(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(data).expect("gzip write");
    enc.finish().expect("gzip finish")
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut enc = ZlibEncoder::new(Vec::new(), Compression::default());
    enc.write_all(data).expect("zlib write");
    enc.finish().expect("zlib finish")
}

fn redactor(forms: &SecretForms) -> Redactor {
    Redactor::new(forms).expect("non-empty forms")
}

/// Streams `input` split at `cuts` and returns the joined output.
fn stream_split(r: &Redactor, input: &[u8], cuts: &[usize]) -> (Vec<u8>, usize) {
    let mut s = r.stream();
    let mut out = Vec::new();
    let mut start = 0;
    for &cut in cuts.iter().chain([input.len()].iter()) {
        out.extend(s.push(&input[start..cut]));
        start = cut;
    }
    out.extend(s.finish());
    (out, s.count())
}

fn filter_all(
    r: &Redactor,
    encoding: Encoding,
    limit: u64,
    chunks: &[&[u8]],
) -> Result<Vec<u8>, RedactError> {
    let mut f = BodyFilter::new(r, encoding, limit);
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend(f.push(chunk)?);
    }
    out.extend(f.finish()?);
    Ok(out)
}

#[test]
fn token_forms_table() {
    let cases: &[(&str, &[&str])] = &[
        ("abc123", &["abc123"]),
        ("a/b", &["a/b", "a%2Fb", "a\\/b"]),
        ("x\"y", &["x\"y", "x%22y", "x\\\"y"]),
        ("k+v=", &["k+v=", "k%2Bv%3D"]),
        ("b\\s", &["b\\s", "b%5Cs", "b\\\\s"]),
        (
            "a-b.c_d~e/f",
            &[
                "a-b.c_d~e/f",
                "a%2Db%2Ec%5Fd%7Ee%2Ff",
                "a-b.c_d~e%2Ff",
                "a-b.c_d~e\\/f",
            ],
        ),
        ("", &[]),
    ];
    for (secret, expected) in cases {
        let forms = SecretForms::token(secret);
        assert_eq!(forms_of(&forms), strs(expected), "token({secret:?})");
        assert_eq!(forms.is_empty(), expected.is_empty());
    }
}

#[test]
fn basic_forms_table() {
    let cases: &[(&str, &str, &[&str])] = &[
        // base64 "dTpwdz8/" contains '/', so it gets percent and JSON variants too.
        (
            "u",
            "pw??",
            &[
                "pw??",
                "pw%3F%3F",
                "dTpwdz8/",
                "dTpwdz8%2F",
                "dTpwdz8\\/",
                "u:pw??",
                "u%3Apw%3F%3F",
            ],
        ),
        (
            "aladdin",
            "open sesame",
            &[
                "open sesame",
                "open%20sesame",
                "YWxhZGRpbjpvcGVuIHNlc2FtZQ==",
                "YWxhZGRpbjpvcGVuIHNlc2FtZQ%3D%3D",
                "aladdin:open sesame",
                "aladdin%3Aopen%20sesame",
            ],
        ),
        // A username of MIN_USERNAME bytes or more is scrubbed on its own too.
        (
            "svc.acme",
            "pw",
            &[
                "pw",
                "svc.acme",
                "svc%2Eacme",
                "c3ZjLmFjbWU6cHc=",
                "c3ZjLmFjbWU6cHc%3D",
                "svc.acme:pw",
                "svc%2Eacme%3Apw",
                "svc.acme%3Apw",
            ],
        ),
        // With no password the username is the secret, however short.
        (
            "user",
            "",
            &["user", "dXNlcjo=", "dXNlcjo%3D", "user:", "user%3A"],
        ),
    ];
    for (user, password, expected) in cases {
        let forms = SecretForms::basic(user, password);
        assert_eq!(
            forms_of(&forms),
            strs(expected),
            "basic({user:?}, {password:?})"
        );
    }
    assert_eq!(SecretForms::MIN_USERNAME, "svc.acme".len());
}

#[test]
fn a_basic_username_is_redacted_alone_only_when_long_enough() {
    let long = redactor(&SecretForms::basic("integration@acme.test", "pw-1"));
    let echo = b"{\"user\":\"integration@acme.test\",\"q\":\"integration%40acme.test\"}";
    let (out, n) = long.redact(echo);
    assert_eq!(out, b"{\"user\":\"[REDACTED]\",\"q\":\"[REDACTED]\"}");
    assert_eq!(n, 2);
    let short = redactor(&SecretForms::basic("admin", "pw-1"));
    let (out, n) = short.redact(b"admin panel; admin:pw-1; admin%3Apw-1");
    assert_eq!(out, b"admin panel; [REDACTED]; [REDACTED]");
    assert_eq!(n, 2);
}

#[test]
fn extend_merges_and_dedups() {
    let mut forms = SecretForms::default();
    assert!(forms.is_empty());
    assert!(Redactor::new(&forms).is_none());
    assert!(Redactor::new(&SecretForms::token("")).is_none());
    forms.extend(SecretForms::token("a/b"));
    forms.extend(SecretForms::token("a/b"));
    forms.extend(SecretForms::token("zz"));
    assert_eq!(forms_of(&forms), strs(&["a/b", "a%2Fb", "a\\/b", "zz"]));
    let (out, n) = redactor(&forms).redact(b"a/b zz a%2Fb");
    assert_eq!(
        (out.as_slice(), n),
        (&b"[REDACTED] [REDACTED] [REDACTED]"[..], 3)
    );
}

#[test]
fn redacts_header_values() {
    let r = redactor(&SecretForms::token("s3cr3t/+="));
    let cases: &[(&str, &str, usize)] = &[
        (
            "https://evil.test/?t=s3cr3t/+=",
            "https://evil.test/?t=[REDACTED]",
            1,
        ),
        (
            "https://evil.test/?t=s3cr3t%2F%2B%3D&x=1",
            "https://evil.test/?t=[REDACTED]&x=1",
            1,
        ),
        ("Bearer s3cr3t/+=", "Bearer [REDACTED]", 1),
        ("{\"k\":\"s3cr3t\\/+=\"}", "{\"k\":\"[REDACTED]\"}", 1),
        ("s3cr3t/+=,s3cr3t/+=", "[REDACTED],[REDACTED]", 2),
        ("s3cr3t/+ almost", "s3cr3t/+ almost", 0),
        ("", "", 0),
    ];
    for (input, expected, count) in cases {
        let (out, n) = r.redact(input.as_bytes());
        assert_eq!(String::from_utf8_lossy(&out), *expected, "input {input:?}");
        assert_eq!(n, *count, "input {input:?}");
    }
    let basic = redactor(&SecretForms::basic("alice", "s3cr3t?"));
    let (out, n) = basic.redact(b"Authorization: Basic YWxpY2U6czNjcjN0Pw==; alice:s3cr3t?");
    assert_eq!(out, b"Authorization: Basic [REDACTED]; [REDACTED]");
    assert_eq!(n, 2);
}

#[test]
fn overlapping_prefix_adjacent_and_edges() {
    let mut forms = SecretForms::token("abc");
    forms.extend(SecretForms::token("abcabc"));
    let mut prefix = SecretForms::token("ab");
    prefix.extend(SecretForms::token("abcd"));
    let cases: &[(&SecretForms, &str, &str, usize)] = &[
        (&forms, "abcabcabc", "[REDACTED][REDACTED]", 2),
        (&forms, "abcabc", "[REDACTED]", 1),
        (&forms, "abcXabc", "[REDACTED]X[REDACTED]", 2),
        (&forms, "abcab", "[REDACTED]ab", 1),
        (&forms, "xabcabcababc", "x[REDACTED]ab[REDACTED]", 2),
        (&prefix, "abcabcd", "[REDACTED]c[REDACTED]", 2),
        (&prefix, "abcdab", "[REDACTED][REDACTED]", 2),
        (&prefix, "aabcx", "a[REDACTED]cx", 1),
        (&prefix, "abc", "[REDACTED]c", 1),
    ];
    for (forms, input, expected, count) in cases {
        let r = redactor(forms);
        let input = input.as_bytes();
        assert_eq!(r.redact(input), (expected.as_bytes().to_vec(), *count));
        // Every way of cutting the input into up to three chunks must agree.
        for a in 0..=input.len() {
            for b in a..=input.len() {
                let streamed = stream_split(&r, input, &[a, b]);
                assert_eq!(
                    streamed,
                    (expected.as_bytes().to_vec(), *count),
                    "cuts {a},{b}"
                );
            }
        }
    }
}

fn random_string(rng: &mut StdRng, alphabet: &[u8], len: usize) -> String {
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

/// Splits `data` into chunks no larger than `max`, for `max` drawn from 1..=4096.
fn random_chunks<'a>(rng: &mut StdRng, data: &'a [u8]) -> Vec<&'a [u8]> {
    let max = rng.random_range(1..=4096usize);
    let mut chunks = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let n = rng.random_range(1..=max).min(rest.len());
        chunks.push(&rest[..n]);
        rest = &rest[n..];
    }
    chunks
}

#[test]
fn randomized_chunkings_match_one_shot() {
    // No '[' or ']' in secrets: such forms could be re-assembled next to a MARK (module docs).
    const SECRET_CHARS: &[u8] =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/+=\"\\-_.~:? ";
    let filler_chars: Vec<u8> = (b' '..=b'~').collect();
    let mut rng = StdRng::seed_from_u64(0x5EC2E7);
    for iteration in 0..1000 {
        let secret_len = rng.random_range(1..=40);
        let secret = random_string(&mut rng, SECRET_CHARS, secret_len);
        let forms = if iteration % 2 == 0 {
            SecretForms::token(&secret)
        } else {
            SecretForms::basic("user", &secret)
        };
        let all = forms_of(&forms);
        let r = redactor(&forms);
        let max_len = all.iter().map(Vec::len).max().expect("forms");

        let mut body = Vec::new();
        for _ in 0..rng.random_range(3..=8) {
            for form in &all {
                let filler_len = rng.random_range(0..600);
                body.extend(random_string(&mut rng, &filler_chars, filler_len).bytes());
                body.extend_from_slice(form);
            }
        }
        let filler_len = rng.random_range(0..600);
        body.extend(random_string(&mut rng, &filler_chars, filler_len).bytes());

        let (expected, expected_count) = r.redact(&body);
        assert!(expected_count >= all.len() * 3, "iteration {iteration}");
        // A form inside the mark itself (a one-letter `T`) cannot be judged absent.
        for form in all.iter().filter(|f| occurrences(Redactor::MARK, f) == 0) {
            assert_eq!(occurrences(&expected, form), 0, "iteration {iteration}");
        }

        // Plain stream: same output, and never more than L - 1 bytes held back.
        let mut s = r.stream();
        let mut out = Vec::new();
        for chunk in random_chunks(&mut rng, &body) {
            out.extend(s.push(chunk));
            assert!(s.held.len() < max_len, "iteration {iteration}");
        }
        out.extend(s.finish());
        assert_eq!(out, expected, "plain, iteration {iteration}");
        assert_eq!(s.count(), expected_count);

        // Compressed bodies through BodyFilter.
        let mut encoded = vec![(Encoding::Gzip, gzip(&body))];
        if iteration % 4 == 0 {
            encoded.push((Encoding::Deflate, zlib(&body)));
            encoded.push((Encoding::Identity, body.clone()));
        }
        for (encoding, data) in encoded {
            let mut f = BodyFilter::new(&r, encoding, body.len() as u64);
            let mut out = Vec::new();
            for chunk in random_chunks(&mut rng, &data) {
                out.extend(f.push(chunk).expect("valid body"));
            }
            out.extend(f.finish().expect("complete body"));
            assert_eq!(out, expected, "{encoding:?}, iteration {iteration}");
            assert_eq!(f.count(), expected_count);
        }
    }
}

#[test]
fn held_back_never_exceeds_longest_form_minus_one() {
    let forms = SecretForms::basic("user", "correct horse battery staple");
    let longest = forms_of(&forms).iter().map(Vec::len).max().expect("forms");
    let r = redactor(&forms);
    let body: Vec<u8> = (0..20_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut rng = StdRng::seed_from_u64(7);
    let mut s = r.stream();
    let (mut fed, mut released) = (0, 0);
    for chunk in random_chunks(&mut rng, &body) {
        fed += chunk.len();
        released += s.push(chunk).len();
        assert!(fed - released < longest, "held {}", fed - released);
    }
    // 1-byte pushes: nothing is released until L - 1 bytes are held, then one per push.
    let mut s = r.stream();
    for (i, byte) in body.iter().take(200).enumerate() {
        let expected = usize::from(i + 1 >= longest);
        assert_eq!(s.push(&[*byte]).len(), expected, "push {i}");
    }
    assert_eq!(s.finish().len(), longest - 1);
}

fn response_headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(
            http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            http::HeaderValue::from_str(value).expect("value"),
        );
    }
    headers
}

#[test]
fn encoding_of_response() {
    let ok: &[(&[(&str, &str)], Encoding)] = &[
        (&[], Encoding::Identity),
        (&[("content-encoding", "identity")], Encoding::Identity),
        (&[("content-encoding", " GZIP ")], Encoding::Gzip),
        (&[("content-encoding", "x-gzip")], Encoding::Gzip),
        (&[("content-encoding", "Deflate")], Encoding::Deflate),
        (
            &[
                ("transfer-encoding", "chunked"),
                ("content-encoding", "gzip"),
            ],
            Encoding::Gzip,
        ),
    ];
    for (headers, expected) in ok {
        assert_eq!(
            Encoding::of_response(&response_headers(headers)),
            Ok(*expected),
            "{headers:?}"
        );
    }
    let unsupported: &[&[(&str, &str)]] = &[
        &[("content-encoding", "br")],
        &[("content-encoding", "zstd")],
        &[("content-encoding", "gzip, br")],
        &[("content-encoding", "gzip,gzip")],
        &[("content-encoding", "identity, gzip")],
        &[("content-encoding", "")],
        &[("content-encoding", "compress")],
        // Repeated: decoding the first would leave the second for the guest to undo.
        &[("content-encoding", "gzip"), ("content-encoding", "gzip")],
        &[
            ("content-encoding", "identity"),
            ("content-encoding", "gzip"),
        ],
        &[
            ("content-encoding", "gzip"),
            ("Content-Encoding", "identity"),
        ],
    ];
    for headers in unsupported {
        assert_eq!(
            Encoding::of_response(&response_headers(headers)),
            Err(RedactError::UnsupportedEncoding),
            "{headers:?}"
        );
    }
    for value in ["gzip, chunked", "gzip", "chunked, chunked, br", ""] {
        assert_eq!(
            Encoding::of_response(&response_headers(&[("transfer-encoding", value)])),
            Err(RedactError::UnsupportedTransferEncoding),
            "{value:?}"
        );
    }
}

#[test]
fn invalid_compressed_bodies_are_corrupt() {
    let r = redactor(&SecretForms::token("TOPSECRET"));
    let limit = 1 << 20;
    let body = b"hello TOPSECRET world ".repeat(50);
    let gz = gzip(&body);

    assert_eq!(
        filter_all(&r, Encoding::Gzip, limit, &[b"this is not gzip at all"]),
        Err(RedactError::Corrupt)
    );
    assert_eq!(
        filter_all(&r, Encoding::Deflate, limit, &[b"this is not zlib at all"]),
        Err(RedactError::Corrupt)
    );
    // Gzip data sent with the wrong (zlib) encoding.
    assert_eq!(
        filter_all(&r, Encoding::Deflate, limit, &[&gz]),
        Err(RedactError::Corrupt)
    );
    // Bad CRC in the trailer.
    let mut bad_crc = gz.clone();
    let crc_at = bad_crc.len() - 8;
    bad_crc[crc_at] ^= 0xFF;
    assert_eq!(
        filter_all(&r, Encoding::Gzip, limit, &[&bad_crc]),
        Err(RedactError::Corrupt)
    );
    // Trailing garbage and a second member are rejected.
    let mut trailing = gz.clone();
    trailing.extend_from_slice(b"junk");
    assert_eq!(
        filter_all(&r, Encoding::Gzip, limit, &[&trailing]),
        Err(RedactError::Corrupt)
    );
    assert_eq!(
        filter_all(&r, Encoding::Gzip, limit, &[&gz, &gz]),
        Err(RedactError::Corrupt)
    );
    // Errors are sticky, and a finished filter accepts nothing more.
    let mut f = BodyFilter::new(&r, Encoding::Gzip, limit);
    assert_eq!(f.push(b"garbage, not gzip"), Err(RedactError::Corrupt));
    assert_eq!(f.push(&gz), Err(RedactError::Corrupt));
    assert_eq!(f.finish(), Err(RedactError::Corrupt));
    let mut f = BodyFilter::new(&r, Encoding::Gzip, limit);
    let mut out = f.push(&gz).expect("valid");
    out.extend(f.finish().expect("complete"));
    assert_eq!(occurrences(&out, b"TOPSECRET"), 0);
    assert_eq!(f.count(), 50);
    assert_eq!(f.push(&gz), Err(RedactError::Corrupt));
}

#[test]
fn empty_compressed_body_is_empty() {
    let r = redactor(&SecretForms::token("TOPSECRET"));
    for encoding in [Encoding::Identity, Encoding::Gzip, Encoding::Deflate] {
        assert_eq!(filter_all(&r, encoding, 10, &[b""]), Ok(Vec::new()));
    }
}

#[test]
fn truncated_streams_fail_by_finish() {
    let r = redactor(&SecretForms::token("TOPSECRET"));
    let body = b"hello TOPSECRET world ".repeat(50);
    for (encoding, data) in [
        (Encoding::Gzip, gzip(&body)),
        (Encoding::Deflate, zlib(&body)),
    ] {
        for cut in 1..data.len() {
            let result = filter_all(&r, encoding, 1 << 20, &[&data[..cut]]);
            assert_eq!(
                result,
                Err(RedactError::Corrupt),
                "{encoding:?} cut at {cut}"
            );
        }
        assert!(filter_all(&r, encoding, 1 << 20, &[&data]).is_ok());
    }
}

#[test]
fn random_garbage_never_panics() {
    let r = redactor(&SecretForms::token("TOPSECRET"));
    let mut rng = StdRng::seed_from_u64(99);
    let valid = gzip(&b"TOPSECRET padding ".repeat(100));
    for _ in 0..500 {
        let mut data = valid.clone();
        for _ in 0..rng.random_range(1..8) {
            let i = rng.random_range(0..data.len());
            data[i] = rng.random();
        }
        for encoding in [Encoding::Gzip, Encoding::Deflate] {
            let chunks = random_chunks(&mut rng, &data);
            if let Ok(out) = filter_all(&r, encoding, 1 << 20, &chunks) {
                assert_eq!(occurrences(&out, b"TOPSECRET"), 0);
            }
        }
    }
}

#[test]
fn decompression_bombs_are_too_large() {
    let r = redactor(&SecretForms::token("TOPSECRET"));
    let zeros = vec![0u8; 10 << 20];
    let limit = 1 << 20;
    for (encoding, bomb) in [
        (Encoding::Gzip, gzip(&zeros)),
        (Encoding::Deflate, zlib(&zeros)),
    ] {
        assert!(bomb.len() < 16 * 1024, "bomb is {} bytes", bomb.len());
        let mut f = BodyFilter::new(&r, encoding, limit);
        assert_eq!(f.push(&bomb), Err(RedactError::TooLarge { limit }));
        // Decoding stopped within one step of the limit instead of inflating all 10 MiB.
        assert!(f.decoded <= limit + 64 * 1024, "decoded {}", f.decoded);
        assert_eq!(f.finish(), Err(RedactError::TooLarge { limit }));
    }
    // The limit applies to identity bodies too, and is inclusive.
    assert_eq!(
        filter_all(&r, Encoding::Identity, 4, &[b"abcde"]),
        Err(RedactError::TooLarge { limit: 4 })
    );
    assert_eq!(
        filter_all(&r, Encoding::Identity, 5, &[b"ab", b"cde"]),
        Ok(b"abcde".to_vec())
    );
    assert_eq!(
        filter_all(&r, Encoding::Gzip, 5, &[&gzip(b"abcde")]),
        Ok(b"abcde".to_vec())
    );
}

#[test]
fn debug_does_not_leak_secrets() {
    let forms = SecretForms::basic("alice", "hunter2/x");
    let r = redactor(&forms);
    let printed = format!("{forms:?} {r:?} {forms:#?} {r:#?}");
    for form in forms_of(&forms) {
        let form = String::from_utf8(form).expect("utf8");
        assert!(!printed.contains(&form), "{printed}");
    }
    assert!(!printed.contains("hunter"), "{printed}");
}

#[test]
fn compressed_output_is_not_delayed() {
    // Interactive (e.g. event-stream) bodies must flow as they arrive, not once flate2's
    // internal buffer fills: all but the held-back tail is released before the trailer.
    let forms = SecretForms::token("TOPSECRET");
    let r = redactor(&forms);
    let body = b"data: tick\n\n".repeat(40);
    for (encoding, data, trailer) in [
        (Encoding::Gzip, gzip(&body), 8),
        (Encoding::Deflate, zlib(&body), 4),
    ] {
        let mut f = BodyFilter::new(&r, encoding, 1 << 20);
        let early = f.push(&data[..data.len() - trailer]).expect("valid prefix");
        assert_eq!(
            early.len(),
            body.len() - ("TOPSECRET".len() - 1),
            "{encoding:?}"
        );
        let mut out = early;
        out.extend(f.push(&data[data.len() - trailer..]).expect("trailer"));
        out.extend(f.finish().expect("complete"));
        assert_eq!(out, body);
    }
}

#[test]
fn a_secret_the_guest_pieced_together_is_scrubbed_from_its_log() {
    use crate::log::{LogLine, LogSource};
    let r = redactor(&SecretForms::token("TOPSECRET"));
    let mut log = GuestLog {
        lines: vec![LogLine {
            source: LogSource::Stdout,
            message: "joined: TOPSECRET … café".into(),
            fields: vec![("token".into(), "Bearer TOPSECRET".into())],
        }],
        dropped: 0,
    };
    assert_eq!(r.scrub_log(&mut log), 2);
    assert_eq!(log.lines[0].message, "joined: [REDACTED] … café");
    assert_eq!(log.lines[0].fields[0].1, "Bearer [REDACTED]");
}
