#!/usr/bin/env python3
"""The paper's experiments on one Linux machine, with network namespaces,
real kernel forwarding and the real moni-node and moni-collector.

    lab.py shadow        [--phase-secs 20] [--prometheus] [--json FILE] [--plot FILE]
    lab.py probe-effect  [--secs 10] [--rounds 1] [--json FILE] [--plot FILE.svg]
    lab.py cleanup       (removes what a killed lab left behind)

Needs root, iproute2 (ip, tc with htb, u32 and mirred) and, for
probe-effect, iperf3, stress-ng and gcc. Every namespace the lab makes is named `ml<PID>-*`
and deleted on exit, on an exception and on SIGINT/SIGTERM; deleting a
namespace deletes its veths and qdiscs with it.

Shadow VNet substrate (Fig. 6 of the paper):

    vs (VoIP sender)  ─┐                ┌─ ai ══ VNet A ══ ao ─┐                ┌─ vr (VoIP receiver)
                       ├─ n1 (entry) ───┤     n2 (transfer:    ├─ n3 (exit) ────┤
    bs (background)   ─┘  duplicates    └─ bi ══ VNet B ══ bo ─┘  production    └─ br (background sink)
                          with mirred         htb 20 Mbit/s,      VNet only;
                                              QoS class in B)     mirrors both
                                                                  exits to mo
    mo (Moni VNode): moni-node on ma (VNet A exit), mb (VNet B exit) and
    mr (what the VoIP receiver gets), shipping to moni-collector.

Each "VNet" is a chain of veth links joined by tc redirects (this kernel
has no 802.1Q module, so one veth per VNet plays the VLAN). Switching
production is one tc change at n3.

Probe effect (Fig. 5 of the paper), 64-byte frames at the forwarding limit:

    src (Node 1: blast senders  ── eth0 ══ s ── fw (Node 2: kernel IPv4 ── d ══ eth0 ── dst (Node 3)
         on the other CPUs, and the │          forwarding, threaded NAPI
         switch: tc mirred on eth0, │          on the last CPU without the
         both directions, to one    │          disk's interrupts: the
         of m, n, u)                │          forwarding core)
                                    m   n   u
                                    ║   ║   ║
                                    m   n   u ── mo (Moni VNode: moni-node run on m, isolated,
                                                 stress-ng in its cgroup; nothing on n; a
                                                 second moni-node on u, unisolated)

Phases: forward (no mirror), mirror (to n: nothing captures), monitor
(to m: moni-node at the [node] defaults, i.e. the shipped service
settings), monitor_overloaded (plus stress-ng CPU burners on every CPU
and direct-I/O disk writers, in that node's cgroup and scheduling class),
monitor_unisolated (to u: the node with cpu_weight = 0, nice = 0,
sched_idle = false and its stress-ng beside it). One sender run per
round; the phases alternate in 1 s windows (the mirror moved, the
overloads stopped and continued), so that the host's drifts fall on all
of them alike, and each phase's rate against forward's is the median of
its windows' against the forward window of the same cycle (forward sits
between monitor and monitor_overloaded). Then TCP at full speed (iperf3, one stream) in alternating
windows: production alone, the mirror alone (to n) and the mirror to m.
The monitor's ports receive in threaded-NAPI kernel threads that the lab
gives the node's cgroup and scheduling class (the paper's monitor domain
with a NIC of its own; n's in the idle class). Production's rate is
counted per window on fw's egress d.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PREFIX = f"ml{os.getpid() % 100000}-"
VOICE_SRC, VOICE_DST, BG_SRC, BG_DST = "10.90.0.1", "10.90.0.2", "10.90.0.3", "10.90.0.4"
LINK_MBIT = 20
# Table 1 of the paper, and the MOS it reports (Fig. 8 and text).
PHASES = [
    # production, active VNets, QoS in B, load
    dict(prod="A", active="A", qos=False, load="L"),
    dict(prod="A", active="A", qos=False, load="L/H"),
    dict(prod="A", active="AB", qos=False, load="H"),
    dict(prod="A", active="AB", qos=True, load="H"),
    dict(prod="B", active="AB", qos=True, load="H"),
    dict(prod="B", active="B", qos=True, load="H"),
]
PAPER_MOS = {1: {"A": 4.34}, 2: {"A": 4.16}, 4: {"A": 1.45, "B": 4.38}, 5: {"B": 4.38}}

created = []  # namespaces to delete
shields = []  # lab cgroups to remove (LabCgroup)


def sh(cmd, check=True, ns=None, capture=False):
    if ns:
        cmd = ["ip", "netns", "exec", ns] + cmd
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r.stdout if capture else r


def netns(name):
    full = PREFIX + name
    sh(["ip", "netns", "add", full])
    created.append(full)
    sh(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
        "net.ipv6.conf.default.disable_ipv6=1"], ns=full)
    sh(["ip", "link", "set", "lo", "up"], ns=full)
    return full


def veth(ns1, dev1, ns2, dev2):
    sh(["ip", "link", "add", "name", dev1, "netns", ns1, "type", "veth", "peer", "name", dev2,
        "netns", ns2])
    for ns, dev in ((ns1, dev1), (ns2, dev2)):
        sh(["ip", "link", "set", "dev", dev, "up"], ns=ns)
        # No offloads: frames stay packet sized, as on a real link.
        sh(["ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off"], ns=ns, check=False)


def mac(ns, dev):
    out = sh(["ip", "-j", "link", "show", "dev", dev], ns=ns, capture=True)
    return json.loads(out)[0]["address"]


def tc(ns, *args, check=True):
    return sh(["tc", *args], ns=ns, check=check)


def cleanup(every=False):
    """Deletes the lab's namespaces; with `every`, all `ml<PID>-*` ones
    (what killed labs left behind)."""
    names = list(created)
    if every:
        out = sh(["ip", "netns", "list"], capture=True, check=False) or ""
        names = [w[0] for w in (l.split() for l in out.splitlines())
                 if w and re.match(r"ml\d+-", w[0])]
    for n in names:
        # Processes left inside would keep the namespace's devices alive.
        pids = sh(["ip", "netns", "pids", n], capture=True, check=False) or ""
        for p in pids.split():
            try:
                os.kill(int(p), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        sh(["ip", "netns", "del", n], check=False)
    created.clear()
    for s in shields:
        s.close()
    shields.clear()


def on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


# ---------------------------------------------------------------- traffic

def rtp_header(seq, ts, ssrc):
    return struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)


def voice(secs, dst):
    """A G.711 call: SIP INVITE with SDP, then PCMU RTP every 20 ms
    (160-byte payload, 80 kbit/s on the wire), then BYE."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 5060))
    m = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    m.bind(("0.0.0.0", 40000))
    call = f"lab-{os.getpid()}@{VOICE_SRC}"
    sdp = (f"v=0\r\no=lab 1 1 IN IP4 {VOICE_SRC}\r\ns=lab\r\nc=IN IP4 {VOICE_SRC}\r\n"
           f"t=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n")

    def sip(method, cseq, body=""):
        ctype = "Content-Type: application/sdp\r\n" if body else ""
        msg = (f"{method} sip:bob@{dst} SIP/2.0\r\nVia: SIP/2.0/UDP {VOICE_SRC}:5060;branch=z9hG4bK{cseq}\r\n"
               f"From: <sip:alice@{VOICE_SRC}>;tag=1\r\nTo: <sip:bob@{dst}>\r\nCall-ID: {call}\r\n"
               f"CSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n{ctype}Content-Length: {len(body)}\r\n\r\n{body}")
        s.sendto(msg.encode(), (dst, 5060))

    sip("INVITE", 1, sdp)
    seq, ts, ssrc = random.randrange(65536), random.randrange(2**32), random.randrange(2**32)
    payload = bytes([0xFF]) * 160
    t0 = time.monotonic()
    n = 0
    while True:
        due = t0 + n * 0.020
        if due - t0 >= secs:
            break
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        m.sendto(rtp_header(seq + n, ts + 160 * n, ssrc) + payload, (dst, 40002))
        n += 1
    sip("BYE", 2)
    print(json.dumps({"rtp_packets": n}))


def background(secs, phase_secs, dst, seed, dst_mac=None):
    """Internet load on the VNets: L = a steady 22 % of the link; H = a
    4 Mbit/s floor plus on/off bursts at +50 Mbit/s with bounded-Pareto
    on and off times (heavy-tailed, self-similar in aggregate): about 80 %
    of the link on average (the paper's H is 60-86 %), and 2.7 times the
    link while a burst lasts, as congestion looks to a FIFO. One malformed frame per second
    (an IPv4 header claiming 16 bytes) exercises decode-error accounting.
    The load switches from L to H in the middle of phase 2."""
    rng = random.Random(seed)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    size = 1400
    pkt = bytes(size)
    bits = (size + 28 + 14) * 8
    tick = 0.002

    def pareto(lo, hi, alpha=1.5):
        return min(hi, lo / (1.0 - rng.random()) ** (1.0 / alpha))

    raw = None
    if dst_mac:
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        raw.bind(("eth0", 0))
        bad = bytes.fromhex(dst_mac.replace(":", "")) + bytes(6) + b"\x08\x00" + b"\x44" + bytes(45)
    last_bad = -1
    t0 = time.monotonic()
    prev = 0.0
    credit = 0.0
    burst_until = off_until = 0.0
    sent = 0
    while True:
        now = time.monotonic() - t0
        if now >= secs:
            break
        if now < 1.5 * phase_secs:
            rate = 0.22 * LINK_MBIT * 1e6
        else:
            if now >= burst_until and now >= off_until:
                burst_until = now + pareto(0.05, 0.5)
                off_until = burst_until + pareto(0.12, 1.0)
            rate = 4e6 + (50e6 if now < burst_until else 0.0)
        if raw and int(now) != last_bad:
            last_bad = int(now)
            raw.send(bad)
        # Credit by the time that really passed (sleeps overshoot).
        credit += rate * (now - prev) / bits
        prev = now
        while credit >= 1:
            try:
                s.sendto(pkt, (dst, 9000))
                sent += 1
            except OSError:
                pass
            credit -= 1
        next_tick = t0 + now + tick
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    print(json.dumps({"bg_packets": sent}))


# -------------------------------------------------------------- substrate

class Shadow:
    """The Shadow VNet substrate; tc state follows the phase table."""

    def __init__(self):
        self.vs, self.bs = netns("vs"), netns("bs")
        self.n1, self.n2, self.n3 = netns("n1"), netns("n2"), netns("n3")
        self.vr, self.br, self.mo = netns("vr"), netns("br"), netns("mo")
        veth(self.vs, "eth0", self.n1, "vs")
        veth(self.bs, "eth0", self.n1, "bs")
        veth(self.n1, "a", self.n2, "ai")
        veth(self.n1, "b", self.n2, "bi")
        veth(self.n2, "ao", self.n3, "a")
        veth(self.n2, "bo", self.n3, "b")
        veth(self.n3, "vr", self.vr, "eth0")
        veth(self.n3, "br", self.br, "eth0")
        for dev in ("ma", "mb", "mr"):
            veth(self.n3, dev, self.mo, dev)
        for ns, ip in ((self.vs, VOICE_SRC), (self.vr, VOICE_DST), (self.bs, BG_SRC),
                       (self.br, BG_DST)):
            sh(["ip", "addr", "add", f"{ip}/24", "dev", "eth0"], ns=ns)
        # Static neighbours: the frames carry the receivers' MACs end to end.
        sh(["ip", "neigh", "replace", VOICE_DST, "lladdr", mac(self.vr, "eth0"), "dev", "eth0",
            "nud", "permanent"], ns=self.vs)
        sh(["ip", "neigh", "replace", BG_DST, "lladdr", mac(self.br, "eth0"), "dev", "eth0",
            "nud", "permanent"], ns=self.bs)
        # The background generator writes in 2 ms batches; a token bucket
        # at its access link spreads them into a continuous stream, as a
        # burst of many TCP senders arrives at a bottleneck.
        tc(self.bs, "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", "60mbit", "burst",
           "4kb", "latency", "50ms")
        for ns, devs in ((self.n1, ("vs", "bs")), (self.n2, ("ai", "bi")), (self.n3, ("a", "b"))):
            for d in devs:
                tc(ns, "qdisc", "add", "dev", d, "clsact")
        tc(self.n2, "filter", "add", "dev", "ai", "ingress", "protocol", "all", "u32", "match",
           "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", "ao")
        tc(self.n2, "filter", "add", "dev", "bi", "ingress", "protocol", "all", "u32", "match",
           "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", "bo")
        for dev in ("ao", "bo"):
            tc(self.n2, "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "20")
            tc(self.n2, "class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb",
               "rate", f"{LINK_MBIT}mbit", "ceil", f"{LINK_MBIT}mbit")
            tc(self.n2, "class", "add", "dev", dev, "parent", "1:1", "classid", "1:10", "htb",
               "rate", "1mbit", "ceil", f"{LINK_MBIT}mbit", "prio", "0")
            tc(self.n2, "class", "add", "dev", dev, "parent", "1:1", "classid", "1:20", "htb",
               "rate", f"{LINK_MBIT - 1}mbit", "ceil", f"{LINK_MBIT}mbit", "prio", "1")
            for cls in ("10", "20"):
                tc(self.n2, "qdisc", "add", "dev", dev, "parent", f"1:{cls}", "handle", f"{cls}:",
                   "pfifo", "limit", "40")
        self.state = {}

    def set_phase(self, p):
        """Applies one row of Table 1 (only what changed)."""
        if self.state.get("active") != p["active"]:
            targets = {"A": ["redirect a"], "B": ["redirect b"], "AB": ["mirror b", "redirect a"]}
            actions = []
            for t in targets[p["active"]]:
                kind, dev = t.split()
                actions += ["action", "mirred", "egress", kind, "dev", dev]
            for dev in ("vs", "bs"):
                tc(self.n1, "filter", "del", "dev", dev, "ingress", check=False)
                tc(self.n1, "filter", "add", "dev", dev, "ingress", "protocol", "all", "u32",
                   "match", "u32", "0", "0", *actions)
        if self.state.get("qos") != p["qos"]:
            if p["qos"]:
                tc(self.n2, "filter", "add", "dev", "bo", "parent", "1:", "protocol", "ip", "prio",
                   "1", "u32", "match", "ip", "dst", f"{VOICE_DST}/32", "flowid", "1:10")
            else:
                tc(self.n2, "filter", "del", "dev", "bo", "parent", "1:", check=False)
        if self.state.get("prod") != p["prod"]:
            for vnet, dev in (("A", "a"), ("B", "b")):
                tc(self.n3, "filter", "del", "dev", dev, "ingress", check=False)
                mirror = ["action", "mirred", "egress", "mirror", "dev", f"m{dev}"]
                if vnet == p["prod"]:
                    tc(self.n3, "filter", "add", "dev", dev, "ingress", "pref", "1", "protocol",
                       "ip", "u32", "match", "ip", "dst", f"{VOICE_DST}/32", *mirror,
                       "action", "mirred", "egress", "mirror", "dev", "mr",
                       "action", "mirred", "egress", "redirect", "dev", "vr")
                    tc(self.n3, "filter", "add", "dev", dev, "ingress", "pref", "2", "protocol",
                       "ip", "u32", "match", "ip", "dst", f"{BG_DST}/32", *mirror,
                       "action", "mirred", "egress", "redirect", "dev", "br")
                    tc(self.n3, "filter", "add", "dev", dev, "ingress", "pref", "3", "protocol",
                       "all", "u32", "match", "u32", "0", "0", *mirror)
                else:
                    # The shadow's output is observed, never delivered: after
                    # the mirror the frame goes up n3's own stack, which has
                    # no address and discards it (this kernel has no gact
                    # "drop" action).
                    tc(self.n3, "filter", "add", "dev", dev, "ingress", "pref", "1", "protocol",
                       "all", "u32", "match", "u32", "0", "0", *mirror)
        self.state = dict(p)


def spawn(ns, args, **kw):
    return subprocess.Popen(["ip", "netns", "exec", ns, *map(str, args)], **kw)


def wait_http(ns, url, secs=30):
    t0 = time.monotonic()
    while time.monotonic() - t0 < secs:
        r = sh(["python3", "-c", f"import urllib.request;urllib.request.urlopen({url!r},timeout=1)"],
               ns=ns, check=False)
        if r.returncode == 0:
            return
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer in {secs} s")


def bins(args):
    d = Path(args.bin_dir) if args.bin_dir else None
    if d is None:
        target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
        d = next((target / p for p in ("release", "debug")
                  if (target / p / "moni-node").exists()), target / "release")
    node, coll = d / "moni-node", d / "moni-collector"
    for b in (node, coll):
        if not b.exists():
            sys.exit(f"error: {b} not found (build with cargo build --release, or pass --bin-dir)")
    return node, coll


# ------------------------------------------------------------ experiments

def read_windows(data_dir):
    """RTP windows the collector received: (vnet, start s, secs, mos, loss)."""
    import pyarrow.parquet as pq
    rows = []
    for f in sorted(Path(data_dir).glob("rtp_windows/**/*.parquet")):
        t = pq.read_table(f)
        cols = t.column_names
        vnet_from_path = next((p.split("=", 1)[1] for p in f.parts if p.startswith("vnet=")), None)
        d = t.to_pydict()
        for i in range(t.num_rows):
            vnet = d["vnet"][i] if "vnet" in cols else vnet_from_path
            start = d["window_start"][i].timestamp()
            rows.append((vnet, start, d["window_secs"][i], d["mos_cq"][i], d["loss_ratio"][i],
                         d["packets_received"][i]))
    return rows


def summarise(rows, starts, phase_secs):
    out = []
    for i, p in enumerate(PHASES):
        lo, hi = starts[i], starts[i] + phase_secs
        res = {"phase": i + 1, **p, "mos": {}, "loss": {}, "windows": {}}
        for vnet in ("A", "B", "rx"):
            # Whole windows inside the phase (starting at least 0.5 s
            # after the change: queues settle).
            w = [r for r in rows if r[0] == vnet and r[1] >= lo + 0.5 and r[1] + r[2] <= hi
                 and r[5] >= 10]
            if w:
                res["mos"][vnet] = round(statistics.mean(r[3] for r in w), 2)
                res["loss"][vnet] = round(statistics.mean(r[4] for r in w), 4)
                res["windows"][vnet] = len(w)
        out.append(res)
    return out


def print_table(results):
    print()
    print("phase  prod  active  QoS(B)  load   MOS A (paper)  MOS B (paper)  MOS receiver   loss A   loss B  loss rx")
    for r in results:
        paper = PAPER_MOS.get(r["phase"], {})

        def m(v):
            x = r["mos"].get(v)
            s = f"{x:4.2f}" if x is not None else "  - "
            if v in ("A", "B"):
                s += f" ({paper[v]:4.2f})" if v in paper else "       "
            return s

        def l(v):
            x = r["loss"].get(v)
            return f"{100 * x:6.1f}%" if x is not None else "     - "
        print(f"  {r['phase']}     {r['prod']}     {r['active']:3s}    {'on ' if r['qos'] else 'off'}   "
              f"{r['load']:4s}   {m('A'):13s}  {m('B'):13s}  {m('rx'):12s}  {l('A')}  {l('B')}  {l('rx')}")
    print("(paper: Fig. 8 and section 4.2; MOS-CQ by the E-model, G.711 with PLC, per "
          "window of moni-node's rtp_windows as received by moni-collector)")


def check_dashboards(prom):
    """Evaluates every PromQL expression of every dashboard through the
    Prometheus API; returns [(dashboard, expr, series)]."""
    results = []
    for f in sorted((ROOT / "grafana" / "dashboards").glob("*.json")):
        d = json.loads(f.read_text())
        for panel in d["panels"]:
            for t in panel.get("targets", []):
                q = (t["expr"].replace("$__rate_interval", "1m").replace("$__range", "5m")
                     .replace("$node", ".*")
                     .replace("$vnet", ".*"))
                url = f"{prom}/api/v1/query?query={urllib.parse.quote(q)}"
                body = json.load(urllib.request.urlopen(url, timeout=5))
                if body.get("status") != "success":
                    raise RuntimeError(f"{f.name}: {t['expr']}: {body}")
                results.append((d["uid"], t["expr"], len(body["data"]["result"])))
    return results


def shadow(args):
    node_bin, coll_bin = bins(args)
    work = Path(args.work or f"/tmp/moni-lab-{os.getpid()}")
    work.mkdir(parents=True, exist_ok=True)
    P = args.phase_secs
    window = max(1, min(5, P // 4))
    lab = Shadow()
    lab.set_phase(PHASES[0])
    token = "lab-token-0123456789abcdef"
    (work / "collector.toml").write_text(
        f'[server]\nlisten = "127.0.0.1:9470"\ndata_dir = "{work / "warehouse"}"\n'
        f'[[nodes]]\nid = "lab-moni"\ntoken = "{token}"\n')
    (work / "node.toml").write_text(
        f'[node]\nname = "lab-moni"\nworkers = 1\ntick_ms = 250\n'
        f'[metrics]\nlisten = "127.0.0.1:9464"\n'
        f'[[sources]]\ninterface = "ma"\nvnet = "A"\nrole = "production"\n'
        f'[[sources]]\ninterface = "mb"\nvnet = "B"\nrole = "shadow"\n'
        f'[[sources]]\ninterface = "mr"\nvnet = "rx"\nrole = "monitor"\n'
        f'[rtp]\nwindow_secs = {window}\n'
        # A 20 Mbit/s VNet cannot carry 20,000 packets/s: alarm lower.
        f'[ids]\nudp_rate = 2000\n'
        f'[ship]\ncollectors = ["http://127.0.0.1:9470"]\ntoken = "{token}"\nretry_max_secs = 1\n'
        f'keep_shipped = true\n'
        f'[output]\ndir = "{work / "node-out"}"\nrotate_secs = {window}\n')
    procs = []
    logs = open(work / "lab.log", "w")
    coll = spawn(lab.mo, [coll_bin, "serve", "--config", work / "collector.toml"], stdout=logs,
                 stderr=logs)
    procs.append(coll)
    wait_http(lab.mo, "http://127.0.0.1:9470/healthz")
    node = spawn(lab.mo, [node_bin, "run", "--config", work / "node.toml"], stdout=subprocess.PIPE,
                 stderr=logs, text=True)
    procs.append(node)
    wait_http(lab.mo, "http://127.0.0.1:9464/healthz")
    prom = None
    if args.prometheus:
        (work / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {ROOT / 'grafana' / 'rules' / 'moni.rules.yml'}\n"
            "scrape_configs:\n"
            "  - job_name: moni-node\n    static_configs:\n      - targets: ['127.0.0.1:9464']\n"
            "  - job_name: moni-collector\n    static_configs:\n      - targets: ['127.0.0.1:9470']\n")
        prom = spawn(lab.mo, ["prometheus", f"--config.file={work / 'prometheus.yml'}",
                              f"--storage.tsdb.path={work / 'tsdb'}",
                              "--web.listen-address=127.0.0.1:9090"], stdout=logs, stderr=logs)
        procs.append(prom)
        wait_http(lab.mo, "http://127.0.0.1:9090/-/ready")
    me = Path(__file__).resolve()
    total = 6 * P
    voice_p = spawn(lab.vs, ["python3", me, "_voice", "--secs", total, "--dst", VOICE_DST],
                    stdout=subprocess.PIPE, text=True)
    bg_p = spawn(lab.bs, ["python3", me, "_bg", "--secs", total, "--phase-secs", P, "--dst", BG_DST,
                          "--dst-mac", mac(lab.br, "eth0")],
                 stdout=subprocess.PIPE, text=True)
    procs += [voice_p, bg_p]
    t_start = time.time()
    starts = []
    for i, p in enumerate(PHASES):
        due = t_start + i * P
        time.sleep(max(0.0, due - time.time()))
        lab.set_phase(p)
        starts.append(time.time())
        print(f"phase {i + 1}: production {p['prod']}, active {p['active']}, "
              f"QoS in B {'on' if p['qos'] else 'off'}, load {p['load']}", flush=True)
    voice_p.wait(timeout=total + 30)
    bg_p.wait(timeout=total + 30)
    time.sleep(window + 1)  # let the last windows close
    dashboards = None
    if prom:
        time.sleep(2)
        out = sh(["python3", me, "_dashboards", "--prom", "http://127.0.0.1:9090"], ns=lab.mo,
                 capture=True)
        dashboards = json.loads(out)
        empty = [d for d in dashboards if d[2] == 0]
        print(f"dashboards: {len(dashboards)} queries, {len(dashboards) - len(empty)} with data")
        for d in empty:
            print(f"  no data: {d[0]}: {d[1]}")
    node.send_signal(signal.SIGTERM)
    summary = json.loads((node.communicate(timeout=60)[0] or "{}").strip() or "{}")
    # The node drains its spool into the collector before it exits.
    rows = read_windows(work / "warehouse")
    results = summarise(rows, starts, P)
    print_table(results)
    plot = args.plot or str(work / "compare.svg")
    html = str(Path(plot).with_suffix(".html"))
    # The operator's report: Fig. 7/8 with the receiver, each phase start
    # marked, and the moment production moved to B.
    marks = []
    for i, (t, p) in enumerate(zip(starts, PHASES)):
        label = f"phase {i + 1}"
        if i > 0 and p["prod"] != PHASES[i - 1]["prod"]:
            label += f": production -> {p['prod']}"
        marks += ["--mark", f"{int(t)}={label}"]
    cmp_out = subprocess.run([str(coll_bin), "compare", "--data", str(work / "warehouse"),
                              "--production", "A", "--shadow", "B", "--monitor", "rx",
                              "--plot", plot, "--report", html, *marks],
                             capture_output=True, text=True)
    print(cmp_out.stdout.strip().splitlines()[-1] if cmp_out.stdout.strip() else cmp_out.stderr)
    print(f"comparison plot: {plot}; report: {html}")
    report = {"phase_secs": P, "window_secs": window, "phases": results,
              "node": summary, "dashboards": dashboards, "plot": plot, "report": html,
              "namespaces": created[:]}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    for p in procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
    return report


# Fig. 5 of the paper: DomU with a pci-direct NIC (the set-up whose monitor
# has its own resources, as moni's does), and the shared soft bridge.
PAPER_FIG5 = [
    ("Linux, native forwarding", 840.0),
    ("Dom0, not bridged", 939.9),
    ("Dom0, bridged", 522.0),
    ("DomU (bridge), alone", 215.0),
    ("DomU (bridge), monitoring", 180.0),
    ("DomU (pci direct), alone", 961.6),
    ("DomU (pci direct), monitoring", 953.0),
    ("DomU (pci direct), monitor under 100% CPU and disk load", 896.0),
]
# Our phase -> the paper's closest group (kpps).
PAPER_PHASE = {"forward": 961.6, "mirror": 953.0, "monitor": 953.0, "monitor_overloaded": 896.0,
               "monitor_unisolated": 180.0}
PE_PHASES = ["forward", "mirror", "monitor", "monitor_overloaded", "monitor_unisolated"]
# The order of a cycle's windows (reversed every other cycle): `forward`
# beside the two monitored phases the 5 % bound is about, so that each of
# their windows is one window from the forward window it is paired with
# (see `ratio` in probe_effect).
PE_ORDER = ["mirror", "monitor", "forward", "monitor_overloaded", "monitor_unisolated"]
# Where each phase mirrors Node 1's link: nowhere, to a port nobody
# captures (n), to the isolated node's (m), to the unisolated node's (u).
PE_PORT = {"forward": None, "mirror": "n", "monitor": "m", "monitor_overloaded": "m",
           "monitor_unisolated": "u"}
# The nodes' metrics ports (in the monitor's namespace), by capture port.
METRICS = {"m": 9464, "u": 9465}
# The 64-byte leg's windows: each is one 1 s bin, measured PE_SETTLE
# seconds after its phase was switched on (the mirror moved, the overload
# continued or stopped).
PE_WINDOW, PE_SETTLE = 1.0, 0.5
TICKS = os.sysconf("SC_CLK_TCK")  # the unit of /proc/PID/stat's times
FRAME_BYTES = 64
# The TCP leg's windows: each state is measured for TCP_WINDOW seconds,
# after TCP_SETTLE seconds for the mirror change to take hold.
TCP_WINDOW, TCP_SETTLE = 1.5, 0.3


def cpu_times(cpu):
    """(busy, softirq, total, steal) jiffies of one CPU from /proc/stat.
    Steal is the time the hypervisor ran something else while this
    virtual CPU had work (part of busy)."""
    for line in Path("/proc/stat").read_text().splitlines():
        f = line.split()
        if f[0] == f"cpu{cpu}":
            v = [int(x) for x in f[1:]]
            return sum(v) - v[3] - v[4], v[6], sum(v), v[7]
    return 0, 0, 0, 0


def cpu_list(text):
    """The CPUs of a kernel CPU list ("0-2,5")."""
    cpus = set()
    for part in text.strip().split(","):
        if "-" in part:
            lo, hi = part.split("-")
            cpus.update(range(int(lo), int(hi) + 1))
        elif part:
            cpus.add(int(part))
    return cpus


def disk_irq_cpus(path):
    """The CPUs that take the interrupts of the disk holding `path` (empty
    when that cannot be told: a file system without a block device, an
    interrupt without an affinity file). The disk's completions run in
    hard and soft interrupt context on those CPUs, outside any cgroup: a
    monitor writing to that disk takes their time, whatever its weight."""
    try:
        st = os.stat(path)
        block = Path(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}").resolve()
        if (block / "partition").exists():
            block = block.parent
        node = (block / "device").resolve()
    except OSError:
        return set()
    irqs = []
    while node != node.parent and node.name != "devices":
        msi = node / "msi_irqs"
        if msi.is_dir():
            irqs = [int(x.name) for x in msi.iterdir() if x.name.isdigit()]
            break
        try:
            n = int((node / "irq").read_text())
            if n > 0:
                irqs = [n]
                break
        except (OSError, ValueError):
            pass
        node = node.parent
    cpus = set()
    for n in irqs:
        try:
            cpus |= cpu_list(Path(f"/proc/irq/{n}/effective_affinity_list").read_text())
        except (OSError, ValueError):
            pass
    return cpus


def device_irqs(cpu):
    """Device interrupts one CPU took so far (the numbered lines of
    /proc/interrupts: not the timer's, not the IPIs)."""
    total = 0
    for line in Path("/proc/interrupts").read_text().splitlines()[1:]:
        f = line.split()
        if f and f[0].rstrip(":").isdigit() and len(f) > cpu + 1 and f[cpu + 1].isdigit():
            total += int(f[cpu + 1])
    return total


def backlog_drops(cpu):
    """Packets one CPU's input queue (netdev backlog) dropped so far:
    what arrived faster than that CPU forwarded (/proc/net/softnet_stat,
    second column, one line per CPU)."""
    lines = Path("/proc/net/softnet_stat").read_text().splitlines()
    for line in lines:
        f = line.split()
        # Newer kernels print the CPU number in the 13th column.
        if len(f) >= 13 and int(f[12], 16) == cpu:
            return int(f[1], 16)
    return int(lines[cpu].split()[1], 16) if cpu < len(lines) else 0


class LabCgroup:
    """The experiment as a machine of its own: the lab and everything it
    starts (the senders, production's forwarding threads, moni-node, the
    overload) in a cgroup weighted far above the rest of the host, so that
    a build running beside the lab does not take the forwarding core in
    some phases and not others. Inside it production and the monitor
    compete as on the node itself: moni-node's own cgroup nests in it
    (cgroup v1) or sits beside it (v2, where it is even weaker). Best
    effort: without a writable cpu controller it is skipped."""

    def __init__(self):
        self.dirs = []
        mounts = {}
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            f = line.split(" ")
            if "-" in f:
                d = f.index("-")
                mounts.setdefault((f[d + 1], f[d + 3]), f[4])
        for (fstype, opts), point in mounts.items():
            if fstype == "cgroup2":
                ctrl = Path(point) / "cgroup.controllers"
                if ctrl.exists() and "cpu" in ctrl.read_text().split():
                    self._make(Path(point), "cpu.weight", "10000")
            elif fstype == "cgroup" and "cpu" in opts.split(","):
                self._make(Path(point), "cpu.shares", "262144")

    def _make(self, root, knob, value):
        d = root / f"moni-lab-{os.getpid()}"
        try:
            d.mkdir(exist_ok=True)
            (d / knob).write_text(value)
            self.dirs.append(d)
        except OSError as e:
            print(f"note: no lab cgroup in {root}: {e}", file=sys.stderr)
            try:
                d.rmdir()
            except OSError:
                pass

    def add(self, pid):
        for d in self.dirs:
            try:
                (d / "cgroup.procs").write_text(str(pid))
            except OSError:
                pass  # e.g. a kernel thread the kernel keeps where it is

    def close(self):
        left = []
        for d in self.dirs:
            try:
                (d.parent / "cgroup.procs").write_text(str(os.getpid()))
            except OSError:
                pass
            # Empty once everything the lab started is gone; the NAPI
            # threads leave when their namespace's devices are deleted.
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                left.append(d)
        self.dirs = left


def cgroup_dirs(pid):
    """The cgroup directories process `pid` runs in that are not a
    hierarchy's root (where moni-node put itself)."""
    mounts = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        f = line.split(" ")
        if "-" not in f:
            continue
        d = f.index("-")
        fstype, point, opts = f[d + 1], f[4], f[d + 3]
        if fstype == "cgroup2":
            mounts.setdefault("", point)
        elif fstype == "cgroup":
            for o in opts.split(","):
                mounts.setdefault(o, point)
    dirs = []
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        point = mounts.get(ctrls.split(",")[0]) if ctrls else mounts.get("")
        if point and path != "/":
            dirs.append(Path(point) / path.lstrip("/"))
    return dirs


def net_dev(pid, dev):
    """Counters of `dev` in the network namespace of process `pid` (its
    /proc/PID/net/dev): rx_bytes, tx_packets, tx_dropped. Read directly,
    not through `ip`: the 64-byte leg reads them at every window edge."""
    for line in Path(f"/proc/{pid}/net/dev").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name.strip() == dev:
            f = [int(x) for x in rest.split()]
            return {"rx_bytes": f[0], "tx_packets": f[9], "tx_dropped": f[11]}
    raise RuntimeError(f"no {dev} in the namespace of process {pid}")


def rx_bytes(pid, dev):
    """Bytes `dev` received so far, in the network namespace of process
    `pid`."""
    return net_dev(pid, dev)["rx_bytes"]


# A node's capture counters: its metric names and the report's keys (as
# in its exit summary), and its port's, which the lab counts itself.
NODE_COUNTERS = {"moni_source_packets_total": "packets",
                 "moni_source_kernel_drops_total": "kernel_drops",
                 "moni_source_interface_drops_total": "interface_drops",
                 "moni_source_queue_drops_total": "queue_drops"}
NODE_KEYS = tuple(NODE_COUNTERS.values())
PORT_KEYS = ("port_packets", "port_drops")


def scrape_loop(ports):
    """Runs inside the monitor's namespace: for every line on stdin, one
    JSON line with the capture counters of the nodes listening on these
    metrics ports (null for a node that does not answer)."""
    for _ in sys.stdin:
        out = {}
        for port in ports:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    text = r.read().decode()
            except OSError:
                out[port] = None
                continue
            c = dict.fromkeys(NODE_KEYS, 0)
            for line in text.splitlines():
                key = NODE_COUNTERS.get(line.split("{", 1)[0].split(" ", 1)[0])
                if key:
                    c[key] += int(float(line.rsplit(" ", 1)[1]))
            out[port] = c
        print(json.dumps(out), flush=True)


def svg_boxplot(phases, path, title):
    """Fig. 5 as the paper draws it: a box per phase over its 1 s bins
    (quartiles, median, whiskers to min and max, every bin as a dot)."""
    w, h, left, right, top, bottom = 760, 420, 70, 20, 40, 80
    vals = [b for p in phases for b in p["bins"]]
    ymax = max(vals + [1]) / 1000 * 1.1
    step = 10 ** max(0, len(str(int(ymax))) - 1)
    if ymax / step < 4:
        step /= 2
    y = lambda v: top + (h - top - bottom) * (1 - v / ymax)
    bw = (w - left - right) / len(phases)
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
         f'font-family="sans-serif" font-size="12">',
         f'<rect width="{w}" height="{h}" fill="white"/>',
         f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>']
    t = 0.0
    while t <= ymax:
        o.append(f'<line x1="{left}" x2="{w - right}" y1="{y(t):.1f}" y2="{y(t):.1f}" '
                 f'stroke="#ddd"/><text x="{left - 6}" y="{y(t) + 4:.1f}" '
                 f'text-anchor="end">{t:g}</text>')
        t += step
    o.append(f'<text transform="translate(18 {(top + h - bottom) / 2}) rotate(-90)" '
             f'text-anchor="middle">forwarded kpps (1 s bins)</text>')
    for i, p in enumerate(phases):
        b = sorted(x / 1000 for x in p["bins"]) or [0.0]
        q = statistics.quantiles(b, n=4, method="inclusive") if len(b) > 1 else [b[0]] * 3
        cx = left + bw * (i + 0.5)
        half = bw * 0.25
        o.append(f'<line x1="{cx}" x2="{cx}" y1="{y(b[0]):.1f}" y2="{y(b[-1]):.1f}" stroke="black"/>')
        for v in (b[0], b[-1]):
            o.append(f'<line x1="{cx - half / 2}" x2="{cx + half / 2}" y1="{y(v):.1f}" '
                     f'y2="{y(v):.1f}" stroke="black"/>')
        o.append(f'<rect x="{cx - half}" y="{y(q[2]):.1f}" width="{2 * half}" '
                 f'height="{max(1.0, y(q[0]) - y(q[2])):.1f}" fill="#9ecae1" stroke="black"/>')
        o.append(f'<line x1="{cx - half}" x2="{cx + half}" y1="{y(q[1]):.1f}" y2="{y(q[1]):.1f}" '
                 f'stroke="#d62728" stroke-width="2"/>')
        for v in b:
            o.append(f'<circle cx="{cx + half + 8}" cy="{y(v):.1f}" r="2" fill="#555"/>')
        o.append(f'<text x="{cx}" y="{h - bottom + 18}" text-anchor="middle">{p["name"]}</text>')
        o.append(f'<text x="{cx}" y="{h - bottom + 34}" text-anchor="middle" fill="#555">'
                 f'median {p["median_pps"] / 1000:.1f}</text>')
    o.append("</svg>")
    Path(path).write_text("\n".join(o) + "\n")


def napi_threads():
    return {p.name for p in Path("/proc").iterdir() if p.name.isdigit()
            and (p / "comm").exists() and (p / "comm").read_text().startswith("napi/")}


def pin_forwarding(ns, devs, core):
    """Node 2's forwarding on a core of its own. Threaded NAPI (the veth
    receives into a ring, and a kernel thread, pinned to `core`, polls it
    and forwards; GRO on is what puts a veth in NAPI mode): the sender
    only fills the ring, and a full ring pushes back on it. Where that
    is not available, RPS steers the receive processing to `core`.
    Returns the NAPI threads' pids."""
    threads = []
    for d in devs:
        before = napi_threads()
        ok = (sh(["ethtool", "-K", d, "gro", "on"], ns=ns, check=False).returncode == 0
              and sh(["sh", "-c", f"echo 1 > /sys/class/net/{d}/threaded"], ns=ns,
                     check=False).returncode == 0)
        new = napi_threads() - before
        if ok and new:
            for pid in new:
                sh(["taskset", "-pc", str(core), pid], check=False)
            threads.extend(new)
        else:
            sh(["sh", "-c", f"echo {1 << core:x} > /sys/class/net/{d}/queues/rx-0/rps_cpus"],
               ns=ns)
    return threads


def receive_thread(ns, dev):
    """The Moni VNode's port as the paper's monitor domain receives: on a
    NIC of its own (PCI pass-through), so the receive processing of the
    mirrored frames is the monitor's work, done on the monitor's CPU
    share. A veth instead does it in the sender's softirq, in Node 1's
    context. Threaded NAPI (GRO on puts a veth in NAPI mode for frames
    from a peer without TSO, as in the 64-byte phases) moves it to a
    kernel thread, which the lab then gives the node's cgroup and
    scheduling class; a full ring drops at the port. Returns the
    thread's pids (none where threaded NAPI is not available)."""
    before = napi_threads()
    ok = (sh(["ethtool", "-K", dev, "gro", "on"], ns=ns, check=False).returncode == 0
          and sh(["sh", "-c", f"echo 1 > /sys/class/net/{dev}/threaded"], ns=ns,
                 check=False).returncode == 0)
    return sorted(napi_threads() - before) if ok else []


def thread_ticks(pids):
    """User and system clock ticks of these threads so far."""
    total = 0
    for pid in pids:
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])
        except (OSError, IndexError, ValueError):
            pass
    return total


def paired(base, other):
    """The median of each window's rate in `other` against the window of
    the same cycle in `base` (0.0 without a pair)."""
    pairs = [b / a for a, b in zip(base, other) if a]
    return statistics.median(pairs) if pairs else 0.0


def group_pids(pgid):
    """The processes of one process group."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                f = (d / "stat").read_text().rsplit(")", 1)[1].split()
                if int(f[2]) == pgid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def limit_kind(forward):
    """What held the forward phase's rate (see `limit` in the report)."""
    if forward["input_drops_pps"] > 0 and forward["offered_pps"] > forward["median_pps"]:
        return "sender offers more than is forwarded"
    if forward["path_cpu"] >= 0.9:
        return "forwarding core saturated"
    return "below the forwarding limit (the senders were the bottleneck)"


def print_fig5(report):
    base = report["phases"][0]["median_pps"] or 1
    print()
    print(f"{'phase':20s} {'median kpps':>11s} {'ratio':>6s} {'paired':>6s}  {'moni drops':>10s}   "
          f"paper (Fig. 5, kpps)    paper ratio")
    for p in report["phases"]:
        m = p["moni"]
        drops = str(m["kernel_drops"] + m["interface_drops"] + m["queue_drops"]
                    + m["port_drops"])
        pp = PAPER_PHASE[p["name"]]
        pbase = 215.0 if p["name"] == "monitor_unisolated" else 961.6
        print(f"{p['name']:20s} {p['median_pps'] / 1000:11.1f} {p['median_pps'] / base:6.3f} "
              f"{report['ratios'][p['name']]:6.3f}  "
              f"{drops:>10s}   {pp:8.1f}{'':15s} {pp / pbase:.3f}")
    t = report["tcp"]
    print(f"{'tcp (full speed)':20s} {t['without_gbps']:8.2f} -> {t['with_gbps']:.2f} Gbit/s, "
          f"ratio {t['ratio']:.3f} (moni at its service defaults; the mirror alone: "
          f"{report['tcp_mirror_gbps']:.2f} Gbit/s, "
          f"{report['tcp_mirror_gbps'] / t['without_gbps'] if t['without_gbps'] else 0:.3f}; "
          f"paired windows: mirror {report['tcp_paired']['mirror']:.3f}, with moni-node "
          f"{report['tcp_paired']['with']:.3f}, moni-node's own "
          f"{report['tcp_paired']['with_vs_mirror']:.3f})")
    print("paper, all groups:", ", ".join(f"{n} {v:g}" for n, v in PAPER_FIG5))
    print("(the paper: forwarding degrades by 5% with the monitor at 100% CPU and disk load; "
          "its monitor_unisolated analogue is the shared soft bridge, 215 -> 180 kpps)")


def probe_effect(args):
    """The paper's Fig. 5: production's forwarding rate of 64-byte frames
    in 1 s bins, at the path's limit, for each phase (see docs/lab.md)."""
    if args.secs < 1 or args.rounds < 1 or args.tcp_cycles < 1:
        sys.exit("error: probe-effect needs --secs, --rounds and --tcp-cycles of at least 1")
    node_bin, _ = bins(args)
    work = Path(args.work or f"/tmp/moni-lab-{os.getpid()}")
    work.mkdir(parents=True, exist_ok=True)
    for tool in ("gcc", "stress-ng", "iperf3"):
        if not shutil.which(tool):
            sys.exit(f"error: probe-effect needs {tool} (scripts/install-deps.sh installs it)")
    blast = work / "blast"
    sh(["gcc", "-O2", "-o", str(blast), str(ROOT / "samples" / "lab" / "blast.c")])
    ncpu = os.cpu_count() or 1
    # Node 1 (the sender, and the switch with the monitoring port) on
    # the first CPUs; Node 2's forwarding on the last (RPS steers its
    # receive processing there): the forwarding core. The paper's nodes
    # were machines of their own, its duplication done by the switch.
    # The forwarding core is the last CPU that does not take the
    # interrupts of the disk the monitor's overload writes to, where there
    # is one: the paper's forwarding domain had cores of its own, the
    # monitor's disk was served elsewhere (Xen's Dom0), and a forwarding
    # node keeps device interrupts off its forwarding cores. (Here the
    # disk's interrupts are managed by the kernel and cannot be moved;
    # while the forwarding shared their CPU, the overload's direct-I/O
    # writers, several thousand completions a second, cost its windows
    # up to 12 % of their forwarding; docs/lab.md.)
    disk_cpus = disk_irq_cpus(work)
    core = next((c for c in reversed(range(ncpu)) if c not in disk_cpus), ncpu - 1)
    send_cores = [c for c in range(ncpu) if c != core] or [0]
    src, fw, dst, mo = netns("src"), netns("fw"), netns("dst"), netns("mo")
    veth(src, "eth0", fw, "s")
    veth(fw, "d", dst, "eth0")
    veth(src, "m", mo, "m")
    # A second port of the switch that nobody captures: the mirror-alone
    # state (what the software switch's copy costs).
    veth(src, "n", mo, "n")
    # The unisolated monitor's port: a second node, without the isolation
    # settings, runs beside the isolated one through the 64-byte leg.
    veth(src, "u", mo, "u")
    sh(["ip", "addr", "add", "10.91.1.1/24", "dev", "eth0"], ns=src)
    sh(["ip", "addr", "add", "10.91.1.254/24", "dev", "s"], ns=fw)
    sh(["ip", "addr", "add", "10.91.2.254/24", "dev", "d"], ns=fw)
    sh(["ip", "addr", "add", "10.91.2.2/24", "dev", "eth0"], ns=dst)
    sh(["ip", "route", "add", "default", "via", "10.91.1.254"], ns=src)
    sh(["ip", "route", "add", "default", "via", "10.91.2.254"], ns=dst)
    sh(["sysctl", "-qw", "net.ipv4.ip_forward=1"], ns=fw)
    for ns, ip, peer, dev in ((fw, "10.91.2.2", dst, "d"), (fw, "10.91.1.1", src, "s")):
        sh(["ip", "neigh", "replace", ip, "lladdr", mac(peer, "eth0"), "dev", dev, "nud",
            "permanent"], ns=ns)
    sh(["ip", "neigh", "replace", "10.91.1.254", "lladdr", mac(fw, "s"), "dev", "eth0", "nud",
        "permanent"], ns=src)
    sh(["ip", "neigh", "replace", "10.91.2.254", "lladdr", mac(fw, "d"), "dev", "eth0", "nud",
        "permanent"], ns=dst)
    forwarders = pin_forwarding(fw, ("s", "d"), core) if ncpu > 1 else []
    monitor_napi = {port: receive_thread(mo, port) for port in ("m", "u")}
    # The port nobody captures is the monitor domain's too: its frames are
    # received (and dropped: no address there) in an idle-class thread, so
    # that the mirror-alone phase costs the sender what the monitor's port
    # does (a copy into a ring that is full or not), not a receive path in
    # the sender's own softirq.
    for pid in receive_thread(mo, "n"):
        sh(["chrt", "-i", "-p", "0", pid], check=False)
    tc(src, "qdisc", "add", "dev", "eth0", "clsact")
    fw_mac = mac(fw, "s")
    me = Path(__file__).resolve()

    wired = [None]  # the port the mirror goes to now

    def wire(port):
        # The monitoring port: both directions of Node 1's link copied to
        # `port` (m: the Moni VNode's; n: nobody's; None: no mirror) by tc
        # mirred (the paper's option b: duplication before the forwarding
        # node, not on it).
        # One tc process for the whole change (`-batch`, in the namespace
        # by `-n`): the 64-byte leg switches every 1.5 s with both CPUs
        # busy, where every process started costs tenths of a second.
        hooks = ("ingress", "egress")
        cmds = [f"filter del dev eth0 {h}" for h in hooks] if wired[0] else []
        cmds += [f"filter add dev eth0 {h} protocol all u32 match u32 0 0 action mirred egress "
                 f"mirror dev {port}" for h in hooks] if port else []
        if cmds:
            r = subprocess.run(["tc", "-n", src, "-batch", "-"], input="\n".join(cmds) + "\n",
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"tc -n {src} -batch: {r.stderr.strip()} ({cmds})")
        wired[0] = port

    def offloads(on):
        # TCP runs as a host runs it, with segmentation and receive
        # offloads (TSO, GSO, GRO) on every link of its path and on the
        # monitoring port; the 64-byte phases turn them off so that every
        # frame is one packet, as on a real wire.
        state = "on" if on else "off"
        for ns, dev in ((src, "eth0"), (fw, "s"), (fw, "d"), (dst, "eth0"), (src, "m"),
                        (mo, "m"), (src, "n"), (mo, "n"), (src, "u"), (mo, "u")):
            # The forwarding's and the monitors' NAPI need GRO.
            gro = "on" if ns == fw or (ns == mo and dev in ("m", "n", "u")) else state
            sh(["ethtool", "-K", dev, "tso", state, "gso", state, "gro", gro], ns=ns,
               check=False)

    def port_packets(port):
        """Frames the monitoring port delivered to a Moni VNode so far,
        and those it dropped because the VNode's receive ring was full
        (the monitor's own drops, before its capture sees them)."""
        c = net_dev(anchor[src].pid, port)
        return c["tx_packets"], c["tx_dropped"]

    def start_node(isolated, tag, port):
        # The shipped service settings are the [node] defaults; the
        # unisolated node turns them off.
        keys = "" if isolated else "cpu_weight = 0\nnice = 0\nsched_idle = false\n"
        cfg = work / f"{tag}.toml"
        cfg.write_text(
            f'[node]\nname = "lab-probe"\n{keys}[metrics]\nlisten = "127.0.0.1:{METRICS[port]}"\n'
            f'[[sources]]\ninterface = "{port}"\nvnet = "A"\nrole = "production"\n'
            f'[output]\ndir = "{work / (tag + "-out")}"\n')
        log = open(work / f"{tag}.log", "w")
        # nsenter, not ip netns exec: only the network namespace changes,
        # so the node sees the host's /sys/fs/cgroup (ip netns exec mounts
        # a /sys of the namespace's own, without cgroups) and isolates
        # itself as it would on the host.
        port_at_start[port] = port_packets(port)
        node = subprocess.Popen(["nsenter", f"--net=/run/netns/{mo}", str(node_bin), "run",
                                 "--config", str(cfg)], stdout=subprocess.PIPE, stderr=log,
                                text=True)
        running.append(node)
        node.port = port
        wait_http(mo, f"http://127.0.0.1:{METRICS[port]}/healthz")
        mine = [d for d in cgroup_dirs(node.pid) if d.name.startswith("moni-node-")]
        node_cgroups.extend(mine)
        napi_homes[port] = mine if isolated else list(shield.dirs)
        # The monitor's receive path is the monitor's: its port's NAPI
        # thread runs in the node's cgroup and scheduling class.
        for pid in monitor_napi[port]:
            for d in napi_homes[port]:
                try:
                    (d / "cgroup.procs").write_text(pid)
                except OSError:
                    pass
            sh(["chrt", "-i" if isolated else "-o", "-p", "0", pid], check=False)
        return node

    def release_napi(port):
        """A monitor's NAPI thread back to its hierarchies' roots, so that
        the node's cgroup (and the lab's) can be removed."""
        for d in napi_homes.pop(port, []):
            for pid in monitor_napi[port]:
                try:
                    (d.parent / "cgroup.procs").write_text(pid)
                except OSError:
                    pass

    def stop_node(node):
        release_napi(node.port)
        node.send_signal(signal.SIGTERM)
        out = node.communicate(timeout=90)[0] or "{}"
        running.remove(node)
        s = json.loads(out.strip() or "{}")
        src_s = (s.get("sources") or [{}])[0]
        # What the port sent while the node ran: an independent count to
        # hold the node's captured + dropped against.
        now, then = port_packets(node.port), port_at_start[node.port]
        return ({k: src_s.get(k, 0) for k in NODE_KEYS}
                | dict(zip(PORT_KEYS, (now[0] - then[0], now[1] - then[1])))
                | {"isolation": s.get("isolation")})

    def overload(node, isolated, secs):
        """CPU burners on every CPU and disk writers, in the monitor's
        cgroup and at its scheduling class and niceness (isolated), or
        beside it (not). The writers write with O_DIRECT where the file
        system takes it: their I/O is then their own, done in their
        context and charged to their cgroup, and nothing is left dirty
        for the kernel's flusher threads to write back (outside any
        cgroup, on cgroup v1) after the writers are stopped."""
        join = ""
        if isolated:
            for d in cgroup_dirs(node.pid):
                join += f"echo $$ > {d}/cgroup.procs && "
        prio = "chrt -i 0 nice -n 10" if isolated else "nice -n 0"
        direct = "--hdd-opts direct " if direct_io else ""
        cmd = (f"{join}exec {prio} stress-ng --cpu {ncpu} --cpu-load 100 "
               f"--hdd 2 --hdd-bytes 64M {direct}--temp-path {work} --timeout {int(secs)}s")
        # A session of its own: the whole group (stress-ng forks its
        # workers) is stopped, continued and killed at once, also on
        # failure.
        # In the monitor's network namespace (nsenter keeps the host's
        # /sys/fs/cgroup), where the lab's cleanup finds it even after the
        # lab itself was killed: a stopped group would never time out.
        g = subprocess.Popen(["nsenter", f"--net=/run/netns/{mo}", "sh", "-c", cmd],
                             stdout=subprocess.DEVNULL, stderr=open(work / "stress-ng.log", "a"),
                             start_new_session=True)
        stressing.append(g)
        return g

    def signal_group(p, sig):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass

    def kill_group(p):
        signal_group(p, signal.SIGKILL)
        p.wait(timeout=30)

    def edge():
        """The counters read at a window's edges."""
        fwd = net_dev(anchor[fw].pid, "d")["tx_packets"]
        out = net_dev(anchor[src].pid, "eth0")
        return {"t": time.monotonic(), "forwarded": fwd, "spin": spin_ticks(),
                # Offered: what the senders handed to Node 1's port, whether
                # the forwarding node's full input took it (tx_packets) or
                # refused it (tx_dropped: its NAPI ring was full).
                "offered": out["tx_packets"] + out["tx_dropped"],
                "drops": out["tx_dropped"] + backlog_drops(core),
                "cpu": cpu_times(core), "path": thread_ticks(forwarders),
                "irqs": device_irqs(core),
                "ticks": {k: thread_ticks(pids) for k, pids in watch.items()}}

    def spin_ticks():
        """Clock ticks the spinner took (the unit of /proc/stat): left out
        of the forwarding core's busy time."""
        return thread_ticks(spinning)

    def scrape():
        scraper.stdin.write("x\n")
        scraper.stdin.flush()
        line = scraper.stdout.readline()
        if not line:
            raise RuntimeError("the metrics reader in the monitor's namespace (_scrape) ended")
        got = json.loads(line)
        counts = {}
        for port in ("m", "u"):
            c = got.get(str(METRICS[port]))
            if c is None:
                raise RuntimeError(f"the node on port {port} stopped answering")
            counts[port] = c | dict(zip(PORT_KEYS, port_packets(port)))
        return counts

    def blast_leg(rnd):
        """The 64-byte phases of one round: one sender at the path's limit
        throughout, the two nodes running throughout, and the phases in
        windows of PE_WINDOW seconds that alternate (PE_ORDER, then
        back), so that the host's slow drifts fall on every phase alike
        instead of on whichever phase ran when they came. Each phase's
        window is one bin."""
        nodes = {"m": start_node(True, f"blast-{rnd}", "m"),
                 "u": start_node(False, f"blast-unisolated-{rnd}", "u")}
        # Longer than the leg can take (each is killed at its end); a
        # window checks that the senders still run.
        leg_secs = args.secs * len(PE_PHASES) * (PE_WINDOW + PE_SETTLE + 6) + 120
        stress = {"monitor_overloaded": overload(nodes["m"], True, leg_secs),
                  "monitor_unisolated": overload(nodes["u"], False, leg_secs)}
        time.sleep(1.0)  # the burners and writers are up
        watch.clear()
        for port in ("m", "u"):
            watch[f"{port}_node"] = [nodes[port].pid]
            watch[f"{port}_napi"] = [int(x) for x in monitor_napi[port]]
        watch["stress_m"] = group_pids(stress["monitor_overloaded"].pid)
        watch["stress_u"] = group_pids(stress["monitor_unisolated"].pid)
        for g in stress.values():
            signal_group(g, signal.SIGSTOP)
        # The forwarding core kept from halting in every phase alike: an
        # idle-class spinner there (it runs only when nothing else would,
        # so it takes nothing from the forwarding). In a virtual machine a
        # halted CPU is woken through the hypervisor: without it the
        # forwarding core halted between its polls in `forward`, and ran
        # 5-10 % faster in the phases where the monitor's idle-class
        # threads happened to keep it awake. A forwarding node is tuned
        # the same way (idle=poll, or a PM QoS request, on its cores).
        # It runs in Node 2's namespace (where cleanup finds it) and in
        # the cgroup hierarchies' roots, not in the lab's heavily weighted
        # cgroup, where it would compete with the monitor's cgroup.
        # It ends by itself after the leg's longest time (bash's own
        # clock: no process per turn), also when the lab was killed.
        spinner = spawn(fw, ["chrt", "-i", "0", "taskset", "-c", core, "bash", "-c",
                             f"while [ $SECONDS -lt {int(leg_secs)} ]; do :; done"])
        blasting.append(spinner)
        spinning[:] = [spinner.pid]
        for d in shield.dirs:
            try:
                (d.parent / "cgroup.procs").write_text(str(spinner.pid))
            except OSError:
                pass
        senders = []
        for c in send_cores:
            senders.append(spawn(src, ["taskset", "-c", str(c), blast, "eth0", fw_mac,
                                       "10.91.1.1", "10.91.2.2", leg_secs, FRAME_BYTES],
                                 stdout=subprocess.PIPE, text=True))
            blasting.append(senders[-1])
        time.sleep(1.0)  # past the ramp up
        last, before = None, scrape()
        for k in range(args.secs):
            for name in PE_ORDER if k % 2 == 0 else PE_ORDER[::-1]:
                if name != last:
                    # The mirror off and the overload stopped before the
                    # counters are read, so that a port's frames all go to
                    # the phase that sent them there (what a node captures
                    # later from its buffer goes to the phases after).
                    wire(None)
                    if last in stress:
                        signal_group(stress[last], signal.SIGSTOP)
                    time.sleep(0.05)  # frames the old filter was mirroring
                    if last is not None:
                        now = scrape()
                        if last == "monitor_unisolated":
                            now = drained("u", now)
                        moni_counts(last, before, now)
                        before = now
                    wire(PE_PORT[name])
                    if name in stress:
                        signal_group(stress[name], signal.SIGCONT)
                last = name
                time.sleep(PE_SETTLE)
                e0 = edge()
                time.sleep(PE_WINDOW)
                e1 = edge()
                if any(x.poll() is not None for x in senders):
                    raise RuntimeError("a sender ended before the leg did (see its output)")
                dt = e1["t"] - e0["t"]
                cpu = [e1["cpu"][i] - e0["cpu"][i] for i in range(4)]
                total = max(1, cpu[2])
                p = phases[name]
                p["bins"].append(round((e1["forwarded"] - e0["forwarded"]) / dt))
                p["offered"].append((e1["offered"] - e0["offered"]) / dt)
                p["input_drops"].append((e1["drops"] - e0["drops"]) / dt)
                # Busy without the spinner: what the forwarding and the
                # rest took of that core.
                spun = e1["spin"] - e0["spin"]
                p["core_busy"].append(max(0, cpu[0] - spun) / total)
                p["steal"].append(cpu[3] / total)
                p["irqs"].append(round((e1["irqs"] - e0["irqs"]) / dt))
                # CPUs' worth each part of the two monitors took in the
                # window (the overload's too: what isolation left it).
                p["cpu_of"].append({k: round((e1["ticks"][k] - e0["ticks"].get(k, 0)) / TICKS / dt, 3)
                                    for k in e1["ticks"]})
                # The forwarding's share of its core: the NAPI threads'
                # time, or softirq time there (RPS).
                p["path_cpu"].append(((e1["path"] - e0["path"]) if forwarders else cpu[1]) / total)
        wire(None)
        if last in stress:
            signal_group(stress[last], signal.SIGSTOP)
        time.sleep(0.05)
        moni_counts(last, before, scrape())
        for g in stress.values():
            kill_group(g)
        stressing.clear()
        for x in blasting:
            x.kill()
            x.wait(timeout=30)
        blasting.clear()
        spinning.clear()
        for port, node in nodes.items():
            counters = stop_node(node)
            for name in PE_PHASES:
                if moni_node(name) == port:
                    phases[name]["moni"]["isolation"] = counters["isolation"]
        for name in PE_PHASES:
            p, w = phases[name], args.secs
            m = p["moni"]
            print(f"round {rnd + 1} {name:20s} median {statistics.median(p['bins'][-w:]):>9,.0f} pps "
                  f"(offered {statistics.median(p['offered'][-w:]):,.0f}/s, input drops "
                  f"{statistics.median(p['input_drops'][-w:]):,.0f}/s, core {core} busy "
                  f"{statistics.median(p['core_busy'][-w:]):.0%}, forwarding "
                  f"{statistics.median(p['path_cpu'][-w:]):.0%} of it, device interrupts "
                  f"{statistics.median(p['irqs'][-w:]):,.0f}/s, the monitor's parts took "
                  f"{statistics.median(sum(c.values()) for c in p['cpu_of'][-w:]):.2f} CPUs)"
                  f"; so far moni captured {m['packets']:,}, dropped "
                  f"{m['kernel_drops'] + m['queue_drops']:,} of the port's "
                  f"{m['port_packets']:,}; the port dropped {m['port_drops']:,} at its full "
                  f"receive ring", flush=True)

    def drained(port, now):
        """Waits (up to 5 s, unmeasured) until the node on `port` has
        captured what its buffer held when its phase ended: the
        unisolated node keeps taking production's CPU until then, which
        would fall on the next phase's window. (The isolated node drains
        in idle time only, so it is not waited for.)"""
        still = 0
        for _ in range(16):
            # Longer than the node's publishing interval (250 ms), and
            # twice unchanged: one unchanged reading may fall between two
            # of its updates.
            time.sleep(0.3)
            later = scrape()
            still = still + 1 if later[port]["packets"] == now[port]["packets"] else 0
            now = later
            if still == 2:
                break
        return now

    def moni_node(name):
        """The node whose counters a phase reports: the unisolated one in
        its phase, the isolated one otherwise (in `forward` and `mirror`
        it runs too, its port receiving nothing)."""
        return "u" if PE_PORT[name] == "u" else "m"

    def moni_counts(name, before, now):
        port = moni_node(name)
        p = phases[name]
        p["moni"] = p["moni"] or dict.fromkeys(NODE_KEYS + PORT_KEYS, 0)
        for k in NODE_KEYS + PORT_KEYS:
            p["moni"][k] += now[port][k] - before[port][k]

    phases = {name: {"name": name, "bins": [], "offered": [], "core_busy": [], "path_cpu": [], "steal": [],
                     "irqs": [], "cpu_of": [], "input_drops": [], "moni": None}
              for name in PE_PHASES}
    tcp = {"without": [], "mirror": [], "with": []}
    tcp_moni = []
    shield = LabCgroup()
    shields.append(shield)
    shield.add(os.getpid())
    for t in forwarders:
        shield.add(int(t))
    server = spawn(dst, ["iperf3", "-s", "-p", "5201"], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    # Processes that only hold a namespace, so that its devices' counters
    # can be read through /proc/PID/net/dev without starting a process per
    # reading; and the reader of the nodes' metrics in the monitor's.
    anchor = {ns: spawn(ns, ["sleep", "infinity"]) for ns in (src, fw)}
    scraper = spawn(mo, [sys.executable, me, "_scrape", "--ports",
                         ",".join(str(METRICS[p]) for p in ("m", "u"))],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    # Can the disk writers bypass the page cache in the work directory?
    try:
        os.close(os.open(work / "o_direct", os.O_WRONLY | os.O_CREAT | os.O_DIRECT))
        os.unlink(work / "o_direct")
        direct_io = True
    except OSError:
        direct_io = False
        print(f"note: {work} does not take O_DIRECT; the disk writers write through the "
              "page cache", file=sys.stderr)
    running, stressing, blasting = [], [], []  # stopped in `finally` when left
    spinning = []  # the forwarding core's spinner, whose time core_busy leaves out
    watch = {}  # the monitors' parts (name -> pids) whose CPU time each window records
    node = None
    port_at_start = {}
    node_cgroups = []  # removed at the end, also when a node was killed
    napi_homes = {}  # port: the cgroups its monitor's NAPI thread was moved into
    try:
        offloads(False)
        for rnd in range(args.rounds):
            blast_leg(rnd)
            # TCP at full speed, one iperf3 stream with moni-node running at
            # its service defaults throughout, in windows that alternate
            # (none, mirror, monitor, then back) so that the host's drifts
            # fall on every state alike: production alone (no mirror; the
            # node receives nothing), the mirror alone (copied to n, which
            # nobody captures: what the software switch costs) and the
            # mirror to the node's port m.
            offloads(True)
            node = start_node(True, f"tcp-{rnd}", "m")
            # Longer than the windows take (each mirror change is a tc
            # call); stopped after the last window, so that no window
            # catches the stream's end.
            client = spawn(src, ["iperf3", "-c", "10.91.2.2", "-p", "5201", "-t",
                                 str(int(args.tcp_cycles * 3 * (TCP_WINDOW + TCP_SETTLE + 1) + 10))],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # past the slow start
            for k in range(args.tcp_cycles):
                order = ("without", "mirror", "with")
                for label in order if k % 2 == 0 else order[::-1]:
                    wire({"without": None, "mirror": "n", "with": "m"}[label])
                    time.sleep(TCP_SETTLE)
                    b0, t0 = rx_bytes(server.pid, "eth0"), time.monotonic()
                    time.sleep(TCP_WINDOW)
                    b1, t1 = rx_bytes(server.pid, "eth0"), time.monotonic()
                    tcp[label].append((b1 - b0) * 8 / (t1 - t0) / 1e9)
            wire(None)
            client.terminate()
            client.wait(timeout=30)
            tcp_moni.append(stop_node(node))
            node = None
            for label, what in (("without", "production alone"), ("mirror", "with the mirror alone"),
                                ("with", "with mirror and moni-node")):
                w = tcp[label][-args.tcp_cycles:]
                print(f"round {rnd + 1} tcp {what}: {statistics.fmean(w):.2f} Gbit/s "
                      f"over {len(w)} windows of {TCP_WINDOW} s", flush=True)
            offloads(False)
    finally:
        # Everything below runs to its end: a second SIGINT or SIGTERM
        # waits, and one step failing does not skip the rest.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        steps = [lambda g=g: kill_group(g) for g in stressing]
        steps += [lambda p=p: (p.kill(), p.wait(timeout=10))
                  for p in [node, server, scraper, *running, *blasting, *anchor.values()]
                  if p and p.poll() is None]
        steps += [lambda port=port: release_napi(port) for port in list(napi_homes)]
        steps += [lambda d=d: d.rmdir() for d in node_cgroups]
        steps.append(shield.close)
        for step in steps:
            try:
                step()
            except (OSError, subprocess.SubprocessError) as e:
                # A node's cgroup it removed itself, a group already gone.
                if not isinstance(e, (FileNotFoundError, ProcessLookupError)):
                    print(f"note: cleaning up: {e}", file=sys.stderr)
    out = []
    for name in PE_PHASES:
        p = phases[name]
        out.append({"name": name, "median_pps": statistics.median(p["bins"]), "bins": p["bins"],
                    "offered_pps": statistics.median(p["offered"]),
                    "core_busy": statistics.median(p["core_busy"]),
                    "steal": p["steal"], "offered_bins": [round(x) for x in p["offered"]],
                    "device_irq_bins": p["irqs"], "monitor_cpu_bins": p["cpu_of"],
                    "monitor_cpu": {k: statistics.median(c[k] for c in p["cpu_of"]) for k in watch},
                    "path_cpu": statistics.median(p["path_cpu"]),
                    "input_drops_pps": statistics.median(p["input_drops"]), "moni": p["moni"]})
    base = out[0]["median_pps"] or 1
    # A phase's rate against `forward`'s: the median, over the
    # alternation's cycles, of its window against forward's window of the
    # same cycle (a few seconds apart). This VM's speed changes in spells
    # of tens of seconds (sender and forwarding alike, by up to 10 %),
    # which made the phases' 1 s bins bimodal: the ratio of the phases'
    # medians then flipped with the mode that held each phase's middle bin
    # (0.91-1.02 with nothing else changed). The pairs take the spells
    # out; the medians' ratio is reported too.
    ratios = {name: paired(phases["forward"]["bins"], phases[name]["bins"]) for name in PE_PHASES}

    # A state's throughput is what its windows carried over their time
    # (the windows are of equal length: the mean), as iperf3 reports a
    # stream's; the medians are in the report too.
    tw, tm = statistics.fmean(tcp["without"]), statistics.fmean(tcp["with"])
    mw, mm = statistics.median(tcp["without"]), statistics.median(tcp["with"])
    moni_tcp = {k: sum(c[k] for c in tcp_moni) for k in NODE_KEYS}
    report = {
        "packet_bytes": FRAME_BYTES,
        "phases": out,
        "ratio_monitor": ratios["monitor"],
        "ratio_overloaded": ratios["monitor_overloaded"],
        "ratio_unisolated": ratios["monitor_unisolated"],
        # Every phase's, paired (as the three above) and of the medians.
        "ratios": ratios,
        "ratio_of_medians": {p["name"]: p["median_pps"] / base for p in out},
        "tcp": {"without_gbps": tw, "with_gbps": tm, "ratio": tm / tw if tw else 0.0},
        # Every window (Gbit/s), in the order measured, and moni-node's own
        # counters over the TCP legs.
        "tcp_windows": tcp, "tcp_window_secs": TCP_WINDOW, "tcp_moni": moni_tcp,
        # The software switch's own share of the TCP cost (on a veth its
        # mirror runs in the TCP sender's context).
        "tcp_mirror_gbps": statistics.fmean(tcp["mirror"]),
        "tcp_medians": {"without_gbps": mw, "with_gbps": mm, "ratio": mm / mw if mw else 0.0},
        # Each cycle's windows against each other, medians: the switch's
        # share (mirror), the whole probe's (with) and moni-node's own.
        "tcp_paired": {"mirror": paired(tcp["without"], tcp["mirror"]),
                       "with": paired(tcp["without"], tcp["with"]),
                       "with_vs_mirror": paired(tcp["mirror"], tcp["with"])},
        # Whether `forward` ran at the forwarding limit, and by which
        # evidence: the senders offered more than the forwarding core
        # forwarded (its input queue dropped the rest), or forwarding
        # (softirq) took nearly all of that core; otherwise the senders
        # were the bottleneck, and the report says so.
        "limit": {"kind": limit_kind(out[0]), "core": core, "disk_irq_cpus": sorted(disk_cpus),
                  "core_busy": out[0]["core_busy"], "path_cpu": out[0]["path_cpu"],
                  "offered_pps": out[0]["offered_pps"], "forwarded_pps": out[0]["median_pps"],
                  "input_drops_pps": out[0]["input_drops_pps"]},
    }
    print_fig5(report)
    lim = report["limit"]
    print(f"forward phase: {lim['kind']} (offered {lim['offered_pps']:,.0f}/s, forwarded "
          f"{lim['forwarded_pps']:,.0f}/s, input queue drops {lim['input_drops_pps']:,.0f}/s, "
          f"forwarding took {lim['path_cpu']:.0%} of core {lim['core']})")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    if args.plot:
        svg_boxplot(out, args.plot, f"Forwarding of {FRAME_BYTES}-byte frames, 1 s bins "
                    f"({args.secs} x {args.rounds} alternating windows per phase)")
        print(f"box plot: {args.plot}")
    return report


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("shadow", help="Table 1: six phases, MOS per VNet and at the receiver")
    s.add_argument("--phase-secs", type=int, default=20)
    s.add_argument("--prometheus", action="store_true",
                   help="run Prometheus on the node and collector and evaluate every dashboard query")
    s.add_argument("--plot")
    p = sub.add_parser("probe-effect", help="Fig. 5: forwarding rate with and without monitoring")
    p.add_argument("--secs", type=int, default=10,
                   help="1 s windows (bins) per phase and round, the phases alternating")
    p.add_argument("--rounds", type=int, default=1,
                   help="repeat the 64-byte leg and the TCP leg (bins and windows pooled)")
    p.add_argument("--plot", help="write the box plot of the 1 s bins per phase (SVG)")
    p.add_argument("--tcp-cycles", type=int, default=8,
                   help="TCP leg: cycles of the three states per round (1.8 s each)")
    for x in (s, p):
        x.add_argument("--bin-dir", help="directory with moni-node and moni-collector")
        x.add_argument("--work", help="directory for configs, Parquet and logs")
        x.add_argument("--json", help="write the results as JSON here")
    c = sub.add_parser("cleanup", help="delete namespaces a killed lab left behind")
    c.add_argument("--bin-dir", help=argparse.SUPPRESS)
    v = sub.add_parser("_voice")
    v.add_argument("--secs", type=float)
    v.add_argument("--dst")
    b = sub.add_parser("_bg")
    b.add_argument("--secs", type=float)
    b.add_argument("--phase-secs", type=float)
    b.add_argument("--dst")
    b.add_argument("--seed", type=int, default=2009)
    b.add_argument("--dst-mac")
    k = sub.add_parser("_scrape")
    k.add_argument("--ports", type=lambda v: [int(x) for x in v.split(",")])
    d = sub.add_parser("_dashboards")
    d.add_argument("--prom")
    a = ap.parse_args()
    if a.cmd == "_voice":
        return voice(a.secs, a.dst)
    if a.cmd == "_bg":
        return background(a.secs, a.phase_secs, a.dst, a.seed, a.dst_mac)
    if a.cmd == "_scrape":
        return scrape_loop(a.ports)
    if a.cmd == "_dashboards":
        print(json.dumps(check_dashboards(a.prom)))
        return
    if os.geteuid() != 0:
        sys.exit("error: the lab needs root (network namespaces and tc)")
    if a.cmd == "cleanup":
        cleanup(every=True)
        return
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        if a.cmd == "shadow":
            shadow(a)
        else:
            probe_effect(a)
    finally:
        cleanup()


if __name__ == "__main__":
    main()
