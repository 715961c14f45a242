"""moni's EVE alerts compared field by field with a real Suricata's.

Runs Suricata (Debian's package; 7.0 from bookworm-backports, installed by
scripts/install-deps.sh) and moni-node on the same corpus attack capture
(`attack/synscan.pcapng`, nmap's SYN scan) with the same rules (the ET
scan rules, HOME_NET the scanned host) and pairs their alert lines by
signature, time and 5-tuple. For each pair, every field Suricata writes
must be in moni's line with the same JSON type, and with the same value
except `flow_id` (each engine's own hash: moni's equals the `flow_id` of
its `flows` dataset instead, tested in test_eve.py). The fields one side
has and the other lacks are listed below with the reason; a difference not
listed fails, and so does a listed one that is gone (so the list stays
true).
"""

import json
import os
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NODE = Path(os.environ.get("MONI_NODE_BIN", ROOT / "target" / "debug" / "moni-node"))
CORPUS = ROOT.parent / "shared" / "corpus"
if not CORPUS.is_dir():
    CORPUS = Path("/work/shared/corpus")
REQUIRE = os.environ.get("MONI_REQUIRE_CORPUS") == "1"
PCAP = CORPUS / "attack" / "synscan.pcapng"
RULES = CORPUS / "rules" / "emerging-scan.rules"
VARS = {"HOME_NET": "[64.13.134.52/32]", "EXTERNAL_NET": "any"}

# Suricata's fields moni does not write (path: why).
ONLY_SURICATA = {}
# moni's fields Suricata does not write for a pcap file (path: why). All of
# them are fields of Suricata's EVE schema (test_eve.py validates them).
ONLY_MONI = {
    "host": "the node's name (Suricata writes it when sensor-name is set)",
    "in_iface": "the capture file's name, or the interface in `run` "
                "(Suricata writes the interface in live mode only)",
}
# Fields whose values differ by design (same JSON type still required).
OWN_VALUES = {"flow_id"}
# Keys moni adds to alert.metadata, beside the rule's own.
MONI_METADATA = {"moni_vnet", "moni_kind", "moni_start", "moni_details"}


def flatten(obj, prefix=""):
    """{'a.b': value} for every leaf of a JSON object (metadata kept whole)."""
    out = {}
    for k, v in obj.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and path != "alert.metadata":
            out.update(flatten(v, path + "."))
        else:
            out[path] = v
    return out


def key(e):
    return (e["alert"]["signature_id"], e["timestamp"], e["src_ip"], e.get("src_port"),
            e["dest_ip"], e.get("dest_port"), e["proto"])


class EveMatchesSuricata(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = Path(cls.tmp.name)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def run_suricata(self):
        out = self.dir / "suricata"
        out.mkdir()
        cmd = ["suricata", "-r", str(PCAP), "-S", str(RULES), "-l", str(out), "-k", "none",
               "--runmode", "single"]
        for name, value in VARS.items():
            cmd += ["--set", f"vars.address-groups.{name}={value}"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        lines = [json.loads(l) for l in (out / "eve.json").read_text().splitlines()]
        return [e for e in lines if e["event_type"] == "alert"]

    def run_moni(self):
        out = self.dir / "moni"
        cmd = [str(NODE), "replay", "--json", "--out", str(out), "--rules", str(RULES)]
        for name, value in VARS.items():
            cmd += ["--var", f"{name}={value}"]
        subprocess.run(cmd + [str(PCAP)], capture_output=True, text=True, check=True)
        lines = [json.loads(l) for l in (out / "eve.json").read_text().splitlines()]
        # moni's behavioural detectors (the port scan itself) have no
        # counterpart in Suricata's run: compare the rules' alerts.
        return [e for e in lines if e["alert"]["metadata"]["moni_kind"] == ["signature"]]

    def test_alerts_match_suricata_field_by_field(self):
        if shutil.which("suricata") is None:
            self.fail("suricata not installed (scripts/install-deps.sh installs it)")
        if not PCAP.is_file():
            if REQUIRE:
                self.fail(f"MONI_REQUIRE_CORPUS=1 but {PCAP} is missing")
            self.skipTest("corpus not present")
        version = subprocess.run(["suricata", "-V"], capture_output=True, text=True).stdout.strip()
        suricata = {key(e): e for e in self.run_suricata()}
        moni = {key(e): e for e in self.run_moni()}
        self.assertGreaterEqual(len(suricata), 5, "Suricata's run lost its alerts")
        self.assertEqual(sorted(moni), sorted(suricata), "the same alerts, at the same packets")

        only_suricata, only_moni = set(), set()
        for k, s in suricata.items():
            m = moni[k]
            fs, fm = flatten(s), flatten(m)
            only_suricata |= set(fs) - set(fm)
            only_moni |= set(fm) - set(fs)
            for path in set(fs) & set(fm):
                a, b = fs[path], fm[path]
                self.assertIs(type(b), type(a), f"{k} {path}: {a!r} vs {b!r}")
                if path == "alert.metadata":
                    self.assertEqual({n: v for n, v in b.items() if n not in MONI_METADATA}, a,
                                     f"{k}: rule metadata")
                elif path not in OWN_VALUES:
                    self.assertEqual(b, a, f"{k} {path}")
            self.assertLess(m["flow_id"], 2 ** 53)
        self.assertEqual(only_suricata, set(ONLY_SURICATA), "Suricata's fields moni lacks")
        self.assertEqual(only_moni, set(ONLY_MONI), "moni's fields Suricata lacks")
        print(f"\n{version}: {len(suricata)} alerts on {PCAP.name} equal field by field "
              f"(but {', '.join(sorted(ONLY_SURICATA)) or 'nothing'}; moni adds {', '.join(sorted(ONLY_MONI))})")


if __name__ == "__main__":
    unittest.main()
