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
run for inputs that pass the check. RULES must be readable on every executor (a shared
path, or a local file: it is shipped with SparkContext.addFile).
"""

import argparse
import os
import shlex
import sys
from itertools import islice

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
        header = lines.first().lstrip("\ufeff")
        sc.addFile(os.path.abspath(args.rules))
        rules_name = os.path.basename(args.rules)
        # Partition 0 starts with the header row: drop it there only.
        body = lines.mapPartitionsWithIndex(
            lambda i, part: islice(part, 1, None) if i == 0 else part)
        command = " ".join(shlex.quote(word) for word in [
            args.txguard, "run", "-", "--rules", "RULES", "--columns", header,
            "--no-output-header", "-q", "--progress", "never", *args.run_arg])

        def run_partition(part):
            import subprocess
            rules = SparkFiles.get(rules_name)
            words = shlex.split(command)
            words[words.index("RULES")] = rules
            data = "".join(line + "\n" for line in part).encode()
            done = subprocess.run(words, input=data, capture_output=True)
            if done.returncode != 0:
                raise RuntimeError(f"txguard exited {done.returncode}: "
                                   f"{done.stderr.decode(errors='replace').strip()}")
            yield done.stdout

        chunks = body.mapPartitions(run_partition)
        tmp = args.output + ".tmp"
        with open(tmp, "wb") as out:
            out.write((RESULTS_HEADER + "\n").encode())
            for chunk in chunks.toLocalIterator():
                out.write(chunk)
        os.replace(tmp, args.output)
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
