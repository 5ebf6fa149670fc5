//! Unit tests of the protocol: round trips, and malformed input of every kind.
// Ranges of one element and empty ranges are what these tests are about.
#![allow(clippy::single_range_in_vec_init, clippy::reversed_empty_ranges)]

use std::time::Duration;

use rhai::Dynamic;

use crate::model::{ColumnType, Columns, Outcome, RawFields, Row};
use crate::typing::StringCache;

use super::frame::{put_u32, put_u64};
use super::*;

fn columns() -> Columns {
    Columns {
        names: vec![
            "id".into(),
            "amount".into(),
            "flag".into(),
            "country".into(),
        ],
        types: vec![
            ColumnType::Int,
            ColumnType::Float,
            ColumnType::Bool,
            ColumnType::String,
        ],
    }
}

fn rows() -> Vec<Row> {
    (0..3)
        .map(|i| Row {
            id: format!("{i:03}"),
            values: vec![
                Dynamic::from_int(-(i as i64) * 1_000_000_007),
                Dynamic::from_float(if i == 1 { -0.0 } else { 0.1 + i as f64 }),
                Dynamic::from_bool(i % 2 == 0),
                Dynamic::from(format!("Zürich, \"{i}\"\n")),
            ],
        })
        .collect()
}

const NULLABLE: [bool; 4] = [false, true, false, false];

/// A worker's decoder after the setup of `columns()`.
fn decoder() -> BatchDecoder {
    BatchDecoder::for_columns(&columns(), &NULLABLE)
}

fn decode_batch(payload: &[u8]) -> Result<BatchRequest, ProtocolError> {
    decoder().decode(payload)
}

fn decode_request(kind: u8, payload: &[u8]) -> Result<Request, ProtocolError> {
    decode_request_with(kind, payload, &mut decoder())
}

/// Splits the one frame in `bytes` into kind and payload, through `read_frame`.
fn frame(bytes: &[u8]) -> (u8, Vec<u8>) {
    let mut payload = Vec::new();
    let kind = read_frame(&mut &bytes[..], usize::MAX, &mut payload)
        .unwrap()
        .unwrap();
    (kind, payload)
}

/// Whether a worker's row `b` (id hash `hash`) is the supervisor's `a`.
fn same_row(a: &Row, b: &Row, hash: u64) -> bool {
    crate::rules::random_key_hash(&a.id) == hash
        && a.values.len() == b.values.len()
        && a.values.iter().zip(&b.values).all(|(x, y)| {
            x.type_name() == y.type_name()
                && match (x.as_float(), y.as_float()) {
                    (Ok(f), Ok(g)) => f.to_bits() == g.to_bits(),
                    _ => x.to_string() == y.to_string(),
                }
        })
}

#[test]
fn setup_round_trips() {
    let setup = Setup {
        rules_text: "[[rule]]\nid = 1\nname = \"é\"\nwhen = 'true'\n".into(),
        default_timeout: Duration::new(3, 250_000_000),
        memory_limit: 256 << 20,
        columns: columns(),
        seed: u64::MAX,
        list_files: vec![b"k\nIR\n".to_vec(), Vec::new()],
    };
    let mut out = Vec::new();
    encode_setup(&mut out, &setup);
    let (kind, payload) = frame(&out);
    match decode_request(kind, &payload).unwrap() {
        Request::Setup(back) => assert_eq!(back, setup),
        other => panic!("{other:?}"),
    }
}

#[test]
fn batches_round_trip_with_every_value_type() {
    let mut rows = rows();
    rows[2].values[2] = Dynamic::UNIT;
    let mut out = Vec::new();
    encode_batch(
        &mut out,
        42,
        3,
        7,
        &[21..23, 24..30],
        &rows,
        &RawFields::default(),
        &[true; 4],
    )
    .unwrap();
    let (kind, payload) = frame(&out);
    let Request::Batch(back) = decode_request(kind, &payload).unwrap() else {
        panic!()
    };
    assert_eq!((back.request, back.rules, back.row_base), (42, 3, 7));
    assert_eq!(back.ranges, vec![21..23, 24..30]);
    assert_eq!(back.rows.len(), 3);
    for ((a, b), &hash) in rows.iter().zip(&back.rows).zip(&back.id_hashes) {
        assert!(same_row(a, b, hash), "{a:?} != {b:?}");
        assert!(b.id.is_empty(), "ids are not sent, their hashes are");
    }
    assert!(
        back.rows[1].values[1]
            .as_float()
            .unwrap()
            .is_sign_negative()
    );
}

#[test]
fn a_worker_decoder_refills_recycled_rows_with_the_next_batch_exactly() {
    let mut decoder = decoder();
    let first = rows();
    let mut second = rows();
    second.truncate(2);
    second[0].id = "a much longer id than the first batch had".into();
    second[0].values[3] = Dynamic::from(String::new());
    second[1].values[2] = Dynamic::UNIT;
    for (rows, sent) in [(&first, [true; 4]), (&second, [true, false, true, true])] {
        let mut out = Vec::new();
        encode_batch(
            &mut out,
            9,
            1,
            0,
            &[0..rows.len() as u64],
            rows,
            &RawFields::default(),
            &sent,
        )
        .unwrap();
        let back = decoder.decode(&frame(&out).1).unwrap();
        assert_eq!(back.rows.len(), rows.len());
        for ((a, b), &hash) in rows.iter().zip(&back.rows).zip(&back.id_hashes) {
            assert_eq!(crate::rules::random_key_hash(&a.id), hash);
            assert!(b.values[1].is_unit() != sent[1]);
            assert_eq!(b.values[3].to_string(), a.values[3].to_string());
            assert_eq!(b.values[2].to_string(), a.values[2].to_string());
        }
        decoder.recycle(back);
    }
}

#[test]
fn columns_not_sent_arrive_as_unit() {
    let rows = rows();
    let mut out = Vec::new();
    encode_batch(
        &mut out,
        1,
        1,
        0,
        &[0..3],
        &rows,
        &RawFields::default(),
        &[false, true, false, true],
    )
    .unwrap();
    let back = decode_batch(&frame(&out).1).unwrap();
    for ((a, b), &hash) in rows.iter().zip(&back.rows).zip(&back.id_hashes) {
        assert_eq!(crate::rules::random_key_hash(&a.id), hash);
        assert!(b.values[0].is_unit() && b.values[2].is_unit());
        assert_eq!(a.values[1].as_float(), b.values[1].as_float());
        assert_eq!(a.values[3].to_string(), b.values[3].to_string());
    }
    assert!(
        encode_batch(
            &mut out,
            1,
            1,
            0,
            &[0..3],
            &rows,
            &RawFields::default(),
            &[true; 3]
        )
        .is_err(),
        "width"
    );
}

#[test]
fn batch_ranges_must_be_ordered_and_inside_the_rows() {
    let rows = rows();
    for bad in [vec![0..0], vec![3..5, 2..4], vec![0..10], vec![5..3]] {
        let mut out = Vec::new();
        encode_batch(
            &mut out,
            1,
            3,
            0,
            &bad,
            &rows,
            &RawFields::default(),
            &[true; 4],
        )
        .unwrap();
        let (_, payload) = frame(&out);
        assert!(
            matches!(decode_batch(&payload), Err(ProtocolError::Invalid(_))),
            "{bad:?}"
        );
    }
    // Rows start at row_base: indexes before it are not in the batch.
    let mut out = Vec::new();
    encode_batch(
        &mut out,
        1,
        3,
        2,
        &[5..7],
        &rows,
        &RawFields::default(),
        &[true; 4],
    )
    .unwrap();
    assert!(decode_batch(&frame(&out).1).is_err());
}

#[test]
fn replies_round_trip_across_chunks() {
    let outcomes: Vec<Outcome> = (0..5000)
        .map(|i| match i % 4 {
            0 => Outcome::True,
            1 => Outcome::False,
            2 => Outcome::Error(format!("boom {i}: ünïcode")),
            _ => Outcome::Timeout(Duration::from_millis(i)),
        })
        .collect();
    let mut out = Vec::new();
    encode_ready(&mut out, 3, 1234);
    let mut enc = OutcomesEncoder::new(9);
    for (i, o) in outcomes.iter().enumerate() {
        enc.push(&mut out, 100 + i as u64, o);
    }
    enc.close(&mut out);
    assert!(enc.is_closed());
    encode_fatal(&mut out, "rules do not compile");

    let mut r = &out[..];
    let mut payload = Vec::new();
    let mut back = Vec::new();
    let mut frames = 0;
    let mut fatal = None;
    while let Some(kind) = read_frame(&mut r, MAX_FROM_WORKER, &mut payload).unwrap() {
        match decode_reply(kind, &payload).unwrap() {
            Reply::Ready {
                version,
                rules,
                pid,
            } => assert_eq!((version, rules, pid), (VERSION, 3, 1234)),
            Reply::Outcomes {
                request,
                first,
                outcomes,
            } => {
                assert_eq!(request, 9);
                assert_eq!(first, 100 + back.len() as u64);
                back.extend(outcomes.into_vec());
                frames += 1;
            }
            Reply::Fatal(m) => fatal = Some(m),
        }
    }
    assert_eq!(back, outcomes);
    assert!(
        frames > 1,
        "5000 outcomes with messages span several chunks"
    );
    assert_eq!(fatal.as_deref(), Some("rules do not compile"));
}

#[test]
fn truncated_frames_are_errors_at_every_cut() {
    let mut out = Vec::new();
    encode_batch(
        &mut out,
        1,
        2,
        0,
        &[0..6],
        &rows(),
        &RawFields::default(),
        &[true; 4],
    )
    .unwrap();
    for cut in 1..out.len() {
        let mut payload = Vec::new();
        match read_frame(&mut &out[..cut], MAX_TO_WORKER, &mut payload) {
            Err(FrameError::Protocol(ProtocolError::TruncatedFrame { .. })) => {}
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    // A payload cut short inside (with a length that agrees) is caught by the decoder.
    let (_, payload) = frame(&out);
    for cut in 0..payload.len() {
        assert!(decode_batch(&payload[..cut]).is_err(), "cut at {cut}");
    }
    assert_eq!(
        read_frame(&mut &b""[..], 10, &mut Vec::new()).unwrap(),
        None
    );
}

#[test]
fn oversize_and_empty_frames_are_refused_without_allocating() {
    let mut payload = Vec::new();
    let huge = [0xff, 0xff, 0xff, 0x7f, KIND_BATCH];
    assert!(matches!(
        read_frame(&mut &huge[..], MAX_TO_WORKER, &mut payload),
        Err(FrameError::Protocol(ProtocolError::Oversize { .. }))
    ));
    // Within the limit but the bytes are not there: memory follows what arrives.
    let lying = [0x00, 0x00, 0x00, 0x04, KIND_BATCH, 1, 2, 3]; // 64 MiB
    const { assert!(0x0400_0000 <= MAX_TO_WORKER) };
    assert!(matches!(
        read_frame(&mut &lying[..], MAX_TO_WORKER, &mut payload),
        Err(FrameError::Protocol(ProtocolError::TruncatedFrame { .. }))
    ));
    assert!(payload.capacity() < 1 << 20, "{}", payload.capacity());
    assert!(matches!(
        read_frame(&mut &[0u8, 0, 0, 0, 1][..], 100, &mut payload),
        Err(FrameError::Protocol(ProtocolError::Empty))
    ));
    // A count that claims more items than bytes left.
    let mut out = Vec::new();
    let at = begin_frame(&mut out, KIND_OUTCOMES);
    put_u64(&mut out, 1);
    put_u64(&mut out, 0);
    put_u32(&mut out, u32::MAX);
    out.push(OUTCOME_TRUE);
    end_frame(&mut out, at);
    let (kind, payload) = frame(&out);
    assert!(matches!(
        decode_reply(kind, &payload),
        Err(ProtocolError::Truncated { .. })
    ));
}

#[test]
fn unknown_kinds_tags_magic_and_versions_are_errors() {
    assert_eq!(
        decode_reply(0x7f, &[]),
        Err(ProtocolError::UnknownKind(0x7f))
    );
    assert!(matches!(
        decode_request(KIND_READY, &[]),
        Err(ProtocolError::UnknownKind(KIND_READY))
    ));

    let mut out = Vec::new();
    let mut enc = OutcomesEncoder::new(1);
    enc.push(&mut out, 0, &Outcome::True);
    enc.close(&mut out);
    let (kind, mut payload) = frame(&out);
    *payload.last_mut().unwrap() = 9;
    assert_eq!(
        decode_reply(kind, &payload),
        Err(ProtocolError::UnknownTag {
            what: "outcome",
            tag: 9
        })
    );

    let mut out = Vec::new();
    encode_ready(&mut out, 1, 1);
    let (kind, mut payload) = frame(&out);
    payload[4..8].copy_from_slice(&(VERSION + 1).to_le_bytes());
    assert_eq!(
        decode_reply(kind, &payload),
        Err(ProtocolError::Version {
            ours: VERSION,
            theirs: VERSION + 1
        })
    );
    payload[0] = b'X';
    assert!(matches!(
        decode_reply(kind, &payload),
        Err(ProtocolError::BadMagic(_))
    ));

    let mut out = Vec::new();
    encode_setup(
        &mut out,
        &Setup {
            rules_text: String::new(),
            default_timeout: Duration::ZERO,
            memory_limit: 0,
            columns: columns(),
            seed: 0,
            list_files: Vec::new(),
        },
    );
    let (kind, mut payload) = frame(&out);
    payload[4..8].copy_from_slice(&0u32.to_le_bytes());
    assert!(matches!(
        decode_request(kind, &payload),
        Err(ProtocolError::Version { theirs: 0, .. })
    ));

    let mut out = Vec::new();
    let rows = rows();
    encode_batch(
        &mut out,
        1,
        1,
        0,
        &[0..1],
        &rows[..1],
        &RawFields::default(),
        &[true; 4],
    )
    .unwrap();
    let (_, mut payload) = frame(&out);
    // The first value tag follows the header (8+4+8+4+16+4), the sent columns (4+4×5),
    // the row count (4) and the id's hash (8).
    let tag_at = 44 + 24 + 4 + 8;
    assert_eq!(payload[tag_at], VALUE_INT);
    payload[tag_at] = 0xee;
    assert_eq!(
        decode_batch(&payload).unwrap_err(),
        ProtocolError::UnknownTag {
            what: "value",
            tag: 0xee
        }
    );
}

#[test]
fn garbage_never_panics() {
    // A cheap fuzz: every prefix and byte flip of valid frames either decodes or errs.
    let mut frames = Vec::new();
    encode_batch(
        &mut frames,
        3,
        2,
        0,
        &[0..6],
        &rows(),
        &RawFields::default(),
        &[true; 4],
    )
    .unwrap();
    encode_batch(
        &mut frames,
        4,
        2,
        0,
        &[0..6],
        &rows(),
        &raw_fields(),
        &[true; 4],
    )
    .unwrap();
    let mut decoder = decoder();
    let mut enc = OutcomesEncoder::new(3);
    enc.push(&mut frames, 0, &Outcome::Error("x".into()));
    enc.push(&mut frames, 1, &Outcome::Timeout(Duration::from_secs(1)));
    enc.close(&mut frames);
    let mut state = 0x1234_5678_u64;
    for _ in 0..20_000 {
        state = crate::rules::random_key_hash(&state.to_string());
        let mut bytes = frames.clone();
        let at = (state as usize) % bytes.len();
        bytes[at] ^= (state >> 32) as u8 | 1;
        let mut r = &bytes[..];
        let mut payload = Vec::new();
        while let Ok(Some(kind)) = read_frame(&mut r, 1 << 20, &mut payload) {
            let _ = decode_reply(kind, &payload);
            let _ = decode_request(kind, &payload);
            let _ = decode_request_with(kind, &payload, &mut decoder);
        }
    }
}

#[test]
fn unsendable_values_are_an_error_not_a_panic() {
    let mut row = rows().remove(0);
    row.values[0] = Dynamic::from(vec![Dynamic::from_int(1)]);
    assert!(matches!(
        encode_batch(
            &mut Vec::new(),
            1,
            1,
            0,
            &[0..1],
            &[row],
            &RawFields::default(),
            &[true; 4]
        ),
        Err(ProtocolError::Invalid(_))
    ));
}

#[test]
fn no_outcome_makes_a_reply_frame_pass_its_limit() {
    // A message far longer than any capped detail, as if something skipped the cap.
    let huge = "x".repeat(4 << 20);
    let mut frames = Vec::new();
    let mut enc = OutcomesEncoder::new(1);
    for i in 0..100 {
        enc.push(&mut frames, i, &Outcome::Error(huge.clone()));
    }
    enc.close(&mut frames);
    encode_fatal(&mut frames, &huge);
    let mut reader = &frames[..];
    let mut payload = Vec::new();
    let mut seen = 0;
    while let Some(kind) = read_frame(&mut reader, MAX_FROM_WORKER, &mut payload).unwrap() {
        match decode_reply(kind, &payload).unwrap() {
            Reply::Outcomes { outcomes, .. } => {
                for o in outcomes.into_vec() {
                    let Outcome::Error(m) = o else { panic!() };
                    assert!(m.len() <= crate::model::DETAIL_MAX_BYTES + 3 && m.ends_with('…'));
                    seen += 1;
                }
            }
            Reply::Fatal(m) => assert_eq!(m.len(), FATAL_MAX_BYTES),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(seen, 100);
}

/// The input fields of `amount` (nullable) and `country` for the three rows of `rows()`.
const FIELDS: [(&str, &str); 3] = [("2.5", "Zürich, \"0\"\n"), ("", "IR"), ("-0.0", "")];

/// `FIELDS` as a lane keeps them.
fn raw_fields() -> RawFields {
    let mut raw = RawFields {
        columns: vec![1, 3],
        ..RawFields::default()
    };
    for (amount, country) in FIELDS {
        crate::typing::keep_field(&mut raw, ColumnType::Float, true, amount.as_bytes()).unwrap();
        crate::typing::keep_field(&mut raw, ColumnType::String, false, country.as_bytes()).unwrap();
    }
    raw
}

#[test]
fn raw_fields_arrive_typed_as_a_thread_lane_types_them() {
    let raw = raw_fields();
    let mut rows = rows();
    for row in &mut rows {
        // A lane that keeps raw fields builds no value for those columns.
        row.values[1] = Dynamic::UNIT;
        row.values[3] = Dynamic::UNIT;
    }
    let mut decoder = decoder();
    // Rows 1 and 2 of the batch: their raw fields are rows 1 and 2 of `raw`.
    let mut out = Vec::new();
    encode_batch(&mut out, 5, 2, 1, &[2..6], &rows[1..], &raw, &[true; 4]).unwrap();
    let back = decoder.decode(&frame(&out).1).unwrap();
    assert_eq!(back.row_base, 1);
    let mut cache = StringCache::new();
    for (i, (a, b)) in rows[1..].iter().zip(&back.rows).enumerate() {
        assert_eq!(crate::rules::random_key_hash(&a.id), back.id_hashes[i]);
        assert_eq!(
            a.values[0].as_int(),
            b.values[0].as_int(),
            "typed values stay"
        );
        for (k, &c) in raw.columns.iter().enumerate() {
            let field = [FIELDS[i + 1].0, FIELDS[i + 1].1][k].as_bytes();
            let lane = crate::typing::field_value(
                columns().types[c],
                NULLABLE[c],
                true,
                Some(&mut cache),
                field,
            )
            .unwrap();
            let mut expected = Row {
                id: a.id.clone(),
                values: a.values.clone(),
            };
            expected.values[c] = lane;
            assert_eq!(
                expected.values[c].type_name(),
                b.values[c].type_name(),
                "{c}"
            );
            assert_eq!(
                expected.values[c].to_string(),
                b.values[c].to_string(),
                "{c}"
            );
        }
    }
    // Exact values: an empty nullable field is (), an empty string column "".
    assert!(back.rows[0].values[1].is_unit());
    assert_eq!(back.rows[0].values[3].to_string(), "IR");
    assert!(
        back.rows[1].values[1]
            .as_float()
            .unwrap()
            .is_sign_negative()
    );
    assert_eq!(back.rows[1].values[3].type_name(), "string");
    assert_eq!(back.rows[1].values[3].to_string(), "");
    decoder.recycle(back);
    // The whole batch, with a column that is not sent: unit, raw or not.
    let mut out = Vec::new();
    encode_batch(
        &mut out,
        6,
        1,
        0,
        &[0..3],
        &rows,
        &raw,
        &[true, true, true, false],
    )
    .unwrap();
    let back = decoder.decode(&frame(&out).1).unwrap();
    assert_eq!(back.rows[0].values[1].as_float(), Ok(2.5));
    assert!(back.rows.iter().all(|r| r.values[3].is_unit()));
}

#[test]
fn raw_fields_need_a_decoder_that_knows_the_columns_and_valid_fields() {
    let raw = raw_fields();
    let rows = rows();
    let mut out = Vec::new();
    encode_batch(&mut out, 1, 1, 0, &[0..3], &rows, &raw, &[true; 4]).unwrap();
    let (_, payload) = frame(&out);
    assert!(
        matches!(
            BatchDecoder::default().decode(&payload),
            Err(ProtocolError::Invalid(m)) if m == "a batch of 4 columns, but the setup has 0"
        ),
        "a decoder without the setup's columns"
    );
    // A frame that claims a billion columns sizes nothing.
    let mut huge = payload.clone();
    let columns_at = 8 + 4 + 8 + 4 + 16;
    huge[columns_at..columns_at + 4].copy_from_slice(&1_000_000_000u32.to_le_bytes());
    assert!(decode_batch(&huge).is_err());
    // A field the supervisor should never have sent: an error naming row and column.
    let decode_error = |fields: [&[u8]; 6]| {
        let mut bad = raw.clone();
        bad.truncate_fields(0);
        for field in fields {
            bad.push(field);
        }
        let mut out = Vec::new();
        encode_batch(&mut out, 1, 1, 0, &[0..3], &rows, &bad, &[true; 4]).unwrap();
        decoder().decode(&frame(&out).1).unwrap_err().to_string()
    };
    assert_eq!(
        decode_error([b"12x", b"IR", &[0; 8], b"IR", &[0; 8], b"\xff"]),
        "row 0, column 2: kept field \"12x\" is not 8 bytes"
    );
    assert_eq!(
        decode_error([&[0; 8], b"IR", &[0; 8], b"IR", &[0; 8], b"\xff"]),
        "row 2, column 4: kept field \"\u{fffd}\" is not valid UTF-8"
    );
    // Rows that hold no value (a lane that built none): only raw columns can be sent.
    let mut bare = raw.clone();
    bare.first_value = 4;
    let empty: Vec<Row> = rows
        .iter()
        .map(|r| Row {
            id: r.id.clone(),
            values: Vec::new(),
        })
        .collect();
    let mut out = Vec::new();
    let sent = [false, true, false, true];
    encode_batch(&mut out, 1, 1, 0, &[0..3], &empty, &bare, &sent).unwrap();
    let back = decoder().decode(&frame(&out).1).unwrap();
    assert_eq!(back.rows[0].values.len(), 4);
    assert_eq!(back.rows[0].values[1].as_float(), Ok(2.5));
    assert!(back.rows[0].values[0].is_unit() && back.rows[0].values[2].is_unit());
    assert!(matches!(
        encode_batch(&mut Vec::new(), 1, 1, 0, &[0..3], &empty, &bare, &[true; 4]),
        Err(ProtocolError::Invalid(m)) if m.contains("neither a value nor a raw field")
    ));
    // Raw fields of fewer rows than the frame carries cannot be encoded.
    assert!(matches!(
        encode_batch(&mut Vec::new(), 1, 1, 1, &[1..4], &rows, &raw, &[true; 4]),
        Err(ProtocolError::Invalid(_))
    ));
    // Truncated anywhere: an error, never a panic.
    let mut decoder = decoder();
    let mut out = Vec::new();
    encode_batch(&mut out, 1, 1, 0, &[0..3], &rows, &raw, &[true; 4]).unwrap();
    let (_, payload) = frame(&out);
    for cut in 0..payload.len() {
        assert!(decoder.decode(&payload[..cut]).is_err(), "cut at {cut}");
    }
    assert!(decoder.decode(&payload).is_ok());
}

#[test]
fn a_request_of_one_row_of_a_very_wide_input_is_encoded_in_one_pass() {
    // 200,000 columns, every other one read: a search of the raw columns per column
    // would take 10^10 steps (minutes); one pass takes milliseconds.
    let width = 200_000;
    let mut raw = RawFields {
        columns: (0..width).step_by(2).collect(),
        first_value: width,
        ..RawFields::default()
    };
    for &c in &raw.columns.clone() {
        raw.push(c.to_string().as_bytes());
    }
    let row = Row {
        id: "1".into(),
        values: Vec::new(),
    };
    let sent: Vec<bool> = (0..width).map(|c| c % 4 == 0).collect();
    let started = std::time::Instant::now();
    let mut out = Vec::new();
    encode_batch(&mut out, 1, 1, 0, &[0..1], &[row], &raw, &sent).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    // The last sent column is the raw field of column 199,996: its number.
    assert!(out.ends_with(b"199996"));
}

/// The workers' frame limit follows `--max-record-size` up to what a frame's u32 length
/// says: a record size of gigabytes (`--max-record-size 5GiB`) made it 6.25 GiB, past
/// which the length wrapped (or the encoder panicked) instead of the row being too large.
#[test]
fn the_workers_frame_limit_stays_within_a_frames_length() {
    assert_eq!(max_to_worker(1 << 10), MAX_TO_WORKER);
    assert_eq!(max_to_worker(64 << 20), MAX_TO_WORKER);
    assert_eq!(max_to_worker(100 << 20), 125 << 20);
    assert_eq!(max_to_worker(5 << 30), u32::MAX as usize);
    assert_eq!(max_to_worker(isize::MAX as usize), u32::MAX as usize);
}
