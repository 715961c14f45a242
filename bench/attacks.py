#!/usr/bin/env python3
"""Attack captures for bench/replay.sh's "IDS under attack" lines (issue 16:
the probe must not slow down sharply exactly when it is attacked).

    python3 bench/attacks.py OUT_DIR [PACKETS]     (default 1,000,000 each)

Writes five classic pcap files (Ethernet, 2 µs apart), each from a fixed
seed so every run times the same bytes:
  udp-flood.pcap    UDP to one victim's port 80 from spoofed random sources
                    and ports (every datagram a new exchange and source);
  icmp-flood.pcap   ICMP echo requests to one victim from spoofed sources;
  dns-torture.pcap  "water torture": 200 clients asking one resolver for
                    random 12-character names under example.com;
  syn-scan.pcap     one source sending SYNs to random ports of random hosts
                    of a /16 (nmap -sS of a network at full speed);
  port-scan.pcap    one source sending SYNs to every port of one host, over
                    and over (nmap -sS of one host at full speed);
  host-sweep.pcap   one source sending SYNs to port 80 of random hosts of a
                    /16 (masscan of one port across a network).
"""
import os
import random
import struct
import sys


def checksum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def ipv4(src: bytes, dst: bytes, proto: int, payload: bytes) -> bytes:
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0, src, dst)
    return h[:10] + struct.pack("!H", checksum(h)) + h[12:] + payload


def frame(packet: bytes) -> bytes:
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + packet


def write(path: str, frames) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        t0 = 1_700_000_000 * 1_000_000
        for i, fr in enumerate(frames):
            ts = t0 + 2 * i
            f.write(struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(fr), len(fr)))
            f.write(fr)


def main() -> None:
    out, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    os.makedirs(out, exist_ok=True)
    rng = random.Random(7)
    spoofed = lambda: struct.pack("!I", rng.getrandbits(32) | 0x01000000)
    victim, resolver = bytes([198, 51, 100, 7]), bytes([192, 0, 2, 53])

    def udp_flood():
        for _ in range(n):
            udp = struct.pack("!HHHH", rng.getrandbits(16), 80, 8 + 64, 0) + b"x" * 64
            yield frame(ipv4(spoofed(), victim, 17, udp))

    def icmp_flood():
        for i in range(n):
            echo = struct.pack("!BBHHH", 8, 0, 0, i & 0xFFFF, 1) + b"y" * 32
            yield frame(ipv4(spoofed(), victim, 1, echo))

    def dns_torture():
        letters = "abcdefghijklmnopqrstuvwxyz0123456789"
        clients = [bytes([10, 9, k >> 8, k & 255]) for k in range(200)]
        for i in range(n):
            label = "".join(rng.choice(letters) for _ in range(12)).encode()
            q = struct.pack("!HHHHHH", i & 0xFFFF, 0x0100, 1, 0, 0, 0)
            q += bytes([len(label)]) + label + b"\x07example\x03com\x00\x00\x01\x00\x01"
            udp = struct.pack("!HHHH", 1024 + i % 60000, 53, 8 + len(q), 0) + q
            yield frame(ipv4(rng.choice(clients), resolver, 17, udp))

    def syn_scan():
        scanner = bytes([203, 0, 113, 5])
        for i in range(n):
            host = bytes([10, 20, rng.getrandbits(8), rng.getrandbits(8)])
            tcp = struct.pack("!HHIIBBHHH", 40000, rng.randint(1, 65535), i, 0, 0x50, 0x02, 1024, 0, 0)
            yield frame(ipv4(scanner, host, 6, tcp))

    def port_scan():
        scanner, host = bytes([203, 0, 113, 6]), bytes([10, 30, 0, 9])
        for i in range(n):
            tcp = struct.pack("!HHIIBBHHH", 40001, 1 + i % 65535, i, 0, 0x50, 0x02, 1024, 0, 0)
            yield frame(ipv4(scanner, host, 6, tcp))

    def host_sweep():
        scanner = bytes([203, 0, 113, 9])
        for i in range(n):
            host = bytes([10, 40, rng.getrandbits(8), rng.getrandbits(8)])
            tcp = struct.pack("!HHIIBBHHH", 40000 + i % 7, 80, i, 0, 0x50, 0x02, 1024, 0, 0)
            yield frame(ipv4(scanner, host, 6, tcp))

    for name, gen in (("udp-flood", udp_flood), ("icmp-flood", icmp_flood),
                      ("dns-torture", dns_torture), ("syn-scan", syn_scan),
                      ("port-scan", port_scan), ("host-sweep", host_sweep)):
        write(os.path.join(out, f"{name}.pcap"), gen())


if __name__ == "__main__":
    main()
