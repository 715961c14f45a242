#!/usr/bin/env bash
# Runs the paper's experiments in network namespaces (root):
#
#   sudo scripts/lab.sh shadow [--phase-secs 20] [--prometheus] [--plot FILE]
#   sudo scripts/lab.sh probe-effect [--secs 10] [--rounds 1] [--json FILE] [--plot FILE.svg]
#   sudo scripts/lab.sh cleanup
#
# Installs what it needs (iproute2, iperf3, prometheus, pyarrow, stress-ng,
# gcc), builds
# moni-node and moni-collector (release; MONI_BIN_DIR=DIR uses the binaries
# there instead, e.g. /usr/bin after installing the package) and hands over
# to samples/lab/lab.py; see its header for the topology.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${MONI_SKIP_INSTALL:-0}" = 1 ] || bash scripts/install-deps.sh
if [ -n "${MONI_BIN_DIR:-}" ]; then
  bin="$MONI_BIN_DIR"
else
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
  cargo build --release -q -p moni-node -p moni-collector
  bin="$CARGO_TARGET_DIR/release"
fi
exec python3 samples/lab/lab.py "$@" --bin-dir "$bin"
