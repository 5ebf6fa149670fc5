//! The worker process of `--executor processes` (`txguard worker --protocol N`, hidden):
//! the event loop that runs inside each worker, beside the supervisor that drives it.
//!
//! It reads a `Setup` frame from stdin, builds the same `Evaluator` the thread executor
//! uses, answers `Ready`, then for each `Batch` evaluates the requested indexes in order
//! and writes `Outcomes` frames to stdout, flushed at the end of the batch (and every
//! `FLUSH_EVERY` during a slow one), never once per evaluation. Before each evaluation it
//! writes (request, index, start) into its progress slot, which is how the supervisor
//! knows the deadline of what is in flight. It exits 0 when stdin ends. It does not
//! outlive its supervisor: the supervisor sets `PR_SET_PDEATHSIG` when it starts it.

use std::fs::File;
use std::io::{self, BufReader, Write};
use std::os::fd::AsFd;

use anyhow::{Context, Result, bail};

use super::progress_slot::{ProgressSlot, SLOT_FD_ENV, SlotWriter, monotonic_ns};
use super::start_clock::StartClock;
use crate::exec::protocol::{self, BatchDecoder, BatchRequest, OutcomesEncoder, Request};
use crate::rules::{self, Evaluator, Options};

/// Test-only: makes workers misbehave on purpose, so tests can prove the supervisor
/// copes. `protocol` (speak another version), `garbage` (write junk instead of outcomes),
/// `exit` (exit 3 after reading the setup), `kill-on-id:ID` (SIGKILL itself as it starts to
/// evaluate the first rule on transaction ID). Never set it outside tests.
pub const FAULT_ENV: &str = "TXGUARD_TEST_WORKER_FAULT";

/// During a batch, outcomes are written out when this long has passed since the last
/// write, so a worker killed in a slow batch loses little finished work.
const FLUSH_EVERY_NS: u64 = 20_000_000;
/// Outcome bytes buffered before they are written out, whatever the time.
const FLUSH_BYTES: usize = 64 << 10;

#[derive(Debug, PartialEq, Eq)]
enum Fault {
    None,
    Protocol,
    Garbage,
    Exit,
    /// The id's `rules::random_key_hash`: all a worker is sent of a row's id.
    KillOnId(u64),
}

impl Fault {
    fn from_env() -> Fault {
        let Ok(value) = std::env::var(FAULT_ENV) else {
            return Fault::None;
        };
        match value.as_str() {
            "protocol" => Fault::Protocol,
            "garbage" => Fault::Garbage,
            "exit" => Fault::Exit,
            other => match other.strip_prefix("kill-on-id:") {
                Some(id) => Fault::KillOnId(rules::random_key_hash(id)),
                None => Fault::None,
            },
        }
    }
}

/// Serves one supervisor over stdin/stdout until stdin ends; `protocol` is the version
/// the supervisor speaks and `max_frame` the largest frame it sends (from the command
/// line). Returns the exit code.
pub fn serve(protocol: u32, max_frame: usize) -> Result<i32> {
    let fault = Fault::from_env();
    let ours = if fault == Fault::Protocol {
        protocol::VERSION + 1
    } else {
        protocol::VERSION
    };
    if protocol != ours {
        eprintln!(
            "txguard worker: protocol version mismatch: the supervisor speaks version {}, this worker \
             speaks version {ours}; supervisor and workers must be the same txguard build",
            protocol
        );
        return Ok(2);
    }
    // stdout carries frames only: keep a private descriptor for them and point fd 1 at
    // stderr, so nothing printed by accident can ever corrupt a frame.
    let out = io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .context("cannot duplicate stdout")?;
    rustix::stdio::dup2_stdout(io::stderr().as_fd()).context("cannot point stdout at stderr")?;
    let input = io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .context("cannot duplicate stdin")?;
    let mut worker = WorkerLoop {
        input: BufReader::with_capacity(256 << 10, File::from(input)),
        out: File::from(out),
        buf: Vec::with_capacity(FLUSH_BYTES * 2),
        payload: Vec::new(),
        max_frame,
        decoder: BatchDecoder::default(),
        slot: match std::env::var(SLOT_FD_ENV) {
            Ok(fd) => {
                let fd = fd
                    .parse()
                    .with_context(|| format!("{SLOT_FD_ENV}={fd:?} is not a descriptor"))?;
                Some(SlotWriter::new(
                    ProgressSlot::open(fd).context("cannot map the progress slot")?,
                ))
            }
            Err(_) => None,
        },
        fault,
    };
    // Evaluations run on a thread with the same deliberate stack as a thread lane
    // (`LANE_STACK_BYTES`), not on the main thread, whose stack is whatever the
    // environment set: a deeply nested value then fails the same way in both executors.
    let serving = std::thread::Builder::new()
        .name("worker".into())
        .stack_size(crate::exec::LANE_STACK_BYTES)
        .spawn(move || match worker.answer_requests() {
            Ok(code) => Ok(code),
            Err(e) => {
                // Tell the supervisor (a run error, with the reason) rather than just die,
                // which it would take for a crash and retry.
                worker.buf.clear();
                protocol::encode_fatal(&mut worker.buf, &format!("{e:#}"));
                let _ = worker.out.write_all(&worker.buf);
                Err(e)
            }
        })
        .context("cannot start the worker's evaluation thread")?;
    serving
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the worker's evaluation thread panicked")))
}

struct WorkerLoop {
    input: BufReader<File>,
    out: File,
    /// Frames not yet written out.
    buf: Vec<u8>,
    payload: Vec<u8>,
    /// The largest frame the supervisor sends.
    max_frame: usize,
    /// Decodes batches into the rows of the batch before.
    decoder: BatchDecoder,
    slot: Option<SlotWriter>,
    fault: Fault,
}

impl WorkerLoop {
    fn read(&mut self) -> Result<Option<Request>> {
        match protocol::read_frame(&mut self.input, self.max_frame, &mut self.payload)
            .context("cannot read a request")?
        {
            None => Ok(None),
            Some(kind) => Ok(Some(
                protocol::decode_request_with(kind, &self.payload, &mut self.decoder)
                    .context("bad request")?,
            )),
        }
    }

    fn write_out(&mut self) -> Result<()> {
        self.out
            .write_all(&self.buf)
            .context("cannot write to the supervisor")?;
        self.buf.clear();
        Ok(())
    }

    fn answer_requests(&mut self) -> Result<i32> {
        let setup = match self.read()? {
            None => return Ok(0),
            Some(Request::Setup(setup)) => setup,
            Some(Request::Batch(_)) => bail!("the first request is a batch, not the setup"),
        };
        if self.fault == Fault::Exit {
            return Ok(3);
        }
        let mut set = rules::file::parse(&setup.rules_text, setup.default_timeout)
            .map_err(|errors| anyhow::anyhow!("rules: {}", rules::one_line(&errors)))?;
        set.memory_limit = Some(usize::try_from(setup.memory_limit).unwrap_or(usize::MAX));
        rules::attach_lists(&mut set, &setup.list_files, |decl| {
            format!("list {:?}", decl.name)
        })
        .map_err(|errors| anyhow::anyhow!("lists: {}", rules::one_line(&errors)))?;
        // A sleep is not cut short here: the supervisor kills a worker blocked past its
        // deadline, which is what `sleep_ms` stands for (an outside call nothing else stops).
        let options = Options {
            cut_sleep: false,
            ..Options::default()
        };
        let mut evaluator = Evaluator::with_options(&set, &setup.columns, setup.seed, options)
            .map_err(|errors| anyhow::anyhow!("rules: {}", rules::one_line(&errors)))?;
        // Kept fields are read as the supervisor's lanes kept them: the same columns, and
        // the same nullable ones, from the same rules.
        let nullable: Vec<bool> = setup
            .columns
            .names
            .iter()
            .map(|name| set.is_nullable(name))
            .collect();
        self.decoder = BatchDecoder::for_columns(&setup.columns, &nullable);
        let rules = evaluator.rule_count() as u32;
        protocol::encode_ready(&mut self.buf, rules, std::process::id());
        self.write_out()?;
        loop {
            let batch = match self.read()? {
                None => return Ok(0),
                Some(Request::Batch(batch)) => batch,
                Some(Request::Setup(_)) => bail!("a second setup"),
            };
            if batch.rules != rules {
                bail!(
                    "a batch for {} rules, but {rules} were compiled",
                    batch.rules
                );
            }
            if let Some((i, row)) = batch
                .rows
                .iter()
                .enumerate()
                .find(|(_, r)| r.values.len() != setup.columns.names.len())
            {
                bail!(
                    "row {i} has {} values for {} columns",
                    row.values.len(),
                    setup.columns.names.len()
                );
            }
            if batch.id_hashes.len() != batch.rows.len() {
                bail!(
                    "{} id hashes for {} rows",
                    batch.id_hashes.len(),
                    batch.rows.len()
                );
            }
            if self.fault == Fault::Garbage {
                self.buf
                    .extend_from_slice(b"GARBAGE: this is not a txguard frame\n");
                self.write_out()?;
            }
            self.evaluate(&mut evaluator, &batch)?;
            self.decoder.recycle(batch);
        }
    }

    fn evaluate(&mut self, evaluator: &mut Evaluator, batch: &BatchRequest) -> Result<()> {
        let rules = u64::from(batch.rules);
        let mut encoder = OutcomesEncoder::new(batch.request);
        let mut last_write = monotonic_ns();
        // Native evaluations share clock readings (`start_clock` says how far).
        let mut clock = StartClock::new();
        for range in &batch.ranges {
            // Row and rule of each index, by counting (not a division per evaluation).
            let (mut row_index, mut rule) = (range.start / rules, (range.start % rules) as usize);
            for index in range.clone() {
                if rule == rules as usize {
                    (row_index, rule) = (row_index + 1, 0);
                }
                let at = (row_index - batch.row_base) as usize;
                let (row, id_hash) = (&batch.rows[at], batch.id_hashes[at]);
                let native_size = evaluator.native_size(rule);
                let mut now = clock.start(native_size, monotonic_ns);
                if !self.buf.is_empty() && now.saturating_sub(last_write) >= FLUSH_EVERY_NS {
                    encoder.close(&mut self.buf);
                    self.write_out()?;
                    // The write may have waited on a full pipe: the evaluation starts now.
                    clock.read_now(native_size, monotonic_ns);
                    now = clock.now();
                    last_write = now;
                }
                if let Some(slot) = &mut self.slot {
                    slot.begin(batch.request, index, now);
                }
                if let Fault::KillOnId(id) = &self.fault
                    && rule == 0
                    && id_hash == *id
                {
                    let _ = rustix::process::kill_process(
                        rustix::process::getpid(),
                        rustix::process::Signal::KILL,
                    );
                }
                let natives = evaluator.native_evaluations();
                let outcome = evaluator.evaluate(rule, row, id_hash);
                clock.ended(evaluator.native_evaluations() > natives);
                if let Some(slot) = &mut self.slot {
                    slot.end(batch.request, index);
                }
                encoder.push(&mut self.buf, index, &outcome);
                rule += 1;
                if encoder.is_closed() && self.buf.len() >= FLUSH_BYTES {
                    self.write_out()?;
                    last_write = now;
                    clock.forget();
                }
            }
        }
        encoder.close(&mut self.buf);
        self.write_out()
    }
}
