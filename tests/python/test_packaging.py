"""What an operator installs: systemd units that systemd accepts, licence
files that match Cargo.toml, a changelog.

`systemd-analyze verify` checks each unit in packaging/systemd/ (with
ExecStart pointing at the built binaries, as a package installs them under
/usr/bin); any message it prints fails the test, since it reports bad
directives on stderr and still exits 0.
"""

import os
import re
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NODE = Path(os.environ.get("MONI_NODE_BIN", ROOT / "target" / "debug" / "moni-node"))
COLLECTOR = Path(os.environ.get("MONI_COLLECTOR_BIN", NODE.with_name("moni-collector")))
UNITS = ROOT / "packaging" / "systemd"


def directives(text):
    out = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            k, v = line.split("=", 1)
            out.setdefault(k.strip(), []).append(v.strip())
    return out


class Packaging(unittest.TestCase):
    def test_units_pass_systemd_analyze_verify(self):
        if shutil.which("systemd-analyze") is None:
            if os.environ.get("CI"):
                self.fail("systemd-analyze missing (scripts/install-deps.sh installs systemd)")
            self.skipTest("systemd-analyze not installed")
        with tempfile.TemporaryDirectory() as tmp:
            units = []
            for name, binary in [("moni-node", NODE), ("moni-collector", COLLECTOR)]:
                text = (UNITS / f"{name}.service").read_text()
                text = text.replace(f"/usr/bin/{name}", str(binary))
                unit = Path(tmp) / f"{name}.service"
                unit.write_text(text)
                units.append(str(unit))
            run = subprocess.run(["systemd-analyze", "verify", *units],
                                 capture_output=True, text=True)
            self.assertEqual(run.returncode, 0, run.stderr)
            self.assertEqual(run.stderr.strip(), "", "systemd-analyze complained")

    def test_units_run_confined_with_only_the_node_capturing(self):
        node = directives((UNITS / "moni-node.service").read_text())
        coll = directives((UNITS / "moni-collector.service").read_text())
        for d in (node, coll):
            self.assertEqual(d["User"], ["moni"])
            self.assertEqual(d["ProtectSystem"], ["strict"])
            self.assertEqual(d["Restart"], ["on-failure"])
            self.assertIn("/var/lib/moni", d["ReadWritePaths"])
        self.assertEqual(node["AmbientCapabilities"], ["CAP_NET_RAW CAP_NET_ADMIN"])
        self.assertNotIn("AmbientCapabilities", coll)
        self.assertEqual(coll["CapabilityBoundingSet"], [""])
        # The config each unit names is the example's install path.
        self.assertIn("--config /etc/moni/node.toml", node["ExecStart"][0])
        self.assertIn("--config /etc/moni/collector.toml", coll["ExecStart"][0])

    def test_licence_files_match_cargo_toml_and_a_changelog_exists(self):
        cargo = (ROOT / "Cargo.toml").read_text()
        licence = re.search(r'^license = "(.*)"', cargo, re.M).group(1)
        self.assertEqual(licence, "MIT OR Apache-2.0")
        self.assertIn("Permission is hereby granted", (ROOT / "LICENSE-MIT").read_text())
        self.assertIn("Apache License\n                        Version 2.0",
                      (ROOT / "LICENSE-APACHE").read_text())
        changelog = (ROOT / "CHANGELOG.md").read_text()
        self.assertIn("## Unreleased", changelog)


if __name__ == "__main__":
    unittest.main()
