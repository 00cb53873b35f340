"""Time of one monitoring cycle (Eastron read over Modbus TCP + InfluxDB write hand-off + live
state file) against a local pymodbus server and a throwaway local InfluxDB, over N cycles.

    .venv/bin/python benchmarks/meter_cycle.py [--cycles 1000] [--rtu]

Prints p50/p99/max of the cycle time, the time for the store to drain, and the process RSS.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

import monitoring  # noqa: E402
from drivers.store.influx import InfluxStore  # noqa: E402
from gestor.clock import SimClock  # noqa: E402
from tests.conftest import make_settings  # noqa: E402
from tests.emulators.modbus_server import EASTRON_LAYOUT, RegisterServer  # noqa: E402
from tests.influxd import free_port, start_influxd  # noqa: E402
from tests.integration.test_meters import EastronPlayer, house_rows  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=1000)
    ap.add_argument("--rtu", action="store_true", help="over a socat pseudo-terminal instead of TCP")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gestor-bench-"))
    (tmp / "influx").mkdir()
    influxd = start_influxd(tmp / "influx")
    srv = RegisterServer(EASTRON_LAYOUT)
    if args.rtu:
        srv.start_rtu(tmp)
        meter = {"driver": "eastron", "transport": "rtu", "serial_port": srv.client_port}
    else:
        srv.start_tcp(free_port())
        meter = {"driver": "eastron", "host": "127.0.0.1", "port": srv.address[1]}
    try:
        s = make_settings(tmp, influxd, "bench", meter_section=meter)
        rows = house_rows(args.cycles, start=0)
        player = EastronPlayer(srv, rows, step_s=1.0)
        t0 = datetime(2022, 6, 11, tzinfo=timezone.utc)
        clock = SimClock(t0)
        store = InfluxStore.from_settings(s.store).open()
        mon = monitoring.Monitoring(s, clock, store)
        times = []
        for i in range(len(rows)):
            player(i)
            clock.set(t0 + timedelta(seconds=i))
            a = time.perf_counter()
            assert mon.cycle() is not None
            times.append(time.perf_counter() - a)
        a = time.perf_counter()
        assert store.flush(60)
        drain = time.perf_counter() - a
        store.close()
        mon.close()
        times.sort()
        q = statistics.quantiles(times, n=100)
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"meter_cycle ({'rtu/pty' if args.rtu else 'tcp'}): {len(times)} cycles: "
              f"p50 {q[49] * 1000:.2f} ms  p99 {q[98] * 1000:.2f} ms  max {times[-1] * 1000:.2f} ms; "
              f"store drained in {drain * 1000:.0f} ms after; peak RSS {rss_mb:.0f} MB")
    finally:
        srv.close()
        influxd.stop()


if __name__ == "__main__":
    main()
