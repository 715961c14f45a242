"""The shell commands the pages give, and how tests run each of them.

README and docs/ are a user's script: every command in a `sh`/`bash` code
block of README.md, CONTRIBUTING.md or docs/ must be run by a test, by
`scripts/demo.sh` (which `test_demo.py` runs) or by CI itself. The deploy
steps and the production set-up are run as written, after the Debian
package is installed (`test_packaging.py`), with the few substitutions
`adapt` makes for a machine without an operator or a running systemd.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]

# Sections whose commands test_packaging runs as written (page, heading).
RUN_AFTER_INSTALL = [
    ("README.md", "## Deploy on a mirror port"),
    ("configuration.md", "## A production set-up"),
]

# Commands run elsewhere: the exact command, and where it runs.
RUN_ELSEWHERE = {
    "./scripts/demo.sh": "tests/python/test_demo.py runs the demo",
    "./scripts/test.sh": ".ci/run calls it on every CI run",
    "cd tests/python": "scripts/test.sh discovers and runs the Python tests there",
    "MONI_NODE_BIN=../../target/debug/moni-node python3 -m unittest test_readers":
        "scripts/test.sh runs that module with every other one (unittest discover)",
    "target/release/moni-node replay --out moni-out-table1 --overwrite "
    "--vnet-map 100=A:production,200=B:shadow,300=rx:monitor samples/pcap/paper-miniature.pcap":
        "scripts/demo.sh runs this replay (its map and capture)",
}


def shell_commands(page):
    """(heading, command) of every command line in the page's sh/bash code
    blocks, continuation lines joined, comments dropped."""
    out, heading, fence, cont = [], "", None, None
    for line in page.read_text().splitlines():
        if fence is None:
            if line.startswith("#"):
                heading = line.strip()
            m = re.match(r"```(\w*)", line)
            if m:
                fence = m.group(1)
            continue
        if line.startswith("```"):
            fence = None
            continue
        if fence not in ("sh", "bash", "console", "shell"):
            continue
        text = line.split(" #", 1)[0].rstrip() if not line.lstrip().startswith("#") else ""
        if cont is not None:
            cont = cont + " " + text.strip()
        elif text.strip():
            cont = text.strip()
        else:
            continue
        if cont.endswith("\\"):
            cont = cont[:-1].rstrip()
            continue
        out.append((heading, re.sub(r"\s+", " ", cont)))
        cont = None
    return out


def after_install_commands():
    """The commands test_packaging runs after `dpkg -i`, in page order."""
    out = []
    for name, heading in RUN_AFTER_INSTALL:
        page = next(p for p in PAGES if p.name == name)
        out += [c for h, c in shell_commands(page) if h == heading]
    return out


def adapt(command, deb):
    """The command as a test runs it as root on CI's machine: no sudo, no
    interactive editor, `systemd-analyze verify` for enabling a unit (CI
    has no running systemd), the package build and install already done by
    the test with the test build's binaries (`deb`). None: nothing to run."""
    command = re.sub(r"^sudo ", "", command)
    if command.startswith("sudoedit "):
        return None  # the operator's edits; the example works as it is
    m = re.match(r"systemctl enable --now (\S+)$", command)
    if m:
        return f"systemd-analyze verify /lib/systemd/system/{m.group(1)}.service"
    if command in ("cargo install cargo-deb",
                   "cargo build --release -p moni-node -p moni-collector",
                   "cargo deb -p moni-node --no-build"):
        return None  # the test builds the package from the test build
    if command == "dpkg -i target/debian/moni_*.deb":
        return None  # the test installed `deb` already
    return command
