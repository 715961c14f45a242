"""What an operator installs: systemd units that systemd accepts, licence
files that match Cargo.toml, a changelog, and the Debian package `moni`.

The package is built with cargo-deb from the test build's binaries
(`--profile dev --no-build --strip`: a release build from scratch takes
15-20 minutes on CI's machine, packaging the binaries `cargo test` already
built takes seconds; the package's contents and scripts are the same), then
installed with `dpkg -i` (as root; CI runs as root), where the installed
`moni-node --version` must run, the installed units must pass
`systemd-analyze verify` as they are, and the example configurations under
/etc/moni must pass `check-config`; `dpkg --purge` removes it again.

`systemd-analyze verify` checks each unit in packaging/systemd/ (with
ExecStart pointing at the built binaries, as a package installs them under
/usr/bin); any message it prints fails the test, since it reports bad
directives on stderr and still exits 0.
"""

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

from doc_commands import adapt, after_install_commands

ROOT = Path(__file__).resolve().parents[2]
NODE = Path(os.environ.get("MONI_NODE_BIN", ROOT / "target" / "debug" / "moni-node"))
COLLECTOR = Path(os.environ.get("MONI_COLLECTOR_BIN", NODE.with_name("moni-collector")))
UNITS = ROOT / "packaging" / "systemd"
# What the package must install (path: mode).
PACKAGE_FILES = {
    "usr/bin/moni-node": "-rwxr-xr-x",
    "usr/bin/moni-collector": "-rwxr-xr-x",
    "lib/systemd/system/moni-node.service": "-rw-r--r--",
    "lib/systemd/system/moni-collector.service": "-rw-r--r--",
    "etc/moni/node.example.toml": "-rw-r-----",
    "etc/moni/collector.example.toml": "-rw-r-----",
    "usr/share/moni/grafana/dashboards/moni-voip.json": "-rw-r--r--",
    "usr/share/moni/grafana/dashboards/moni-fleet.json": "-rw-r--r--",
    "usr/share/moni/grafana/dashboards/moni-ids.json": "-rw-r--r--",
    "usr/share/moni/grafana/dashboards/moni-capture-health.json": "-rw-r--r--",
    "usr/share/moni/prometheus/moni.rules.yml": "-rw-r--r--",
    "usr/share/doc/moni/copyright": "-rw-r--r--",
    "usr/share/doc/moni/CHANGELOG.md": "-rw-r--r--",
}


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
        # No probe effect (issue 19): the node's unit yields CPU and disk to
        # production, the weight node.cpu_weight defaults to.
        self.assertEqual(node["CPUWeight"], ["1"])
        self.assertEqual(node["IOWeight"], ["1"])
        self.assertEqual(node["CPUSchedulingPolicy"], ["idle"])

    def test_licence_files_match_cargo_toml_and_a_changelog_exists(self):
        cargo = (ROOT / "Cargo.toml").read_text()
        licence = re.search(r'^license = "(.*)"', cargo, re.M).group(1)
        self.assertEqual(licence, "MIT OR Apache-2.0")
        self.assertIn("Permission is hereby granted", (ROOT / "LICENSE-MIT").read_text())
        self.assertIn("Apache License\n                        Version 2.0",
                      (ROOT / "LICENSE-APACHE").read_text())
        changelog = (ROOT / "CHANGELOG.md").read_text()
        self.assertIn("## Unreleased", changelog)


# What README's deploy steps and docs/configuration.md's production set-up
# create beside the package's own files (removed before the purge).
CREATED_BY_THE_STEPS = ["/etc/moni/collector.toml", "/etc/moni/node.toml",
                        "/etc/moni/node-1.token", "/etc/moni/collector.crt",
                        "/etc/moni/collector.key", "/var/lib/moni/data",
                        "/var/lib/grafana/dashboards/moni"]


class DebianPackage(unittest.TestCase):
    def run_the_pages_deploy_steps(self, deb, tmp):
        """README's "Deploy on a mirror port" and docs/configuration.md's
        "A production set-up", command by command as the pages give them
        (doc_commands.adapt: no sudo, no editor, verify for enable), in a
        directory holding the certificate and key the set-up installs."""
        (tmp / "collector.crt").write_text("certificate from the operator's CA\n")
        (tmp / "collector.key").write_text("its key\n")
        ran = 0
        for command in after_install_commands():
            cmd = adapt(command, deb)
            if cmd is None:
                continue
            run = subprocess.run(["bash", "-euo", "pipefail", "-c", cmd], cwd=tmp,
                                 capture_output=True, text=True)
            self.assertEqual((run.returncode, run.stderr.strip()), (0, ""), command)
            ran += 1
        self.assertGreaterEqual(ran, 12)
        # What they did: both configurations pass check-config, the
        # dashboards are where Grafana's provider reads them, the secrets
        # are the collector's alone.
        for binary, conf in [("moni-node", "node"), ("moni-collector", "collector")]:
            self.assertTrue(Path(f"/etc/moni/{conf}.toml").is_file(), conf)
        self.assertEqual(len(list(Path("/var/lib/grafana/dashboards/moni").glob("*.json"))), 4)
        for secret in ("/etc/moni/node-1.token", "/etc/moni/collector.key"):
            st = os.stat(secret)
            self.assertEqual((pwd.getpwuid(st.st_uid).pw_name, st.st_mode & 0o777),
                             ("moni", 0o600), secret)
        self.assertEqual(len(Path("/etc/moni/node-1.token").read_text().strip()), 44)

    def test_package_builds_installs_and_runs(self):
        if shutil.which("cargo-deb") is None:
            if os.environ.get("CI"):
                self.fail("cargo-deb missing (scripts/install-deps.sh installs it)")
            self.skipTest("cargo-deb not installed")
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, CARGO_TARGET_DIR=str(NODE.parent.parent))
            build = subprocess.run(
                ["cargo", "deb", "-p", "moni-node", "--profile", "dev", "--no-build", "--strip",
                 "--fast", "-o", tmp], cwd=ROOT, env=env, capture_output=True, text=True)
            self.assertEqual(build.returncode, 0, build.stderr)
            debs = list(Path(tmp).glob("moni_*.deb"))
            self.assertEqual(len(debs), 1, debs)
            deb = str(debs[0])
            listing = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True,
                                     check=True).stdout
            modes = {}
            for line in listing.splitlines():
                f = line.split()
                modes[f[-1].removeprefix("./")] = f[0]
            for path, mode in PACKAGE_FILES.items():
                self.assertEqual(modes.get(path), mode, path)
            fields = subprocess.run(["dpkg-deb", "-f", deb, "Package", "Depends", "Version"],
                                    capture_output=True, text=True, check=True).stdout
            self.assertIn("Package: moni\n", fields)
            self.assertIn("libpcap0.8", fields)
            version = re.search(r'^version = "(.*)"', (ROOT / "Cargo.toml").read_text(), re.M)[1]
            self.assertIn(f"Version: {version}-1", fields)
            if os.geteuid() != 0:
                if os.environ.get("CI"):
                    self.fail("CI runs as root: the package must be installed")
                self.skipTest("dpkg -i needs root")
            if subprocess.run(["dpkg", "-s", "moni"], capture_output=True).returncode == 0:
                self.skipTest("a package named moni is already installed here")
            install = subprocess.run(["dpkg", "-i", deb], capture_output=True, text=True)
            try:
                self.assertEqual(install.returncode, 0, install.stdout + install.stderr)
                run = subprocess.run(["/usr/bin/moni-node", "--version"], capture_output=True,
                                     text=True)
                self.assertEqual(run.stdout.strip(), f"moni-node {version}", run.stderr)
                run = subprocess.run(["/usr/bin/moni-collector", "--version"],
                                     capture_output=True, text=True)
                self.assertEqual(run.stdout.strip(), f"moni-collector {version}", run.stderr)
                for unit in ("moni-node", "moni-collector"):
                    v = subprocess.run(["systemd-analyze", "verify",
                                        f"/lib/systemd/system/{unit}.service"],
                                       capture_output=True, text=True)
                    self.assertEqual((v.returncode, v.stderr.strip()), (0, ""), unit)
                for binary, conf in [("moni-node", "node"), ("moni-collector", "collector")]:
                    c = subprocess.run([f"/usr/bin/{binary}", "check-config",
                                        f"/etc/moni/{conf}.example.toml"],
                                       capture_output=True, text=True)
                    self.assertEqual(c.returncode, 0, c.stderr)
                # The services' user and its state directory.
                user = subprocess.run(["id", "-un", "moni"], capture_output=True, text=True)
                self.assertEqual(user.stdout.strip(), "moni")
                st = os.stat("/var/lib/moni")
                self.assertEqual(pwd.getpwuid(st.st_uid).pw_name, "moni")
                self.run_the_pages_deploy_steps(deb, Path(tmp))
            finally:
                for f in CREATED_BY_THE_STEPS:
                    subprocess.run(["rm", "-rf", f])
                purge = subprocess.run(["dpkg", "--purge", "moni"], capture_output=True,
                                       text=True)
            self.assertEqual(purge.returncode, 0, purge.stderr)
            self.assertFalse(Path("/usr/bin/moni-node").exists())
            self.assertFalse(Path("/var/lib/moni").exists())


if __name__ == "__main__":
    unittest.main()
