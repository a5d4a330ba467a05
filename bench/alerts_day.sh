#!/usr/bin/env bash
# The alerts task over a day of history (run by hand, not in CI: about 5 minutes in a release
# build, 5-7 in a debug one): `simulate` from 2026-02-01T00:00Z to 2026-02-02T03:00Z at
# --scale 0.2 on a fresh local lake — the run of issue 22 in which, before the fix, every
# `alerts` attempt from about 19:00 failed with "Resources exhausted … TopK". Fails unless every
# run succeeded; prints the serving runs, the alerts table's files and lakepipe's peak RSS.
#
#   bench/alerts_day.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${LAKEPIPE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lakepipe}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
cd "$ROOT"
cargo build --release --quiet
BIN=$CARGO_TARGET_DIR/release/lakepipe
LAKE=$(mktemp -d "${TMPDIR:-/tmp}/lakepipe-bench-alerts.XXXXXX")
trap 'rm -rf "$LAKE" "$LAKE.out" "$LAKE.err"' EXIT

start=$(date +%s)
status=0
/usr/bin/time -v "$BIN" --lake "$LAKE" --json --log error simulate \
    --from 2026-02-01T00:00:00Z --to 2026-02-02T03:00:00Z --scale 0.2 \
    >"$LAKE.out" 2>"$LAKE.err" || status=$?
end=$(date +%s)
rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f MiB", $2 / 1024}' "$LAKE.err")
python3 - "$LAKE.out" "$LAKE" "$((end - start))" "$rss" <<'PY'
import json, os, sys
out, lake, wall, rss = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
s = json.load(open(out))
serving = s["by_dag"].get("4-serving_layer_merge", {})
files = sum(
    1 for _, _, fs in os.walk(os.path.join(lake, "serving/alerts/history"))
    for f in fs if f.endswith(".parquet")
)
print(f"27 simulated hours at --scale 0.2: {s['executed']} runs in {wall} s, peak RSS {rss}")
print(f"serving runs by state: {serving}; Parquet files under serving/alerts/history (the hourly compaction leaves the replaced ones for vacuum): {files}")
PY
if [ "$status" -ne 0 ]; then
    grep -m 5 "failed:" "$LAKE.err" >&2 || true
    echo "FAILED: some runs failed (exit $status)" >&2
    exit 1
fi
