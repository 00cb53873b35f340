"""The Pi's side of a test on a private LAN (``tests/netns.py``): run inside a host as
``python -m tests.meter_host WORKDIR METER_JSON [--influx]``, it opens monitoring on the meter
settings ``METER_JSON`` (a simulated clock; with ``--influx``, a throwaway InfluxDB started inside
this same namespace, since the test's own one on the root namespace's loopback is out of reach)
and obeys one command per stdin line, answering one JSON line on stdout:

* ``at EPOCH_S``: set the clock (before the emulator sends what the next read gets: a datagram's
  arrival is stamped by this clock) (``{"at": EPOCH_S}``);
* ``wait N``: wait (10 s at most) until the meter driver has handled N datagrams in all
  (``sma_em``'s ``datagrams``): a read then sees every datagram sent before (``{"datagrams": n}``);
* ``read``: one read of the meter driver: ``{"net_w": ..., "import_wh_total": ...,
  "export_wh_total": ...}`` or ``{"error": "sentence"}``;
* ``cycle``: the same through one monitoring cycle (``{"error": ...}``: a failed cycle);
* ``stored``: the ``meter`` points monitoring wrote to InfluxDB (``{"points": [...]}``).
"""
from __future__ import annotations

import json
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import monitoring
from drivers.meters.base import MeterError
from drivers.store.influx import InfluxStore, NullStore
from gestor.clock import SimClock
from tests.conftest import make_settings
from tests.influxd import start_influxd


def reading_json(r) -> dict:
    return {"at": r.at.timestamp(), "net_w": r.net_w, "import_wh_total": r.import_wh_total,
            "export_wh_total": r.export_wh_total}


def main(argv: list[str]) -> int:
    work, meter = Path(argv[0]), json.loads(argv[1])
    influx = "--influx" in argv[2:]
    clock = SimClock(datetime(2024, 6, 21, tzinfo=timezone.utc))
    server = db = store = None
    if influx:
        (work / "influx").mkdir(parents=True, exist_ok=True)
        server, db = start_influxd(work / "influx"), f"t_{uuid.uuid4().hex[:8]}"
    try:
        s = make_settings(work, server, db, meter_section=meter)
        store = InfluxStore.from_settings(s.store).open() if server else NullStore()
        mon = monitoring.Monitoring(s, clock, store)
        print(json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            cmd, _, arg = line.strip().partition(" ")
            if cmd == "at":
                clock.set(datetime.fromtimestamp(float(arg), timezone.utc))
                out = {"at": float(arg)}
            elif cmd == "wait":
                bound = time.monotonic() + 10.0
                while getattr(mon.meter, "datagrams", 0) < int(arg) and time.monotonic() < bound:
                    time.sleep(0.005)
                out = {"datagrams": getattr(mon.meter, "datagrams", 0)}
            elif cmd in ("read", "cycle"):
                try:
                    r = mon.meter.read() if cmd == "read" else mon.cycle()
                    out = reading_json(r) if r is not None else {"error": f"failed cycle ({mon.failures} so far)"}
                except MeterError as e:
                    out = {"error": str(e)}
            elif cmd == "stored":
                assert store.flush(30)
                c = server.client(db)
                out = {"points": list(c.query("SELECT * FROM meter ORDER BY time", epoch="ms").get_points())}
                c.close()
            else:
                out = {"error": f"unknown command {cmd!r}"}
            print(json.dumps(out), flush=True)
        mon.close()
    finally:
        if store is not None:
            store.close()
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
