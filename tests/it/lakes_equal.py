"""Compares two S3 lakes that ran the same workload (one under Airflow, one under lakepipe's
own scheduler): prints a JSON report of every difference, empty lists when they are equal.

Usage: lakes_equal.py A B   (s3://bucket/prefix each; the standard AWS environment)

- objects: the same keys, Delta data files (random UUID names) and operation logs (named by
  wall time) aside;
- every object outside Delta tables, run records and task logs: the same content, with each
  lake's own URL (and prefix, as a JSON value) replaced by `LAKE`; JSON compared parsed, with
  floats to 9 significant digits (sums of floats differ in the last bits with the order of
  addition) and generation times (`generated_at`, `last_modified`) left out; anything else
  (landed JSONL, CSV, DDL) byte for byte;
- every Delta table: the same schema, partition columns, version and rows (as a sorted list,
  floats rounded as above);
- run records: every run and task instance of A's `_lakepipe/runs/` in the same state in B
  (`states_a` lists A's, by key under `_lakepipe/runs/`).
"""

import json
import os
import sys
from urllib.parse import urlparse

import boto3
from deltalake import DeltaTable

VOLATILE = {"generated_at", "last_modified"}


def split(url):
    u = urlparse(url)
    return u.netloc, u.path.strip("/") + "/"


def normal(v, prefix=None):
    if isinstance(v, float):
        return float(f"{v:.9g}")
    if isinstance(v, dict):
        return {k: normal(x, prefix) for k, x in v.items() if k not in VOLATILE}
    if isinstance(v, list):
        return [normal(x, prefix) for x in v]
    if prefix is not None and v == prefix:
        return "LAKE"
    return v


class Lake:
    def __init__(self, url, s3):
        self.url = url.rstrip("/")
        self.bucket, self.prefix = split(url)
        self.s3 = s3
        self.objects = {}
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
        for page in pages:
            for o in page.get("Contents", []):
                self.objects[o["Key"][len(self.prefix) :]] = o["Size"]

    def get(self, key):
        body = self.s3.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()
        return body.replace(self.url.encode(), b"LAKE")

    def content(self, key):
        body = self.get(key)
        if key.endswith(".json"):
            try:
                return normal(json.loads(body), self.prefix.rstrip("/"))
            except ValueError:
                pass
        return body

    def tables(self):
        return sorted({k.split("/_delta_log/")[0] for k in self.objects if "/_delta_log/" in k})

    def table(self, path, options):
        dt = DeltaTable(f"{self.url}/{path}", storage_options=options)
        data = dt.to_pyarrow_table()
        rows = sorted(json.dumps(normal(r), sort_keys=True, default=str) for r in data.to_pylist())
        return {
            "version": dt.version(),
            "schema": [(f.name, str(f.type)) for f in data.schema],
            "partitions": dt.metadata().partition_columns,
            "rows": rows,
        }

    def runs(self):
        out = {}
        for key in self.objects:
            if key.startswith("_lakepipe/runs/") and key.endswith(".json"):
                doc = json.loads(self.get(key))
                out[key[len("_lakepipe/runs/") :]] = doc.get("state")
        return out


def in_table(key, tables):
    return any(key.startswith(t + "/") for t in tables)


def main():
    s3 = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))
    options = {
        "AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"],
        "AWS_REGION": os.environ.get("AWS_REGION", "us-east-1"),
        "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
        "AWS_ALLOW_HTTP": "true",
    }
    a, b = Lake(sys.argv[1], s3), Lake(sys.argv[2], s3)
    tables = a.tables()

    def listed(lake):
        # Delta data files have random names; operation logs are named by wall time and pid.
        return {
            k
            for k in lake.objects
            if not (in_table(k, tables) and k.endswith(".parquet") and "/_delta_log/" not in k)
            and not k.startswith("logs/s3_orchestrator/")
        }

    ka, kb = listed(a), listed(b)
    report = {
        "objects": len(ka),
        "only_in_a": sorted(ka - kb)[:20],
        "only_in_b": sorted(kb - ka)[:20],
        "tables": tables,
        "different_tables": {},
        "different_objects": [],
        "different_runs": {},
        "runs": 0,
    }
    if tables != b.tables():
        report["different_tables"]["(list)"] = {"a": tables, "b": b.tables()}
    for key in sorted(ka & kb):
        if in_table(key, tables) or key.startswith(("_lakepipe/", "logs/")):
            continue
        if a.content(key) != b.content(key):
            report["different_objects"].append(key)
    for t in tables:
        ta, tb = a.table(t, options), b.table(t, options)
        diff = {k: {"a": ta[k], "b": tb[k]} for k in ("version", "schema", "partitions") if ta[k] != tb[k]}
        if ta["rows"] != tb["rows"]:
            diff["rows"] = {
                "a": len(ta["rows"]),
                "b": len(tb["rows"]),
                "only_in_a": sorted(set(ta["rows"]) - set(tb["rows"]))[:3],
                "only_in_b": sorted(set(tb["rows"]) - set(ta["rows"]))[:3],
            }
        if diff:
            report["different_tables"][t] = diff
    ra, rb = a.runs(), b.runs()
    report["runs"] = len(ra)
    for k in sorted(set(ra) | set(rb)):
        if ra.get(k) != rb.get(k):
            report["different_runs"][k] = {"a": ra.get(k), "b": rb.get(k)}
    report["states_a"] = ra
    print(json.dumps(report, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
