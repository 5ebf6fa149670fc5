//! The reader stage, on its own thread: it only frames. Chunks of whole records go to the
//! lanes as soon as the byte budget lets them; splitting and typing happen on the lanes.

use std::io::Read;
use std::sync::mpsc::{Receiver, Sender};

use anyhow::{Context, Result};

use std::sync::Arc;

use crate::framer::{Chunk, Framer};
use crate::pipeline::budget::{self, ByteBudget};
use crate::pipeline::windows::{Framed, WindowStage};
use crate::progress::Progress;

/// Sends `first`, then every chunk the framer cuts; returns the bytes read, and the
/// windows' stats. Chunks the lanes are done with come back on `recycled`, their buffers
/// reused. With `windows`, each chunk goes with its records' window values, computed here
/// in input order (the windows stage), before any lane sees it.
#[allow(clippy::too_many_arguments)]
pub fn read_chunks(
    mut framer: Framer<Box<dyn Read + Send>>,
    windows: &mut Option<WindowStage>,
    first: Chunk,
    name: &str,
    budget: &ByteBudget,
    chunks: &Sender<Framed>,
    recycled: &Receiver<Chunk>,
    progress: &Progress,
) -> Result<u64> {
    // The header is the first record of the first chunk.
    let mut skip = 1;
    let mut next = Some(first);
    loop {
        let chunk = match next.take() {
            Some(chunk) => chunk,
            None => {
                for chunk in recycled.try_iter() {
                    framer.recycle(chunk);
                }
                match framer
                    .next_chunk()
                    .with_context(|| format!("cannot read {name}"))?
                {
                    Some(chunk) => chunk,
                    None => break,
                }
            }
        };
        if !budget.acquire(budget::cost(&chunk)) {
            break;
        }
        progress.set_position(framer.offset_read());
        let values = windows
            .as_mut()
            .map(|stage| Arc::new(stage.process(&chunk, std::mem::take(&mut skip))));
        skip = 0;
        let framed = Framed {
            chunk,
            windows: values,
        };
        if chunks.send(framed).is_err() {
            break;
        }
    }
    Ok(framer.offset_read())
}
