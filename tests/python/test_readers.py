"""The collected store opens unchanged in every reader analysts use.

Replays two captures with the real moni-node (the Table 1 miniature with
its VNet map, which fills every VoIP dataset, and a SYN port scan written
here, which fills `alerts`), uploads every file to a real moni-collector
over HTTP, and then opens each dataset directory of the collector's
Hive-partitioned store with pandas, pyarrow (dataset and `read_table`),
DuckDB and Polars. Each must return the node's rows, with the node's
columns plus the partition levels `node`, `date` and `hour`, and the same
rows per VNet as the node wrote. This is what failed when part files
repeated `vnet` (a column and a directory level of two types).
"""

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request
from collections import Counter
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow.dataset as pads
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pcapgen import write_syn_scan  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
NODE = Path(os.environ.get("MONI_NODE_BIN", ROOT / "target" / "debug" / "moni-node"))
COLLECTOR = Path(os.environ.get("MONI_COLLECTOR_BIN", NODE.with_name("moni-collector")))
MINIATURE = ROOT / "samples" / "pcap" / "paper-miniature.pcap"
TOKEN = "token-readers-0123456789"
DATASETS = ["flows", "bins", "rtp_streams", "rtp_windows", "rtp_compare", "calls", "alerts"]
PARTITIONS = {"node", "vnet", "date", "hour"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port, limit=20):
    end = time.time() + limit
    while time.time() < end:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"collector on port {port} did not answer")


class EveryReaderOpensTheCollectedStore(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        d = Path(cls.tmp.name)
        cls.data = d / "data"
        scan = d / "scan.pcap"
        write_syn_scan(scan)
        truth = json.loads(MINIATURE.with_suffix(".truth.json").read_text())
        outs = []
        for name, pcap, args in [("mini", MINIATURE, ["--vnet-map", truth["vnet_map"]]),
                                 ("scan", scan, [])]:
            out = d / name
            subprocess.run([str(NODE), "replay", "--json", "--out", str(out), *args, str(pcap)],
                           capture_output=True, text=True, check=True)
            outs.append(out)
        port = free_port()
        cfg = d / "collector.toml"
        cfg.write_text(f'[server]\nlisten = "127.0.0.1:{port}"\ndata_dir = "{cls.data}"\n'
                       f'[[nodes]]\nid = "node-1"\ntoken = "{TOKEN}"\n')
        collector = subprocess.Popen([str(COLLECTOR), "serve", "--config", str(cfg)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_http(port)
            cls.node_files = {ds: [] for ds in DATASETS}
            for out in outs:
                for ds in DATASETS:
                    for f in sorted((out / ds).glob("*.parquet")):
                        body = f.read_bytes()
                        req = urllib.request.Request(
                            f"http://127.0.0.1:{port}/v1/ingest/{ds}", data=body, method="POST",
                            headers={"Authorization": f"Bearer {TOKEN}",
                                     "X-Content-Sha256": hashlib.sha256(body).hexdigest()})
                        with urllib.request.urlopen(req, timeout=30) as r:
                            assert r.status == 201, (ds, f, r.status)
                        cls.node_files[ds].append(f)
        finally:
            collector.send_signal(signal.SIGTERM)
            collector.wait(timeout=20)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def expected(self, ds):
        """(node columns, rows per VNet) from the files the node wrote."""
        t = pq.ParquetDataset([str(f) for f in self.node_files[ds]]).read()
        vnet_col = "production_vnet" if ds == "rtp_compare" else "vnet"
        return t.column_names, Counter(t.column(vnet_col).to_pylist())

    def test_every_dataset_is_there(self):
        for ds in DATASETS:
            self.assertTrue(self.node_files[ds], f"no node file for {ds}")
            self.assertTrue(list((self.data / ds).rglob("*.parquet")), ds)

    def test_part_files_do_not_repeat_their_partition_columns(self):
        for ds in DATASETS:
            for f in (self.data / ds).rglob("*.parquet"):
                names = set(pq.read_schema(f).names)
                self.assertEqual(names & PARTITIONS, set(), f)

    def check(self, reader, ds, columns, vnets):
        cols, want_vnets = self.expected(ds)
        self.assertEqual(set(columns), set(cols) | PARTITIONS, f"{reader} {ds}: columns")
        self.assertEqual(Counter({str(k): v for k, v in vnets.items()}),
                         Counter({str(k): v for k, v in want_vnets.items()}),
                         f"{reader} {ds}: rows per VNet")

    def test_pandas_read_parquet(self):
        for ds in DATASETS:
            df = pd.read_parquet(self.data / ds)
            key = "production_vnet" if ds == "rtp_compare" else "vnet"
            self.check("pandas", ds, df.columns, Counter(df[key].astype(str)))

    def test_pyarrow_dataset_hive(self):
        for ds in DATASETS:
            t = pads.dataset(self.data / ds, partitioning="hive").to_table()
            key = "production_vnet" if ds == "rtp_compare" else "vnet"
            self.check("pyarrow.dataset", ds, t.column_names,
                       Counter(str(v) for v in t.column(key).to_pylist()))

    def test_pyarrow_read_table(self):
        for ds in DATASETS:
            t = pq.read_table(self.data / ds)
            key = "production_vnet" if ds == "rtp_compare" else "vnet"
            self.check("pyarrow.parquet", ds, t.column_names,
                       Counter(str(v) for v in t.column(key).to_pylist()))

    def test_duckdb_hive_partitioning(self):
        con = duckdb.connect()
        for ds in DATASETS:
            rel = con.sql(f"SELECT * FROM read_parquet('{self.data / ds}/**/*.parquet', "
                          "hive_partitioning = true)")
            key = "production_vnet" if ds == "rtp_compare" else "vnet"
            counts = dict(con.execute(
                f"SELECT {key}, count(*) FROM read_parquet('{self.data / ds}/**/*.parquet', "
                f"hive_partitioning = true) GROUP BY 1").fetchall())
            self.check("duckdb", ds, rel.columns, Counter(counts))

    def test_compare_reads_the_vnet_from_the_path(self):
        def compare(data):
            run = subprocess.run([str(COLLECTOR), "compare", "--production", "A", "--shadow", "B",
                                  "--format", "json", "--data", str(data)],
                                 capture_output=True, text=True, check=True)
            return json.loads(run.stdout)["windows"]
        stored = compare(self.data)
        self.assertGreater(len(stored), 0)
        self.assertEqual(stored, compare(self.node_files["rtp_windows"][0].parents[1]))

    def test_polars_scan_parquet(self):
        for ds in DATASETS:
            df = pl.scan_parquet(f"{self.data / ds}/**/*.parquet", hive_partitioning=True).collect()
            key = "production_vnet" if ds == "rtp_compare" else "vnet"
            self.check("polars", ds, df.columns, Counter(str(v) for v in df[key].to_list()))


if __name__ == "__main__":
    unittest.main()
