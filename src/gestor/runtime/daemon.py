"""What the daemons share: opening drivers from settings, logging, and the systemd run loop
(``Type=notify``: READY=1 once started, WATCHDOG=1 after every cycle, via sdnotify)."""
from __future__ import annotations

import fcntl
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, TextIO

import sdnotify

from drivers import DriverContext
from drivers.meters import METERS, Meter, MeterError, Reading
from drivers.meters.base import CheckedMeter
from drivers.relays import RELAYS, Relay
from gestor.clock import Clock
from gestor.settings import Settings


class GestorError(Exception):
    """A startup problem the user must fix; the CLI prints it as one line and exits 1."""


log = logging.getLogger("gestor")


def context(settings: Settings, clock: Clock) -> DriverContext:
    """The drivers' context. The directories are created if they can be; a read-only or full disk
    is logged, not fatal: the daemons keep the loads safe without their files."""
    for d in (settings.paths.run_dir, settings.paths.state_dir):
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            log.error("cannot create %s: %s (going on without it)", d, e.strerror or e)
    return DriverContext(clock=clock, run_dir=settings.paths.run_dir, config_dir=settings.config_dir)


def single_instance(settings: Settings, which: str) -> TextIO:
    """Hold ``run_dir/<which>.pid`` locked (``flock``) for the life of the process: a second
    monitoring would store every reading twice, a second managing would fight the first over the
    relays. Returns the open lock file (keep it). Raises GestorError naming the running pid."""
    path = Path(settings.paths.run_dir) / f"{which}.pid"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "a+")
    except OSError as e:
        raise GestorError(f"cannot open the lock {path}: {e.strerror or e}") from None
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        pid = f.read().strip() or "?"
        f.close()
        raise GestorError(f"another gestor {which} is already running (pid {pid}, lock {path}); "
                          f"not starting a second one") from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def open_meter(settings: Settings, ctx: DriverContext) -> Meter:
    _, factory = METERS[settings.meter.driver]
    m = settings.meter
    return CheckedMeter(factory(m, ctx), m.max_abs_power_w, m.counter_resolution_wh,
                        m.frozen_s(settings.monitoring.interval_s))


def read_times(meter: Meter, clock: Clock, count: int, interval_s: float) -> Iterator[Reading | MeterError]:
    """Read ``meter`` ``count`` times, ``interval_s`` apart on ``clock``: each reading, or the
    MeterError of a failed read (never a zero in its place). ``gestor meter-test`` and
    ``gestor setup``'s live check print them."""
    for i in range(count):
        if i:
            clock.sleep(interval_s)
        try:
            yield meter.read()
        except MeterError as e:
            yield e


def open_relays(settings: Settings, ctx: DriverContext) -> dict[str, Relay]:
    out: dict[str, Relay] = {}
    for ld in settings.loads:
        _, factory = RELAYS[ld.relay.driver]
        out[ld.name] = factory(ld.relay, ctx, ld.name, ld.power_w)
    return out


def setup_logging(level: str = "INFO") -> None:
    """One line per event on stderr (journald adds the time and the unit)."""
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, level),
                        format="%(levelname)s %(name)s: %(message)s", force=True)


def run_loop(cycle: Callable[[], object], interval_s: float, clock: Clock,
             stop: threading.Event | None = None) -> None:
    """Call ``cycle`` every ``interval_s`` until SIGTERM/SIGINT (or ``stop`` is set).

    Sends READY=1 before the first cycle and WATCHDOG=1 after each one (no-ops outside systemd).
    An exception in a cycle propagates: the caller switches loads off and systemd restarts us.
    """
    stop = stop or threading.Event()
    notifier = sdnotify.SystemdNotifier()

    def _stop(signum: int, _frame: object) -> None:
        logging.getLogger("gestor").info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()
        wake = getattr(clock, "wake", None)
        if wake:
            wake()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    notifier.notify("READY=1")
    while not stop.is_set():
        t0 = time.monotonic()
        cycle()
        notifier.notify("WATCHDOG=1")
        if stop.is_set():
            break
        clock.sleep(max(interval_s - (time.monotonic() - t0), 0.0))
    notifier.notify("STOPPING=1")
