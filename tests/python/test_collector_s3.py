"""The collector on an S3-compatible object store.

A local S3 server (moto in server mode, on loopback) stands in for AWS,
MinIO or Ceph. The collector stores every upload of a node's real output in
the bucket under the same Hive layout as on disk, keeps nothing else
locally, stores a retried upload once, and stores nothing for a bad one.
"""

import hashlib
import http.client
import io
import json
import os
import re
import socket
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
NODE = Path(os.environ.get("MONI_NODE_BIN", ROOT / "target" / "debug" / "moni-node"))
COLLECTOR = Path(os.environ.get("MONI_COLLECTOR_BIN", NODE.with_name("moni-collector")))
TOKEN = "s3-test-token-0123456789"
KEY = re.compile(r"^fleet/(\w+)/node=node-1/vnet=[\w.-]+/date=\d{4}-\d\d-\d\d/hour=\d\d/[0-9a-f]{64}\.parquet$")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, limit=30):
    end = time.time() + limit
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"port {port} did not open")


class CollectorOnS3(unittest.TestCase):
    def setUp(self):
        try:
            import boto3  # noqa: F401
        except ImportError:
            if os.environ.get("CI"):
                raise
            self.skipTest("boto3/moto not installed")
        import boto3

        self.tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self.tmp.name)
        self.procs = []
        s3_port = free_port()
        self.procs.append(subprocess.Popen(
            ["moto_server", "-H", "127.0.0.1", "-p", str(s3_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(s3_port)
        endpoint = f"http://127.0.0.1:{s3_port}"
        self.s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                               aws_access_key_id="testing", aws_secret_access_key="testing")
        self.s3.create_bucket(Bucket="moni")
        self.port = free_port()
        cfg = self.dir / "collector.toml"
        cfg.write_text(
            f'[server]\nlisten = "127.0.0.1:{self.port}"\ndata_dir = "{self.dir / "scratch"}"\n'
            f'[storage]\nkind = "s3"\nbucket = "moni"\nprefix = "fleet/"\nendpoint = "{endpoint}"\n'
            f'allow_http = true\naccess_key_id = "testing"\nsecret_access_key = "testing"\n'
            f'[[nodes]]\nid = "node-1"\ntoken = "{TOKEN}"\n')
        self.procs.append(subprocess.Popen([str(COLLECTOR), "serve", "--config", str(cfg)],
                                           stderr=subprocess.DEVNULL))
        wait_port(self.port)

    def tearDown(self):
        for p in self.procs:
            p.kill()
            p.wait()
        self.tmp.cleanup()

    def upload(self, dataset, body):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        c.request("POST", f"/v1/ingest/{dataset}", body=body, headers={
            "Authorization": f"Bearer {TOKEN}",
            "X-Content-Sha256": hashlib.sha256(body).hexdigest()})
        r = c.getresponse()
        body = json.loads(r.read() or b"{}")
        c.close()
        return r.status, body

    def objects(self):
        out = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket="moni"):
            out += [o["Key"] for o in page.get("Contents", [])]
        return sorted(out)

    def test_uploads_land_in_the_bucket_in_the_hive_layout_once(self):
        out = self.dir / "node-out"
        subprocess.run([str(NODE), "replay", "--no-progress", "--out", str(out), "--vnet-map",
                        "100=A:production,200=B:shadow,300=rx:monitor",
                        str(ROOT / "samples" / "pcap" / "paper-miniature.pcap")],
                       check=True, stdout=subprocess.DEVNULL)
        sent = {}
        for f in sorted(out.glob("*/*.parquet")):
            status, body = self.upload(f.parent.name, f.read_bytes())
            self.assertEqual(status, 201, body)
            sent[f.parent.name] = sent.get(f.parent.name, 0) + pq.read_metadata(f).num_rows
        self.assertEqual(set(sent), {"flows", "bins", "rtp_streams", "rtp_windows", "rtp_compare", "calls"})
        keys = self.objects()
        stored = {}
        for k in keys:
            m = KEY.match(k)
            self.assertIsNotNone(m, k)
            data = self.s3.get_object(Bucket="moni", Key=k)["Body"].read()
            stored[m.group(1)] = stored.get(m.group(1), 0) + pq.read_table(io.BytesIO(data)).num_rows
        self.assertEqual(stored, sent)
        # A retry stores nothing new; a bad upload stores nothing.
        flows = next(out.glob("flows/*.parquet")).read_bytes()
        status, body = self.upload("flows", flows)
        self.assertEqual(status, 201)
        self.assertEqual(body["already_stored"], body["parts"])
        status, body = self.upload("flows", b"PAR1 not really")
        self.assertEqual(status, 422, body)
        self.assertEqual(self.objects(), keys)
        # Nothing but the scratch directory and its lock (one collector per
        # data_dir) is kept locally.
        scratch = self.dir / "scratch"
        local = [p for p in scratch.rglob("*") if p.is_file()]
        self.assertEqual(local, [scratch / ".lock"])


if __name__ == "__main__":
    unittest.main()
