//! A worker's stdout as its supervisor reads it: frames become `Message`s, read by the
//! supervisor's own thread once `poll` says there is something to read, so every wait for
//! a worker has a deadline and no thread stands between the two processes (a hop through
//! a reader thread was a wake-up per batch).

use std::io::{self, Read};
use std::process::ChildStdout;
use std::time::{Duration, Instant};

use crate::exec::protocol::{self, ProtocolError, Reply};

/// Room a read of stdout gets at least: a batch's outcomes fit in one read, and a worker's
/// buffer is that small unless a frame needs more (a thousand workers hold 16 MiB).
const READ_CHUNK: usize = 16 << 10;

/// What `Worker::recv_timeout` read on a worker's stdout.
#[derive(Debug)]
pub enum Message {
    Reply(Reply),
    /// Bytes that do not follow the protocol (fatal to the run).
    Bad(String),
    /// The stream ended (perhaps inside a frame): the worker exited or died.
    Eof,
}

/// A worker's stdout, read by its supervisor.
pub struct ReplyReader {
    stdout: ChildStdout,
    /// Bytes read and not yet made messages: `buf[start..end]` (the buffer is only grown,
    /// never zeroed again).
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The stream ended (or broke): what is left is the last message.
    ended: bool,
    /// A last message (`Bad` or `Eof`) was given: every later call gives `Eof`.
    done: bool,
}

impl ReplyReader {
    pub fn new(stdout: ChildStdout) -> ReplyReader {
        ReplyReader {
            stdout,
            buf: Vec::new(),
            start: 0,
            end: 0,
            ended: false,
            done: false,
        }
    }

    /// The next message, or `None` if none came within `wait`. After the end of the
    /// stream or a bad frame, every call gives `Eof`.
    pub fn recv_timeout(&mut self, wait: Duration) -> Option<Message> {
        let deadline = Instant::now().checked_add(wait);
        loop {
            if self.done {
                return Some(Message::Eof);
            }
            if let Some(message) = self.next_buffered() {
                if !matches!(message, Message::Reply(_)) {
                    self.done = true;
                }
                return Some(message);
            }
            if self.ended {
                // A frame cut short by the end is the end.
                self.done = true;
                return Some(Message::Eof);
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            match self.wait_readable(left) {
                Ok(true) => self.fill(),
                Ok(false) => return None,
                Err(e) => {
                    self.done = true;
                    return Some(Message::Bad(format!("read error: {e}")));
                }
            }
        }
    }

    /// The next whole frame already read, as a message; `None` if there is none yet.
    fn next_buffered(&mut self) -> Option<Message> {
        let bytes = &self.buf[self.start..self.end];
        let header = bytes.get(..5)?;
        let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if length == 0 {
            return Some(Message::Bad(ProtocolError::Empty.to_string()));
        }
        if length > protocol::MAX_FROM_WORKER {
            return Some(Message::Bad(
                ProtocolError::Oversize {
                    length,
                    max: protocol::MAX_FROM_WORKER,
                }
                .to_string(),
            ));
        }
        let payload = bytes.get(5..4 + length)?;
        let message = match protocol::decode_reply(header[4], payload) {
            Ok(reply) => Message::Reply(reply),
            Err(e) => Message::Bad(e.to_string()),
        };
        self.start += 4 + length;
        Some(message)
    }

    /// Whether stdout has something to read (or has ended) within `wait` (`None`: no
    /// limit).
    fn wait_readable(&self, wait: Option<Duration>) -> io::Result<bool> {
        let timeout = wait.map(|wait| {
            rustix::event::Timespec::try_from(wait).unwrap_or(rustix::event::Timespec {
                tv_sec: i64::MAX,
                tv_nsec: 0,
            })
        });
        let mut fds = [rustix::event::PollFd::new(
            &self.stdout,
            rustix::event::PollFlags::IN,
        )];
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(n) => Ok(n > 0),
            Err(rustix::io::Errno::INTR) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads what stdout has (it is readable: this does not block).
    fn fill(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < READ_CHUNK {
            // Grown as a frame arrives: at most `MAX_FROM_WORKER` and a chunk.
            self.buf.resize(self.end + READ_CHUNK, 0);
        }
        let read = loop {
            match self.stdout.read(&mut self.buf[self.end..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other,
            }
        };
        match read {
            Ok(0) | Err(_) => self.ended = true,
            Ok(n) => self.end += n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};
    use std::thread;

    #[test]
    fn replies_arrive_whole_however_the_pipe_cuts_them() {
        use crate::exec::protocol::OutcomesEncoder;
        use crate::model::Outcome;
        // `cat` passes the bytes on in whatever pieces the pipes make of them.
        let mut cat = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = cat.stdin.take().unwrap();
        let mut output = ReplyReader::new(cat.stdout.take().unwrap());
        let mut bytes = Vec::new();
        protocol::encode_ready(&mut bytes, 3, 7);
        let mut encoder = OutcomesEncoder::new(1);
        let outcomes: Vec<Outcome> = (0..100_000)
            .map(|i| match i % 1000 {
                0 => Outcome::Error(format!("boom {i}")),
                k if k % 2 == 0 => Outcome::True,
                _ => Outcome::False,
            })
            .collect();
        for (i, outcome) in outcomes.iter().enumerate() {
            encoder.push(&mut bytes, i as u64, outcome);
        }
        encoder.close(&mut bytes);
        // Then a frame the stream ends inside.
        bytes.extend_from_slice(&[9, 0, 0, 0, protocol::KIND_OUTCOMES, 1]);
        let writer = thread::spawn(move || {
            // Pieces of every size up to 97 bytes, then the rest at once.
            let mut at = 0;
            for size in (1..=97).cycle().take(500) {
                let end = (at + size).min(bytes.len());
                stdin.write_all(&bytes[at..end]).unwrap();
                stdin.flush().unwrap();
                at = end;
            }
            stdin.write_all(&bytes[at..]).unwrap();
        });
        let bound = Duration::from_secs(60);
        assert!(matches!(
            output.recv_timeout(bound),
            Some(Message::Reply(Reply::Ready {
                rules: 3,
                pid: 7,
                ..
            }))
        ));
        let mut back = Vec::new();
        let mut frames = 0;
        loop {
            match output.recv_timeout(bound) {
                Some(Message::Reply(Reply::Outcomes {
                    request: 1,
                    first,
                    outcomes,
                })) => {
                    assert_eq!(first, back.len() as u64);
                    back.extend(outcomes.into_vec());
                    frames += 1;
                }
                Some(Message::Eof) => break,
                other => panic!("{other:?}"),
            }
        }
        writer.join().unwrap();
        assert_eq!(back, outcomes);
        assert!(frames > 5, "{frames} frames");
        assert!(matches!(output.recv_timeout(bound), Some(Message::Eof)));
        cat.wait().unwrap();
        // Nothing came within the wait: `None`, not a message.
        let mut sleeper = Command::new("sleep")
            .arg("30")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut quiet = ReplyReader::new(sleeper.stdout.take().unwrap());
        assert!(quiet.recv_timeout(Duration::from_millis(20)).is_none());
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
        assert!(matches!(quiet.recv_timeout(bound), Some(Message::Eof)));
    }
}
