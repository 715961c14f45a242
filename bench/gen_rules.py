"""Writes N generated content rules (Suricata syntax) for bench/rules.sh.

Fixed seed, so every run benchmarks the same rules. Patterns are 6-12
random printable bytes (some with |hex| bytes); a fifth of the rules are
nocase, a fifth chain a second content with distance/within, a tenth carry
a port list or dsize, protocols alternate tcp/udp.
"""
import random
import sys

n = int(sys.argv[1])
rng = random.Random(4242)
alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/=-_."


def pattern():
    p = "".join(rng.choice(alphabet) for _ in range(rng.randint(6, 12)))
    if rng.random() < 0.2:
        p += "|%02x %02x|" % (rng.randrange(256), rng.randrange(256))
    return p


for i in range(n):
    proto = "tcp" if i % 2 == 0 else "udp"
    opts = [f'msg:"bench rule {i}"', f'content:"{pattern()}"']
    if i % 5 == 1:
        opts.append("nocase")
    if i % 5 == 2:
        opts += [f'content:"{pattern()}"', "distance:0", "within:200"]
    if i % 10 == 3:
        opts.append("dsize:>20")
    ports = "[80,443,8000:8100]" if i % 10 == 7 else "any"
    opts += ["classtype:misc-activity", f"sid:{9000000 + i}", "rev:1"]
    print(f"alert {proto} any any -> any {ports} ({'; '.join(opts)};)")
