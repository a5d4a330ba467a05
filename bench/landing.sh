#!/usr/bin/env bash
# Landing benchmark (run by hand, not in CI): lands the same hour of landing files (2040
# objects) into one Garage server three ways and prints the rates and ratios:
#   1. lakepipe stream all --from … --to …   (release build)
#   2. the original system's style: a sequential boto3 put_object loop
#   3. the server's ceiling: a bare concurrent boto3 PUT loop of the same objects (64 threads)
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
"$BIN" --lake "$S3_TMP/local" stream all --from "$FROM" --to "$TO" >/dev/null

"$VENV/bin/python" "$ROOT/bench/landing_peers.py" make-buckets lp-bench-lakepipe lp-bench-seq lp-bench-bare

start=$(date +%s.%N)
"$BIN" --lake s3://lp-bench-lakepipe stream all --from "$FROM" --to "$TO" >"$S3_TMP/lakepipe.out"
end=$(date +%s.%N)
lakepipe_s=$(python3 -c "print($end - $start)")

"$VENV/bin/python" "$ROOT/bench/landing_peers.py" run "$S3_TMP/local" lp-bench-seq lp-bench-bare "$lakepipe_s"
