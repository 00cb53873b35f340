"""managing's day books (gestor.runtime.books) and its state file (gestor.runtime.persist): a
closed period lands in the Energy totals, each load's energy, the last period's balance and
today's saving, with its ``period`` point priced by hand; a restart brings back what a user sees,
and a restart after midnight starts the new day's counts."""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gestor.clock import SimClock
from gestor.core.balance import PeriodSummary
from gestor.core.reading import Reading
from gestor.core.control import Core, LoadState
from gestor.core.guards import LoadLimits
from gestor.runtime.books import Books
from gestor.runtime.persist import StateFile
from gestor.runtime.pricefeed import PriceFeed
from gestor.runtime.relays import LoadRuntime
from gestor.runtime.statefiles import ManagingFile
from tests.conftest import make_settings

MAD = ZoneInfo("Europe/Madrid")
P22 = datetime(2026, 6, 10, 22, 0, tzinfo=MAD)   # a Wednesday, 22-23 h: P2 (0.15 EUR/kWh in the example)


class Lines:
    """A store that keeps the line protocol written to it (the Store protocol)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, lines) -> None:
        self.lines += list(lines)

    def flush(self, timeout_s: float = 30.0) -> bool:
        return True

    def close(self) -> None:
        pass

    def fields(self, measurement: str) -> list[dict[str, object]]:
        """The fields of every ``measurement`` point written, in order (strings, bools, floats)."""
        out = []
        for line in self.lines:
            head, rest = line.split(" ", 1)          # no space in our measurements and tags
            fields = rest.rsplit(" ", 1)[0]           # the time last
            if head.split(",")[0] == measurement:
                out.append({k: v[1:-1].replace('\\"', '"') if v.startswith('"') else
                            (v == "true") if v in ("true", "false") else float(v)
                            for k, v in re.findall(r'([A-Za-z_]+)=("(?:[^"\\]|\\.)*"|[^,]+)', fields)})
        return out


def _books(tmp_path, store=None):
    s = make_settings(tmp_path, prices={"source": "fixed"})
    states = [LoadState(ld, LoadLimits.of(ld)) for ld in s.loads_by_priority()]
    store = store or Lines()
    return s, states, store, Books(s, store, states, PriceFeed(s, store).prices_of)


def _period(start: datetime, balance_wh: float) -> PeriodSummary:
    return PeriodSummary(start, start + timedelta(hours=1), balance_wh, production_wh=2000.0, consumption_wh=1500.0,
                         covered_s=3600.0, samples=360)


def test_a_closed_period_lands_in_the_totals_and_is_priced_at_its_tariff_period(tmp_path):
    s, states, store, books = _books(tmp_path)
    heater = next(ld for ld in states if ld.name == "water_heater")
    k = P22.timestamp()
    heater.on_s[k] = 1800.0                  # on half the period: 500 Wh at 1000 W
    heater.switches[k] = 2
    books.count_switch("water_heater", P22 + timedelta(minutes=5))
    books.count_switch("water_heater", P22 + timedelta(minutes=35))
    books.close(_period(P22, 500.0))

    # the closed period's books (the published counters step at a period's last cycle: settle)
    assert books.booked == {"import_wh": 0.0, "export_wh": 500.0, "production_wh": 2000.0, "consumption_wh": 1500.0}
    assert books.loads_wh == {"water_heater": 500.0, "pool_pump": 0.0}
    assert books.last_period_wh == 500.0 and books.last_period_end == P22 + timedelta(hours=1)
    assert books.switches_today == {"water_heater": 2, "pool_pump": 0}
    assert k not in heater.on_s and k not in heater.switches     # the period's own counts are closed
    # by hand: 0.5 kWh exported at 0.06; without gestor the heater's 0.5 kWh would have been bought
    # at night (0.10) and 1 kWh exported: saved 0.5 * (0.10 - 0.06) = 0.02 EUR
    (p,) = store.fields("period")
    assert p["balance_wh"] == 500 and p["loads_wh"] == 500 and p["water_heater_wh"] == 500 and p["pool_pump_wh"] == 0
    assert p["price_source"] == "fixed" and p["import_eur_per_kwh"] == 0.15 and p["surplus_eur_per_kwh"] == 0.06
    assert p["cost_eur"] == pytest.approx(-0.03) and p["cost_without_eur"] == pytest.approx(-0.01)
    assert p["complete"] is True
    assert books.saved_today(P22 + timedelta(hours=1)) == pytest.approx(0.02)

    books.close(_period(P22 + timedelta(hours=1), -300.0))   # 23-24 h: 300 Wh imported
    assert books.booked["import_wh"] == 300.0 and books.booked["export_wh"] == 500.0
    assert books.booked["production_wh"] == 4000.0 and books.last_period_wh == -300.0
    assert books.saved_today(P22 + timedelta(hours=2, minutes=1)) == 0.0   # a new day: nothing saved yet


def test_the_settled_counters_step_inside_their_period_and_carry_the_last_seconds(tmp_path):
    """Issue 32 item 9: each period's import/export step at its last cycle at least 10 s before
    its end (a cycle every 10 s: 20 s left), with the balance as it stands; what its last seconds
    change goes with the next period's step; the counters never go back."""
    s, states, store, books = _books(tmp_path)
    first = _period(P22, 480.0)                      # 480 Wh banked 20 s before the end
    assert not books.settle(first, 30.0, 10.0)       # 30 s left: not the last cycle yet
    assert books.settle(first, 20.0, 10.0)           # the last cycle >= 10 s before the end
    assert books.totals["export_wh"] == 480.0 and books.totals["import_wh"] == 0.0
    assert books.totals["production_wh"] == 2000.0 and books.totals["consumption_wh"] == 1500.0
    assert not books.settle(_period(P22, 490.0), 10.0, 10.0)   # once per period
    books.close(_period(P22, 500.0))                 # it closes at 500 Wh: 20 Wh in its last seconds
    assert books.totals["export_wh"] == 480.0         # not stepped after the hour
    second = _period(P22 + timedelta(hours=1), -300.0)
    assert books.settle(second, 15.0, 10.0)           # the next period's step carries the 20 Wh
    assert books.totals["export_wh"] == 500.0 and books.totals["import_wh"] == 300.0
    # a period that ends below what was stepped: the counter waits (never goes back)
    books.close(_period(P22 + timedelta(hours=1), -200.0))
    third = _period(P22 + timedelta(hours=2), 0.0)
    assert books.settle(third, 20.0, 10.0) and books.totals["import_wh"] == 300.0
    # consumption without the devices: a battery that took 400 Wh is not the house's consumption
    books.close(_period(P22 + timedelta(hours=2), 0.0), devices_read_wh=400.0)
    assert books.booked["consumption_wh"] == 3 * 1500.0 - 400.0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(-3000, 3000), st.floats(-30, 30)), min_size=1, max_size=30))
def test_the_settled_counters_only_increase_and_lag_the_books_by_at_most_one_remainder(tmp_path_factory, periods):
    """Over generated periods (the balance at the step, and what the last seconds add): the
    counters never go back, step once per period, and stay within the largest remainder of the
    closed periods' books (nothing is lost or counted twice)."""
    _, _, _, books = _books(tmp_path_factory.mktemp("b"))
    prev = dict(books.totals)
    worst = 0.0
    for i, (at_step_wh, last_wh) in enumerate(periods):
        start = P22 + timedelta(hours=i)
        assert books.settle(_period(start, at_step_wh), 20.0, 10.0)
        for k in ("import_wh", "export_wh"):
            assert books.totals[k] >= prev[k]
            # at most the books so far, this period's part and the largest remainder ahead
            assert books.totals[k] <= books.booked[k] + abs(at_step_wh) + worst + 1e-6
        prev = dict(books.totals)
        books.close(_period(start, at_step_wh + last_wh))
        worst = max(worst, abs(last_wh))
        for k in ("import_wh", "export_wh"):
            assert books.booked[k] - worst - 1e-6 <= books.totals[k] + abs(at_step_wh + last_wh)
    books.settle(_period(P22 + timedelta(hours=len(periods)), 0.0), 20.0, 10.0)   # a quiet period's step
    for k in ("import_wh", "export_wh"):
        assert books.booked[k] - 1e-6 <= books.totals[k] <= books.booked[k] + 2 * worst + 1e-6


def test_a_battery_that_paid_a_period_back_is_undone_in_what_it_would_have_cost_without_gestor(tmp_path):
    """22-23 h, P2 (0.15 EUR/kWh): the period ends at 0 because a battery supplied 400 Wh
    (devices_wh -400); without gestor the house would have imported those 400 Wh: 0.06 EUR."""
    s, states, store, books = _books(tmp_path)
    s.setpoints = [object()]  # a device is configured (the point then carries devices_wh)
    books.close(_period(P22, 0.0), (-400.0, 0.0))
    (p,) = store.fields("period")
    assert p["devices_wh"] == -400 and p["cost_eur"] == 0.0
    assert p["cost_without_eur"] == pytest.approx(0.4 * 0.15)
    # a modulating heater that took 500 Wh of a period's surplus (not a battery): without gestor
    # that surplus is exported at 0.06 and the heater's 500 Wh bought at night (0.10)
    books.close(_period(P22 + timedelta(hours=1), 0.0), (500.0, 500.0))
    p = store.fields("period")[1]
    assert p["cost_eur"] == 0.0 and p["cost_without_eur"] == pytest.approx(-0.5 * 0.06 + 0.5 * 0.10)


def _round_trip(books: Books) -> ManagingFile:
    return ManagingFile.model_validate(json.loads(json.dumps({"balance": {}, **books.to_state()})))


def test_the_books_survive_a_restart_and_a_restart_after_midnight_starts_a_new_day(tmp_path):
    s, states, _, books = _books(tmp_path)
    books.count_switch("pool_pump", P22 + timedelta(minutes=1))
    books.close(_period(P22, 500.0))
    books.close(_period(P22 + timedelta(hours=1), -300.0))
    books.count_switch("pool_pump", P22 + timedelta(hours=1, minutes=59))  # 23:59, still the 10th
    saved = books.saved_today(P22 + timedelta(hours=1, minutes=59))
    f = _round_trip(books)

    later = P22 + timedelta(hours=1, minutes=59, seconds=30)   # restarted before midnight
    *_, same = _books(tmp_path / "a")
    same.restore(f, later, P22 + timedelta(hours=1))
    assert same.totals == books.totals and same.loads_wh == books.loads_wh
    assert same.switches_today == {"water_heater": 0, "pool_pump": 2}
    assert same.saved_today(later) == pytest.approx(saved)
    assert same.last_period_wh is None   # 23-24 h is still running: the last closed one is not shown as last

    midnight = P22 + timedelta(hours=2, minutes=0, seconds=30)   # restarted just after midnight
    *_, nxt = _books(tmp_path / "b")
    nxt.restore(f, midnight, P22 + timedelta(hours=2))
    assert nxt.totals == books.totals and nxt.loads_wh == books.loads_wh   # the Energy counters never go back
    assert nxt.switches_today == {"water_heater": 0, "pool_pump": 0}       # a new day
    assert nxt.saved_today(midnight) == 0.0
    assert nxt.last_period_wh == -300.0 and nxt.last_period_end == P22 + timedelta(hours=2)
    nxt.count_switch("pool_pump", midnight)
    assert nxt.switches_today["pool_pump"] == 1


def test_the_state_file_resumes_the_period_and_the_books(tmp_path):
    """managing.json written by one managing restores into the next: the same period's balance,
    each load's on-time in it, the books; a load that was on restarts unknown (switched off)."""
    s, states, store, books = _books(tmp_path)
    clock = SimClock(P22 + timedelta(minutes=20))
    loads = [LoadRuntime(st, None) for st in states]
    core = Core(s, states)
    for i in range(7):   # 22:14 to 22:20, 1200 W exported: 120 Wh
        core.balance.update(Reading(P22 + timedelta(minutes=14 + i), 1200.0))
    books.count_switch("water_heater", clock.now())
    books.close(_period(P22 - timedelta(hours=1), 250.0))
    heater = loads[[ld.name for ld in loads].index("water_heater")]
    heater.on, heater.since = True, clock.now()
    heater.on_s = {P22.timestamp(): 600.0}
    (tmp_path / "state").mkdir()   # managing creates it at start
    StateFile(s, clock).save(core.balance, loads, books)

    clock.sleep(90)
    states2 = [LoadState(ld, LoadLimits.of(ld)) for ld in s.loads_by_priority()]
    loads2, core2 = [LoadRuntime(st, None) for st in states2], Core(s, states2)
    books2 = Books(s, store, states2, PriceFeed(s, store).prices_of)
    StateFile(s, clock).restore(core2, loads2, books2)
    assert core2.balance.current.start == P22 and core2.balance.balance_wh == pytest.approx(120.0)
    assert h2_on_s(loads2) == {P22.timestamp(): 600.0}
    assert books2.totals == books.totals and books2.switches_today == books.switches_today
    assert books2.last_period_wh == 250.0 and books2.saved_today(clock.now()) == pytest.approx(books.eur_saved_today)
    h2 = loads2[[ld.name for ld in loads2].index("water_heater")]
    assert h2.on is None   # it was on: unknown until the start's off confirms


def h2_on_s(loads) -> dict:
    return next(ld for ld in loads if ld.name == "water_heater").on_s


def test_a_damaged_state_file_is_moved_aside(tmp_path, caplog):
    s, states, store, books = _books(tmp_path)
    path = tmp_path / "state" / "managing.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"balance": {"period_s": "an hour"}}))
    core = Core(s, states)
    StateFile(s, SimClock(P22)).restore(core, [LoadRuntime(st, None) for st in states], books)
    assert not path.exists() and path.with_name("managing.json.bad").exists()
    assert "is damaged" in caplog.text and books.totals["import_wh"] == 0.0


def test_the_month_so_far_for_home_assistant_is_the_cap_of_this_month_only(tmp_path):
    """books.month_bill (the MQTT state's ``month_bill``): the energy term less the compensation
    capped at it (RD 244/2019 art. 14.3); a month not yet booked is zeros, not last month's."""
    from gestor.core.setpoint import MonthCap
    mad = ZoneInfo("Europe/Madrid")
    s, states, store, books = _books(tmp_path)
    june = datetime(2025, 6, 30, 23, 30, tzinfo=mad)
    assert books.month_bill(june) == {"month": "2025-06", "energy_eur": 0.0, "compensation_eur": 0.0,
                                      "energy_after_compensation_eur": 0.0, "capped": False}
    books.cap = MonthCap("2025-06", 3.0, 1.25)
    assert books.month_bill(june) == {"month": "2025-06", "energy_eur": 3.0, "compensation_eur": 1.25,
                                      "energy_after_compensation_eur": 1.75, "capped": False}
    books.cap = MonthCap("2025-06", 3.0, 4.5)     # a sunny month past the cap: the surplus beyond it is worth 0
    assert books.month_bill(june)["energy_after_compensation_eur"] == 0.0 and books.month_bill(june)["capped"]
    july = june + timedelta(hours=1)              # 00:30 on 1 July in Madrid (22:30 UTC on 30 June)
    assert books.month_bill(july)["month"] == "2025-07" and books.month_bill(july)["energy_eur"] == 0.0
