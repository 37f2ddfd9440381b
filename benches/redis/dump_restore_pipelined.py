"""Baseline (b): a redis-py script that copies every type with pipelined
DUMP/RESTORE, 1,000 keys per pipeline, TTLs kept (PTTL → RESTORE ttl).
Prints one JSON line.
Usage: dump_restore_pipelined.py SOURCE_URL TARGET_URL
"""
import json
import sys
import time

import redis

BATCH = 1000
src = redis.Redis.from_url(sys.argv[1])
dst = redis.Redis.from_url(sys.argv[2])
start = time.monotonic()
scanned = copied = 0


def flush(keys):
    global copied
    p = src.pipeline(transaction=False)
    for k in keys:
        p.pttl(k)
        p.dump(k)
    got = p.execute()
    w = dst.pipeline(transaction=False)
    for i, k in enumerate(keys):
        ttl, payload = got[2 * i], got[2 * i + 1]
        if payload is None or ttl == -2:
            continue
        w.restore(k, max(ttl, 0), payload, replace=True)
        copied += 1
    w.execute()


batch = []
for key in src.scan_iter(count=BATCH):
    scanned += 1
    batch.append(key)
    if len(batch) == BATCH:
        flush(batch)
        batch = []
if batch:
    flush(batch)
print(json.dumps({"scanned": scanned, "copied": copied, "seconds": time.monotonic() - start}))
