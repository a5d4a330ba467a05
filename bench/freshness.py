"""Freshness benchmark client (bench/freshness.sh): posts the seed streams' events to
`lakepipe serve` at a steady rate with event times of now, polls the dashboards API, and prints
p50 / p95 / p99 of (POST acknowledged -> first dashboard answer whose watermark includes the
request's objects) and of (event time -> visible). Standard library only.

    python3 freshness.py URL TEMPLATES_DIR RATE SECONDS
"""
import datetime as dt
import glob
import json
import os
import re
import sys
import threading
import time
import urllib.request

URL, TEMPLATES, RATE, SECONDS = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
STREAMS = {
    "iot_sensors": "reading_id",
    "api_logs": "log_id",
    "social_media": "event_id",
    "ecommerce_clickstream": "event_id",
    "financial_transactions": "transaction_id",
}
TICK = 0.25  # seconds between requests of a stream
per_request = max(1, int(RATE / len(STREAMS) * TICK))

templates = {}
for s in STREAMS:
    rows = []
    for f in sorted(glob.glob(os.path.join(TEMPLATES, "realtime", s, "**", "*.jsonl"), recursive=True)):
        with open(f) as fh:
            for line in fh:
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    pass
    if not rows:
        sys.exit(f"no template events of {s} under {TEMPLATES}")
    templates[s] = rows

posts = []  # (stream, sent, acked, event_time, [(key, landed)])
lock = threading.Lock()
stop = threading.Event()
LANDED = re.compile(r"_(\d{8}T\d{6}Z)_")


def landed_of(key):
    m = LANDED.search(key.rsplit("/", 1)[-1])
    return dt.datetime.strptime(m.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc).timestamp()


def produce(stream):
    idf = STREAMS[stream]
    rows = templates[stream]
    seq = 0
    next_at = time.time()
    end = next_at + SECONDS
    while time.time() < end:
        now = time.time()
        et = dt.datetime.fromtimestamp(now, dt.timezone.utc)
        body = []
        for _ in range(per_request):
            r = dict(rows[seq % len(rows)])
            r[idf] = f"fresh-{stream}-{seq}"
            r["event_time"] = et.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            body.append(json.dumps(r))
            seq += 1
        req = urllib.request.Request(
            f"{URL}/ingest/{stream}", data=("\n".join(body) + "\n").encode(), method="POST",
            headers={"Content-Type": "application/x-ndjson"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                ans = json.load(resp)
            acked = time.time()
            objs = [(k, landed_of(k)) for k in ans.get("objects", [])]
            with lock:
                posts.append((stream, now, acked, now, objs))
        except Exception as e:  # noqa: BLE001 - a failed request is reported, not fatal
            print(f"{stream}: {e}", file=sys.stderr)
        next_at += TICK
        time.sleep(max(0.0, next_at - time.time()))


seen = {s: [] for s in STREAMS}  # stream -> [(poll time, newest_object, newest_landed)]


def poll():
    while not stop.is_set():
        try:
            with urllib.request.urlopen(f"{URL}/api/dashboards", timeout=10) as resp:
                docs = json.load(resp)
            t = time.time()
            for doc in docs.values():
                s = doc.get("stream")
                m = ((doc.get("watermark") or {}).get("streams") or {}).get(s)
                if s in seen and m and m.get("newest_landed"):
                    nl = dt.datetime.strptime(m["newest_landed"], "%Y-%m-%dT%H:%M:%SZ").replace(
                        tzinfo=dt.timezone.utc).timestamp()
                    last = seen[s][-1] if seen[s] else None
                    if last is None or last[1] != m.get("newest_object"):
                        seen[s].append((t, m.get("newest_object"), nl))
        except Exception as e:  # noqa: BLE001
            print(f"poll: {e}", file=sys.stderr)
        time.sleep(0.1)


poller = threading.Thread(target=poll, daemon=True)
poller.start()
threads = [threading.Thread(target=produce, args=(s,)) for s in STREAMS]
for th in threads:
    th.start()
for th in threads:
    th.join()


def visible(stream, objs):
    """First poll time whose watermark includes every object of the request."""
    worst = 0.0
    for key, landed in objs:
        hit = next((t for t, o, nl in seen[stream] if o == key or nl > landed), None)
        if hit is None:
            return None
        worst = max(worst, hit)
    return worst


deadline = time.time() + 60
while time.time() < deadline:
    with lock:
        pending = [p for p in posts if visible(p[0], p[4]) is None]
    if not pending:
        break
    time.sleep(0.5)
stop.set()

ack_lat, ev_lat, missing, records = [], [], 0, 0
for stream, sent, acked, et, objs in posts:
    records += per_request
    v = visible(stream, objs)
    if v is None:
        missing += 1
        continue
    ack_lat.append(max(0.0, v - acked))
    ev_lat.append(max(0.0, v - et))


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


print(json.dumps({
    "requests": len(posts), "records": records, "rate": records / SECONDS,
    "not_visible_within_60s": missing,
    "ack_to_visible": {f"p{p}": round(pct(ack_lat, p), 2) for p in (50, 95, 99)},
    "event_to_visible": {f"p{p}": round(pct(ev_lat, p), 2) for p in (50, 95, 99)},
}))
