"""Ceilings of the ingest benchmark: the store's own write rate for objects of the size the
ingest API wrote, measured in the same run.

  local-ceiling LAKE_DIR DEST_DIR THREADS  durable writes (write, fsync, link, fsync dir) of the
                                           objects under LAKE_DIR/realtime into DEST_DIR
  s3-ceiling LAKE_DIR BUCKET               the same objects PUT with curl's parallel transfers
  rss PID                                  peak RSS of a process, MiB (VmHWM)
Each prints `<bytes> <seconds>`."""
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
    elif cmd == "rss":
        with open(f"/proc/{sys.argv[2]}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    print(int(line.split()[1]) / 1024)
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
