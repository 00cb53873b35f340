"""Simulated relay: keeps its state in a small file under the runtime directory, so that the
managing daemon, stop_loads and the replay meter (in another process) all see the same relay.

With the replay meter's ``add_simulated_loads: true``, the power of every simulated load that is
on is added to the replayed consumption, so the balance sees what the loads do.

``fault`` simulates a broken device for drills and tests: ``no_answer`` makes every call raise
RelayError; ``stuck_on`` accepts commands but stays on.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from drivers import DriverContext
from drivers.relays.base import RelayError, RelaySettings, register_relay
from gestor.files import atomic_write_text, read_small_text

SIM_DIR = "sim-relays"


class SimulatedRelaySettings(RelaySettings):
    driver: Literal["simulated"] = "simulated"
    fault: Literal["none", "no_answer", "stuck_on"] = "none"


def simulated_loads_power_w(run_dir: Path) -> float:
    """Total W of the simulated loads that are on now (read from their state files)."""
    total = 0.0
    d = Path(run_dir) / SIM_DIR
    if not d.is_dir():
        return 0.0
    for f in d.glob("*.json"):
        try:
            s = json.loads(read_small_text(f, 4096))
        except (OSError, ValueError):
            continue
        if s.get("on"):
            total += float(s.get("power_w", 0.0))
    return total


@register_relay("simulated", SimulatedRelaySettings)
class SimulatedRelay:
    def __init__(self, settings: SimulatedRelaySettings, ctx: DriverContext, load: str, power_w: float) -> None:
        self.settings = settings
        self.path = Path(ctx.run_dir) / SIM_DIR / f"{load}.json"
        self.load = load
        self.power_w = float(power_w)
        self.auto_off_s: float | None = None

    def _check(self) -> None:
        if self.settings.fault == "no_answer":
            raise RelayError(f"simulated relay {self.load}: no answer (fault=no_answer)")

    def set(self, on: bool, auto_off_s: float | None = None) -> None:
        self._check()
        if self.settings.fault == "stuck_on":
            on = True
        self.auto_off_s = auto_off_s if on else None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps({"on": bool(on), "power_w": self.power_w}))

    def state(self) -> bool:
        self._check()
        try:
            return bool(json.loads(read_small_text(self.path, 4096)).get("on", False))
        except FileNotFoundError:
            return False
        except (OSError, ValueError) as e:
            raise RelayError(f"simulated relay {self.load}: unreadable state {self.path}: {e}") from e

    def close(self) -> None:
        pass
