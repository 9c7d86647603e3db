#!/usr/bin/env python3
"""Regenerates mailboxes.csv for example.yaml, deterministically (seed 4)."""
import math, random

rng = random.Random(4)
users = ["anna", "ben", "carla", "dev", "elif", "farid", "greta", "hugo", "ines", "jon",
         "kemal", "lea", "mo", "nora", "omar", "pia", "quinn", "rosa", "sami", "tara"]
counts = {"alpha": 300, "bravo": 320, "charlie": 280, "delta": 100}
busy = {"alpha": 0.8, "bravo": 1.4, "charlie": 0.7, "delta": 0.9}
rows = []
n = 0
for cluster, count in counts.items():
    for k in range(count):
        n += 1
        name = f"{users[n % len(users)]}.{n:04d}@example.com"
        size = int(math.exp(rng.gauss(math.log(1 << 30), 1.1)))
        size = min(size, 60 << 30)
        msgs = max(1, size // rng.randint(40_000, 120_000))
        load = round(busy[cluster] * (0.05 + rng.random() * 1.2 + size / (1 << 30) * 0.05), 3)
        rows.append((name, cluster, size, load, msgs))
with open("mailboxes.csv", "w") as f:
    f.write("mailbox,cluster,bytes,load,messages\n")
    for r in rows:
        f.write("%s,%s,%d,%s,%d\n" % r)
