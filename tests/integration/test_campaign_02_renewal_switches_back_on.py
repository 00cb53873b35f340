"""Finding 02: managing sends "on" to a Shelly that reads off, when its power reading lags.

What happens: the household switches the water heater off at the Shelly (its button or app).
A real Shelly's ``apower`` follows its output with a delay (its meter updates about once a
second). At managing's next cycle ``_check`` reads ``output: false`` but ``apower`` still 1000 W;
``still_drawing_w`` is not None, so ``_check`` goes on to renew the dead-man timer:
``Switch.Set?on=true&toggle_after=...`` -- the load is switched back on, with a fresh timer of up
to an hour.

Class: a relay's read-back against its meter (class 5's mechanism, turned the other way): the
"not believed" branch of the read-back is taken as "still on" and renewed.
Consequence: a load the household switched off is switched on again by gestor (README: "Managing
never sends 'on' (not even a dead-man timer renewal) to a relay that does not read on").
Severity: load left on.
"""
from __future__ import annotations

from datetime import timedelta

from gestor.sim.lockstep import run_lockstep
from tests.conftest import free_port
from tests.emulators.http_devices import ShellyRelayDevice
from tests.integration.test_faults import daemons
from tests.integration.test_safety import T0, sunny_csv


class LaggingShelly(ShellyRelayDevice):
    """A Shelly Gen2 whose apower follows its output ``lag_s`` late (as a real one's meter)."""

    lag_s = 2.0

    def __init__(self, port: int) -> None:
        super().__init__(port, 2, load_w=1000.0)
        self.changed_at = -1e9
        self.power_before = 0.0

    def _set(self, on, timer):
        was = super()._set(on, timer)
        if was != self.output:
            self.changed_at, self.power_before = self.clock(), (self.load_w if was else 0.0)
        return was

    def press_off(self) -> None:  # its own button
        self.changed_at, self.power_before = self.clock(), (self.load_w if self.output else 0.0)
        self.output, self.off_at = False, None

    def route(self, path, q):
        code, body = super().route(path, q)
        if path == "/rpc/Switch.GetStatus" and self.clock() - self.changed_at < self.lag_s:
            body = {**body, "apower": self.power_before}
        return code, body


def test_a_shelly_switched_off_at_its_button_is_not_switched_back_on(tmp_path):
    dev = LaggingShelly(free_port()).start()
    try:
        loads = [{"name": "water_heater", "power_w": 1000, "relay": {"driver": "shelly", "host": f"127.0.0.1:{dev.port}"}}]
        s, clock, mon, mgr = daemons(tmp_path, sunny_csv(tmp_path / "sun.csv", 30), loads=loads)
        dev.clock = clock.monotonic
        tasks = [(5, mon.cycle), (10, mgr.cycle)]
        run_lockstep(clock, tasks, T0 + timedelta(minutes=3))
        assert dev.is_on() and mgr.loads[0].on
        clock.advance(9)
        dev.press_off()                  # the household switches it off at the Shelly
        n = len(dev.requests)
        clock.advance(1)
        mgr.cycle()                      # managing's next cycle, within the meter's lag
        ons = [r for r in dev.requests[n:] if "on=true" in r]
        assert not ons, f"managing switched the load back on: {ons}"
        assert not dev.is_on()
    finally:
        dev.stop()
