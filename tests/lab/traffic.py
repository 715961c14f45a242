#!/usr/bin/env python3
"""Traffic for moni's network-namespace tests (standard library only).

  traffic.py sink                      UDP sinks on 9000 and 40000, a TCP
                                       server on 8080 that reads to EOF
  traffic.py send --udp N --size S     N UDP datagrams of S payload bytes
          [--tcp BYTES] [--rtp N]      from port 5555 to 10.77.0.2:9000, one
          [--pps P] [--secs T]         TCP connection carrying BYTES, an RTP
                                       stream of N PCMU packets (SSRC
                                       0x1234abcd, sequence wrapping) from
                                       port 40002 to port 40000
  traffic.py vlan --udp N --vlan V     N raw 802.1Q-tagged UDP frames on p0
                                       (10.78.0.1:5556 -> 10.78.0.2:9000)
  traffic.py flood --secs T            UDP as fast as possible for T seconds
                                       from --flows source ports; prints the count

Every count the test needs is measured on the interfaces, not trusted from
here; this script only makes the packets.
"""
import argparse
import socket
import struct
import sys
import threading
import time

DST = "10.77.0.2"


def sink():
    def udp(port):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", port))
        while True:
            s.recv(65535)

    def tcp():
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("0.0.0.0", 8080))
        srv.listen(16)
        while True:
            c, _ = srv.accept()
            while c.recv(65536):
                pass
            c.close()

    for t in (lambda: udp(9000), lambda: udp(40000), tcp):
        threading.Thread(target=t, daemon=True).start()
    print("ready", flush=True)
    while True:
        time.sleep(3600)


def send(a):
    gap = 1.0 / a.pps if a.pps > 0 else 0.0
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", 5555))
    payload = b"m" * a.size
    t0 = time.monotonic()
    for i in range(a.udp):
        u.sendto(payload, (DST, 9000))
        if gap:
            due = t0 + (i + 1) * gap
            while time.monotonic() < due:
                pass
    if a.tcp:
        c = socket.create_connection((DST, 8080))
        c.sendall(b"t" * a.tcp)
        c.shutdown(socket.SHUT_WR)
        while c.recv(65536):
            pass
        c.close()
    if a.rtp:
        r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        r.bind(("0.0.0.0", 40002))
        seq, ts = 65536 - a.rtp // 2, 1000
        t0 = time.monotonic()
        for i in range(a.rtp):
            hdr = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, ts & 0xFFFFFFFF, 0x1234ABCD)
            r.sendto(hdr + b"\xff" * 160, (DST, 40000))
            seq += 1
            ts += 160
            due = t0 + (i + 1) * 0.02
            while time.monotonic() < due:
                time.sleep(0.001)
    print("sent", flush=True)


def checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def vlan(a):
    """Tagged frames written straight onto p0 (no VLAN device needed)."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind(("p0", 0))
    src_mac = open("/sys/class/net/p0/address").read().strip()
    mac = bytes.fromhex(src_mac.replace(":", ""))
    payload = b"v" * a.size
    udp = struct.pack("!HHHH", 5556, 9000, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0x4000, 64, 17, 0,
                     socket.inet_aton("10.78.0.1"), socket.inet_aton("10.78.0.2"))
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    frame = b"\xff" * 6 + mac + struct.pack("!HH", 0x8100, a.vlan) + b"\x08\x00" + ip + udp
    for _ in range(a.udp):
        s.send(frame)
    print("sent", flush=True)


def flood(a):
    socks = []
    for _ in range(a.flows):
        socks.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    payload = b"f" * a.size
    n = 0
    end = time.monotonic() + a.secs
    while time.monotonic() < end:
        for s in socks:
            for _ in range(64):
                s.sendto(payload, (DST, 9000))
            n += 64
    print(n, flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["sink", "send", "vlan", "flood"])
    p.add_argument("--vlan", type=int, default=100)
    p.add_argument("--udp", type=int, default=0)
    p.add_argument("--size", type=int, default=100)
    p.add_argument("--tcp", type=int, default=0)
    p.add_argument("--rtp", type=int, default=0)
    p.add_argument("--pps", type=float, default=0)
    p.add_argument("--secs", type=float, default=1.0)
    p.add_argument("--flows", type=int, default=16)
    a = p.parse_args()
    {"sink": lambda: sink(), "send": lambda: send(a), "vlan": lambda: vlan(a), "flood": lambda: flood(a)}[a.mode]()


if __name__ == "__main__":
    sys.exit(main())
