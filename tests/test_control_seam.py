"""The control core's device seam (gestor.core.devices): a load is a device of a kind that offers
powers (W, positive: taken from the house bus) and reports the power it takes in its state. Today
the one kind is on/off, and a controller running with it decides as it always has."""
from __future__ import annotations

from datetime import datetime, timezone

from gestor.core.control import Core, LoadState
from gestor.core.devices import OnOff
from gestor.core.guards import LoadLimits
from gestor.settings import parse_settings
from tests.conftest import EXAMPLE, example_raw

T0 = datetime(2026, 6, 1, 10, 0, tzinfo=timezone.utc).timestamp()  # 12:00 in Madrid, a period's start


def settings(policy: str = "time_to_consume"):
    raw = example_raw()
    raw["policy"]["name"] = policy
    return parse_settings(raw, str(EXAMPLE), EXAMPLE)


def test_on_off_offers_exactly_nothing_or_its_power():
    kind = OnOff(1000.0)
    assert kind.options_w == (0.0, 1000.0)
    assert kind.taken_w(True) == 1000.0
    assert kind.taken_w(False) == 0.0
    assert kind.taken_w(None) == 0.0  # unknown: counted as nothing drawn
    assert kind == OnOff(1000.0) and kind != OnOff(700.0)


def test_a_load_is_on_off_at_its_rated_power_and_reports_what_it_takes():
    s = settings()
    for cfg in s.loads_by_priority():
        ld = LoadState(cfg, LoadLimits.of(cfg))
        assert ld.kind == OnOff(cfg.power_w)
        assert ld.options_w == (0.0, cfg.power_w)
        assert ld.power_w == cfg.power_w
        assert ld.taken_w == 0.0  # off at the start
        ld.on = True
        assert ld.taken_w == cfg.power_w
        ld.on = None
        assert ld.taken_w == 0.0
        ld.on = False
        assert ld.taken_w == 0.0


def test_the_loads_power_after_a_switch_is_what_they_take():
    s = settings()
    core = Core(s)
    first, second = core.loads[0], core.loads[1]
    core.switched(first, True, T0 + 10.0, T0)
    assert first.on and first.since_s == T0 + 10.0 and first.switches == {T0: 1}
    # a reading taken after the switch carries the first load's power; one before it, none
    assert core.on_w_at(T0 + 11.0) == first.cfg.power_w
    assert core.on_w_at(T0 + 10.0) == 0.0
    core.switched(second, True, T0 + 20.0, T0)
    assert core.on_w_at(T0 + 21.0) == first.cfg.power_w + second.cfg.power_w


def run(core: Core, surplus_w) -> list[tuple[float, str, bool]]:
    """Core cycles every 10 s on readings of ``surplus_w(t)`` (W before the loads), the loads'
    power taken off the net as the meter would see it; the switches made (time, load, on)."""
    out = []
    for k in range(1, 361 * 2):
        t = T0 + 10.0 * k
        net = surplus_w(t) - sum(ld.taken_w for ld in core.loads)
        _, todo = core.step_s(t, [(t - 0.5, net, None, None, None, None)], reading_age_s=0.5)
        for w in todo:
            ld = next(ld for ld in core.loads if ld.name == w.load)
            core.switched(ld, w.on, t, core.period_start_s)
            out.append((t, w.load, w.on))
    return out


def test_a_core_with_on_off_loads_decides_as_before():
    """With 2500 W of surplus in the first hour and 300 W in the second, time_to_consume puts
    both loads on early in the first hour (1000 + 700 W fit) and takes them off again in the
    second, last in first out; a core whose loads are given their kind explicitly makes the very
    same switches."""
    s = settings()
    surplus = (lambda t: 2500.0 if t < T0 + 3600.0 else 300.0)
    implicit = run(Core(s), surplus)
    loads = [LoadState(c, LoadLimits.of(c), kind=OnOff(c.power_w)) for c in s.loads_by_priority()]
    explicit = run(Core(s, loads), surplus)
    assert implicit == explicit
    names = [c.name for c in s.loads_by_priority()]
    ons = [(n, on) for _, n, on in implicit]
    assert ons[:2] == [(names[0], True), (names[1], True)]
    assert all(t < T0 + 3600.0 for t, _, on in implicit if on)
    assert (names[1], False) in ons and (names[0], False) in ons
    assert ons.index((names[1], False)) < ons.index((names[0], False))


def test_a_change_made_outside_the_controller_is_seen_by_its_next_decision():
    """managing sets a load's state itself (a restore, a relay found off): the controller's next
    decision sees it, and another controller's loads are not mixed into it."""
    s = settings()
    core, other = Core(s), Core(s)
    first = core.loads[0]
    assert core.decide(T0 + 600.0, T0, T0 + 3600.0, -500.0, -2000.0, reading_age_s=0.0) == []
    first.on = True  # found on (outside the controller): the deficit now switches it off
    todo = core.decide(T0 + 610.0, T0, T0 + 3600.0, -500.0, -2000.0, reading_age_s=0.0)
    assert [(w.load, w.on) for w in todo] == [(first.name, False)]
    other.loads[0].on = True  # another controller's load: this one's views do not change
    assert other.decide(T0 + 610.0, T0, T0 + 3600.0, -500.0, -2000.0, reading_age_s=0.0)[0].on is False
    first.on = False
    assert core.decide(T0 + 620.0, T0, T0 + 3600.0, -500.0, -2000.0, reading_age_s=0.0) == []
