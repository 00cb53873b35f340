"""What the daemons share: opening drivers from settings, logging, and the systemd run loop
(``Type=notify``: READY=1 once started, WATCHDOG=1 after every cycle, via sdnotify)."""
from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from typing import Callable

import sdnotify

from drivers import DriverContext
from drivers.meters import METERS, Meter
from drivers.meters.base import CheckedMeter
from drivers.relays import RELAYS, Relay
from gestor.clock import Clock
from gestor.settings import Settings


class GestorError(Exception):
    """A startup problem the user must fix; the CLI prints it as one line and exits 1."""


def context(settings: Settings, clock: Clock) -> DriverContext:
    settings.paths.run_dir.mkdir(parents=True, exist_ok=True)
    settings.paths.state_dir.mkdir(parents=True, exist_ok=True)
    return DriverContext(clock=clock, run_dir=settings.paths.run_dir, config_dir=settings.config_dir)


def open_meter(settings: Settings, ctx: DriverContext) -> Meter:
    _, factory = METERS[settings.meter.driver]
    return CheckedMeter(factory(settings.meter, ctx), settings.meter.max_abs_power_w)


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
