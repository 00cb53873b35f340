"""The stop plan managing saves for ``stop-loads``, and the relay fingerprints managing publishes.

The plan, ``<state_dir>/stop-plan.json`` (format 1, read by :mod:`stop_loads`): the loads managing
runs, each with its relay section (secrets in clear: mode 0600) and its power, the devices with a
power setpoint (``setpoints``: name and device section; absent in plans saved before them), the
directories and,
for people, when, by whom and from which settings file it was saved. A relay's fingerprint
(:func:`relay_id`) lets stop-loads confirm a load "via managing" only when managing drives that
very device output.

Kept light: stop-loads imports this module on its fastest path (before the settings are read), so
it imports only the standard library at the top; pydantic and :mod:`gestor.files` when writing.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from gestor.settings import Settings

PLAN_FILE = "stop-plan.json"
PLAN_FORMAT = 1


def plan_path(state_dir: Path | str) -> Path:
    """Where the stop plan of ``state_dir`` is."""
    return Path(state_dir) / PLAN_FILE


def _plain(v: Any) -> Any:
    """``json.dumps``' default for a relay section: a secret in clear (the plan must reach the
    device), anything else as pydantic puts it in JSON (paths, enums...)."""
    from pydantic_core import to_jsonable_python
    get = getattr(v, "get_secret_value", None)
    return to_jsonable_python(get() if get else v)


def relay_section(relay: Any) -> dict[str, Any]:
    """A relay's validated settings as plain JSON data, secrets in clear: what its driver's
    model validates back into the same relay."""
    return json.loads(json.dumps(relay.model_dump(mode="python"), default=_plain))


def relay_id(relay: Any) -> str:
    """A short fingerprint of the device output a relay switches (its driver's ``relay_key``: a
    Shelly's host and channel, a GPIO pin, a Modbus coil; a simulated relay: its driver, the load's
    name telling them apart), 16 hex digits of a sha256. managing publishes it per load, so
    stop-loads confirms a load "via managing" only when managing drives that very output, not a
    load of the same name moved to another relay (a new password is the same relay)."""
    import hashlib
    key = relay.relay_key() if hasattr(relay, "relay_key") else None
    return hashlib.sha256(repr(key if key is not None else (relay.driver,)).encode()).hexdigest()[:16]


def relay_id_or_none(relay: Any) -> str | None:
    """:func:`relay_id`, or None for a relay section that cannot be fingerprinted (it then
    matches nothing). Never raises."""
    try:
        return relay_id(relay)
    except Exception:  # noqa: BLE001 -- a section that cannot be fingerprinted matches nothing
        return None


def write_plan(path: Path | str, loads: Iterable[tuple[str, float, Any]], state_dir: Path | str,
               run_dir: Path | str, settings_file: Path | str | None = None,
               config_dir: Path | str | None = None, by: str = "managing",
               setpoints: Iterable[tuple[str, Any]] = ()) -> None:
    """Write the stop plan ``path`` of ``loads`` ``(name, power W, relay settings)`` and
    ``setpoints`` ``(name, device settings)`` (the devices with a power setpoint, idled): JSON,
    atomically, fsynced, mode 0600 and owned by the writer (the relay sections hold the secrets
    that reach the devices: the daemon's user and root read it, nobody else). Raises OSError."""
    from gestor.files import atomic_write_text
    doc = {
        "format": PLAN_FORMAT,
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "by": f"{by} pid {os.getpid()}",
        "settings": None if settings_file is None else str(settings_file),
        "config_dir": None if config_dir is None else str(config_dir),
        "paths": {"state_dir": str(state_dir), "run_dir": str(run_dir)},
        "loads": [{"name": name, "power_w": float(power_w), "relay": relay_section(relay)}
                  for name, power_w, relay in loads],
        "setpoints": [{"name": name, "device": relay_section(dev)} for name, dev in setpoints],
    }
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n", fsync=True, mode=0o600)


def save_plan(s: "Settings") -> Path | None:
    """managing's start: save the stop plan of settings ``s`` at ``<state_dir>/stop-plan.json``
    (every load and setpoint device of ``s``). Never raises: a failure (a read-only disk) is logged, and stop-loads
    then has only the settings file. Returns the path written, or None."""
    import logging
    path = plan_path(s.paths.state_dir)
    try:
        Path(s.paths.state_dir).mkdir(parents=True, exist_ok=True)
        write_plan(path, [(ld.name, ld.power_w, ld.relay) for ld in s.loads], s.paths.state_dir, s.paths.run_dir,
                   s.source, s.config_dir if s.source else None,
                   setpoints=[(d.name, d.device) for d in s.setpoints])
        return path
    except Exception as e:  # noqa: BLE001 -- managing runs without it; stop-loads says so
        logging.getLogger("gestor.managing").error(
            "stop plan %s NOT saved: %s (stop-loads will depend on the settings file alone)", path, e)
        return None
