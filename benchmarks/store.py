"""Store throughput against a throwaway local InfluxDB 1.x: points per second written straight
(the writer thread, batches of store.batch_size) and replayed from the on-disk spool after an
outage; a day of 1 s meter readings (86,400 points) must replay in under a minute.

    .venv/bin/python benchmarks/store.py [--points 86400]
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from drivers.store.influx import InfluxStore, V1Sender, point  # noqa: E402
from tests.influxd import free_port, start_influxd  # noqa: E402


def day_of_points(n: int) -> list[str]:
    t0 = datetime(2026, 6, 1, tzinfo=timezone.utc)
    return [point("meter", {"site": "bench"}, {"net_w": 1000.0 + i % 700, "production_w": 3000.0,
                                               "consumption_w": 2000.0 - i % 700}, t0 + timedelta(seconds=i))
            for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=86_400)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gestor-bench-"))
    (tmp / "influx").mkdir()
    server = start_influxd(tmp / "influx")
    try:
        lines = day_of_points(args.points)
        store = InfluxStore(V1Sender(server.host, server.port, "direct", None, None, 10.0), 500).open()
        a = time.perf_counter()
        store.write(lines)
        assert store.flush(600)
        direct = time.perf_counter() - a
        store.close()
        # an outage: everything goes to the spool...
        dead = InfluxStore(V1Sender("127.0.0.1", free_port(), "replayed", None, None, 0.5), 500,
                           spool_dir=tmp / "spool").open()
        a = time.perf_counter()
        for k in range(0, len(lines), 1000):
            dead.write(lines[k:k + 1000])
        dead.close(timeout_s=1.0)
        spooled = time.perf_counter() - a
        size = sum(f.stat().st_size for f in (tmp / "spool").glob("*.lp"))
        # ...and the server is back
        back = InfluxStore(V1Sender(server.host, server.port, "replayed", None, None, 10.0), 500,
                           spool_dir=tmp / "spool").open()
        a = time.perf_counter()
        assert back.flush(600)
        replay = time.perf_counter() - a
        back.close()
        c = server.client("replayed")
        n = list(c.query("SELECT count(net_w) FROM meter").get_points())[0]["count"]
        c.close()
        print(f"direct write: {len(lines):,} points in {direct:.1f} s = {len(lines) / direct:,.0f} points/s")
        print(f"spooled during the outage: {spooled:.1f} s ({size / 1e6:.1f} MB on disk)")
        print(f"replayed from the spool: {len(lines):,} points in {replay:.1f} s = {len(lines) / replay:,.0f} "
              f"points/s; {n:,} in InfluxDB afterwards")
        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
