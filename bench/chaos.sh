#!/usr/bin/env bash
# Chaos benchmark (run by hand, not in CI): `lakepipe simulate` over DAYS (default 2) of the
# full schedule — speed layer, batch, serving, catalog, upkeep — with faults in the data
# (--fault-rate 0.03), once undisturbed and once killed with SIGKILL at KILLS (default 50)
# random moments (seeded by SEED), restarted after each kill, then run to the end. Compares
# the two lakes and prints a table: landed objects lost or extra, Delta tables that differ
# (row count and a checksum over the sorted rows, floats to 6 digits), ids counted twice in
# the unified tables, and run history left inconsistent (a run not `success`, a task still
# `running`).
#
#   bench/chaos.sh                       2 days, 50 kills, release build
#   DAYS=1 KILLS=10 bench/chaos.sh       shorter
#   BIN=path/to/lakepipe bench/chaos.sh  another build (e.g. the debug one)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${LAKEPIPE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lakepipe}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
DAYS=${DAYS:-2}
KILLS=${KILLS:-50}
SEED=${SEED:-27}
SCALE=${SCALE:-0.05}
cd "$ROOT"
if [ -z "${BIN:-}" ]; then
    cargo build --release --quiet
    BIN=$CARGO_TARGET_DIR/release/lakepipe
fi
# The deltalake package of the test venv reads the tables (scripts/test installs it).
VENV=${VENV:-$CACHE/venv}
[ -x "$VENV/bin/python" ] || { echo "run scripts/test once first: it makes $VENV" >&2; exit 1; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lakepipe-chaos.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
FROM=2026-02-01T00:00:00Z
TO=$(python3 -c "import datetime as d; print((d.datetime(2026,2,1)+d.timedelta(days=$DAYS,hours=3)).strftime('%Y-%m-%dT%H:%M:%SZ'))")
ARGS=(simulate --from "$FROM" --to "$TO" --scale "$SCALE" --fault-rate 0.03)

start=$(date +%s)
"$BIN" --lake "$WORK/clean" --log error "${ARGS[@]}" > /dev/null 2> "$WORK/clean.err"
clean_s=$(( $(date +%s) - start ))
echo "clean run: ${clean_s} s" >&2

# Kill moments: uniform over the clean run's duration, seeded.
python3 - "$SEED" "$KILLS" "$clean_s" > "$WORK/delays" <<'PY'
import random, sys
seed, kills, span = int(sys.argv[1]), int(sys.argv[2]), max(float(sys.argv[3]), 2.0)
r = random.Random(seed)
# Spread the kills over the work: each restart lives up to twice the clean run's time per
# kill (at least 1 s, at most 30 s), so most kills land before the workload is done.
cap = min(30.0, max(1.0, 2 * span / kills))
for _ in range(kills):
    print(f"{r.uniform(0.3, cap):.2f}")
PY
killed=0
ended_early=0
start=$(date +%s)
while read -r delay; do
    "$BIN" --lake "$WORK/chaos" --log error "${ARGS[@]}" > /dev/null 2>> "$WORK/chaos.err" &
    pid=$!
    sleep "$delay"
    if kill -9 "$pid" 2> /dev/null; then
        killed=$((killed + 1))
    else
        ended_early=$((ended_early + 1))
    fi
    wait "$pid" 2> /dev/null || true
done < "$WORK/delays"
final=0
"$BIN" --lake "$WORK/chaos" --log error "${ARGS[@]}" > /dev/null 2>> "$WORK/chaos.err" || final=$?
chaos_s=$(( $(date +%s) - start ))
echo "chaos run: ${chaos_s} s, ${killed} SIGKILLs (${ended_early} runs had ended before their kill), final exit ${final}" >&2

RUST_LOG=error "$VENV/bin/python" - "$WORK/clean" "$WORK/chaos" "$killed" "$DAYS" <<'PY'
import glob, hashlib, json, os, sys
from deltalake import DeltaTable

clean, chaos, killed, days = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
IDS = {"iot_sensors": "reading_id", "api_logs": "log_id", "social_media": "event_id",
       "ecommerce_clickstream": "event_id", "financial_transactions": "transaction_id"}

def objects(lake):
    out = {}
    for root, _, files in os.walk(os.path.join(lake, "realtime")):
        for f in files:
            if "#" in f:
                continue  # a staging file a kill left; never listed as landed
            p = os.path.join(root, f)
            out[os.path.relpath(p, lake)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out

def rounded(v):
    if isinstance(v, float):
        return f"{v:.6f}"
    if isinstance(v, list):
        return [rounded(x) for x in v]
    if isinstance(v, dict):
        return {k: rounded(x) for k, x in v.items()}
    return v if isinstance(v, (int, str, bool)) or v is None else str(v)

def tables(lake):
    out = {}
    for log in glob.glob(lake + "/batch/*/*/_delta_log") + glob.glob(lake + "/serving/*/*/_delta_log"):
        path = os.path.dirname(log)
        rows = sorted(json.dumps(rounded(r), sort_keys=True) for r in DeltaTable(path).to_pyarrow_table().to_pylist())
        out[os.path.relpath(path, lake)] = (len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16])
    return out

def twice(lake):
    n = 0
    for stream, idc in IDS.items():
        p = f"{lake}/serving/unified/{stream}"
        if os.path.isdir(p):
            ids = DeltaTable(p).to_pyarrow_table(columns=[idc]).column(idc).to_pylist()
            n += len(ids) - len(set(ids))
    return n

def history(lake):
    bad = []
    for run in glob.glob(lake + "/_lakepipe/runs/*/*/run.json"):
        r = json.load(open(run))
        if r["state"] != "success":
            bad.append(f"{r['dag_id']} {r['logical_date']} {r['state']}")
        for t in glob.glob(os.path.join(os.path.dirname(run), "tasks", "*.json")):
            if json.load(open(t)).get("state") == "running":
                bad.append(f"{t}: running")
    return bad

a, b = objects(clean), objects(chaos)
lost = sorted(set(a) - set(b))
extra = sorted(set(b) - set(a))
changed = sorted(k for k in set(a) & set(b) if a[k] != b[k])
ta, tb = tables(clean), tables(chaos)
differ = sorted(k for k in set(ta) | set(tb) if ta.get(k) != tb.get(k))
dup = twice(chaos)
bad = history(chaos)
rows = [
    ("landed objects lost / extra / changed", f"{len(lost)} / {len(extra)} / {len(changed)} of {len(a)}", "0 / 0 / 0"),
    ("Delta tables differing from the clean run", f"{len(differ)} of {len(ta)}", "0"),
    ("ids counted twice in unified", str(dup), "0"),
    ("runs not success, tasks left running", str(len(bad)), "0"),
]
print(f"| scenario: {days} simulated days, {killed} SIGKILLs | measured | target |")
print("|---|---|---|")
for r in rows:
    print(f"| {r[0]} | {r[1]} | {r[2]} |")
for k in differ[:10]:
    print(f"  differs: {k}: clean {ta.get(k)} chaos {tb.get(k)}")
for k in (lost + extra + changed)[:10]:
    print(f"  object: {k}")
for x in bad[:10]:
    print(f"  history: {x}")
sys.exit(1 if (lost or extra or changed or differ or dup or bad) else 0)
PY
