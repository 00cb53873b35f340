"""The systemd notify protocol as systemd sees it: a unix datagram socket in NOTIFY_SOCKET,
READY=1 once, then WATCHDOG=1 after every cycle, STOPPING=1 at the end."""
from __future__ import annotations

import socket
import threading
from datetime import datetime, timezone

from gestor.clock import SimClock
from gestor.runtime.daemon import run_loop


def test_ready_then_one_watchdog_per_cycle(tmp_path, monkeypatch):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", path)         # before the notifier is created
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    stop = threading.Event()
    cycles = []

    def cycle():
        cycles.append(1)
        if len(cycles) == 3:
            stop.set()
    run_loop(cycle, 10.0, SimClock(datetime(2026, 3, 29, tzinfo=timezone.utc)), stop)
    got = []
    while True:
        try:
            got.append(sock.recv(256).decode())
        except TimeoutError:
            break
        if got[-1] == "STOPPING=1":
            break
    sock.close()
    assert got == ["READY=1", "WATCHDOG=1", "WATCHDOG=1", "WATCHDOG=1", "STOPPING=1"]


def test_a_hung_cycle_sends_no_watchdog(tmp_path, monkeypatch):
    """If a cycle never returns, no WATCHDOG=1 follows READY=1: systemd kills and restarts us."""
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.5)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    release = threading.Event()
    stop = threading.Event()

    def hung():
        release.wait(5)
        stop.set()
    t = threading.Thread(target=run_loop, args=(hung, 1.0, SimClock(datetime(2026, 1, 1, tzinfo=timezone.utc)), stop))
    t.start()
    assert sock.recv(256) == b"READY=1"
    try:
        sock.recv(256)
        raise AssertionError("a watchdog ping came from a hung cycle")
    except TimeoutError:
        pass
    release.set()
    t.join(5)
    assert sock.recv(256) == b"WATCHDOG=1"
    sock.close()
