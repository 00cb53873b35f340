"""Device drivers: meters, relays and stores. Each driver module defines its settings model and
its class and registers both; the registries are filled by importing the package."""
from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gestor.clock import Clock


# A load's or a setpoint device's name (the settings' rule): an identifier, used in MQTT topics,
# entity ids and file names (a simulated device's state file is named after it), so never a path.
DEVICE_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


def secret(v: Any) -> str | None:
    """The plain value of a secret setting (pydantic ``SecretStr``), only where it is sent to its
    device; everywhere else (``gestor check``, logs, errors) it shows as ``**********``."""
    if v is None:
        return None
    get = getattr(v, "get_secret_value", None)
    return get() if get else str(v)


@dataclass
class DriverContext:
    """What a driver may need from the daemon that opens it.

    Attributes:
        clock: the daemon's clock (drivers never read the system time themselves).
        run_dir: runtime directory (``/run/gestor``), for files shared between the daemons.
        config_dir: directory of the settings file, to resolve relative paths.
    """

    clock: "Clock"
    run_dir: Path
    config_dir: Path


class Registry(dict):
    """Drivers by name, imported on first use: a driver lives in the module of its own name in
    its package (``driver: shelly_em`` is ``drivers/meters/shelly_em.py``), which registers it when
    imported. A daemon imports only the drivers its settings name (pymodbus, gpiozero, requests
    stay out of a Pi's memory when they are not used)."""

    def __init__(self, package: str, path: list[str]) -> None:
        super().__init__()
        self.package = package
        self.names = sorted(m.name for m in pkgutil.iter_modules(path)
                            if m.name != "base" and not m.name.startswith("_"))

    def _load(self, name: str) -> None:
        if name in self.names and not dict.__contains__(self, name):
            importlib.import_module(f"{self.package}.{name}")

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self.names or dict.__contains__(self, name))

    def __getitem__(self, name: str) -> Any:
        self._load(name)
        return dict.__getitem__(self, name)

    def __iter__(self):  # type: ignore[override]
        return iter(sorted(set(self.names) | set(dict.keys(self))))

    def __len__(self) -> int:
        return len(set(self.names) | set(dict.keys(self)))


def import_all(package: Any) -> None:
    """Import every module of ``package`` (every driver registered at once; for tools)."""
    for mod in pkgutil.iter_modules(package.__path__):
        if mod.name != "base" and not mod.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{mod.name}")
