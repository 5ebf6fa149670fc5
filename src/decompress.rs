//! Compressed inputs: a gzip or zstd stream is recognised by its first bytes (not its
//! name, so `zcat`-less pipes work too: `txguard run - < tx.csv.gz`) and decompressed as
//! it is read. The bytes taken from the source — compressed bytes, for a compressed
//! input — are counted, for the progress bar and the summary's `input_bytes`.

use std::io::{self, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Result, bail};

/// How an input is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
/// Formats recognised only to say that they are not read. bzip2's magic is `BZh`, a block
/// size digit, then the block header `1AY&SY` (so a CSV whose header starts with `BZh`
/// is not taken for one).
const UNSUPPORTED: [(&[u8], &str, &str); 3] = [
    (b"BZh?1AY&SY", "bzip2", "bzip2 -dc"),
    (&[0xfd, b'7', b'z', b'X', b'Z', 0], "xz", "xz -dc"),
    (b"PK\x03\x04", "zip", "unzip -p"),
];

/// Bytes read from an input's source so far; clones share the count.
#[derive(Debug, Clone, Default)]
pub struct Consumed(Arc<AtomicU64>);

impl Consumed {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A reader that counts the bytes read through it.
struct Counting<R> {
    inner: R,
    count: Consumed,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.0.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// The input at `source` as plain bytes: decompressed when its first bytes are those of
/// a gzip or zstd stream (concatenated members and frames included), as it was
/// otherwise. `name` is what messages call it. Returns the reader, the compression
/// found, and the count of bytes read from `source`.
pub fn open(
    source: Box<dyn Read + Send>,
    name: &str,
) -> Result<(Box<dyn Read + Send>, Compression, Consumed)> {
    let count = Consumed::default();
    let mut counted = Counting {
        inner: source,
        count: count.clone(),
    };
    let head = read_head(&mut counted, 10)
        .map_err(|e| anyhow::Error::new(e).context(format!("cannot read {name}")))?;
    let compression = if head.starts_with(GZIP_MAGIC) {
        Compression::Gzip
    } else if head.starts_with(ZSTD_MAGIC) {
        Compression::Zstd
    } else {
        // `?` in a magic stands for any byte.
        let matches = |magic: &[u8]| {
            head.len() >= magic.len() && magic.iter().zip(&head).all(|(m, h)| *m == b'?' || m == h)
        };
        if let Some((_, format, command)) = UNSUPPORTED.iter().find(|(m, _, _)| matches(m)) {
            bail!(
                "{name} is compressed with {format}, which txguard does not read \
                 (gzip and zstd it does): decompress it first, e.g. `{command} FILE | txguard run - …`"
            );
        }
        Compression::None
    };
    // The bytes looked at are read again, in front of the rest.
    let whole = BufReader::with_capacity(256 * 1024, io::Cursor::new(head).chain(counted));
    let reader: Box<dyn Read + Send> = match compression {
        Compression::None => Box::new(whole),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(whole)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(whole)
                .map_err(|e| anyhow::Error::new(e).context(format!("cannot read {name}")))?,
        ),
    };
    Ok((reader, compression, count))
}

/// The first `n` bytes of `reader` (fewer when it ends first): a pipe may hand them over
/// a few at a time.
fn read_head(reader: &mut impl Read, n: usize) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(n);
    reader.take(n as u64).read_to_end(&mut head)?;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn plain(bytes: Vec<u8>) -> (Vec<u8>, Compression, u64) {
        let (mut reader, compression, count) = open(Box::new(io::Cursor::new(bytes)), "x").unwrap();
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        (out, compression, count.get())
    }

    #[test]
    fn gzip_and_zstd_are_recognised_by_their_first_bytes() {
        let text = b"id,amount\n1,2\n".repeat(1000);
        let (out, c, n) = plain(text.clone());
        assert_eq!(
            (out.as_slice(), c, n),
            (text.as_slice(), Compression::None, text.len() as u64)
        );

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&text[..7000]).unwrap();
        let mut gz = gz.finish().unwrap();
        // A second member, as `cat a.gz b.gz` makes.
        let mut second = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        second.write_all(&text[7000..]).unwrap();
        gz.extend(second.finish().unwrap());
        let (out, c, n) = plain(gz.clone());
        assert_eq!(
            (out, c, n),
            (text.clone(), Compression::Gzip, gz.len() as u64)
        );

        let zst = zstd::encode_all(&text[..], 3).unwrap();
        let (out, c, n) = plain(zst.clone());
        assert_eq!(
            (out, c, n),
            (text.clone(), Compression::Zstd, zst.len() as u64)
        );

        let (out, c, _) = plain(b"i".to_vec());
        assert_eq!(
            (out.as_slice(), c),
            (&b"i"[..], Compression::None),
            "shorter than a magic"
        );
    }

    #[test]
    fn other_compressors_are_named() {
        let csv = b"BZhash,id\n1,2\n".to_vec();
        let (out, c, _) = plain(csv.clone());
        assert_eq!(
            (out, c),
            (csv, Compression::None),
            "a CSV that starts like bzip2"
        );
        let err = open(
            Box::new(io::Cursor::new(b"BZh91AY&SY\x00".to_vec())),
            "tx.csv.bz2",
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.starts_with("tx.csv.bz2 is compressed with bzip2"),
            "{err}"
        );
    }
}
