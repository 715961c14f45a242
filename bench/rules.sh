#!/usr/bin/env bash
# Benchmark: the cost of signatures. moni-node replay of one generated
# capture with 0, 100 and 1,000 content rules loaded, next to the libpcap
# read floor (tcpdump) and, when it is installed, Suricata with the same
# 1,000 rules on the same file, all in one run.
#
#   bench/rules.sh [PACKETS]        (default 2,000,000)
#
# The rules are generated (bench/gen_rules.py, fixed seed): TCP and UDP
# content rules with 6-12 byte patterns, a fifth nocase, a fifth with a
# second content chained by distance/within, some with port lists, so the
# Aho-Corasick prefilter and the verifier both work. Goal of the IDS issue:
# 1,000 rules cost less than half of the no-rule throughput (ratio >= 0.5).
# Timing is the wall clock of the whole command, best of 5 for moni-node (3
# for tcpdump, Suricata once); CPU seconds are the least of the same runs.
#
# Measured 2026-11-26 on the 2-core development machine (2,000,000 IMIX
# packets, ~575 MB of payload; Suricata is not packaged for this Debian),
# three consecutive runs of this script:
#   tcpdump -w /dev/null       0.35 s / 0.35 s / 0.34 s
#   moni-node, no rules        0.49 s / 0.47 s / 0.40 s
#   moni-node, 100 rules       0.73 s / 0.75 s / 0.70 s
#   moni-node, 1,000 rules     0.76 s / 0.76 s / 0.74 s
#   1,000 rules / no rules: 0.64x / 0.62x / 0.54x of the throughput (goal
#   0.5x); per CPU second (user + system, all threads): 0.63x / 0.60x / 0.56x.
# The no-rule time alone varies by +-15% on this VM; the 1,000-rule time
# hardly does. How: replay runs the signatures on their own thread, behind
# the engine (each batch goes on with its packets' VNet and flow), and reads
# plain pcap records itself in 256 KiB chunks (64 KiB since) instead of libpcap's 4 KiB
# stdio reads, which freed about 0.3 CPU seconds here. Before those two, the
# same script gave 0.40x and 0.52x. The prefilter is one pass of our own DFA
# over each payload (four interleaved lanes, u16 states), about 0.65 ns per
# payload byte, so the cost does not grow from 100 to 1,000 rules; every
# rule here is `any any -> any any`, so every payload byte is scanned.
# Variants measured with this script on the way: the aho-corasick crate's
# overlapping DFA 0.34-0.42x (its default NFA 0.15x), its leftmost DFA with
# restarts 0.34x, a bigram filter and Wu-Manber 0.10x (the generator's
# payload is one repeated byte, which defeats skip-based matchers), our DFA
# with one lane 0.36x; premultiplied u32 states and a bounds-check-free
# table measured no faster (the loop is bound by the load latency).
set -euo pipefail
cd "$(dirname "$0")/.."
PACKETS="${1:-2000000}"
bash scripts/install-deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release -q -p moni-node -p moni-samples
BIN="$CARGO_TARGET_DIR/release"
WORK="${BENCH_DIR:-$(mktemp -d)}"
trap '[ -z "${BENCH_DIR:-}" ] && rm -rf "$WORK"' EXIT
CAP="$WORK/bench-$PACKETS.pcap"
[ -f "$CAP" ] || "$BIN/moni-gen" bench --packets "$PACKETS" --out "$CAP" >/dev/null
cat "$CAP" >/dev/null
for n in 100 1000; do python3 bench/gen_rules.py "$n" > "$WORK/bench-$n.rules"; done
printf '[ids]\nenabled = false\n' > "$WORK/sigs-only.toml"

source bench/lib.sh

T_TCPDUMP=$(secs 3 tcpdump -nr "$CAP" -w /dev/null)
REPLAY=("$BIN/moni-node" replay --config "$WORK/sigs-only.toml" --no-progress)
read -r T_0 C_0 < <(timed 5 "${REPLAY[@]}" --out "$WORK/o0" "$CAP")
T_100=$(secs 5 "${REPLAY[@]}" --rules "$WORK/bench-100.rules" --out "$WORK/o100" "$CAP")
read -r T_1000 C_1000 < <(timed 5 "${REPLAY[@]}" --rules "$WORK/bench-1000.rules" --out "$WORK/o1000" "$CAP")
T_SURI=""
if command -v suricata >/dev/null; then
  mkdir -p "$WORK/suri"
  T_SURI=$(secs 1 suricata -r "$CAP" -S "$WORK/bench-1000.rules" -k none -l "$WORK/suri" --runmode single)
fi
"$BIN/moni-node" check-rules "$WORK/bench-1000.rules" | tail -1

python3 - "$PACKETS" "$T_TCPDUMP" "$T_0" "$T_100" "$T_1000" "$C_0" "$C_1000" "$T_SURI" <<'PY'
import sys
n = int(sys.argv[1])
tcpdump, t0, t100, t1000, c0, c1000 = map(float, sys.argv[2:8])
suri = float(sys.argv[8]) if sys.argv[8] else None
pps = lambda t: n / t
print(f"capture: {n:,} packets")
rows = [("tcpdump -w /dev/null", tcpdump), ("moni-node, no rules", t0),
        ("moni-node, 100 rules", t100), ("moni-node, 1,000 rules", t1000)]
if suri:
    rows.append(("suricata, 1,000 rules", suri))
for name, t in rows:
    print(f"  {name:24s} {t:8.2f} s  {pps(t):14,.0f} packets/s")
print(f"1,000 rules / no rules:     {t0 / t1000:.2f}x of the throughput  (goal >= 0.5x)")
print(f"100 rules / no rules:       {t0 / t100:.2f}x")
print(f"CPU seconds (user + system, all threads): no rules {c0:.2f}, 1,000 rules {c1000:.2f}"
      f" -> {c0 / c1000:.2f}x of the throughput per CPU second")
print(f"moni-node 1,000 rules / tcpdump floor: {tcpdump / t1000:.2f}x")
if suri:
    print(f"moni-node / suricata (1,000 rules, single thread): {suri / t1000:.1f}x")
PY
