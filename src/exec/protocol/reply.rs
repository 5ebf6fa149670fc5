//! What a worker answers: `Ready`, `Outcomes` (built by `OutcomesEncoder`, one code per
//! outcome) and `Fatal`.

use crate::model::{DETAIL_MAX_BYTES, Outcome};

use super::frame::{Cursor, put_duration, put_str, put_u32, put_u64};
use super::*;

/// What a worker says.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// The evaluator is built; `rules` rules were compiled.
    Ready { version: u32, rules: u32, pid: u32 },
    /// Outcomes of consecutive evaluations of `request`, from index `first` on (along the
    /// request's ranges).
    Outcomes {
        request: u64,
        first: u64,
        outcomes: Outcomes,
    },
    /// The worker cannot go on (its rules do not compile, a bad request): the message.
    Fatal(String),
}

/// Outcomes in order, compactly: one code a piece (`CODE_*`), and beside the codes the
/// outcomes that carry more (errors, timeouts), in order. Most outcomes are `true` or
/// `false`: they cost a byte, not an `Outcome`, from the pipe to the batch's place.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcomes {
    pub codes: Vec<u8>,
    /// The outcome of each `CODE_DETAIL`, in order.
    pub details: Vec<Outcome>,
}

pub const CODE_TRUE: u8 = 0;
pub const CODE_FALSE: u8 = 1;
/// An error or a timeout: the next of `Outcomes::details`.
pub const CODE_DETAIL: u8 = 2;

impl Outcomes {
    pub fn push(&mut self, outcome: Outcome) {
        self.codes.push(match outcome {
            Outcome::True => CODE_TRUE,
            Outcome::False => CODE_FALSE,
            detail => {
                self.details.push(detail);
                CODE_DETAIL
            }
        });
    }

    /// The outcomes, in order.
    pub fn into_vec(self) -> Vec<Outcome> {
        let mut details = self.details.into_iter();
        self.codes
            .iter()
            .map(|&code| match code {
                CODE_TRUE => Outcome::True,
                CODE_FALSE => Outcome::False,
                _ => details.next().expect("a detail per CODE_DETAIL"),
            })
            .collect()
    }
}

impl FromIterator<Outcome> for Outcomes {
    fn from_iter<I: IntoIterator<Item = Outcome>>(iter: I) -> Outcomes {
        let mut outcomes = Outcomes::default();
        for outcome in iter {
            outcomes.push(outcome);
        }
        outcomes
    }
}

pub fn encode_ready(out: &mut Vec<u8>, rules: u32, pid: u32) {
    let at = begin_frame(out, KIND_READY);
    out.extend_from_slice(&MAGIC);
    put_u32(out, VERSION);
    put_u32(out, rules);
    put_u32(out, pid);
    end_frame(out, at);
}

pub fn encode_fatal(out: &mut Vec<u8>, message: &str) {
    let at = begin_frame(out, KIND_FATAL);
    let mut end = message.len().min(FATAL_MAX_BYTES);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    put_str(out, &message[..end]);
    end_frame(out, at);
}

/// Builds `Outcomes` frames in a worker's output buffer: `push` each outcome, `close`
/// when the request ends; a frame is closed by itself once it passes `OUTCOMES_CHUNK`.
pub struct OutcomesEncoder {
    request: u64,
    /// Where the open frame starts in the buffer, and how many outcomes it holds.
    open: Option<(usize, u32)>,
}

impl OutcomesEncoder {
    pub fn new(request: u64) -> OutcomesEncoder {
        OutcomesEncoder {
            request,
            open: None,
        }
    }

    /// Appends the outcome of evaluation `index` (the next one of the request).
    #[inline]
    pub fn push(&mut self, out: &mut Vec<u8>, index: u64, outcome: &Outcome) {
        // The common case: a frame is open, the outcome is a byte.
        if let Some((at, count)) = &mut self.open {
            match outcome {
                Outcome::True => out.push(OUTCOME_TRUE),
                Outcome::False => out.push(OUTCOME_FALSE),
                other => put_outcome(out, other),
            }
            *count += 1;
            if out.len() - *at >= OUTCOMES_CHUNK {
                self.close(out);
            }
            return;
        }
        self.open_and_push(out, index, outcome);
    }

    /// `push` when no frame is open: opens one, from `index` on.
    fn open_and_push(&mut self, out: &mut Vec<u8>, index: u64, outcome: &Outcome) {
        let at = begin_frame(out, KIND_OUTCOMES);
        put_u64(out, self.request);
        put_u64(out, index);
        put_u32(out, 0);
        put_outcome(out, outcome);
        self.open = Some((at, 1));
        if out.len() - at >= OUTCOMES_CHUNK {
            self.close(out);
        }
    }

    /// Closes the open frame, if any.
    pub fn close(&mut self, out: &mut [u8]) {
        if let Some((at, count)) = self.open.take() {
            let count_at = at + 5 + 16;
            out[count_at..count_at + 4].copy_from_slice(&count.to_le_bytes());
            end_frame(out, at);
        }
    }

    /// True when a frame was closed and nothing is open: the buffer may be written out.
    pub fn is_closed(&self) -> bool {
        self.open.is_none()
    }
}

fn put_outcome(out: &mut Vec<u8>, outcome: &Outcome) {
    match outcome {
        Outcome::True => out.push(OUTCOME_TRUE),
        Outcome::False => out.push(OUTCOME_FALSE),
        Outcome::Error(message) => {
            out.push(OUTCOME_ERROR);
            // Evaluations already cap their details; this keeps the frame bound true
            // whatever builds an outcome.
            if message.len() > DETAIL_MAX_BYTES + '…'.len_utf8() {
                put_str(out, &crate::model::detail(message));
            } else {
                put_str(out, message);
            }
        }
        Outcome::Timeout(limit) => {
            out.push(OUTCOME_TIMEOUT);
            put_duration(out, *limit);
        }
    }
}

/// The outcome of tag `tag` that is neither `true` nor `false`.
fn get_detail(c: &mut Cursor<'_>, tag: u8) -> Result<Outcome, ProtocolError> {
    Ok(match tag {
        OUTCOME_ERROR => Outcome::Error(c.str("error message")?.to_string()),
        OUTCOME_TIMEOUT => Outcome::Timeout(c.duration("timeout")?),
        tag => {
            return Err(ProtocolError::UnknownTag {
                what: "outcome",
                tag,
            });
        }
    })
}

/// Decodes a frame a worker sent.
pub fn decode_reply(kind: u8, payload: &[u8]) -> Result<Reply, ProtocolError> {
    let mut c = Cursor { buf: payload };
    let reply = match kind {
        KIND_READY => {
            c.magic()?;
            let version = c.u32("version")?;
            if version != VERSION {
                return Err(ProtocolError::Version {
                    ours: VERSION,
                    theirs: version,
                });
            }
            Reply::Ready {
                version,
                rules: c.u32("rule count")?,
                pid: c.u32("pid")?,
            }
        }
        KIND_OUTCOMES => {
            let request = c.u64("request")?;
            let first = c.u64("first index")?;
            let n = c.count("outcomes", 1)?;
            let mut outcomes = Outcomes {
                codes: Vec::with_capacity(n),
                details: Vec::new(),
            };
            for _ in 0..n {
                match c.u8("outcome tag")? {
                    OUTCOME_TRUE => outcomes.codes.push(CODE_TRUE),
                    OUTCOME_FALSE => outcomes.codes.push(CODE_FALSE),
                    tag => outcomes.push(get_detail(&mut c, tag)?),
                }
            }
            Reply::Outcomes {
                request,
                first,
                outcomes,
            }
        }
        KIND_FATAL => Reply::Fatal(c.str("message")?.to_string()),
        other => return Err(ProtocolError::UnknownKind(other)),
    };
    c.finish("reply")?;
    Ok(reply)
}
