"""monitoring + managing on a replayed real day (2022-06-11, house file) with a simulated clock,
writing to the real test InfluxDB; assertions are on what InfluxDB holds afterwards."""
from __future__ import annotations

import math
import uuid
from bisect import bisect_left
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest

import managing
import monitoring
from drivers.meters.replay import ReplayData
from drivers.store.influx import InfluxStore
from gestor.clock import SimClock
from gestor.sim.lockstep import run_lockstep
from tests.conftest import make_settings

UTC = timezone.utc


@dataclass
class Day:
    settings: object
    data: ReplayData
    start: datetime
    until: datetime
    client: object
    mgr: managing.Managing
    mon: monitoring.Monitoring

    def q(self, query: str) -> list[dict]:
        return list(self.client.query(query, epoch="ms").get_points())


@pytest.fixture(scope="module")
def day(influxd, tmp_path_factory):
    db = f"t_day_{uuid.uuid4().hex[:8]}"
    tmp = tmp_path_factory.mktemp("day")
    s = make_settings(tmp, influxd, db)
    data = ReplayData.load(s.meter)
    start = data.first
    until = datetime(2022, 6, 12, 0, 0, 30, tzinfo=UTC)
    clock = SimClock(start)
    store = InfluxStore.from_settings(s.store).open()
    mon = monitoring.Monitoring(s, clock, store)
    mgr = managing.Managing(s, clock, store)
    mgr.start()
    run_lockstep(clock, [(s.monitoring.interval_s, mon.cycle), (s.managing.interval_s, mgr.cycle)], until)
    mgr.stop()
    assert store.flush(60)
    store.close()
    client = influxd.client(db)
    yield Day(s, data, start, until, client, mgr, mon)
    client.drop_database(db)
    client.close()


def _ms(t: float) -> int:
    """Epoch s → the ms InfluxDB stores (timestamps are written at ms precision, truncated)."""
    return round(t * 1e6) // 1000


def test_every_reading_is_stored_once_with_its_recorded_timestamp(day):
    expected = [_ms(t) for t in day.data.t if day.start.timestamp() <= t < day.until.timestamp()]
    stored = [p["time"] for p in day.q("SELECT net_w FROM meter")]
    assert len(expected) > 8600
    assert stored == expected
    assert day.mon.failures == 0


def _relay_history(day) -> dict[str, list[tuple[int, bool]]]:
    out: dict[str, list[tuple[int, bool]]] = {}
    for p in day.q('SELECT "on", ok, reason, load FROM decision'):
        if p["ok"]:
            out.setdefault(p["load"], []).append((p["time"], p["on"]))
    return out


def _on_at(history: list[tuple[int, bool]], t_ms: int) -> bool:
    """Relay state seen by a read at clock time t: after the last decision strictly before t
    (at equal times monitoring reads before managing decides)."""
    i = bisect_left([h[0] for h in history], t_ms) - 1
    return history[i][1] if i >= 0 else False


def expected_net(day) -> list[tuple[float, float]]:
    """(t, net_w) the meter should have seen: the CSV's base net power (production minus
    max(powerC - powerL1 - powerL2, 0)) minus each simulated load's power while its relay was on
    at the moment of the read (monitoring reads on a 5 s grid from the start)."""
    hist = _relay_history(day)
    powers = {ld.name: ld.power_w for ld in day.settings.loads}
    t0 = day.start.timestamp()
    step = day.settings.monitoring.interval_s
    out = []
    for i, t in enumerate(day.data.t):
        if not (t0 <= t < day.until.timestamp()):
            continue
        read_at = t0 + math.ceil((t - t0) / step - 1e-9) * step
        loads_w = sum(p for name, p in powers.items() if _on_at(hist.get(name, []), _ms(read_at)))
        out.append((t, day.data.net_w[i] - loads_w))
    return out


def test_stored_net_power_is_the_base_load_plus_the_switched_loads(day):
    exp = expected_net(day)
    stored = [p["net_w"] for p in day.q("SELECT net_w FROM meter")]
    assert len(stored) == len(exp)
    worst = max(abs(a - b) for a, (_, b) in zip(stored, exp))
    assert worst < 1e-6


def independent_hourly_balance(samples: list[tuple[float, float]], max_gap_s: float) -> dict[int, float]:
    """Trapezoids between consecutive samples, cut at whole UTC hours (= Madrid hours in June:
    the offset is a whole number of hours) with linearly interpolated power; keyed by hour start."""
    out: dict[int, float] = {}
    for (ta, pa), (tb, pb) in zip(samples, samples[1:]):
        if tb - ta > max_gap_s:
            continue
        cuts = [ta] + [h for h in range(int(ta // 3600 + 1) * 3600, int(tb), 3600)] + [tb]
        for a, b in zip(cuts, cuts[1:]):
            fa = pa + (pb - pa) * (a - ta) / (tb - ta)
            fb = pa + (pb - pa) * (b - ta) / (tb - ta)
            hour = int(a // 3600) * 3600
            out[hour] = out.get(hour, 0.0) + (fa + fb) / 2 * (b - a) / 3600
    return out


def test_hourly_balances_equal_an_independent_integration_within_a_tenth_of_a_wh(day):
    expected = independent_hourly_balance(expected_net(day), day.settings.billing.max_gap_s)
    periods = day.q("SELECT balance_wh, complete FROM period")
    assert len(periods) == 24  # 2022-06-11 00:00 → 24:00 UTC, every hour closed
    assert sum(1 for p in periods if p["complete"]) == 23  # the first starts 1.6 s late
    for p in periods:
        assert p["balance_wh"] == pytest.approx(expected[p["time"] // 1000], abs=0.1), p


def test_last_running_balance_of_each_hour_is_that_hours_final_balance(day):
    """What `SELECT last(balance_wh) FROM balance GROUP BY time(1h)` shows a user: the running
    balance at the hour's last reading, short of the final only by the last <=10 s of that hour."""
    final = {p["time"]: p["balance_wh"] for p in day.q("SELECT balance_wh FROM period")}
    last = day.q("SELECT last(balance_wh) FROM balance WHERE time >= '2022-06-11T00:00:00Z' "
                 "AND time < '2022-06-12T00:00:00Z' GROUP BY time(1h)")
    assert len(last) == 24
    for p in last:
        assert p["last"] == pytest.approx(final[p["time"]], abs=12.0), p  # <= 10.4 s x ~4 kW


def test_every_switch_has_a_decision_with_a_reason(day):
    decisions = {(p["load"], p["time"]): p for p in day.q('SELECT "on", ok, reason, load FROM decision')}
    switches = 0
    for ld in day.settings.loads:
        states = [(p["time"], p["on"]) for p in day.q(f"SELECT \"on\" FROM load WHERE \"load\" = '{ld.name}'")]
        prev = False
        for t, on in states:
            if on != prev:
                d = decisions[(ld.name, t)]
                assert d["ok"] and d["on"] == on and len(d["reason"]) > 10
                switches += 1
            prev = on
    assert switches == day.mgr.relays.switches_total  # every confirmed switch shows up in `load`
    assert switches >= 10


def test_the_day_captures_surplus_without_importing_more(day):
    periods = day.q("SELECT balance_wh, loads_wh FROM period")
    exported = sum(max(p["balance_wh"], 0) for p in periods)
    imported = sum(max(-p["balance_wh"], 0) for p in periods)
    without = [p["balance_wh"] + p["loads_wh"] for p in periods]
    exported0 = sum(max(b, 0) for b in without)
    imported0 = sum(max(-b, 0) for b in without)
    assert exported0 > 10_000  # a sunny June day: >10 kWh would have been exported
    assert exported < 0.1 * exported0
    assert imported <= imported0 + 50  # Wh


def test_loads_end_off(day):
    assert all(ld.on is False for ld in day.mgr.loads)
    last = day.q('SELECT last("on") FROM decision GROUP BY "load"')
    assert last and all(p["last"] is False for p in last)
