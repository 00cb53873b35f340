"""managing's relay commander (gestor.runtime.relays) on the simulated relays: a confirmed switch
is counted once and stored; a relay that does not answer leaves its load unknown and is retried
with a doubling backoff; a load switched off outside gestor is left off until the period ends."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from gestor.clock import SimClock
from gestor.core.control import Core, LoadState
from gestor.core.guards import LoadLimits
from gestor.core.policies import Wish
from gestor.runtime.daemon import context, open_relays
from gestor.runtime.relays import LoadRuntime, Relays
from tests.conftest import make_settings
from tests.test_runtime_books import Lines

T0 = datetime(2026, 6, 10, 10, 20, tzinfo=timezone.utc)
END = datetime(2026, 6, 10, 11, 0, tzinfo=timezone.utc)   # the period's end


def _relays(tmp_path, latched=lambda: False, **loads_relay):
    """The example's two loads; ``loads_relay``: a load's relay section replaced; ``latched``:
    the stop latch as the commander reads it."""
    raw_loads = [{"name": "water_heater", "power_w": 1000, "min_on_s": 0, "min_off_s": 0,
                  "relay": loads_relay.get("water_heater", {"driver": "simulated"})},
                 {"name": "pool_pump", "power_w": 700, "min_on_s": 0, "min_off_s": 0,
                  "relay": loads_relay.get("pool_pump", {"driver": "simulated"})}]
    s = make_settings(tmp_path, loads=raw_loads)
    clock = SimClock(T0)
    opened = open_relays(s, context(s, clock))
    loads = [LoadRuntime(LoadState(ld, LoadLimits.of(ld)), opened[ld.name]) for ld in s.loads_by_priority()]
    core = Core(s, [ld.state for ld in loads])
    counted: list[tuple[str, datetime]] = []
    store = Lines()
    r = Relays(s, core, store, loads, lambda name, now: counted.append((name, now)), latched)
    return s, clock, r, {ld.name: ld for ld in loads}, counted, store


def test_a_confirmed_switch_is_counted_once_and_stored(tmp_path, caplog):
    caplog.set_level(logging.INFO, "gestor")
    s, clock, r, ld, counted, store = _relays(tmp_path)
    assert r.all_off("start: every load off until the policy decides", clock.now())
    assert counted == [] and r.switches_total == 0            # the start's off is no switch
    final = r.apply([Wish("water_heater", True, "surplus")], {}, [], clock.now(), 2400.0, END)
    assert final[0] == Wish("water_heater", True, "surplus")
    assert ld["water_heater"].on is True and ld["water_heater"].reason == "surplus"
    assert counted == [("water_heater", T0)] and r.switches_total == 1
    decisions = store.fields("decision")
    assert decisions[-1]["on"] is True and decisions[-1]["ok"] is True and decisions[-1]["switched"] == 1
    loads = store.fields("load")
    assert {d["power_w"] for d in loads[-2:]} == {1000.0, 0.0}
    assert r.published(0.0, {"water_heater": 1})["water_heater"]["switches_today"] == 1
    r.close(wait=True)


def test_a_relay_that_does_not_answer_leaves_its_load_unknown_and_backs_off(tmp_path, caplog):
    caplog.set_level(logging.INFO, "gestor")
    s, clock, r, ld, counted, store = _relays(tmp_path, water_heater={"driver": "simulated", "fault": "no_answer"})
    assert not r.all_off("start", clock.now())
    heater = ld["water_heater"]
    assert heater.on is None and heater.failures == 1
    assert heater.retry_at == T0 + timedelta(seconds=s.managing.interval_s)
    assert "load water_heater FAILED (1 in a row)" in caplog.text
    assert r.held(clock.now(), {}) == {"water_heater": "relay state unknown after an error: off until it confirms"}
    clock.sleep(s.managing.interval_s / 2)   # still backing off: not commanded
    r.apply([Wish("water_heater", False, "stale meter")], {}, [], clock.now(), 2400.0, END)
    assert heater.failures == 1
    clock.sleep(s.managing.interval_s)     # due again: fails again, the wait doubles
    r.apply([Wish("water_heater", False, "stale meter")], {}, [], clock.now(), 2400.0, END)
    assert heater.failures == 2 and heater.retry_at == clock.now() + timedelta(seconds=2 * s.managing.interval_s)
    assert all(d["ok"] is False for d in store.fields("decision") if "error" in d)
    r.close(wait=True)


def test_a_load_switched_off_outside_gestor_stays_off_until_the_period_ends(tmp_path, caplog):
    caplog.set_level(logging.INFO, "gestor")
    s, clock, r, ld, counted, store = _relays(tmp_path)
    r.all_off("start", clock.now())
    r.apply([Wish("pool_pump", True, "surplus")], {}, [], clock.now(), 2400.0, END)
    pump = ld["pool_pump"]
    assert pump.on is True
    pump.relay.set(False)     # its own app switches it off
    clock.sleep(10)
    r.apply([], {}, [], clock.now(), 2390.0, END)
    assert pump.on is False and pump.hold_off_until == END
    assert "load pool_pump found OFF although gestor had it on" in caplog.text
    # the policy wants it on again: it is left off, for the reason it went off
    final = r.apply([Wish("pool_pump", True, "surplus")], {}, [], clock.now(), 2380.0, END)
    assert final[1].on is False and final[1].reason.startswith("switched off outside gestor")
    assert pump.relay.state() is False and r.held(clock.now(), {}) == {"pool_pump": "held by a guard"}
    assert r.held(END, {}) == {} and "pool_pump: back to auto" in caplog.text   # the period is over
    r.close(wait=True)


def test_no_load_goes_on_once_the_latch_is_set_even_within_the_cycle(tmp_path, caplog):
    """Issue 32, item 5, the other side of the race: a stop sets the latch after managing's cycle
    read it; the policy's "on" of that cycle is not sent."""
    caplog.set_level(logging.INFO, "gestor")
    latch = {"set": False}
    s, clock, r, ld, counted, store = _relays(tmp_path, latched=lambda: latch["set"])
    r.all_off("start", clock.now())
    latch["set"] = True
    final = r.apply([Wish("water_heater", True, "surplus")], {}, [], clock.now(), 2400.0, END)
    assert final[0].on is False and final[0].reason.startswith("stop latch set")
    assert ld["water_heater"].relay.state() is False and counted == []
    r.close(wait=True)
