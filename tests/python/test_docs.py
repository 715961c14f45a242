"""README as a front door, docs/ as the reference.

README keeps to what a first-time user needs (quick start, deploying on a
mirror port, analysing the data, the paper's result) and links into docs/
for the reference and to ARCHITECTURE.md/CONTRIBUTING.md for developers.
Every relative link in README, docs/ and the developer pages must name a
file that exists and, with a `#fragment`, a heading in it (GitHub's
anchors); every page of docs/ must be linked from README; the figure README
shows must be there and be SVG; the deployment guide's paths must be the
package's; and every flag the pages give a `moni-node`/`moni-collector`
command must be one that command's `--help` lists.
"""

import os
import re
import subprocess
import unittest
from pathlib import Path

import doc_commands

ROOT = Path(__file__).resolve().parents[2]
NODE = Path(os.environ.get("MONI_NODE_BIN", ROOT / "target" / "debug" / "moni-node"))
COLLECTOR = Path(os.environ.get("MONI_COLLECTOR_BIN", NODE.with_name("moni-collector")))
COMMAND = re.compile(r"(moni-node|moni-collector) "
                     r"(replay|run|check-config|check-rules|serve|compare)\b(.*)")
PAGES = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", ROOT / "CONTRIBUTING.md",
         *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(page):
    """GitHub's heading anchors of a Markdown page."""
    out, fence = set(), False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fence = not fence
        if fence or not line.startswith("#"):
            continue
        text = line.lstrip("#").strip().lower()
        text = re.sub(r"[^\w\- ]", "", text)
        out.add(text.replace(" ", "-"))
    return out


def documented_commands():
    """(page, binary, subcommand, flags) of every moni command written in a
    code block (continuation lines joined) or an inline code span."""
    out = []
    for page in PAGES:
        text = page.read_text()
        spans = []
        for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
            for line in block.splitlines():
                if spans and (line.startswith((" ", "\t")) or spans[-1].rstrip().endswith("\\")):
                    spans[-1] = spans[-1].rstrip().rstrip("\\") + " " + line.strip()
                else:
                    spans.append(line)
        spans += [s.replace("\n", " ") for s in
                  re.findall(r"`([^`]+)`", re.sub(r"```.*?```", "", text, flags=re.S))]
        for span in spans:
            for m in COMMAND.finditer(span):
                rest = re.split(r"\s\|\s|;|&&|#", m.group(3))[0]
                out.append((page.name, m.group(1), m.group(2),
                            set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", rest))))
    return out


class Docs(unittest.TestCase):
    def test_every_relative_link_resolves(self):
        broken = []
        for page in PAGES:
            text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
            for target in LINK.findall(text):
                if re.match(r"[a-z]+:", target):
                    continue
                path, _, frag = target.partition("#")
                dest = (page.parent / path).resolve() if path else page
                if not dest.exists():
                    broken.append(f"{page.relative_to(ROOT)}: {target} (no file)")
                elif frag and dest.suffix == ".md" and frag not in anchors(dest):
                    broken.append(f"{page.relative_to(ROOT)}: {target} (no heading)")
        self.assertEqual(broken, [])

    def test_readme_is_a_front_door_linking_every_reference_page(self):
        readme = (ROOT / "README.md").read_text()
        headings = [l for l in readme.splitlines() if l.startswith("## ")]
        self.assertEqual(headings, [
            "## Quick start", "## Deploy on a mirror port", "## Analyse the data",
            "## The paper's result: shadow VNet B before the switch", "## Reference",
            "## For developers"])
        for page in sorted((ROOT / "docs").glob("*.md")):
            self.assertIn(f"](docs/{page.name})", readme, page.name)
        for page in ("ARCHITECTURE.md", "CONTRIBUTING.md"):
            self.assertIn(f"]({page})", readme)
        self.assertLess(len(readme.splitlines()), 350)

    def test_the_lab_figure_is_beside_the_papers_numbers(self):
        readme = (ROOT / "README.md").read_text()
        m = re.search(r"!\[[^\]]*\]\((docs/img/[^)]+\.svg)\)", readme)
        self.assertTrue(m, "README shows no lab figure")
        svg = (ROOT / m.group(1)).read_text()
        self.assertIn("<svg", svg)
        self.assertIn("MOS", svg)
        # The paper's numbers in the table beside it.
        for mos in ("4.34", "4.16", "1.45", "4.38"):
            self.assertIn(f"({mos})", readme)

    def test_the_probe_effect_box_plot_is_beside_the_papers_fig5(self):
        readme = (ROOT / "README.md").read_text()
        svg = (ROOT / "docs" / "img" / "lab-probe-effect.svg").read_text()
        self.assertIn("](docs/img/lab-probe-effect.svg)", readme)
        self.assertTrue(svg.startswith("<svg"))
        for phase in ("forward", "mirror", "monitor_overloaded", "monitor_unisolated"):
            self.assertIn(phase, svg)
            self.assertIn(f"`{phase}`", readme)
        # The paper's Fig. 5 numbers in the table beside it.
        for kpps in ("961.6", "953", "896", "180"):
            self.assertIn(kpps, readme)

    def test_the_deployment_guide_matches_the_package_and_provisioning(self):
        readme = (ROOT / "README.md").read_text()
        guide = readme.split("## Deploy on a mirror port", 1)[1].split("\n## ", 1)[0]
        # Grafana: the dashboards go where the shipped provider looks.
        provider = (ROOT / "grafana" / "provisioning" / "dashboards" / "moni.yml").read_text()
        path = re.search(r"^\s*path: (\S+)", provider, re.M).group(1)
        self.assertIn(f"sudo cp /usr/share/moni/grafana/dashboards/*.json {path}/", guide)
        # Every installed path the guide names is one the package installs.
        cargo = (ROOT / "moni-node" / "Cargo.toml").read_text()
        for installed in ("/etc/moni/collector.example.toml", "/etc/moni/node.example.toml",
                          "/usr/share/moni/prometheus/moni.rules.yml"):
            self.assertIn(installed, guide)
            self.assertIn(installed.lstrip("/").rsplit("/", 1)[0], cargo)
        self.assertIn("cargo deb -p moni-node --no-build", guide)

    def test_every_flag_the_docs_give_a_command_exists(self):
        """A documented flag the binary does not know fails here, so the
        usage lines in README and docs/ cannot rot."""
        helps, unknown, flags = {}, [], 0
        for page, binary, sub, used in documented_commands():
            if (binary, sub) not in helps:
                exe = NODE if binary == "moni-node" else COLLECTOR
                run = subprocess.run([str(exe), sub, "--help"], capture_output=True, text=True)
                self.assertEqual(run.returncode, 0, f"{binary} {sub}: {run.stderr}")
                helps[binary, sub] = set(re.findall(r"--[a-z][a-z-]*", run.stdout))
            flags += len(used)
            unknown += [f"{page}: {binary} {sub} {f}" for f in sorted(used - helps[binary, sub])]
        self.assertEqual(unknown, [])
        self.assertGreater(flags, 25)
        self.assertGreaterEqual(len(helps), 6)

    def test_every_repository_path_the_pages_name_exists(self):
        """Scripts, samples, configs, dashboards, tests named in the text
        (source files under */src/ are left out while the code is being
        reorganised into modules)."""
        missing, named = [], 0
        pattern = re.compile(r"(?<![\w/.-])((?:samples|scripts|bench|grafana|packaging|tests|"
                             r"moni-node|moni-collector|analyzers|docs)/[\w./-]*[\w/])")
        for page in PAGES:
            for path in pattern.findall(page.read_text()):
                if "*" in path or "/src/" in path:
                    continue
                named += 1
                if not (ROOT / path.rstrip("/")).exists():
                    missing.append(f"{page.relative_to(ROOT)}: {path}")
        self.assertEqual(missing, [])
        self.assertGreater(named, 50)


    def test_every_shell_command_the_pages_give_is_run_somewhere(self):
        """A command in a sh block is run after the package is installed
        (test_packaging, the deploy steps), or listed in
        doc_commands.RUN_ELSEWHERE with where it runs; a new command fails
        here until a test runs it."""
        after = set(doc_commands.after_install_commands())
        missing = []
        for page in doc_commands.PAGES:
            for _, command in doc_commands.shell_commands(page):
                if command not in after and command not in doc_commands.RUN_ELSEWHERE:
                    missing.append(f"{page.name}: {command}")
        self.assertEqual(missing, [])
        self.assertGreaterEqual(len(after), 14)
        # What RUN_ELSEWHERE says is true.
        demo = (ROOT / "scripts" / "demo.sh").read_text()
        self.assertIn('--vnet-map "$map" samples/pcap/paper-miniature.pcap', demo)
        self.assertIn("100=A:production,200=B:shadow,300=rx:monitor", demo)
        self.assertIn("scripts/test.sh", (ROOT / ".ci" / "run").read_text())
        test_sh = (ROOT / "scripts" / "test.sh").read_text()
        self.assertIn("python3 -m unittest discover -v -s tests/python", test_sh)
        for command in doc_commands.RUN_ELSEWHERE:
            self.assertTrue(any(command == c for p in doc_commands.PAGES
                                for _, c in doc_commands.shell_commands(p)),
                            f"RUN_ELSEWHERE lists a command no page gives: {command}")


if __name__ == "__main__":
    unittest.main()
