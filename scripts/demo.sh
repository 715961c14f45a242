#!/usr/bin/env bash
# moni's main job end to end on the bundled samples: installs libpcap if
# missing, builds moni-node, replays the Shadow-VNet sample (VNet A on VLAN
# 100 as production, VNet B on VLAN 200 as its shadow) into moni-out/, then
# the paper's Table 1 in miniature (a call through A and B under rising
# load) into moni-out-table1/, and shows the summaries, the shadow vs
# production verdicts and where the Parquet went. Finally the long-running
# probe, `moni-node run`, takes the same miniature as if it were a live
# mirror port (at 10x its pace) and the demo reads its Prometheus /metrics
# while it runs; moni-collector's comparison answers whether B is ready and
# writes the paper's Fig. 7/8 (loss and MOS per window) as SVG and an HTML
# report. Pass capture files to replay those instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --build-only
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release -q -p moni-node -p moni-collector
out="${MONI_OUT:-moni-out}"
map=100=A:production,200=B:shadow,300=rx:monitor
rm -rf "$out" "$out-table1" moni-out-live
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
  echo
  echo "== moni-node run: the miniature as a live mirror (10x pace), Prometheus on 127.0.0.1:9464"
  "$CARGO_TARGET_DIR/release/moni-node" run --config samples/config/demo-file.example.toml \
    > moni-out-live.summary.json &
  node=$!
  for t in 2 4; do
    sleep 2
    echo "-- /metrics after ${t} s (latest window MOS per VNet and role):"
    python3 - <<'PY' || true
import urllib.request
text = urllib.request.urlopen("http://127.0.0.1:9464/metrics", timeout=3).read().decode()
for line in text.splitlines():
    if line.startswith(("moni_voip_last_window_mos", "moni_vnet_packets_total", "moni_source_packets_total")):
        print("  " + line)
PY
  done
  wait "$node"
  echo "-- run summary: $(cat moni-out-live.summary.json)"
  rm -f moni-out-live.summary.json
  echo
  echo "== moni-collector compare: the operator's question, with the paper's Fig. 7/8 as a report"
  "$CARGO_TARGET_DIR/release/moni-collector" compare --data "$out-table1" \
    --production A --shadow B --monitor rx \
    --plot "$out-table1/compare.svg" --report "$out-table1/report.html"
  echo "figure: $out-table1/compare.svg"
  echo "operator's report (figure, verdicts, per-window table): $out-table1/report.html"
fi
echo
echo "Parquet written:"
find "$out" "$out-table1" moni-out-live -name '*.parquet' 2>/dev/null | sort | sed 's/^/  /'
echo "Query it with DuckDB, e.g.:"
echo "  SELECT vnet, role, count(*) FROM read_parquet('$out/flows/*.parquet') GROUP BY ALL;"
