//! The framer against a byte-at-a-time reference, and the `csv` crate, on chosen and
//! generated inputs.

use super::*;
use proptest::prelude::*;
use std::io::{self, Cursor, Read, Seek};

/// A record as the reference and the framer both describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    start: Position,
    body: Result<Vec<u8>, Flaw>,
}

/// The format of the module doc, one byte at a time, with no buffers: the reference the
/// memchr scanner and the framer's buffer handling are checked against.
fn reference(input: &[u8], delimiter: u8, max_record: usize) -> Vec<Rec> {
    let end_line = |i: &mut usize, line: &mut u64| {
        let crlf = input[*i] == b'\r' && input.get(*i + 1) == Some(&b'\n');
        *i += if crlf { 2 } else { 1 };
        *line += 1;
    };
    let mut records = Vec::new();
    let mut i = if input.starts_with(BOM) { BOM.len() } else { 0 };
    let mut line = 1;
    while i < input.len() {
        if matches!(input[i], b'\r' | b'\n') {
            end_line(&mut i, &mut line); // a blank line
            continue;
        }
        let start = Position {
            offset: i as u64,
            line,
        };
        let (mut quoted, mut field_start) = (false, true);
        let end = loop {
            let Some(&b) = input.get(i) else {
                break input.len();
            };
            match (quoted, b) {
                (true, b'"') if input.get(i + 1) == Some(&b'"') => i += 2,
                (true, b'"') => {
                    quoted = false;
                    i += 1;
                }
                (_, b'\r' | b'\n') if !quoted => {
                    let end = i;
                    end_line(&mut i, &mut line);
                    break end;
                }
                (true, b'\r' | b'\n') => end_line(&mut i, &mut line),
                (true, _) => i += 1,
                (false, b'"') if field_start => {
                    quoted = true;
                    field_start = false;
                    i += 1;
                }
                (false, _) => {
                    field_start = b == delimiter;
                    i += 1;
                }
            }
        };
        let len = end - start.offset as usize;
        let body = if quoted {
            Err(Flaw::UnclosedQuote)
        } else if len > max_record {
            Err(Flaw::TooLong { len: len as u64 })
        } else {
            Ok(input[start.offset as usize..end].to_vec())
        };
        records.push(Rec { start, body });
    }
    records
}

/// The line an editor shows for `offset`.
fn editor_line(input: &[u8], offset: usize) -> u64 {
    let prefix = &input[..offset];
    let breaks = prefix
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\r' || (b == b'\n' && (i == 0 || prefix[i - 1] != b'\r')))
        .count();
    1 + breaks as u64
}

/// Every record the framer gives, checking each chunk's promises on the way and
/// recycling chunks as a pipeline would.
fn collect<R: Read>(mut framer: Framer<R>, input: &[u8]) -> Vec<Rec> {
    let mut records = Vec::new();
    while let Some(chunk) = framer.next_chunk().unwrap() {
        check_chunk(&chunk, input);
        records.extend(chunk.records().map(|r| Rec {
            start: r.start,
            body: r.body.map(<[u8]>::to_vec),
        }));
        framer.recycle(chunk);
    }
    assert!(framer.next_chunk().unwrap().is_none(), "done stays done");
    records
}

fn check_chunk(chunk: &Chunk, input: &[u8]) {
    let records: Vec<Record> = chunk.records().collect();
    assert!(!records.is_empty(), "a chunk has records");
    assert_eq!(records.len(), chunk.len());
    assert_eq!(chunk.offset(), records[0].start.offset);
    assert_eq!(chunk.first_line(), records[0].start.line);
    if chunk.bytes().is_empty() {
        assert_eq!(records.len(), 1, "a skipped record has a chunk to itself");
        assert!(records[0].body.is_err());
    } else {
        let range = chunk.offset() as usize..chunk.end_offset() as usize;
        assert_eq!(chunk.bytes(), &input[range]);
    }
    for record in &records {
        if let Ok(body) = record.body {
            let at = record.start.offset as usize;
            assert_eq!(body, &input[at..at + body.len()]);
        }
    }
}

fn frame(input: &[u8], config: Config) -> Vec<Rec> {
    collect(Framer::new(Cursor::new(input), config), input)
}

/// The records a shard `[from, end)` owns.
fn frame_range(input: &[u8], from: Position, end: u64, config: Config) -> Vec<Rec> {
    let mut source = Cursor::new(input);
    source.set_position(from.offset);
    collect(Framer::resume(source, from, config).until(end), input)
}

fn bodies(records: &[Rec]) -> Vec<(u64, String)> {
    records
        .iter()
        .map(|r| {
            let body = match &r.body {
                Ok(b) => String::from_utf8_lossy(b).into_owned(),
                Err(flaw) => format!("<{flaw}>"),
            };
            (r.start.line, body)
        })
        .collect()
}

fn lines_and_bodies(input: &str) -> Vec<(u64, String)> {
    let records = frame(input.as_bytes(), Config::default());
    assert_eq!(records, reference(input.as_bytes(), b',', 64 * MIB));
    bodies(&records)
}

fn owned(pairs: &[(u64, &str)]) -> Vec<(u64, String)> {
    pairs.iter().map(|&(l, s)| (l, s.to_string())).collect()
}

fn split(record: &[u8], delimiter: u8) -> Vec<Vec<u8>> {
    let config = Config::default().with_delimiter(delimiter).unwrap();
    let mut splitter = Splitter::new(&config);
    let fields = splitter.split(record);
    assert_eq!(fields.iter().len(), fields.len());
    assert!((0..fields.len()).all(|i| fields.get(i) == fields.iter().nth(i)));
    fields.iter().map(<[u8]>::to_vec).collect()
}

/// Every record as the csv crate reads the whole input.
fn csv_records(input: &[u8], delimiter: u8) -> Vec<Vec<Vec<u8>>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(input);
    let mut record = csv::ByteRecord::new();
    let mut records = Vec::new();
    while reader.read_byte_record(&mut record).unwrap() {
        records.push(record.iter().map(<[u8]>::to_vec).collect());
    }
    records
}

fn strings(fields: &[Vec<u8>]) -> Vec<String> {
    fields
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect()
}

#[test]
fn lf_crlf_and_lone_cr_each_end_a_record_and_a_line() {
    assert_eq!(
        lines_and_bodies("a,b\nc,d\r\ne\rf"),
        owned(&[(1, "a,b"), (2, "c,d"), (3, "e"), (4, "f")])
    );
    assert_eq!(
        lines_and_bodies("a\r\rb\n\rc\r\n\r\nd\r\n"),
        owned(&[(1, "a"), (3, "b"), (5, "c"), (7, "d")]),
        "blank lines are skipped but counted, \\n\\r is two line ends"
    );
    assert_eq!(lines_and_bodies("\n\r\n\r"), owned(&[]));
    assert_eq!(lines_and_bodies(""), owned(&[]));
}

#[test]
fn quoted_terminators_stay_in_the_record_and_still_count_lines() {
    assert_eq!(
        lines_and_bodies("1,\"x\ny\"\n2,\"a\r\nb\rc\"\r\n3,\"\"\"\n\"\"\"\n4"),
        owned(&[
            (1, "1,\"x\ny\""),
            (3, "2,\"a\r\nb\rc\""),
            (6, "3,\"\"\"\n\"\"\""),
            (8, "4")
        ])
    );
    assert_eq!(
        lines_and_bodies("\"\"\n\"\",\n,\n"),
        owned(&[(1, "\"\""), (2, "\"\","), (3, ",")]),
        "an empty quoted field or a lone delimiter is a record, not a blank line"
    );
}

#[test]
fn a_quote_opens_quoting_only_at_a_field_start() {
    // Mid-field and after a closing quote, a quote is a byte like any other: the
    // newline after it ends the record, as csv-core reads it.
    let input = "ab\"c\nd,e\"\n\"x\"y\"\n1,\"z\" \"w\n";
    assert_eq!(
        lines_and_bodies(input),
        owned(&[
            (1, "ab\"c"),
            (2, "d,e\""),
            (3, "\"x\"y\""),
            (4, "1,\"z\" \"w")
        ])
    );
    let fields: Vec<Vec<String>> = frame(input.as_bytes(), Config::default())
        .iter()
        .map(|r| strings(&split(r.body.as_ref().unwrap(), b',')))
        .collect();
    let csv: Vec<Vec<String>> = csv_records(input.as_bytes(), b',')
        .iter()
        .map(|r| strings(r))
        .collect();
    assert_eq!(fields, csv);
    assert_eq!(
        fields[2],
        ["xy\""],
        "text after a closing quote joins the field"
    );
    assert_eq!(fields[3], ["1", "z \"w"]);
}

#[test]
fn a_bom_is_skipped_at_the_start_only() {
    let records = frame("\u{feff}\"a\",b\n\u{feff}c".as_bytes(), Config::default());
    assert_eq!(records[0].start, Position { offset: 3, line: 1 });
    assert_eq!(records[0].body.as_deref(), Ok(&b"\"a\",b"[..]));
    assert_eq!(records[1].body.as_deref(), Ok("\u{feff}c".as_bytes()));
    for read_size in 1..4 {
        let config = Config::default().with_read_size(read_size);
        assert_eq!(frame("\u{feff}".as_bytes(), config), []);
        assert_eq!(frame("\u{feff}\n\nx".as_bytes(), config)[0].start.line, 3);
        assert_eq!(
            frame(b"\xEF\xBB", config)[0].body.as_deref(),
            Ok(&b"\xEF\xBB"[..])
        );
    }
}

#[test]
fn a_quote_open_at_the_end_is_a_flaw_at_the_line_where_its_record_starts() {
    let input = b"id,note\n1,ok\n2,\"never\nclosed\n3,x\n";
    let records = frame(input, Config::default());
    assert_eq!(records.len(), 3, "the rest of the input is the open record");
    assert_eq!(records[2].start.line, 3);
    assert_eq!(records[2].body, Err(Flaw::UnclosedQuote));
    let message = format!("tx.csv:{}: {}", records[2].start.line, Flaw::UnclosedQuote);
    assert_eq!(message, "tx.csv:3: quote opened here is never closed");
    // `""` is an escaped quote, not a close and a reopen.
    let records = frame(b"\"a\"\",b\nc", Config::default());
    assert_eq!(
        bodies(&records),
        [(1, "<quote opened here is never closed>".into())]
    );
    // Over the size limit too: still reported as the unclosed quote it is.
    let small = Config::default().with_max_record(4).with_read_size(2);
    assert_eq!(
        bodies(&frame(b"a\n\"bcdefgh\nij", small)),
        owned(&[(1, "a"), (2, "<quote opened here is never closed>")])
    );
}

#[test]
fn a_record_over_the_limit_is_skipped_and_framing_goes_on() {
    let config = Config::default().with_max_record(5).with_read_size(3);
    let input = b"ab\n123456\r\ncdefg\n\"1\n2345\"\nh";
    let records = frame(input, config);
    assert_eq!(records, reference(input, b',', 5));
    assert_eq!(
        bodies(&records),
        owned(&[
            (1, "ab"),
            (2, "<record of 6 bytes is over the record size limit>"),
            (3, "cdefg"),
            (4, "<record of 8 bytes is over the record size limit>"),
            (6, "h"),
        ])
    );
}

#[test]
fn a_record_without_end_does_not_grow_memory() {
    let config = Config::default()
        .with_max_record(1024)
        .with_chunk_size(4096)
        .with_read_size(4096);
    let len = 8 * MIB as u64;
    let source = b"a\n".chain(io::repeat(0).take(len)).chain(&b"\nb\n"[..]);
    let mut framer = Framer::new(source, config);
    let mut records = Vec::new();
    while let Some(chunk) = framer.next_chunk().unwrap() {
        assert!(framer.buffer_capacity() < 64 * 1024, "memory stays bounded");
        records.extend(
            chunk
                .records()
                .map(|r| (r.start.line, r.body.map(|b| b.to_vec()))),
        );
    }
    assert_eq!(
        records,
        [
            (1, Ok(b"a".to_vec())),
            (2, Err(Flaw::TooLong { len })),
            (3, Ok(b"b".to_vec()))
        ]
    );
}

#[test]
fn stop_at_too_long_ends_an_endless_record_as_soon_as_it_is_too_long() {
    let config = Config::default()
        .with_max_record(1024)
        .with_chunk_size(4096)
        .with_read_size(512);
    // Endless: `skip` would read it forever.
    let source = b"a\nb\n".chain(io::repeat(0));
    let mut framer = Framer::new(source, config).stop_at_too_long();
    let mut records = Vec::new();
    while let Some(chunk) = framer.next_chunk().unwrap() {
        records.extend(chunk.records().map(|r| (r.start.line, r.body.is_ok())));
    }
    assert_eq!(records, [(1, true), (2, true), (3, false)]);
}

#[test]
fn an_endless_first_record_ends_the_input_even_when_skipping() {
    let config = Config::default()
        .with_max_record(1024)
        .with_chunk_size(4096)
        .with_read_size(512);
    // The header cannot be skipped: read on, `/dev/zero` was read forever.
    let mut framer = Framer::new(io::repeat(0), config).stop_at_too_long_header();
    let chunk = framer.next_chunk().unwrap().unwrap();
    let records: Vec<_> = chunk.records().map(|r| (r.start.line, r.body)).collect();
    assert!(
        matches!(records[..], [(1, Err(Flaw::TooLong { len }))] if len > 1024),
        "{records:?}"
    );
    assert!(framer.next_chunk().unwrap().is_none());
    // Later records too long are skipped as before.
    let input = format!("h\n{}\nb\n", "x".repeat(2000));
    let framer = Framer::new(Cursor::new(input.into_bytes()), config).stop_at_too_long_header();
    let lines: Vec<_> = framer
        .flat_map(|c| {
            let c = c.unwrap();
            c.records()
                .map(|r| (r.start.line, r.body.is_ok()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(lines, [(1, true), (2, false), (3, true)]);
}

#[test]
fn skipping_records_lands_on_the_right_record_and_flaw() {
    let input = b"a\nb\nc\n\"d\ne";
    let mut framer = Framer::new(Cursor::new(&input[..]), Config::default());
    let chunk = framer.next_chunk().unwrap().unwrap();
    let all: Vec<Record> = chunk.records().collect();
    for from in 0..=all.len() {
        for n in 0..=all.len() - from {
            let some: Vec<Record> = chunk.records().skip(from).take(n).collect();
            assert_eq!(some, all[from..from + n], "{from}+{n}");
        }
    }
    assert_eq!(all[3].body, Err(Flaw::UnclosedQuote));
    assert_eq!(chunk.records().nth(9), None);
}

#[test]
fn chunks_are_cut_at_record_starts_past_the_chunk_size() {
    let input = b"aaaa\nbbbb\n\ncccc\ndddd";
    let mut framer = Framer::new(
        Cursor::new(&input[..]),
        Config::default().with_chunk_size(8),
    );
    let mut cuts = Vec::new();
    while let Some(chunk) = framer.next_chunk().unwrap() {
        check_chunk(&chunk, input);
        cuts.push((
            chunk.offset(),
            chunk.end_offset(),
            chunk.first_line(),
            chunk.len(),
        ));
    }
    assert_eq!(cuts, [(0, 9, 1, 2), (11, 20, 4, 2)]);
}

#[test]
fn the_delimiter_decides_where_a_quote_can_open() {
    let semi = Config::default().with_delimiter(b';').unwrap();
    let input = b"a;\"b\nc\";x\n";
    assert_eq!(bodies(&frame(input, semi)), owned(&[(1, "a;\"b\nc\";x")]));
    assert_eq!(split(b"a;\"b\nc\";x", b';'), [&b"a"[..], b"b\nc", b"x"]);
    assert_eq!(
        bodies(&frame(input, Config::default())),
        owned(&[(1, "a;\"b"), (2, "c\";x")]),
        "with ',' the quote is mid-field"
    );
    for bad in [b'"', b'\r', b'\n'] {
        assert_eq!(
            Config::default().with_delimiter(bad),
            Err(InvalidDelimiter(bad))
        );
    }
}

#[test]
fn fields_are_borrowed_unless_they_must_change() {
    let config = Config::default();
    let mut splitter = Splitter::new(&config);
    let record = b"a,\"b,c\",\"d\"\"e\",\"f\"g,,\"\"";
    let fields = splitter.split(record);
    let got: Vec<&[u8]> = fields.iter().collect();
    assert_eq!(got, [&b"a"[..], b"b,c", b"d\"e", b"fg", b"", b""]);
    let inside = |f: &[u8]| record.as_ptr_range().contains(&f.as_ptr());
    assert!(
        inside(got[0]) && inside(got[1]),
        "plain and simply quoted: zero-copy"
    );
    assert!(
        !inside(got[2]) && !inside(got[3]),
        "escaped or with a tail: unescaped copy"
    );
    assert_eq!(split(b"", b','), [b""]);
    assert_eq!(
        split(b"\"open,x", b','),
        [b"open,x"],
        "an unclosed quote runs to the end"
    );
}

/// Offsets to split at, checked three ways: each boundary is the first record start at
/// or after its offset with the right line, and the ranges between boundaries own every
/// record exactly once, in order, with the lines of the whole-input framing.
fn check_splits(input: &[u8], from: Position, offsets: &[u64], config: Config) {
    let whole: Vec<Rec> = frame(input, config)
        .into_iter()
        .filter(|r| r.start.offset >= from.offset)
        .collect();
    let eof = Position {
        offset: input.len() as u64,
        line: editor_line(input, input.len()),
    };
    let mut bounds = vec![from];
    for &offset in offsets {
        let mut source = Cursor::new(input);
        let b = record_start_at_or_after(&mut source, from, offset, &config).unwrap();
        let first = whole.iter().map(|r| r.start).find(|s| s.offset >= offset);
        assert_eq!(b, first.unwrap_or(eof), "boundary at or after {offset}");
        bounds.push(b);
    }
    bounds.sort();
    bounds.push(eof);
    let mut owned = Vec::new();
    for pair in bounds.windows(2) {
        owned.extend(frame_range(input, pair[0], pair[1].offset, config));
    }
    assert_eq!(owned, whole, "splits at {offsets:?}");
}

const SMALL_INPUTS: &[&str] = &[
    "id,v\n1,\"a\nb\"\n2,\"c\r\nd\"\r\n\r\n3,x",
    "\u{feff}id\r\n\"1\r\n\"\r\n\r\n2\r\n",
    "id\ra\r\"b\rc\"\r\rd\r",
    "\n\nid,\"x\"\"\n\"\n,\n\"\"\n",
    "a\"b,\"c\nd\"e\n\"f\"\"\"\ng",
    "id\n\"unclosed\nquote\n",
    // Escaped quotes around a quoted CRLF, and no final newline.
    "id,n\r\n1,\"a\r\nb\"\r\n\r\n2,\"\"\"\n\"\"\"",
    // A BOM, blank lines before the header, a quoted record that looks like two.
    "\u{feff}\n\nid\n\"x\ny,\"\n\n\"\"\n",
];

#[test]
fn every_split_of_small_inputs_owns_each_record_once() {
    for input in SMALL_INPUTS {
        let input = input.as_bytes();
        for config in [
            Config::default(),
            Config::default().with_chunk_size(1).with_read_size(1),
            Config::default().with_max_record(3).with_read_size(2),
        ] {
            let whole = frame(input, config);
            assert_eq!(whole, reference(input, b',', config.max_record));
            let len = input.len() as u64;
            for a in 0..=len + 1 {
                check_splits(input, Position::START, &[a], config);
                for b in (a..=len).step_by(3) {
                    check_splits(input, Position::START, &[a, b], config);
                }
                // Framing up to any offset gives the records starting before it.
                let before: Vec<Rec> = whole
                    .iter()
                    .filter(|r| r.start.offset < a)
                    .cloned()
                    .collect();
                assert_eq!(frame_range(input, Position::START, a, config), before);
            }
            if let Some(body) = whole.get(1) {
                for a in 0..=len {
                    check_splits(input, body.start, &[a], config);
                }
            }
        }
    }
}

/// Bytes that matter to framing, and some that do not.
const TOKENS: &[&[u8]] = &[
    b"a",
    b"bc",
    b",",
    b";",
    b"\"",
    b"\"\"",
    b"\r",
    b"\n",
    b"\r\n",
    b"\xEF\xBB\xBF",
    "é".as_bytes(),
    "😀".as_bytes(),
];

fn any_input() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..40).prop_map(|t| t.concat())
}

/// A well-formed field, encoded with `,` as its delimiter: unquoted (quotes allowed
/// past its first byte), or quoted with any content and maybe text after the closing
/// quote.
fn field() -> impl Strategy<Value = Vec<u8>> {
    let text = |chars: &'static [&'static str], n: std::ops::Range<usize>| {
        prop::collection::vec(prop::sample::select(chars), n).prop_map(|c| c.concat())
    };
    let plain = &["a", "Z", "0", " ", "é", "€", "😀", "'"][..];
    let any = &["a", "é", "😀", ",", ";", "\"", "\r", "\n", "\r\n", " "][..];
    let tail = &["a", "\"", " ", "é"][..];
    let unquoted = (text(plain, 0..4), text(tail, 0..3)).prop_map(|(a, b)| {
        let field = format!("{a}{b}");
        if field.starts_with('"') {
            format!("x{field}")
        } else {
            field
        }
    });
    let after = prop::option::of((text(plain, 1..3), text(tail, 0..2)));
    let quoted = (text(any, 0..6), after).prop_map(|(content, after)| {
        let after = after.map(|(a, b)| format!("{a}{b}")).unwrap_or_default();
        format!("\"{}\"{after}", content.replace('"', "\"\""))
    });
    prop_oneof![unquoted, quoted].prop_map(String::into_bytes)
}

fn record() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(field(), 1..5)
        .prop_map(|fields| fields.join(&b','))
        .prop_filter("an empty record is a blank line", |r| !r.is_empty())
}

/// A file of well-formed records (`,` delimited) with any terminators, blank lines, maybe a BOM and a
/// final terminator; and where each record starts.
fn file() -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
    const LINE_ENDS: &[&[u8]] = &[b"\n", b"\r\n", b"\r"];
    let line_end = prop::sample::select(LINE_ENDS);
    let blanks = prop::collection::vec(line_end.clone(), 0..2);
    (
        any::<bool>(),
        prop::collection::vec((record(), line_end, blanks), 0..6),
        any::<bool>(),
    )
        .prop_map(|(bom, records, last_end)| {
            let mut input = if bom { BOM.to_vec() } else { Vec::new() };
            let mut starts = Vec::new();
            let n = records.len();
            for (i, (record, end, blanks)) in records.into_iter().enumerate() {
                starts.push(input.len());
                input.extend(record);
                if i + 1 < n || last_end {
                    input.extend(end);
                    // A blank `\n` right after a `\r` would be its `\r\n`: not blank.
                    for blank in blanks {
                        if !(input.ends_with(b"\r") && blank == b"\n") {
                            input.extend(blank);
                        }
                    }
                }
            }
            (input, starts)
        })
}

fn delimiter() -> impl Strategy<Value = u8> {
    prop::sample::select(&[b',', b';', b'\t'][..])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn framing_matches_the_reference_at_any_buffer_size(
        input in any_input(),
        delimiter in prop::sample::select(&[b',', b';'][..]),
        chunk_size in 1usize..40,
        read_size in 1usize..20,
        max_record in prop::sample::select(&[2usize, 7, 1000][..]),
    ) {
        let config = Config::default()
            .with_delimiter(delimiter).unwrap()
            .with_chunk_size(chunk_size)
            .with_read_size(read_size)
            .with_max_record(max_record);
        let records = frame(&input, config);
        prop_assert_eq!(&records, &reference(&input, delimiter, max_record));
        for r in &records {
            prop_assert_eq!(r.start.line, editor_line(&input, r.start.offset as usize));
        }
    }

    #[test]
    fn splitting_matches_the_csv_crate(delimiter in delimiter(), record in record()) {
        let record: Vec<u8> = record.iter().map(|&b| if b == b',' { delimiter } else { b }).collect();
        let csv = csv_records(&record, delimiter);
        prop_assert_eq!(csv.len(), 1);
        prop_assert_eq!(split(&record, delimiter), csv[0].clone());
    }

    #[test]
    fn framing_and_splitting_a_file_match_the_csv_crate(
        delimiter in delimiter(),
        (input, starts) in file(),
        read_size in 1usize..20,
        chunk_size in 1usize..60,
    ) {
        let input: Vec<u8> = input.iter().map(|&b| if b == b',' { delimiter } else { b }).collect();
        let config = Config::default()
            .with_delimiter(delimiter).unwrap()
            .with_read_size(read_size)
            .with_chunk_size(chunk_size);
        let records = frame(&input, config);
        let offsets: Vec<usize> = records.iter().map(|r| r.start.offset as usize).collect();
        prop_assert_eq!(offsets, starts);
        for r in &records {
            prop_assert_eq!(r.start.line, editor_line(&input, r.start.offset as usize));
        }
        let fields: Vec<Vec<Vec<u8>>> =
            records.iter().map(|r| split(r.body.as_ref().unwrap(), delimiter)).collect();
        prop_assert_eq!(fields, csv_records(&input, delimiter));
    }

    #[test]
    fn any_split_of_any_input_owns_each_record_once(
        input in any_input(),
        cuts in prop::collection::vec(0u64..200, 0..4),
        read_size in 1usize..10,
    ) {
        let config = Config::default().with_read_size(read_size).with_chunk_size(5);
        let offsets: Vec<u64> = cuts.iter().map(|c| c % (input.len() as u64 + 2)).collect();
        check_splits(&input, Position::START, &offsets, config);
    }
}

/// A ~100 MB transactions CSV where quotes are rare, as `txguard generate` writes them.
fn transactions(bytes: usize) -> Vec<u8> {
    let mut out = b"id,timestamp,account,amount,currency,country,merchant\n".to_vec();
    let mut i = 0u64;
    while out.len() < bytes {
        i += 1;
        let merchant = if i.is_multiple_of(500) {
            format!("\"Shop {}, \"\"the best\"\"\"", i % 997)
        } else {
            format!("Shop {}", i % 997)
        };
        out.extend(
            format!(
                "{i},2024-05-{:02}T{:02}:{:02}:{:02}Z,ACC{:06},{}.{:02},EUR,FR,{merchant}\n",
                1 + i % 28,
                i % 24,
                i % 60,
                (i * 7) % 60,
                i % 100_000,
                i % 10_000,
                i % 100
            )
            .as_bytes(),
        );
    }
    out
}

/// Framing and parsing speed on a generated transactions file, against the csv crate
/// (`TXGUARD_FRAMER_MB` sets the size, 100 MB by default).
#[test]
#[ignore = "a measurement: cargo test --release --lib framer::tests::throughput -- --ignored --nocapture"]
fn throughput() {
    use std::time::Instant;
    let size_mb: usize = std::env::var("TXGUARD_FRAMER_MB").map_or(100, |v| v.parse().unwrap());
    let data = transactions(size_mb * 1_000_000);
    let mut file = tempfile::tempfile().unwrap();
    io::Write::write_all(&mut file, &data).unwrap();
    let open = || {
        let mut f = file.try_clone().unwrap();
        f.rewind().unwrap();
        f
    };
    let mb = data.len() as f64 / 1e6;
    let time = |what: &str, run: &mut dyn FnMut() -> usize| {
        let t = Instant::now();
        let records = run();
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{what:<32} {:>6.0} MB/s  ({records} records, {secs:.3} s)",
            mb / secs
        );
        records
    };
    let frame = |source: &mut dyn Read| {
        let mut framer = Framer::new(source, Config::default());
        let mut records = 0;
        while let Some(chunk) = framer.next_chunk().unwrap() {
            records += chunk.len();
            framer.recycle(chunk);
        }
        records
    };
    let frame_and_split = |source: &mut dyn Read| {
        let mut framer = Framer::new(source, Config::default());
        let mut splitter = Splitter::new(&Config::default());
        let mut fields = 0;
        while let Some(chunk) = framer.next_chunk().unwrap() {
            for record in &chunk {
                fields += splitter.split(record.body.unwrap()).len();
            }
            framer.recycle(chunk);
        }
        fields / 7
    };
    let csv = |source: &mut dyn Read| {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(source);
        let mut record = csv::ByteRecord::new();
        let mut records = 0;
        while reader.read_byte_record(&mut record).unwrap() {
            records += 1;
        }
        records
    };
    println!(
        "{mb:.0} MB, {} bytes a record",
        data.len() / data.iter().filter(|&&b| b == b'\n').count()
    );
    for _ in 0..2 {
        let n = time("framer (memory)", &mut || frame(&mut &data[..]));
        assert_eq!(n, time("framer (file)", &mut || frame(&mut open())));
        assert_eq!(
            n,
            time("framer + splitter (file)", &mut || frame_and_split(
                &mut open()
            ))
        );
        assert_eq!(
            n,
            time("csv read_byte_record (memory)", &mut || csv(&mut &data[..]))
        );
        assert_eq!(
            n,
            time("csv read_byte_record (file)", &mut || csv(&mut open()))
        );
    }
}
