#!/usr/bin/env bash
# Ingest API benchmark (run by hand, not in CI). `lakepipe serve` (release build) takes
# `lakepipe produce all` — 16 concurrent connections, 500-record requests of the five seed
# streams — for DURATION seconds (default 60), into a local lake and into Garage, and prints:
#   - accepted events/s and MB/s, acknowledgement latency p50 / p99, the server's peak RSS;
#   - the ceiling: the store's own write rate for the very objects the server wrote (local:
#     16 threads of write + fsync + link; Garage: curl's parallel PUTs), and the ratio;
#   - latency below saturation: the same at half the measured rate (target p99 <= flush
#     window + 0.5 s);
#   - overload: 256 connections of 5000-record requests against a 64 MiB in-flight budget:
#     peak RSS (target <= 256 MiB) and the 503s that replace growth.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${LAKEPIPE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lakepipe}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
GARAGE_VERSION=2.5.0
DURATION=${DURATION:-60}
cd "$ROOT"
source scripts/s3-servers.sh
ensure_venv
ensure_garage
cargo build --release --quiet
BIN=$CARGO_TARGET_DIR/release/lakepipe
start_garage
SERVER_PID=
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; stop_s3_servers; }
trap cleanup EXIT INT TERM
PEERS="$VENV/bin/python $ROOT/bench/ingest_peers.py"
export AWS_EC2_METADATA_DISABLED=true
json() { "$VENV/bin/python" -c "import json,sys; d=json.load(open(sys.argv[1])); print(d$2)" "$1"; }

# serve LAKE: starts `lakepipe serve` on a free port; sets SERVER_PID and URL.
serve() {
    local log=$S3_TMP/serve.log
    "$BIN" --lake "$1" --log warn serve --listen 127.0.0.1:0 2>"$log" &
    SERVER_PID=$!
    for _ in $(seq 1 600); do
        URL=$(sed -n 's#^lakepipe ui: \(http://[^/]*\)/.*#\1#p' "$log" | head -1)
        [ -n "$URL" ] && return 0
        sleep 0.1
    done
    cat "$log" >&2
    exit 1
}
stop() { kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=; }
produce() { "$BIN" --log warn produce all --url "$URL" "$@" --json; }

# run NAME LAKE: the flat-out run, the paced run and the overload run on one lake.
run() {
    local name=$1 lake=$2 out=$S3_TMP/$1
    serve "$lake"
    produce --connections 16 --batch 500 --duration "$DURATION" >"$out.flat.json"
    local rate
    rate=$(json "$out.flat.json" "['events_per_s']")
    produce --connections 16 --batch 500 --duration 20 --rate "$(python3 -c "print(max(1000, $rate / 2))")" >"$out.paced.json"
    RSS_FLAT=$($PEERS rss "$SERVER_PID")
    stop
    serve "$lake"
    produce --connections 256 --batch 5000 --duration 20 >"$out.over.json" || true
    RSS_OVER=$($PEERS rss "$SERVER_PID")
    stop
    printf '%-7s flat out: %s\n' "$name" "$("$VENV/bin/python" - "$out.flat.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"{d['events_per_s']:.0f} events/s, {d['mb_per_s']:.1f} MB/s, ack p50 {d['latency_p50_ms']:.0f} ms, p99 {d['latency_p99_ms']:.0f} ms, answers {d['statuses']}")
PY
)"
    printf '%-7s paced at half: %s\n' "$name" "$("$VENV/bin/python" - "$out.paced.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"{d['events_per_s']:.0f} events/s, ack p50 {d['latency_p50_ms']:.0f} ms, p99 {d['latency_p99_ms']:.0f} ms (target <= 1500 ms)")
PY
)"
    printf '%-7s overload (256 x 5000-record requests): %s; peak RSS %.0f MiB (target <= 256), flat-out run %.0f MiB\n' \
        "$name" "$("$VENV/bin/python" -c "import json,sys; d=json.load(open(sys.argv[1])); print(f\"answers {d['statuses']}\")" "$out.over.json")" "$RSS_OVER" "$RSS_FLAT"
}

# Local lake.
LOCAL=$S3_TMP/lake
run local "$LOCAL"
read -r bytes secs < <($PEERS local-ceiling "$LOCAL" "$S3_TMP/ceiling" 16)
lp=$(json "$S3_TMP/local.flat.json" "['mb_per_s']")
python3 -c "print(f'local   ceiling (16 threads write+fsync+link of the same objects): {$bytes/1e6/$secs:.1f} MB/s; lakepipe / ceiling = {$lp/($bytes/1e6/$secs):.2f}x')"
python3 -c "print(f'local   lakepipe events/s / target 100000 = {$(json "$S3_TMP/local.flat.json" "['events_per_s']")/100000:.2f}x')"

# Garage.
export AWS_ENDPOINT_URL=$LAKEPIPE_TEST_GARAGE AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=$LAKEPIPE_TEST_GARAGE_KEY_ID AWS_SECRET_ACCESS_KEY=$LAKEPIPE_TEST_GARAGE_SECRET
"$VENV/bin/python" bench/landing_peers.py make-buckets lp-bench-ingest
run garage s3://lp-bench-ingest
read -r bytes secs < <($PEERS s3-ceiling "$LOCAL" lp-bench-ingest-ceiling)
lp=$(json "$S3_TMP/garage.flat.json" "['mb_per_s']")
python3 -c "print(f'garage  ceiling (curl parallel PUTs of the local run\'s objects): {$bytes/1e6/$secs:.1f} MB/s; lakepipe / ceiling = {$lp/($bytes/1e6/$secs):.2f}x (target >= 0.8x)')"
