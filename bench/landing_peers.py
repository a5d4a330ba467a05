"""Peers of the landing benchmark: the original system's sequential boto3 loop, and a bare
concurrent PUT loop (the server's ceiling). Prints all three rates and the ratios."""
import concurrent.futures
import mimetypes
import os
import sys
import time

import boto3
from botocore.config import Config

TYPES = {".txt": "text/plain; charset=utf-8", ".csv": "text/csv", ".jsonl": "application/x-ndjson"}


def client():
    return boto3.client(
        "s3",
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=128,
                      retries={"max_attempts": 3}),
    )


def objects(root):
    out = []
    for d, _, files in os.walk(os.path.join(root, "data")):
        for f in files:
            p = os.path.join(d, f)
            key = os.path.relpath(p, root).replace(os.sep, "/")
            with open(p, "rb") as fh:
                out.append((key, fh.read(), TYPES.get(os.path.splitext(f)[1], "application/octet-stream")))
    out.sort()
    return out


def put(c, bucket, obj):
    key, body, ctype = obj
    c.put_object(Bucket=bucket, Key=key, Body=body, ContentType=ctype,
                 Metadata={"source": "bench", "generated_at": "x"})


def main():
    if sys.argv[1] == "make-buckets":
        c = client()
        for b in sys.argv[2:]:
            c.create_bucket(Bucket=b)
        return
    root, seq_bucket, bare_bucket, lakepipe_s = sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
    objs = objects(root)
    n = len(objs)
    c = client()
    t = time.perf_counter()
    for o in objs:  # the original: one object at a time
        put(c, seq_bucket, o)
    seq_s = time.perf_counter() - t

    t = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        list(pool.map(lambda o: put(c, bare_bucket, o), objs))
    bare_s = time.perf_counter() - t

    rate = {k: n / v for k, v in (("lakepipe", lakepipe_s), ("boto3 sequential", seq_s), ("bare concurrent PUT", bare_s))}
    for k, v in rate.items():
        print(f"{k:<22} {n} objects  {v:8.1f} objects/s")
    print(f"lakepipe / ceiling (bare concurrent) = {rate['lakepipe'] / rate['bare concurrent PUT']:.2f}x  (target >= 0.8x)")
    print(f"lakepipe / original (boto3 loop)     = {rate['lakepipe'] / rate['boto3 sequential']:.2f}x  (target >= 2.2x)")


if __name__ == "__main__":
    main()
