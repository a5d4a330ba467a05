"""Peers of the landing benchmark: the original system's sequential boto3 loop, and bare
concurrent PUT loops for the server's ceiling — curl's native parallel transfers (64 at once,
SigV4) and, for reference, 64 boto3 threads (bound by Python on 2 cores). Prints the rates and
the ratios."""
import concurrent.futures
import subprocess
import tempfile
import urllib.parse
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


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main():
    cmd = sys.argv[1]
    if cmd == "make-buckets":
        c = client()
        for b in sys.argv[2:]:
            c.create_bucket(Bucket=b)
        return
    if cmd in ("seq", "threads", "curl"):
        # <cmd> ROOT BUCKET: lands the objects one way into a fresh bucket, prints seconds.
        root, bucket = sys.argv[2], sys.argv[3]
        objs = objects(root)
        c = client()
        c.create_bucket(Bucket=bucket)
        if cmd == "seq":  # the original: one object at a time
            print(timed(lambda: [put(c, bucket, o) for o in objs]))
        elif cmd == "threads":
            def run():
                with concurrent.futures.ThreadPoolExecutor(64) as pool:
                    list(pool.map(lambda o: put(c, bucket, o), objs))
            print(timed(run))
        else:
            print(curl_parallel(root, objs, bucket))
        return
    if cmd == "report":
        # report N lakepipe=S,S,.. seq=S curl=S,S,.. threads=S: median rates and ratios.
        n = int(sys.argv[2])
        runs = {k: sorted(float(x) for x in v.split(",")) for k, v in (a.split("=") for a in sys.argv[3:])}
        rate = {k: n / v[len(v) // 2] for k, v in runs.items()}
        names = {"lakepipe": "lakepipe", "seq": "boto3 sequential", "curl": "curl parallel 64",
                 "threads": "boto3 64 threads"}
        for k, v in rate.items():
            print(f"{names[k]:<22} {n} objects  {v:8.1f} objects/s  (median of {len(runs[k])})")
        ceiling = max(rate["curl"], rate["threads"])
        print(f"lakepipe / ceiling (best bare concurrent PUT) = {rate['lakepipe'] / ceiling:.2f}x  (target >= 0.8x)")
        print(f"lakepipe / original (boto3 loop)              = {rate['lakepipe'] / rate['seq']:.2f}x  (target >= 2.2x)")
        return
    raise SystemExit(f"unknown command {cmd}")


def curl_parallel(root, objs, bucket):
    """PUTs every object with curl's parallel transfers (64 at once, SigV4): a native client
    with no per-request interpreter cost, so it shows what the server takes."""
    ep = os.environ["AWS_ENDPOINT_URL"].rstrip("/")
    user = f'{os.environ["AWS_ACCESS_KEY_ID"]}:{os.environ["AWS_SECRET_ACCESS_KEY"]}'
    with tempfile.NamedTemporaryFile("w", suffix=".curl", delete=False) as cfg:
        for i, (key, _, ctype) in enumerate(objs):
            if i:
                cfg.write("next\n")
            # SigV4 signs the URI-encoded path (`=` as %3D): encode it as S3 expects.
            cfg.write(f'url = "{ep}/{bucket}/{urllib.parse.quote(key, safe="/")}"\n')
            cfg.write(f'upload-file = "{os.path.join(root, key)}"\n')
            cfg.write('aws-sigv4 = "aws:amz:us-east-1:s3"\n')
            cfg.write(f'user = "{user}"\n')
            cfg.write('header = "x-amz-content-sha256: UNSIGNED-PAYLOAD"\n')
            cfg.write(f'header = "Content-Type: {ctype}"\n')
            cfg.write('output = "/dev/null"\n')
            cfg.write('retry = 5\n')  # 503 Slow Down under load, as SDKs retry
            cfg.write('write-out = "%{http_code}\\n"\n')
    t = time.perf_counter()
    out = subprocess.run(["curl", "-sS", "--parallel", "--parallel-max", "64", "-K", cfg.name],
                         check=True, capture_output=True, text=True).stdout
    elapsed = time.perf_counter() - t
    os.unlink(cfg.name)
    codes = out.split()
    if len(codes) != len(objs) or any(c != "200" for c in codes):
        raise SystemExit(f"curl: {len(codes)} responses, not all 200: {sorted(set(codes))}")
    return elapsed


if __name__ == "__main__":
    main()
