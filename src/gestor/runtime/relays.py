"""The loads as managing drives them, and the part of managing that talks to their relays.

:class:`Relays` commands every relay in parallel (one worker per load: a slow relay delays no
other), each within its own deadline (``2 × the relay's timeout_s + 1`` s), reads each command
back, and records the outcome: a log line with the reason, a ``decision`` point, the control
core's timers. Its failure mode: a command not confirmed (an error, a read-back that disagrees, no
answer by the deadline) leaves the load's state unknown (``on`` None: kept off by the guards) and
retries with a backoff (``managing.interval_s`` doubling up to ``managing.relay_retry_max_s``).
A load found off although gestor had it on (stop-loads, its own button or app) is left off until
the period ends, unless the stop latch is set (then it is off for the stop, and the policy
decides again on ``--release``). Every off, commanded or found, is then checked: a load reported
off that keeps drawing (its relay's own meter shows it, or the grid meter does not see its power
go) is a lying relay: logged at ERROR and commanded off every cycle, its device's auto-off timer
never renewed, until its dead-man bound has passed (issue 32, item 1). One found off is held
"unknown" meanwhile (it would be held off until the period's end anyway); one whose commanded
off the grid meter doubts is not held: the policy may switch it on again (a meter's noise must
not change control: the daemon decides as ``gestor simulate`` does). The bound is kept on the
monotonic clock too (a wall-clock step forward does not end it early: the device's timer does not
jump). An "on" that reads off is followed at once by an off; if the relay was judged lying before
(and no "on" has been read back since), it is judged lying again, held to the timer just sent:
never commanded on every cycle, each "on" a fresh device timer. Nothing here raises: a driver's
bug is a failed command.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Callable, Mapping, NamedTuple

from drivers.relays import Relay, RelayError
from drivers.relays.base import confirm_off_drawing_w, still_drawing_w
from drivers.store.influx import Store, point
from gestor.core.control import Core, LoadState
from gestor.core.guards import Override
from gestor.core.policies import Wish
from gestor.core.reasons import HELD, as_data, say
from gestor.runtime.stopplan import relay_id_or_none

if TYPE_CHECKING:
    from gestor.settings import Settings

log = logging.getLogger("gestor.managing")
# A load reported off is not believed while something still shows it drawing: its relay's own
# meter (drivers.relays.base.still_drawing_w), or the grid meter not rising by half its power over
# the first OFF_CHECK_READINGS readings after the off.
OFF_CHECK_READINGS = 2


class OffCheck(NamedTuple):
    """A pending check that a load reported off stopped drawing (:meth:`Relays._off_not_seen`)."""

    after_s: float   # epoch s: the readings after it count (the off, or when it was found off)
    net_on_w: float  # net power with the load drawing, W (the setpoint devices' power added back)
    since_s: float   # epoch s: another load switched from then on spoils the check
    found: bool      # found off (not commanded): the check decides whether it was a lying relay
    believed: str = ""  # found off outside gestor: the reason it is held off for once the meter saw it go


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
    off_check: OffCheck | None = None  # after an off, commanded or found: did the grid meter see it go?
    seen_on: tuple[float, float] | None = None  # the last time it read on: (epoch s, net W then)
    dead_man_at: datetime | None = None  # when its device's auto-off timer, as last sent, ends
    dead_man_mono: float = 0.0        # ... on the monotonic clock (the device counts its timer so)
    lying: str | None = None          # judged a lying relay: why (commanded off every cycle)
    lying_until: datetime | None = None  # ... until then: its dead-man bound, at least the period's end
    lying_until_mono: float = 0.0     # ... and as long on the monotonic clock (a wall-clock step forward
                                      # must not end it early: the device's own timer does not jump)
    lying_held: bool = False          # ... and held "unknown" meanwhile (found off, or its own meter says so)
    lied: str | None = None           # it was judged lying (why), and no "on" has been read back since

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


class Relays:
    """Every load's relay, commanded for the control core ``core`` (whose timers it keeps and
    whose balance tells the net power before an off). ``loads``: in the order of priority.
    ``on_switch(load name, now)``: called for every confirmed switch (the day's books count it).
    ``latched()``: whether the stop latch is set now; read after a relay was read off (a stop sets
    its latch before it switches, so an off it made is never taken for one made outside gestor,
    issue 32 item 5) and before a load is switched on. ``switches_total``: the confirmed switches
    since the start."""

    def __init__(self, settings: Settings, core: Core, store: Store, loads: list[LoadRuntime],
                 on_switch: Callable[[str, datetime], None], latched: Callable[[], bool] = lambda: False,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.s, self.core, self.store, self.loads = settings, core, store, loads
        self.tags = {"site": settings.site}
        self.on_switch = on_switch
        self.latched = latched
        self.monotonic = monotonic  # the dead-man bounds of lying relays are kept on it (the wall clock may step)
        self.switches_total = 0
        self._period_end: datetime | None = None  # the running settlement period's end (apply)
        # each load's relay fingerprint, published: stop-loads confirms "via managing" only for these
        self.relay_ids = {ld.name: relay_id_or_none(ld.cfg.relay) for ld in loads}
        # one worker per load: relays are commanded in parallel, so a slow one delays no other
        self._pool = ThreadPoolExecutor(max_workers=max(len(loads), 1), thread_name_prefix="relay")

    def all_off(self, reason: str, now: datetime) -> bool:
        """Every load off now, for ``reason``; True when every relay confirmed (a lying relay never does)."""
        return all(self.command_all([(ld, False, reason, None) for ld in self.loads], now))

    def close(self, wait: bool = False) -> None:
        """No more commands (the workers end; ``wait``: once they have)."""
        self._pool.shutdown(wait=wait, cancel_futures=True)

    def held(self, now: datetime, overrides: Mapping[str, Override]) -> dict[str, str]:
        """The loads a guard holds anyway (an override, an unknown relay, a lying relay, switched
        off outside gestor), to be left out of the policy's stack, each with why; a load held off
        after being switched off outside gestor is released first when its hold ends, a lying relay
        once its dead-man bound has passed (then it is commanded off and read back as any unknown one)."""
        for ld in self.loads:
            if ld.hold_off_until is not None and now >= ld.hold_off_until:
                ld.hold_off_until = None
                log.info("load %s: back to auto after being switched off outside gestor", ld.name)
            if ld.lying is not None and ld.lying_until is not None and now >= ld.lying_until \
                    and self.monotonic() >= ld.lying_until_mono:
                log.warning("load %s: past its dead-man bound: its relay is commanded off and read back again "
                            "(it was judged lying: %s)", ld.name, ld.lying)
                ld.lying = ld.lying_until = None
        return {ld.name: ld.lying if ld.lying is not None and ld.lying_held
                else say("relay_unknown") if ld.on is None
                else HELD for ld in self.loads
                if ld.on is None or ld.name in overrides or ld.hold_off_until is not None}

    def latch_released(self) -> None:
        """A load that stays off no longer stays off for the stop."""
        for ld in self.loads:
            if ld.on is False:
                ld.reason = say("latch_released")

    def clock_stepped_back(self, now: datetime) -> None:
        """The wall clock went back: the loads' timers restart from ``now``; the off checks (on
        readings' times) are dropped. A lying relay stays held until its bound (longer, not shorter)."""
        for ld in self.loads:
            ld.since = now
            ld.retry_at = None if ld.retry_at is None else now
            ld.hold_off_until = None if ld.hold_off_until is None else now
            ld.off_check = ld.seen_on = None

    def apply(self, changes: list[Wish], overrides: Mapping[str, Override], live: list, now: datetime,
              remaining_s: float, period_end: datetime) -> list[Wish]:
        """Command the control core's ``changes`` (a load switched off outside gestor stays off
        until ``period_end``; a load backing off after a failure waits; none goes on once the
        stop latch is set), judge the offs against the grid meter (``live``: the published
        readings) and command a lying relay off (every cycle; one found off whatever the policy or
        an override wants), check that the loads that stay on still are (renewing their device's auto-off
        timer: ``remaining_s`` of the period and three cycles), and store every load's ``load``
        point. Returns what every load was commanded to."""
        todo = {w.load: w for w in changes}
        self._period_end = period_end
        self._off_not_seen(live, now, period_end)
        verdicts = {w.load: w for w in self.core.verdicts or ()}
        auto_off_s = remaining_s + 3 * self.s.managing.interval_s
        commands, checks, final = [], [], []
        for ld in self.loads:
            w = todo.get(ld.name)
            if ld.lying is not None and not ld.lying_held and w is not None and w.on:
                log.warning("load %s: switched on again by the policy although its last off was doubted (%s)",
                            ld.name, ld.lying)
                ld.lying = ld.lying_until = None  # its read-back of the "on" tells
            if ld.lying is not None:  # off again, every cycle, until its dead-man bound has passed
                commands.append((ld, False, ld.lying, None))
                final.append(Wish(ld.name, False, ld.lying))
                continue
            # a load switched off outside gestor stays off until the period ends (a manual
            # override, a later decision of the household, still wins)
            if w is not None and ld.hold_off_until is not None and ld.name not in overrides \
                    and (w.on or w.reason == HELD):
                w = Wish(ld.name, False, ld.hold_reason)
            if w is not None and (ld.on is None or w.on != ld.on):
                if ld.retry_at is not None and now < ld.retry_at:
                    final.append(Wish(ld.name, False, ld.reason))
                    continue  # backing off after a failed command; the load stays "unknown"
                if w.on and self.latched():  # a stop since this cycle read the latch: nothing goes on
                    final.append(Wish(ld.name, False, say("latch_off")))
                    continue
                commands.append((ld, w.on, w.reason, auto_off_s))
                final.append(w)
                continue
            if ld.on:
                checks.append(ld)  # on, and to stay on: is it really? (stop-loads, its own button)
            final.append(verdicts.get(ld.name) or Wish(ld.name, bool(ld.on), ld.reason))
        self.command_all(commands, now, checks=[(ld, auto_off_s, period_end) for ld in checks])
        self.store.write([point("load", {**self.tags, "load": ld.name}, self._load_fields(ld), now)
                          for ld in self.loads])
        return final

    def published(self, period_start_s: float, switches_today: Mapping[str, int]) -> dict[str, dict]:
        """Every load as ``gestor status`` and stop-loads read it (managing's published state); a
        lying relay's load is unknown (``on`` None) there, held or not: never "confirmed off"."""
        return {ld.name: {"on": None if ld.lying is not None else ld.on, "reason": ld.reason,
                          "reason_data": as_data(ld.reason),
                          "since": ld.since.isoformat() if ld.since else None,
                          "switches_in_period": ld.switches.get(period_start_s, 0), "failures": ld.failures,
                          "switches_today": switches_today.get(ld.name, 0),
                          "power_w": ld.cfg.power_w, "relay_id": self.relay_ids.get(ld.name),
                          "measured_power_w": getattr(ld.relay, "measured_power_w", None)}
                for ld in self.loads}

    def _net_w(self) -> float | None:
        """The last reading's net power with the setpoint devices' power added back, W (None: no reading)."""
        last = self.core.balance.last
        return None if last is None else last.net_w + self.core.devices_w_at(last.at.timestamp())

    def _off_not_seen(self, live: list, now: datetime, period_end: datetime) -> None:
        """Judge every pending off check (:class:`OffCheck`): a load reported off, commanded or
        found, whose power the grid meter did not see go (over the first OFF_CHECK_READINGS
        readings after it, net power, the setpoint devices' power added back, rose by less than
        half the load's rated power above what it was with the load drawing: a welded contactor
        behind a GPIO relay that reads its own coil, a Shelly that answers ``output: false``) is a
        lying relay (:meth:`_judged_lying`). Not judged when another load switched meanwhile (the
        meter cannot tell them apart): the off is then believed."""
        for ld in self.loads:
            chk = ld.off_check
            if chk is None:
                continue
            if ld.on is not False:
                ld.off_check = None
                continue
            after = [r for r, _ in live if r.at.timestamp() > chk.after_s][:OFF_CHECK_READINGS]
            if len(after) < OFF_CHECK_READINGS:
                continue
            ld.off_check = None
            if any(o is not ld and o.since is not None and chk.since_s - 1.0 <= o.since.timestamp() <= after[-1].at.timestamp()
                   for o in self.loads):
                if chk.found:
                    self._believed(ld, chk, now, "another load switched meanwhile: the meter cannot tell whether "
                                                 "its power went; its relay's off is believed")
                continue
            # the setpoint devices' power added back: a battery taking up what the load left is
            # no sign of a load still drawing (0 without devices)
            dev_w = self.core.devices_w_at
            rise_w = sum(r.net_w + dev_w(r.at.timestamp()) for r in after) / len(after) - chk.net_on_w
            if rise_w < 0.5 * ld.cfg.power_w:
                self._judged_lying(ld, say("lying_grid", {"load_w": ld.cfg.power_w, "rise_w": rise_w}), now,
                                   period_end, held=chk.found)
            elif chk.found:
                self._believed(ld, chk, now, f"the meter saw its {ld.cfg.power_w:.0f} W go (net power rose "
                                             f"{rise_w:+.0f} W)")

    def _believed(self, ld: LoadRuntime, chk: OffCheck, now: datetime, how: str) -> None:
        """A load found off whose off the grid meter confirmed (or could not judge, ``how``
        says): switched off outside gestor (held off until the period ends), or off for the stop."""
        if not chk.believed:
            log.info("load %s: %s: off", ld.name, how)
            return
        ld.hold_reason = ld.reason = chk.believed
        log.warning("load %s found OFF although gestor had it on: %s (%s)", ld.name, chk.believed, how)
        self.store.write([point("decision", {**self.tags, "load": ld.name},
                                {"on": False, "reason": ld.reason, "ok": True, "switched": 0}, now)])

    def _judged_lying(self, ld: LoadRuntime, why: str, now: datetime, period_end: datetime,
                      held: bool = True) -> None:
        """``ld``'s relay reads off while its load still draws (``why``): an ERROR line; the load
        is commanded off every cycle, its device's auto-off timer never renewed, until its
        dead-man bound (the timer as last sent; at least ``period_end``) has passed; ``held``:
        meanwhile it is unknown (held off for the policy), else it stays off for the policy,
        which may switch it on again (that ends the doubt). Never "switched off outside gestor"."""
        until = max(t for t in (period_end, ld.dead_man_at) if t is not None)
        mono = self.monotonic()
        ld.lying_until_mono = max(mono + (period_end - now).total_seconds(),
                                  ld.dead_man_mono if ld.dead_man_at is not None else mono)
        code = "lying_dead_man" if ld.dead_man_at is not None and ld.dead_man_at >= period_end else "lying_period"
        ld.lying = say(code, {"why": why, "until": f"{until.astimezone(self.s.tz):%H:%M:%S}"})
        ld.lying_until, ld.lying_held, ld.lied = until, held, ld.lied or why
        ld.reason, ld.off_check, ld.retry_at = ld.lying, None, None
        if held:
            ld.on, ld.hold_off_until = None, None
            self.core.note_state(now)
        log.error("load %s: %s", ld.name, ld.lying)

    @staticmethod
    def _load_fields(ld: LoadRuntime) -> dict:
        fields = {"on": bool(ld.on), "power_w": ld.cfg.power_w if ld.on else 0.0}
        measured = getattr(ld.relay, "measured_power_w", None)
        if measured is not None:
            fields["measured_power_w"] = float(measured)
        return fields

    def _failed(self, ld: LoadRuntime, now: datetime, error: str, reason: str) -> None:
        ld.failures += 1
        delay = min(self.s.managing.interval_s * 2 ** (ld.failures - 1), self.s.managing.relay_retry_max_s)
        ld.retry_at = now + timedelta(seconds=delay)
        log.error("load %s FAILED (%d in a row): %s (wanted because: %s); state unknown, retry in %.0f s",
                  ld.name, ld.failures, error, reason, delay)

    @staticmethod
    def _deadline_s(ld: LoadRuntime) -> float:
        """The longest a command and its read-back may take (each device call has its timeout)."""
        return 2 * float(getattr(ld.cfg.relay, "timeout_s", 3.0)) + 1.0

    @staticmethod
    def _switch(ld: LoadRuntime, on: bool, auto_off_s: float | None) -> str | None:
        """In a worker: command and read back. Returns the error, or None when confirmed (a lying
        relay's off is read back once, its own meter not waited for: it is not believed anyway)."""
        try:
            ld.relay.set(on, auto_off_s if on else None)
            got = ld.relay.state()
            if got != on:
                if on:  # it may be on all the same (a relay that lies): off again at once, best effort
                    try:
                        ld.relay.set(False, None)
                    except Exception:  # noqa: BLE001 -- the failure below is what is reported
                        pass
                    return "relay reads off after commanding on (commanded off again at once)"
                return f"relay reads {'on' if got else 'off'} after commanding {'on' if on else 'off'}"
            drawn = None if on or ld.lying is not None else confirm_off_drawing_w(ld.relay, ld.cfg.power_w)
            if drawn is not None:
                return (f"relay reads off but its meter shows {drawn:.0f} W drawn: not believed" if drawn != float("inf")
                        else "relay reads on again after commanding off")
        except RelayError as e:
            return str(e)
        except Exception as e:  # noqa: BLE001 -- a driver bug is a failed command, not a dead daemon
            return f"{type(e).__name__}: {e}"
        return None

    @staticmethod
    def _check(ld: LoadRuntime, auto_off_s: float) -> tuple[bool | None, str | None, float | None]:
        """In a worker, for a load that is on and stays on: read it back first; renew the device's
        auto-off timer only if it still reads on. Returns (state read, error, W its own meter
        still shows drawn although it reads off, else None)."""
        try:
            if not ld.relay.state():
                # off (outside gestor, or a relay that lies): never switched back on here, not even
                # by a timer renewal; its own meter is read again while it lags (a Shelly's, ~1 s)
                drawn = confirm_off_drawing_w(ld.relay, ld.cfg.power_w)
                if drawn == float("inf"):
                    return None, "relay read off, then on again", None
                return False, None, drawn
            if getattr(ld.relay, "refresh_on_cycle", False):
                ld.relay.set(True, auto_off_s)
                log.debug("load %s: auto-off timer renewed (%.0f s)", ld.name, auto_off_s)
            return True, None, None
        except RelayError as e:
            return None, str(e), None
        except Exception as e:  # noqa: BLE001
            return None, f"{type(e).__name__}: {e}", None

    def command_all(self, commands: list, now: datetime, checks: list | None = None) -> list[bool]:
        """Run every command ``(load, on, reason, auto_off_s)`` and every check ``(load,
        auto_off_s, period end)`` in parallel, each within its load's deadline, then record the
        outcomes in order. Returns, per command, whether it was confirmed."""
        futs = [(self._pool.submit(self._switch, ld, on, auto_off_s), ld) for ld, on, _, auto_off_s in commands]
        cfuts = [(self._pool.submit(self._check, ld, auto_off_s), ld, pend) for ld, auto_off_s, pend in (checks or [])]
        results = []
        for (fut, ld), (_, on, reason, auto_off_s) in zip(futs, commands):
            try:
                error = fut.result(timeout=self._deadline_s(ld))
            except FutureTimeout:
                error = f"no answer within {self._deadline_s(ld):.0f} s"
            results.append(self._record(ld, on, reason, now, error, auto_off_s))
        for fut, ld, pend in cfuts:
            try:
                got, error, drawn = fut.result(timeout=self._deadline_s(ld))
            except FutureTimeout:
                got, error, drawn = None, f"no answer within {self._deadline_s(ld):.0f} s", None
            if error is not None:
                ld.on = None
                self._failed(ld, now, f"read-back/auto-off renewal failed: {error}", "keep on")
            elif got:
                self._seen_on(ld, now)
            else:
                self._found_off(ld, now, pend, drawn)
        return results

    def _seen_on(self, ld: LoadRuntime, now: datetime, not_yet_w: float = 0.0) -> None:
        """``ld`` read on at ``now`` (a confirmed "on", or a check): the net power with it drawing
        (the last reading's, less ``not_yet_w``, W, that it did not show yet), and when its
        device's auto-off timer, as just sent, ends."""
        net = self._net_w()
        if getattr(ld.relay, "measured_power_w", None) is not None and not not_yet_w \
                and still_drawing_w(ld.relay, ld.cfg.power_w) is None:
            ld.seen_on = None  # its own meter shows it idle (a thermostat): the grid cannot see it go
        elif net is not None:
            ld.seen_on = (now.timestamp(), net - not_yet_w)
        timer_s = getattr(ld.relay, "auto_off_s", None)
        if getattr(ld.relay, "refresh_on_cycle", False) and isinstance(timer_s, (int, float)):
            ld.dead_man_at = now + timedelta(seconds=timer_s)
            ld.dead_man_mono = self.monotonic() + timer_s

    def _found_off(self, ld: LoadRuntime, now: datetime, period_end: datetime, drawn: float | None) -> None:
        """``ld`` read off although gestor had it on. Its own meter still showing it drawing
        (``drawn`` W): a lying relay at once. Else: off for the stop if the latch is set now (read
        after the relay: a stop sets its latch first), or switched off outside gestor and left off
        until ``period_end``; either way the grid meter is to see its power go (an off check)."""
        if drawn is not None:
            self._judged_lying(ld, say("lying_own_meter", {"drawn_w": drawn}), now, period_end)
            return
        latched = self.latched()
        ld.on, ld.since = False, now
        self.core.note_state(now)
        at, until = f"{now.astimezone(self.s.tz):%H:%M:%S}", f"{period_end.astimezone(self.s.tz):%H:%M}"
        outside = say("off_outside", {"at": at, "until": until})
        check = ld.seen_on is not None  # the grid meter can tell whether its power goes after now
        if latched:
            ld.reason = say("latch_found_off")
            log.warning("load %s found OFF under the stop latch: %s", ld.name, ld.reason)
        else:
            ld.hold_off_until = period_end
            if check:  # not yet "outside gestor": it may be a relay that lies
                ld.hold_reason = say("found_off", {"at": at, "until": until, "load_w": ld.cfg.power_w})
                log.warning("load %s found OFF although gestor had it on: %s", ld.name, ld.hold_reason)
            else:
                ld.hold_reason = outside
                log.warning("load %s found OFF although gestor had it on: %s", ld.name, outside)
            ld.reason = ld.hold_reason
        if ld.seen_on is not None:
            ld.off_check = OffCheck(now.timestamp(), ld.seen_on[1], ld.seen_on[0], True,
                                    "" if latched else outside)
        self.store.write([point("decision", {**self.tags, "load": ld.name},
                                {"on": False, "reason": ld.reason, "ok": True, "switched": 0}, now)])

    def _record(self, ld: LoadRuntime, on: bool, reason: str, now: datetime, error: str | None,
                auto_off_s: float | None) -> bool:
        word = "ON" if on else "OFF"
        if ld.lying is not None and not on:  # a lying relay's off, again: its word is not taken
            ld.on, ld.retry_at = (None if ld.lying_held else False), None
            log.warning("load %s OFF again (%s): %s", ld.name, error or "reads off", ld.lying)
            self.store.write([point("decision", {**self.tags, "load": ld.name},
                                    {"on": False, "reason": ld.lying, "ok": False,
                                     "error": error or "lying relay: its off is not believed", "switched": 0}, now)])
            return False
        # an off from an unknown state (the start's, a failed relay's) is not counted as a switch
        switched = error is None and ld.on != on and not (ld.on is None and not on)
        if error is None:
            net = self._net_w()
            if ld.on and not on and net is not None and ld.seen_on is not None:  # was its power seen to go?
                ld.off_check = OffCheck(now.timestamp(), net, now.timestamp(), False)
            if switched:
                self.switches_total += 1
                self.on_switch(ld.name, now)
            if ld.on != on:  # the control core's timers (min_off_s from now) all the same
                self.core.switched(ld.state, on, now.timestamp(), self.core.bounds_s(now.timestamp())[0])
            if ld.failures:
                log.info("load %s: relay confirmed again after %d failures", ld.name, ld.failures)
            ld.on, ld.reason, ld.failures, ld.retry_at = on, reason, 0, None
            if on:  # no reading shows it drawing yet: the net power it should make
                ld.lied = None  # its read-back of the "on" tells
                self._seen_on(ld, now, ld.cfg.power_w)
            timer = ""
            if on and auto_off_s is not None and getattr(ld.relay, "refresh_on_cycle", False):
                timer = f" [device auto-off in {auto_off_s:.0f} s, renewed every cycle while it stays on]"
            log.info("load %s %s: %s%s", ld.name, word, reason, timer)
        else:
            ld.on = None
            self._failed(ld, now, f"{word}: {error}", reason)
            if on and ld.lied is not None and ld.lying is None:
                # a relay judged lying before, that reads off after an "on" again: it may be on (the
                # off sent at once may be as unheard as its read-back is false); not switched on
                # again before its new dead-man bound (the timer just sent), at least the period's end
                timer_s = auto_off_s if getattr(ld.relay, "refresh_on_cycle", False) else None
                timer_s = timer_s if timer_s is not None else getattr(ld.relay, "auto_off_s", None)
                if isinstance(timer_s, (int, float)):
                    ld.dead_man_at = now + timedelta(seconds=timer_s)
                    ld.dead_man_mono = self.monotonic() + timer_s
                self._judged_lying(ld, say("lying_again", {"before": ld.lied}), now, self._period_end or now)
        self.store.write([point("decision", {**self.tags, "load": ld.name},
                                {"on": on, "reason": reason, "ok": error is None, "error": error,
                                 "switched": int(switched)}, now)])
        return error is None
