//! [`parse`]: a strict reader of the OpenMetrics text format, for tests that check what
//! `airlock metrics` prints and `/metrics` serves is an exposition a scraper accepts.
//!
//! It checks what a scraper relies on: every sample belongs to the family whose `# TYPE` came
//! just before it (with the suffixes that type allows), labels are well formed, values are
//! numbers, histogram buckets are cumulative and end at `+Inf` equal to `_count`, no family is
//! declared twice, and the text ends with `# EOF`.

use std::collections::BTreeMap;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// As written, with its suffix (`airlock_invocations_total`).
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// A parsed exposition: the families by name, with their type, and every sample in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Exposition {
    pub types: BTreeMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// The value of the sample `name` whose labels are exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && s.labels
                        .iter()
                        .zip(labels)
                        .all(|((k, v), (lk, lv))| k == lk && v == lv)
            })
            .map(|s| s.value)
    }
}

/// Parses `text`, or says which line breaks the format and why.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let body = text
        .strip_suffix("# EOF\n")
        .ok_or("the exposition does not end with `# EOF`")?;
    let mut types = BTreeMap::new();
    let mut samples = Vec::new();
    // The family being written: its name, its type, and its histogram state.
    let mut current: Option<(String, String)> = None;
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for (number, line) in body.lines().enumerate() {
        let fail = |why: &str| format!("line {}: {why}: {line:?}", number + 1);
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name, what) = (parts.next(), parts.next(), parts.next());
            let (Some(kind), Some(name), Some(what)) = (kind, name, what) else {
                return Err(fail("a descriptor needs a keyword, a name and a value"));
            };
            if !is_name(name) {
                return Err(fail("invalid metric name"));
            }
            match kind {
                "TYPE" => {
                    if !matches!(what, "counter" | "gauge" | "histogram" | "info" | "unknown") {
                        return Err(fail("unknown type"));
                    }
                    if types.insert(name.to_owned(), what.to_owned()).is_some() {
                        return Err(fail("family declared twice"));
                    }
                    finish_histogram(&current, &buckets, &samples).map_err(|e| fail(&e))?;
                    current = Some((name.to_owned(), what.to_owned()));
                    buckets.clear();
                }
                "HELP" | "UNIT" => {
                    if kind == "UNIT" && !name.ends_with(&format!("_{what}")) {
                        return Err(fail("a unit must end the family's name"));
                    }
                }
                _ => return Err(fail("unknown descriptor")),
            }
            continue;
        }
        let sample = sample(line).map_err(|e| fail(&e))?;
        let Some((family, kind)) = &current else {
            return Err(fail("a sample before any # TYPE"));
        };
        let suffix = sample
            .name
            .strip_prefix(family.as_str())
            .ok_or_else(|| fail("a sample outside the family declared before it"))?;
        let allowed: &[&str] = match kind.as_str() {
            "counter" => &["_total", "_created"],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            "info" => &["_info"],
            _ => &[""],
        };
        if !allowed.contains(&suffix) {
            return Err(fail("a suffix this type does not have"));
        }
        if suffix == "_bucket" {
            let le = sample
                .labels
                .iter()
                .find(|(k, _)| k == "le")
                .ok_or_else(|| fail("a bucket without `le`"))?;
            let bound: f64 = le.1.parse().map_err(|_| fail("`le` is not a number"))?;
            buckets.push((bound, sample.value));
        }
        if kind == "counter" && (sample.value.is_nan() || sample.value < 0.0) {
            return Err(fail("a counter below zero"));
        }
        samples.push(sample);
    }
    finish_histogram(&current, &buckets, &samples)?;
    Ok(Exposition { types, samples })
}

/// A histogram's buckets rise, and the last is `+Inf` and equals `_count`.
fn finish_histogram(
    current: &Option<(String, String)>,
    buckets: &[(f64, f64)],
    samples: &[Sample],
) -> Result<(), String> {
    let Some((family, kind)) = current else {
        return Ok(());
    };
    if kind != "histogram" {
        return Ok(());
    }
    if buckets
        .windows(2)
        .any(|w| w[0].0 >= w[1].0 || w[0].1 > w[1].1)
    {
        return Err(format!(
            "{family}: buckets are not cumulative in rising order"
        ));
    }
    let count = samples
        .iter()
        .rev()
        .find(|s| s.name == format!("{family}_count"))
        .map(|s| s.value);
    match buckets.last() {
        Some((bound, total)) if bound.is_infinite() && Some(*total) == count => Ok(()),
        _ => Err(format!("{family}: no `+Inf` bucket equal to `_count`")),
    }
}

/// `name{key="value",…} value`.
fn sample(line: &str) -> Result<Sample, String> {
    let end = line
        .find(['{', ' '])
        .ok_or("a sample needs a name and a value")?;
    let name = &line[..end];
    if !is_name(name) {
        return Err("invalid metric name".into());
    }
    let mut rest = &line[end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        loop {
            let eq = rest.find('=').ok_or("a label without `=`")?;
            let key = &rest[..eq];
            if !is_name(key) || key.contains(':') {
                return Err(format!("invalid label name {key:?}"));
            }
            let quoted = rest[eq + 1..]
                .strip_prefix('"')
                .ok_or("a label value must be quoted")?;
            let (value, after) = unquote(quoted)?;
            labels.push((key.to_owned(), value));
            rest = after;
            if let Some(after) = rest.strip_prefix(',') {
                rest = after;
            } else if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            } else {
                return Err("labels must be separated by `,` and closed by `}`".into());
            }
        }
    }
    let value = rest.strip_prefix(' ').ok_or("one space before the value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other
            .parse()
            .map_err(|_| format!("{other:?} is not a number"))?,
    };
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// A label value up to its closing quote, unescaped; and what follows the quote.
fn unquote(text: &str) -> Result<(String, &str), String> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &text[at + 1..])),
            '\\' => match chars.next() {
                Some((_, '\\')) => value.push('\\'),
                Some((_, '"')) => value.push('"'),
                Some((_, 'n')) => value.push('\n'),
                _ => return Err("an invalid escape in a label value".into()),
            },
            '\n' => return Err("a line break in a label value".into()),
            c => value.push(c),
        }
    }
    Err("an unterminated label value".into())
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "# HELP a_requests Requests.\n# TYPE a_requests counter\n\
        a_requests_total{code=\"ok\"} 3\na_requests_total{code=\"q\\\"x\"} 0\n\
        # HELP a_duration_seconds Duration.\n# TYPE a_duration_seconds histogram\n\
        # UNIT a_duration_seconds seconds\na_duration_seconds_sum 0.5\n\
        a_duration_seconds_count 2\na_duration_seconds_bucket{le=\"0.1\"} 1\n\
        a_duration_seconds_bucket{le=\"+Inf\"} 2\n# TYPE a_up gauge\na_up 1\n# EOF\n";

    #[test]
    fn a_valid_exposition_parses() {
        let parsed = parse(VALID).expect("valid");
        assert_eq!(parsed.types["a_requests"], "counter");
        assert_eq!(
            parsed.value("a_requests_total", &[("code", "ok")]),
            Some(3.0)
        );
        assert_eq!(
            parsed.value("a_requests_total", &[("code", "q\"x")]),
            Some(0.0)
        );
        assert_eq!(parsed.value("a_up", &[]), Some(1.0));
        assert_eq!(parsed.samples.len(), 7);
    }

    #[test]
    fn what_a_scraper_would_refuse_is_refused() {
        let broken = [
            VALID.trim_end_matches("# EOF\n").to_owned(),
            VALID.replace(
                "a_requests_total{code=\"ok\"}",
                "a_request_total{code=\"ok\"}",
            ),
            VALID.replace(
                "a_requests_total{code=\"ok\"} 3",
                "a_requests{code=\"ok\"} 3",
            ),
            VALID.replace("{code=\"ok\"}", "{code=ok}"),
            VALID.replace("} 3", "} three"),
            VALID.replace("le=\"+Inf\"} 2", "le=\"+Inf\"} 3"),
            VALID.replace("le=\"0.1\"} 1", "le=\"0.1\"} 5"),
            VALID.replace("# TYPE a_up gauge", "# TYPE a_requests gauge"),
            VALID.replace("# TYPE a_up gauge\n", ""),
            VALID.replace(
                "# UNIT a_duration_seconds seconds",
                "# UNIT a_duration_seconds bytes",
            ),
        ];
        for text in broken {
            assert!(parse(&text).is_err(), "accepted:\n{text}");
        }
    }
}
