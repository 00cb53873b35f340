"""Nothing lost: InfluxDB killed and restarted under a replayed day, a full spool, a power cut in
the middle of a spool write, managing killed mid-period; InfluxDB version detection."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

import managing
import monitoring
from drivers.meters.replay import ReplayData
from drivers.store.influx import EPOCH, InfluxStore, V1Sender, point, server_version
from drivers.store.spool import Spool
from gestor.core.balance import Balance
from gestor.clock import SimClock
from gestor.sim.lockstep import run_lockstep
from tests.conftest import free_port, make_settings, settings_file, write_csv
from tests.influxd import start_influxd

UTC = timezone.utc


def q(client, query):
    return list(client.query(query, epoch="ms").get_points())


def test_influxd_killed_mid_day_every_reading_stored_once_in_order(tmp_path, caplog):
    d = tmp_path / "influx"
    d.mkdir()
    server = start_influxd(d)
    port = server.port
    try:
        start = datetime(2022, 6, 11, 6, 0, tzinfo=UTC)
        until = start + timedelta(hours=6)
        s = make_settings(tmp_path, server, "gestor", meter={"start": start.isoformat()})
        store = InfluxStore.from_settings(s.store, tmp_path / "spool").open()
        clock = SimClock(start)
        mon, mgr = monitoring.Monitoring(s, clock, store), managing.Managing(s, clock, store)
        mgr.start()
        tasks = [(s.monitoring.interval_s, mon.cycle), (s.managing.interval_s, mgr.cycle)]
        with caplog.at_level(logging.INFO, "gestor.store"):
            run_lockstep(clock, tasks, start + timedelta(hours=2))
            server.proc.send_signal(signal.SIGKILL)     # power cut of the database
            server.proc.wait(10)
            run_lockstep(clock, tasks, start + timedelta(hours=4))   # keeps running meanwhile
            assert store.spooling and store.spool.size_bytes > 100_000
            server = start_influxd(d, port=port)        # back, same data directory
            run_lockstep(clock, tasks, until)
            mgr.stop()
            assert store.flush(120)
            store.close()
        assert "not answering" in caplog.text and "is back after" in caplog.text
        assert store.replayed > 1000
        data = ReplayData.load(s.meter)
        want = [(t, p) for t, p in zip(data.t, data.production_w)
                if start.timestamp() <= t <= until.timestamp() and p == p]
        c = server.client("gestor")
        got = q(c, f"SELECT production_w FROM meter WHERE time >= '{start.isoformat()}' "
                   f"AND time <= '{until.isoformat()}'")
        c.close()
        assert len(got) == len(want)                                   # every reading, exactly once
        ms = [(datetime.fromtimestamp(t, UTC) - EPOCH) // timedelta(milliseconds=1) for t, _ in want]
        assert [g["time"] for g in got] == ms                          # in order, their own timestamps
        assert sum(g["production_w"] for g in got) == pytest.approx(sum(p for _, p in want), abs=1e-6)
        assert not list((tmp_path / "spool").glob("*.lp"))             # spool removed once acknowledged
    finally:
        server.stop()


def test_spool_past_its_bound_drops_the_oldest_loudly(tmp_path, caplog):
    dead = V1Sender("127.0.0.1", free_port(), "gestor", None, None, 0.2)
    store = InfluxStore(dead, batch_size=100, spool_dir=tmp_path / "spool", spool_max_mb=0.02).open()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    lines = [point("meter", {"site": "t"}, {"net_w": float(i)}, t0 + timedelta(seconds=i)) for i in range(3000)]
    with caplog.at_level(logging.ERROR, "gestor.store"):
        for k in range(0, 3000, 100):
            store.write(lines[k:k + 100])
            time.sleep(0.02)
        store.close(timeout_s=0.5)   # what is still in memory goes to the spool too
    assert "SPOOL FULL" in caplog.text
    assert store.spool.dropped_points > 0
    assert store.spool.size_bytes <= 20_000
    kept, _ = store.spool.read(10_000)
    assert kept[-1] == lines[-1] and kept[0] != lines[0]        # the newest are kept
    assert len(kept) + store.spool.dropped_points == 3000       # every point is either kept or counted


def test_truncated_last_line_after_a_power_cut_is_skipped(tmp_path, influxd, influx_db, caplog):
    spool_dir = tmp_path / "spool"
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    lines = [point("meter", {"site": "t"}, {"net_w": float(i)}, t0 + timedelta(seconds=i)) for i in range(50)]
    sp = Spool(spool_dir, 10_000_000)
    sp.append(lines)
    with open(spool_dir / "000001.lp", "a") as f:   # the power went during this write
        f.write(lines[0][:25])
    s = make_settings(tmp_path, influxd, influx_db)
    with caplog.at_level(logging.WARNING, "gestor.store"):
        store = InfluxStore.from_settings(s.store, spool_dir).open()
        store.write([point("meter", {"site": "t"}, {"net_w": 999.0}, t0 + timedelta(seconds=100))])
        assert store.flush(30)
        store.close()
    assert "truncated" in caplog.text
    c = influxd.client(influx_db)
    got = q(c, "SELECT net_w FROM meter")
    c.close()
    assert [g["net_w"] for g in got] == [float(i) for i in range(50)] + [999.0]


def _period_stored(client, t0: datetime) -> bool:
    try:
        return bool(q(client, f"SELECT balance_wh FROM period WHERE time = '{t0.isoformat()}'"))
    except Exception:  # noqa: BLE001 (the database not created yet: asked again)
        return False


def test_managing_sigkilled_mid_period_resumes_the_balance(tmp_path, influxd, influx_db):
    """Real processes on an accelerated clock (60x): managing is SIGKILLed in the middle of a
    15-minute period and started again 2 s (2 min of data) later; the period's final balance equals
    the integral of every stored reading within 1 Wh."""
    t0 = datetime(2022, 6, 11, 10, 0, tzinfo=UTC)
    rows = []
    for i in range(6 * 60):
        t = t0 + timedelta(seconds=10 * i)
        rows.append(f"{t:%Y-%m-%d %H:%M:%S}.000000,0,,0,0,{400 + (i * 37) % 300},{3000 + (i * 53) % 900},0,0,0")
    csv = write_csv(tmp_path / "sun.csv", "timestamp,energyB,energyP,on_offL1,on_offL2,powerC,powerP,powerL1,"
                    "powerL2,powerA", rows)
    loads = [{"name": "water_heater", "power_w": 1000, "relay": {"driver": "simulated"},
              "on_above_wh": 50_000, "off_below_wh": 0}]
    f = settings_file(tmp_path, store={"kind": "influxdb1", "host": influxd.host, "port": influxd.port,
                                       "database": influx_db},
                      meter_updates={"path": str(csv), "start": t0.isoformat()},
                      billing={"period_s": 900}, policy={"name": "hysteresis"}, loads=loads,
                      monitoring={"interval_s": 5}, managing={"interval_s": 10, "stale_after_s": 60})
    anchor = time.time() + 1.0
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GESTOR_CLOCK": f"{t0.isoformat()}@{anchor}*60"}
    cmd = [sys.executable, "-m", "gestor.cli"]
    mon = subprocess.Popen(cmd + ["monitoring", "--config", str(f)], env=env, stderr=subprocess.DEVNULL)
    mgr = subprocess.Popen(cmd + ["managing", "--config", str(f)], env=env, stderr=subprocess.DEVNULL)
    try:
        # 10:00 + 5 min of data at 60x = 5 s after the anchor: kill, 2 s later start again
        time.sleep(anchor + 5.0 - time.time())
        mgr.send_signal(signal.SIGKILL)
        mgr.wait(10)
        time.sleep(2.0)
        mgr = subprocess.Popen(cmd + ["managing", "--config", str(f)], env=env, stderr=subprocess.DEVNULL)
        # the 10:00-10:15 period closes 15 s after the anchor: waited for (a slow machine takes longer)
        c = influxd.client(influx_db)
        deadline = time.monotonic() + 120
        while not _period_stored(c, t0):
            assert time.monotonic() < deadline, "managing stored no 10:00-10:15 period"
            time.sleep(0.2)
        c.close()
    finally:
        for p in (mgr, mon):
            p.send_signal(signal.SIGTERM)
            p.wait(20)
    c = influxd.client(influx_db)
    (period,) = q(c, f"SELECT balance_wh, covered_s FROM period WHERE time = '{t0.isoformat()}'")
    readings = q(c, f"SELECT net_w FROM meter WHERE time >= '{(t0 - timedelta(seconds=30)).isoformat()}' "
                    f"AND time <= '{(t0 + timedelta(minutes=15, seconds=20)).isoformat()}'")
    c.close()
    ref = Balance(900, "Europe/Madrid", 120.0)
    from drivers.meters.base import Reading
    closed = [p for r in readings
              for p in ref.update(Reading(datetime.fromtimestamp(r["time"] / 1000, UTC), r["net_w"]))]
    (expected,) = [p for p in closed if p.start == t0]
    # readings from before the kill and after the restart, across the whole period (how many a
    # machine takes at 60x depends on its speed: not counted)
    at = [datetime.fromtimestamp(r["time"] / 1000, UTC) for r in readings]
    assert min(at) <= t0 + timedelta(minutes=1) and max(at) >= t0 + timedelta(minutes=14)
    assert any(a < t0 + timedelta(minutes=5) for a in at) and any(a > t0 + timedelta(minutes=8) for a in at)
    assert period["balance_wh"] == pytest.approx(expected.balance_wh, abs=1.0), (period, expected)


class _FakeV2:
    """Just enough of an InfluxDB 2.x server for version detection and /api/v2/write."""

    def __init__(self, port: int) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        import threading
        self.lines: list[str] = []
        self.auth: list[str] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):  # /ping
                self.send_response(204)
                self.send_header("X-Influxdb-Version", "v2.7.4")
                self.end_headers()

            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(n)
                if self.headers.get("Content-Encoding") == "gzip":
                    import gzip
                    body = gzip.decompress(body)
                outer.auth.append(self.headers.get("Authorization", ""))
                outer.lines += body.decode().splitlines()
                self.send_response(204)
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), H)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_auto_detects_1x_and_2x_and_writes_2x_with_its_token(tmp_path, influxd):
    assert server_version(influxd.url).startswith("1.")
    port = free_port()
    fake = _FakeV2(port)
    try:
        assert server_version(f"http://127.0.0.1:{port}") == "v2.7.4"
        s = make_settings(tmp_path, store={"kind": "auto", "host": "127.0.0.1", "port": port, "org": "home",
                                           "bucket": "gestor", "token": "s3cret"})
        store = InfluxStore.from_settings(s.store, tmp_path / "spool").open()
        assert store.sender.version == "2.x"
        store.write([point("meter", {"site": "t"}, {"net_w": 1.5}, datetime(2026, 1, 1, tzinfo=UTC))])
        assert store.flush(10)
        store.close()
        assert fake.lines == ["meter,site=t net_w=1.5 1767225600000"]
        assert fake.auth == ["Token s3cret"]
    finally:
        fake.stop()
