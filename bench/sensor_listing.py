"""Cost of one arrival-sensor discovery pass vs the age of the landing zone, on a real
S3-protocol server (moto on loopback): S3 requests and wall time.

Side by side in one process, on the same landing zone:
- full:    ``landing.ready_days`` (what the sensor did before: lists every landed object)
- window:  what a tick does now: ``landed_days_after`` (one child listing per table, from the
           recheck window on) + ``day_signature`` (three marker stats) per listed day

Usage: python bench/sensor_listing.py [days ...]   (default: 30 365)
"""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from datetime import date, timedelta

import boto3
from moto.server import ThreadedMotoServer

from reckit_assets.core.ingest import landing
from reckit_assets.core.io.s3 import S3Storage

RECHECK = 7  # the default window (feature window and training window are 7 days)
FILES_PER_PARTITION = 4  # part files besides _SUCCESS


def main(sizes: list[int]) -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=f"http://{host}:{port}",
    )
    client = boto3.client("s3")
    calls = {"n": 0, "keys": 0}

    def count(parsed=None, **_):
        calls["n"] += 1
        calls["keys"] += len((parsed or {}).get("Contents", [])) + len(
            (parsed or {}).get("CommonPrefixes", [])
        )

    client.meta.events.register("after-call.s3.*", count)
    print(
        "| landed days | objects | full: requests | full: entries listed | full: ms "
        "| window: requests | window: entries listed | window: ms |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        bucket = f"bench-{uuid.uuid4().hex[:10]}"
        client.create_bucket(Bucket=bucket)
        store = S3Storage(bucket, "landing", client=client)
        first = date(2025, 1, 1)
        days = [(first + timedelta(days=k)).isoformat() for k in range(n)]
        for dt in days:
            for table in landing.TABLES:
                for part in range(FILES_PER_PARTITION):
                    store.write_bytes(f"{table}/dt={dt}/part-{part:05d}.parquet", b"x")
                store.write_bytes(landing.marker_key(table, dt), b"")
        newest = days[-1]
        since = (date.fromisoformat(newest) - timedelta(days=RECHECK + 1)).isoformat()

        calls.update(n=0, keys=0)
        t = time.perf_counter()
        full = landing.ready_days(store)
        full_ms, full_calls, full_keys = (time.perf_counter() - t) * 1000, calls["n"], calls["keys"]

        calls.update(n=0, keys=0)
        t = time.perf_counter()
        window = {
            dt: landing.day_signature(store, dt) for dt in landing.landed_days_after(store, since)
        }
        win_ms, win_calls, win_keys = (time.perf_counter() - t) * 1000, calls["n"], calls["keys"]
        assert all(full[dt] == sig for dt, sig in window.items())  # same signatures
        objects = n * len(landing.TABLES) * (FILES_PER_PARTITION + 1)
        print(
            f"| {n} | {objects} | {full_calls} | {full_keys} | {full_ms:.0f} "
            f"| {win_calls} | {win_keys} | {win_ms:.0f} |"
        )
    server.stop()


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [30, 365])
