#!/usr/bin/env python3
"""Load generator for bench/collector.sh: N simulated nodes upload distinct
realistic Parquet files concurrently for a fixed time; prints files/s, MB/s
and acknowledgement latency percentiles as JSON.

  collector_load.py PORT NODES SECS FILES_DIR

FILES_DIR holds NODE_INDEX/DATASET/NAME.parquet, made by prepare().
"""
import hashlib
import http.client
import json
import sys
import threading
import time
from pathlib import Path


def prepare(src_dirs, out, nodes, per_node):
    """Distinct copies of real node files (each with its own run id, so no
    upload is a duplicate of another)."""
    import pyarrow.parquet as pq

    tables = []
    for d in src_dirs:
        for ds_dir in sorted(Path(d).iterdir()):
            for f in sorted(ds_dir.glob("*.parquet")):
                t = pq.read_table(f)
                tables.append((ds_dir.name, t))
    n = 0
    for i in range(nodes):
        for k in range(per_node):
            ds, t = tables[(i + k) % len(tables)]
            meta = dict(t.schema.metadata or {})
            meta[b"moni.run"] = f"bench-{i}-{k}".encode()
            d = Path(out) / str(i) / ds
            d.mkdir(parents=True, exist_ok=True)
            pq.write_table(t.replace_schema_metadata(meta), d / f"{k:05}.parquet", compression="zstd")
            n += 1
    return n


def main():
    if sys.argv[1] == "prepare":
        n = prepare(sys.argv[5:], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        print(n)
        return
    port, nodes, secs, files = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4])
    lat, sizes, errors = [], [], []
    lock = threading.Lock()
    start = threading.Event()
    deadline = [0.0]

    def node(i):
        todo = sorted((files / str(i)).glob("*/*.parquet"))
        token = f"bench-token-node-{i:03}-0123456789"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        start.wait()
        for f in todo:
            if time.monotonic() >= deadline[0]:
                break
            body = f.read_bytes()
            h = hashlib.sha256(body).hexdigest()
            t0 = time.monotonic()
            try:
                conn.request("POST", f"/v1/ingest/{f.parent.name}", body=body, headers={
                    "Authorization": f"Bearer {token}", "X-Content-Sha256": h,
                    "Content-Type": "application/vnd.apache.parquet"})
                r = conn.getresponse()
                r.read()
                ok = r.status == 201
            except OSError as e:
                ok = False
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            dt = time.monotonic() - t0
            with lock:
                if ok:
                    lat.append(dt)
                    sizes.append(len(body))
                else:
                    errors.append(f.name)

    threads = [threading.Thread(target=node, args=(i,)) for i in range(nodes)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    deadline[0] = t0 + secs
    start.set()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    lat.sort()
    pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else 0.0
    print(json.dumps({
        "nodes": nodes, "seconds": round(elapsed, 2), "files": len(lat), "errors": len(errors),
        "files_per_sec": round(len(lat) / elapsed, 1),
        "mb_per_sec": round(sum(sizes) / elapsed / 1e6, 2),
        "mean_file_kb": round(sum(sizes) / max(1, len(sizes)) / 1e3, 1),
        "p50_ms": round(pct(0.50) * 1e3, 1), "p99_ms": round(pct(0.99) * 1e3, 1),
        "max_ms": round((lat[-1] if lat else 0) * 1e3, 1),
    }))


if __name__ == "__main__":
    main()
