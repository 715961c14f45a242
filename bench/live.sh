#!/usr/bin/env bash
# Benchmark of the live probe (root; builds its own network namespaces and
# deletes them on exit):
#
#  1. Zero-drop rate of ONE worker on a live veth mirror: tcpreplay sends a
#     generated TCP/UDP mix onto the production veth at rising rates; tc
#     mirrors every packet to the monitor namespace where `moni-node run`
#     (release, workers = 1) captures it. A step passes when kernel and
#     queue drops stay 0. Printed next to `moni-node replay`'s offline rate
#     on the same capture (the foundation issue's figure).
#  2. Probe effect: iperf3 between the production namespaces without the
#     mirror and moni-node, then with both, as a ratio. UDP at a fixed
#     offered rate (what production sends must still arrive) and TCP at
#     full speed (CPU contention on this small machine).
#
#   sudo bench/live.sh              (NICE=19 SNAPLEN=128 bench/live.sh to try
#                                     the isolation settings)
#
# Goal of the live-probe issue: production keeps >= 98% of its throughput.
#
# Measured 2026-11-26 on the 2-core development machine (sender, kernel
# mirror and probe share the two cores):
#  - one worker, live mirror, zero kernel and queue drops at every step up
#    to what tcpreplay reaches here: ~285,000-290,000 packets/s (a lower
#    bound: the sender, not moni, is the limit); offline replay of the same
#    capture 3.8-4.4 Mpps.
#  - UDP offered at 1 Gbit/s: 100.0-100.1% delivered with the mirror and
#    moni-node running (goal >= 98%: met).
#  - TCP at full speed (CPU-bound on the shared cores): 62.7% with the
#    defaults, 88.7% with NICE=19 SNAPLEN=256; the mirror alone costs
#    nothing measurable (run-to-run noise of the baseline is +-25%).
# Measured 2026-12-06 (session 43, another 2-vCPU VM, release build of
# 623088f, defaults, after the capture path's rework and `tcp_payload`):
#  - one worker, zero kernel and queue drops at every step up to what
#    tcpreplay reaches here: 629,666 packets/s (asked for 800,000; again
#    the sender is the limit); offline replay of the capture 5.26 Mpps.
#  - UDP offered at 1 Gbit/s: 99.9% delivered with the mirror and
#    moni-node running.
#  - TCP at full speed: 41.4 Gbit/s without, 43.8 with the mirror alone
#    (105.6%), 42.6 with the mirror and moni-node (102.8%; 1.38 M packets
#    captured, no drops). docs/lab.md has the 64-byte forwarding limit.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
need=()
command -v tcpreplay >/dev/null || need+=(tcpreplay)
command -v iperf3 >/dev/null || need+=(iperf3)
command -v tc >/dev/null || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then apt-get update -q && apt-get install -y -q "${need[@]}"; fi
bash scripts/install-deps.sh --build-only
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release -q -p moni-node -p moni-samples
BIN="$CARGO_TARGET_DIR/release"
WORK="$(mktemp -d)"
T="mb$$"
S="prod-src-$T"; D="prod-dst-$T"; M="moni-$T"
cleanup() {
  for ns in "$S" "$D" "$M"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

ip netns add "$S"; ip netns add "$D"; ip netns add "$M"
for n in "$S" "$D" "$M"; do
  ip netns exec "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip -n "$n" link set lo up
done
ip link add p0 netns "$S" type veth peer name p1 netns "$D"
ip link add m0 netns "$S" type veth peer name m1 netns "$M"
ip -n "$S" addr add 10.77.0.1/24 dev p0; ip -n "$D" addr add 10.77.0.2/24 dev p1
ip -n "$S" link set p0 up; ip -n "$S" link set m0 up; ip -n "$D" link set p1 up; ip -n "$M" link set m1 up
ip netns exec "$S" tc qdisc add dev p0 clsact
mirror_on() {
  ip netns exec "$S" tc filter add dev p0 egress protocol all u32 match u32 0 0 action mirred egress mirror dev m0
  ip netns exec "$S" tc filter add dev p0 ingress protocol all u32 match u32 0 0 action mirred egress mirror dev m0
}
mirror_off() {
  ip netns exec "$S" tc filter del dev p0 egress 2>/dev/null || true
  ip netns exec "$S" tc filter del dev p0 ingress 2>/dev/null || true
}

cat > "$WORK/node.toml" <<TOML
[node]
name = "bench"
workers = 1
queue_batches = 1024
nice = ${NICE:-0}
[metrics]
listen = "127.0.0.1:19464"
[[sources]]
interface = "m1"
buffer_bytes = 134217728
snaplen = ${SNAPLEN:-262144}
[output]
dir = "$WORK/out"
TOML
start_node() {
  ip netns exec "$M" "$BIN/moni-node" run --config "$WORK/node.toml" > "$WORK/node.json" 2> "$WORK/node.err" &
  NODE=$!
  for _ in $(seq 100); do
    ip netns exec "$M" python3 -c "import urllib.request;urllib.request.urlopen('http://127.0.0.1:19464/healthz',timeout=1)" 2>/dev/null && return
    sleep 0.1
  done
  echo "moni-node did not start"; cat "$WORK/node.err"; exit 1
}
stop_node() { kill -TERM "$NODE"; wait "$NODE" || true; }
# packets delivered, kernel + interface drops, queue drops
counters() {
  ip netns exec "$M" python3 - <<'PY'
import urllib.request
t = urllib.request.urlopen("http://127.0.0.1:19464/metrics", timeout=3).read().decode()
v = {}
for line in t.splitlines():
    if line.startswith("moni_source_"):
        name, val = line.split("{")[0], float(line.rsplit(" ", 1)[1])
        v[name] = v.get(name, 0) + val
print(int(v.get("moni_source_packets_total", 0)),
      int(v.get("moni_source_kernel_drops_total", 0) + v.get("moni_source_interface_drops_total", 0)),
      int(v.get("moni_source_queue_drops_total", 0)))
PY
}

echo "== 1. One worker on a live veth mirror"
CAP="$WORK/mix.pcap"
"$BIN/moni-gen" bench --packets 2000000 --out "$CAP" >/dev/null
OFF=$( { /usr/bin/time -f "%e" "$BIN/moni-node" replay --no-progress --out "$WORK/off" "$CAP" >/dev/null; } 2>&1 | tail -1)
OFFLINE=$(python3 -c "print(int(2000000 / $OFF))")
echo "offline: moni-node replay of the same capture: $OFFLINE packets/s"
mirror_on
start_node
BEST=0
for RATE in 50000 100000 200000 300000 400000 600000 800000; do
  N=$((RATE * 3)); [ "$N" -gt 2000000 ] && N=2000000
  read -r p0 k0 q0 < <(counters)
  ACH=$(ip netns exec "$S" tcpreplay -q -i p0 --pps="$RATE" --limit="$N" "$CAP" 2>&1 | sed -n 's/.*Rated: [0-9.]* Bps, [0-9.]* Mbps, \([0-9.]*\) pps.*/\1/p' | head -1)
  sleep 1
  read -r p1 k1 q1 < <(counters)
  DROPS=$(( (k1 - k0) + (q1 - q0) ))
  echo "  offered $RATE pps (tcpreplay achieved ${ACH:-?} pps): delivered $((p1 - p0)), kernel drops $((k1 - k0)), queue drops $((q1 - q0))"
  if [ "$DROPS" -eq 0 ] && [ $((p1 - p0)) -ge "$N" ]; then
    BEST=${ACH%.*}
  else
    break
  fi
done
stop_node
echo "one worker, zero drops, live: ${BEST} packets/s (offline replay: $OFFLINE packets/s)"

echo "== 2. Production throughput without / with the mirror and moni-node"
ip netns exec "$D" iperf3 -s -D -p 5201 --logfile "$WORK/iperf-s.log"
sleep 0.5
iperf() { ip netns exec "$S" iperf3 -c 10.77.0.2 -p 5201 -t 5 -J "$@" | python3 -c "
import json,sys; j=json.load(sys.stdin); e=j['end']
print(e['sum_received']['bits_per_second'] if 'sum_received' in e else e['sum']['bits_per_second'])"; }
udp_bps() { ip netns exec "$S" iperf3 -c 10.77.0.2 -p 5201 -t 5 -u -b 1G -l 1400 -J | python3 -c "
import json,sys; j=json.load(sys.stdin); s=j['end']['sum']; print(s['bits_per_second'] * (1 - s['lost_percent'] / 100))"; }
mirror_off
TCP0=$(iperf); UDP0=$(udp_bps)
mirror_on
TCPM=$(iperf)
start_node
TCP1=$(iperf); UDP1=$(udp_bps)
read -r p k q < <(counters)
stop_node
python3 - "$TCP0" "$TCP1" "$UDP0" "$UDP1" "$p" "$k" "$q" "$BEST" "$OFFLINE" "$TCPM" <<'PY'
import sys
t0, t1, u0, u1 = map(float, sys.argv[1:5])
p, k, q, best, off = map(int, sys.argv[5:10])
tm = float(sys.argv[10])
print(f"UDP 1 Gbit/s offered: {u0/1e6:8.1f} Mbit/s delivered without, {u1/1e6:8.1f} with -> {100*u1/u0:5.1f}% (goal >= 98%)")
print(f"TCP full speed:       {t0/1e9:8.2f} Gbit/s without, {tm/1e9:8.2f} with the mirror alone ({100*tm/t0:5.1f}%), "
      f"{t1/1e9:8.2f} with mirror and moni-node -> {100*t1/t0:5.1f}%")
print(f"moni-node meanwhile: {p} packets captured, {k} kernel/interface drops, {q} queue drops")
print(f"one worker live zero-drop: {best} pps; offline replay: {off} pps ({best/off:.2f}x)")
PY
