"""The devices with a power setpoint as managing drives them (a battery, an EV charger, a modulating
heater; issue 26): each cycle after the on/off loads, the setpoint law of
:mod:`gestor.core.setpoint` on the period's balance and the surplus the loads left, a command when
the setpoint changes (or each cycle, to renew a device-side timeout), a log line and a
``setpoint`` point with the reason.

Safety (docs/site/en/devices/index.md): every device is sent to its idle (0 W, a
battery's own self-consumption mode, a charger paused) at start, on exit, on a stale meter, under
the stop latch, and when it fails; ``stop-loads`` idles them too (:mod:`stop_loads`). A device
that does not answer, refuses, or reads back another setpoint than it was given is reported
(ERROR), its state is unknown, idle is tried at once, and it is commanded again after a backoff
(``managing.interval_s`` doubling up to ``managing.relay_retry_max_s``, as a relay). Where the
device has a timeout of its own (``hold_s``: Victron's ESS, my-PV's heater, the simulated one),
gestor writes the setpoint every cycle, so a gestor that dies leaves the device idle within that
timeout. Nothing here raises: a driver's bug is a failed command.

Units: W, Wh, s; setpoints from the house's side (+ takes power, - supplies it).
"""
from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from drivers.setpoints import SETPOINTS, SetpointDevice, SetpointState
from drivers.store.influx import Store, point
from gestor.core.reasons import as_data, say
from gestor.core.setpoint import Dwell, MonthCap, SetpointLaw, next_in_turn_w
from gestor.runtime.devicebooks import period_slices
from gestor.runtime.devicecontrols import DeviceControl

if TYPE_CHECKING:
    from drivers import DriverContext
    from gestor.core.control import Core
    from gestor.settings import SetpointDeviceSettings, Settings

log = logging.getLogger("gestor.managing")
READBACK_TOLERANCE_W = 50.0  # W a device may read back off its setpoint (whole amperes, whole W per phase)


def is_battery(cfg: SetpointDeviceSettings) -> bool:
    """Whether a configured device is a battery (it can supply power): its driver says so."""
    return cfg.device.driver in ("victron_ess", "marstek_venus") or getattr(cfg.device, "kind", None) == "battery"


def open_setpoints(settings: Settings, ctx: DriverContext) -> dict[str, SetpointDevice]:
    """Every configured setpoint device's driver, by name (drivers imported on first use)."""
    out: dict[str, SetpointDevice] = {}
    for d in settings.setpoints:
        _, factory = SETPOINTS[d.device.driver]
        out[d.name] = factory(d.device, ctx, d.name)
    return out


class SetpointRuntime:
    """One device as managing drives it: its settings, its driver, and what it did.

    Attributes:
        setpoint_w: the setpoint the device confirmed, W; None unknown (after a failure).
        state: what it read back last (range, state of charge, connected).
        reason: why it holds its setpoint.
        failures: commands in a row that failed; retry_at: the next attempt after one.
    """

    def __init__(self, cfg: SetpointDeviceSettings, device: SetpointDevice) -> None:
        self.cfg, self.device, self.name = cfg, device, cfg.name
        self.setpoint_w: float | None = None
        self.state: SetpointState | None = None
        self.reason = ""
        self.failures = 0
        self.retry_at: datetime | None = None
        self.idle = False          # idle confirmed (stale, latch, exit) rather than a setpoint of 0
        self.last_cmd_at: datetime | None = None
        # Wh it took (+) and supplied (-) since managing started, its confirmed setpoint integrated
        self.taken_wh = 0.0
        self.supplied_wh = 0.0
        self.hold_s: float | None = getattr(device, "hold_s", None)
        self.refresh = bool(getattr(device, "refresh_on_cycle", False)) or self.hold_s is not None
        # its range comes from what it reads back, each cycle (lo_w, hi_w): 0..0 here is a placeholder
        self.law = SetpointLaw(0.0, 0.0, cfg.reserve_wh_per_h, cfg.deadband_w,
                               cfg.ramp_w_per_s if cfg.ramp_w_per_s is not None else math.inf, cfg.min_remaining_s,
                               cfg.min_reversal_s)
        self.dwell = Dwell()  # its last direction and since when: no reversal sooner than min_reversal_s
        self.base_law = self.law  # the law as set; steering by the cap scales its reserve per period


class Setpoints:
    """Every setpoint device, commanded after the on/off loads for the control core ``core``
    (whose balance and surplus it reads and to which it reports the devices' power:
    :meth:`gestor.core.control.Core.note_devices`). ``devices``: in the settings' order, which is
    their priority (the first takes the surplus first)."""

    def __init__(self, settings: Settings, core: Core, store: Store, devices: dict[str, SetpointDevice]) -> None:
        self.s, self.core, self.store = settings, core, store
        self.devices = [SetpointRuntime(c, devices[c.name]) for c in settings.setpoints]
        self._steered_s: float | None = None  # the period whose laws steer() set
        self.tags = {"site": settings.site}
        self._counted_at: datetime | None = None  # the devices' energy is integrated up to here
        # per settlement period (start, epoch s) and device: [Wh taken, Wh supplied, Wh taken if
        # it is not a battery (what the house would have bought anyway)]; taken by the books when
        # the period closes (:meth:`period_energy`), persisted with them (:meth:`to_state`)
        self._period_wh: dict[float, dict[str, list[float]]] = {}
        # the household's controls per device (mode, min SoC, target), set by managing each cycle
        # from gestor.runtime.devicecontrols; the latch and a stale meter win over them
        self.controls: dict[str, DeviceControl] = {}

    def __bool__(self) -> bool:
        return bool(self.devices)

    # -- safety ----------------------------------------------------------------------------
    def all_idle(self, reason: str, now: datetime) -> bool:
        """Every device to its idle now; True when each confirmed."""
        self.count(now)
        ok = True
        for d in self.devices:
            ok = self._idle(d, reason, now) and ok
        self._note(now)
        return ok

    def _idle(self, d: SetpointRuntime, reason: str, now: datetime, after_failure: bool = False) -> bool:
        """Idle ``d``; True when it confirmed. ``after_failure``: its failure count and backoff
        stand (the command that failed is retried after the backoff, not next cycle)."""
        try:
            d.device.idle()
        except Exception as e:  # noqa: BLE001: a driver's bug is a failed command
            if not after_failure:
                self._failed(d, now, f"idle: {e}", reason)
            else:
                log.error("setpoint %s: idle FAILED too: %s", d.name, e)
            return False
        changed = not d.idle or d.setpoint_w != 0.0
        d.setpoint_w, d.idle, d.reason, d.last_cmd_at = 0.0, True, reason, now
        if not after_failure:
            d.failures, d.retry_at = 0, None
        if changed:
            log.info("setpoint %s IDLE: %s", d.name, reason)
            self._point(d, 0.0, reason, now)
        return True

    # -- the cycle -------------------------------------------------------------------------
    def apply(self, now: datetime, *, stale_reason: str | None, latched: bool, remaining_s: float,
              dt_s: float) -> None:
        """One cycle: with ``stale_reason`` (the meter is stale, or no period is running) or
        ``latched``, every device idle; else each device's new setpoint from the law, in order.
        ``remaining_s``: s left in the period; ``dt_s``: s since the last cycle (the ramp)."""
        self.count(now)
        if latched or stale_reason is not None:
            why = say("latch_idle") if latched else stale_reason
            for d in self.devices:
                if not d.idle:  # tried every cycle until it confirms (no backoff for safety)
                    self._idle(d, why or "", now)
            self._note(now)
            return
        core = self.core
        surplus_w = core.surplus_before_devices_w()  # what the on/off loads left, W
        balance_wh = core.balance_wh
        for d in self.devices:
            if d.retry_at is not None and now < d.retry_at:
                continue
            try:
                st = d.device.state()
            except Exception as e:  # noqa: BLE001
                self._failed(d, now, f"read back: {e}", "reading its state")
                self._idle(d, say("device_failed"), now, after_failure=True)
                continue
            d.state = st
            lo, hi = min(st.min_w, st.max_w), max(st.min_w, st.max_w)
            # what it should read back: the last setpoint, narrowed by its range now (a battery
            # full or empty, a car unplugged: the device's own stop is not a fault)
            expected = None if d.setpoint_w is None else min(max(d.setpoint_w, min(lo, 0.0)), max(hi, 0.0))
            if expected is not None and abs(st.setpoint_w - expected) > READBACK_TOLERANCE_W:
                self._failed(d, now, f"reads back {st.setpoint_w:+.0f} W, commanded {d.setpoint_w:+.0f} W",
                             "checking the setpoint")
                self._idle(d, say("device_disagrees"), now, after_failure=True)
                continue
            ctl = self.controls.get(d.name, DeviceControl())
            if ctl.mode == "idle":   # the household's mode: idle (its surplus goes to the next)
                if not d.idle or d.setpoint_w != 0.0:
                    self._idle(d, say("device_mode_idle"), now)
                continue
            lo, hi = ctl.narrow(lo, hi, st.soc_pct)
            target_wh = d.cfg.target_wh if ctl.target_wh is None else ctl.target_wh
            present = st.setpoint_w
            now_s = now.timestamp()
            new = next_in_turn_w(d.law, balance_wh, target_wh, surplus_w, present, remaining_s, dt_s, lo, hi,
                                 d.dwell, now_s)
            changed = new != present or d.idle
            if changed or d.refresh:  # a device with a timeout of its own: written every cycle
                why: dict = {"balance_wh": balance_wh, "target_wh": target_wh, "surplus_w": surplus_w,
                             "remaining_s": remaining_s, "lo_w": lo, "hi_w": hi}
                code = "setpoint"
                if ctl != DeviceControl():
                    code, why["control"] = "setpoint_control", ctl.describe()
                if d.dwell.wait_s > 0:
                    why.update(wait_s=d.dwell.wait_s, min_reversal_s=d.cfg.min_reversal_s)
                reason = say(code, why)
                try:
                    got = d.device.set_power_w(new, d.hold_s)
                except Exception as e:  # noqa: BLE001
                    self._failed(d, now, str(e), reason)
                    self._idle(d, say("device_failed"), now, after_failure=True)
                    continue
                if d.dwell.note(got, now_s, d.law.deadband_w):
                    reason = say(code, {**why, "reversal": 1})
                if got != present or d.idle:
                    log.info("setpoint %s %+.0f W (was %+.0f): %s", d.name, got, present, reason)
                    self._point(d, got, reason, now)
                d.setpoint_w, d.idle, d.reason, d.last_cmd_at = got, False, reason, now
                d.failures, d.retry_at = 0, None
                new = got
            else:  # holding its setpoint, not written: it still holds its direction
                d.dwell.note(new, now_s, d.law.deadband_w)
            surplus_w -= new  # the next device shares what this one leaves
        self._note(now)

    def steer(self, cap: MonthCap, period_start_s: float, import_eur_per_kwh: float, surplus_eur_per_kwh: float) -> None:
        """Steering by the cap (``bill.steer_by_cap``, issue 35): each heater's and charger's law for
        the period starting at ``period_start_s`` from the month so far (:meth:`MonthCap.law`, the
        bill's prices); batteries keep theirs. Once per period; logged when a reserve changes."""
        if period_start_s == self._steered_s:
            return
        self._steered_s = period_start_s
        b = self.s.bill
        heat = b.night_eur_per_kwh(self.s.tariff.import_p3_eur_per_kwh)
        for d in self.devices:
            if is_battery(d.cfg):
                continue
            law = cap.law(d.base_law, import_eur_per_kwh, heat, surplus_eur_per_kwh, b.virtual_battery)
            if law.reserve_wh_per_h != d.law.reserve_wh_per_h:
                log.info("setpoint %s reserve %.0f Wh/h (tuned %.0f): the month's compensation %.2f EUR against its "
                         "energy term %.2f EUR (steer_by_cap)", d.name, law.reserve_wh_per_h,
                         d.base_law.reserve_wh_per_h, cap.compensation_eur, cap.energy_eur)
            d.law = law

    def count(self, now: datetime) -> None:
        """Integrate each device's setpoint (as it held it since the last count) up to ``now``,
        split at the settlement periods' bounds."""
        if self._counted_at is not None and now > self._counted_at:
            for start, h in period_slices(self._counted_at.timestamp(), now.timestamp(), self.core.bounds_s):
                acc = self._period_wh.setdefault(start, {})
                for d in self.devices:
                    w = d.setpoint_w or 0.0
                    e = acc.setdefault(d.name, [0.0, 0.0, 0.0])
                    if w > 0:
                        d.taken_wh += w * h
                        e[0] += w * h
                        if not (d.state is not None and d.state.soc_pct is not None):
                            e[2] += w * h
                    else:
                        d.supplied_wh -= w * h
                        e[1] -= w * h
        self._counted_at = now

    def period_energy(self, start_s: float) -> tuple[float, float]:
        """(net Wh the devices took in the period starting at epoch ``start_s``, Wh taken by the
        ones that are not batteries), forgotten once asked; (0, 0) for a period they had no part in."""
        per = self._period_wh.pop(start_s, {})
        for k in [k for k in self._period_wh if k < start_s]:  # older ones nobody closed (a clock step)
            del self._period_wh[k]
        return sum(e[0] - e[1] for e in per.values()), sum(e[2] for e in per.values())

    def to_state(self) -> dict[str, dict[str, list[float]]]:
        """The devices' books for ``managing.json`` (its ``device_wh``, the loads' ``on_s`` shape):
        per device, per period start ``"<epoch s>"``, [Wh taken, Wh supplied, Wh taken by a
        device that is not a battery]."""
        out: dict[str, dict[str, list[float]]] = {d.name: {} for d in self.devices}
        for start, per in self._period_wh.items():
            for name, e in per.items():
                out.setdefault(name, {})[repr(start)] = list(e)
        return out

    def restore(self, saved: dict[float, dict[str, list[float]]], period_start_s: float, now_s: float) -> None:
        """At start, within the period starting at epoch ``period_start_s`` that the state file
        still holds: its devices' books back (``saved``: period start -> device -> the three Wh
        of :meth:`to_state`; other periods and devices the settings no longer have are dropped),
        and their net Wh back in the control core (the balance the loads' policy sees), counted
        up to epoch ``now_s``. The time
        managing was down is not counted (the devices were then idle, or held their last
        setpoint up to their own timeout: the meter saw it, the books cannot)."""
        names = {d.name for d in self.devices}
        per = {n: [float(x) for x in e] for n, e in saved.get(period_start_s, {}).items() if n in names}
        if not per:
            return
        self._period_wh[period_start_s] = per
        self.core.resume_devices(period_start_s, sum(e[0] - e[1] for e in per.values()), now_s)

    def _note(self, now: datetime) -> None:
        self.core.note_devices(now.timestamp(), sum(d.setpoint_w or 0.0 for d in self.devices))

    def _failed(self, d: SetpointRuntime, now: datetime, error: str, reason: str) -> None:
        d.failures += 1
        delay = min(self.s.managing.interval_s * 2 ** (d.failures - 1), self.s.managing.relay_retry_max_s)
        d.retry_at = now + timedelta(seconds=delay)
        d.setpoint_w, d.idle = None, False
        log.error("setpoint %s FAILED (%d in a row): %s (while %s); state unknown, idle tried, retry in %.0f s",
                  d.name, d.failures, error, reason, delay)
        self._point(d, None, f"FAILED: {error}", now)

    def _point(self, d: SetpointRuntime, setpoint_w: float | None, reason: str, now: datetime) -> None:
        fields: dict = {"reason": reason[:200]}
        if setpoint_w is not None:
            fields["setpoint_w"] = float(setpoint_w)
        if d.state is not None and d.state.soc_pct is not None:
            fields["soc_pct"] = float(d.state.soc_pct)
        self.store.write([point("setpoint", {**self.tags, "device": d.name}, fields, now)])

    def published(self) -> dict[str, dict]:
        """Each device's state for managing's published file (``gestor status``, the page); its
        reason as text and as data (``reason_data``: code and parameters, as the loads')."""
        out = {}
        for d in self.devices:
            st = d.state
            out[d.name] = {"setpoint_w": d.setpoint_w, "idle": d.idle, "reason": d.reason,
                           "reason_data": as_data(d.reason), "failures": d.failures,
                           "taken_wh": round(d.taken_wh, 1), "supplied_wh": round(d.supplied_wh, 1),
                           "soc_pct": st.soc_pct if st else None, "connected": st.connected if st else None,
                           "min_w": st.min_w if st else None, "max_w": st.max_w if st else None}
        return out

    def close(self) -> None:
        for d in self.devices:
            try:
                d.device.close()
            except Exception:  # noqa: BLE001
                pass
