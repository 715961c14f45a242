#!/usr/bin/env bash
# moni's main job end to end on a bundled sample: installs libpcap if
# missing, builds moni-node, replays the Shadow-VNet sample (VNet A on VLAN
# 100 as production, VNet B on VLAN 200 as its shadow) and shows the summary
# and where the Parquet went. Pass other capture files to replay those.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --build-only
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release -q -p moni-node
out="${MONI_OUT:-moni-out}"
rm -rf "$out"
if [ $# -eq 0 ]; then set -- samples/pcap/vlan-shadow.pcap; fi
"$CARGO_TARGET_DIR/release/moni-node" replay --out "$out" \
  --vnet-map 100=A:production,200=B:shadow "$@"
echo
echo "Parquet written:"
find "$out" -name '*.parquet' | sort | sed 's/^/  /'
echo "Query it with DuckDB, e.g.:"
echo "  SELECT vnet, role, count(*) FROM read_parquet('$out/flows/*.parquet') GROUP BY ALL;"
