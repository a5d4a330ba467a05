#!/usr/bin/env bash
# Freshness benchmark (run by hand, not in CI): `lakepipe serve` (release build) on a fresh local
# lake; a producer posts the seed streams' events (templates from the built-in generators, ids
# made unique, event time = now) at RATE events/s (default 2000) for DURATION seconds (default 180); a
# poller reads /api/dashboards every 100 ms. Prints p50 / p95 / p99 of
#   - POST acknowledged -> first dashboard answer whose watermark includes the request's objects
#     (the unified table's newest object is one of them, or landed in a later second), and
#   - event time -> visible,
# against the targets (p95 <= 5 s, p99 <= 10 s) beside the seed system's 15 minutes and
# Firehose's 300 s default buffer; and the peak RSS of `serve`.
#
#   bench/freshness.sh                  2000 events/s for 3 minutes
#   RATE=500 DURATION=30 bench/freshness.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${LAKEPIPE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lakepipe}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
RATE=${RATE:-2000}
DURATION=${DURATION:-180}
cd "$ROOT"
cargo build --release --quiet
BIN=$CARGO_TARGET_DIR/release/lakepipe
TMP=$(mktemp -d "${TMPDIR:-/tmp}/lakepipe-bench-fresh.XXXXXX")
SERVER_PID=
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT INT TERM

# Template events: one generated 5-minute slot of each seed stream.
for s in iot_sensors api_logs social_media ecommerce_clickstream financial_transactions; do
    "$BIN" --lake "$TMP/gen" --log error dags backfill "2-${s}_realtime_ingest" \
        --from 2026-02-01T00:00:00Z --to 2026-02-01T00:00:00Z >/dev/null 2>&1
done

"$BIN" --lake "$TMP/lake" --log warn serve --listen 127.0.0.1:0 2>"$TMP/serve.log" &
SERVER_PID=$!
URL=
for _ in $(seq 1 600); do
    URL=$(sed -n 's#^lakepipe ui: \(http://[^/]*\)/.*#\1#p' "$TMP/serve.log" | head -1)
    [ -n "$URL" ] && break
    sleep 0.1
done
[ -n "$URL" ] || { cat "$TMP/serve.log" >&2; exit 1; }

python3 "$ROOT/bench/freshness.py" "$URL" "$TMP/gen" "$RATE" "$DURATION" >"$TMP/out.json"
RSS_KB=$(awk '/VmHWM/ {print $2}' "/proc/$SERVER_PID/status")
kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=
python3 - "$TMP/out.json" "$RSS_KB" "$TMP/serve.log" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); rss = int(sys.argv[2]) / 1024
a, e = r["ack_to_visible"], r["event_to_visible"]
print(f"freshness: {r['records']} events in {r['requests']} requests ({r['rate']:.0f} events/s), "
      f"{r['not_visible_within_60s']} requests not visible within 60 s")
print(f"  acknowledged -> visible: p50 {a['p50']} s, p95 {a['p95']} s, p99 {a['p99']} s")
print(f"  event time   -> visible: p50 {e['p50']} s, p95 {e['p95']} s, p99 {e['p99']} s")
ok95, ok99 = a["p95"] <= 5, a["p99"] <= 10
print(f"  targets: p95 <= 5 s ({'met' if ok95 else 'MISSED'}), p99 <= 10 s ({'met' if ok99 else 'MISSED'}); "
      f"the seed system: 15 min (900 s), {900 / max(a['p95'], 0.01):.0f}x; "
      f"Firehose's default buffer: 300 s, {300 / max(a['p95'], 0.01):.0f}x")
print(f"  peak RSS of serve: {rss:.0f} MiB")
for line in open(sys.argv[3]):
    if line.startswith("live serving:"):
        print("  " + line.strip())
PY
