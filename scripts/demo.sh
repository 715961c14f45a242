#!/usr/bin/env bash
# moni's main job end to end on the bundled samples: installs libpcap if
# missing, builds moni-node, replays the Shadow-VNet sample (VNet A on VLAN
# 100 as production, VNet B on VLAN 200 as its shadow) into moni-out/, then
# the paper's Table 1 in miniature (a call through A and B under rising
# load) into moni-out-table1/, and shows the summaries, the shadow vs
# production verdicts and where the Parquet went. Pass capture files to
# replay those instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --build-only
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release -q -p moni-node
out="${MONI_OUT:-moni-out}"
map=100=A:production,200=B:shadow,300=rx:monitor
rm -rf "$out" "$out-table1"
if [ $# -gt 0 ]; then
  "$CARGO_TARGET_DIR/release/moni-node" replay --out "$out" --vnet-map "$map" "$@"
else
  echo "== Shadow-VNet sample: the same traffic in VNet A and VNet B"
  "$CARGO_TARGET_DIR/release/moni-node" replay --out "$out" --vnet-map "$map" \
    samples/pcap/vlan-shadow.pcap
  echo
  echo "== The paper's Table 1 in miniature: is shadow VNet B ready for production?"
  "$CARGO_TARGET_DIR/release/moni-node" replay --out "$out-table1" --vnet-map "$map" \
    samples/pcap/paper-miniature.pcap
fi
echo
echo "Parquet written:"
find "$out" "$out-table1" -name '*.parquet' 2>/dev/null | sort | sed 's/^/  /'
echo "Query it with DuckDB, e.g.:"
echo "  SELECT vnet, role, count(*) FROM read_parquet('$out/flows/*.parquet') GROUP BY ALL;"
