//! The backup file: a header line, then frames, each a kind byte and length-prefixed fields
//! (lengths big-endian), and last the manifest.
//!
//! ```text
//! airlock-backup 1\n
//! 1 TREE   u32 name-len, name
//! 2 ENTRY  u32 key-len, key, u64 value-len, value      (a record of the tree before it)
//! 3 FILE   u32 path-len, path, u64 len, bytes          (a key file, the trust file, a bundle)
//! 0 END    u32 len, manifest JSON                      (its `digest`: SHA-256 of every byte before this frame)
//! ```
//!
//! The manifest comes last because its digest covers everything before it: a file cut short
//! has no manifest, and a changed byte does not match the digest. Nothing may follow it.

use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

/// The first line of every backup file.
const MAGIC: &[u8] = b"airlock-backup 1\n";
const END: u8 = 0;
const TREE: u8 = 1;
const ENTRY: u8 = 2;
const FILE: u8 = 3;
/// No field is longer: a damaged length is refused before anything is read for it (bundles,
/// the largest, are at most 128 MiB).
const MAX_FIELD: u64 = 1 << 30;

/// Why a backup file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("it is not an airlock backup (no `airlock-backup 1` header)")]
    NotABackup,
    #[error("it ends early: the file was cut short (no manifest)")]
    Truncated,
    #[error("it is damaged: {0}")]
    Damaged(String),
    #[error(transparent)]
    Io(io::Error),
}

impl From<io::Error> for FrameError {
    fn from(error: io::Error) -> Self {
        match error.kind() {
            io::ErrorKind::UnexpectedEof => Self::Truncated,
            _ => Self::Io(error),
        }
    }
}

/// Writes frames, hashing every byte for the manifest's digest.
pub(super) struct Writer<W: Write> {
    out: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Writer<W> {
    pub(super) fn new(out: W) -> io::Result<Self> {
        let mut writer = Self {
            out,
            hash: Sha256::new(),
            bytes: 0,
        };
        writer.put(MAGIC)?;
        Ok(writer)
    }

    pub(super) fn tree(&mut self, name: &[u8]) -> io::Result<()> {
        self.put(&[TREE])?;
        self.field_u32(name)
    }

    pub(super) fn entry(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.put(&[ENTRY])?;
        self.field_u32(key)?;
        self.field_u64(value)
    }

    pub(super) fn file(&mut self, path: &str, bytes: &[u8]) -> io::Result<()> {
        self.put(&[FILE])?;
        self.field_u32(path.as_bytes())?;
        self.field_u64(bytes)
    }

    /// Bytes written so far, and their SHA-256 in hex: what the manifest states.
    pub(super) fn digest(&self) -> (u64, String) {
        (self.bytes, hex::encode(self.hash.clone().finalize()))
    }

    /// Writes the manifest frame and gives the output back.
    pub(super) fn finish(mut self, manifest: &[u8]) -> io::Result<W> {
        self.put(&[END])?;
        self.field_u32(manifest)?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn field_u32(&mut self, bytes: &[u8]) -> io::Result<()> {
        let len = u32::try_from(bytes.len()).map_err(|_| io::Error::other("field too long"))?;
        self.put(&len.to_be_bytes())?;
        self.put(bytes)
    }

    fn field_u64(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.put(&(bytes.len() as u64).to_be_bytes())?;
        self.put(bytes)
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.hash.update(bytes);
        self.bytes += bytes.len() as u64;
        self.out.write_all(bytes)
    }
}

/// One frame as read.
pub(super) enum Frame {
    Tree(Vec<u8>),
    Entry(Vec<u8>, Vec<u8>),
    File(String, Vec<u8>),
    /// The manifest's bytes, with the byte count and digest of everything before it as read.
    End {
        manifest: Vec<u8>,
        bytes: u64,
        digest: String,
    },
}

/// Reads frames, hashing every byte before the manifest.
pub(super) struct Reader<R: Read> {
    input: R,
    hash: Sha256,
    bytes: u64,
}

impl<R: Read> Reader<R> {
    pub(super) fn new(input: R) -> Result<Self, FrameError> {
        let mut reader = Self {
            input,
            hash: Sha256::new(),
            bytes: 0,
        };
        let mut magic = [0; MAGIC.len()];
        match reader.input.read_exact(&mut magic) {
            Ok(()) if magic == MAGIC => {}
            Ok(()) => return Err(FrameError::NotABackup),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(FrameError::NotABackup);
            }
            Err(e) => return Err(e.into()),
        }
        reader.hashed(&magic);
        Ok(reader)
    }

    /// The next frame; after [`Frame::End`], checks that nothing follows it.
    pub(super) fn next(&mut self) -> Result<Frame, FrameError> {
        let mut kind = [0];
        self.input.read_exact(&mut kind)?;
        if kind[0] == END {
            let (bytes, digest) = (self.bytes, hex::encode(self.hash.clone().finalize()));
            let manifest = self.field_u32()?;
            if self.input.read(&mut [0])? != 0 {
                return Err(FrameError::Damaged("bytes follow its manifest".into()));
            }
            return Ok(Frame::End {
                manifest,
                bytes,
                digest,
            });
        }
        self.hashed(&kind);
        match kind[0] {
            TREE => Ok(Frame::Tree(self.field_u32()?)),
            ENTRY => Ok(Frame::Entry(self.field_u32()?, self.field_u64()?)),
            FILE => {
                let path = String::from_utf8(self.field_u32()?)
                    .map_err(|_| FrameError::Damaged("a file name is not UTF-8".into()))?;
                Ok(Frame::File(path, self.field_u64()?))
            }
            other => Err(FrameError::Damaged(format!("unknown frame kind {other}"))),
        }
    }

    fn field_u32(&mut self) -> Result<Vec<u8>, FrameError> {
        let mut len = [0; 4];
        self.input.read_exact(&mut len)?;
        self.hashed(&len);
        self.bytes_of(u64::from(u32::from_be_bytes(len)))
    }

    fn field_u64(&mut self) -> Result<Vec<u8>, FrameError> {
        let mut len = [0; 8];
        self.input.read_exact(&mut len)?;
        self.hashed(&len);
        self.bytes_of(u64::from_be_bytes(len))
    }

    /// `len` bytes; memory grows with what is actually there, so a damaged length in a short
    /// file allocates no more than the file holds.
    fn bytes_of(&mut self, len: u64) -> Result<Vec<u8>, FrameError> {
        if len > MAX_FIELD {
            return Err(FrameError::Damaged(format!("a field claims {len} bytes")));
        }
        let mut bytes = Vec::new();
        (&mut self.input).take(len).read_to_end(&mut bytes)?;
        if bytes.len() as u64 != len {
            return Err(FrameError::Truncated);
        }
        self.hashed(&bytes);
        Ok(bytes)
    }

    fn hashed(&mut self, bytes: &[u8]) {
        self.hash.update(bytes);
        self.bytes += bytes.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Vec<u8>, String) {
        let mut writer = Writer::new(Vec::new()).expect("write");
        writer.tree(b"tenants").expect("tree");
        writer.entry(b"acme", b"{}").expect("entry");
        writer.file("trust.json", b"{\"keys\":[]}").expect("file");
        let (_, digest) = writer.digest();
        let bytes = writer.finish(b"{\"m\":1}").expect("finish");
        (bytes, digest)
    }

    fn read_all(bytes: &[u8]) -> Result<(usize, String, Vec<u8>), FrameError> {
        let mut reader = Reader::new(bytes)?;
        let mut frames = 0;
        loop {
            match reader.next()? {
                Frame::End {
                    manifest, digest, ..
                } => return Ok((frames, digest, manifest)),
                _ => frames += 1,
            }
        }
    }

    #[test]
    fn frames_read_back_with_the_digest_the_writer_stated() {
        let (bytes, digest) = sample();
        let (frames, read, manifest) = read_all(&bytes).expect("read");
        assert_eq!((frames, read, manifest), (3, digest, b"{\"m\":1}".to_vec()));
    }

    #[test]
    fn a_cut_a_flipped_byte_or_a_tail_is_found() {
        let (bytes, digest) = sample();
        for cut in [bytes.len() - 1, bytes.len() - 9, 30, MAGIC.len()] {
            assert!(
                matches!(read_all(&bytes[..cut]), Err(FrameError::Truncated)),
                "cut at {cut}"
            );
        }
        let mut flipped = bytes.clone();
        flipped[MAGIC.len() + 8] ^= 1;
        match read_all(&flipped) {
            Ok((_, read, _)) => assert_ne!(read, digest),
            Err(e) => panic!("{e}"),
        }
        let mut tail = bytes.clone();
        tail.push(0);
        assert!(matches!(read_all(&tail), Err(FrameError::Damaged(_))));
        assert!(matches!(
            read_all(b"not a backup at all"),
            Err(FrameError::NotABackup)
        ));
        let mut huge = MAGIC.to_vec();
        huge.extend([ENTRY, 0, 0, 0, 0, 0xff, 0, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(read_all(&huge), Err(FrameError::Damaged(_))));
    }
}
