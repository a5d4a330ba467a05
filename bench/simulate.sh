#!/usr/bin/env bash
# Scheduler benchmark (run by hand, not in CI): `lakepipe simulate` over 7 days of the full
# schedule (every DAG, scale 1) on a fresh local lake, release build. Prints wall time, runs
# per second, events landed, and the ratio to the target (7 days in <= 180 s on 2 cores).
#
#   bench/simulate.sh                 7 days from 2026-02-01
#   DAYS=1 bench/simulate.sh          a shorter run
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${LAKEPIPE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lakepipe}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
cd "$ROOT"
cargo build --release --quiet
BIN=$CARGO_TARGET_DIR/release/lakepipe
DAYS=${DAYS:-7}
FROM=2026-02-01T00:00:00Z
TO=$(python3 -c "import datetime as d; print((d.datetime(2026,2,1)+d.timedelta(days=$DAYS)).strftime('%Y-%m-%dT%H:%M:%SZ'))")
LAKE=$(mktemp -d "${TMPDIR:-/tmp}/lakepipe-bench-sim.XXXXXX")
trap 'rm -rf "$LAKE"' EXIT

start=$(date +%s.%N)
# Failed runs make simulate exit 1; the benchmark reports them too.
"$BIN" --lake "$LAKE" --json --log error simulate --from "$FROM" --to "$TO" >"$LAKE.out" 2>"$LAKE.err" || tail -1 "$LAKE.err"
end=$(date +%s.%N)
python3 - "$start" "$end" "$LAKE.out" "$LAKE" "$DAYS" <<'PY'
import json, os, sys
start, end, out, lake, days = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
s = json.load(open(out))
wall = end - start
runs = s["executed"] + s["already_done"]
objects = events = 0
for root, _, files in os.walk(os.path.join(lake, "realtime")):
    for f in files:
        objects += 1
        with open(os.path.join(root, f), "rb") as fh:
            events += sum(1 for _ in fh)
target = 180.0 * days / 7
print(f"simulate {days} day(s): {runs} runs in {wall:.1f} s = {runs / wall:.0f} runs/s; "
      f"{events} events in {objects} speed-layer objects ({events / wall:.0f} events/s)")
print(f"by state: {s['by_state']}")
print(f"target {target:.0f} s for {days} day(s): {target / wall:.2f}x the target speed "
      f"({'met' if wall <= target else 'MISSED'})")
PY
rm -f "$LAKE.out" "$LAKE.err"
