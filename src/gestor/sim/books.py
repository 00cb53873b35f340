"""The books of a simulation: what ``gestor simulate`` counts per settlement period and in all,
and how (issue 5, DESIGN.md section 6; the model is in :mod:`gestor.sim.simulate`'s docstring).

* :class:`SimLoad`: a simulated load (or a setpoint device's energy books, :func:`device_book`):
  the control core's :class:`gestor.core.control.LoadState` plus the Wh it took per period.
* :func:`account`: per-load trapezoid energy between two readings, split at period boundaries
  as :class:`gestor.core.balance.Balance` splits the net.
* :func:`period_results`, :func:`device_period_results`: a closed period's figures with and
  without gestor; :func:`totals_of`: the run's and each local day's :class:`Totals`;
  :func:`cost_eur`: the bill (RD 244/2019 art. 14.3: the compensation capped per month).

Units: W, Wh, s, EUR; balances export-positive. Part of the compiled hot path (pyproject
``[tool.gestor] compiled``): nothing here is subclassed by interpreted code.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Sequence
from zoneinfo import ZoneInfo

from gestor.core.balance import PeriodSummary, settled_wh
from gestor.core.control import LoadState
from gestor.core.devices import DeviceKind
from gestor.core.guards import LoadLimits
from gestor.settings import LoadSettings, Settings
from gestor.sim.inputs import Prices

UTC = timezone.utc


@dataclass
class PeriodResult:
    """One settlement period of a simulation. Energies Wh, on-times s, cost EUR."""

    start: datetime
    end: datetime
    complete: bool
    production_wh: float
    base_wh: float
    load_wh: dict[str, float]
    load_on_s: dict[str, float]
    switches: dict[str, int]
    balance_wh: float            # with gestor
    balance_without_wh: float
    bound_wh: float
    price_period: str
    import_price: float
    surplus_price: float

    @property
    def loads_wh(self) -> float:
        return sum(self.load_wh.values())

    def settled_wh(self, with_gestor: bool = True) -> tuple[float, float]:
        """``(export_wh, import_wh)`` this period is billed for, Wh, with gestor (``balance_wh``)
        or without it (``balance_without_wh``): :func:`gestor.core.balance.settled_wh`."""
        return settled_wh(self.balance_wh if with_gestor else self.balance_without_wh)

    @property
    def export_wh(self) -> float:
        return self.settled_wh()[0]

    @property
    def import_wh(self) -> float:
        return self.settled_wh()[1]


@dataclass
class DevicePeriodResult(PeriodResult):
    """A settlement period of a run with setpoint devices (``setpoints:``): :class:`PeriodResult`
    (``balance_without_wh`` without the loads and the devices, ``base_wh`` without either, the
    bound with the loads' and the devices' most) and, per device name, ``device_wh`` (Wh it took:
    charge +, discharge -; the trapezoid of its power at the readings, as the balance), and per
    battery ``charged_wh``/``discharged_wh`` (house side, its model's exact integration) and
    ``soc_end_pct`` (% at the period's end)."""

    device_wh: dict[str, float] = field(default_factory=dict)
    charged_wh: dict[str, float] = field(default_factory=dict)
    discharged_wh: dict[str, float] = field(default_factory=dict)
    soc_end_pct: dict[str, float] = field(default_factory=dict)

    @property
    def devices_wh(self) -> float:
        return sum(self.device_wh.values())


@dataclass
class Totals:
    periods: int = 0
    incomplete: int = 0
    production_wh: float = 0.0
    base_wh: float = 0.0
    loads_wh: float = 0.0
    exported_wh: float = 0.0
    imported_wh: float = 0.0
    exported_without_wh: float = 0.0
    imported_without_wh: float = 0.0
    bound_wh: float = 0.0
    switches: int = 0
    cost_eur: float = 0.0
    cost_without_eur: float = 0.0
    # EUR, the perfect-foresight benchmarks' measure (:func:`money_eur`): the money paid (no
    # monthly cap) less what the energy the loads and the heaters and chargers took is worth
    money_eur: float = 0.0
    load_wh: dict[str, float] = field(default_factory=dict)
    load_on_s: dict[str, float] = field(default_factory=dict)
    load_switches: dict[str, int] = field(default_factory=dict)
    # setpoint devices, per name (empty without them, and then left out of as_dict): Wh taken
    # (charge +, discharge -), and a battery's Wh charged and discharged (house side)
    device_wh: dict[str, float] = field(default_factory=dict)
    device_charged_wh: dict[str, float] = field(default_factory=dict)
    device_discharged_wh: dict[str, float] = field(default_factory=dict)

    @property
    def captured_wh(self) -> float:
        return self.exported_without_wh - self.exported_wh

    @property
    def extra_import_wh(self) -> float:
        return self.imported_wh - self.imported_without_wh

    @property
    def captured_pct(self) -> float:
        return 100.0 * self.captured_wh / self.bound_wh if self.bound_wh > 0 else 100.0

    def as_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)
             if not (f.name.startswith("device_") and not getattr(self, f.name))}
        d.update(captured_wh=self.captured_wh, extra_import_wh=self.extra_import_wh,
                 captured_pct=self.captured_pct)
        return d


@dataclass
class Trace:
    """Per-sample series for plots (epoch s, W, on states)."""

    t: list[float] = field(default_factory=list)
    production_w: list[float] = field(default_factory=list)
    base_w: list[float] = field(default_factory=list)
    on: dict[str, list[bool]] = field(default_factory=dict)


@dataclass
class SimResult:
    periods: list[PeriodResult]
    totals: Totals
    days: dict[str, Totals]
    trace: Trace | None = None
    switches: list[tuple[datetime, str, bool]] = field(default_factory=list)  # (when, load, on)
    parts: int = 1  # processes a split run used (1: in one piece)
    # with setpoint devices: each one's gestor.sim.devices.DeviceSummary, and every setpoint
    # commanded that changed it (or took it out of idle, or idled it): (when, device, W)
    devices: list = field(default_factory=list)
    setpoint_log: list[tuple[datetime, str, float]] = field(default_factory=list)



class SimLoad(LoadState):
    """A simulated load: the controller's state plus the energy it took per period."""

    def __init__(self, cfg: LoadSettings, limits: LoadLimits) -> None:
        super().__init__(cfg, limits)
        self.wh: dict[float, float] = {}      # period start epoch → Wh


def device_book(name: str, kind: DeviceKind) -> SimLoad:
    """The simulated device as simulate's accounting reads a load (a :class:`SimLoad` of kind
    ``kind``, so the compiled accounting takes it): ``wh`` per period, ``on_s`` (s at a power other
    than 0), ``switches`` (setpoint changes commanded)."""
    cfg = LoadSettings.model_validate({"name": name, "power_w": max(kind.options_w), "relay": {"driver": "simulated"}})
    ld = SimLoad(cfg, LoadLimits.of(cfg))
    ld.kind = kind
    return ld


def index_at(a: Sequence[float], x: float) -> int:
    import bisect
    return bisect.bisect_left(a, x)


def account(loads: list[SimLoad], t0: float, t1: float, w0: list[float], w1: list[float],
             bounds: Callable[[float], tuple[float, float]]) -> None:
    """Per-load trapezoid energy between two readings, split at period boundaries as
    :class:`Balance` splits the net (``bounds(t)``: the period around epoch ``t``)."""
    a = t0
    while a < t1:
        k, end = bounds(a)
        e = min(end, t1)
        for j, ld in enumerate(loads):
            v0, v1 = w0[j], w1[j]
            if v0 or v1:
                va = v0 + (v1 - v0) * (a - t0) / (t1 - t0)
                vb = v0 + (v1 - v0) * (e - t0) / (t1 - t0)
                ld.wh[k] = ld.wh.get(k, 0.0) + (va + vb) / 2.0 * (e - a) / 3600.0
        a = e


def period_results(closed: list[PeriodSummary], loads: list[SimLoad], total_power_w: float,
             prices: Prices) -> list[PeriodResult]:
    """Per period: without gestor = with gestor plus the loads' energy (the same trapezoid of the
    same samples, so the two integrate alike, gaps included)."""
    out = []
    for p in closed:
        k = p.start.timestamp()
        load_wh = {ld.name: ld.wh.get(k, 0.0) for ld in loads}
        loads_wh = sum(load_wh.values())
        without = p.balance_wh + loads_wh
        bound = min(max(without, 0.0), total_power_w * p.period_s / 3600.0)
        price_period, imp, sur = prices.at(p.start, p.end)
        out.append(PeriodResult(
            p.start, p.end, p.complete, p.production_wh or 0.0, (p.consumption_wh or 0.0) - loads_wh, load_wh,
            {ld.name: ld.on_s.get(k, 0.0) for ld in loads}, {ld.name: ld.switches.get(k, 0) for ld in loads},
            p.balance_wh, without, bound, price_period, imp, sur))
    return out


def device_period_results(closed: list[PeriodSummary], loads: list[SimLoad], devs: list, sums: list,
                    total_power_w: float, prices: Prices) -> list[PeriodResult]:
    """:func:`period_results` with setpoint devices (``devs``: gestor.sim.devices.SimDevice, ``sums``:
    their DeviceSummary): without gestor = with gestor plus the loads' and the devices' energy;
    the bound with the loads' and the devices' most power (a battery's charge)."""
    out: list[PeriodResult] = []
    most_w = total_power_w + sum(max(d.max_w, 0.0) for d in devs)
    for p in closed:
        k = p.start.timestamp()
        load_wh = {ld.name: ld.wh.get(k, 0.0) for ld in loads}
        device_wh = {d.name: d.load.wh.get(k, 0.0) for d in devs}
        loads_wh = sum(load_wh.values())
        devices_wh = sum(device_wh.values())
        without = p.balance_wh + loads_wh + devices_wh
        bound = min(max(without, 0.0), most_w * p.period_s / 3600.0)
        price_period, imp, sur = prices.at(p.start, p.end)
        bp = {sm.name: sm.periods[k] for sm in sums if k in sm.periods}
        out.append(DevicePeriodResult(
            p.start, p.end, p.complete, p.production_wh or 0.0, (p.consumption_wh or 0.0) - loads_wh - devices_wh,
            load_wh, {ld.name: ld.on_s.get(k, 0.0) for ld in loads}, {ld.name: ld.switches.get(k, 0) for ld in loads},
            p.balance_wh, without, bound, price_period, imp, sur, device_wh,
            {n: b.charged_wh for n, b in bp.items()}, {n: b.discharged_wh for n, b in bp.items()},
            {n: b.soc_end_pct for n, b in bp.items()}))
    return out


def cost_eur(periods: Iterable[PeriodResult], tz: ZoneInfo, with_gestor: bool, p3_price: float = 0.0) -> float:
    """EUR: import cost minus surplus compensation capped per calendar month at that month's
    import cost (RD 244/2019 art. 14.3). Without gestor the loads still need their energy: it is
    bought from the grid at the P3 price (a night timer, the cheapest way without gestor)."""
    months: dict[tuple[int, int], list[float]] = {}
    for p in periods:
        local = p.start.astimezone(tz)
        m = months.setdefault((local.year, local.month), [0.0, 0.0])
        exp, imp = p.settled_wh(with_gestor)
        m[0] += imp / 1000.0 * p.import_price
        if not with_gestor:
            m[0] += p.loads_wh / 1000.0 * p3_price
        m[1] += exp / 1000.0 * p.surplus_price
    return sum(cost - min(comp, cost) for cost, comp in months.values())


def money_eur(p: PeriodResult, value_eur_per_kwh: float) -> float:
    """EUR of period ``p`` with gestor as the perfect-foresight benchmarks count it
    (:mod:`gestor.sim.lp`'s objective; lower is better): its import × the import price less its
    export × the surplus price, with no monthly cap on the compensation, less the energy the on/off
    loads and the setpoint devices other than batteries (heaters, chargers) took, worth
    ``value_eur_per_kwh`` (the P3 import price: what a night timer would pay for it, as
    :func:`cost_eur` counts it without gestor). A battery's energy is not valued: it comes back."""
    return (p.import_wh * p.import_price - p.export_wh * p.surplus_price - valued_wh(p) * value_eur_per_kwh) / 1000.0


def valued_wh(p: PeriodResult) -> float:
    """Wh of period ``p`` that the household would have bought anyway without gestor (a night
    timer): what the on/off loads and the setpoint devices other than batteries took."""
    wh = p.loads_wh
    if isinstance(p, DevicePeriodResult):
        wh += sum([v for name, v in p.device_wh.items() if name not in p.charged_wh])
    return wh


def monthly(periods: Iterable[PeriodResult], tz: ZoneInfo) -> list[tuple[str, float, float, float]]:
    """Per calendar month (local): import cost, compensation earned, and compensation paid after the
    cap (it cannot exceed the month's import cost, RD 244/2019 art. 14.3), EUR, with gestor."""
    months: dict[str, list[float]] = {}
    for p in periods:
        m = months.setdefault(p.start.astimezone(tz).strftime("%Y-%m"), [0.0, 0.0])
        m[0] += p.import_wh / 1000.0 * p.import_price
        m[1] += p.export_wh / 1000.0 * p.surplus_price
    return [(k, c, comp, min(comp, c)) for k, (c, comp) in sorted(months.items())]


def totals_of(periods: list[PeriodResult], loads: Sequence[LoadSettings], tz: ZoneInfo,
            s: Settings) -> tuple[Totals, dict[str, Totals]]:
    def add(t: Totals, p: PeriodResult) -> None:
        t.periods += 1
        t.incomplete += 0 if p.complete else 1
        t.production_wh += p.production_wh
        t.base_wh += p.base_wh
        t.loads_wh += p.loads_wh
        t.exported_wh += p.export_wh
        t.imported_wh += p.import_wh
        exp_without_wh, imp_without_wh = p.settled_wh(with_gestor=False)
        t.exported_without_wh += exp_without_wh
        t.imported_without_wh += imp_without_wh
        t.bound_wh += p.bound_wh
        t.switches += sum(p.switches.values())
        t.money_eur += money_eur(p, p3)
        for ld in loads:
            t.load_wh[ld.name] = t.load_wh.get(ld.name, 0.0) + p.load_wh[ld.name]
            t.load_on_s[ld.name] = t.load_on_s.get(ld.name, 0.0) + p.load_on_s[ld.name]
            t.load_switches[ld.name] = t.load_switches.get(ld.name, 0) + p.switches[ld.name]
        if isinstance(p, DevicePeriodResult):
            for name, wh in p.device_wh.items():
                t.device_wh[name] = t.device_wh.get(name, 0.0) + wh
            for name, wh in p.charged_wh.items():
                t.device_charged_wh[name] = t.device_charged_wh.get(name, 0.0) + wh
            for name, wh in p.discharged_wh.items():
                t.device_discharged_wh[name] = t.device_discharged_wh.get(name, 0.0) + wh

    p3 = s.tariff.import_p3_eur_per_kwh
    total = Totals()
    days: dict[str, Totals] = {}
    by_day: dict[str, list[PeriodResult]] = {}
    for p in periods:
        day = p.start.astimezone(tz).date().isoformat()
        add(total, p)
        add(days.setdefault(day, Totals()), p)
        by_day.setdefault(day, []).append(p)
    total.cost_eur, total.cost_without_eur = cost_eur(periods, tz, True), cost_eur(periods, tz, False, p3)
    for day, ps in by_day.items():  # a day's cost, capped as if it were its own month
        days[day].cost_eur, days[day].cost_without_eur = cost_eur(ps, tz, True), cost_eur(ps, tz, False, p3)
    return total, days


def day_bounds(day: str, tz: ZoneInfo) -> tuple[datetime, datetime]:
    d = datetime.fromisoformat(day)
    a = datetime(d.year, d.month, d.day, tzinfo=tz)
    b = a + timedelta(days=1)
    return a.astimezone(UTC), datetime(b.year, b.month, b.day, tzinfo=tz).astimezone(UTC)
