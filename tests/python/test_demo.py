"""scripts/demo.sh, run as a first-time user would, with the built binaries.

The demo (MONI_BIN_DIR points it at the test build instead of building
release binaries) must replay both samples, run the live probe shipping to
a real moni-collector, open the collected store with pandas (a reader that
is not DuckDB), and end with the operator's HTML report, which must exist
and hold the figure and the per-window table.
"""

import os
import re
import socket
import subprocess
import tempfile
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NODE = Path(os.environ.get("MONI_NODE_BIN", ROOT / "target" / "debug" / "moni-node"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Demo(unittest.TestCase):
    def test_demo_opens_the_collected_store_with_pandas_and_ends_with_the_report(self):
        with tempfile.TemporaryDirectory() as tmp:
            out, data = Path(tmp) / "moni-out", Path(tmp) / "moni-data"
            env = dict(os.environ, MONI_SKIP_INSTALL="1", MONI_BIN_DIR=str(NODE.parent),
                       MONI_OUT=str(out), MONI_DATA=str(data),
                       MONI_METRICS_PORT=str(free_port()), MONI_COLLECTOR_PORT=str(free_port()))
            run = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh")], env=env,
                                 capture_output=True, text=True, timeout=300)
            self.assertEqual(run.returncode, 0, run.stdout[-3000:] + run.stderr[-3000:])
            text = run.stdout
            # The live node shipped every file, and pandas read them back
            # from the collector's store: one row per VNet and role.
            self.assertIn('"files_rejected":0', text)
            self.assertRegex(text, r'"files_shipped":[1-9]')
            section = text.split("opened with pandas", 1)[1]
            m = re.search(r"(\d+) RTP windows from node\(s\) demo", section)
            self.assertTrue(m, section[:2000])
            self.assertGreater(int(m.group(1)), 0)
            for vnet, role in [("A", "production"), ("B", "shadow"), ("rx", "monitor")]:
                self.assertRegex(section, rf"\n{vnet}\s+{role}\s+\d+\s+\d\.\d+\s+\d\.\d+")
            self.assertTrue(list((data / "rtp_windows").rglob("*.parquet")))
            # It ends with the operator's report.
            last = text.strip().splitlines()[-1]
            self.assertTrue(last.endswith("report.html"), last)
            report = Path(last.split(": ", 1)[1])
            self.assertEqual(report, out.parent / "moni-out-table1" / "report.html")
            html = report.read_text()
            self.assertIn("<svg", html)
            self.assertIn("shadow_better", html)



if __name__ == "__main__":
    unittest.main()
