#!/usr/bin/env bash
# Load benchmark of moni-collector: 50 simulated nodes (threads of
# bench/collector_load.py, each with its own token) upload distinct,
# realistic Parquet files (copies of real moni-node output: flows, bins,
# RTP windows and streams, calls, comparisons) concurrently for a fixed
# time, on loopback. Reports files/s, MB/s, acknowledgement latency (p50,
# p99) and the collector's peak RSS. Every acknowledged upload is fsynced in
# the Hive layout before its 201.
#
#   bench/collector.sh [NODES] [SECS]     (default 50 nodes, 20 s)
#
# Measured 2026-11-26 on the 2-core development machine (load generator and
# collector share the two cores; release build; 50 nodes, 20 s; mean file
# 103 kB): 5,603 uploads acknowledged, 0 failed; 276 files/s, 28.5 MB/s;
# acknowledgement latency p50 106 ms, p99 510 ms; collector peak RSS
# 383 MiB (1,176 MiB before ingests were bounded to 2 per core).
set -euo pipefail
cd "$(dirname "$0")/.."
NODES="${1:-50}"
SECS="${2:-20}"
bash scripts/install-deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release -q -p moni-node -p moni-collector -p moni-samples
BIN="$CARGO_TARGET_DIR/release"
WORK="$(mktemp -d)"
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
PID=""
map=100=A:production,200=B:shadow,300=rx:monitor
"$BIN/moni-node" replay --no-progress --out "$WORK/src1" --vnet-map "$map" samples/pcap/paper-miniature.pcap >/dev/null
"$BIN/moni-node" replay --no-progress --out "$WORK/src2" samples/pcap/voip-impairments.pcap >/dev/null
"$BIN/moni-gen" bench --packets 300000 --out "$WORK/mix.pcap" >/dev/null
"$BIN/moni-node" replay --no-progress --out "$WORK/src3" "$WORK/mix.pcap" >/dev/null
PER_NODE=$(( SECS * 10 ))
python3 bench/collector_load.py prepare "$WORK/files" "$NODES" "$PER_NODE" "$WORK/src1" "$WORK/src2" "$WORK/src3" >/dev/null
PORT=$(python3 -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])")
{
  printf '[server]\nlisten = "127.0.0.1:%s"\ndata_dir = "%s"\n' "$PORT" "$WORK/data"
  for i in $(seq 0 $((NODES - 1))); do
    printf '[[nodes]]\nid = "node-%03d"\ntoken = "bench-token-node-%03d-0123456789"\n' "$i" "$i"
  done
} > "$WORK/collector.toml"
"$BIN/moni-collector" serve --config "$WORK/collector.toml" &
PID=$!
for _ in $(seq 100); do python3 -c "import urllib.request;urllib.request.urlopen('http://127.0.0.1:$PORT/healthz')" 2>/dev/null && break; sleep 0.1; done
RESULT=$(python3 bench/collector_load.py "$PORT" "$NODES" "$SECS" "$WORK/files")
RSS=$(awk '/VmHWM/ {print $2}' "/proc/$PID/status")
STORED=$(find "$WORK/data" -name '*.parquet' -not -path '*/.incoming/*' | wc -l)
kill -TERM "$PID"; wait "$PID" || true; PID=""
python3 - "$RESULT" "$RSS" "$STORED" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); rss = int(sys.argv[2]) * 1024; stored = int(sys.argv[3])
print(f"{r['nodes']} nodes for {r['seconds']} s: {r['files']} uploads acknowledged ({r['errors']} failed), "
      f"mean file {r['mean_file_kb']} kB")
print(f"  {r['files_per_sec']} files/s, {r['mb_per_sec']} MB/s")
print(f"  acknowledgement latency p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, max {r['max_ms']} ms")
print(f"  collector peak RSS {rss / 2**20:.1f} MiB; {stored} partition files stored")
PY
