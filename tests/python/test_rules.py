"""The Prometheus rules and Grafana dashboards shipped with moni: promtool
checks the rules and runs their unit tests (the shadow-better-than-
production alert fires after 5 minutes of lead, not before, and names its
node, production_vnet and shadow_vnet; capture loss, a saturated
capture thread, Parquet writes failing for 5 minutes, a source down
for 2 minutes, a node the collector has heard nothing from for 15 minutes
and refused uploads alert), and every
dashboard query reads counters through rate() or increase() only (a raw
counter resets with the node and says nothing per time)."""

import json
import re
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "grafana" / "rules"
DASHBOARDS = ROOT / "grafana" / "dashboards"
# Prometheus' counter series: counters end in _total; a histogram's
# _bucket/_count/_sum series are counters too.
COUNTER = re.compile(r"\b((?:moni|process)_[a-z0-9_]*(?:_total|_bucket|_count|_sum))\b")


class PrometheusRules(unittest.TestCase):
    def setUp(self):
        if shutil.which("promtool") is None:
            self.fail("promtool not installed (scripts/install-deps.sh installs prometheus)")

    def test_rules_check(self):
        r = subprocess.run(["promtool", "check", "rules", str(RULES / "moni.rules.yml")],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("SUCCESS: 10 rules found", r.stdout)

    def test_rules_unit_tests(self):
        r = subprocess.run(["promtool", "test", "rules", "moni.rules.test.yml"],
                           capture_output=True, text=True, cwd=RULES)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("SUCCESS", r.stdout)

    def test_readmes_prometheus_configuration_is_valid(self):
        """The scrape and rule configuration of README's deployment guide,
        with the rules' installed path pointed at this checkout's file."""
        readme = (ROOT / "README.md").read_text()
        blocks = re.findall(r"```yaml\n(.*?)```", readme, re.S)
        conf = [b for b in blocks if "scrape_configs:" in b]
        self.assertEqual(len(conf), 1, "README's Prometheus configuration")
        self.assertIn("/usr/share/moni/prometheus/moni.rules.yml", conf[0])
        with tempfile.TemporaryDirectory() as tmp:
            f = Path(tmp) / "prometheus.yml"
            f.write_text(conf[0].replace("/usr/share/moni/prometheus/moni.rules.yml",
                                         str(RULES / "moni.rules.yml")))
            r = subprocess.run(["promtool", "check", "config", str(f)],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("SUCCESS: 10 rules found", r.stdout)


def dashboard_queries():
    for f in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(f.read_text())["panels"]:
            for t in panel.get("targets", []):
                yield f.name, panel["title"], t["expr"]


class GrafanaDashboards(unittest.TestCase):
    def test_counters_are_read_through_rate_or_increase(self):
        bare, counted = [], 0
        for name, title, expr in dashboard_queries():
            for m in COUNTER.finditer(expr):
                counted += 1
                if not re.search(r"\b(rate|irate|increase)\(\s*$", expr[:m.start()]):
                    bare.append(f"{name} / {title}: {m.group(1)} in {expr}")
        self.assertEqual(bare, [])
        self.assertGreater(counted, 15)

    def test_the_shadow_lead_panel_pairs_vnets_as_the_rule_does(self):
        lead = [(t, e) for n, t, e in dashboard_queries() if t == "MOS: shadow minus production"]
        self.assertEqual(len(lead), 1)
        expr = lead[0][1]
        for label in ("shadow_vnet", "production_vnet", "on (node)"):
            self.assertIn(label, expr)
        rules = (RULES / "moni.rules.yml").read_text()
        self.assertIn("record: node_pair:moni_voip_shadow_lead_mos", rules)

    def test_alert_totals_are_per_time_range(self):
        exprs = [e for n, t, e in dashboard_queries() if "moni_ids_alerts_total" in e]
        self.assertTrue(exprs)
        self.assertTrue(all("rate(" in e or "increase(" in e for e in exprs), exprs)


if __name__ == "__main__":
    unittest.main()
