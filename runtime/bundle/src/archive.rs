//! The bundle container: a strict subset of POSIX ustar.
//!
//! Why tar: `tar -xf` must be able to open a bundle with no airlock tooling.
//! Why a *strict subset*: the reader accepts (essentially) only what [`write`](fn@write)
//! produces. Every header must be byte-identical to the one the writer would
//! emit for the same name and size, data padding must be zero, and nothing may
//! follow the end marker. So the bundle bytes are a function of the entry list
//! and no unsigned byte can change without the read failing or the signed
//! content changing. The one tolerated variation is typeflag `'\0'` (the
//! pre-POSIX spelling of "regular file").

use super::paths::{MAX_NAME, NameSet, check_path};

/// Tar block size; headers and data runs are whole blocks.
pub const BLOCK: usize = 512;
/// Largest size the 11-digit octal `size` field can express.
pub const MAX_OCTAL_SIZE: u64 = 0o77_777_777_777;

/// Resource caps for [`read`](fn@read), so a hostile archive cannot exhaust memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArchiveLimits {
    /// Maximum number of entries.
    pub max_entries: usize,
    /// Maximum size of one entry's data, in bytes.
    pub max_entry: u64,
    /// Maximum total data size, in bytes.
    pub max_total: u64,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        Self {
            max_entries: 256,
            max_entry: 64 << 20,
            max_total: 128 << 20,
        }
    }
}

/// Where a problem is: entry index, header byte offset and the entry name
/// (escaped, so hostile bytes cannot reach a terminal or log verbatim).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct At {
    pub index: usize,
    pub offset: usize,
    pub name: String,
}

impl At {
    fn new(index: usize, offset: usize, raw_name: &[u8]) -> Self {
        let name = raw_name.escape_ascii().to_string();
        Self {
            index,
            offset,
            name,
        }
    }
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (index, name, offset) = (self.index, &self.name, self.offset);
        write!(f, "entry {index} \"{name}\" (header at byte {offset})")
    }
}

/// Why an archive was refused. Messages say what and where; they never
/// include file data.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive truncated: {what} at byte {offset} runs past the end")]
    Truncated { offset: usize, what: &'static str },
    #[error("{extra} byte(s) of trailing data after the end-of-archive marker, at byte {offset}")]
    TrailingData { offset: usize, extra: usize },
    #[error("malformed end-of-archive marker at byte {offset} (expected two zero blocks)")]
    BadEnd { offset: usize },
    #[error("more than {max} entries")]
    TooManyEntries { max: usize },
    #[error("{0}: header checksum does not verify")]
    BadChecksum(At),
    #[error("{0}: not a POSIX ustar header (bad magic or version)")]
    BadMagic(At),
    #[error("{0}: entry type 0x{1:02x} ({kind}) is not a regular file", kind = type_kind(*.1))]
    UnsupportedType(At, u8),
    #[error("{0}: invalid path: {1}")]
    BadPath(At, &'static str),
    #[error("{0}: {1}")]
    Duplicate(At, &'static str),
    #[error("{0}: `{1}` field is not valid octal")]
    BadNumber(At, &'static str),
    #[error("{0}: size {1} exceeds the per-entry limit of {2} bytes")]
    EntryTooLarge(At, u64, u64),
    #[error("{0}: total data exceeds the limit of {1} bytes")]
    TotalTooLarge(At, u64),
    #[error("{0}: `{1}` field is not in canonical form")]
    NonCanonical(At, &'static str),
    #[error("{0}: non-zero padding after the data, at byte {1}")]
    BadPadding(At, usize),
}

/// Writes `value` as zero-padded octal filling `field` except for a final NUL.
fn put_octal(field: &mut [u8], mut value: u64) {
    let Some((nul, digits)) = field.split_last_mut() else {
        return;
    };
    *nul = 0;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (value & 7) as u8;
        value >>= 3;
    }
}

/// Unsigned byte sum with the checksum field counted as spaces (POSIX).
fn checksum(h: &[u8; BLOCK]) -> u32 {
    let sum = |bytes: &[u8]| bytes.iter().map(|&b| u32::from(b)).sum::<u32>();
    sum(&h[..148]) + 8 * u32::from(b' ') + sum(&h[156..])
}

/// The canonical header for one regular file: every field but name, size and
/// checksum is fixed, so the output depends only on (name, size).
fn header(name: &[u8], size: u64, typeflag: u8) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    let n = name.len().min(MAX_NAME);
    h[..n].copy_from_slice(&name[..n]);
    put_octal(&mut h[100..108], 0o644); // mode
    put_octal(&mut h[108..116], 0); // uid
    put_octal(&mut h[116..124], 0); // gid
    put_octal(&mut h[124..136], size);
    put_octal(&mut h[136..148], 0); // mtime
    h[156] = typeflag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    put_octal(&mut h[329..337], 0); // devmajor
    put_octal(&mut h[337..345], 0); // devminor
    let sum = checksum(&h);
    put_octal(&mut h[148..155], u64::from(sum));
    h[155] = b' ';
    h
}

/// Name of the header field containing byte `pos`, for error messages.
fn field_at(pos: usize) -> &'static str {
    const ENDS: [usize; 16] = [
        100, 108, 116, 124, 136, 148, 156, 157, 257, 263, 265, 297, 329, 337, 345, 500,
    ];
    const NAMES: [&str; 16] = [
        "name", "mode", "uid", "gid", "size", "mtime", "chksum", "typeflag", "linkname", "magic",
        "version", "uname", "gname", "devmajor", "devminor", "prefix",
    ];
    let i = ENDS.iter().position(|&end| pos < end);
    i.and_then(|i| NAMES.get(i)).copied().unwrap_or("padding")
}

/// Parses a NUL/space-terminated octal field; `None` if not plain octal.
fn parse_octal(field: &[u8]) -> Option<u64> {
    let digits = field.iter().take_while(|b| b.is_ascii_digit()).count();
    let (num, rest) = field.split_at(digits);
    if num.is_empty() || !rest.iter().all(|&b| b == 0 || b == b' ') {
        return None;
    }
    num.iter().try_fold(0u64, |acc, &d| {
        (d <= b'7').then_some(())?;
        acc.checked_mul(8)?.checked_add(u64::from(d - b'0'))
    })
}

fn type_kind(t: u8) -> &'static str {
    match t {
        b'1' | b'2' => "link",
        b'3' | b'4' | b'6' => "device or fifo",
        b'5' => "directory",
        b'x' | b'g' | b'L' | b'K' => "pax/GNU extension header",
        _ => "other",
    }
}

/// Checks an entry list for [`write`](fn@write): valid, unique paths and sizes the
/// header can express. Signing calls it so that it never writes a bundle
/// that [`read`](fn@read) would refuse for its names.
pub fn check_entries(entries: &[(String, Vec<u8>)]) -> Result<(), ArchiveError> {
    let mut names = NameSet::default();
    for (index, (name, data)) in entries.iter().enumerate() {
        let at = At::new(index, 0, name.as_bytes());
        check_path(name.as_bytes()).map_err(|why| ArchiveError::BadPath(at.clone(), why))?;
        names
            .insert(name)
            .map_err(|why| ArchiveError::Duplicate(at.clone(), why))?;
        let size = u64::try_from(data.len()).unwrap_or(u64::MAX);
        if size > MAX_OCTAL_SIZE {
            return Err(ArchiveError::EntryTooLarge(at, size, MAX_OCTAL_SIZE));
        }
    }
    Ok(())
}

/// Writes entries in the given order as canonical ustar, deterministically.
///
/// Precondition (checked by [`check_entries`], which signing calls): names
/// satisfy [`check_path`] and are unique, sizes fit [`MAX_OCTAL_SIZE`]. The
/// signature is infallible as specified; violating the precondition yields an
/// archive that [`read`](fn@read) refuses, never a panic.
pub fn write(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let cap = entries
        .iter()
        .map(|(_, d)| BLOCK + d.len().next_multiple_of(BLOCK))
        .sum::<usize>();
    let mut out = Vec::with_capacity(cap + 2 * BLOCK);
    for (name, data) in entries {
        let size = u64::try_from(data.len()).unwrap_or(u64::MAX);
        out.extend_from_slice(&header(name.as_bytes(), size, b'0'));
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(BLOCK), 0);
    }
    out.resize(out.len() + 2 * BLOCK, 0);
    out
}

fn block(bytes: &[u8], offset: usize) -> Option<&[u8; BLOCK]> {
    let b = bytes.get(offset..offset.checked_add(BLOCK)?)?;
    b.try_into().ok()
}

fn truncated(offset: usize, what: &'static str) -> ArchiveError {
    ArchiveError::Truncated { offset, what }
}

/// Reads a canonical ustar archive, refusing anything outside the subset
/// (see module docs). Never panics; all arithmetic is checked.
pub fn read(bytes: &[u8], limits: &ArchiveLimits) -> Result<Vec<(String, Vec<u8>)>, ArchiveError> {
    use ArchiveError as E;
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut names = NameSet::default();
    let mut total: u64 = 0;
    let mut offset = 0usize;
    loop {
        let h = block(bytes, offset).ok_or(truncated(offset, "header block"))?;
        if h.iter().all(|&b| b == 0) {
            return end_marker(bytes, offset).map(|()| out);
        }
        let index = out.len();
        if index >= limits.max_entries {
            return Err(E::TooManyEntries {
                max: limits.max_entries,
            });
        }
        let raw = &h[..MAX_NAME];
        let raw = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(MAX_NAME)];
        let at = At::new(index, offset, raw);
        let size = check_header(h, raw, &at)?;
        names
            .insert(&at.name)
            .map_err(|why| E::Duplicate(at.clone(), why))?;
        if size > limits.max_entry {
            return Err(E::EntryTooLarge(at, size, limits.max_entry));
        }
        total = match total.checked_add(size) {
            Some(t) if t <= limits.max_total => t,
            _ => return Err(E::TotalTooLarge(at, limits.max_total)),
        };
        let start = offset.checked_add(BLOCK);
        let span = start
            .zip(usize::try_from(size).ok())
            .and_then(|(start, size)| {
                let next = start.checked_add(size.checked_next_multiple_of(BLOCK)?)?;
                Some((start, start.checked_add(size)?, next)).filter(|_| next <= bytes.len())
            });
        let Some((start, data_end, next)) = span else {
            return Err(truncated(offset.saturating_add(BLOCK), "entry data"));
        };
        if let Some(p) = bytes[data_end..next].iter().position(|&b| b != 0) {
            return Err(E::BadPadding(at, data_end + p));
        }
        // check_path admits only characters that escape_ascii leaves as is.
        out.push((at.name, bytes[start..data_end].to_vec()));
        offset = next;
    }
}

/// Validates one header against the subset; returns the entry size. Checks
/// run from the most to the least basic so the error names the real problem.
fn check_header(h: &[u8; BLOCK], raw_name: &[u8], at: &At) -> Result<u64, ArchiveError> {
    use ArchiveError as E;
    if parse_octal(&h[148..156]) != Some(u64::from(checksum(h))) {
        return Err(E::BadChecksum(at.clone()));
    }
    if &h[257..265] != b"ustar\x0000" {
        return Err(E::BadMagic(at.clone()));
    }
    let typeflag = h[156];
    if typeflag != b'0' && typeflag != 0 {
        return Err(E::UnsupportedType(at.clone(), typeflag));
    }
    check_path(raw_name).map_err(|why| E::BadPath(at.clone(), why))?;
    let size = parse_octal(&h[124..136]).ok_or_else(|| E::BadNumber(at.clone(), "size"))?;
    // Report the first differing field other than the checksum, which
    // differs whenever anything else does.
    let canonical = header(raw_name, size, typeflag);
    let differs = |i: &usize| canonical[*i] != h[*i];
    let first = (0..BLOCK).filter(|i| !(148..156).contains(i)).find(differs);
    if let Some(pos) = first.or_else(|| (148..156).find(differs)) {
        return Err(E::NonCanonical(at.clone(), field_at(pos)));
    }
    Ok(size)
}

/// After the first zero block: exactly one more, then the end of input.
fn end_marker(bytes: &[u8], offset: usize) -> Result<(), ArchiveError> {
    use ArchiveError as E;
    let second = offset.checked_add(BLOCK).ok_or(E::BadEnd { offset })?;
    let what = "end-of-archive marker";
    let z = block(bytes, second).ok_or(truncated(second, what))?;
    if z.iter().any(|&b| b != 0) {
        return Err(E::BadEnd { offset: second });
    }
    let end = second.checked_add(BLOCK).ok_or(E::BadEnd { offset })?;
    match bytes.len().checked_sub(end) {
        Some(0) => Ok(()),
        Some(extra) => Err(E::TrailingData { offset: end, extra }),
        None => Err(truncated(end, what)),
    }
}

/// Test-only access to the raw header builder, for crafting hostile archives.
#[cfg(test)]
pub(crate) fn raw_header(name: &[u8], size: u64, typeflag: u8) -> [u8; BLOCK] {
    header(name, size, typeflag)
}

/// Test-only: recompute the checksum of a hand-edited header.
#[cfg(test)]
pub(crate) fn fix_checksum(h: &mut [u8; BLOCK]) {
    let sum = checksum(h);
    put_octal(&mut h[148..155], u64::from(sum));
    h[155] = b' ';
}
