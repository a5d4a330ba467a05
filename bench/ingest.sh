#!/usr/bin/env bash
# Ingest API benchmark (run by hand, not in CI). `lakepipe serve` (release build) takes the seed
# streams' events — one generated hour of the five streams at --scale 20, cut into 500-record
# NDJSON bodies — from 16 concurrent connections (curl's parallel transfers, a native client
# that leaves the cores to the server) for DURATION seconds (default 60), into a local lake and
# into Garage, and prints:
#   - accepted events/s and MB/s, acknowledgement latency p50 / p99, the server's peak RSS;
#   - the ceiling: the store's own write rate for the very objects the server wrote (local:
#     16 threads of write + fsync + link; Garage: curl's parallel PUTs), and the ratio;
#   - `lakepipe produce` (generator and client on the same 2 cores) flat out, and paced at half
#     the measured rate: latency below saturation (target p99 <= flush window + 0.5 s);
#   - overload: 256 connections of 5000-record bodies against the 64 MiB in-flight budget:
#     the 503s that replace growth and the peak RSS (target <= 256 MiB).
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
PY="$VENV/bin/python"
PEERS="$PY $ROOT/bench/ingest_peers.py"
export AWS_EC2_METADATA_DISABLED=true
field() { "$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))$2)" "$1"; }

# The request bodies.
for s in iot_sensors api_logs social_media ecommerce_clickstream financial_transactions; do
    "$BIN" --lake "$S3_TMP/gen" --log warn dags backfill "2-${s}_realtime_ingest" \
        --from 2026-02-01T00:00:00Z --to 2026-02-01T00:55:00Z --scale 20 >/dev/null 2>&1
done
echo "bodies: $($PEERS bodies "$S3_TMP/gen" "$S3_TMP/b500" 500) of 500 records, $($PEERS bodies "$S3_TMP/gen" "$S3_TMP/b5000" 5000) of 5000"

# serve LAKE: starts `lakepipe serve` on a free port; sets SERVER_PID and URL.
serve() {
    local log=$S3_TMP/serve.log
    "$BIN" --lake "$1" --log warn serve --no-scheduler --listen 127.0.0.1:0 2>"$log" &
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
produce() { "$BIN" --log warn produce all --url "$URL" --connections 16 --batch 500 "$@" --json 2>/dev/null; }

# run NAME LAKE: flat out with curl, produce flat out and paced, overload, on one lake.
run() {
    local name=$1 lake=$2 out=$S3_TMP/$1
    serve "$lake"
    $PEERS post "$URL" "$S3_TMP/b500" 16 "$DURATION" >"$out.flat.json"
    produce --duration 20 >"$out.produce.json"
    local rate
    rate=$(field "$out.flat.json" "['requests'] * 500 / $(field "$out.flat.json" "['seconds']")")
    produce --duration 20 --rate "$("$PY" -c "print(round($rate / 2))")" >"$out.paced.json"
    RSS_FLAT=$($PEERS rss "$SERVER_PID")
    stop
    serve "$lake"
    $PEERS post "$URL" "$S3_TMP/b5000" 256 20 >"$out.over.json"
    RSS_OVER=$($PEERS rss "$SERVER_PID")
    stop
    "$PY" - "$name" "$out" "$RSS_FLAT" "$RSS_OVER" <<'PY'
import json, sys
name, out, rss_flat, rss_over = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
f = json.load(open(out + ".flat.json"))
p = json.load(open(out + ".produce.json"))
q = json.load(open(out + ".paced.json"))
o = json.load(open(out + ".over.json"))
ev = f["requests"] * 500 / f["seconds"]
print(f"{name:<7} curl, 16 connections: {ev:,.0f} events/s, {f['mb_per_s']:.1f} MB/s, ack p50 {f['p50_ms']:.0f} ms, "
      f"p99 {f['p99_ms']:.0f} ms, answers {f['codes']}, peak RSS {rss_flat:.0f} MiB")
print(f"{name:<7} produce, 16 connections: {p['events_per_s']:,.0f} events/s, {p['mb_per_s']:.1f} MB/s, "
      f"ack p50 {p['latency_p50_ms']:.0f} ms, p99 {p['latency_p99_ms']:.0f} ms (generator on the same cores)")
print(f"{name:<7} produce paced at half: {q['events_per_s']:,.0f} events/s, ack p50 {q['latency_p50_ms']:.0f} ms, "
      f"p99 {q['latency_p99_ms']:.0f} ms (target <= 1500 ms)")
print(f"{name:<7} overload, 256 connections of 5000 records: answers {o['codes']}, peak RSS {rss_over:.0f} MiB (target <= 256)")
PY
}

# Local lake.
LOCAL=$S3_TMP/lake
run local "$LOCAL"
read -r bytes secs < <($PEERS local-ceiling "$LOCAL" "$S3_TMP/ceiling" 16)
objects=$(find "$LOCAL/realtime" -type f ! -name '*#*' | wc -l)
"$PY" - "$S3_TMP/local.flat.json" "$bytes" "$secs" "$objects" <<'PY'
import json, sys
f = json.load(open(sys.argv[1])); b, s, n = int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
ev = f["requests"] * 500 / f["seconds"]
print(f"local   objects the server wrote: {n}, {b // n:,} bytes on average")
print(f"local   ceiling (16 threads write+fsync+link of those objects): {b / 1e6 / s:.1f} MB/s; "
      f"lakepipe / ceiling = {f['mb_per_s'] / (b / 1e6 / s):.2f}x")
print(f"local   lakepipe events/s / target 100000 = {ev / 100000:.2f}x")
PY

# Garage.
export AWS_ENDPOINT_URL=$LAKEPIPE_TEST_GARAGE AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=$LAKEPIPE_TEST_GARAGE_KEY_ID AWS_SECRET_ACCESS_KEY=$LAKEPIPE_TEST_GARAGE_SECRET
"$PY" bench/landing_peers.py make-buckets lp-bench-ingest
run garage s3://lp-bench-ingest
read -r bytes secs < <($PEERS s3-ceiling "$LOCAL" lp-bench-ingest-ceiling)
"$PY" -c "
import json
f = json.load(open('$S3_TMP/garage.flat.json')); c = $bytes / 1e6 / $secs
print(f'garage  ceiling (curl parallel PUTs of the local run objects): {c:.1f} MB/s; lakepipe / ceiling = {f[\"mb_per_s\"] / c:.2f}x (target >= 0.8x)')"
