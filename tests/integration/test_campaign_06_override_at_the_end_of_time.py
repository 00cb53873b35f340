"""Finding 06: an override whose end is near year 9999 crashes managing at every cycle; a longer
one is a traceback in ``gestor override`` and a 500 from the web page.

What happens: ``gestor override water_heater off --for <N>s`` (or the web page's ``for``) with N
such that the end falls on 9999-12-31 23:30 UTC is accepted and written. managing's next cycle
logs the new override with ``Override.describe``, whose ``astimezone(Europe/Madrid)`` overflows:
``OverflowError: date value out of range`` out of ``Managing.cycle``. The daemon exits (loads
switched off), systemd restarts it, the next cycle reads the same file and crashes again: no
control until someone edits overrides.json by hand. The file itself passes the state-file check
(any aware datetime). Longer durations ("99999999999h") raise OverflowError from
``parse_duration``/``set_override``: not the ValueError the CLI and the web handler turn into one
line, so a traceback / HTTP 500.

Class: a state file that is valid but unusable (class 4's "never stops managing"), and bad input
that is not one line (invariant 4).
Consequence: managing in a crash loop (loads off, no surplus used); tracebacks.
Severity: crash.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from gestor.sim.lockstep import run_lockstep
from gestor.runtime.overrides import apply_override
from tests.integration.test_faults import daemons
from tests.integration.test_safety import T0, sunny_csv

END = datetime(9999, 12, 31, 23, 30, tzinfo=timezone.utc)


def test_an_override_ending_in_year_9999_does_not_crash_managing(tmp_path):
    s, clock, mon, mgr = daemons(tmp_path, sunny_csv(tmp_path / "sun.csv", 30))
    run_lockstep(clock, [(5, mon.cycle), (10, mgr.cycle)], T0 + timedelta(minutes=2))
    seconds = int((END - clock.now()).total_seconds())
    try:
        apply_override(s, "water_heater", "off", f"{seconds}s", clock.now(), by="test")
    except ValueError:
        return  # refused in one line: fine
    clock.advance(10)
    mgr.cycle()  # raised OverflowError: date value out of range
    assert mgr.loads[0].on is False


def test_an_override_in_year_9999_in_the_file_does_not_crash_managing(tmp_path):
    s, clock, mon, mgr = daemons(tmp_path, sunny_csv(tmp_path / "sun.csv", 30))
    run_lockstep(clock, [(5, mon.cycle), (10, mgr.cycle)], T0 + timedelta(minutes=2))
    (s.paths.state_dir / "overrides.json").write_text(json.dumps(
        {"water_heater": {"on": False, "until": "9999-12-31T23:59:59+00:00", "by": "x"}}))
    clock.advance(10)
    mgr.cycle()
    assert mgr.loads[0].on is False


@pytest.mark.parametrize("text", ["99999999999h", "100000000h", "9" * 30 + "s"])
def test_a_huge_override_duration_is_a_one_line_error(tmp_path, text):
    s, clock, mon, mgr = daemons(tmp_path, sunny_csv(tmp_path / "sun.csv", 30))
    with pytest.raises(ValueError):
        apply_override(s, "water_heater", "on", text, clock.now(), by="test")
