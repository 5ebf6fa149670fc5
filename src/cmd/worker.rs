//! `txguard worker --protocol N` (hidden): becomes one worker process of
//! `--executor processes`; the loop itself is engine code, in `exec::processes`.

use anyhow::Result;

use crate::cli::WorkerArgs;
use crate::exec::processes::worker_loop;

pub fn run(args: &WorkerArgs) -> Result<i32> {
    worker_loop::serve(args.protocol, args.max_frame)
}
