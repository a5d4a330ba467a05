#!/usr/bin/env bash
# The whole pipeline on real Airflow 3 (run by hand, not in CI): a simulated day of every DAG —
# 288 fire times of the five ingest DAGs, the hourly catalog, serving every 10 minutes and the
# next day's 02:00 batch run — run by Airflow's scheduler with the LocalExecutor (tasks in
# parallel, each `lakepipe tasks run`) on a moto lake, then by `lakepipe simulate` on another
# lake of the same bucket, and the two compared: objects, every Delta table's rows, every run
# and task state (as Airflow and as lakepipe recorded them). The suite runs the same test over
# 20 minutes around the batch run (`airflow::a_range_of_every_dag…`).
#
#   bench/airflow_day.sh                           2026-02-01T00:00 .. 2026-02-02T02:10, scale 0.05
#   FROM=2026-02-01T20:00:00Z bench/airflow_day.sh a shorter range
#   SCALE=1 bench/airflow_day.sh                   the seed's file sizes
#
# Prints the test's summary line: runs under Airflow and its wall time, lakepipe simulate's wall
# time over the same range, and what was found equal. Uses the caches `scripts/test` fills (the
# test venv with moto, the Airflow venv); builds the debug test binary if needed. The whole day
# took 102 minutes on 2 cores (81 of them under Airflow; 2026-12-05, docs/performance.md).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${LAKEPIPE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lakepipe}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
cd "$ROOT"
# shellcheck source=../scripts/s3-servers.sh
source "$ROOT/scripts/s3-servers.sh"
ensure_venv
ensure_airflow
start_moto
trap stop_s3_servers EXIT

export LAKEPIPE_AIRFLOW_FROM=${FROM:-2026-02-01T00:00:00Z}
export LAKEPIPE_AIRFLOW_SEEDED_FROM=$LAKEPIPE_AIRFLOW_FROM
export LAKEPIPE_AIRFLOW_TO=${TO:-2026-02-02T02:10:00Z}
export LAKEPIPE_AIRFLOW_SCALE=${SCALE:-0.05}
start=$(date +%s)
cargo test --quiet --test it -- --exact \
    airflow::a_range_of_every_dag_under_airflow_with_parallel_tasks_equals_lakepipes_own_run \
    --nocapture 2>&1 | tee "${TMPDIR:-/tmp}/lakepipe-airflow-day.log" | grep -E "^airflow day|test result|panicked"
echo "whole bench: $(( $(date +%s) - start )) s (log: ${TMPDIR:-/tmp}/lakepipe-airflow-day.log)"
