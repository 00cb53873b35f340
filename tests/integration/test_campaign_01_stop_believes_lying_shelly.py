"""Finding 01: stop-loads believes a Shelly that answers ``output: false`` while its own meter
shows the load drawing.

What happens: a Shelly Gen2 whose contact is welded and that answers ``output: false`` (its
``apower`` still 1000 W). managing does not believe such an "off" (issue 23, class 5: "an off that
the relay's own meter contradicts is a failed command"), but stop-loads' ``_stop_one`` only looks
at the read-back state: the table says ``OK off``, and the command exits 0.

Class: a relay that lies (class 5), in the emergency stop; the one mechanism (``still_drawing_w``)
lives in managing only.
Consequence: the emergency stop lies: the household is told every load is off while a 1 kW load
is running (the README: "stop-loads exits 0 only when ... every load confirmed off").
Severity: stop lies.
"""
from __future__ import annotations

import os

import yaml

import stop_loads
from tests.conftest import free_port, settings_file
from tests.emulators.http_devices import ShellyRelayDevice


def test_stop_loads_does_not_confirm_a_shelly_whose_meter_shows_the_load(tmp_path, monkeypatch, capsys):
    dev = ShellyRelayDevice(free_port(), 2, load_w=1000.0).start()
    try:
        dev.output, dev.stuck, dev.lies = True, True, True  # on, welded, answering output: false
        loads = [{"name": "water_heater", "power_w": 1000,
                  "relay": {"driver": "shelly", "host": f"127.0.0.1:{dev.port}", "timeout_s": 2}}]
        f = settings_file(tmp_path, loads=loads)
        monkeypatch.setenv(stop_loads.STATE_DIR_ENV, str(tmp_path / "state"))
        code = stop_loads.main(["--config", str(f), "--deadline-s", "10"], hard_exit=False)
        out = capsys.readouterr()
        assert dev.is_on()  # the load really is on
        assert code == 1, f"stop-loads exited {code} with the load drawing 1000 W:\n{out.out}"
        assert "OK off" not in out.out
        assert "water_heater" in out.err and "NOT CONFIRMED" in out.err
    finally:
        dev.stop()
