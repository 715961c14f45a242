#!/usr/bin/env bash
# moni's main job end to end on the bundled samples: installs libpcap,
# pandas and pyarrow if missing, builds moni-node and moni-collector,
# replays the Shadow-VNet sample (VNet A on VLAN 100 as production, VNet B
# on VLAN 200 as its shadow) into moni-out/, then the paper's Table 1 in miniature (a call
# through A and B under rising load) into moni-out-table1/, and shows the
# summaries, the shadow vs production verdicts and where the Parquet went.
# Then the long-running probe, `moni-node run`, takes the same miniature as
# if it were a live mirror port (at 10x its pace) and ships its Parquet to
# a `moni-collector serve` on this machine; the demo reads the node's
# Prometheus /metrics while it runs, then opens the collected store
# (moni-data/) with pandas. It ends with the operator's report:
# moni-collector's comparison answers whether B is ready and writes the
# paper's Fig. 7/8 (loss and MOS per window) as SVG and an HTML report.
# Pass capture files to replay those instead.
#
# Environment: MONI_BIN_DIR=DIR uses the moni-node and moni-collector found
# there (e.g. /usr/bin after installing the Debian package, or a debug
# build) instead of building release binaries; MONI_OUT (moni-out) is the
# prefix of the output directories, MONI_DATA (moni-data) the collector's
# store; MONI_METRICS_PORT (9464) and MONI_COLLECTOR_PORT (9470) the ports.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${MONI_SKIP_INSTALL:-0}" != 1 ]; then
  bash scripts/install-deps.sh --build-only
  # The demo reads the collected store with pandas (and pyarrow under it).
  python3 -c "import pandas, pyarrow" 2>/dev/null || bash scripts/install-deps.sh --python pandas pyarrow
fi
if [ -n "${MONI_BIN_DIR:-}" ]; then
  bin="$MONI_BIN_DIR"
else
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
  cargo build --release -q -p moni-node -p moni-collector
  bin="$CARGO_TARGET_DIR/release"
fi
out="${MONI_OUT:-moni-out}"
data="${MONI_DATA:-moni-data}"
metrics_port="${MONI_METRICS_PORT:-9464}"
collector_port="${MONI_COLLECTOR_PORT:-9470}"
map=100=A:production,200=B:shadow,300=rx:monitor
rm -rf "$out" "$out-table1" "$out-live" "$data"
if [ $# -gt 0 ]; then
  "$bin/moni-node" replay --out "$out" --vnet-map "$map" "$@"
  echo
  echo "Parquet written:"
  find "$out" -name '*.parquet' | sort | sed 's/^/  /'
  exit 0
fi

echo "== Shadow-VNet sample: the same traffic in VNet A and VNet B"
"$bin/moni-node" replay --out "$out" --vnet-map "$map" samples/pcap/vlan-shadow.pcap
echo
echo "== The paper's Table 1 in miniature: is shadow VNet B ready for production?"
"$bin/moni-node" replay --out "$out-table1" --vnet-map "$map" samples/pcap/paper-miniature.pcap
echo

echo "== moni-collector serve: the central store, on 127.0.0.1:$collector_port, into $data/"
mkdir -p "$out-live"
token="demo-token-0123456789abcdef"
cat > "$out-live.collector.toml" <<EOF
[server]
listen = "127.0.0.1:$collector_port"
data_dir = "$data"
[[nodes]]
id = "demo"
token = "$token"
EOF
"$bin/moni-collector" serve --config "$out-live.collector.toml" 2> "$out-live.collector.log" &
collector=$!
trap 'kill "$collector" 2>/dev/null || true' EXIT
# The node's configuration: the demo example, with this run's ports and
# directory, shipping to the collector above.
sed -e "s|127.0.0.1:9464|127.0.0.1:$metrics_port|" -e "s|^dir = \"moni-out-live\"|dir = \"$out-live\"|" \
  samples/config/demo-file.example.toml > "$out-live.node.toml"
cat >> "$out-live.node.toml" <<EOF

[ship]
collectors = ["http://127.0.0.1:$collector_port"]
token = "$token"
keep_shipped = true
EOF

echo
echo "== moni-node run: the miniature as a live mirror (10x pace), Prometheus on 127.0.0.1:$metrics_port"
"$bin/moni-node" run --config "$out-live.node.toml" > "$out-live.summary.json" &
node=$!
for t in 2 4; do
  sleep 2
  echo "-- /metrics after ${t} s (latest window MOS per VNet and role):"
  MONI_METRICS_PORT="$metrics_port" python3 - <<'PY' || true
import os, urllib.request
port = os.environ["MONI_METRICS_PORT"]
try:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3).read().decode()
except OSError:
    text = ""
    print("  (no answer: the node has already finished the file)")
for line in text.splitlines():
    if line.startswith(("moni_voip_last_window_mos", "moni_vnet_packets_total", "moni_source_packets_total")):
        print("  " + line)
PY
done
wait "$node"
echo "-- run summary: $(cat "$out-live.summary.json")"
kill "$collector"
wait "$collector" || true
trap - EXIT
rm -f "$out-live.summary.json" "$out-live.collector.toml" "$out-live.node.toml" "$out-live.collector.log"

echo
echo "== The collected store ($data/), opened with pandas: MOS-CQ per VNet over its RTP windows"
echo "   (count of windows, their mean, the worst window; the replay summaries above give each"
echo "   stream's MOS over the whole stream, so their min is higher)"
MONI_DATA="$data" python3 - <<'PY'
import os
import pandas as pd
data = os.environ["MONI_DATA"]
df = pd.read_parquet(f"{data}/rtp_windows")
print(f"  {len(df)} RTP windows from node(s) {', '.join(sorted(df['node'].astype(str).unique()))}")
per = df.groupby(["vnet", "role"], observed=True)["mos_cq"].agg(["count", "mean", "min"])
per.columns = ["windows", "mean", "worst window"]
print(per.round(2).to_string())
flows = pd.read_parquet(f"{data}/flows")
print(f"  flows: {len(flows)} rows, VNets {', '.join(sorted(flows['vnet'].astype(str).unique()))}")
PY

echo
echo "Parquet written:"
find "$out" "$out-table1" "$out-live" -name '*.parquet' 2>/dev/null | sort | sed 's/^/  /'
echo "Query it with DuckDB, e.g.:"
echo "  SELECT vnet, role, count(*) FROM read_parquet('$out/flows/*.parquet') GROUP BY ALL;"

echo
echo "== moni-collector compare: the operator's question, with the paper's Fig. 7/8 as a report"
"$bin/moni-collector" compare --data "$out-table1" \
  --production A --shadow B --monitor rx \
  --plot "$out-table1/compare.svg" --report "$out-table1/report.html"
echo "figure: $out-table1/compare.svg"
echo "operator's report (figure, verdicts, per-window table): $out-table1/report.html"
