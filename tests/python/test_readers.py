"""The collected store opens unchanged in every reader analysts use.

Replays two captures with the real moni-node (the Table 1 miniature with
its VNet map, which fills every VoIP dataset, and a SYN port scan written
here, which fills `alerts`), uploads every file to a real moni-collector
over HTTP, and then opens each dataset directory of the collector's
Hive-partitioned store with pandas, pyarrow (dataset and `read_table`),
DuckDB, Polars and Spark (pyspark in local mode, on a headless Java
runtime). Each must return the node's rows, with the node's columns plus
the partition levels `node`, `date` and `hour`, and the same rows per VNet
as the node wrote. This is what failed when part files repeated `vnet` (a
column and a directory level of two types).

README's example queries (over the collected store and over a node's
output directory) run in DuckDB as written and in Spark SQL with only the
table reference changed (`parquet.`dir`` for `read_parquet('dir/…')`, as
README says), and return the same rows in both. One SparkSession serves
every Spark check.
"""

import datetime
import decimal
import hashlib
import json
import os
import re
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
README = ROOT / "README.md"
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
        cls.spark = None
        d = Path(cls.tmp.name)
        cls.node_out = d / "mini"
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
        if cls.spark is not None:
            cls.spark.stop()
        cls.tmp.cleanup()

    @classmethod
    def session(cls):
        """The one local SparkSession of this class, started on first use."""
        if cls.spark is None:
            from pyspark.sql import SparkSession
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            cls.spark = (SparkSession.builder.master("local[1]").appName("moni-readers")
                         .config("spark.driver.bindAddress", "127.0.0.1")
                         .config("spark.ui.showConsoleProgress", "false")
                         .config("spark.sql.session.timeZone", "UTC")
                         .config("spark.ui.enabled", "false")
                         .config("spark.sql.shuffle.partitions", "2")
                         .getOrCreate())
            cls.spark.sparkContext.setLogLevel("ERROR")
        return cls.spark

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

    def test_spark_read_parquet(self):
        spark = self.session()
        for ds in DATASETS:
            df = spark.read.parquet(str(self.data / ds))
            key = "production_vnet" if ds == "rtp_compare" else "vnet"
            counts = {r[0]: r[1] for r in df.groupBy(key).count().collect()}
            self.check("spark", ds, df.columns, Counter(counts))

    def test_counters_are_longs_in_the_store_for_spark(self):
        """Spark has no unsigned types: the node's uint64 counters would
        arrive as decimal(20,0) (Python Decimal through Spark). The store
        keeps them as int64, so Spark sees bigint and the values are the
        node's; a node's own files stay uint64 (exact decimals in Spark)."""
        spark = self.session()
        stored = dict(spark.read.parquet(str(self.data / "flows")).dtypes)
        self.assertEqual(stored["packets_fwd"], "bigint")
        self.assertEqual(stored["bytes_rev"], "bigint")
        self.assertEqual(pq.read_schema(next((self.data / "flows").rglob("*.parquet")))
                         .field("packets_fwd").type, "int64")
        node = dict(spark.read.parquet(str(self.node_out / "flows")).dtypes)
        self.assertEqual(node["packets_fwd"], "decimal(20,0)")
        got = spark.sql(f"SELECT sum(bytes_fwd + bytes_rev) AS b "
                        f"FROM parquet.`{self.data / 'flows'}`").collect()[0]["b"]
        self.assertIsInstance(got, int)
        want = sum(r["bytes_fwd"] + r["bytes_rev"] for f in self.node_files["flows"]
                   for r in pq.read_table(f).to_pylist())
        self.assertEqual(got, want)
        # No uint64 column is left in any stored dataset.
        for ds in DATASETS:
            for f in (self.data / ds).rglob("*.parquet"):
                schema = pq.read_schema(f)
                self.assertNotIn("uint64", {str(t) for t in schema.types}, f)

    def test_readme_queries_run_in_duckdb_and_in_spark_sql(self):
        text = README.read_text()
        runs = [(q, "moni-data", self.data) for q in re.findall(
            r"<!-- duckdb-collector-example -->\s*```sql\n(.*?)```", text, re.S)]
        runs += [(q, "moni-out", self.node_out) for q in re.findall(
            r"<!-- duckdb-example -->\s*```sql\n(.*?)```", text, re.S)]
        self.assertGreaterEqual(len(runs), 4, "README lost its example queries")
        spark = self.session()
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        for q, name, path in runs:
            duck = con.execute(q.replace(name, str(path))).fetchall()
            sparkq = re.sub(r"read_parquet\('" + re.escape(name) + r"/(\w+)/[^']*'[^)]*\)",
                            lambda m: f"parquet.`{path / m.group(1)}`", q).rstrip().rstrip(";")
            self.assertNotIn("read_parquet", sparkq)
            got = [tuple(r) for r in spark.sql(sparkq).collect()]
            self.assertTrue(duck, q)
            self.assertEqual([normal(r) for r in got], [normal(r) for r in duck], q)


def normal(row):
    """A row as comparable values: Spark's decimals (uint64 columns of a
    node's files) and DuckDB's integers as numbers, dates and times as UTC
    ISO text."""
    out = []
    for v in row:
        if isinstance(v, (decimal.Decimal, int, float)) and not isinstance(v, bool):
            out.append(round(float(v), 6))
        elif isinstance(v, datetime.datetime):
            if v.tzinfo is not None:
                v = v.astimezone(datetime.timezone.utc).replace(tzinfo=None)
            out.append(v.isoformat())
        elif isinstance(v, datetime.date):
            out.append(v.isoformat())
        else:
            out.append(v)
    return tuple(out)


if __name__ == "__main__":
    unittest.main()
