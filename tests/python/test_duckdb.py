"""Analysts' view: moni's Parquet datasets read with DuckDB and pyarrow.

Replays the VLAN sample with the real moni-node binary, then reads every
dataset with DuckDB, runs the example queries from README.md verbatim (with
the output directory substituted) and checks their results against the
generator's ground truth.
"""

import json
import os
import re
import subprocess
import tempfile
import unittest
from pathlib import Path

import duckdb
import polars
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("MONI_NODE_BIN", ROOT / "target" / "debug" / "moni-node"))
SAMPLE = ROOT / "samples" / "pcap" / "vlan-shadow.pcap"
TRUTH = json.loads((ROOT / "samples" / "pcap" / "vlan-shadow.truth.json").read_text())


def readme_queries():
    """The SQL blocks that follow a `<!-- duckdb-example -->` marker."""
    text = (ROOT / "README.md").read_text()
    return re.findall(r"<!-- duckdb-example -->\s*```sql\n(.*?)```", text, re.S)


class DuckDbReadsMoniParquet(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.out = Path(cls.tmp.name) / "moni-out"
        run = subprocess.run(
            [str(BIN), "replay", "--json", "--out", str(cls.out),
             "--vnet-map", TRUTH["vnet_map"], str(SAMPLE)],
            capture_output=True, text=True, check=True)
        cls.summary = json.loads(run.stdout)
        cls.db = duckdb.connect()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def sql(self, q):
        return self.db.execute(q.replace("moni-out", str(self.out))).fetchall()

    def test_every_codec_gives_the_same_rows(self):
        """`[output] compression`: lz4, snappy and none write the rows zstd
        writes, in files whose column chunks carry that codec, and DuckDB,
        pyarrow and Polars read them back."""
        # pyarrow names Parquet's LZ4_RAW codec "LZ4".
        codecs = {"lz4": "LZ4", "snappy": "SNAPPY", "none": "UNCOMPRESSED"}
        for codec, parquet_name in codecs.items():
            with self.subTest(codec=codec):
                out = Path(self.tmp.name) / f"out-{codec}"
                cfg = Path(self.tmp.name) / f"{codec}.toml"
                cfg.write_text(f'[output]\ncompression = "{codec}"\n')
                run = subprocess.run(
                    [str(BIN), "replay", "--json", "--config", str(cfg), "--out", str(out),
                     "--vnet-map", TRUTH["vnet_map"], str(SAMPLE)],
                    capture_output=True, text=True, check=True)
                rows = {d["dataset"]: d["rows"] for d in json.loads(run.stdout)["datasets"]}
                self.assertEqual(rows, {d["dataset"]: d["rows"] for d in self.summary["datasets"]})
                for ds, n in rows.items():
                    files = sorted((out / ds).glob("*.parquet"))
                    if n == 0:
                        continue
                    meta = pq.ParquetFile(files[0]).metadata
                    used = {meta.row_group(0).column(c).compression for c in range(meta.num_columns)}
                    self.assertEqual(used, {parquet_name}, ds)
                    # Row for row the zstd output's (no column differs
                    # between two replays of one file).
                    new, old = f"read_parquet('{out}/{ds}/*.parquet')", f"read_parquet('moni-out/{ds}/*.parquet')"
                    diff = self.sql(f"SELECT count(*) FROM ((SELECT * FROM {new} EXCEPT ALL SELECT * FROM {old}) "
                                    f"UNION ALL (SELECT * FROM {old} EXCEPT ALL SELECT * FROM {new}))")
                    self.assertEqual(diff, [(0,)], ds)
                    self.assertEqual(sum(pq.read_table(f).num_rows for f in files), n, ds)
                    self.assertEqual(polars.scan_parquet(files).select(polars.len()).collect().item(), n, ds)

    def test_every_dataset_reads_with_the_row_counts_written(self):
        for ds in self.summary["datasets"]:
            files = list((self.out / ds["dataset"]).glob("*.parquet"))
            if ds["rows"] == 0:
                # No RTP in this sample: no empty files either.
                self.assertEqual(files, [], ds["dataset"])
                continue
            (n,) = self.sql(f"SELECT count(*) FROM read_parquet('moni-out/{ds['dataset']}/*.parquet')")[0]
            self.assertEqual(n, ds["rows"], ds["dataset"])
        self.assertGreater(sum(ds["rows"] for ds in self.summary["datasets"]), 0)

    def test_column_types_and_ipfix_metadata(self):
        types = dict(self.sql(
            "SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet('moni-out/flows/*.parquet'))"))
        self.assertEqual(types["start_time"], "TIMESTAMP WITH TIME ZONE")
        self.assertEqual(types["packets_fwd"], "UBIGINT")
        self.assertEqual(types["src_port"], "USMALLINT")
        f = next((self.out / "flows").glob("*.parquet"))
        schema = pq.read_schema(f)
        self.assertEqual(schema.field("src_port").metadata[b"ipfix_name"], b"sourceTransportPort")
        self.assertEqual(pq.read_metadata(f).metadata[b"moni.schema_version"], b"3")

    def test_readme_example_queries_give_the_ground_truth(self):
        queries = readme_queries()
        self.assertGreaterEqual(len(queries), 2, "README lost its DuckDB examples")

        per_vnet = self.sql(queries[0])
        want = {}
        for f in TRUTH["flows"]:
            w = want.setdefault(f["vnet"], [f["role"], 0, 0, 0])
            w[1] += 1
            w[2] += f["packets_fwd"] + f["packets_rev"]
            w[3] += f["bytes_fwd"] + f["bytes_rev"]
        self.assertEqual([(v, *w) for v, w in sorted(want.items())],
                         [tuple(r) for r in per_vnet])

        rates = self.sql(queries[1])
        busiest = {}
        for b in TRUTH["bins"]:
            if b["packets"] > busiest.get(b["vnet"], (0, 0))[0]:
                busiest[b["vnet"]] = (b["packets"], b["bytes"] * 8)
        got = {r[0]: (r[2], r[3]) for r in rates}
        self.assertEqual(set(got), {"A", "B"})
        for vnet, (packets, bits) in busiest.items():
            self.assertEqual(got[vnet][0], packets, vnet)

    def test_both_vnets_saw_the_same_traffic(self):
        rows = self.sql("""
            SELECT vnet, sum(packets), sum(bytes) FROM read_parquet('moni-out/bins/*.parquet')
            GROUP BY vnet ORDER BY vnet""")
        self.assertEqual(rows[0][1], rows[1][1])
        self.assertEqual(rows[0][1], TRUTH["packets"] // 2)


class DuckDbReadsVoipDatasets(unittest.TestCase):
    """The VoIP datasets of the paper's Table 1 miniature, read with DuckDB."""

    def test_voip_datasets_answer_the_operators_question(self):
        sample = ROOT / "samples" / "pcap" / "paper-miniature.pcap"
        truth = json.loads((ROOT / "samples" / "pcap" / "paper-miniature.truth.json").read_text())
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out"
            run = subprocess.run(
                [str(BIN), "replay", "--json", "--out", str(out), "--vnet-map", truth["vnet_map"], str(sample)],
                capture_output=True, text=True, check=True)
            summary = json.loads(run.stdout)
            db = duckdb.connect()
            for ds in summary["datasets"]:
                if ds["rows"] == 0:
                    # No alerts in this capture: no empty files either.
                    self.assertEqual(list((out / ds["dataset"]).glob("*.parquet")), [], ds["dataset"])
                    continue
                (n,) = db.execute(f"SELECT count(*) FROM read_parquet('{out}/{ds['dataset']}/*.parquet')").fetchone()
                self.assertEqual(n, ds["rows"], ds["dataset"])
            self.assertEqual({d["dataset"] for d in summary["datasets"] if d["rows"] == 0}, {"alerts"})
            # Per VNet, the worst window MOS: A suffers, B does not.
            worst = dict(db.execute(f"""
                SELECT vnet, min(mos_cq) FROM read_parquet('{out}/rtp_windows/*.parquet')
                GROUP BY vnet""").fetchall())
            self.assertLess(worst["A"], 3.6)
            self.assertGreater(worst["B"], 4.0)
            verdicts = dict(db.execute(f"""
                SELECT verdict, count(DISTINCT window_start) FROM read_parquet('{out}/rtp_compare/*.parquet')
                GROUP BY verdict""").fetchall())
            self.assertEqual(verdicts, {"equal": 3, "shadow_better": 3})
            calls = db.execute(f"SELECT DISTINCT call_id FROM read_parquet('{out}/calls/*.parquet')").fetchall()
            self.assertEqual(calls, [("table1@moni-gen",)])


if __name__ == "__main__":
    unittest.main()
