"""The control law of a device whose power gestor sets (issue 26 section 1): a modulating water
heater on a power controller, a home battery. Pure, like the rest of the core.

Units: W, Wh, s. Signs: ``balance_wh`` and ``net_w`` export-positive (DESIGN.md section 2); a
setpoint is from the house's side, positive when the device takes power.

The reasoning. Billing nets each settlement period (one clock hour): what matters is that the
period's balance ends at zero, not that the net power is zero at every instant. At a control
cycle with ``remaining_s`` left in the period and ``balance_wh`` already banked, the device ends
the period at zero if, from now on, it takes

    (what the house would export without the device)  +  (the banked balance, spread over the time left)
    = (setpoint_w + net_w)                             +  balance_wh * 3600 / remaining_s

assuming the surplus stays as it is now (the present net power is measured with the device's
present setpoint in it, so ``setpoint_w + net_w`` is the surplus before the device). A period that
owes import (``balance_wh`` < 0) lowers the setpoint: the house must export to pay the debt back.

The surplus does not stay as it is: a cloud, a kettle. Spreading the whole balance makes the
device take everything and a late drop of the surplus becomes import that cannot be paid back.
So a reserve is kept banked: ``reserve_wh = reserve_wh_per_h * remaining_s / 3600`` (e.g. 300 Wh
per hour left), which shrinks to zero at the period's end, where nothing can go wrong any more.
Over the period this is the same as aiming ``reserve_wh_per_h`` W below the surplus, except in the
last ``min_remaining_s``, where the spread stops growing (``max(remaining_s, min_remaining_s)``: a
balance cannot be spread over no time, and the device could not follow).

    target_w = setpoint_w + net_w + (balance_wh - reserve_wh) * 3600 / max(remaining_s, min_remaining_s)
    new_w    = clamp(target_w, min_w, max_w)

then: unchanged when ``|new_w - setpoint_w| <= deadband_w`` (no command for noise), unless
``new_w`` is a bound of the range the device is not at (so it reaches idle and full power
exactly); and a change limited to ``ramp_w_per_s * dt_s`` (the device's or the grid's rate).

The issue's own measurement (an ideal 0-2000 W modulating heater, a one-cycle delay):
without the reserve, 99.9-100 % of the bound captured but 77-92 Wh a day more imported; with the
300 Wh-per-hour-left reserve, 97.4-97.9 % with 8-18 Wh a day. ``benchmarks/setpoint.py``
measured it on the nine public recordings (before issue 33 with the per-device replay: a
one-cycle delay; now through ``gestor simulate``, docs/site/en/devices/index.md): the same shape, with more import on the cloudy and winter files. Reserve 0:
99.8-100 % per file, 43-295 Wh a day (154 on all nine); the reserve chosen leave-one-file-out
(400, 300 for the winter file): 96.7-97.6 %, 4-153 Wh a day (97.2 %, 53 Wh a day on all nine;
the shipped on/off steady_surplus with 1000 + 700 W: 96.3 %, 75 Wh a day), and every period with
surplus ends nearer zero on average than with the on/off loads on every file.

Reversals (issue 32 item 6). Under a meter whose net power flips sign every few seconds the law
follows it, and a battery reversed between charge and discharge 144 times in 150 s: wear for
nothing, since the period's balance is what is billed. So a device that went one way (beyond
``deadband_w``) does not go the other way sooner than ``min_reversal_s`` after it last held
that way (:class:`Dwell`, the device's last direction and when it last held it); meanwhile it
holds 0 W (idle) where the law wants the other direction, and the law's balance term makes up
for it on the cycles that want the old direction. Unless the period's balance demands it: if, idle until
the wait is over (the present surplus lasting that long) and then with what power it has to
spare the other way (beyond the present surplus or deficit, which the law assumes lasts) for
what is left of the period, it would still end more than ``end_tolerance_wh`` beyond its
target, the reversal is allowed at once (:meth:`SetpointLaw.reversal_range`): in practice near
a period's end, with a balance far off its target, or a surplus beyond the device's power.
Reversals per hour are thus at most ``3600 / min_reversal_s`` but for those the period's end
demands. Measured (tests/test_setpoint_core.py): a surplus flipping +-1500 W around a mean of
-1000..+1000 W every 10 s cycle, 359 reversals in the hour by the law alone, 5-8 with the rule
(most in the period's last minute, which the end demands), every period ending within 10 Wh
either way; ``benchmarks/reversals.py`` on the nine recordings (docs/site/en/devices/index.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class SetpointLaw:
    """The law's parameters.

    Attributes:
        min_w, max_w: the device's range, W (``min_w`` <= ``max_w``; a battery: ``min_w`` < 0).
        reserve_wh_per_h: Wh kept banked per hour left in the period (>= 0; 0: spread it all).
        deadband_w: W of change too small to command (>= 0).
        ramp_w_per_s: the largest change per second, W/s (> 0; inf: none).
        min_remaining_s: the shortest time a balance is spread over, s (> 0).
        min_reversal_s: the shortest time between a device starting one way and reversing, s
            (>= 0; 0: no such rule), unless the period's end demands it (module docstring).
        end_tolerance_wh: how far from its target a period may end before it demands a
            reversal, Wh (>= 0; the issue's goal: every period with room within ±10 Wh).
    Raises:
        ValueError: a parameter out of its range, named with its value.
    """

    min_w: float
    max_w: float
    reserve_wh_per_h: float = 0.0
    deadband_w: float = 0.0
    ramp_w_per_s: float = math.inf
    min_remaining_s: float = 60.0
    min_reversal_s: float = 0.0
    end_tolerance_wh: float = 10.0

    def __post_init__(self) -> None:
        if not self.min_w <= self.max_w:
            raise ValueError(f"min_w {self.min_w} must be <= max_w {self.max_w}")
        for name, lo in (("reserve_wh_per_h", 0.0), ("deadband_w", 0.0), ("min_reversal_s", 0.0),
                         ("end_tolerance_wh", 0.0)):
            v = getattr(self, name)
            if not v >= lo:
                raise ValueError(f"{name} {v} must be >= {lo:g}")
        for name in ("ramp_w_per_s", "min_remaining_s"):
            v = getattr(self, name)
            if not v > 0:
                raise ValueError(f"{name} {v} must be > 0")

    def reserve_wh(self, remaining_s: float) -> float:
        """Wh kept banked with ``remaining_s`` left: ``reserve_wh_per_h * remaining_s / 3600``,
        0 at the period's end."""
        return self.reserve_wh_per_h * max(remaining_s, 0.0) / 3600.0

    def target_w(self, balance_wh: float, net_w: float, setpoint_w: float, remaining_s: float, *,
                 expected_surplus_w: float | None = None) -> float:
        """The unclamped target, W (module docstring's formula; ``expected_surplus_w`` in place of
        ``setpoint_w + net_w`` when given)."""
        spread_s = max(remaining_s, self.min_remaining_s)
        if expected_surplus_w is not None:
            return expected_surplus_w + (balance_wh - self.reserve_wh(remaining_s)) * 3600.0 / spread_s
        return setpoint_w + net_w + (balance_wh - self.reserve_wh(remaining_s)) * 3600.0 / spread_s

    def reversal_range(self, dwell: Dwell, now_s: float, excess_wh: float, surplus_w: float, remaining_s: float,
                       lo_w: float, hi_w: float) -> tuple[float, float]:
        """The range ``lo_w..hi_w`` (W) without the direction opposite to ``dwell``'s while a
        reversal is not yet allowed (module docstring): 0 at that end instead. Sets
        ``dwell.wait_s`` to the s still to wait when it narrows the range, else 0.

        Args:
            dwell: the device's last direction and since when; now_s: epoch s.
            excess_wh: the period's balance less the device's target, Wh (export-positive).
            surplus_w: the surplus before the device, W (export-positive).
            remaining_s: s left in the period.
        """
        dwell.wait_s = 0.0
        if dwell.sign == 0 or self.min_reversal_s <= 0.0:
            return lo_w, hi_w
        wait_s = dwell.since_s + self.min_reversal_s - now_s
        if wait_s <= 0.0:
            return lo_w, hi_w
        left_s = max(remaining_s, 0.0)
        # the balance when the wait is over (or the period ends), idle meanwhile, the present
        # surplus lasting that long (only that long: a surplus that flips must not demand it)
        waited_wh = excess_wh + surplus_w * min(wait_s, left_s) / 3600.0
        after_h = max(left_s - wait_s, 0.0) / 3600.0  # what is left of the period after the wait
        if dwell.sign > 0:  # it took power: supplying is the reversal
            # what it could supply after the wait beyond the present deficit (the law's assumption)
            spare_w = max(-lo_w - max(-surplus_w, 0.0), 0.0)
            if -waited_wh - spare_w * after_h > self.end_tolerance_wh:
                return lo_w, hi_w  # the period's end demands it
            if lo_w >= 0.0:
                return lo_w, hi_w
            dwell.wait_s = wait_s
            return min(0.0, hi_w), hi_w
        spare_w = max(hi_w - max(surplus_w, 0.0), 0.0)
        if waited_wh - spare_w * after_h > self.end_tolerance_wh:
            return lo_w, hi_w
        if hi_w <= 0.0:
            return lo_w, hi_w
        dwell.wait_s = wait_s
        return lo_w, max(0.0, lo_w)

    def next_w(self, balance_wh: float, net_w: float, setpoint_w: float, remaining_s: float,
               dt_s: float = math.inf, *, lo_w: float | None = None, hi_w: float | None = None,
               expected_surplus_w: float | None = None) -> float:
        """The new setpoint, W, in ``[min_w, max_w]`` (or ``[lo_w, hi_w]`` when given).

        Args:
            balance_wh: the period's balance so far, Wh, export-positive.
            net_w: the present net power, W, export-positive, measured with ``setpoint_w`` in it.
            setpoint_w: the device's present setpoint (its power in that measurement), W.
            remaining_s: s left in the settlement period.
            dt_s: s since the last command (the ramp's allowance is ``ramp_w_per_s * dt_s``).
            lo_w, hi_w: the range for this call only, W, in place of ``min_w``/``max_w`` (None:
                theirs): a battery's narrowed by its state of charge, a charger's by the car
                (``lo_w <= hi_w``; the deadband's exception holds at these ends).
            expected_surplus_w: the surplus before the device expected over the rest of the
                period, W (the nowcast, :func:`gestor.core.nowcast.expected_surplus_w`), used in
                place of the present one (``setpoint_w + net_w``); None: the present one.
        """
        lo = self.min_w if lo_w is None else lo_w
        hi = self.max_w if hi_w is None else hi_w
        new = min(max(self.target_w(balance_wh, net_w, setpoint_w, remaining_s,
                                    expected_surplus_w=expected_surplus_w), lo), hi)
        cur = min(max(setpoint_w, lo), hi)
        if abs(new - cur) <= self.deadband_w and not (new in (lo, hi) and new != setpoint_w):
            return cur
        step = self.ramp_w_per_s * dt_s if dt_s >= 0 else 0.0
        if new > cur + step:
            return cur + step
        if new < cur - step:
            return cur - step
        return new


def direction(power_w: float, deadband_w: float) -> int:
    """+1 when ``power_w`` takes more than ``deadband_w`` (W), -1 when it supplies more, else 0."""
    if power_w > deadband_w:
        return 1
    if power_w < -deadband_w:
        return -1
    return 0


class Dwell:
    """A device's direction, the state of the reversal rule (module docstring): ``sign`` the last
    direction it held beyond the deadband (+1 taking, -1 supplying, 0 none yet), ``since_s`` the
    last time it held it (epoch s), ``reversals`` how many it made, ``wait_s`` the s its last turn
    still had to wait before a reversal (0: none held back)."""

    def __init__(self) -> None:
        self.sign = 0
        self.since_s = -math.inf
        self.reversals = 0
        self.wait_s = 0.0

    def note(self, power_w: float, now_s: float, deadband_w: float) -> bool:
        """The device holds ``power_w`` (W) from epoch ``now_s``; True when that is a reversal."""
        d = direction(power_w, deadband_w)
        if d == 0:
            return False
        if d == self.sign:
            self.since_s = now_s
            return False
        reversed_ = self.sign != 0
        self.sign, self.since_s = d, now_s
        if reversed_:
            self.reversals += 1
        return reversed_


def next_setpoint_w(balance_wh: float, net_w: float, setpoint_w: float, remaining_s: float, min_w: float,
                    max_w: float, reserve_wh_per_h: float = 0.0, deadband_w: float = 0.0,
                    ramp_w_per_s: float = math.inf, dt_s: float = math.inf, min_remaining_s: float = 60.0) -> float:
    """:meth:`SetpointLaw.next_w` in one call (the parameters as there; W, Wh, s)."""
    return SetpointLaw(min_w, max_w, reserve_wh_per_h, deadband_w, ramp_w_per_s,
                       min_remaining_s).next_w(balance_wh, net_w, setpoint_w, remaining_s, dt_s)


def next_in_turn_w(law: SetpointLaw, balance_wh: float, target_wh: float, surplus_w: float, present_w: float,
                   remaining_s: float, dt_s: float, lo_w: float, hi_w: float, dwell: Dwell | None = None,
                   now_s: float = 0.0, expected_surplus_w: float | None = None) -> float:
    """A device's new setpoint in its turn, W: managing's and the simulator's one rule for
    devices that share a house (:mod:`gestor.runtime.setpoints`, :mod:`gestor.sim.simulate`).

    Each device, in the settings' order, is given the period's balance less its ``target_wh``
    (Wh, export-positive) and ``surplus_w``: the surplus before it (W, export-positive: the
    house with its on/off loads as they are now, without this device and the ones after it,
    less what the ones before it took this cycle); ``present_w`` its setpoint now, ``lo_w..hi_w``
    its range now (a battery's narrowed by its state of charge, a charger's by the car). The
    caller takes the returned setpoint off ``surplus_w`` before the next device's turn.

    ``dwell``: the device's direction (:class:`Dwell`; None: no reversal rule): the range loses
    the reversal not yet allowed at epoch ``now_s`` (:meth:`SetpointLaw.reversal_range`); the
    caller notes what the device then holds (:meth:`Dwell.note`).

    ``expected_surplus_w``: the surplus before the device expected over the rest of the period,
    W (a nowcast; ``gestor simulate``'s research hook, managing gives none), in place of
    ``surplus_w`` in the law's target (:meth:`SetpointLaw.target_w`); None: the present one."""
    if dwell is not None:
        lo_w, hi_w = law.reversal_range(dwell, now_s, balance_wh - target_wh, surplus_w, remaining_s, lo_w, hi_w)
    return law.next_w(balance_wh - target_wh, surplus_w - present_w, present_w, remaining_s, dt_s,
                      lo_w=lo_w, hi_w=hi_w, expected_surplus_w=expected_surplus_w)


def surplus_value_eur_per_kwh(surplus_eur_per_kwh: float, month_energy_eur: float, month_compensation_eur: float,
                              virtual_battery: bool = False) -> float:
    """What one more kWh exported is worth now, EUR/kWh (issue 35): the surplus price while the
    month's compensation is below its energy term, 0 once it has reached it (simplified
    compensation is capped at the billing period's energy term, RD 244/2019 art. 14.3), unless a
    virtual battery keeps the excess (then always the surplus price). The month so far stands for
    the month: later imports may lift the cap again, and then this says so at once. A month with
    no compensation yet is below the cap."""
    if virtual_battery or month_compensation_eur <= 0.0 or month_compensation_eur < month_energy_eur:
        return surplus_eur_per_kwh
    return 0.0


def reserve_scale(import_eur_per_kwh: float, heat_eur_per_kwh: float, surplus_before_eur_per_kwh: float,
                  surplus_now_eur_per_kwh: float) -> float:
    """The factor on a heater's tuned reserve when the surplus's worth changes (issue 35), >= 0.

    The reserve trades two errors: taking a Wh the period then lacks costs the import price less
    the heat's worth (``import - heat``: bought, though the heat is had), leaving a Wh exported
    costs the heat's worth less the surplus's (``heat - surplus``). The best reserve leaves the
    chance of taking too much at the critical ratio ``q = (heat - surplus) / (import - surplus)``
    (the newsvendor's); with an exponential tail of the surplus still to come, the reserve is
    proportional to ``ln(1/q)``. So the tuned reserve (at ``surplus_before``) is scaled by
    ``ln(q_now) / ln(q_before)``. At the cap (``surplus_now`` 0) ``q = heat / import``: no reserve in
    a P3 hour when the heat is worth the P3 price (q = 1), about 0.58 of it in a P1 hour at 0.22 and
    a surplus price of 0.06 EUR/kWh. 1 when the surplus is worth no less than when tuned, or the
    tuned reserve has no such reading (the heat worth no more than the surplus, or the import no
    more than the heat)."""
    def q(s: float) -> float | None:
        return (heat_eur_per_kwh - s) / (import_eur_per_kwh - s) if import_eur_per_kwh > s else None
    if surplus_now_eur_per_kwh >= surplus_before_eur_per_kwh:
        return 1.0
    qb, qn = q(surplus_before_eur_per_kwh), q(surplus_now_eur_per_kwh)
    if qn is not None and qn >= 1.0:
        return 0.0
    if qb is None or qn is None or not 0.0 < qb < 1.0 or qn <= 0.0:
        return 1.0
    return math.log(qn) / math.log(qb)


@dataclass
class MonthCap:
    """The month so far against the compensation cap (issue 35), EUR before taxes at the bill's
    prices: managing's books and ``gestor simulate`` book each closed period into it
    (:meth:`book`), and a heater's or charger's law for the running period comes from it
    (:meth:`law`). ``month``: the local month booked ("YYYY-MM"; a new one starts at 0)."""

    month: str = ""
    energy_eur: float = 0.0
    compensation_eur: float = 0.0

    def start(self, month: str) -> None:
        """Start ``month`` at 0 unless it is the one booked."""
        if month != self.month:
            self.month, self.energy_eur, self.compensation_eur = month, 0.0, 0.0

    def book(self, month: str, import_wh: float, export_wh: float, import_eur_per_kwh: float,
             surplus_eur_per_kwh: float) -> None:
        """Add a closed period of ``month``: its settled Wh at its prices."""
        self.start(month)
        self.energy_eur += import_wh / 1000.0 * import_eur_per_kwh
        self.compensation_eur += export_wh / 1000.0 * surplus_eur_per_kwh

    def law(self, base: SetpointLaw, import_eur_per_kwh: float, heat_eur_per_kwh: float,
            surplus_eur_per_kwh: float, virtual_battery: bool = False) -> SetpointLaw:
        """``base`` with its reserve scaled for a period at these prices (:func:`reserve_scale` on
        :func:`surplus_value_eur_per_kwh` of the month so far)."""
        now = surplus_value_eur_per_kwh(surplus_eur_per_kwh, self.energy_eur, self.compensation_eur, virtual_battery)
        scale = reserve_scale(import_eur_per_kwh, heat_eur_per_kwh, surplus_eur_per_kwh, now)
        return base if scale == 1.0 else replace(base, reserve_wh_per_h=base.reserve_wh_per_h * scale)
