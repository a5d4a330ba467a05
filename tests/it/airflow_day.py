"""Drives a real Airflow 3 (scheduler with LocalExecutor, dag-processor and api-server already
running) through the fire times in (FROM, TO] of the lakepipe DAGs it has parsed, as lakepipe's
own scheduler would: at each fire time the DAGs due run in DAG-ID group order (`2-` before
`3-` …), the DAGs of one group at once, each run triggered through Airflow's REST API with that
logical date and awaited before the next group. Airflow's executor runs the tasks, in parallel
up to its parallelism, each one `lakepipe tasks run`.

Usage: airflow_day.py API_URL FROM TO DAGS [TICK_TIMEOUT_S]
First waits (up to 5 minutes) until Airflow has parsed DAGS DAG files. Prints one JSON
document: {"dag_ids", "import_errors", "runs": [{dag_id, logical_date, state, tasks: {task:
state}, tries: {task: try}, max_parallel: most tasks of the run running at once}], "ticks",
"seconds", "slowest_tick_s"}. Exit 1 if a run did not finish in time.
"""

import json
import sys
import time
import urllib.request
from datetime import datetime, timezone

from croniter import croniter


def call(api, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        api + path, method=method, data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)


def parse(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(timezone.utc)


def rfc(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def max_parallel(tis):
    """The most task instances of one run that were running at the same instant."""
    edges = []
    for ti in tis:
        if ti.get("start_date") and ti.get("end_date"):
            edges.append((parse(ti["start_date"]), 1))
            edges.append((parse(ti["end_date"]), -1))
    running = most = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):
        running += step
        most = max(most, running)
    return most


def wait_parsed(api, want):
    deadline = time.time() + 300
    while True:
        try:
            dags = call(api, "GET", "/dags?limit=100")["dags"]
            errors = call(api, "GET", "/importErrors")["import_errors"]
            if len(dags) >= want or errors:
                return dags, errors
        except OSError:
            pass
        if time.time() > deadline:
            sys.exit(f"Airflow did not parse {want} DAGs in 5 minutes")
        time.sleep(1)


def main():
    api, start, end = sys.argv[1].rstrip("/"), parse(sys.argv[2]), parse(sys.argv[3])
    want = int(sys.argv[4])
    tick_timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 900.0
    dags, errors = wait_parsed(api, want)
    if errors:
        print(json.dumps({"dag_ids": [d["dag_id"] for d in dags], "import_errors": errors}))
        sys.exit(1)
    # The schedules as Airflow parsed them from the exported files.
    scheduled = {}
    for d in dags:
        cron = d.get("timetable_summary")
        if cron and not d["is_paused"]:
            scheduled[d["dag_id"]] = cron
    if not scheduled:
        sys.exit("Airflow has parsed no scheduled, unpaused lakepipe DAG")
    ticks = {}
    for dag_id, cron in scheduled.items():
        it = croniter(cron, start)
        while (t := it.get_next(datetime)) <= end:
            ticks.setdefault(t, []).append(dag_id)

    began = time.time()
    slowest = 0.0
    runs = []
    for t in sorted(ticks):
        tick_began = time.time()
        groups = {}
        for dag_id in ticks[t]:
            groups.setdefault(int(dag_id.split("-", 1)[0]), []).append(dag_id)
        for _, group in sorted(groups.items()):
            ids = {}
            for dag_id in sorted(group):
                run = call(
                    api,
                    "POST",
                    f"/dags/{dag_id}/dagRuns",
                    {"logical_date": rfc(t), "dag_run_id": f"simulated__{rfc(t)}"},
                )
                ids[dag_id] = run["dag_run_id"]
            pending = dict(ids)
            finished = {}
            while pending:
                if time.time() - tick_began > tick_timeout:
                    print(json.dumps({"runs": runs, "unfinished": sorted(pending), "at": rfc(t)}))
                    sys.exit(1)
                time.sleep(0.5)
                for dag_id, run_id in list(pending.items()):
                    state = call(api, "GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]
                    if state in ("success", "failed"):
                        finished[dag_id] = state
                        del pending[dag_id]
            for dag_id, run_id in sorted(ids.items()):
                tis = call(api, "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100")
                runs.append(
                    {
                        "dag_id": dag_id,
                        "logical_date": rfc(t),
                        "state": finished[dag_id],
                        "tasks": {ti["task_id"]: ti["state"] for ti in tis["task_instances"]},
                        "tries": {ti["task_id"]: ti["try_number"] for ti in tis["task_instances"]},
                        "max_parallel": max_parallel(tis["task_instances"]),
                    }
                )
        slowest = max(slowest, time.time() - tick_began)
        print(f"{rfc(t)}: {', '.join(ticks[t])} in {time.time() - tick_began:.1f} s", file=sys.stderr)
    print(
        json.dumps(
            {
                "dag_ids": sorted(d["dag_id"] for d in dags),
                "import_errors": errors,
                "runs": runs,
                "ticks": len(ticks),
                "seconds": round(time.time() - began, 1),
                "slowest_tick_s": round(slowest, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
