"""The Prometheus rules shipped with moni: promtool checks them and runs
their unit tests (the shadow-better-than-production alert fires after 5
minutes of lead, not before; capture loss alerts)."""

import shutil
import subprocess
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "grafana" / "rules"


class PrometheusRules(unittest.TestCase):
    def setUp(self):
        if shutil.which("promtool") is None:
            self.fail("promtool not installed (scripts/install-deps.sh installs prometheus)")

    def test_rules_check(self):
        r = subprocess.run(["promtool", "check", "rules", str(RULES / "moni.rules.yml")],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("SUCCESS: 6 rules found", r.stdout)

    def test_rules_unit_tests(self):
        r = subprocess.run(["promtool", "test", "rules", "moni.rules.test.yml"],
                           capture_output=True, text=True, cwd=RULES)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("SUCCESS", r.stdout)


if __name__ == "__main__":
    unittest.main()
