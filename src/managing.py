"""The managing daemon: keeps the settlement period's net balance from the live readings, asks the
policy for wishes, holds them to the guards, switches the relays, and stores ``balance``, ``load``,
``decision`` and (at each period's close) ``period`` points.

Every switch is logged with its reason, e.g.
``load water_heater ON: projected +412 Wh covers 1000 W for 1388 s left (time_to_consume, instant)``.
Loads are switched off at start, on exit, on a stale meter, under the stop latch, and when a relay's
state is unknown after an error.
"""
from __future__ import annotations

import json
import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from drivers.relays import Relay, RelayError
from drivers.store.influx import Store, point
from gestor.balance import Balance, PeriodSummary
from gestor.clock import Clock
from gestor.daemon import context, open_relays, run_loop
from gestor.files import atomic_write_text
from gestor.guards import GuardState, LoadLimits, apply_guards
from gestor.livestate import is_latched, read_live
from gestor.policies import LoadView, Snapshot, Wish, decide, projected_wh
from gestor.settings import LoadSettings, Settings

log = logging.getLogger("gestor.managing")
STATE_FILE = "managing.json"
# The state file lives on the SD card: write it once a minute, at each period's close and on exit.
# A restart loses nothing meanwhile: the live state holds the last readings, and the balance
# re-integrates those newer than the persisted one.
PERSIST_EVERY_S = 60.0


@dataclass
class LoadRuntime:
    cfg: LoadSettings
    relay: Relay
    on: bool | None = False          # None: unknown (the last command was not confirmed)
    since: datetime | None = None    # last confirmed switch
    on_s: dict[str, float] = field(default_factory=dict)  # period start (iso) → seconds on
    reason: str = ""

    @property
    def name(self) -> str:
        return self.cfg.name


class Managing:
    def __init__(self, settings: Settings, clock: Clock, store: Store,
                 relays: dict[str, Relay] | None = None) -> None:
        self.s = settings
        self.clock = clock
        self.store = store
        ctx = context(settings, clock)
        relays = relays or open_relays(settings, ctx)
        self.loads = [LoadRuntime(ld, relays[ld.name]) for ld in settings.loads]
        self.limits = {ld.name: LoadLimits(ld.min_on_s, ld.min_off_s) for ld in settings.loads}
        self.tags = {"site": settings.site}
        self.state_path = Path(settings.paths.state_dir) / STATE_FILE
        self.balance = Balance(settings.billing.period_s, settings.tz, settings.billing.max_gap_s)
        self.last_cycle_at: datetime | None = None
        self.persisted_at: datetime | None = None
        self.closed: deque[PeriodSummary] = deque(maxlen=96)  # recent closed periods (bounded: runs for years)
        self.switches_total = 0
        self._restore()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Every load off before the first decision."""
        for ld in self.loads:
            self._command(ld, False, "start: every load off until the policy decides", self.clock.now())

    def stop(self, reason: str = "exit: every load off") -> bool:
        """Every load off; True when every relay confirmed."""
        now = self.clock.now()
        ok = True
        for ld in self.loads:
            ok &= self._command(ld, False, reason, now)
        self._persist()
        return ok

    # -- the cycle ---------------------------------------------------------------------------
    def cycle(self) -> list[Wish]:
        """One control cycle; returns what every load was commanded to."""
        now = self.clock.now()
        self._account_loads(now)
        last = self.balance.last
        new = [r for r in read_live(self.s.paths.run_dir) if last is None or r.at > last.at]
        closed = [p for r in new for p in self.balance.update(r)]
        for p in closed:
            self._close_period(p)
        reading = self.balance.last
        start, end = self.balance.bounds(now)
        cur = self.balance.current
        bal = cur.balance_wh if cur is not None and cur.start == start else 0.0
        net = reading.net_w if reading else 0.0
        views = tuple(LoadView(ld.name, ld.cfg.power_w, ld.on is not False, ld.since,
                               ld.cfg.on_above_wh, ld.cfg.off_below_wh) for ld in self.loads)
        snap = Snapshot(now, start, end, bal, net, views)
        if new:  # the balance of the period the reading belongs to, stamped with the reading
            at_reading = Snapshot(reading.at, cur.start, cur.end, cur.balance_wh, reading.net_w, ())
            self.store.write([point("balance", {**self.tags, "period_s": str(self.s.billing.period_s)},
                                    {"balance_wh": cur.balance_wh,
                                     "projected_wh": projected_wh(at_reading, "instant")},
                                    reading.at)])
        age = (now - reading.at).total_seconds() if reading else None
        wishes = decide(snap, self.s.policy)
        wishes = [Wish(w.load, False, "relay state unknown after an error: off until it confirms")
                  if ld.on is None else w for w, ld in zip(wishes, self.loads)]
        final = apply_guards(wishes, views, self.limits,
                             GuardState(now, is_latched(self.s.paths.state_dir), age,
                                        self.s.managing.stale_after_s))
        for w, ld in zip(final, self.loads):
            if ld.on is None or w.on != ld.on:
                self._command(ld, w.on, w.reason, now, auto_off_s=snap.remaining_s + 3 * self.s.managing.interval_s)
        self.store.write([point("load", {**self.tags, "load": ld.name},
                                {"on": bool(ld.on), "power_w": ld.cfg.power_w if ld.on else 0.0}, now)
                          for ld in self.loads])
        self.last_cycle_at = now
        if closed or self.persisted_at is None or (now - self.persisted_at).total_seconds() >= PERSIST_EVERY_S:
            self._persist()
        return final

    def _command(self, ld: LoadRuntime, on: bool, reason: str, now: datetime,
                 auto_off_s: float | None = None) -> bool:
        word = "ON" if on else "OFF"
        error = None
        try:
            ld.relay.set(on, auto_off_s if on else None)
            got = ld.relay.state()
            if got != on:
                error = f"relay reads {'on' if got else 'off'} after commanding {word.lower()}"
        except RelayError as e:
            error = str(e)
        if error is None:
            if ld.on != on:
                self.switches_total += 1
                ld.since = now
            ld.on, ld.reason = on, reason
            log.info("load %s %s: %s", ld.name, word, reason)
        else:
            ld.on = None
            log.error("load %s %s FAILED: %s (wanted because: %s)", ld.name, word, error, reason)
        self.store.write([point("decision", {**self.tags, "load": ld.name},
                                {"on": on, "reason": reason, "ok": error is None, "error": error}, now)])
        return error is None

    # -- accounting --------------------------------------------------------------------------
    def _account_loads(self, now: datetime) -> None:
        """Add each load's on-time since the last cycle, split at period boundaries."""
        if self.last_cycle_at is None or now <= self.last_cycle_at:
            return
        t = self.last_cycle_at
        while t < now:
            pstart, pend = self.balance.bounds(t)
            b = min(pend, now)
            for ld in self.loads:
                if ld.on:
                    k = pstart.isoformat()
                    ld.on_s[k] = ld.on_s.get(k, 0.0) + (b - t).total_seconds()
            t = b

    def _close_period(self, p: PeriodSummary) -> None:
        k = p.start.isoformat()
        per_load = {f"{ld.name}_wh": ld.cfg.power_w * ld.on_s.pop(k, 0.0) / 3600.0 for ld in self.loads}
        loads_wh = sum(per_load.values())
        self.closed.append(p)
        self.store.write([point("period", {**self.tags, "period_s": str(self.s.billing.period_s)}, {
            "balance_wh": p.balance_wh, "export_wh": p.export_wh, "import_wh": p.import_wh,
            "production_wh": p.production_wh, "consumption_wh": p.consumption_wh,
            "loads_wh": loads_wh, **per_load, "complete": p.complete, "covered_s": p.covered_s}, p.start)])
        local = p.start.astimezone(self.s.tz)
        log.info("period %s closed: balance %+.0f Wh, loads %.0f Wh%s", local.strftime("%Y-%m-%d %H:%M %Z"),
                 p.balance_wh, loads_wh, "" if p.complete else f" (incomplete: {p.covered_s:.0f} s covered)")

    # -- restart within a period -------------------------------------------------------------
    def _persist(self) -> None:
        self.persisted_at = self.clock.now()
        state = {"balance": self.balance.to_state(), "on_s": {ld.name: ld.on_s for ld in self.loads}}
        atomic_write_text(self.state_path, json.dumps(state))

    def _restore(self) -> None:
        try:
            state = json.loads(self.state_path.read_text())
            b = Balance.from_state(state["balance"], self.s.tz, self.s.billing.max_gap_s)
        except (OSError, ValueError, KeyError, TypeError):
            return
        now = self.clock.now()
        if b.period_s != self.s.billing.period_s or b.current is None or b.last is None:
            return
        if b.current.start != self.balance.bounds(now)[0] or now - b.last.at > timedelta(
                seconds=self.s.billing.max_gap_s):
            return  # a new period, or too long away: start clean
        self.balance = b
        for ld in self.loads:
            ld.on_s = dict(state.get("on_s", {}).get(ld.name, {}))
        log.info("resumed the period's balance at %+.1f Wh", b.balance_wh)


def run(settings: Settings, clock: Clock, store: Store) -> None:
    m = Managing(settings, clock, store)
    log.info("managing: %d loads, policy %s, every %.1f s", len(m.loads), settings.policy.name,
             settings.managing.interval_s)
    m.start()
    try:
        run_loop(m.cycle, settings.managing.interval_s, clock)
    finally:
        if not m.stop():
            log.error("exit: not every relay confirmed off; run stop-loads")
        store.close()
