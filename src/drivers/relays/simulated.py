"""Simulated relay: keeps its state in a small file under the runtime directory, so that the
managing daemon, stop_loads and the replay meter (in another process) all see the same relay.

With the replay meter's ``add_simulated_loads: true``, the power of every simulated load that was
on when a sample was measured is added to the replayed consumption, so the balance sees what the
loads do (:func:`simulated_loads_power_w`; the state before a switch counts for a sample measured
before it, as managing's control core attributes it).

Like a Shelly, the simulated device has its own dead-man timer: an "on" with ``auto_off_s``
switches itself off that many seconds later (on the daemons' monotonic clock, as a device counts
its own seconds whatever the Pi's wall clock does) unless renewed
(``refresh_on_cycle``), so a managing that dies cannot leave it on; tests prove the bound with it.

``fault`` simulates a broken device for drills and tests: ``no_answer`` makes every call raise
RelayError; ``stuck_on`` accepts commands but stays on (and ignores its timer: welded contacts);
``welded_reads_off`` stays on likewise but reads back what was commanded (a relay module that
reads its own coil, not the contactor behind it; only the grid meter can tell); ``lies_off``
is honest until it has been on for ``LIES_AFTER_S``, then reads off while its contact stays on
(its load drawing) and ignores "off" commands, its dead-man timer still running (a relay found
"off" while drawing, issue 32: only the grid meter can tell, and only the timer ends it).

State file (JSON): ``on`` (bool, as commanded), ``power_w`` (W), ``since_s`` (epoch s of the last
change; ``since_mono_s`` the same on the monotonic clock), ``before`` (bool, the state before
it), ``auto_off_at_s`` (epoch s the timer ends, or null; for the replay meter's look back) and
``auto_off_mono_s`` (the same on the monotonic clock: what the device itself goes by).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Literal

from drivers import DriverContext
from drivers.relays.base import RelayError, RelaySettings, register_relay
from gestor.files import atomic_write_text, read_small_text

SIM_DIR = "sim-relays"
STATE_MAX_BYTES = 4096
LIES_AFTER_S = 60.0  # fault lies_off: on this long (monotonic s), it starts reading off


class SimulatedRelaySettings(RelaySettings):
    driver: Literal["simulated"] = "simulated"
    fault: Literal["none", "no_answer", "stuck_on", "welded_reads_off", "lies_off"] = "none"


def _expired(s: dict[str, Any], at_s: float) -> bool:
    """Whether the dead-man timer in state ``s`` had ended at epoch ``at_s`` (welded: never)."""
    end = s.get("auto_off_at_s")
    return isinstance(end, (int, float)) and at_s >= end and not s.get("welded")


def _on_at(s: dict[str, Any], at_s: float) -> bool:
    """Whether the relay whose state file holds ``s`` was on at epoch ``at_s``: the state
    commanded before ``at_s`` (``before`` for an instant not after the last change, up to a
    minute back: further is another process's clock), and not past its dead-man timer."""
    since = s.get("since_s")
    recent = isinstance(since, (int, float)) and since - 60.0 <= at_s <= since
    on = bool(s.get("before")) if recent else bool(s.get("on"))
    return on and not _expired(s, at_s)


def read_state(path: Path) -> dict[str, Any]:
    """A simulated device's state file (a relay's here, a setpoint device's in
    :mod:`drivers.setpoints.simulated`): {} when there is none. Raises OSError, or ValueError
    when it is not a JSON object."""
    try:
        s = json.loads(read_small_text(path, STATE_MAX_BYTES))
    except FileNotFoundError:
        return {}
    if not isinstance(s, dict):
        raise ValueError("not an object")
    return s


def answer_or_raise(fault: str | None, error: type[Exception], what: str) -> None:
    """Raise ``error`` naming ``what`` when the simulated device's ``fault`` is ``no_answer``
    (a relay's or a setpoint device's: one place for both)."""
    if fault == "no_answer":
        raise error(f"{what}: no answer (fault=no_answer)")


def read_state_or_raise(path: Path, error: type[Exception], what: str) -> dict[str, Any]:
    """:func:`read_state`, an unreadable file raised as ``error`` naming ``what``, the path and why."""
    try:
        return read_state(path)
    except (OSError, ValueError) as e:
        raise error(f"{what}: unreadable state {path}: {e}") from e


def total_power_w(folder: Path, power_w: Callable[[dict[str, Any]], float]) -> float:
    """The sum of ``power_w(state)`` over the state files in ``folder``, W (an unreadable one
    counts 0: the replay meter must not fail on a file being replaced)."""
    total = 0.0
    if not folder.is_dir():
        return 0.0
    for f in folder.glob("*.json"):
        try:
            total += power_w(read_state(f))
        except (OSError, ValueError, TypeError):
            continue
    return total


def simulated_loads_power_w(run_dir: Path, at_s: float) -> float:
    """Total W of the simulated loads that were on at epoch ``at_s`` (from their state files)."""
    return total_power_w(Path(run_dir) / SIM_DIR,
                         lambda s: float(s.get("power_w", 0.0)) if _on_at(s, at_s) else 0.0)


@register_relay("simulated", SimulatedRelaySettings)
class SimulatedRelay:
    refresh_on_cycle = True  # its dead-man timer is renewed by managing's every cycle, as a Shelly's

    def __init__(self, settings: SimulatedRelaySettings, ctx: DriverContext, load: str, power_w: float) -> None:
        self.settings = settings
        self.clock = ctx.clock
        self.path = Path(ctx.run_dir) / SIM_DIR / f"{load}.json"
        self.load = load
        self.power_w = float(power_w)
        self.auto_off_s: float | None = None

    def _check(self) -> None:
        answer_or_raise(self.settings.fault, RelayError, f"simulated relay {self.load}")

    def _read(self) -> dict[str, Any]:
        return read_state_or_raise(self.path, RelayError, f"simulated relay {self.load}")

    def set(self, on: bool, auto_off_s: float | None = None) -> None:
        self._check()
        commanded = bool(on)
        welded = self.settings.fault in ("stuck_on", "welded_reads_off")
        if welded:
            on = True
        now_s = self.clock.now().timestamp()
        try:
            old = self._read()
        except RelayError:
            old = {}
        was = self._on_now(old)
        timer = {"auto_off_at_s": now_s + auto_off_s if on and auto_off_s is not None else None,
                 "auto_off_mono_s": self.clock.monotonic() + auto_off_s if on and auto_off_s is not None else None}
        if not on and self._lying(old):  # its contact stays on, its timer still running
            on, timer = True, {k: old.get(k) for k in timer}
        changed = bool(on) != was
        self.auto_off_s = auto_off_s if on else None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps({
            "on": bool(on), "commanded": commanded, "power_w": self.power_w, "welded": welded,
            "since_s": now_s if changed else old.get("since_s", now_s),
            "since_mono_s": self.clock.monotonic() if changed else old.get("since_mono_s", self.clock.monotonic()),
            "before": was if changed else bool(old.get("before", False)), **timer}))

    def state(self) -> bool:
        self._check()
        s = self._read()
        if self.settings.fault == "welded_reads_off":
            return bool(s.get("commanded"))
        return self._on_now(s) and not self._lying(s)

    def _lying(self, s: dict[str, Any]) -> bool:
        """Fault lies_off: on now, for LIES_AFTER_S or longer (then it reads off and stays on)."""
        since = s.get("since_mono_s")
        return (self.settings.fault == "lies_off" and self._on_now(s) and isinstance(since, (int, float))
                and self.clock.monotonic() - since >= LIES_AFTER_S)

    def _on_now(self, s: dict[str, Any]) -> bool:
        """On now: commanded on and its timer (on the monotonic clock) not ended."""
        end = s.get("auto_off_mono_s")
        expired = isinstance(end, (int, float)) and self.clock.monotonic() >= end and not s.get("welded")
        return bool(s.get("on")) and not expired

    def close(self) -> None:
        pass
