"""managing killed mid-period and started again continues the same period's balance."""
from datetime import datetime, timedelta, timezone

import pytest

import managing
import monitoring
from drivers.store.influx import NullStore
from gestor.core.balance import Balance
from gestor.clock import SimClock
from gestor.sim.lockstep import run_lockstep
from tests.conftest import make_settings

UTC = timezone.utc
START = datetime(2022, 6, 11, 9, 40, 0, tzinfo=UTC)  # 11:40 CEST, sunny


def test_restart_mid_period_continues_the_balance(tmp_path):
    s = make_settings(tmp_path, meter={"start": START.isoformat()})
    clock = SimClock(START)
    mon = monitoring.Monitoring(s, clock, NullStore())
    readings = []

    def read():
        r = mon.cycle()
        if r is not None:
            readings.append(r)

    mgr = managing.Managing(s, clock, NullStore())
    mgr.start()
    run_lockstep(clock, [(5, read), (10, mgr.cycle)], START + timedelta(minutes=37, seconds=3))
    # killed: no stop(), no final write. 40 s later a new process starts.
    run_lockstep(clock, [(5, read)], START + timedelta(minutes=37, seconds=43))
    mgr2 = managing.Managing(s, clock, NullStore())
    period = datetime(2022, 6, 11, 10, 0, tzinfo=UTC)  # 12:00 CEST; killed at 12:17:03
    assert mgr2.balance.current is not None and mgr2.balance.current.start == period
    mgr2.start()
    run_lockstep(clock, [(5, read), (10, mgr2.cycle)], period + timedelta(hours=1, seconds=30))
    (closed,) = [p for p in mgr2.books.closed if p.start == period]

    reference = Balance(s.billing.period_s, s.tz, s.billing.max_gap_s)
    ref = {p.start: p for r in readings for p in reference.update(r)}
    expected = ref[closed.start]
    assert closed.balance_wh == pytest.approx(expected.balance_wh, abs=1e-6)
    assert closed.covered_s == pytest.approx(expected.covered_s)


def test_restart_in_a_new_period_starts_clean(tmp_path):
    s = make_settings(tmp_path, meter={"start": START.isoformat()})
    clock = SimClock(START)
    mon = monitoring.Monitoring(s, clock, NullStore())
    mgr = managing.Managing(s, clock, NullStore())
    mgr.start()
    run_lockstep(clock, [(5, mon.cycle), (10, mgr.cycle)], START + timedelta(minutes=10))
    clock.advance(3600)
    mgr2 = managing.Managing(s, clock, NullStore())
    assert mgr2.balance.current is None
