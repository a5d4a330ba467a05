#!/usr/bin/env bash
# Scheduler benchmark (run by hand, not in CI): `lakepipe simulate` over 7 days of the full
# schedule (every DAG, scale 1) on a fresh local lake, release build. Prints wall time, runs
# per second, events landed, the ratio to the target (7 days in <= 180 s on 2 cores), the
# peak RSS and the user and system CPU of the process, and per day the serving run's task
# time in its first and last hour (target: the last hour within 20 % of the first).
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

# Run by Python for the child's peak RSS; failed runs make simulate exit 1, reported too.
python3 - "$BIN" "$LAKE" "$FROM" "$TO" "$DAYS" <<'PY'
import collections, glob, json, os, resource, subprocess, sys, time
bin_, lake, frm, to, days = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
start = time.monotonic()
p = subprocess.run([bin_, "--lake", lake, "--json", "--log", "error", "simulate", "--from", frm,
                    "--to", to], capture_output=True, text=True)
wall = time.monotonic() - start
if p.returncode != 0:
    print((p.stderr.strip().splitlines() or [""])[-1])
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
rss_mib = usage.ru_maxrss / 1024
s = json.loads(p.stdout)
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
print(f"peak RSS of simulate: {rss_mib:.0f} MiB")
# The system time is about a third of the wall time and varies between identical runs with the
# state of the page cache (docs/performance.md, seventh session): compare builds on user CPU.
print(f"CPU of simulate: user {usage.ru_utime:.1f} s, system {usage.ru_stime:.1f} s")
# Task durations from the run records, in one pass: per serving run and serving task (the five
# unified tasks together), for each day's first and last hour, so that a miss says which task
# grew; and by day and task over every DAG (serving, the batch DAG, ingest, catalog).
per_run = collections.defaultdict(float)
per_task = collections.defaultdict(float)
by_task_day = collections.defaultdict(float)
for f in glob.glob(os.path.join(lake, "_lakepipe/runs/*/*/tasks/*.json")):
    d = json.load(open(f))
    secs = sum(a["duration_s"] or 0 for a in d["attempts"])
    dag = os.path.basename(os.path.dirname(os.path.dirname(os.path.dirname(f))))
    task = os.path.basename(f)[:-len(".json")]
    task = "unified" if task.startswith("unified_") else task
    group = {"2": "ingest", "3": "batch", "5": "catalog"}.get(dag[0], task)
    by_task_day[(d["logical_date"][:10], group)] += secs
    if dag == "4-serving_layer_merge":
        per_run[d["logical_date"]] += secs
        per_task[(d["logical_date"], task)] += secs
by_day = collections.defaultdict(lambda: ([], []))
for at, secs in per_run.items():
    hour = int(at[11:13])
    if hour in (0, 23):
        by_day[at[:10]][0 if hour == 0 else 1].append(at)
tasks = sorted({task for _, task in per_task})
for day, (first, last) in sorted(by_day.items()):
    if first and last:
        mean = lambda runs, get: sum(get(at) for at in runs) / len(runs)
        f, l = mean(first, per_run.__getitem__), mean(last, per_run.__getitem__)
        print(f"{day}: serving run {f:.3f} s in the first hour, {l:.3f} s in the last "
              f"({100 * (l / f - 1):+.0f} %, target <= +20 %: {'met' if l <= 1.2 * f else 'MISSED'})")
        print("    " + ", ".join(
            f"{task} {mean(first, lambda at: per_task[(at, task)]):.3f} -> "
            f"{mean(last, lambda at: per_task[(at, task)]):.3f}" for task in tasks))
groups = sorted({g for _, g in by_task_day})
print("task time by day (s): " + ", ".join(groups))
for day in sorted({d for d, _ in by_task_day}):
    print(f"{day}: " + ", ".join(f"{by_task_day[(day, g)]:.1f}" for g in groups))
PY
