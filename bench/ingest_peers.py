"""Ceilings of the ingest benchmark: the store's own write rate for objects of the size the
ingest API wrote, measured in the same run.

  local-ceiling LAKE_DIR DEST_DIR THREADS  durable writes (write, fsync, link, fsync dir) of the
                                           objects under LAKE_DIR/realtime into DEST_DIR
  s3-ceiling LAKE_DIR BUCKET               the same objects PUT with curl's parallel transfers
  rss PID                                  peak RSS of a process, MiB (VmHWM)
  bodies LAKE_DIR OUT_DIR LINES            NDJSON request bodies of LINES records from the
                                           speed-layer objects of a generated lake
  post URL BODIES_DIR PARALLEL SECONDS     POSTs the bodies with curl's parallel transfers,
                                           round after round for SECONDS; prints JSON
The ceilings print `<bytes> <seconds>`."""
import concurrent.futures
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))


def objects(root):
    out = []
    for d, _, files in os.walk(os.path.join(root, "realtime")):
        for f in files:
            if "#" in f:
                continue
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                out.append((os.path.relpath(p, root).replace(os.sep, "/"), fh.read(), "application/x-ndjson"))
    out.sort()
    return out


def durable_write(dest, key, body):
    path = os.path.join(dest, key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + "#tmp"
    with open(tmp, "wb") as fh:
        fh.write(body)
        fh.flush()
        os.fsync(fh.fileno())
    os.link(tmp, path)
    os.unlink(tmp)
    fd = os.open(os.path.dirname(path), os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)


def bodies(root, out, lines):
    os.makedirs(out, exist_ok=True)
    n = 0
    for stream in sorted(os.listdir(os.path.join(root, "realtime"))):
        buf = []
        for key, body, _ in objects(root):
            if not key.startswith(f"realtime/{stream}/"):
                continue
            buf.extend(body.decode().splitlines())
            while len(buf) >= lines:
                with open(os.path.join(out, f"{stream}.{n:06d}.ndjson"), "w") as fh:
                    fh.write("\n".join(buf[:lines]) + "\n")
                buf, n = buf[lines:], n + 1
    print(n)


def post(url, folder, parallel, seconds):
    """POSTs every body once per round (curl --parallel), rounds until `seconds` passed."""
    import json
    import subprocess
    import tempfile
    files = sorted(os.listdir(folder))
    with tempfile.NamedTemporaryFile("w", suffix=".curl", delete=False) as cfg:
        for i, f in enumerate(files):
            if i:
                cfg.write("next\n")
            stream = f.split(".")[0]
            cfg.write(f'url = "{url}/ingest/{stream}"\n')
            cfg.write(f'data-binary = "@{os.path.join(folder, f)}"\n')
            cfg.write('header = "Content-Type: application/x-ndjson"\n')
            cfg.write('output = "/dev/null"\n')
            cfg.write('write-out = "%{http_code} %{time_total} %{size_upload}\\n"\n')
    codes, times, sent = {}, [], 0
    t = time.perf_counter()
    while time.perf_counter() - t < seconds:
        out = subprocess.run(["curl", "-sS", "--parallel", "--parallel-immediate", "--parallel-max",
                              str(parallel), "-K", cfg.name], capture_output=True, text=True).stdout
        for line in out.splitlines():
            code, total, size = line.split()
            codes[code] = codes.get(code, 0) + 1
            if code == "200":
                times.append(float(total))
                sent += int(float(size))
    elapsed = time.perf_counter() - t
    os.unlink(cfg.name)
    times.sort()
    q = lambda p: times[min(len(times) - 1, int(p * len(times)))] * 1000 if times else 0
    print(json.dumps({"requests": len(times), "bytes": sent, "seconds": elapsed, "codes": codes,
                      "mb_per_s": sent / 1e6 / elapsed, "p50_ms": q(0.5), "p99_ms": q(0.99)}))


def main():
    cmd = sys.argv[1]
    if cmd == "local-ceiling":
        root, dest, threads = sys.argv[2], sys.argv[3], int(sys.argv[4])
        objs = objects(root)
        t = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda o: durable_write(dest, o[0], o[1]), objs))
        print(sum(len(o[1]) for o in objs), time.perf_counter() - t)
    elif cmd == "s3-ceiling":
        import landing_peers
        root, bucket = sys.argv[2], sys.argv[3]
        objs = objects(root)
        landing_peers.client().create_bucket(Bucket=bucket)
        print(sum(len(o[1]) for o in objs), landing_peers.curl_parallel(root, objs, bucket))
    elif cmd == "bodies":
        bodies(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif cmd == "post":
        post(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
    elif cmd == "rss":
        with open(f"/proc/{sys.argv[2]}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    print(int(line.split()[1]) / 1024)
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
