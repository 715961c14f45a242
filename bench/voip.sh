#!/usr/bin/env bash
# Benchmark: moni-node replay (SIP/SDP, RTP statistics, windows, E-model,
# Parquet on) against tshark's RTP stream analysis on the same generated
# capture, in one run.
#
#   bench/voip.sh [CALLS] [SECS]      (default 2000 concurrent calls, 15 s:
#                                      3,006,000 packets)
#
# Goal of the VoIP issue: moni-node >= 30x tshark's throughput. moni-node's
# time is the best of 3 runs, tshark's a single run (it is slow). Every run
# replays with --overwrite (before 2026-11-30 the 2nd and 3rd runs failed on
# the existing output directory, so "best of 3" could be a failed run).
#
# Measured 2026-11-26 on the 2-core development machine (3,006,000 packets,
# 4,000 streams), after the decode fast path: moni-node 0.47 s (6.40 Mpps),
# tshark 17.9 s (168 kpps): 38.1x (goal 30x: met). With the IDS detectors
# on as well: 0.51 s vs 17.2 s, 33.5x; another run 0.58 s, 29.4x (this VM's
# runs vary by +-15%). Before the fast path (2026-11-25): 0.85 s, 26.1x.
# Jitter-buffer models (issue 12): their share is measured on CPU time
# (user + system of the replay, best of 5), which other jobs on a shared
# machine disturb far less than wall time. 2026-11-30, BENCH_PROFILE=debug,
# 2 cores shared with two other helpers' builds: before the shared unwrap
# 20.0% (best) / 12.7% (median); after it (one unwrap per packet for all
# models, fixed models skip the adaptive estimates, the inferred clock
# cached) 6.2% / 5.9% (perf task-clock, 5 interleaved rounds); this script
# in the same session: 8.6% (1.35 s vs 1.27 s CPU), replay 1.54 s wall,
# tshark 32.2 s (20.8x with the debug build). The release figure is the
# lead's to take.
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS="${1:-2000}"
SECS="${2:-15}"
bash scripts/install-deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
# BENCH_PROFILE=debug measures the (optimised) dev build instead, where a
# release build would be too costly (shared machines).
PROFILE="${BENCH_PROFILE:-release}"
if [ "$PROFILE" = release ]; then
  cargo build --release -q -p moni-node -p moni-samples
else
  cargo build -q -p moni-node -p moni-samples
fi
BIN="$CARGO_TARGET_DIR/$PROFILE"
WORK="${BENCH_DIR:-$(mktemp -d)}"
trap '[ -z "${BENCH_DIR:-}" ] && rm -rf "$WORK"' EXIT
CAP="$WORK/calls-$CALLS-$SECS.pcap"
[ -f "$CAP" ] || "$BIN/moni-gen" calls --calls "$CALLS" --secs "$SECS" --out "$CAP" >/dev/null
PACKETS=$(capinfos -c -M "$CAP" | awk '/Number of packets/ {print $NF}')
cat "$CAP" >/dev/null

t() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N); python3 -c "print($t1-$t0)"; }
best3() { local a b c; a=$(t "$@"); b=$(t "$@"); c=$(t "$@"); python3 -c "print(min($a, $b, $c))"; }
T_MONI=$(best3 "$BIN/moni-node" replay --no-progress --overwrite --out "$WORK/out" "$CAP")
# The jitter-buffer models' cost: the default three against one model, on
# CPU time (user + system), best of 5 interleaved runs.
printf '[rtp]\njitter_buffers = ["adaptive"]\n' >"$WORK/one-model.toml"
cpu() { python3 -c 'import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
r = resource.getrusage(resource.RUSAGE_CHILDREN); print(r.ru_utime + r.ru_stime)' "$@"; }
C3=(); C1=()
for _ in 1 2 3 4 5; do
  C3+=("$(cpu "$BIN/moni-node" replay --no-progress --overwrite --out "$WORK/out3" "$CAP")")
  C1+=("$(cpu "$BIN/moni-node" replay --no-progress --overwrite --config "$WORK/one-model.toml" --out "$WORK/out1" "$CAP")")
done
CPU_THREE=$(python3 -c "import sys; print(min(map(float, sys.argv[1:])))" "${C3[@]}")
CPU_ONE=$(python3 -c "import sys; print(min(map(float, sys.argv[1:])))" "${C1[@]}")
STREAMS=$("$BIN/moni-node" replay --json --no-progress --overwrite --out "$WORK/out2" "$CAP" | python3 -c "import json,sys; print(json.load(sys.stdin)['voip']['streams'])")
T_TSHARK=$(t tshark -n -r "$CAP" -q -o rtp.heuristic_rtp:TRUE -z rtp,streams)

python3 - "$PACKETS" "$CALLS" "$STREAMS" "$T_MONI" "$T_TSHARK" "$CPU_THREE" "$CPU_ONE" <<'PY'
import sys
n, calls, streams = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
moni, tshark = float(sys.argv[4]), float(sys.argv[5])
cpu3, cpu1 = float(sys.argv[6]), float(sys.argv[7])
print(f"capture: {n:,} packets, {calls} concurrent calls; moni found {streams} RTP streams")
print(f"  moni-node replay                  {moni:8.2f} s  {n / moni:12,.0f} packets/s")
print(f"  tshark -z rtp,streams (heuristic) {tshark:8.2f} s  {n / tshark:12,.0f} packets/s")
print(f"moni-node / tshark: {tshark / moni:.1f}x  (goal >= 30x)")
# Per-model cost c from C3 - C1 = 2c (CPU time); the three models' share of C3.
c = max(cpu3 - cpu1, 0.0) / 2
print(f"three jitter-buffer models: {3 * c / cpu3 * 100:.1f}% of replay CPU time "
      f"(goal <= 15%; 3 models {cpu3:.2f} s vs adaptive only {cpu1:.2f} s CPU, best of 5)")
PY
