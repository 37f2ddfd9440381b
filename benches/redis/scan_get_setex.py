"""Baseline (a): the SCAN + GET/SETEX loop of a typical migration script.

Strings only, one key at a time, as commonly written with redis-py; keys of
other types answer WRONGTYPE and are skipped. Prints one JSON line.
Usage: scan_get_setex.py SOURCE_URL TARGET_URL
"""
import json
import sys
import time

import redis

src = redis.Redis.from_url(sys.argv[1])
dst = redis.Redis.from_url(sys.argv[2])
start = time.monotonic()
scanned = copied = 0
for key in src.scan_iter(count=1000):
    scanned += 1
    try:
        value = src.get(key)
    except redis.exceptions.ResponseError:
        continue  # not a string
    if value is None:
        continue  # expired meanwhile
    ttl = src.ttl(key)
    if ttl > 0:
        dst.setex(key, ttl, value)
    else:
        dst.set(key, value)
    copied += 1
print(json.dumps({"scanned": scanned, "copied": copied, "seconds": time.monotonic() - start}))
