"""``gestor setup``'s command-line options, apart from the steps so that building the ``gestor``
parser (every daemon does) imports nothing of setup's. Each number is checked with a clear error
naming the option, the value and the range allowed."""
from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

FINDERS = ("mdns", "fronius", "modbus", "goodwe", "sma")


def seconds(option: str, lo: float, hi: float) -> Callable[[str], float]:
    """An argparse type: seconds within [``lo``, ``hi``]."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            v = float("nan")
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{option}: must be seconds from {lo:g} to {hi:g} (got {text!r})")
        return v
    return parse


def add_arguments(p: argparse.ArgumentParser, default_settings: str) -> None:
    """``gestor setup``'s options (docs/site/en/setup.md)."""
    p.add_argument("--settings", default=default_settings, help=f"settings file to write (default {default_settings})")
    p.add_argument("--answers", type=Path, help="answers file (YAML; docs/site/en/setup.md): no questions asked")
    p.add_argument("--yes", action="store_true", help="every confirmation is yes (scripts, tests)")
    p.add_argument("--network", action="append", default=[],
                   help="network to scan, e.g. 192.168.1.0/24 (default: this machine's /24s)")
    p.add_argument("--find", default=",".join(FINDERS), help=f"finders to run, comma-separated (default {','.join(FINDERS)})")
    p.add_argument("--check-seconds", type=seconds("--check-seconds", 0, 600), default=30.0,
                   help="seconds the meter is read (default 30)")
    p.add_argument("--check-interval", type=seconds("--check-interval", 0.1, 60), default=5.0,
                   help="seconds between its reads (default 5)")
    p.add_argument("--mdns-seconds", type=seconds("--mdns-seconds", 0.5, 60), default=4.0,
                   help="seconds of mDNS browsing (default 4)")
    p.add_argument("--no-restart", action="store_true", help="do not restart the units")
    p.add_argument("--apply-proposal", type=Path, metavar="FILE",
                   help="apply the settings the web page proposed in FILE (root, by gestor-setup-apply.service): "
                        "checked again, written, the units restarted, result.json beside FILE")
