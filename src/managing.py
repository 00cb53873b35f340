"""The managing daemon: keeps the settlement period's net balance from the live readings, asks the
policy for wishes, holds them to the guards, switches the relays, and stores ``balance``, ``load``,
``decision`` and (at each period's close) ``period`` points.

Every switch is logged with its reason, e.g.
``load water_heater ON: projected +412 Wh covers 1000 W for 1388 s left (time_to_consume, instant)``.
Loads are switched off at start, on exit, on a stale meter, under the stop latch, and when a relay's
state is unknown after an error. Devices with a power setpoint (``setpoints:``; a battery, an EV
charger, a modulating heater) come after the loads: the law of :mod:`gestor.core.setpoint` on what
the loads leave, seeing the house without them (the loads see it likewise, so they come first);
idle in the same cases (:mod:`gestor.runtime.setpoints`).

Faults it rides through: a wall-clock step (the period's balance restarts, marked incomplete; a
reading's age is measured on the monotonic clock too, so a step never makes a stale meter look
fresh); a relay that answers slowly (every relay is commanded in parallel, each within its own
deadline); a load switched off outside gestor (found at the next cycle, left off until the period
ends, never switched back on silently; under the latch, off for the stop); a relay that reads off
while its load draws (an ERROR, off every cycle until its dead-man bound); a damaged state file (moved aside); a full or read-only
disk (logged once, control goes on).
"""
from __future__ import annotations

import logging
import os
import threading
from datetime import datetime

from drivers.relays import Relay
from drivers.setpoints import SetpointDevice
from drivers.store.influx import Store, point
from gestor.clock import Clock
from gestor.core.balance import Balance, period_bounds
from gestor.core.control import Core, LoadState
from gestor.core.guards import LoadLimits, Override
from gestor.core.policies import Snapshot, Wish, projected_wh
from gestor.core.reasons import say
from gestor.files import WriteGuard
from gestor.runtime.books import Books
from gestor.runtime.daemon import context, open_relays, run_loop
from gestor.runtime.devicebooks import DeviceMeters, read_back_power_w
from gestor.runtime.devicecontrols import read_controls
from gestor.runtime.latch import Latch
from gestor.runtime.livestate import publish_managing, read_live, reading_age
from gestor.runtime.mqttstate import ManagingMqtt
from gestor.runtime.overrides import read_overrides
from gestor.runtime.persist import StateFile
from gestor.runtime.pricefeed import PriceFeed
from gestor.runtime.relays import LoadRuntime, Relays
from gestor.runtime.setpoints import Setpoints, open_setpoints
from gestor.runtime.stopbutton import StopButton
from gestor.runtime.stopplan import save_plan
from gestor.settings import Settings

log = logging.getLogger("gestor.managing")


class Managing:
    """The control loop: each cycle reads the live readings, steps the control core, commands the
    relays and records (points, the published state, MQTT, the state file). Its collaborators:
    ``relays`` (:class:`gestor.runtime.relays.Relays`; ``loads``: their loads), ``books`` (the day's
    counts and money), ``prices`` (the price feed), ``latch``, ``statefile``, ``mqtt`` (with
    mqtt.enabled, from :meth:`start`), ``button`` (the stop button, from :meth:`start`). ``_lock``:
    held by the cycle, the stop button's and MQTT's threads while they command relays."""

    def __init__(self, settings: Settings, clock: Clock, store: Store,
                 relays: dict[str, Relay] | None = None, devices: dict[str, SetpointDevice] | None = None) -> None:
        self.s, self.clock, self.store = settings, clock, store
        relays = relays or open_relays(settings, context(settings, clock))
        if devices is None:
            devices = open_setpoints(settings, context(settings, clock))
        self.loads = [LoadRuntime(LoadState(ld, LoadLimits.of(ld)), relays[ld.name]) for ld in settings.loads_by_priority()]
        self.core = Core(settings, [ld.state for ld in self.loads])  # the control cycle, shared with gestor simulate
        self.prices = PriceFeed(settings, store)
        if self.prices.book is not None:  # the daily minimum runs in the cheapest real-price slots
            self.core.import_price = self.prices.book.import_price
        self.books = Books(settings, store, [ld.state for ld in self.loads], self.prices.prices_of)
        self.latch = Latch(settings.paths.state_dir)
        # the latch is read again after a relay reads off: a stop between this cycle's latch check
        # and its relays' read-back is seen as the stop, not as an off outside gestor
        self.relays = Relays(settings, self.core, store, self.loads, self.books.count_switch, self.latch.is_set,
                             clock.monotonic)
        self.setpoints = Setpoints(settings, self.core, store, devices)  # after the loads, in the settings' order
        # each device's energy in/out from the power it reads back (persisted), and the
        # household's controls of each device (mode, min SoC, target; from MQTT)
        self.device_meters = DeviceMeters(settings.paths.state_dir, [d.name for d in self.setpoints.devices],
                                          self.core.bounds_s)
        self.statefile = StateFile(settings, clock)
        self.overrides: dict[str, Override] = {}
        self.button: StopButton | None = None
        self.mqtt: ManagingMqtt | None = None
        self._age: float | None = None
        self._lock = threading.RLock()  # the stop button's thread and the cycle both command relays
        self.tags = {"site": settings.site}
        self.last_cycle_at: datetime | None = None
        self.last_cycle_mono: float | None = None
        self.cycles = 0                  # published: stop-loads waits for a cycle after its latch
        self._counters_refused_logged: datetime | None = None  # the period whose refused counters were logged
        self._file_op = WriteGuard(log, "control goes on without it")
        self.statefile.restore(self.core, self.loads, self.books, self.setpoints)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Every load off before the first decision; the stop button armed if configured."""
        save_plan(self.s)  # the stop plan: what stop-loads switches off if the settings file breaks
        self.relays.command_all([(ld, False, say("start"), None)
                                 for ld in self.loads], self.clock.now())
        self.setpoints.all_idle(say("start_idle"), self.clock.now())
        if self.s.managing.stop_button_pin is not None:
            self.button = StopButton(self.s.managing.stop_button_pin, self.s.managing.stop_button_pull_up,
                                     self.stop_button_pressed)
        if self.s.mqtt.enabled:
            self.mqtt = ManagingMqtt(self.s, self.clock, self.core, self.loads, self.books, self.prices.prices_of,
                                     self.emergency_stop, self.setpoints, self.device_meters)
            self.mqtt.start()

    def stop_button_pressed(self) -> None:
        """The emergency-stop button: set the latch and switch every load off now."""
        self.emergency_stop(f"stop button on GPIO {self.s.managing.stop_button_pin}", say("stop_button"))

    def emergency_stop(self, origin: str, reason: str) -> None:
        """What ``stop-loads`` does, from inside managing (the stop button, MQTT): set the stop
        latch and switch every load off now. Only ``stop-loads --release`` lifts the latch."""
        now = self.clock.now()
        log.warning("EMERGENCY STOP from %s: stop latch set, every load off", origin)
        self.latch.set(now, origin)
        with self._lock:
            self.relays.all_off(reason, now)
            self.setpoints.all_idle(reason, now)

    def stop(self, reason: str = say("exit")) -> bool:
        """Every load off; True when every relay confirmed."""
        now = self.clock.now()
        with self._lock:
            ok = self.relays.all_off(reason, now)
            ok = self.setpoints.all_idle(say("exit_idle") if reason == say("exit") else reason, now) and ok
        if self.button is not None:
            self.button.close()
            self.button = None
        if self.mqtt is not None:
            self.mqtt.close()  # the loads as they are left
            self.mqtt = None
        if self.setpoints:
            self._count_devices(now)
            self.device_meters.save(now.timestamp(), force=True)
        self._persist()
        now = self.clock.now()
        cur = self.balance.current  # the period it stopped in (none yet: the one now), never a zero-length one
        start, end = (cur.start, cur.end) if cur is not None else period_bounds(now, self.s.billing.period_s, self.s.tz)
        self._publish(now, Snapshot(now.timestamp(), start.timestamp(), end.timestamp(), self.balance.balance_wh,
                                    self.balance.last_net_w, ()),
                      start, end, self.latch.is_set(), stopped=ok)
        self.relays.close()
        self.setpoints.close()
        return ok

    @property
    def balance(self) -> Balance:
        """The settlement period's balance (kept by the control core)."""
        return self.core.balance

    @balance.setter
    def balance(self, b: Balance) -> None:
        self.core.balance = b

    # -- the cycle ---------------------------------------------------------------------------
    def cycle(self) -> list[Wish]:
        """One control cycle; returns what every load was commanded to."""
        with self._lock:
            return self._cycle()

    def _cycle(self) -> list[Wish]:
        self.cycles += 1
        now = self.clock.now()
        if self.last_cycle_at is not None and now < self.last_cycle_at:
            self._clock_stepped_back(now)
        if self.last_cycle_at is not None and now > self.last_cycle_at:  # each load's on-time since the last cycle
            self.core.account(self.last_cycle_at.timestamp(), now.timestamp(), self.core.bounds_s)
        last = self.balance.last
        live = read_live(self.s.paths.run_dir)
        # readings newer than the last accounted, and not from the future (a clock step)
        new = [r for r, _ in live if (last is None or r.at > last.at) and r.at <= now]
        age = self._age = reading_age(now, live, self.clock.monotonic)
        self._read_overrides(now)
        # Loads a guard holds anyway (override, unknown relay, switched off outside gestor; the
        # controller adds closed windows) are left out of the policy's stack.
        held = self.relays.held(now, self.overrides)
        latched, released = self.latch.check()
        if released:
            self.relays.latch_released()
        self.prices.refresh(now, self.core.bounds_s)
        step = self.core.step(now, new, reading_age_s=age, latched=latched, overrides=self.overrides, held=held)
        closed, start, end = step.closed, step.period_start, step.period_end
        cur = self.balance.current
        if cur is not None and cur.counters_refused and self._counters_refused_logged != cur.start:
            self._counters_refused_logged = cur.start
            log.error("the meter's energy counters disagree with its power readings: %s; the period's balance "
                      "is integrated from net power until it ends (a counter creeping or stuck?)", cur.refused_why)
        if closed and self.setpoints:
            self.setpoints.count(now)  # the devices' energy up to the period's end
        self._count_devices(now)
        for p in closed:
            self.books.close(p, self.setpoints.period_energy(p.start.timestamp()),
                             self.device_meters.close_period(p.start.timestamp()))
        snap = Snapshot(now.timestamp(), start.timestamp(), end.timestamp(), step.balance_wh, step.net_w, ())
        if new:  # the balance of the period the reading belongs to, stamped with the reading
            reading, cur = self.balance.last, self.balance.current
            at_reading = Snapshot(reading.at.timestamp(), self.balance.start_t, cur.end.timestamp(),
                                  cur.balance_wh, reading.net_w, ())
            self.store.write([point("balance", {**self.tags, "period_s": str(self.s.billing.period_s)},
                                    {"balance_wh": cur.balance_wh,
                                     "projected_wh": projected_wh(at_reading, "instant")},
                                    reading.at)])
        final = self.relays.apply(step.changes, self.overrides, live, now, snap.remaining_s, end)
        if self.setpoints:
            self.setpoints.controls = read_controls(self.s.paths.state_dir)
            self._drive_setpoints(now, age, latched, snap.remaining_s)
            self._count_devices(now)
            self.device_meters.save(now.timestamp(), force=bool(closed))
        cur = self.balance.current
        if cur is not None and cur.start == start:  # the settled counters step inside their period
            self.books.settle(cur, snap.remaining_s, self.s.managing.interval_s,
                              self.device_meters.period_wh(start.timestamp()))
        self.last_cycle_at, self.last_cycle_mono = now, self.clock.monotonic()
        self._publish(now, snap, start, end, latched)
        if self.mqtt is not None:
            self.mqtt.publish(now, snap, latched, self._age, self.overrides,
                              self.devices_power_w() if self.setpoints else {})
        if self.statefile.due(now, bool(closed)):
            self._persist()
        return final

    def devices_power_w(self) -> dict[str, float | None]:
        """Each setpoint device's power as it last read back, W (+ taken; None: unknown)."""
        return {d.name: read_back_power_w(d.idle, d.setpoint_w, d.state) for d in self.setpoints.devices}

    def _devices_published(self) -> dict[str, dict]:
        """Each device's published state, its energy in/out from the power it read back (the
        counters Home Assistant gets too)."""
        out = self.setpoints.published()
        for name, d in out.items():
            d.update(taken_wh=round(self.device_meters.in_wh[name], 1),
                     supplied_wh=round(self.device_meters.out_wh[name], 1))
        return out

    def _count_devices(self, now: datetime) -> None:
        """The devices' energy counters up to ``now``, then holding their power as read back now."""
        self.device_meters.count(now.timestamp(), self.devices_power_w())

    def _drive_setpoints(self, now: datetime, age: float | None, latched: bool, remaining_s: float) -> None:
        """The setpoint devices after the loads: idle on a stale meter (as the loads go off) or
        under the latch, else the law on what the loads left."""
        stale = self.s.managing.stale_after_s
        if age is None or self.balance.current is None:
            why = say("stale_idle_none")
        elif age > stale:
            why = say("stale_idle", {"age_s": age, "stale_after_s": stale})
        else:
            why = None
        dt_s = (now - self.last_cycle_at).total_seconds() if self.last_cycle_at is not None else float("inf")
        cur = self.balance.current
        if self.s.bill.steer_by_cap and cur is not None:  # issue 35: the reserve by what surplus is worth now
            self.books.cap.start(cur.start.astimezone(self.s.tz).strftime("%Y-%m"))
            imp, sur, _ = self.prices.prices_of(cur.start.timestamp(), cur.end.timestamp())
            from gestor.tariff.calendar import period_2_0td
            self.setpoints.steer(self.books.cap, cur.start.timestamp(),
                                 *self.s.bill.prices(period_2_0td(cur.start, self.s.tz), imp, sur))
        self.setpoints.apply(now, stale_reason=why, latched=latched, remaining_s=remaining_s, dt_s=dt_s)

    def _persist(self) -> None:
        self.statefile.save(self.balance, self.loads, self.books, self.setpoints)

    def _clock_stepped_back(self, now: datetime) -> None:
        """The wall clock went back (NTP at boot on a Pi without an RTC): the period's accounting
        cannot go on across it. Start the balance afresh (this period is incomplete), restart the
        loads' timers (min_on/min_off run from now), and rely on the stale-meter guard until
        readings carry the new time."""
        elapsed = self.clock.monotonic() - self.last_cycle_mono if self.last_cycle_mono is not None else 0.0
        step = (self.last_cycle_at - now).total_seconds() + elapsed
        log.warning("wall clock stepped back by %.0f s (NTP?): the period's balance restarts from the next "
                    "reading; loads off until readings carry the new time", step)
        if self.balance.current is not None:
            self.books.close(self.balance.current, self.setpoints.period_energy(self.balance.current.start.timestamp()))
        self.core.reset()
        self.relays.clock_stepped_back(now)
        self.last_cycle_at = None
        self.statefile.persisted_at = None

    def _publish(self, now: datetime, snap: Snapshot, start: datetime, end: datetime, latched: bool,
                 stopped: bool = False) -> None:
        """The state after this cycle, for ``gestor status`` and ``stop-loads`` (run_dir, tmpfs).
        ``stopped``: managing exited with every load confirmed off (after a kill the file still
        says running: ``gestor status`` then shows the loads as unknown)."""
        reading = self.balance.last
        self.books.count_switch(None, now)
        self._file_op("the published state", lambda: publish_managing(self.s.paths.run_dir, {
            "pid": os.getpid(), "at": now.isoformat(), "cycle": self.cycles, "interval_s": self.s.managing.interval_s,
            "stopped": stopped,
            "period_start": start.isoformat(), "period_end": end.isoformat(),
            "balance_wh": snap.balance_wh, "projected_wh": projected_wh(snap, "instant"),
            "net_w": snap.net_w, "reading_at": reading.at.isoformat() if reading else None,
            "latched": latched, "policy": self.s.policy.name, "eur_saved_today": round(self.books.saved_today(now), 4),
            "mqtt": None if self.mqtt is None else self.mqtt.status(),
            "overrides": {k: v.describe(self.s.tz) for k, v in self.overrides.items()},
            "loads": self.relays.published(snap.period_start_s, self.books.switches_today),
            "setpoints": self._devices_published(),
            "min_run": {k: [t.isoformat() for t in v] for k, v in self.core.min_run_plan(now.timestamp()).items()}}))

    def _read_overrides(self, now: datetime) -> None:
        new = read_overrides(self.s.paths.state_dir, now)
        names = {ld.name for ld in self.loads}
        for name in set(new) | set(self.overrides):
            if name not in names:
                continue
            if new.get(name) != self.overrides.get(name):
                log.info("load %s: %s", name, new[name].describe(self.s.tz) if name in new
                         else say("override_ended"))
        self.overrides = {k: v for k, v in new.items() if k in names}


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
