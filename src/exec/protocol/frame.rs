//! Framing: how bytes become frames and frames become fields. A frame is
//! `[length: u32 LE][kind: u8][payload]`; `Cursor` reads a payload's fields with every
//! read bounds-checked, and counts are checked against the bytes left before they size
//! anything.

use std::fmt;
use std::io::{self, Read};
use std::time::Duration;

use super::MAGIC;

/// A frame or payload that does not follow the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// The payload ended `need` bytes early while reading `what`.
    Truncated {
        what: &'static str,
    },
    /// The stream ended inside a frame.
    TruncatedFrame {
        expected: usize,
        got: usize,
    },
    /// A frame longer than this direction allows.
    Oversize {
        length: usize,
        max: usize,
    },
    /// A zero length: not even a kind byte.
    Empty,
    UnknownKind(u8),
    UnknownTag {
        what: &'static str,
        tag: u8,
    },
    BadMagic([u8; 4]),
    Version {
        ours: u32,
        theirs: u32,
    },
    /// Anything else that is well-formed bytes but not a valid message.
    Invalid(String),
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Truncated { what } => write!(f, "frame ends in the middle of {what}"),
            ProtocolError::TruncatedFrame { expected, got } => {
                write!(f, "stream ends inside a frame ({got} of {expected} bytes)")
            }
            ProtocolError::Oversize { length, max } => {
                write!(f, "frame of {length} bytes exceeds the limit of {max}")
            }
            ProtocolError::Empty => write!(f, "frame of length 0"),
            ProtocolError::UnknownKind(kind) => write!(f, "unknown frame kind 0x{kind:02x}"),
            ProtocolError::UnknownTag { what, tag } => write!(f, "unknown {what} tag 0x{tag:02x}"),
            ProtocolError::BadMagic(magic) => {
                write!(f, "bad magic {magic:02x?} (not a txguard worker?)")
            }
            ProtocolError::Version { ours, theirs } => {
                write!(
                    f,
                    "protocol version mismatch: expected {ours}, got {theirs}"
                )
            }
            ProtocolError::Invalid(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Why reading a frame failed.
#[derive(Debug)]
pub enum FrameError {
    Io(io::Error),
    Protocol(ProtocolError),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Io(e) => write!(f, "read error: {e}"),
            FrameError::Protocol(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for FrameError {}

impl From<ProtocolError> for FrameError {
    fn from(e: ProtocolError) -> FrameError {
        FrameError::Protocol(e)
    }
}

/// Reads one frame into `payload` (the kind byte excluded) and returns its kind, or `None`
/// at a clean end of stream (between frames). Memory grows with the bytes that actually
/// arrive, never with the length a frame claims.
pub fn read_frame(
    r: &mut impl Read,
    max: usize,
    payload: &mut Vec<u8>,
) -> Result<Option<u8>, FrameError> {
    let mut header = [0u8; 5];
    let got = read_full(r, &mut header).map_err(FrameError::Io)?;
    if got == 0 {
        return Ok(None);
    }
    if got < header.len() {
        return Err(ProtocolError::TruncatedFrame {
            expected: header.len(),
            got,
        }
        .into());
    }
    let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if length == 0 {
        return Err(ProtocolError::Empty.into());
    }
    if length > max {
        return Err(ProtocolError::Oversize { length, max }.into());
    }
    let kind = header[4];
    let want = length - 1;
    payload.clear();
    // Into the buffer's spare room, not zeroed first, and grown only as bytes arrive.
    r.take(want as u64)
        .read_to_end(payload)
        .map_err(FrameError::Io)?;
    if payload.len() < want {
        return Err(ProtocolError::TruncatedFrame {
            expected: length + 4,
            got: 5 + payload.len(),
        }
        .into());
    }
    Ok(Some(kind))
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Starts a frame of `kind` at the end of `out`; `end_frame` writes its length.
pub fn begin_frame(out: &mut Vec<u8>, kind: u8) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, kind]);
    at
}

/// Patches the length of the frame begun at `at`.
pub fn end_frame(out: &mut [u8], at: usize) {
    let length = u32::try_from(out.len() - at - 4).expect("frames are far below 4 GiB");
    out[at..at + 4].copy_from_slice(&length.to_le_bytes());
}

pub(super) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(super) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(super) fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(
        out,
        u32::try_from(s.len()).expect("strings are far below 4 GiB"),
    );
    out.extend_from_slice(s.as_bytes());
}

pub(super) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(
        out,
        u32::try_from(b.len()).expect("fields are far below 4 GiB"),
    );
    out.extend_from_slice(b);
}

pub(super) fn put_duration(out: &mut Vec<u8>, d: Duration) {
    put_u64(out, d.as_secs());
    put_u32(out, d.subsec_nanos());
}

/// A bounds-checked reader over one payload.
pub(super) struct Cursor<'a> {
    pub(super) buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub(super) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ProtocolError> {
        if self.buf.len() < n {
            return Err(ProtocolError::Truncated { what });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(super) fn u8(&mut self, what: &'static str) -> Result<u8, ProtocolError> {
        Ok(self.take(1, what)?[0])
    }

    pub(super) fn u32(&mut self, what: &'static str) -> Result<u32, ProtocolError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(super) fn u64(&mut self, what: &'static str) -> Result<u64, ProtocolError> {
        let b = self.take(8, what)?;
        Ok(u64::from_le_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }

    /// A `u32` length, then that many bytes.
    pub(super) fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], ProtocolError> {
        let len = self.u32(what)? as usize;
        self.take(len, what)
    }

    pub(super) fn str(&mut self, what: &'static str) -> Result<&'a str, ProtocolError> {
        let bytes = self.bytes(what)?;
        std::str::from_utf8(bytes)
            .map_err(|_| ProtocolError::Invalid(format!("{what} is not valid UTF-8")))
    }

    pub(super) fn duration(&mut self, what: &'static str) -> Result<Duration, ProtocolError> {
        let secs = self.u64(what)?;
        let nanos = self.u32(what)?;
        if nanos >= 1_000_000_000 {
            return Err(ProtocolError::Invalid(format!(
                "{what}: {nanos} nanoseconds is not below one second"
            )));
        }
        Ok(Duration::new(secs, nanos))
    }

    pub(super) fn magic(&mut self) -> Result<(), ProtocolError> {
        let b = self.take(4, "magic")?;
        let magic = [b[0], b[1], b[2], b[3]];
        if magic == MAGIC {
            Ok(())
        } else {
            Err(ProtocolError::BadMagic(magic))
        }
    }

    /// A count of items at least `min_size` bytes each: checked against what is left, so
    /// a lying count cannot make the caller allocate.
    pub(super) fn count(
        &mut self,
        what: &'static str,
        min_size: usize,
    ) -> Result<usize, ProtocolError> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min_size) > self.buf.len() {
            return Err(ProtocolError::Truncated { what });
        }
        Ok(n)
    }

    pub(super) fn finish(&self, what: &'static str) -> Result<(), ProtocolError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::Invalid(format!(
                "{} unexpected bytes after {what}",
                self.buf.len()
            )))
        }
    }
}
