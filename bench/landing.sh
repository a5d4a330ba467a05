#!/usr/bin/env bash
# Landing benchmark (run by hand, not in CI): lands the same hour of landing files (2040
# objects) into one Garage server three ways and prints the rates and ratios:
#   1. lakepipe stream all --from … --to …   (release build)
#   2. the original system's style: a sequential boto3 put_object loop
#   3. the server's ceiling: bare concurrent PUTs of the same objects — curl's native parallel
#      transfers (64 at once) and 64 boto3 threads; the faster of the two is the ceiling
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${LAKEPIPE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lakepipe}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
GARAGE_VERSION=2.5.0
cd "$ROOT"
source scripts/s3-servers.sh
ensure_venv
ensure_garage
cargo build --release --quiet
BIN=$CARGO_TARGET_DIR/release/lakepipe
start_garage
trap stop_s3_servers EXIT INT TERM

FROM=${FROM:-2026-02-01T00:00:00Z}
TO=${TO:-2026-02-01T01:00:00Z}
export AWS_ENDPOINT_URL=$LAKEPIPE_TEST_GARAGE AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=$LAKEPIPE_TEST_GARAGE_KEY_ID AWS_SECRET_ACCESS_KEY=$LAKEPIPE_TEST_GARAGE_SECRET
export AWS_EC2_METADATA_DISABLED=true

# The objects the peers upload: the very files lakepipe writes, landed once on local disk.
"$BIN" --lake "$S3_TMP/local" stream all --from "$FROM" --to "$TO" >/dev/null 2>&1

PEERS="$VENV/bin/python $ROOT/bench/landing_peers.py"
N=$(find "$S3_TMP/local/data" -type f | wc -l)
ROUNDS=${ROUNDS:-3}
lakepipe_runs=() curl_runs=()
# lakepipe and the native ceiling alternate, each into a fresh bucket, ROUNDS times (medians).
for r in $(seq 1 "$ROUNDS"); do
    $PEERS make-buckets "lp-bench-lakepipe-$r"
    start=$(date +%s.%N)
    "$BIN" --lake "s3://lp-bench-lakepipe-$r" stream all --from "$FROM" --to "$TO" >"$S3_TMP/lakepipe.out" \
        2>"$S3_TMP/lakepipe.err" || { cat "$S3_TMP/lakepipe.err" >&2; exit 1; }
    end=$(date +%s.%N)
    lakepipe_runs+=("$(python3 -c "print($end - $start)")")
    curl_runs+=("$($PEERS curl "$S3_TMP/local" "lp-bench-curl-$r")")
    echo "round $r: lakepipe ${lakepipe_runs[-1]} s, curl ${curl_runs[-1]} s" >&2
done
seq_s=$($PEERS seq "$S3_TMP/local" lp-bench-seq)
threads_s=$($PEERS threads "$S3_TMP/local" lp-bench-threads)
join() { local IFS=,; echo "$*"; }
$PEERS report "$N" "lakepipe=$(join "${lakepipe_runs[@]}")" "seq=$seq_s" \
    "curl=$(join "${curl_runs[@]}")" "threads=$threads_s"
