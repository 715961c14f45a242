"""Small captures written by the tests themselves (no corpus needed)."""

import struct


def write_syn_scan(path, ports=400):
    """A pcap of one host sending a SYN to `ports` distinct ports of
    another within 0.4 s (Ethernet, IPv4, TCP; checksums left zero)."""
    recs = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i in range(ports):
        tcp = struct.pack("!HHIIBBHHH", 40000, 1 + i, i, 0, 5 << 4, 0x02, 1024, 0, 0)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), i, 0, 64, 6, 0,
                         bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
        frame = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + ip + tcp
        ts = 1_700_000_000 * 1_000_000 + i * 1000
        recs.append(struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(frame), len(frame)))
        recs.append(frame)
    path.write_bytes(b"".join(recs))
