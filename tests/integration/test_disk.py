"""A full or read-only state directory (issue 10, item 7): the real daemons, each in its own
mount namespace with a tiny tmpfs (full, or mounted read-only) over the state dir, keep
controlling the loads and storing to InfluxDB, log it once, and never crash-loop; the spool never
keeps a torn line; points queued while InfluxDB was away on a full disk reach it when it is back."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.conftest import settings_file
from tests.influxd import start_influxd
from tests.integration.test_safety import _relay_on, _wait, clock_env, sunny_csv

pytestmark = pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0,
                                reason="needs root and unshare (util-linux) for a private tmpfs")


def in_namespace(state: Path, mode: str, args: list[str]) -> list[str]:
    """``args`` run with a 256 kB tmpfs over ``state``: filled up ("full") or read-only."""
    if mode == "full":
        prep = (f"mount -t tmpfs -o size=256k tmpfs '{state}' && "
                f"(dd if=/dev/zero of='{state}/filler' bs=4k 2>/dev/null; true)")
    else:
        prep = f"mount -t tmpfs -o ro,size=256k tmpfs '{state}'"
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", prep + ' && exec "$@"', "sh", *args]


@pytest.mark.parametrize("mode", ["full", "readonly"])
def test_daemons_keep_control_and_storing_on_a_full_or_read_only_disk(tmp_path, influxd, influx_db, mode):
    csv = sunny_csv(tmp_path / "sun.csv", 60)
    store = {"kind": "influxdb1", "host": influxd.host, "port": influxd.port, "database": influx_db}
    f = settings_file(tmp_path, store=store, meter_updates={"path": str(csv), "loop": True, "speed": 20},
                      monitoring={"interval_s": 0.5}, managing={"interval_s": 0.5, "stale_after_s": 30})
    state, run = tmp_path / "state", tmp_path / "run"
    state.mkdir()
    env = clock_env()
    procs = {}
    try:
        for which in ("monitoring", "managing"):
            procs[which] = subprocess.Popen(in_namespace(state, mode, [sys.executable, "-m", "gestor.cli", which,
                                                                       "--config", str(f)]),
                                            stderr=subprocess.PIPE, text=True, env=env)
            if which == "monitoring":
                assert _wait(lambda: (run / "reading.json").exists()), "monitoring published nothing"
        assert _wait(lambda: _relay_on(run, "water_heater") and _relay_on(run, "pool_pump")), \
            "managing did not switch the loads on"
        assert _wait(lambda: len(_reading_ms(run)) >= 12, 120), "monitoring stopped reading"
        assert all(p.poll() is None for p in procs.values()), "a daemon died"
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        errs = {k: p.communicate(timeout=30)[1] for k, p in procs.items()}
        assert all(p.returncode == 0 for p in procs.values()), errs
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
    word = "No space left on device" if mode == "full" else "Read-only file system"
    assert f"cannot write {state}/managing.json: {word}" in errs["managing"]
    assert errs["managing"].count("cannot write") <= 3, "logged again and again"
    assert f"cannot write {state}/monitoring.json: {word}" in errs["monitoring"]
    assert "Traceback" not in errs["managing"] + errs["monitoring"]
    assert _relay_on(run, "water_heater") is False and _relay_on(run, "pool_pump") is False
    c = influxd.client(influx_db)
    n = (list(c.query("SELECT count(net_w) FROM meter").get_points()) or [{"count": 0}])[0]["count"]
    decisions = (list(c.query("SELECT count(reason) FROM decision").get_points()) or [{"count": 0}])[0]["count"]
    c.close()
    assert n >= 10 and decisions >= 4, errs["monitoring"][:3000]


def _reading_ms(run: Path) -> set[int]:
    """The times (epoch ms, as the store writes them) of the readings in the live state file."""
    try:
        live = json.loads((run / "reading.json").read_text())["readings"]
    except (OSError, ValueError, KeyError):
        return set()
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    return {(datetime.fromisoformat(r["at"]) - epoch) // timedelta(milliseconds=1) for r in live}


def _stored_ms(server) -> set[int]:
    try:
        c = server.client("gestor")
        try:
            return {x["time"] for x in c.query("SELECT net_w FROM meter", epoch="ms").get_points()}
        finally:
            c.close()
    except Exception:  # noqa: BLE001 (not created yet, or busy: asked again)
        return set()


def test_influxdb_away_and_the_disk_full_then_influxdb_back(tmp_path):
    """Monitoring with InfluxDB down and no room to spool: points wait in memory (bounded) and
    all reach InfluxDB when it is back, without a restart. Each step waits for the state it needs
    (generous deadlines): nothing depends on how many readings a slow machine takes in a while."""
    csv = sunny_csv(tmp_path / "sun.csv", 60)
    d = tmp_path / "influx"
    d.mkdir()
    from tests.conftest import free_port
    port = free_port()
    store = {"kind": "influxdb1", "host": "127.0.0.1", "port": port, "database": "gestor", "timeout_s": 1}
    f = settings_file(tmp_path, store=store, meter_updates={"path": str(csv), "loop": True, "speed": 20},
                      monitoring={"interval_s": 0.5})
    state, run = tmp_path / "state", tmp_path / "run"
    state.mkdir()
    err_path = tmp_path / "monitoring.err"

    def err() -> str:
        return err_path.read_text(errors="replace")

    with open(err_path, "w") as err_file:
        p = subprocess.Popen(in_namespace(state, "full", [sys.executable, "-m", "gestor.cli", "monitoring",
                                                          "--config", str(f)]),
                             stderr=err_file, env=clock_env())
    server = None
    try:
        # 8 readings with nowhere to go but memory: InfluxDB away, the spool refused
        assert _wait(lambda: "SPOOL UNAVAILABLE" in err() and len(_reading_ms(run)) >= 8, 120), err()[-3000:]
        assert p.poll() is None, err()[-3000:]
        away = _reading_ms(run)           # taken while InfluxDB was away: every one must reach it
        server = start_influxd(d, port=port)

        def all_there() -> bool:  # the queued points, and one taken since, sent straight on
            stored = _stored_ms(server)
            return "is back after" in err() and away <= stored and max(stored) > max(away)
        assert _wait(all_there, 120), (sorted(away - _stored_ms(server)), err()[-3000:])
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
        assert p.returncode == 0, err()[-3000:]
        c = server.client("gestor")
        pts = list(c.query("SELECT net_w FROM meter ORDER BY time", epoch="ms").get_points())
        c.close()
    finally:
        if p.poll() is None:
            p.kill()
        if server is not None:
            server.stop()
    text = err()
    assert "SPOOL UNAVAILABLE" in text and "No space left on device" in text
    times = [x["time"] for x in pts]
    assert away <= set(times)         # the points from before InfluxDB came back are there
    assert times == sorted(times) and len(set(times)) == len(times)
    assert max(times) > max(away)


def test_a_spool_write_on_a_full_disk_leaves_no_torn_line(tmp_path):
    """Spool.append on a filesystem that fills up in the middle of the write: the error reaches
    the caller and the segment is cut back to whole lines."""
    script = (
        "import os, sys\n"
        "from drivers.store.spool import Spool\n"
        "sp = Spool(sys.argv[1], 10**9)\n"
        "sp.append(['meter,site=t net_w=1 %d' % i for i in range(100)])\n"
        "try:\n"
        "    sp.append(['meter,site=t net_w=2 %d' % i + 'x' * 200 for i in range(5000)])\n"
        "    print('NO ERROR')\n"
        "except OSError as e:\n"
        "    print('ERROR', e.strerror)\n"
        "data = b''.join(open(os.path.join(sys.argv[1], f), 'rb').read() for f in sorted(os.listdir(sys.argv[1]))"
        " if f.endswith('.lp'))\n"
        "print('LINES', data.count(b'\\n'), 'ENDS_NL', data.endswith(b'\\n'))\n"
        "print('READ', len(sp.read(10000)[0]))\n")
    spool = tmp_path / "spool"
    spool.mkdir()
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                        f"mount -t tmpfs -o size=64k tmpfs '{spool}' && exec \"$@\"", "sh",
                        sys.executable, "-c", script, str(spool)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "ERROR No space left on device" in p.stdout
    assert "LINES 100 ENDS_NL True" in p.stdout and "READ 100" in p.stdout, p.stdout
