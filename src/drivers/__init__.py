"""Device drivers: meters, relays and stores. Each driver module defines its settings model and
its class and registers both; the registries are filled by importing the package."""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gestor.clock import Clock


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


def import_all(package: Any) -> None:
    """Import every module of ``package`` so that each registers its driver."""
    for mod in pkgutil.iter_modules(package.__path__):
        if mod.name != "base" and not mod.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{mod.name}")
