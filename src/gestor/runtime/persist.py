"""managing's state file, ``<state_dir>/managing.json``: a restart within a period changes nothing.

:class:`StateFile` saves the period's balance, each load's on-time, switches and state, each
setpoint device's energy per period (taken, supplied; issue 32), and the day's books (:class:`gestor.runtime.books.Books`) once a minute, at each period's close and on
exit (the file lives on the SD card), and restores them at start: the balance when it is still
the same period, the loads' min_off_s and the day's run time, the books. Its failure modes: a
damaged file (not JSON, a balance of the wrong shape) is moved aside and the period starts clean;
a full or read-only disk is logged once and control goes on. Files of earlier versions still
restore (:class:`gestor.runtime.statefiles.ManagingFile`). Nothing here raises.
"""
from __future__ import annotations

import json
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from gestor.core.balance import Balance
from gestor.core.guards import min_run_deadline
from gestor.files import WriteGuard, atomic_write_text
from gestor.runtime.statefiles import ManagingFile, read_state

if TYPE_CHECKING:
    from gestor.clock import Clock
    from gestor.core.control import Core
    from gestor.runtime.books import Books
    from gestor.runtime.relays import LoadRuntime
    from gestor.runtime.setpoints import Setpoints
    from gestor.settings import Settings

log = logging.getLogger("gestor.managing")
STATE_FILE = "managing.json"
# The state file lives on the SD card: write it once a minute, at each period's close and on exit.
# A restart loses nothing meanwhile: the live state holds the last readings, and the balance
# re-integrates those newer than the persisted one.
PERSIST_EVERY_S = 60.0


def _epoch_keys(d: dict) -> dict[float, object]:
    """A persisted book ``{"<epoch s>": value}`` with float keys (keys of another form, such as the
    ISO times of earlier versions, are dropped: the period then restarts its count)."""
    out = {}
    for k, v in d.items():
        try:
            out[float(k)] = v
        except ValueError:
            continue
    return out


class StateFile:
    """``managing.json`` in the state directory of ``settings``; ``persisted_at``: the last save
    (the ``clock``'s time)."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.s, self.clock = settings, clock
        self.path = Path(settings.paths.state_dir) / STATE_FILE
        self.persisted_at: datetime | None = None
        self._file_op = WriteGuard(log, "control goes on without it")

    def due(self, now: datetime, closed: bool) -> bool:
        """Time to save: a period closed, never saved, or the last save PERSIST_EVERY_S ago."""
        return closed or self.persisted_at is None or abs((now - self.persisted_at).total_seconds()) >= PERSIST_EVERY_S

    def save(self, balance: Balance, loads: Sequence[LoadRuntime], books: Books,
             setpoints: Setpoints | None = None) -> None:
        """Write the file now (atomically); a write that fails is logged once. ``setpoints``:
        the setpoint devices, whose energy per period is kept as the loads' on-time is."""
        self.persisted_at = self.clock.now()
        state = {"balance": balance.to_state(), "on_s": {ld.name: ld.on_s for ld in loads},
                 "day_on_s": {ld.name: ld.day_on_s for ld in loads},
                 "switches": {ld.name: ld.switches for ld in loads},
                 "device_wh": setpoints.to_state() if setpoints else {},
                 "loads": {ld.name: {"on": ld.on, "since": ld.since.isoformat() if ld.since else None}
                           for ld in loads},
                 # what a user sees, unchanged by a restart
                 **books.to_state()}
        self._file_op(str(self.path), lambda: atomic_write_text(self.path, json.dumps(state)))

    def restore(self, core: Core, loads: Sequence[LoadRuntime], books: Books,
                setpoints: Setpoints | None = None) -> None:
        """At start: the books, the loads' timers and day's run time, and the period's balance
        (into ``core``) with the loads' on-time and the setpoint devices' energy in it when the
        file holds the current period."""
        f = read_state(self.path, ManagingFile)
        if f is None:
            return
        try:
            b = Balance.from_state(f.balance, self.s.tz, self.s.billing.max_gap_s, core.max_power_w,
                                   core.counter_resolution_wh)
        except Exception as e:  # noqa: BLE001 -- a balance of the wrong shape: start clean
            log.error("state file %s is damaged (balance: %s): ignored, the period starts clean", self.path, e)
            try:
                os.replace(self.path, self.path.with_name(self.path.name + ".bad"))
            except OSError:
                pass
            return
        state = f.model_dump()
        now = self.clock.now()
        books.restore(f, now, core.balance.bounds(now)[0])
        for ld in loads:
            # min_off_s survives a restart: a load that was on is switched off at start (now);
            # one that was off keeps the time it went off
            saved = f.loads.get(ld.name)
            if saved is not None:
                if saved.on is False and saved.since is not None and saved.since <= now:
                    ld.since = saved.since
                else:
                    ld.on = None  # the start command records a switch off now
        for ld in loads:  # the day's run time survives any restart before its deadline
            key = min_run_deadline(now, self.s.tz, ld.cfg.min_run_by).timestamp()
            done = _epoch_keys(state.get("day_on_s", {}).get(ld.name, {})).get(key)
            if done:
                ld.day_on_s = {key: float(done)}
        if b.period_s != self.s.billing.period_s or b.current is None or b.last is None:
            return
        if b.current.start != core.balance.bounds(now)[0] or b.last.at > now:
            return  # a new period (or one from the future: the clock went back): start clean
        # Same period: resume. The readings taken while we were down are in the live state (the
        # last 30); the balance integrates them from where it stopped, and does not bridge a gap
        # longer than max_gap_s (the period is then marked incomplete).
        core.balance = b
        for ld in loads:
            ld.on_s = {k: float(v) for k, v in _epoch_keys(state.get("on_s", {}).get(ld.name, {})).items()}
            ld.switches = {k: int(v) for k, v in _epoch_keys(state.get("switches", {}).get(ld.name, {})).items()}
        if setpoints:
            per: dict[float, dict[str, list[float]]] = {}
            for name, book in state.get("device_wh", {}).items():
                for k, v in _epoch_keys(book).items():
                    per.setdefault(k, {})[name] = v  # type: ignore[assignment]
            setpoints.restore(per, b.current.start.timestamp(), now.timestamp())
        log.info("resumed the period's balance at %+.1f Wh", b.balance_wh)
