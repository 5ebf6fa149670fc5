"""txguard on Spark, the convenient way: pipe the lines of each partition through txguard.

    spark-submit deploy/spark/txguard_pipe.py --input tx.csv --rules rules.toml \
        --output results.csv

Spark's textFile cuts the input at line breaks, not at record boundaries: a quoted field
holding a line break would be cut in two, and txguard would see two broken records
(extra or flipped results, silently under --bad-rows skip). So this script first checks
that no line has an odd number of `"` (a line that does is the sign of a quoted line
break), and refuses the input if one has; use txguard_shards.py for such inputs. Each
partition runs `txguard run - --columns HEADER --no-output-header`; the results are
written on the driver in partition order, one header first: the same bytes as a single
run for inputs that pass the check. Line numbers in errors are the partition's, not the
file's; under --run-arg=--bad-rows=skip the rejects go to the executors' logs. RULES must be readable on every executor (a shared
path, or a local file: it is shipped with SparkContext.addFile).
"""

import argparse
import os
import shlex
import sys

from pyspark import SparkFiles
from pyspark.sql import SparkSession

RESULTS_HEADER = "transaction_id,rule_id,result,detail"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--rules", required=True)
    parser.add_argument("--output", required=True, help="results CSV, written on the driver")
    parser.add_argument("--partitions", type=int, default=None, help="minimum partitions")
    parser.add_argument("--txguard", default="txguard", help="the binary on the executors")
    parser.add_argument("--master", help="e.g. local[2] (default: spark-submit's)")
    parser.add_argument("--run-arg", action="append", default=[],
                        help="one more flag for `txguard run` (repeat): --run-arg=--seed=7")
    parser.add_argument("--no-check", action="store_true",
                        help="skip the quoted-line-break check (only if you know)")
    args = parser.parse_args(argv)

    builder = SparkSession.builder.appName("txguard-pipe")
    if args.master:
        builder = builder.master(args.master)
    spark = builder.getOrCreate()
    sc = spark.sparkContext
    try:
        lines = sc.textFile(args.input, args.partitions)
        if not args.no_check:
            odd = lines.filter(lambda line: line.count('"') % 2 == 1).take(1)
            if odd:
                print(f"txguard_pipe: {args.input} has a line with an odd number of '\"' "
                      f"(a quoted line break?): {odd[0][:200]!r}; line-based chunking would "
                      "cut its record in two. Use txguard_shards.py instead.", file=sys.stderr)
                return 1
        # The header is the first line that is not blank (txguard skips blank lines
        # before it too), without a byte order mark.
        header = lines.map(lambda line: line.lstrip("\ufeff")).filter(bool).first()
        sc.addFile(os.path.abspath(args.rules))
        rules_name = os.path.basename(args.rules)
        # Partition 0 starts with the header row (after any blank lines): drop them
        # there only.
        def without_header(index, part):
            if index != 0:
                return part
            part = iter(part)
            for line in part:
                if line.lstrip("\ufeff"):
                    break
            return part

        body = lines.mapPartitionsWithIndex(without_header)
        command = " ".join(shlex.quote(word) for word in [
            args.txguard, "run", "-", "--rules", "RULES", "--columns", header,
            "--no-output-header", "-q", "--progress", "never", *args.run_arg])

        def run_partition(part):
            # Streams: the partition's lines are fed on a thread while the results are
            # read, so neither is held whole in memory; stderr goes to a file (under
            # --bad-rows skip the rejects are written there) so it cannot block txguard.
            import subprocess
            import tempfile
            import threading
            words = shlex.split(command)
            words[words.index("RULES")] = SparkFiles.get(rules_name)
            with tempfile.TemporaryFile() as err:
                proc = subprocess.Popen(words, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=err)

                def feed():
                    try:
                        for line in part:
                            proc.stdin.write(line.encode() + b"\n")
                    except BrokenPipeError:
                        pass  # txguard stopped early: its exit code says why
                    finally:
                        try:
                            proc.stdin.close()
                        except BrokenPipeError:
                            pass

                feeder = threading.Thread(target=feed, daemon=True)
                feeder.start()
                for block in iter(lambda: proc.stdout.read(1 << 20), b""):
                    yield block
                feeder.join()
                err.seek(0)
                message = err.read().decode(errors="replace").strip()
                if proc.wait() != 0:
                    raise RuntimeError(f"txguard exited {proc.returncode}: {message}")
                if message:
                    # Rejects of --bad-rows skip (line,reason,raw): into the executor's log.
                    print(message, file=sys.stderr)

        chunks = body.mapPartitions(run_partition)
        # Written beside the output and renamed into place: a failed job leaves any
        # earlier output as it was.
        tmp = args.output + ".tmp"
        try:
            with open(tmp, "wb") as out:
                out.write((RESULTS_HEADER + "\n").encode())
                for chunk in chunks.toLocalIterator():
                    out.write(chunk)
            os.replace(tmp, args.output)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
