#!/usr/bin/env python3
"""The paper's experiments on one Linux machine, with network namespaces,
real kernel forwarding and the real moni-node and moni-collector.

    lab.py shadow        [--phase-secs 20] [--prometheus] [--json FILE] [--plot FILE]
    lab.py probe-effect  [--secs 10] [--rate 300M]
    lab.py cleanup       (removes what a killed lab left behind)

Needs root, iproute2 (ip, tc with htb, u32 and mirred) and, for
probe-effect, iperf3. Every namespace the lab makes is named `ml<PID>-*`
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
"""

import argparse
import json
import os
import random
import re
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


def probe_effect(args):
    """The paper's Fig. 5: the production path's forwarding rate in 1 s
    bins, without and then with the mirror and moni-node."""
    node_bin, _ = bins(args)
    work = Path(args.work or f"/tmp/moni-lab-{os.getpid()}")
    work.mkdir(parents=True, exist_ok=True)
    src, fw, dst, mo = netns("src"), netns("fw"), netns("dst"), netns("mo")
    veth(src, "eth0", fw, "s")
    veth(fw, "d", dst, "eth0")
    veth(fw, "m", mo, "m")
    sh(["ip", "addr", "add", "10.91.0.1/24", "dev", "eth0"], ns=src)
    sh(["ip", "addr", "add", "10.91.0.2/24", "dev", "eth0"], ns=dst)
    sh(["ip", "neigh", "replace", "10.91.0.2", "lladdr", mac(dst, "eth0"), "dev", "eth0", "nud",
        "permanent"], ns=src)
    sh(["ip", "neigh", "replace", "10.91.0.1", "lladdr", mac(src, "eth0"), "dev", "eth0", "nud",
        "permanent"], ns=dst)
    for d in ("s", "d"):
        tc(fw, "qdisc", "add", "dev", d, "clsact")

    def wire(mirror):
        for a, b in (("s", "d"), ("d", "s")):
            tc(fw, "filter", "del", "dev", a, "ingress", check=False)
            m = ["action", "mirred", "egress", "mirror", "dev", "m"] if mirror else []
            tc(fw, "filter", "add", "dev", a, "ingress", "protocol", "all", "u32", "match", "u32",
               "0", "0", *m, "action", "mirred", "egress", "redirect", "dev", b)

    def tx_packets():
        j = json.loads(sh(["ip", "-s", "-j", "link", "show", "dev", "d"], ns=fw, capture=True))
        return j[0]["stats64"]["tx"]["packets"]

    server = spawn(dst, ["iperf3", "-s", "-p", "5201"], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    time.sleep(0.5)

    def run():
        client = spawn(src, ["iperf3", "-c", "10.91.0.2", "-p", "5201", "-u", "-b", args.rate,
                             "-l", "1400", "-t", args.secs + 1], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        rates, last = [], tx_packets()
        for _ in range(args.secs + 1):
            time.sleep(1.0)
            now = tx_packets()
            rates.append(now - last)
            last = now
        client.wait(timeout=30)
        return rates[1:-1] or rates  # leave out the ramp up and down

    wire(False)
    base = run()
    wire(True)
    (work / "probe.toml").write_text(
        f'[node]\nname = "lab-probe"\nworkers = 1\n[metrics]\nlisten = "127.0.0.1:9464"\n'
        f'[[sources]]\ninterface = "m"\nvnet = "A"\nrole = "production"\n'
        f'[output]\ndir = "{work / "probe-out"}"\n')
    node = spawn(mo, [node_bin, "run", "--config", work / "probe.toml"], stdout=subprocess.PIPE,
                 stderr=subprocess.DEVNULL, text=True)
    wait_http(mo, "http://127.0.0.1:9464/healthz")
    monitored = run()
    node.send_signal(signal.SIGTERM)
    summary = json.loads((node.communicate(timeout=60)[0] or "{}").strip() or "{}")
    server.terminate()
    server.wait(timeout=10)
    m0, m1 = statistics.median(base), statistics.median(monitored)
    src_tot = summary.get("sources", [{}])[0] if summary.get("sources") else {}
    print(f"offered: UDP {args.rate}bit/s, 1400-byte datagrams, {args.secs} s per run")
    print(f"forwarded packets/s without mirror and moni-node: median {m0:,.0f}  (1 s bins: {base})")
    print(f"forwarded packets/s with mirror and moni-node:    median {m1:,.0f}  (1 s bins: {monitored})")
    print(f"moni-node captured {src_tot.get('packets', 0):,} packets, kernel drops "
          f"{src_tot.get('kernel_drops', 0)}")
    ratio = m1 / m0 if m0 else 0.0
    print(f"probe effect ratio (with / without): {ratio:.3f}  (goal >= 0.98)")
    report = {"without": base, "with": monitored, "median_without": m0, "median_with": m1,
              "ratio": ratio, "node": summary}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
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
    p.add_argument("--secs", type=int, default=10)
    p.add_argument("--rate", default="300M")
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
    d = sub.add_parser("_dashboards")
    d.add_argument("--prom")
    a = ap.parse_args()
    if a.cmd == "_voice":
        return voice(a.secs, a.dst)
    if a.cmd == "_bg":
        return background(a.secs, a.phase_secs, a.dst, a.seed, a.dst_mac)
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
