#!/usr/bin/env bash
# Runs every moni test: formatting, clippy with warnings denied, the Rust
# unit/integration/property tests, and the DuckDB/pyarrow tests of the
# Parquet output. Installs missing system and Python packages first.
set -euo pipefail
# (pipefail makes a failing unittest fail the script through the tee below)
cd "$(dirname "$0")/.."
[ "${MONI_SKIP_INSTALL:-0}" = 1 ] || bash scripts/install-deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace

echo "== python: DuckDB and pyarrow read moni's Parquet"
# `cargo test` above built the binary (integration tests run it); building
# it alone would resolve features differently and recompile parquet.
test -x "$CARGO_TARGET_DIR/debug/moni-node"
test -x "$CARGO_TARGET_DIR/debug/moni-collector"
# The lab measures the probe effect of moni as operators run it: the
# release build (what `scripts/lab.sh` and the package build). The test
# build's node spends 2-3 times the CPU per captured packet, and on a
# 2-core machine that CPU is production's (docs/lab.md).
cargo build --release -q -p moni-node -p moni-collector
log=$(mktemp)
MONI_NODE_BIN="$CARGO_TARGET_DIR/debug/moni-node" \
MONI_COLLECTOR_BIN="$CARGO_TARGET_DIR/debug/moni-collector" \
MONI_LAB_BIN_DIR="$CARGO_TARGET_DIR/release" \
  python3 -m unittest discover -v -s tests/python -p 'test_*.py' 2>&1 | tee "$log"
ran=$(sed -n 's/^Ran \([0-9]*\) tests\{0,1\} in .*/\1/p' "$log")
rm -f "$log"
echo "python: ${ran:-0} passed, 0 failed"
