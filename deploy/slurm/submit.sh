#!/usr/bin/env bash
# Usage: submit.sh INPUT RULES OUTPUT N
# Submits N shards as a job array 0..N-1, and the merge to start only if all succeeded.
# To rerun failed tasks only: sbatch --array=3,5 --export=ALL,TXGUARD_SHARD_COUNT=N,...
# shards.sbatch; then submit merge.sbatch again.
set -euo pipefail
[ $# -eq 4 ] || { echo "usage: $0 INPUT RULES OUTPUT N" >&2; exit 2; }
input=$(realpath "$1") rules=$(realpath "$2") output=$(realpath -m "$3") n=$4
here=$(dirname "$(realpath "$0")")
vars="ALL,INPUT=$input,RULES=$rules,OUTPUT=$output,TXGUARD_SHARD_COUNT=$n"
array=$(sbatch --parsable --array="0-$((n - 1))" --export="$vars" "$here/shards.sbatch")
array=${array%%;*}
merge=$(sbatch --parsable --dependency="afterok:$array" --kill-on-invalid-dep=yes \
    --export="$vars" "$here/merge.sbatch")
echo "shards: job $array (array 0-$((n - 1))), merge: job ${merge%%;*} (afterok)"
