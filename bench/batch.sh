#!/usr/bin/env bash
# Batch-layer benchmark (run by hand, not in CI): one day of the five speed-layer streams at
# about 10 million events (SCALE=11; SCALE=1.1 for ~1 M), then the batch DAG for that day
# (bronze -> silver -> seven gold facts -> compact, Delta tables) against DuckDB running the
# equivalent SQL (bronze -> silver -> gold, parquet) over the same raw files, same machine, same
# run. Prints both times, the ratio and lakepipe's peak RSS (/usr/bin/time -v).
#
#   bench/batch.sh                    ~10 M events
#   SCALE=1.1 bench/batch.sh          ~1 M events
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${LAKEPIPE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lakepipe}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
VENV=${VENV:-$CACHE/venv}
SCALE=${SCALE:-11}
cd "$ROOT"
source "$ROOT/scripts/s3-servers.sh"
ensure_venv
cargo build --release --quiet
BIN=$CARGO_TARGET_DIR/release/lakepipe
LAKE=$(mktemp -d "${TMPDIR:-/tmp}/lakepipe-bench-batch.XXXXXX")
trap 'rm -rf "$LAKE" "$LAKE.duck"' EXIT
DAY=2026-02-01
RUN=2026-02-02T02:00:00Z

echo "generating one day at scale $SCALE into $LAKE" >&2
for s in iot_sensors api_logs social_media ecommerce_clickstream financial_transactions; do
    "$BIN" --lake "$LAKE" --log error dags backfill "2-${s}_realtime_ingest" \
        --from "${DAY}T00:05:00Z" --to "2026-02-02T00:00:00Z" --scale "$SCALE" >/dev/null
done
events=$(cat "$LAKE"/realtime/*/date=*/hour=*/*.jsonl | wc -l)
bytes=$(du -sb "$LAKE/realtime" | cut -f1)
echo "$events events, $((bytes / 1048576)) MiB of JSON lines" >&2

# Page cache warm for both engines (the files are read once first), and no write-back of the
# landed day still pending (`sync`): neither engine is throttled by the other's or the
# generator's dirty pages.
cat "$LAKE"/realtime/*/date=*/hour=*/*.jsonl >/dev/null
sync
start=$(date +%s.%N)
/usr/bin/time -v -o "$LAKE.time" "$BIN" --lake "$LAKE" --log error dags backfill \
    3-batch_etl_all_streams --from "$RUN" --to "$RUN" >/dev/null
end=$(date +%s.%N)
ours=$(python3 -c "print($end - $start)")
rss_kib=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$LAKE.time")
# Each task's last attempt, in start order (from the run records in the lake).
python3 - "$LAKE" <<'PY' >&2
import glob, json, sys
rows = []
for f in glob.glob(sys.argv[1] + "/_lakepipe/runs/3-batch_etl_all_streams/*/tasks/*.json"):
    r = json.load(open(f))
    a = r["attempts"][-1]
    rows.append((a["start_date"], r["task_id"], a["duration_s"], len(r["attempts"])))
for start, task, secs, tries in sorted(rows):
    print(f"  {task:32} {secs:7.2f} s" + (f"  ({tries} attempts)" if tries > 1 else ""))
PY

mkdir -p "$LAKE.duck"
sync
duck=$("$VENV/bin/python" "$ROOT/bench/batch_duckdb.py" "$LAKE/realtime" "$LAKE.duck")

python3 - "$events" "$ours" "$duck" "$rss_kib" <<'PY'
import sys
events, ours, duck, rss = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
print(f"{events} events: lakepipe batch DAG {ours:.1f} s ({events / ours:,.0f} events/s), "
      f"DuckDB bronze->silver->gold {duck:.1f} s ({events / duck:,.0f} events/s)")
print(f"lakepipe / DuckDB time: {ours / duck:.2f}x (target <= 0.8x: {'met' if ours / duck <= 0.8 else 'MISSED'})")
print(f"lakepipe peak RSS: {rss / 1024:.0f} MiB (target <= 1024 MiB: {'met' if rss <= 1048576 else 'MISSED'})")
PY
