"""The setpoint devices of the settings (``setpoints:``) as ``gestor simulate`` plays them beside
the on/off loads, with managing's rule (issue 26): after the loads, in the settings' order, each
device's new setpoint from :func:`gestor.core.setpoint.next_in_turn_w` on the surplus the loads
(and the devices before it) left, the setpoint written every cycle, idle (0 W) on a stale meter
or before the first reading, and the devices' total reported to the core
(:meth:`gestor.core.control.Core.note_devices`). :func:`drive` is that cycle, the one copy of
:meth:`gestor.runtime.setpoints.Setpoints.apply` without its I/O (no read-back faults, no
backoff: a simulated device always answers).

A device's model comes from its settings (:func:`sim_devices`), reusing the models of
:mod:`gestor.sim.models`:

* driver ``simulated``: ``kind: battery`` a :class:`BatteryModel` (``max_charge_w``,
  ``max_discharge_w``, ``capacity_wh``, ``soc_pct`` at the start, ``min_soc_pct``,
  ``max_soc_pct``, ``efficiency``: the round trip split sqrt/sqrt); ``kind: heater`` a
  :class:`Modulating` of ``max_charge_w``; ``kind: ev_charger`` an :class:`EvCharger` of
  ``6..max_current_a`` A x ``phases`` x 230 V, with a car connected for the whole run and never
  full when ``connected`` (none when not).
* a real battery driver (``victron_ess``, ``marstek_venus``: their power and SoC limits) needs
  the capacity, which its settings do not hold: given by ``battery_capacity_wh`` (``gestor
  simulate --battery-capacity-wh``), else :class:`ValueError` naming the key; efficiency 0.9,
  start at 50 % (within its SoC limits).
* a real charger (``goe``, ``openevse``): its ``max_current_a``, ``phases``, ``voltage_v``, a car
  always connected; a real heater (``mypv_elwa``: ``max_power_w``; ``burst_ssr``: ``power_w``).

The range the law is given at a cycle is what the simulated driver reads back: the battery's
whole power range until a SoC limit, 0 on that side at it (:meth:`Battery.range_w` with no time
horizon); the device's BMS stops it at the exact instant the limit is reached (the simulated
driver stops it at its next call: the two differ there, by at most a cycle's energy).

Units: W, Wh, s, %; setpoints from the house's side (+ takes power, - supplies it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from gestor.core.control import Core
from gestor.core.devices import Battery, EvCharger, Modulating
from gestor.core.setpoint import Dwell, SetpointLaw, next_in_turn_w
from gestor.settings import SetpointDeviceSettings, Settings
from gestor.sim.books import SimLoad, device_book
from gestor.sim.models import EPS_WH, BatteryModel, BatteryPeriod, DeviceModel, EvModel, EvSession

EV_VOLTAGE_V = 230.0      # the simulated charger's phase voltage (drivers.setpoints.simulated)
REAL_BATTERY_EFFICIENCY = 0.9
REAL_BATTERY_SOC_PCT = 50.0


@dataclass
class SimDevice:
    """One setpoint device in a simulation: its settings, model, law and books.

    Attributes:
        cfg: its ``setpoints[i]`` settings; model: what it does with a setpoint
            (:class:`DeviceModel` and subclasses); law: the setpoint law (range from the model).
        battery: its :class:`Battery` kind, or None.
        load: its energy books as simulate's accounting reads a load (``wh`` per period start,
            the trapezoid of its power at the readings; ``on_s``: s at a power other than 0;
            ``switches``: setpoint changes).
        setpoint_w: the setpoint it confirmed last, W; idle: sent to idle (stale meter, start).
    """

    cfg: SetpointDeviceSettings
    model: DeviceModel
    law: SetpointLaw
    battery: Battery | None
    load: SimLoad
    setpoint_w: float = 0.0
    idle: bool = False
    dwell: Dwell = field(default_factory=Dwell)  # its direction: no reversal sooner than min_reversal_s

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def max_w(self) -> float:
        """The most it can take, W."""
        return self.model.kind.max_w

    def range_w(self, t_s: float) -> tuple[float, float]:
        """(lo, hi), W: its range now, as the simulated driver reads it back."""
        m = self.model
        b = self.battery
        if b is not None:  # the whole range until a SoC limit, 0 on that side at it (its BMS's answer)
            assert isinstance(m, BatteryModel)
            return (-b.max_discharge_w if m.stored_wh > b.min_wh + EPS_WH else 0.0,
                    b.max_charge_w if m.stored_wh < b.max_wh - EPS_WH else 0.0)
        r = m.range_w(t_s, math.inf) if m.active else None
        return (m.kind.min_w, m.kind.max_w) if r is None else r


class DeviceSimError(ValueError):
    """A setpoint device gestor simulate cannot play; its message is one line naming the key."""


def _fail(i: int, cfg: SetpointDeviceSettings, key: str, why: str) -> DeviceSimError:
    return DeviceSimError(f"setpoints[{i}].device.{key} ({cfg.name}, driver {cfg.device.driver}): {why}")


def sim_devices(s: Settings, bounds: Callable[[float], tuple[float, float]],
                battery_capacity_wh: float | None = None,
                ev_sessions: Mapping[str, Sequence[EvSession]] | None = None) -> list[SimDevice]:
    """The settings' setpoint devices as simulated ones, in order (module docstring).

    Args:
        s: the settings; bounds: the period around an epoch (:meth:`Core.bounds_s`).
        battery_capacity_wh: Wh of a battery with a real driver (its settings do not say).
        ev_sessions: per EV charger's name, the cars that connect to it (:class:`EvSession`,
            copied, e.g. from :func:`gestor.sim.models.daily_sessions`) in place of one car
            connected for the whole run.
    Raises:
        DeviceSimError: (a ValueError) one line naming the key: a real battery without ``battery_capacity_wh``, a
            start SoC outside its limits, a driver gestor cannot simulate.
    """
    out = []
    for i, cfg in enumerate(s.setpoints):
        dev = cfg.device
        cars = None if ev_sessions is None or cfg.name not in ev_sessions else \
            [EvSession(x.arrive_s, x.depart_s, x.wanted_wh) for x in ev_sessions[cfg.name]]
        drv = dev.driver
        battery: Battery | None = None
        if drv == "simulated":
            kind_name = dev.kind
            if kind_name == "battery":
                battery = Battery(dev.max_charge_w, dev.max_discharge_w, dev.capacity_wh, dev.min_soc_pct,
                                  dev.max_soc_pct, dev.efficiency)
                soc = dev.soc_pct
                if not dev.min_soc_pct <= soc <= dev.max_soc_pct:
                    raise _fail(i, cfg, "soc_pct", f"the start SoC {soc:g} % must be within min_soc_pct.."
                                f"max_soc_pct ({dev.min_soc_pct:g}..{dev.max_soc_pct:g} %)")
                model: DeviceModel = BatteryModel(battery, bounds, soc)
            elif kind_name == "heater":
                if not dev.max_charge_w > 0:
                    raise _fail(i, cfg, "max_charge_w", "a heater's rated power must be > 0 W")
                model = DeviceModel(Modulating(dev.max_charge_w))
            else:
                ev = EvCharger(6, dev.max_current_a, dev.phases, EV_VOLTAGE_V)
                model = EvModel(ev, bounds, cars if cars is not None else
                                [EvSession(-math.inf, math.inf, math.inf)] if dev.connected else [])
        elif hasattr(dev, "max_soc_pct") and hasattr(dev, "max_charge_w"):  # a real battery
            if battery_capacity_wh is None:
                raise _fail(i, cfg, "capacity_wh", "a real battery's settings do not give its capacity: "
                            "pass --battery-capacity-wh WH")
            battery = Battery(dev.max_charge_w, dev.max_discharge_w, battery_capacity_wh, dev.min_soc_pct,
                              dev.max_soc_pct, REAL_BATTERY_EFFICIENCY)
            model = BatteryModel(battery, bounds, min(max(REAL_BATTERY_SOC_PCT, dev.min_soc_pct), dev.max_soc_pct))
        elif hasattr(dev, "max_current_a"):  # a real EV charger
            ev = EvCharger(6, dev.max_current_a, dev.phases, getattr(dev, "voltage_v", EV_VOLTAGE_V))
            model = EvModel(ev, bounds, cars if cars is not None else [EvSession(-math.inf, math.inf, math.inf)])
        elif hasattr(dev, "max_power_w") or hasattr(dev, "power_w"):  # a real heater
            model = DeviceModel(Modulating(float(getattr(dev, "max_power_w", None) or dev.power_w)))
        else:
            raise _fail(i, cfg, "driver", "gestor simulate does not know this driver's power range")
        kind = model.kind
        law = SetpointLaw(kind.min_w, kind.max_w, cfg.reserve_wh_per_h, cfg.deadband_w,
                          cfg.ramp_w_per_s if cfg.ramp_w_per_s is not None else math.inf, cfg.min_remaining_s,
                          cfg.min_reversal_s)
        out.append(SimDevice(cfg, model, law, battery, device_book(cfg.name, kind)))
    return out


def start(devs: Sequence[SimDevice], core: Core, now_s: float, log: list | None) -> None:
    """Managing's start: every device idle, the core told (``log``: (epoch s, name, W) appended
    per device, as managing's ``setpoint`` points)."""
    for d in devs:
        if d.model.active:
            d.model.advance(now_s)
        d.model.apply(now_s, 0.0)
        d.setpoint_w, d.idle = 0.0, True
        if log is not None:
            log.append((now_s, d.name, 0.0))
    core.note_devices(now_s, sum([d.setpoint_w for d in devs]))


def drive(devs: Sequence[SimDevice], core: Core, now_s: float, stale: bool, remaining_s: float, dt_s: float,
          log: list | None, nowcast: Callable[[float, float, float], float | None] | None = None) -> None:
    """One cycle of the devices after the loads, at epoch ``now_s`` (managing's
    :meth:`gestor.runtime.setpoints.Setpoints.apply`): ``stale`` (meter stale, or no period
    running) every device idle; else each, in order, gets ``next_in_turn_w`` on the core's
    balance and the surplus the loads and the devices before it left; ``remaining_s``: s left in
    the period, ``dt_s``: s since the last cycle. A change (or leaving idle) is appended to
    ``log`` as (epoch s, name, W). Ends with :meth:`Core.note_devices`. ``nowcast(now_s,
    period_end_s, surplus_w)``, when given (simulation only: managing has none), is asked in each
    device's turn for the surplus before it expected over the rest of the period (W, or None: the
    present one), :class:`gestor.sim.nowcast.ReplayNowcast`."""
    if stale:
        for d in devs:
            if not d.idle:
                if d.model.active:
                    d.model.advance(now_s)
                d.model.apply(now_s, 0.0)
                d.setpoint_w, d.idle = 0.0, True
                d.load.switches[core.period_start_s] = d.load.switches.get(core.period_start_s, 0) + 1
                if log is not None:
                    log.append((now_s, d.name, 0.0))
        core.note_devices(now_s, sum([d.setpoint_w for d in devs]))
        return
    surplus_w = core.surplus_before_devices_w()
    balance_wh = core.balance_wh
    for d in devs:
        m = d.model
        if m.active:
            m.advance(now_s)
        present = m.power_w                      # what it reads back (its BMS may have stopped it)
        b = d.battery
        if b is not None:  # d.range_w, inline (every cycle)
            stored = m.stored_wh  # type: ignore[attr-defined]
            lo = -b.max_discharge_w if stored > b.min_wh + EPS_WH else 0.0
            hi = b.max_charge_w if stored < b.max_wh - EPS_WH else 0.0
        else:
            lo, hi = d.range_w(now_s)
        if lo > hi:
            lo, hi = hi, lo
        expected = None if nowcast is None else nowcast(now_s, now_s + remaining_s, surplus_w)
        new = next_in_turn_w(d.law, balance_wh, d.cfg.target_wh, surplus_w, present, remaining_s, dt_s, lo, hi,
                             d.dwell, now_s, expected)
        m.apply(now_s, new if b is not None else m.command_w(new))  # written every cycle, as the simulated driver
        got = m.power_w
        d.dwell.note(got, now_s, d.law.deadband_w)
        if got != present or d.idle:
            k = core.period_start_s
            d.load.switches[k] = d.load.switches.get(k, 0) + 1
            if log is not None:
                log.append((now_s, d.name, got))
            d.idle = False
        d.setpoint_w = got
        surplus_w -= got
    core.note_devices(now_s, sum([d.setpoint_w for d in devs]))


@dataclass
class DeviceSummary:
    """A device over a run: Wh it took (charge +, discharge -: the trapezoid of its power at the
    readings, as the balance integrates it), s at a power other than 0, setpoint changes,
    reversals (charge <-> discharge beyond the deadband, over the whole run); for a
    battery, Wh charged and discharged and lost, and SoC % at the start, end, lowest and highest
    (its model's exact integration); ``periods``: per period start (epoch s) its
    :class:`BatteryPeriod` (batteries); for an EV charger, Wh delivered and wanted and its
    ``sessions``; ``power_changes``: (epoch s, W) every change of its power (a setpoint taken, its
    BMS stopping it, a car leaving or full)."""

    name: str
    kind: str
    wh: float = 0.0
    on_s: float = 0.0
    changes: int = 0
    reversals: int = 0
    charged_wh: float | None = None
    discharged_wh: float | None = None
    losses_wh: float | None = None
    soc_start_pct: float | None = None
    soc_end_pct: float | None = None
    soc_min_pct: float | None = None
    soc_max_pct: float | None = None
    delivered_wh: float | None = None      # an EV charger: Wh its cars took, and wanted
    wanted_wh: float | None = None
    periods: dict[float, BatteryPeriod] = field(default_factory=dict, repr=False)
    sessions: list[EvSession] = field(default_factory=list, repr=False)  # an EV charger's cars
    power_changes: list[tuple[float, float]] = field(default_factory=list, repr=False)  # (epoch s, W) each

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("periods", "sessions", "power_changes")}


def summaries(devs: Sequence[SimDevice], keep: tuple[float, float] = (-math.inf, math.inf)) -> list[DeviceSummary]:
    """Each device's :class:`DeviceSummary` at the end of a run (its periods starting within ``keep``)."""
    out = []
    for d in devs:
        ld = d.load
        ks = [k for k in ld.wh if keep[0] <= k < keep[1]]
        sm = DeviceSummary(d.name, type(d.model.kind).__name__.lower(), sum(ld.wh[k] for k in ks),
                           sum(v for k, v in ld.on_s.items() if keep[0] <= k < keep[1]),
                           sum(v for k, v in ld.switches.items() if keep[0] <= k < keep[1]), d.dwell.reversals)
        if isinstance(d.model, BatteryModel) and d.model.t is not None:
            st = d.model.stats()
            sm.charged_wh, sm.discharged_wh, sm.losses_wh = st.charged_wh, st.discharged_wh, st.losses_wh
            sm.soc_start_pct, sm.soc_end_pct = st.soc_start_pct, st.soc_end_pct
            sm.soc_min_pct, sm.soc_max_pct = st.soc_min_pct, st.soc_max_pct
            sm.periods = dict(st.periods)
        elif isinstance(d.model, EvModel):
            ev = d.model.stats()
            sm.delivered_wh, sm.wanted_wh, sm.sessions = ev.delivered_wh, ev.wanted_wh, ev.sessions
        sm.power_changes = list(d.model.changes)
        out.append(sm)
    return out


def one_device_house(s: Settings, name: str, device: Mapping[str, Any], **keys: Any) -> Settings:
    """``s`` (its timing, periods, zone, tariff, meter bounds) as a house with no on/off load and
    one simulated setpoint device: a benchmark's house, played by ``gestor simulate`` like any.

    Args:
        name: the device's name; device: its ``setpoints[0].device`` settings with driver
            ``simulated`` (e.g. ``{"kind": "battery", "capacity_wh": 10000}``: drivers/setpoints/
            simulated.py); keys: its other ``setpoints[0]`` settings (``reserve_wh_per_h``,
            ``deadband_w``, ``min_reversal_s``...).
    Raises:
        ValueError: (pydantic's ValidationError) naming the key, the value and what is allowed.
    """
    from drivers.setpoints.simulated import SimulatedSetpointSettings
    dev = SimulatedSetpointSettings.model_validate({**device, "driver": "simulated"})
    cfg = SetpointDeviceSettings.model_validate({"name": name, "device": {"driver": "simulated"}, **keys})
    cfg.device = dev
    return s.model_copy(update={"loads": [], "setpoints": [cfg]})


def simulated_device(kind: Battery | Modulating | EvCharger, soc_pct: float = REAL_BATTERY_SOC_PCT) -> dict[str, Any]:
    """The ``setpoints[i].device`` settings (driver ``simulated``) of a device kind of
    :mod:`gestor.core.devices`: a :class:`Battery` (starting at ``soc_pct`` %), a
    :class:`Modulating` heater, an :class:`EvCharger` (6 A up, at the simulated charger's 230 V).
    For :func:`one_device_house`. Raises ValueError for an EV charger whose ``min_a`` is not 6 or
    whose voltage is not 230 V (the simulated charger's)."""
    if isinstance(kind, Battery):
        return {"kind": "battery", "max_charge_w": kind.max_charge_w, "max_discharge_w": kind.max_discharge_w,
                "capacity_wh": kind.capacity_wh, "soc_pct": soc_pct, "min_soc_pct": kind.min_soc_pct,
                "max_soc_pct": kind.max_soc_pct, "efficiency": kind.efficiency}
    if isinstance(kind, Modulating):
        return {"kind": "heater", "max_charge_w": kind.max_w}
    if kind.min_a != 6 or kind.voltage_v != EV_VOLTAGE_V:
        raise ValueError(f"EvCharger min_a {kind.min_a} A, voltage_v {kind.voltage_v:g} V: the simulated charger "
                         f"starts at 6 A at {EV_VOLTAGE_V:g} V")
    return {"kind": "ev_charger", "max_current_a": kind.max_a, "phases": kind.phases}
