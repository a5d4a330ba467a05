#!/usr/bin/env bash
# Chaos benchmark (run by hand, not in CI): three workloads, each killed with SIGKILL at
# random moments (seeded by SEED) and restarted after each kill, then checked:
#
#   landing   `lakepipe stream all` over HOURS (default 12) of the streamers, against an
#             undisturbed run: the same objects (keys and bytes) under data/.
#   simulate  `lakepipe simulate` over DAYS (default 2) of the full schedule — speed layer,
#             batch, serving, catalog, upkeep — with faults in the data (--fault-rate 0.03),
#             against an undisturbed run: landed objects lost or extra, Delta tables that
#             differ (row count and a checksum over the sorted rows, floats to 6 digits), ids
#             counted twice in the unified tables, run history left inconsistent (a run not
#             `success`, a task still `running`).
#   ingest    `lakepipe serve --no-scheduler` under a producer posting requests of 25 api_logs
#             records, each with an Idempotency-Key and retried until acknowledged, for as long
#             as the kills last: every acknowledged record in the speed layer exactly once.
#
#   suite     the reliability tests of the test suite (S3 faults on moto and Garage, Delta
#             commits whose answers are lost, the ingest API through faults and SIGKILLs, a full
#             disk, two schedulers, concurrent Delta writers), with moto and Garage started as
#             `scripts/test` starts them: their figures as rows.
#
# KILLS (default 60) is split over the kill phases run (PHASES, default "landing simulate
# ingest suite").
#
#   bench/chaos.sh                                   all three, 60 kills, release build
#   KILLS=200 BIN=…/debug/lakepipe bench/chaos.sh    200 kills, another build
#   PHASES=ingest KILLS=50 bench/chaos.sh            one phase
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${LAKEPIPE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lakepipe}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
DAYS=${DAYS:-2}
HOURS=${HOURS:-12}
KILLS=${KILLS:-60}
PHASES=${PHASES:-landing simulate ingest suite}
SEED=${SEED:-27}
SCALE=${SCALE:-0.05}
nphases=$(wc -w <<< "${PHASES//suite/}")
# KILLS split exactly: the first KILLS % nphases kill phases get one more.
phase_kills() { # phase
    local i=0 p
    for p in ${PHASES//suite/}; do
        if [ "$p" = "$1" ]; then
            echo $(( KILLS / nphases + (i < KILLS % nphases ? 1 : 0) ))
            return
        fi
        i=$((i + 1))
    done
}
cd "$ROOT"
if [ -z "${BIN:-}" ] && [ "$nphases" -gt 0 ]; then
    cargo build --release --quiet
    BIN=$CARGO_TARGET_DIR/release/lakepipe
fi
# The deltalake package of the test venv reads the tables (scripts/test installs it).
VENV=${VENV:-$CACHE/venv}
[ -x "$VENV/bin/python" ] || { echo "run scripts/test once first: it makes $VENV" >&2; exit 1; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lakepipe-chaos.XXXXXX")
MAIN=$$
# (only the script itself cleans up: subshells inherit the trap)
trap 'if [ "$BASHPID" = "$MAIN" ]; then rm -rf "$WORK"; fi' EXIT
FAILED=0
ROWS=$WORK/rows
: > "$ROWS"

# `kills` seeded kill delays, uniform between `lo` and `hi` seconds.
delays() { # name kills lo hi
    python3 - "$SEED-$1" "$2" "$3" "$4" <<'PY'
import random, sys
seed, kills, lo, hi = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
r = random.Random(seed)
for _ in range(kills):
    print(f"{r.uniform(lo, hi):.3f}")
PY
}

# Runs `lakepipe <args>` on lake `$1` until it was killed `$2` times, each restart after a delay
# between `$3` and `$4` seconds (a restart that ends before its kill is not counted, and the
# next one gets the next delay; at most 3 × `$2` restarts), then once to its end; sets KILLED
# and FINAL.
killed_runs() { # lake kills lo hi args...
    local lake=$1 kills=$2 lo=$3 hi=$4 delay pid
    shift 4
    KILLED=0
    local early=0
    # (a file, not a process substitution: that subshell would run the EXIT trap; seeded by the
    # lake's name, not its path under the random $WORK, so that a run can be replayed)
    delays "$(basename "$lake")" "$((3 * kills))" "$lo" "$hi" > "$WORK/delays-$kills"
    local killer status
    while [ "$KILLED" -lt "$kills" ] && read -r delay; do
        "$BIN" --lake "$lake" --log error "$@" > /dev/null 2>> "$WORK/chaos.err" &
        pid=$!
        # The kill comes from a timer, so a restart that ends early costs only its own time.
        ( sleep "$delay"; kill -9 "$pid" 2> /dev/null ) &
        killer=$!
        status=0
        wait "$pid" 2> /dev/null || status=$?
        kill "$killer" 2> /dev/null || true
        wait "$killer" 2> /dev/null || true
        if [ "$status" -eq 137 ]; then KILLED=$((KILLED + 1)); else early=$((early + 1)); fi
    done < "$WORK/delays-$kills"
    FINAL=0
    "$BIN" --lake "$lake" --log error "$@" > /dev/null 2>> "$WORK/chaos.err" || FINAL=$?
    echo "  ${KILLED} SIGKILLs (${early} runs had ended before their kill), final exit ${FINAL}" >&2
}

# Multiplies the clean run's SPAN: `of_span 0.8` prints 0.8 × SPAN.
of_span() { python3 -c "print(f'{$1 * $SPAN:.3f}')"; }

# Times `lakepipe <args>` on lake `$1` undisturbed; sets SPAN.
clean_run() { # lake args...
    local lake=$1 start
    shift
    start=$(date +%s.%N)
    "$BIN" --lake "$lake" --log error "$@" > /dev/null 2> "$WORK/clean.err"
    SPAN=$(python3 -c "print(f'{$(date +%s.%N) - $start:.2f}')")
    echo "  clean run: ${SPAN} s" >&2
}

phase_landing() {
    local kills to args
    kills=$(phase_kills landing)
    to=$(python3 -c "import datetime as d; print((d.datetime(2026,2,1)+d.timedelta(hours=$HOURS)).strftime('%Y-%m-%dT%H:%M:%SZ'))")
    args=(stream all --from 2026-02-01T00:00:00Z --to "$to")
    echo "landing: $HOURS h of the streamers, $kills kills" >&2
    clean_run "$WORK/landing-clean" "${args[@]}"
    # A restart writes the range again from its start (create-only: what landed is kept, as
    # fast as it was written), so a kill t seconds in falls about t seconds into the range:
    # each restart lives between 2 % and 80 % of the clean run.
    killed_runs "$WORK/landing-chaos" "$kills" "$(of_span 0.02)" "$(of_span 0.8)" "${args[@]}"
    python3 - "$WORK/landing-clean" "$WORK/landing-chaos" "$KILLED" "$FINAL" "$HOURS" >> "$ROWS" <<'PY' || FAILED=1
import hashlib, os, sys
clean, chaos, killed, final, hours = sys.argv[1:]
def objects(lake):
    out = {}
    for root, _, files in os.walk(os.path.join(lake, "data")):
        for f in files:
            if "#" in f:
                continue  # a staging file a kill left; never listed as landed
            p = os.path.join(root, f)
            out[os.path.relpath(p, lake)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out
a, b = objects(clean), objects(chaos)
lost, extra = set(a) - set(b), set(b) - set(a)
changed = [k for k in set(a) & set(b) if a[k] != b[k]]
ok = not (lost or extra or changed) and final == "0"
print(f"| landing, {hours} h of the streamers, {killed} SIGKILLs | objects lost / extra / changed | "
      f"{len(lost)} / {len(extra)} / {len(changed)} of {len(a)} | 0 / 0 / 0 |")
sys.exit(0 if ok else 1)
PY
}

phase_simulate() {
    local kills to args
    kills=$(phase_kills simulate)
    to=$(python3 -c "import datetime as d; print((d.datetime(2026,2,1)+d.timedelta(days=$DAYS,hours=3)).strftime('%Y-%m-%dT%H:%M:%SZ'))")
    args=(simulate --from 2026-02-01T00:00:00Z --to "$to" --scale "$SCALE" --fault-rate 0.03)
    echo "simulate: $DAYS days, $kills kills" >&2
    clean_run "$WORK/clean" "${args[@]}"
    # A restart resumes after the runs recorded done, so the restarts share the workload: each
    # lives between an eighth and a half of the clean run / kills (at most 30 s), about a third
    # of the clean run in all, and the kills land while there is work left even when the
    # machine is less loaded than during the clean run.
    local share
    share=$(python3 -c "print(min(60.0, $SPAN / $kills))")
    killed_runs "$WORK/chaos" "$kills" "$(python3 -c "print($share / 8)")" "$(python3 -c "print($share / 2)")" "${args[@]}"
    RUST_LOG=error "$VENV/bin/python" - "$WORK/clean" "$WORK/chaos" "$KILLED" "$DAYS" "$FINAL" >> "$ROWS" <<'PY' || FAILED=1
import glob, hashlib, json, os, sys
from deltalake import DeltaTable

clean, chaos, killed, days, final = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
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
    ("exit code of the run after the last kill", final, "0"),
]
for r in rows:
    print(f"| simulate, {days} days with data faults, {killed} SIGKILLs | {r[0]} | {r[1]} | {r[2]} |")
for k in differ[:10]:
    print(f"differs: {k}: clean {ta.get(k)} chaos {tb.get(k)}", file=sys.stderr)
for k in (lost + extra + changed)[:10]:
    print(f"object: {k}", file=sys.stderr)
for x in bad[:10]:
    print(f"history: {x}", file=sys.stderr)
sys.exit(1 if (lost or extra or changed or differ or dup or bad or final != "0") else 0)
PY
}

phase_ingest() {
    local kills port lake=$WORK/ingest pid killed=0 delay
    kills=$(phase_kills ingest)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
    echo "ingest: $kills kills" >&2
    python3 - "http://127.0.0.1:$port" "$WORK/stop" "$WORK/acked.json" <<'PY' &
import itertools, json, os, sys, time, urllib.error, urllib.request
base, stop, out = sys.argv[1:]
acked, replayed, attempts = [], 0, 0
for r in itertools.count():
    if os.path.exists(stop):
        break
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ids = [f"chaos-{r:05d}-{i:02d}" for i in range(25)]
    body = "".join(json.dumps({"log_id": i, "event_time": now, "status_code": 200,
                               "endpoint": "/chaos", "response_time_ms": 10}) + "\n" for i in ids)
    while True:
        attempts += 1
        req = urllib.request.Request(f"{base}/ingest/api_logs", data=body.encode(), method="POST",
                                     headers={"Content-Type": "application/x-ndjson",
                                              "Idempotency-Key": f"chaos-{r:05d}"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                answer = json.load(resp)
            replayed += bool(answer.get("replayed"))
            acked.extend(ids)
            break
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            time.sleep(0.1)  # the server is down or refusing (503, 409): the same request again
json.dump({"acked": acked, "replayed": replayed, "attempts": attempts}, open(out, "w"))
PY
    local producer=$!
    # Restarts live 0.3-2 s.
    delays ingest "$kills" 0.3 2 > "$WORK/delays-ingest"
    while read -r delay; do
        "$BIN" --lake "$lake" --log error serve --no-scheduler --listen "127.0.0.1:$port" > /dev/null 2>> "$WORK/chaos.err" &
        pid=$!
        sleep "$delay"
        if kill -9 "$pid" 2> /dev/null; then killed=$((killed + 1)); fi
        wait "$pid" 2> /dev/null || true
    done < "$WORK/delays-ingest"
    "$BIN" --lake "$lake" --log error serve --no-scheduler --listen "127.0.0.1:$port" > /dev/null 2>> "$WORK/chaos.err" &
    pid=$!
    sleep 2
    touch "$WORK/stop"
    wait "$producer" 2> /dev/null || true
    kill "$pid" 2> /dev/null || true
    wait "$pid" 2> /dev/null || true
    echo "  ${killed} SIGKILLs" >&2
    python3 - "$lake" "$WORK/acked.json" "$killed" >> "$ROWS" <<'PY' || FAILED=1
import collections, json, os, sys
lake, acked, killed = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3]
seen = collections.Counter()
for root, _, files in os.walk(os.path.join(lake, "realtime", "api_logs")):
    for f in files:
        if "#" in f:
            continue
        for line in open(os.path.join(root, f), encoding="utf-8"):
            if line.strip():
                seen[json.loads(line)["log_id"]] += 1
want = set(acked["acked"])
lost = [i for i in want if seen[i] == 0]
twice = [i for i, n in seen.items() if n > 1]
extra = [i for i in seen if i not in want]
print(f"| ingest API, {len(want) // 25} requests of 25 records ({acked['attempts']} attempts, "
      f"{acked['replayed']} answers replayed), {killed} SIGKILLs | acknowledged records lost / twice / unacknowledged | "
      f"{len(lost)} / {len(twice)} / {len(extra)} of {len(want)} | 0 / 0 / 0 |")
sys.exit(1 if (lost or twice or extra) else 0)
PY
}

phase_suite() {
    echo "suite: the reliability tests" >&2
    GARAGE_VERSION=${GARAGE_VERSION:-$(sed -n 's/^GARAGE_VERSION=\(.*\)$/\1/p' scripts/test | head -1)}
    (
        # shellcheck source=../scripts/s3-servers.sh
        source "$ROOT/scripts/s3-servers.sh"
        ensure_garage
        start_s3_servers 2> "$WORK/servers.err"
        trap stop_s3_servers EXIT
        cargo test --test it -- --nocapture --test-threads 2 faults:: disk:: lease:: \
            concurrent_delta_writers bronze_runs_made_out_of_order > "$WORK/suite.out" 2>&1
    ) && suite=0 || suite=$?
    if [ "$suite" != 0 ]; then
        echo "suite: cargo test exited $suite; its failures:" >&2
        sed -n '/^failures:$/,$p' "$WORK/suite.out" | head -200 >&2
    fi
    python3 - "$WORK/suite.out" "$suite" >> "$ROWS" <<'PY' || FAILED=1
import re, sys
out, code = open(sys.argv[1], errors="replace").read(), int(sys.argv[2])
def passed(name):  # every test whose name has `name` in it passed
    ends = re.findall(rf"test [\w:]*{name}\w* \.\.\. (\w+)", out)
    return "ok" if ends and all(e == "ok" for e in ends) else "FAILED"
def line(pattern):
    m = re.search(pattern, out)
    return m.group(0) if m else "(no figure printed)"
rows = [
    ("10 % of S3 requests failing (500/503, resets before/after forwarding, cut GET bodies, stalls), moto",
     "simulate_on_moto_through_s3_faults", line(r"LAKEPIPE_TEST_MOTO: \d+ requests through the proxy, faults \{ServerError.*"),
     "completes; 0 lost, 0 duplicated"),
    ("retries counted in /metrics under those faults, moto", "simulate_on_moto_through_s3_faults",
     line(r"LAKEPIPE_TEST_MOTO: serve: \d+ retries and .*"), "counted"),
    ("the same faults, Garage", "simulate_on_garage_through_s3_faults",
     line(r"LAKEPIPE_TEST_GARAGE: \d+ requests through the proxy.*"), "completes; 0 lost, 0 duplicated"),
    ("retries counted in /metrics under those faults, Garage", "simulate_on_garage_through_s3_faults",
     line(r"LAKEPIPE_TEST_GARAGE: serve: \d+ retries and .*"), "counted"),
    ("every acknowledged ingest record under S3 faults and 4 SIGKILLs of serve", "ingest_through_s3_faults",
     line(r"SIGKILLs with a request in flight.*") + "; " + line(r"answers \{.*?\}"), "present exactly once"),
    ("30 % of Delta log PUTs answered by a reset after forwarding (moto)", "a_delta_commit_whose_answer_was_lost",
     line(r"\d+ commit answers lost of .*"), "every task in one attempt, lake as a clean run's"),
    ("disk full mid-batch, then space freed", "a_full_disk_fails", "", "clear error, no partial version, clean result"),
    ("two schedulers, 20 simultaneous starts (moto), 5 (Garage)", "two_schedulers_started_together", "", "1 runs each time"),
    ("8 concurrent Delta writers of one table, moto and Garage", "concurrent_delta_writers",
     line(r"LAKEPIPE_TEST_GARAGE: \d+ of 8 concurrent bronze runs.*"), "0 silent losses"),
    ("bronze runs made out of order", "bronze_runs_made_out_of_order", "", "every date once"),
]
for scenario, test, figure, target in rows:
    print(f"| suite: {scenario} | `{test}` {passed(test)} | {figure} | {target} |")
sys.exit(0 if code == 0 else 1)
PY
}

for phase in $PHASES; do
    "phase_$phase"
done
echo
echo "| workload | checked | measured | target |"
echo "|---|---|---|---|"
cat "$ROWS"
exit "$FAILED"
