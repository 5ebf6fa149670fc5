"""txguard on Spark, the robust way: N shards of one input as N Spark tasks, then merge.

Each task runs `txguard run INPUT --shard I/N -o OUTPUT`: txguard finds its exact byte
range (a quoted newline never starts a record), so the merged output is byte-identical
to a single run. INPUT, RULES and OUTPUT must be paths every executor sees (a shared
file system); txguard must be on every executor's PATH (or give --txguard).

    spark-submit deploy/spark/txguard_shards.py --input /shared/tx.csv \
        --rules /shared/rules.toml --output /shared/out/results.csv --shards 64

A failed task is retried by Spark and its rerun replaces its part; the merge runs on the
driver once every task succeeded, and refuses anything that is not one whole run.
"""

import argparse
import subprocess
import sys
import time

from pyspark.sql import SparkSession

# Exit code of a txguard run locked out by another writing the same part (a speculative
# copy of the task): wait for it, then run again (the rerun replaces the part identically).
LOCKED = 75


def shard_runner(txguard, input_path, rules, output, count, run_args):
    def run(index):
        command = [txguard, "run", input_path, "--rules", rules, "-o", output,
                   "--shard", f"{index}/{count}", "-q", "--progress", "never", *run_args]
        for _ in range(3600):
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != LOCKED:
                break
            time.sleep(1)
        if done.returncode != 0:
            raise RuntimeError(
                f"txguard shard {index}/{count} exited {done.returncode}: {done.stderr.strip()}")
        return index
    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--rules", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--shards", type=int, required=True, help="N, one Spark task each")
    parser.add_argument("--txguard", default="txguard", help="the binary on the executors")
    parser.add_argument("--master", help="e.g. local[2] (default: spark-submit's)")
    parser.add_argument("--run-arg", action="append", default=[],
                        help="one more flag for `txguard run` (repeat): --run-arg=--seed=7")
    parser.add_argument("--merge-arg", action="append", default=[],
                        help="one more flag for `txguard merge`: --merge-arg=--fail-on=error")
    args = parser.parse_args(argv)

    builder = SparkSession.builder.appName("txguard-shards")
    if args.master:
        builder = builder.master(args.master)
    spark = builder.getOrCreate()
    try:
        run = shard_runner(args.txguard, args.input, args.rules, args.output, args.shards,
                           args.run_arg)
        # One partition per shard: each index is one task.
        done = (spark.sparkContext.parallelize(range(args.shards), args.shards)
                .map(run).collect())
        assert sorted(done) == list(range(args.shards))
    finally:
        spark.stop()
    merged = subprocess.run([args.txguard, "merge", args.output, *args.merge_arg])
    return merged.returncode


if __name__ == "__main__":
    sys.exit(main())
