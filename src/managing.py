"""The managing daemon: keeps the settlement period's net balance from the live readings, asks the
policy for wishes, holds them to the guards, switches the relays, and stores ``balance``, ``load``,
``decision`` and (at each period's close) ``period`` points.

Every switch is logged with its reason, e.g.
``load water_heater ON: projected +412 Wh covers 1000 W for 1388 s left (time_to_consume, instant)``.
Loads are switched off at start, on exit, on a stale meter, under the stop latch, and when a relay's
state is unknown after an error.

Faults it rides through: a wall-clock step (the period's balance restarts, marked incomplete; a
reading's age is measured on the monotonic clock too, so a step never makes a stale meter look
fresh); a relay that answers slowly (every relay is commanded in parallel, each within its own
deadline); a load switched off outside gestor (found at the next cycle, left off until the period
ends, never switched back on silently); a damaged state file (moved aside); a full or read-only
disk (logged once, control goes on).
"""
from __future__ import annotations

import json
import logging
import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from drivers.relays import Relay, RelayError
from drivers.relays.base import confirm_off_drawing_w
from drivers.store.influx import Store, point
from gestor.core.balance import COUNTERS_AGREE_WH, Balance, PeriodSummary
from gestor.clock import Clock
from gestor.runtime.daemon import context, open_relays, run_loop
from gestor.files import WriteGuard, atomic_write_text
from gestor.core.control import Core, LoadState
from gestor.core.guards import LoadLimits, Override, min_run_deadline
from gestor.runtime.livestate import is_latched, latch_path, publish_managing, read_live, set_latch
from gestor.runtime.overrides import read_overrides
from gestor.core.policies import Snapshot, Wish, projected_wh
from gestor.settings import Settings
from gestor.runtime.statefiles import ManagingFile, read_state
from gestor.runtime.stopplan import relay_id_or_none, save_plan

log = logging.getLogger("gestor.managing")
STATE_FILE = "managing.json"
# The state file lives on the SD card: write it once a minute, at each period's close and on exit.
# A restart loses nothing meanwhile: the live state holds the last readings, and the balance
# re-integrates those newer than the persisted one.
PERSIST_EVERY_S = 60.0
# A load reported off is not believed while something still shows it drawing: its relay's own
# meter (drivers.relays.base.still_drawing_w), or the grid meter not rising by half its power over
# the first OFF_CHECK_READINGS readings after the off.
OFF_CHECK_READINGS = 2


def _of_state(attr: str, writable: bool = True) -> property:
    """A property that reads (and, ``writable``, writes) ``attr`` of the load's :class:`LoadState`."""
    return property(lambda self: getattr(self.state, attr),
                    (lambda self, v: setattr(self.state, attr, v)) if writable else None,
                    doc=f"The control state's ``{attr}`` (:class:`gestor.core.control.LoadState`).")


@dataclass
class LoadRuntime:
    """A load as managing drives it: the controller's state (``state``, a
    :class:`gestor.core.control.LoadState`: on, since, switches, on-time, which the control core reads
    and books) beside its relay and what the relay did. Held beside it, not derived from it: the
    core may be compiled (``install.sh --compile``), and compiled classes take no interpreted
    subclasses."""

    state: LoadState
    relay: Relay
    reason: str = ""
    failures: int = 0                # commands in a row that were not confirmed
    retry_at: datetime | None = None  # next attempt after a failure (backoff)
    hold_off_until: datetime | None = None  # switched off outside gestor: left off until then
    hold_reason: str = ""
    off_check: tuple[float, float] | None = None  # after an off: (epoch s of it, net W just before)

    on = _of_state("on")
    since = _of_state("since")
    since_s = _of_state("since_s")
    switches = _of_state("switches")
    on_s = _of_state("on_s")
    day_on_s = _of_state("day_on_s")
    name = _of_state("name", writable=False)
    cfg = _of_state("cfg", writable=False)
    limits = _of_state("limits", writable=False)
    power_w = _of_state("power_w", writable=False)


class Managing:
    def __init__(self, settings: Settings, clock: Clock, store: Store,
                 relays: dict[str, Relay] | None = None) -> None:
        self.s = settings
        self.clock = clock
        self.store = store
        ctx = context(settings, clock)
        relays = relays or open_relays(settings, ctx)
        self.loads = [LoadRuntime(LoadState(ld, LoadLimits.of(ld)), relays[ld.name]) for ld in settings.loads_by_priority()]
        self.core = Core(settings, [ld.state for ld in self.loads])  # the control cycle, shared with gestor simulate
        self.prices = None
        self._prices_thread: threading.Thread | None = None
        self._prices_tried: set = set()   # days asked once already (one try, one log line a day)
        if settings.prices.source != "fixed":  # the daily minimum runs in the cheapest real-price slots
            from gestor.tariff.prices import Book
            self.prices = Book(settings.paths.state_dir, settings.tz,
                               settings.prices.file if settings.prices.source == "file" else None)
            self.core.import_price = self.prices.import_price
        self.overrides: dict[str, Override] = {}
        self.button = None
        self.mqtt = None                 # gestor.runtime.mqtt.Link with mqtt.enabled (start)
        self._mqtt_at: float | None = None   # monotonic s of the last state published
        self._mqtt_key: tuple | None = None  # loads' states and the latch then: a change publishes at once
        self._mqtt_state: dict | None = None
        self._mqtt_ready = False         # our retained discovery configs read back since the connection
        self._mqtt_sync = 0              # the token of that read-back (P/managing/sync)
        self._announced: dict[str, dict] = {}
        self._announced_meter: tuple[str, ...] = ()
        # Wh over the closed periods, only increasing (MQTT's Energy-dashboard counters; persisted)
        self.totals: dict[str, float | None] = {"import_wh": 0.0, "export_wh": 0.0,
                                                "production_wh": None, "consumption_wh": None}
        self.loads_wh: dict[str, float] = {ld.name: 0.0 for ld in settings.loads}
        self.last_period_end: datetime | None = None
        self.switches_today: dict[str, int] = {ld.name: 0 for ld in settings.loads}
        self._today = None               # the local date switches_today counts
        self.last_period_wh: float | None = None
        self.eur_saved_today = 0.0       # EUR, the closed periods of the local day (cost without - with gestor)
        self._money_day = None
        self._age: float | None = None
        self._lock = threading.RLock()  # the stop button's thread and the cycle both command relays
        self.tags = {"site": settings.site}
        self.state_path = Path(settings.paths.state_dir) / STATE_FILE
        self.last_cycle_at: datetime | None = None
        self.last_cycle_mono: float | None = None
        self.persisted_at: datetime | None = None
        self.closed: deque[PeriodSummary] = deque(maxlen=96)  # recent closed periods (bounded: runs for years)
        self.switches_total = 0
        self.cycles = 0                  # published: stop-loads waits for a cycle after its latch
        self._latched_seen: bool | None = None  # the latch at the last cycle (its changes are logged)
        self._latch_pending: tuple[datetime, str] | None = None  # a stop whose latch file could not be written
        self._counters_refused_logged: datetime | None = None  # the period whose refused counters were logged
        # each load's relay fingerprint, published: stop-loads confirms "via managing" only for these
        self._relay_ids = {ld.name: relay_id_or_none(ld.cfg.relay) for ld in self.loads}
        self._file_op = WriteGuard(log, "control goes on without it")
        # one worker per load: relays are commanded in parallel, so a slow one delays no other
        self._pool = ThreadPoolExecutor(max_workers=max(len(self.loads), 1), thread_name_prefix="relay")
        self._restore()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Every load off before the first decision; the stop button armed if configured."""
        save_plan(self.s)  # the stop plan: what stop-loads switches off if the settings file breaks
        self._command_all([(ld, False, "start: every load off until the policy decides", None)
                           for ld in self.loads], self.clock.now())
        pin = self.s.managing.stop_button_pin
        if pin is not None:
            from gpiozero import Button
            self.button = Button(pin, pull_up=self.s.managing.stop_button_pull_up, bounce_time=0.05)
            self.button.when_pressed = self.stop_button_pressed
            log.info("stop button armed on GPIO %s", pin)
        if self.s.mqtt.enabled:
            from gestor.runtime.mqtt import Link, node_id, prefix
            p = prefix(self.s.mqtt, self.s.site)
            subs = [f"{p}/load/+/mode/set", f"{p}/stop/set"]
            if self.s.mqtt.discovery:  # our node's retained configs: to empty those of removed loads;
                # our sync token after them; Home Assistant's birth message
                subs += [f"{self.s.mqtt.discovery_prefix}/+/{node_id(self.s.site)}/+/config", f"{p}/managing/sync",
                         f"{self.s.mqtt.discovery_prefix}/status"]
            # assigned before it connects: paho's thread calls _mqtt_connected, which publishes through it
            self.mqtt = Link(self.s.mqtt, self.s.site, "managing", subs, self._mqtt_command, self._mqtt_connected)
            self.mqtt.start()

    def stop_button_pressed(self) -> None:
        """The emergency-stop button: set the latch and switch every load off now."""
        self.emergency_stop(f"stop button on GPIO {self.s.managing.stop_button_pin}", "stop button pressed")

    def emergency_stop(self, origin: str, reason: str) -> None:
        """What ``stop-loads`` does, from inside managing (the stop button, MQTT): set the stop
        latch and switch every load off now. Only ``stop-loads --release`` lifts the latch."""
        now = self.clock.now()
        log.warning("EMERGENCY STOP from %s: stop latch set, every load off", origin)
        try:
            set_latch(self.s.paths.state_dir, now, origin)
        except OSError as e:  # a read-only SD card: the stop is held here until the file can be written
            self._latch_pending = (now, origin)
            log.error("stop latch NOT written (%s): managing holds the stop itself and writes the latch as "
                      "soon as it can; every load off", e)
        with self._lock:
            self._command_all([(ld, False, reason, None) for ld in self.loads], now)

    # -- MQTT ----------------------------------------------------------------------------------
    def _mqtt_connected(self) -> None:
        """After every (re)connection (paho's thread): discovery; then a token to ourselves on
        ``P/managing/sync``. The broker sends it back after the retained configs of our node
        (subscribed before), so when it arrives every stale config is emptied, and only then is
        the state published: Home Assistant never gets a state without a load whose entities it
        still has. Without discovery the state goes at once."""
        self._mqtt_ready = not self.s.mqtt.discovery
        if self.s.mqtt.discovery:
            self._mqtt_announce()
            self._mqtt_sync += 1
            self.mqtt.publish(f"{self.mqtt.prefix}/managing/sync", str(self._mqtt_sync), retain=False)
        elif self._mqtt_state is not None:
            self.mqtt.publish(f"{self.mqtt.prefix}/state", self._mqtt_state)

    def _meter_has(self) -> tuple[str, ...]:
        """What the meter gives beside net power, as far as seen (the counters are kept then)."""
        return tuple(k for k in ("production", "consumption") if self.totals.get(f"{k}_wh") is not None)

    def _configuration_url(self) -> str | None:
        """The web page's URL, for Home Assistant's device page (the host's name when the page
        listens on every address)."""
        import socket

        from gestor.settings import listen_address
        try:
            host, port = listen_address(self.s.web.listen)
        except ValueError:
            return None
        if host in ("0.0.0.0", "::", ""):
            host = socket.gethostname() or None
            if host is None:
                return None
        if ":" in host:
            host = f"[{host}]"
        scheme = "https" if self.s.web.tls_cert_file else "http"
        return f"{scheme}://{host}:{port}/"

    def _mqtt_announce(self) -> None:
        """Publish every discovery config (retained); what is announced is what stays."""
        from gestor import __version__
        from gestor.runtime.mqtt import discovery
        meter = self._meter_has()
        expire = int(3 * max(self.s.mqtt.publish_s, self.s.monitoring.interval_s)) + 30
        self._announced = discovery(self.s.mqtt, self.s.site, [ld.name for ld in self.loads], meter,
                                    __version__, self._configuration_url(), expire)
        self._announced_meter = meter
        for topic, cfg in self._announced.items():
            self.mqtt.publish(topic, cfg)

    def _mqtt_command(self, topic: str, payload: str) -> None:
        """A message on a subscribed topic (paho's thread): a load's mode, the stop, one of our
        node's retained discovery configs, our own sync token, or Home Assistant's birth."""
        from gestor.runtime.mqtt import MODES
        p = self.mqtt.prefix
        if topic.endswith("/config"):
            if payload and topic not in self._announced:
                log.info("MQTT: %s is no longer announced (load removed?): emptied", topic)
                self.mqtt.publish(topic, "")
            return
        if topic == f"{p}/managing/sync":
            if payload == str(self._mqtt_sync) and not self._mqtt_ready:
                self._mqtt_ready = True   # the stale configs are emptied: the state may go
                if self._mqtt_state is not None:
                    self.mqtt.publish(f"{p}/state", self._mqtt_state)
            return
        if topic == f"{self.s.mqtt.discovery_prefix}/status":
            if payload == "online" and self._mqtt_ready:  # Home Assistant (re)started: announce again
                log.info("MQTT: Home Assistant is online: discovery and state published again")
                self._mqtt_announce()
                if self._mqtt_state is not None:
                    self.mqtt.publish(f"{p}/state", self._mqtt_state)
            return
        if topic == f"{p}/stop/set":
            if payload != "STOP":
                log.warning("MQTT %s: payload %r ignored (expected STOP)", topic, payload[:40])
                return
            self.emergency_stop("MQTT", "emergency stop from MQTT")
            return
        name = topic[len(p) + len("/load/"):-len("/mode/set")] if topic.startswith(f"{p}/load/") else ""
        if name not in self.switches_today:
            log.warning("MQTT %s: no load named %r: ignored", topic, name)
            return
        if payload not in MODES:
            log.warning("MQTT %s: payload %r ignored (expected auto, on or off)", topic, payload[:40])
            return
        from gestor.runtime.overrides import set_override
        try:
            ov = set_override(self.s.paths.state_dir, name, payload, self.clock.now(), None, by="mqtt")
        except OSError as e:
            log.error("MQTT: override of %s not written: %s", name, e)
            return
        log.info("override from MQTT: %s %s (from managing's next cycle; the latch and a stale meter still win)",
                 name, "auto" if ov is None else ov.describe(self.s.tz))

    def _fetch_prices_daily(self, now: datetime) -> None:
        """After 20:30 local, once a day, fetch tomorrow's prices from ESIOS in a thread of its
        own (the cycle never waits on the network); today's too when the cache lacks them.
        Failures are logged once per day and the day keeps its cache or the fixed prices."""
        from datetime import timedelta

        from gestor.tariff import prices
        local = now.astimezone(self.s.tz)
        wanted = [local.date()] + ([local.date() + timedelta(days=1)] if (local.hour, local.minute) >= (20, 30) else [])
        wanted = [d for d in wanted if d not in self._prices_tried]  # each day looked at once: no file read a cycle
        if not wanted or (self._prices_thread is not None and self._prices_thread.is_alive()):
            return
        self._prices_tried = {d for d in self._prices_tried if d >= local.date()} | set(wanted)
        days = [d for d in wanted if prices.cached(self.s.paths.state_dir, d) is None]
        if not days:
            return

        def work() -> None:
            for d in days:
                try:
                    p = prices.fetch(self.s, d)
                    prices.save(self.s.paths.state_dir, p)
                    self.store.write(prices.points(p, self.s.site))
                    log.info("prices for %s fetched from %s: %d slots of %d min", d,
                             {"esios": "ESIOS", "pvpc_public": "REE's public PVPC file"}.get(p.source, p.source),
                             len(p.import_), p.slot_s // 60)
                except (prices.PriceError, OSError) as e:
                    log.warning("prices for %s: %s; the fixed 2.0TD prices are used for that day", d, e)
            self.prices._loaded_for = None  # read the cache again at the next cycle
        self._prices_thread = threading.Thread(target=work, name="prices", daemon=True)
        self._prices_thread.start()

    def _count_switch(self, name: str | None, now: datetime) -> None:
        """Count a confirmed switch of ``name`` in today's (local) switches; None: only roll the day."""
        local = now.astimezone(self.s.tz).date()
        if local != self._today:
            self._today = local
            self.switches_today = dict.fromkeys(self.switches_today, 0)
        if name is not None:
            self.switches_today[name] = self.switches_today.get(name, 0) + 1

    def _mqtt_publish(self, now: datetime, snap: Snapshot, latched: bool) -> None:
        """The state, retained: every mqtt.publish_s (half a cycle early counts: with equal
        intervals a strict wait would skip every other cycle), at once when a load, the latch or an
        override changes. (Called after :meth:`_publish`, which rolls switches_today over at midnight.)"""
        if self.mqtt is None:
            return
        last = self.balance.last
        if last is not None:  # the meter's production/consumption: counted (and announced) from now on
            for kind, v in (("production", last.production_w), ("consumption", last.consumption_w)):
                if v is not None and self.totals.get(f"{kind}_wh") is None:
                    self.totals[f"{kind}_wh"] = 0.0
        if self.s.mqtt.discovery and self._mqtt_ready and self._meter_has() != self._announced_meter:
            self._mqtt_announce()
        key = (tuple(ld.on for ld in self.loads), latched, tuple(sorted(self.overrides)))
        mono = self.clock.monotonic()
        due = self.s.mqtt.publish_s - 0.5 * self.s.managing.interval_s
        if key == self._mqtt_key and self._mqtt_at is not None and mono - self._mqtt_at < due:
            return
        self._mqtt_key, self._mqtt_at = key, mono
        from gestor.tariff.calendar import period_2_0td
        imp, sur, _ = self._prices_of(snap.period_start_s, snap.period_end_s)
        today = now.astimezone(self.s.tz).date()
        verdicts = {w.load: w for w in self.core.verdicts or ()}

        def reason(ld: LoadRuntime) -> str:
            v = verdicts.get(ld.name)
            if v is not None and v.on == bool(ld.on) and v.reason:
                return v.reason   # the guard that holds it now (ld.reason: why it last switched)
            return ld.reason

        self._mqtt_state = {
            "at": now.isoformat(), "net_w": _round(snap.net_w, 1), "balance_wh": _round(snap.balance_wh, 3),
            "projected_wh": _round(projected_wh(snap, "instant"), 3), "remaining_s": round(snap.remaining_s),
            "reading_age_s": _round(self._age, 1), "latched": latched,
            "last_period_wh": _round(self.last_period_wh, 3),
            "eur_saved_today": round(self.eur_saved_today if self._money_day == today else 0.0, 4),
            "tariff_period": period_2_0td(now, self.s.tz),
            "import_eur_per_kwh": _round(imp, 6), "surplus_eur_per_kwh": _round(sur, 6),
            "totals": {k: _round(v, 3) for k, v in self.totals.items()},
            "loads": {ld.name: {"on": ld.on, "reason": reason(ld), "switches_today": self.switches_today[ld.name],
                                "energy_wh": round(self.loads_wh.get(ld.name, 0.0), 3),
                                "mode": ("on" if self.overrides[ld.name].on else "off") if ld.name in self.overrides
                                else "auto"} for ld in self.loads}}
        if self._mqtt_ready:
            self.mqtt.publish(f"{self.mqtt.prefix}/state", self._mqtt_state)

    def stop(self, reason: str = "exit: every load off") -> bool:
        """Every load off; True when every relay confirmed."""
        now = self.clock.now()
        with self._lock:
            ok = all(self._command_all([(ld, False, reason, None) for ld in self.loads], now))
        if self.button is not None:
            self.button.close()
            self.button = None
        if self.mqtt is not None:
            if self._mqtt_state is not None:  # the loads as they are left
                for ld in self.loads:
                    self._mqtt_state["loads"][ld.name].update(on=ld.on, reason=ld.reason)
                self.mqtt.publish(f"{self.mqtt.prefix}/state", self._mqtt_state)
            self.mqtt.close()
            self.mqtt = None
        self._persist()
        now = self.clock.now()
        self._publish(now, Snapshot(now.timestamp(), now.timestamp(), now.timestamp(), self.balance.balance_wh,
                                    self.balance.last_net_w, ()),
                      now, now, is_latched(self.s.paths.state_dir), stopped=ok)
        self._pool.shutdown(wait=False, cancel_futures=True)
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
        self._account_loads(now)
        last = self.balance.last
        live = read_live(self.s.paths.run_dir)
        # readings newer than the last accounted, and not from the future (a clock step)
        new = [r for r, _ in live if (last is None or r.at > last.at) and r.at <= now]
        age = self._age = self._reading_age(now, live)
        self._read_overrides(now)
        for ld in self.loads:
            if ld.hold_off_until is not None and now >= ld.hold_off_until:
                ld.hold_off_until = None
                log.info("load %s: back to auto after being switched off outside gestor", ld.name)
        # Loads a guard holds anyway (override, unknown relay, switched off outside gestor; the
        # controller adds closed windows) are left out of the policy's stack.
        held = {ld.name: "relay state unknown after an error: off until it confirms" if ld.on is None
                else "held by a guard" for ld in self.loads
                if ld.on is None or ld.name in self.overrides or ld.hold_off_until is not None}
        latched = is_latched(self.s.paths.state_dir)
        if self._latch_pending is not None:  # a stop whose latch could not be written: it still holds
            try:
                set_latch(self.s.paths.state_dir, *self._latch_pending)
                log.warning("stop latch written now (%s)", latch_path(self.s.paths.state_dir))
                self._latch_pending = None
            except OSError:
                pass
            latched = True
        if latched != self._latched_seen:
            if latched:
                log.warning("stop latch set (%s): every load off until 'stop-loads --release'",
                            latch_path(self.s.paths.state_dir))
            elif self._latched_seen is not None:
                log.warning("stop latch released: the policy decides again")
                for ld in self.loads:  # a load that stays off no longer stays off for the stop
                    if ld.on is False:
                        ld.reason = "the stop latch is released: the policy decides"
            self._latched_seen = latched
        if self.prices is not None:
            self.prices.refresh(now, self.core.bounds_s(now.timestamp())[0])
            if self.s.prices.source in ("esios", "pvpc_public"):  # gestor.tariff.prices.FETCHED_SOURCES
                self._fetch_prices_daily(now)
        step = self.core.step(now, new, reading_age_s=age, latched=latched, overrides=self.overrides, held=held)
        closed, start, end = step.closed, step.period_start, step.period_end
        cur = self.balance.current
        if cur is not None and cur.counters_refused and self._counters_refused_logged != cur.start:
            self._counters_refused_logged = cur.start
            log.error("the meter's energy counters disagree with its power readings by more than %.0f Wh: the "
                      "period's balance is integrated from net power until it ends (a counter over-reading?)",
                      COUNTERS_AGREE_WH)
        for p in closed:
            self._close_period(p)
        snap = Snapshot(now.timestamp(), start.timestamp(), end.timestamp(), step.balance_wh, step.net_w, ())
        if new:  # the balance of the period the reading belongs to, stamped with the reading
            reading, cur = self.balance.last, self.balance.current
            at_reading = Snapshot(reading.at.timestamp(), self.balance.start_t, cur.end.timestamp(),
                                  cur.balance_wh, reading.net_w, ())
            self.store.write([point("balance", {**self.tags, "period_s": str(self.s.billing.period_s)},
                                    {"balance_wh": cur.balance_wh,
                                     "projected_wh": projected_wh(at_reading, "instant")},
                                    reading.at)])
        todo = {w.load: w for w in step.changes}
        again = self._off_not_seen(live)
        verdicts = {w.load: w for w in self.core.verdicts or ()}
        auto_off_s = snap.remaining_s + 3 * self.s.managing.interval_s
        commands, checks, final = [], [], []
        for ld in self.loads:
            w = todo.get(ld.name)
            # a load switched off outside gestor stays off until the period ends (a manual
            # override, a later decision of the household, still wins)
            if w is not None and ld.hold_off_until is not None and ld.name not in self.overrides \
                    and (w.on or w.reason == "held by a guard"):
                w = Wish(ld.name, False, ld.hold_reason)
            if w is not None and (ld.on is None or w.on != ld.on):
                if ld.retry_at is not None and now < ld.retry_at:
                    final.append(Wish(ld.name, False, ld.reason))
                    continue  # backing off after a failed command; the load stays "unknown"
                commands.append((ld, w.on, w.reason, auto_off_s))
                final.append(w)
                continue
            if w is None and ld.name in again:  # off once more, for the reason it went off (logged)
                commands.append((ld, False, ld.reason, None))
                final.append(Wish(ld.name, False, ld.reason))
                continue
            if ld.on:
                checks.append(ld)  # on, and to stay on: is it really? (stop-loads, its own button)
            final.append(verdicts.get(ld.name) or Wish(ld.name, bool(ld.on), ld.reason))
        self._command_all(commands, now, checks=[(ld, auto_off_s, start, end) for ld in checks])
        self.store.write([point("load", {**self.tags, "load": ld.name}, self._load_fields(ld), now)
                          for ld in self.loads])
        self.last_cycle_at, self.last_cycle_mono = now, self.clock.monotonic()
        self._publish(now, snap, start, end, latched)
        self._mqtt_publish(now, snap, latched)
        if closed or self.persisted_at is None or abs((now - self.persisted_at).total_seconds()) >= PERSIST_EVERY_S:
            self._persist()
        return final

    def _off_not_seen(self, live: list) -> dict[str, str]:
        """Loads switched off and confirmed by their relay, whose power the grid meter did not see
        go: over the first OFF_CHECK_READINGS readings after the off, net power rose by less than
        half the load's rated power (a welded contactor behind a GPIO relay that reads its own
        coil, a relay that lies). Logged loudly; the load is commanded off once more (its
        device's dead-man timer bounds the rest). Not judged when another load switched meanwhile
        (the meter cannot tell them apart). Returns {load: reason} for the loads to command off."""
        out: dict[str, str] = {}
        for ld in self.loads:
            if ld.off_check is None:
                continue
            if ld.on is not False:
                ld.off_check = None
                continue
            t_off, net_before = ld.off_check
            after = [r for r, _ in live if r.at.timestamp() > t_off][:OFF_CHECK_READINGS]
            if len(after) < OFF_CHECK_READINGS:
                continue
            ld.off_check = None
            if any(o is not ld and o.since is not None and t_off - 1.0 <= o.since.timestamp() <= after[-1].at.timestamp()
                   for o in self.loads):
                continue
            rise_w = sum(r.net_w for r in after) / len(after) - net_before
            if rise_w < 0.5 * ld.cfg.power_w:
                out[ld.name] = (f"reported off, but the meter did not see its {ld.cfg.power_w:.0f} W go (net power "
                                f"rose {rise_w:+.0f} W): commanding off again; check the relay and its contactor")
                log.error("load %s: %s", ld.name, out[ld.name])
        return out

    def _reading_age(self, now: datetime, live: list) -> float | None:
        """Age of the newest published reading, s; None without one. Measured on the wall clock and
        on the monotonic clock monitoring stamped it with: the worse of the two counts, and a
        negative age (a reading from the future: the clock stepped) is passed on as such, which the
        stale-meter guard treats as stale."""
        if not live:
            return None
        r, mono = live[-1]
        ages = [(now - r.at).total_seconds()]
        if mono is not None:
            ages.append(self.clock.monotonic() - mono)
        return min(ages) if min(ages) < 0 else max(ages)

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
            self._close_period(self.balance.current)
        self.core.reset()
        for ld in self.loads:
            ld.since = now
            ld.retry_at = None if ld.retry_at is None else now
            ld.hold_off_until = None if ld.hold_off_until is None else now
        self.last_cycle_at = None
        self.persisted_at = None

    def _publish(self, now: datetime, snap: Snapshot, start: datetime, end: datetime, latched: bool,
                 stopped: bool = False) -> None:
        """The state after this cycle, for ``gestor status`` and ``stop-loads`` (run_dir, tmpfs).
        ``stopped``: managing exited with every load confirmed off (after a kill the file still
        says running: ``gestor status`` then shows the loads as unknown)."""
        key = snap.period_start_s
        reading = self.balance.last
        self._count_switch(None, now)
        self._file_op("the published state", lambda: publish_managing(self.s.paths.run_dir, {
            "pid": os.getpid(), "at": now.isoformat(), "cycle": self.cycles, "interval_s": self.s.managing.interval_s,
            "stopped": stopped,
            "period_start": start.isoformat(), "period_end": end.isoformat(),
            "balance_wh": snap.balance_wh, "projected_wh": projected_wh(snap, "instant"),
            "net_w": snap.net_w, "reading_at": reading.at.isoformat() if reading else None,
            "latched": latched, "policy": self.s.policy.name, "eur_saved_today": round(self.eur_saved_today if self._money_day == now.astimezone(self.s.tz).date() else 0.0, 4),
            "mqtt": None if self.mqtt is None else {"connected": self.mqtt.connected, "error": self.mqtt.error,
                                                    "broker": f"{self.s.mqtt.host}:{self.s.mqtt.port}"},
            "overrides": {k: v.describe(self.s.tz) for k, v in self.overrides.items()},
            "loads": {ld.name: {"on": ld.on, "reason": ld.reason,
                                "since": ld.since.isoformat() if ld.since else None,
                                "switches_in_period": ld.switches.get(key, 0), "failures": ld.failures,
                                "switches_today": self.switches_today.get(ld.name, 0),
                                "power_w": ld.cfg.power_w, "relay_id": self._relay_ids.get(ld.name),
                                "measured_power_w": getattr(ld.relay, "measured_power_w", None)}
                      for ld in self.loads}}))

    def _load_fields(self, ld: LoadRuntime) -> dict:
        fields = {"on": bool(ld.on), "power_w": ld.cfg.power_w if ld.on else 0.0}
        measured = getattr(ld.relay, "measured_power_w", None)
        if measured is not None:
            fields["measured_power_w"] = float(measured)
        return fields

    def _read_overrides(self, now: datetime) -> None:
        new = read_overrides(self.s.paths.state_dir, now)
        names = {ld.name for ld in self.loads}
        for name in set(new) | set(self.overrides):
            if name not in names:
                continue
            if new.get(name) != self.overrides.get(name):
                log.info("load %s: %s", name, new[name].describe(self.s.tz) if name in new
                         else "manual override ended: back to auto")
        self.overrides = {k: v for k, v in new.items() if k in names}

    def _failed(self, ld: LoadRuntime, now: datetime, error: str, reason: str) -> None:
        ld.failures += 1
        delay = min(self.s.managing.interval_s * 2 ** (ld.failures - 1), self.s.managing.relay_retry_max_s)
        ld.retry_at = now + timedelta(seconds=delay)
        log.error("load %s FAILED (%d in a row): %s (wanted because: %s); state unknown, retry in %.0f s",
                  ld.name, ld.failures, error, reason, delay)

    def _deadline_s(self, ld: LoadRuntime) -> float:
        """The longest a command and its read-back may take (each device call has its timeout)."""
        return 2 * float(getattr(ld.cfg.relay, "timeout_s", 3.0)) + 1.0

    @staticmethod
    def _switch(ld: LoadRuntime, on: bool, auto_off_s: float | None) -> str | None:
        """In a worker: command and read back. Returns the error, or None when confirmed."""
        try:
            ld.relay.set(on, auto_off_s if on else None)
            got = ld.relay.state()
            if got != on:
                return f"relay reads {'on' if got else 'off'} after commanding {'on' if on else 'off'}"
            drawn = None if on else confirm_off_drawing_w(ld.relay, ld.cfg.power_w)
            if drawn is not None:
                return (f"relay reads off but its meter shows {drawn:.0f} W drawn: not believed" if drawn != float("inf")
                        else "relay reads on again after commanding off")
        except RelayError as e:
            return str(e)
        except Exception as e:  # noqa: BLE001 -- a driver bug is a failed command, not a dead daemon
            return f"{type(e).__name__}: {e}"
        return None

    @staticmethod
    def _check(ld: LoadRuntime, auto_off_s: float) -> tuple[bool | None, str | None]:
        """In a worker, for a load that is on and stays on: read it back first; renew the device's
        auto-off timer only if it still reads on. Returns (state read, error)."""
        try:
            if not ld.relay.state():
                # switched off outside gestor: never switched back on here, not even by a timer
                # renewal (its meter may still show the load for a second: it is off all the same)
                return False, None
            if getattr(ld.relay, "refresh_on_cycle", False):
                ld.relay.set(True, auto_off_s)
                log.debug("load %s: auto-off timer renewed (%.0f s)", ld.name, auto_off_s)
            return True, None
        except RelayError as e:
            return None, str(e)
        except Exception as e:  # noqa: BLE001
            return None, f"{type(e).__name__}: {e}"

    def _command_all(self, commands: list, now: datetime, checks: list | None = None) -> list[bool]:
        """Run every command ``(load, on, reason, auto_off_s)`` and every check ``(load,
        auto_off_s, period start, period end)`` in parallel, each within its load's deadline, then
        record the outcomes in order. Returns, per command, whether it was confirmed."""
        futs = [(self._pool.submit(self._switch, ld, on, auto_off_s), ld) for ld, on, _, auto_off_s in commands]
        cfuts = [(self._pool.submit(self._check, ld, auto_off_s), ld, pend)
                 for ld, auto_off_s, _, pend in (checks or [])]
        results = []
        for (fut, ld), (_, on, reason, auto_off_s) in zip(futs, commands):
            try:
                error = fut.result(timeout=self._deadline_s(ld))
            except FutureTimeout:
                error = f"no answer within {self._deadline_s(ld):.0f} s"
            results.append(self._record(ld, on, reason, now, error, auto_off_s))
        for fut, ld, pend in cfuts:
            try:
                got, error = fut.result(timeout=self._deadline_s(ld))
            except FutureTimeout:
                got, error = None, f"no answer within {self._deadline_s(ld):.0f} s"
            if error is not None:
                ld.on = None
                self._failed(ld, now, f"read-back/auto-off renewal failed: {error}", "keep on")
            elif got is False:
                ld.on, ld.since, ld.hold_off_until = False, now, pend
                self.core.note_state(now)
                ld.hold_reason = (f"switched off outside gestor at {now.astimezone(self.s.tz):%H:%M:%S} "
                                  f"(stop-loads, its own button or app): left off until "
                                  f"{pend.astimezone(self.s.tz):%H:%M}")
                ld.reason = ld.hold_reason
                log.warning("load %s found OFF although gestor had it on: %s", ld.name, ld.hold_reason)
                self.store.write([point("decision", {**self.tags, "load": ld.name},
                                        {"on": False, "reason": ld.hold_reason, "ok": True, "switched": 0}, now)])
        return results

    def _record(self, ld: LoadRuntime, on: bool, reason: str, now: datetime, error: str | None,
                auto_off_s: float | None) -> bool:
        word = "ON" if on else "OFF"
        # an off from an unknown state (the start's, a failed relay's) is not counted as a switch
        switched = error is None and ld.on != on and not (ld.on is None and not on)
        if error is None:
            if ld.on and not on and self.balance.last is not None:  # was the load's power seen to go?
                ld.off_check = (now.timestamp(), self.balance.last.net_w)
            if switched:
                self.switches_total += 1
                self._count_switch(ld.name, now)
            if ld.on != on:  # the control core's timers (min_off_s from now) all the same
                self.core.switched(ld.state, on, now.timestamp(), self.core.bounds_s(now.timestamp())[0])
            if ld.failures:
                log.info("load %s: relay confirmed again after %d failures", ld.name, ld.failures)
            ld.on, ld.reason, ld.failures, ld.retry_at = on, reason, 0, None
            timer = ""
            if on and auto_off_s is not None and getattr(ld.relay, "refresh_on_cycle", False):
                timer = f" [device auto-off in {auto_off_s:.0f} s, renewed every cycle while it stays on]"
            log.info("load %s %s: %s%s", ld.name, word, reason, timer)
        else:
            ld.on = None
            self._failed(ld, now, f"{word}: {error}", reason)
        self.store.write([point("decision", {**self.tags, "load": ld.name},
                                {"on": on, "reason": reason, "ok": error is None, "error": error,
                                 "switched": int(switched)}, now)])
        return error is None

    # -- accounting --------------------------------------------------------------------------
    def _account_loads(self, now: datetime) -> None:
        """Add each load's on-time since the last cycle, split at period boundaries."""
        if self.last_cycle_at is None or now <= self.last_cycle_at:
            return
        self.core.account(self.last_cycle_at.timestamp(), now.timestamp(), self.core.bounds_s)

    def _close_period(self, p: PeriodSummary) -> None:
        k = p.start.timestamp()
        per_load = {f"{ld.name}_wh": ld.cfg.power_w * ld.on_s.pop(k, 0.0) / 3600.0 for ld in self.loads}
        for ld in self.loads:
            ld.switches.pop(k, None)
        loads_wh = sum(per_load.values())
        self.closed.append(p)
        self.last_period_wh, self.last_period_end = p.balance_wh, p.end
        # the Energy dashboard's counters: the net, settled import and export (what the bill
        # counts), production, consumption and each load's energy; only ever increasing
        t = self.totals
        t["import_wh"] = (t["import_wh"] or 0.0) + max(-p.balance_wh, 0.0)
        t["export_wh"] = (t["export_wh"] or 0.0) + max(p.balance_wh, 0.0)
        for k, v in (("production_wh", p.production_wh), ("consumption_wh", p.consumption_wh)):
            if v is not None:
                t[k] = (t[k] or 0.0) + max(v, 0.0)
        for ld in self.loads:
            self.loads_wh[ld.name] = self.loads_wh.get(ld.name, 0.0) + per_load[f"{ld.name}_wh"]
        money = self._money(p, loads_wh)
        self.store.write([point("period", {**self.tags, "period_s": str(self.s.billing.period_s)}, {
            "balance_wh": p.balance_wh, "export_wh": p.export_wh, "import_wh": p.import_wh,
            "production_wh": p.production_wh, "consumption_wh": p.consumption_wh,
            "loads_wh": loads_wh, **per_load, "complete": p.complete, "covered_s": p.covered_s, **money}, p.start)])
        local = p.start.astimezone(self.s.tz)
        log.info("period %s closed: balance %+.0f Wh, loads %.0f Wh%s", local.strftime("%Y-%m-%d %H:%M %Z"),
                 p.balance_wh, loads_wh, "" if p.complete else f" (incomplete: {p.covered_s:.0f} s covered)")

    def _money(self, p: PeriodSummary, loads_wh: float) -> dict:
        """The period's EUR (gestor.tariff.prices.period_money) at its real prices when the cache has
        them, else at the fixed 2.0TD ones; today's savings add up in ``eur_saved_today``."""
        from gestor.tariff.prices import period_money
        t = self.s.tariff
        imp, sur, source = self._prices_of(p.start.timestamp(), p.end.timestamp())
        m = period_money(p.balance_wh, loads_wh, imp, sur, t.import_p3_eur_per_kwh)
        day = p.start.astimezone(self.s.tz).date()
        if day != self._money_day:
            self._money_day, self.eur_saved_today = day, 0.0
        self.eur_saved_today += m["cost_without_eur"] - m["cost_eur"]
        return {**m, "import_eur_per_kwh": imp, "surplus_eur_per_kwh": sur, "price_source": source}

    def _prices_of(self, t0: float, t1: float) -> tuple[float, float, str]:
        """Import and surplus EUR/kWh over [t0, t1) epoch s and their source: the real prices when
        the cache has them, else the fixed 2.0TD ones."""
        from gestor.tariff.calendar import period_2_0td
        t = self.s.tariff
        real = self.prices.period_prices(t0, t1) if self.prices is not None else None
        if real is not None:
            return real[0], real[1], "esios"
        start = datetime.fromtimestamp(t0, self.s.tz)
        return t.import_eur_per_kwh(period_2_0td(start, self.s.tz)), t.surplus_eur_per_kwh, "fixed"

    # -- restart within a period -------------------------------------------------------------
    def _persist(self) -> None:
        self.persisted_at = self.clock.now()
        state = {"balance": self.balance.to_state(), "on_s": {ld.name: ld.on_s for ld in self.loads},
                 "day_on_s": {ld.name: ld.day_on_s for ld in self.loads},
                 "switches": {ld.name: ld.switches for ld in self.loads},
                 "loads": {ld.name: {"on": ld.on, "since": ld.since.isoformat() if ld.since else None}
                           for ld in self.loads},
                 # what a user sees, unchanged by a restart
                 "totals": {k: v for k, v in self.totals.items() if v is not None}, "loads_wh": self.loads_wh,
                 "switches_today": self.switches_today, "switches_day": _iso(self._today),
                 "last_period_wh": self.last_period_wh, "last_period_end": _iso(self.last_period_end),
                 "eur_saved_today": self.eur_saved_today, "money_day": _iso(self._money_day)}
        self._file_op(str(self.state_path), lambda: atomic_write_text(self.state_path, json.dumps(state)))

    def _restore_counters(self, f: ManagingFile, now: datetime) -> None:
        """What a user sees back as it was: the Energy counters, today's switches and savings, the
        last period's balance (while it is still the last one)."""
        for k, v in f.totals.items():
            if k in self.totals:
                self.totals[k] = float(v)
        for name, v in f.loads_wh.items():
            if name in self.loads_wh:
                self.loads_wh[name] = float(v)
        today = now.astimezone(self.s.tz).date()
        if f.switches_day == today:
            self._today = today
            for name, n in f.switches_today.items():
                if name in self.switches_today:
                    self.switches_today[name] = n
        if f.money_day == today and f.eur_saved_today is not None:
            self._money_day, self.eur_saved_today = today, float(f.eur_saved_today)
        if f.last_period_wh is not None and f.last_period_end is not None \
                and f.last_period_end == self.balance.bounds(now)[0]:
            self.last_period_wh, self.last_period_end = float(f.last_period_wh), f.last_period_end

    def _restore(self) -> None:
        f = read_state(self.state_path, ManagingFile)
        if f is None:
            return
        try:
            b = Balance.from_state(f.balance, self.s.tz, self.s.billing.max_gap_s, self.core.max_power_w)
        except Exception as e:  # noqa: BLE001 -- a balance of the wrong shape: start clean
            log.error("state file %s is damaged (balance: %s): ignored, the period starts clean", self.state_path, e)
            try:
                os.replace(self.state_path, self.state_path.with_name(self.state_path.name + ".bad"))
            except OSError:
                pass
            return
        state = f.model_dump()
        now = self.clock.now()
        self._restore_counters(f, now)
        for ld in self.loads:
            # min_off_s survives a restart: a load that was on is switched off at start (now);
            # one that was off keeps the time it went off
            saved = f.loads.get(ld.name)
            if saved is not None:
                if saved.on is False and saved.since is not None and saved.since <= now:
                    ld.since = saved.since
                else:
                    ld.on = None  # the start command records a switch off now
        for ld in self.loads:  # the day's run time survives any restart before its deadline
            key = min_run_deadline(now, self.s.tz, ld.cfg.min_run_by).timestamp()
            done = _epoch_keys(state.get("day_on_s", {}).get(ld.name, {})).get(key)
            if done:
                ld.day_on_s = {key: float(done)}
        if b.period_s != self.s.billing.period_s or b.current is None or b.last is None:
            return
        if b.current.start != self.balance.bounds(now)[0] or b.last.at > now:
            return  # a new period (or one from the future: the clock went back): start clean
        # Same period: resume. The readings taken while we were down are in the live state (the
        # last 30); the balance integrates them from where it stopped, and does not bridge a gap
        # longer than max_gap_s (the period is then marked incomplete).
        self.balance = b
        for ld in self.loads:
            ld.on_s = {k: float(v) for k, v in _epoch_keys(state.get("on_s", {}).get(ld.name, {})).items()}
            ld.switches = {k: int(v) for k, v in _epoch_keys(state.get("switches", {}).get(ld.name, {})).items()}
        log.info("resumed the period's balance at %+.1f Wh", b.balance_wh)


def _round(v: float | None, digits: int) -> float | None:
    return None if v is None else round(float(v), digits)


def _iso(v: object) -> str | None:
    return None if v is None else v.isoformat()  # type: ignore[attr-defined]


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
