//! The `Setup` frame: what a worker needs to rebuild the run's evaluator.

use std::time::Duration;

use crate::model::{ColumnType, Columns};

use super::frame::{Cursor, put_duration, put_str, put_u32, put_u64};
use super::{KIND_SETUP, MAGIC, ProtocolError, VERSION, begin_frame, end_frame};

/// What a worker needs to rebuild the run's evaluator: the first frame it reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    /// The rules file's text, parsed by the worker as the supervisor parsed it.
    pub rules_text: String,
    pub default_timeout: Duration,
    /// Bytes one evaluation may hold: the supervisor's resolved limit (flag or file).
    pub memory_limit: u64,
    pub columns: Columns,
    pub seed: u64,
    /// The bytes of every `[lists.*]` file, in declaration order (since version 3): read
    /// once by the supervisor, parsed by each worker as the supervisor parsed them.
    pub list_files: Vec<Vec<u8>>,
}

pub fn encode_setup(out: &mut Vec<u8>, setup: &Setup) {
    let at = begin_frame(out, KIND_SETUP);
    out.extend_from_slice(&MAGIC);
    put_u32(out, VERSION);
    put_str(out, &setup.rules_text);
    put_duration(out, setup.default_timeout);
    put_u64(out, setup.memory_limit);
    put_u64(out, setup.seed);
    put_u32(out, setup.columns.names.len() as u32);
    for (name, kind) in setup.columns.names.iter().zip(&setup.columns.types) {
        put_str(out, name);
        out.push(match kind {
            ColumnType::Int => 0,
            ColumnType::Float => 1,
            ColumnType::Bool => 2,
            ColumnType::String => 3,
        });
    }
    put_u32(out, setup.list_files.len() as u32);
    for file in &setup.list_files {
        put_u64(out, file.len() as u64);
        out.extend_from_slice(file);
    }
    end_frame(out, at);
}

pub fn decode_setup(payload: &[u8]) -> Result<Setup, ProtocolError> {
    let mut c = Cursor { buf: payload };
    c.magic()?;
    let theirs = c.u32("version")?;
    if theirs != VERSION {
        return Err(ProtocolError::Version {
            ours: VERSION,
            theirs,
        });
    }
    let rules_text = c.str("rules text")?.to_string();
    let default_timeout = c.duration("default timeout")?;
    let memory_limit = c.u64("memory limit")?;
    let seed = c.u64("seed")?;
    let n = c.count("columns", 5)?;
    let mut columns = Columns {
        names: Vec::with_capacity(n),
        types: Vec::with_capacity(n),
    };
    for _ in 0..n {
        columns.names.push(c.str("column name")?.to_string());
        columns.types.push(match c.u8("column type")? {
            0 => ColumnType::Int,
            1 => ColumnType::Float,
            2 => ColumnType::Bool,
            3 => ColumnType::String,
            tag => {
                return Err(ProtocolError::UnknownTag {
                    what: "column type",
                    tag,
                });
            }
        });
    }
    let n = c.count("list files", 8)?;
    let mut list_files = Vec::with_capacity(n);
    for _ in 0..n {
        let len = usize::try_from(c.u64("list file length")?).unwrap_or(usize::MAX);
        list_files.push(c.take(len, "list file")?.to_vec());
    }
    c.finish("setup")?;
    Ok(Setup {
        rules_text,
        default_timeout,
        memory_limit,
        columns,
        seed,
        list_files,
    })
}
