//! The worker protocol: how the supervisor and a `txguard worker` process talk, over the
//! worker's stdin (requests) and stdout (replies).
//!
//! Every message is one frame: `[length: u32 LE][kind: u8][payload]`, where `length`
//! counts the kind byte and the payload. Integers are little-endian; strings are a `u32`
//! byte length then UTF-8; values and outcomes carry a one-byte tag. A batch sends each
//! row's id as the hash its random draws are keyed by, and each sent column either as
//! tagged values (int, float, bool, string, unit) or, for the input columns the lanes
//! keep (`model::RawFields`), as kept fields: every row's field lengths, then all their
//! bytes in one block (version 5; version 4 sent ids and tagged raw text per field), which
//! the worker turns into values with `typing::kept_value` (so the supervisor's lanes build
//! no value, and no field is parsed twice). The supervisor opens
//! with `Setup` (magic + version + what the worker needs to rebuild the evaluator), the
//! worker answers `Ready` (magic + version) and then one `Outcomes` frame or more per
//! `Batch`. The version is also checked before any frame, on the worker's command line
//! (`txguard worker --protocol N`); any mismatch is an error, never a guess.
//!
//! Decoding never trusts a length: every read is bounds-checked, counts never size an
//! allocation beyond the bytes actually present (a batch's rows are as wide as the
//! setup's columns, and a batch of another width is refused), and a frame longer than the
//! direction's limit is refused before it is read.
//!
//! One file per part: `frame.rs` (lengths, kinds and the bounds-checked `Cursor`),
//! `setup.rs`, `batch.rs` (requests) and `reply.rs` (what workers answer).

mod batch;
mod frame;
mod reply;
mod setup;
#[cfg(test)]
mod tests;

pub use batch::{BatchDecoder, BatchRequest, encode_batch};
pub use frame::{FrameError, ProtocolError, begin_frame, end_frame, read_frame};
pub use reply::{
    CODE_DETAIL, CODE_FALSE, CODE_TRUE, Outcomes, OutcomesEncoder, Reply, decode_reply,
    encode_fatal, encode_ready,
};
pub use setup::{Setup, decode_setup, encode_setup};

/// The protocol version; bump it with any change to a frame's layout.
pub const VERSION: u32 = 5;
/// Opens `Setup` and `Ready`: a worker that is not a txguard worker is told apart at once.
pub const MAGIC: [u8; 4] = *b"TXGW";

/// Largest frame the supervisor sends with the default `--max-record-size` (64 MiB). A
/// batch request is split by the supervisor until its frame fits (`supervisor`), so this
/// bounds what a worker holds, whatever the batch size; it must hold one row of the
/// largest record the input allows plus its encoding's few bytes per field: a row that
/// still does not fit is an `error`. Workers' hard memory limit makes room for it
/// (`budget::worker_data_limit`).
pub const MAX_TO_WORKER: usize = 80 << 20;

/// The largest frame the supervisor sends, and its workers read (`txguard worker
/// --max-frame`), when a record may be `max_record` bytes: a quarter more than the record
/// (a read field is at most its bytes, or 8 for a number, plus a 4-byte length), never
/// less than `MAX_TO_WORKER` nor more than a frame's u32 length says. With a raised
/// `--max-record-size` a row as large as the thread executor takes is then evaluated by
/// workers too (up to 4 GiB).
pub fn max_to_worker(max_record: usize) -> usize {
    MAX_TO_WORKER
        .max(max_record.saturating_add(max_record / 4))
        .min(u32::MAX as usize)
}
/// Largest frame a worker sends. Its frames are bounded by construction: an `Outcomes`
/// frame closes once past `OUTCOMES_CHUNK`, and one outcome is at most a capped detail
/// (`model::DETAIL_MAX_BYTES`, re-capped by `put_outcome`); a `Fatal` message is cut at
/// `FATAL_MAX_BYTES`. No rule output can make a frame reach this.
pub const MAX_FROM_WORKER: usize = 1 << 20;
/// Longest message of a `Fatal` frame.
pub const FATAL_MAX_BYTES: usize = 64 << 10;
/// A worker closes an `Outcomes` frame once its payload passes this size.
pub const OUTCOMES_CHUNK: usize = 16 << 10;

// Frame kinds. Requests have the high bit clear, replies have it set.
pub const KIND_SETUP: u8 = 0x01;
pub const KIND_BATCH: u8 = 0x02;
pub const KIND_READY: u8 = 0x81;
pub const KIND_OUTCOMES: u8 = 0x82;
pub const KIND_FATAL: u8 = 0x83;

// Value tags.
const VALUE_UNIT: u8 = 0;
const VALUE_INT: u8 = 1;
const VALUE_FLOAT: u8 = 2;
const VALUE_FALSE: u8 = 3;
const VALUE_TRUE: u8 = 4;
const VALUE_STRING: u8 = 5;

// Outcome tags.
const OUTCOME_TRUE: u8 = 0;
const OUTCOME_FALSE: u8 = 1;
const OUTCOME_ERROR: u8 = 2;
const OUTCOME_TIMEOUT: u8 = 3;

/// What the supervisor asks.
#[derive(Debug, Clone)]
pub enum Request {
    Setup(Setup),
    Batch(BatchRequest),
}

/// Decodes a frame the supervisor sent, a batch with the worker's `decoder` (which knows
/// the setup's columns: the default one, before the setup, refuses every batch).
pub fn decode_request_with(
    kind: u8,
    payload: &[u8],
    decoder: &mut BatchDecoder,
) -> Result<Request, ProtocolError> {
    match kind {
        KIND_SETUP => decode_setup(payload).map(Request::Setup),
        KIND_BATCH => decoder.decode(payload).map(Request::Batch),
        other => Err(ProtocolError::UnknownKind(other)),
    }
}
