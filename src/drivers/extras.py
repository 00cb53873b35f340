"""Which optional extra each meter driver needs: the one place that maps a ``driver:`` to its
extra (pyproject ``[project.optional-dependencies]``), the extra's package and the module it
imports. ``install.sh`` asks it (``python -m drivers.extras --driver NAME`` prints the extra), and
each driver's settings model calls :func:`require` so a driver whose library is missing is a
settings error that says what to run.

The extras are locked with hashes in ``requirements/<extra>.lock`` (``tools/lock-extras.sh``).
"""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Extra:
    """An optional extra: its name in pyproject, the PyPI package it brings, the module imported."""

    name: str
    package: str
    module: str


EXTRAS: dict[str, Extra] = {e.name: e for e in (
    Extra("huawei", "huawei-solar", "huawei_solar"),
    Extra("sunspec", "pysunspec2", "sunspec2"),
    Extra("goodwe", "goodwe", "goodwe"),
    Extra("sma", "pysma-plus", "pysmaplus"),
    Extra("fronius", "PyFronius", "pyfronius"),
    Extra("setup", "zeroconf", "zeroconf"),
)}

# meter driver (settings ``meter.driver``) -> extra; drivers not named here need no extra
DRIVER_EXTRA: dict[str, str] = {
    "huawei": "huawei", "sunspec": "sunspec", "goodwe": "goodwe", "sma_em": "sma",
    "fronius": "fronius",
}

INSTALL_HINT = "sudo ./install.sh --extra {extra}"


def extra_for(driver: str) -> Extra | None:
    """The extra that ``driver`` needs, or None (the drivers of the base install)."""
    name = DRIVER_EXTRA.get(driver)
    return None if name is None else EXTRAS[name]


def missing(extra: Extra) -> bool:
    """True when the extra's module cannot be imported here (not installed)."""
    try:
        return importlib.util.find_spec(extra.module) is None
    except (ImportError, ValueError):
        return True


def require(driver: str) -> None:
    """Raise ValueError (a settings error, one sentence) when ``driver``'s library is not installed:
    it names the driver, the missing package and the command that installs it."""
    extra = extra_for(driver)
    if extra is not None and missing(extra):
        raise ValueError(f"driver {driver} needs the package {extra.package} (the optional extra "
                         f"'{extra.name}'), which is not installed: run "
                         f"{INSTALL_HINT.format(extra=extra.name)} in gestor's source folder")


def main(argv: list[str] | None = None) -> int:
    """``python -m drivers.extras --driver NAME``: print NAME's extra (nothing for a driver of the
    base install). ``--extras``: print every extra's name, one a line. Exit 2 on bad usage."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["--extras"]:
        print("\n".join(EXTRAS))
        return 0
    if len(args) == 2 and args[0] == "--driver":
        extra = extra_for(args[1])
        if extra is not None:
            print(extra.name)
        return 0
    print("usage: python -m drivers.extras --driver NAME | --extras", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
