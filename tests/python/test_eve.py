"""moni's eve.json as a drop-in for Suricata's.

Every line moni writes must validate against Suricata's own EVE schema
(`corpus/eve/schema.json`, read with the `jsonschema` package), name both
ends (`src_ip`, `dest_ip`), keep `flow_id` exact in a double (below 2^53)
and equal to the `flow_id` of a row in the `flows` dataset, carry the
rule's `metadata` as Suricata writes it (an object of string arrays), and
carry Suricata's `flow {}` (the flow's counts so far) on signature
alerts, and `eve.json` must exist even when nothing alerts. A port scan and a rule
with metadata written here always run; with the corpus (required when
MONI_REQUIRE_CORPUS=1) the real attack captures and the ET scan rules run
too.
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import jsonschema
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pcapgen import write_syn_scan  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
NODE = Path(os.environ.get("MONI_NODE_BIN", ROOT / "target" / "debug" / "moni-node"))
CORPUS = ROOT.parent / "shared" / "corpus"
if not CORPUS.is_dir():
    CORPUS = Path("/work/shared/corpus")
SCHEMA = CORPUS / "eve" / "schema.json"
REQUIRE = os.environ.get("MONI_REQUIRE_CORPUS") == "1"

RULE = ('alert tcp any any -> any 5 (msg:"moni test SYN to port 5"; flags:S; '
        'metadata: created_at 2010_07_30, former_category SCAN, signature_severity Minor; '
        'classtype:attempted-recon; sid:1000001; rev:2;)\n')


def need_corpus(test):
    if not SCHEMA.is_file():
        if REQUIRE:
            raise AssertionError(f"MONI_REQUIRE_CORPUS=1 but {SCHEMA} is missing")
        test.skipTest("corpus not present")


class EveIsADropIn(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = Path(cls.tmp.name)
        cls.validator = None
        if SCHEMA.is_file():
            schema = json.loads(SCHEMA.read_text())
            cls.validator = jsonschema.validators.validator_for(schema)(schema)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def replay(self, name, pcap, *args):
        out = self.dir / name
        subprocess.run([str(NODE), "replay", "--json", "--out", str(out), *map(str, args), str(pcap)],
                       capture_output=True, text=True, check=True)
        eve = out / "eve.json"
        self.assertTrue(eve.is_file(), f"{name}: no eve.json")
        lines = [json.loads(l) for l in eve.read_text().splitlines()]
        return out, lines

    def check_lines(self, name, out, lines, pcap):
        """The checks every EVE line must pass; returns how many lines."""
        flows = {}
        if list((out / "flows").glob("*.parquet")):
            flows = {r["flow_id"]: r for r in pq.read_table(out / "flows").to_pylist()}
        flow_ids = set(flows)
        for e in lines:
            if self.validator is not None:
                errors = [f"{list(x.absolute_path)}: {x.message}"
                          for x in self.validator.iter_errors(e)]
                self.assertEqual(errors, [], f"{name}: {e}")
            self.assertEqual(e["event_type"], "alert")
            self.assertIn("src_ip", e, f"{name}: {e}")
            self.assertIn("dest_ip", e, f"{name}: {e}")
            self.assertEqual(e["in_iface"], Path(pcap).name)
            self.assertEqual(e["pkt_src"], "wire/pcap")
            md = e["alert"]["metadata"]
            self.assertTrue(all(isinstance(v, list) and all(isinstance(s, str) for s in v)
                                for v in md.values()), md)
            self.assertEqual(len(md["moni_kind"]), 1)
            if "flow_id" in e:
                self.assertLess(e["flow_id"], 2 ** 53)
                self.assertIn(e["flow_id"], flow_ids, f"{name}: alert's flow not in flows")
            if md["moni_kind"] == ["signature"]:
                self.assertIn("flow_id", e)
                self.assertIn(e["direction"], ("to_server", "to_client"))
                # flow {}: the counts so far, at most the flow's final ones.
                f = e["flow"]
                final = flows[e["flow_id"]]
                self.assertGreaterEqual(f["pkts_toserver"] + f["pkts_toclient"], 1)
                self.assertLessEqual(f["pkts_toserver"], final["packets_fwd"])
                self.assertLessEqual(f["pkts_toclient"], final["packets_rev"])
                self.assertLessEqual(f["start"], e["timestamp"])
        return len(lines)

    def test_scan_and_rule_alerts_are_suricata_shaped(self):
        pcap = self.dir / "scan.pcap"
        write_syn_scan(pcap)
        rules = self.dir / "test.rules"
        rules.write_text(RULE)
        out, lines = self.replay("scan", pcap, "--rules", rules)
        self.assertEqual(self.check_lines("scan", out, lines, pcap), len(lines))
        kinds = sorted(e["alert"]["metadata"]["moni_kind"][0] for e in lines)
        self.assertEqual(kinds, ["port_scan", "signature"])
        sig = next(e for e in lines if e["alert"]["signature_id"] == 1000001)
        md = sig["alert"]["metadata"]
        self.assertEqual(md["created_at"], ["2010_07_30"])
        self.assertEqual(md["former_category"], ["SCAN"])
        self.assertEqual(md["signature_severity"], ["Minor"])
        self.assertEqual((sig["src_ip"], sig["dest_ip"], sig["dest_port"]), ("10.0.0.1", "10.0.0.2", 5))
        self.assertEqual(sig["direction"], "to_server")
        # The flow as the alerting SYN left it: its first packet, 54 bytes,
        # and its 5-tuple in the initiator's direction (Suricata 7).
        self.assertEqual(sig["flow"], {"pkts_toserver": 1, "pkts_toclient": 0,
                                       "bytes_toserver": 54, "bytes_toclient": 0,
                                       "start": sig["timestamp"],
                                       "src_ip": "10.0.0.1", "dest_ip": "10.0.0.2",
                                       "src_port": sig["src_port"], "dest_port": 5})
        self.assertEqual(sig["alert"]["rev"], 2)
        # Suricata's pcap_cnt: the SYN to port 5 is the capture's 5th packet.
        self.assertEqual(sig["pcap_cnt"], 5)
        self.assertNotIn("packet", sig)
        scan = next(e for e in lines if e["alert"]["signature_id"] != 1000001)
        self.assertEqual(scan["alert"]["source"], {"ip": "10.0.0.1"})
        self.assertEqual(scan["alert"]["target"], {"ip": "10.0.0.2"})
        if self.validator is None:
            need_corpus(self)

    def test_alert_packet_carries_the_frame_as_suricata_does(self):
        """`[ids] alert_packet`: Suricata's `packet` (the frame, base64)
        and `packet_info.linktype`, valid against its schema."""
        import base64
        import struct
        pcap = self.dir / "scan-packet.pcap"
        write_syn_scan(pcap)
        rules = self.dir / "packet.rules"
        rules.write_text(RULE)
        config = self.dir / "packet.toml"
        config.write_text("[ids]\nalert_packet = true\n")
        out, lines = self.replay("packet", pcap, "--config", config, "--rules", rules)
        self.check_lines("packet", out, lines, pcap)
        sig = next(e for e in lines if e["alert"]["signature_id"] == 1000001)
        # The 5th record of the pcap, read independently of moni.
        data, at, frames = pcap.read_bytes(), 24, []
        while at < len(data):
            incl = struct.unpack_from("<I", data, at + 8)[0]
            frames.append(data[at + 16:at + 16 + incl])
            at += 16 + incl
        self.assertEqual(sig["pcap_cnt"], 5)
        self.assertEqual(base64.b64decode(sig["packet"]), frames[4])
        self.assertEqual(sig["packet_info"], {"linktype": 1})
        # Not repeated in moni's own details.
        self.assertNotIn("packet", json.loads(sig["alert"]["metadata"]["moni_details"][0]))
        if self.validator is None:
            need_corpus(self)

    def test_eve_json_exists_when_nothing_alerts(self):
        _, lines = self.replay("clean", ROOT / "samples" / "pcap" / "vlan-shadow.pcap")
        self.assertEqual(lines, [])

    def test_corpus_attacks_validate_against_suricatas_schema(self):
        need_corpus(self)
        attack = CORPUS / "attack"
        runs = [(f.stem, f, []) for f in sorted(attack.iterdir())]
        runs.append(("synscan-et", attack / "synscan.pcapng",
                     ["--rules", CORPUS / "rules" / "emerging-scan.rules",
                      "--var", "HOME_NET=[64.13.134.52/32]", "--var", "EXTERNAL_NET=any"]))
        total, floods, with_flow = 0, 0, 0
        for name, pcap, args in runs:
            out, lines = self.replay(name, pcap, *args)
            total += self.check_lines(name, out, lines, pcap)
            floods += sum(e["alert"]["metadata"]["moni_kind"][0].endswith("_flood") for e in lines)
            with_flow += sum("flow_id" in e for e in lines)
        print(f"\nEVE: {total} lines from {len(runs)} corpus replays valid against "
              f"Suricata's schema ({floods} flood alerts, {with_flow} with flow_id)")
        self.assertGreater(floods, 0)
        self.assertGreater(with_flow, 0)


if __name__ == "__main__":
    unittest.main()
