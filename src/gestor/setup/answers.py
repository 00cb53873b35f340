"""The questions ``gestor setup`` asks, and their answers: typed at the prompt (``input()``,
each with its default in brackets; a bad answer is asked again with what is allowed), or read
from ``--answers FILE.yaml`` (the same keys; a bad value is an error naming the key, the value
and what is allowed). ``--yes`` takes every confirmation as yes.

The answers file (docs/site/en/setup.md)::

    meter: 1                 # which found meter (its number in the list, or its driver); default 1
    sign_ok: true            # the power's sign shown was right (false: flip ``sign``)
    relays_ok: true          # each relay switched as it should (false: that load is left out)
    loads:                   # at most 8
      - {name: water_heater, relay: 1, channel: 0, power_w: 1500}
    tariff: pvpc             # pvpc (REE's public PVPC file, no token) | fixed
    prices: {p1: 0.22, p2: 0.15, p3: 0.10, surplus: 0.06}   # EUR/kWh, with fixed
    shelly_password: "..."   # only for a Shelly that asks one; written to secrets.yaml
    paths: {state_dir: /var/lib/gestor, run_dir: /run/gestor}   # optional
    write: true              # write the settings (default: as --yes)
"""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
MAX_ANSWERS_BYTES = 64 * 1024
KEYS = {"meter", "sign_ok", "relays_ok", "loads", "tariff", "prices", "shelly_password", "paths", "write"}
MAX_LOADS = 8


class SetupError(Exception):
    """A bad answer, nothing found, or a step that failed; the message is the sentence shown and
    ``code`` the exit code (1 a step failed, 2 a bad answer or invalid settings, 3 nothing found)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def read_answers(path: Path) -> dict[str, Any]:
    """The answers file: a YAML mapping of the keys above, at most MAX_ANSWERS_BYTES. Raises
    SetupError naming the file and the problem."""
    from gestor.settings import SettingsError, read_yaml
    try:
        raw = read_yaml(path, f"--answers {path}", MAX_ANSWERS_BYTES)
    except SettingsError as e:
        raise SetupError("; ".join(e.errors), 2) from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SetupError(f"--answers {path}: must be a mapping of answers (keys: {', '.join(sorted(KEYS))})", 2)
    unknown = sorted(str(k) for k in raw if k not in KEYS)
    if unknown:
        raise SetupError(f"--answers {path}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(KEYS))})", 2)
    return raw


def parse_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("y", "yes", "s", "si", "sí", "true", "1"):
        return True
    if s in ("n", "no", "false", "0"):
        return False
    raise ValueError(f"must be yes or no (got {str(v)[:40]!r})")


def parse_choice(n: int) -> Callable[[Any], int]:
    """A parser of a number 1..``n`` (returned 0-based)."""
    def parse(v: Any) -> int:
        if isinstance(v, bool) or not re.fullmatch(r"\d{1,3}", str(v).strip()):
            raise ValueError(f"must be a number from 1 to {n} (got {str(v)[:40]!r})")
        i = int(str(v).strip())
        if not 1 <= i <= n:
            raise ValueError(f"must be a number from 1 to {n} (got {i})")
        return i - 1
    return parse


def parse_count(most: int) -> Callable[[Any], int]:
    """A parser of a whole number 0..``most``."""
    def parse(v: Any) -> int:
        if isinstance(v, bool) or not re.fullmatch(r"\d{1,3}", str(v).strip()) or int(str(v).strip()) > most:
            raise ValueError(f"must be a whole number from 0 to {most} (got {str(v)[:40]!r})")
        return int(str(v).strip())
    return parse


def parse_number(what: str, lo: float, hi: float, lo_open: bool = False) -> Callable[[Any], float]:
    """A parser of a number within [``lo``, ``hi``] (``lo_open``: above ``lo``), its error
    naming ``what`` it is and the range."""
    allowed = f"{what}, a number {'>' if lo_open else '>='} {lo:g} and <= {hi:g}"

    def parse(v: Any) -> float:
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"must be {allowed} (got {str(v)[:40]!r})") from None
        if not (lo < x if lo_open else lo <= x) or not x <= hi:
            raise ValueError(f"must be {allowed} (got {x:g})")
        return x
    return parse


parse_power_w = parse_number("the load's power in W", 0, 50_000, lo_open=True)
parse_price = parse_number("a price in EUR/kWh", 0, 10)


def parse_name(v: Any) -> str:
    s = str(v).strip()
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", s):
        raise ValueError(f"must be lowercase letters, digits and '_', starting with a letter, at most 32 (got {s[:40]!r})")
    return s


def parse_tariff(v: Any) -> str:
    s = str(v).strip().lower()
    if s not in ("pvpc", "fixed"):
        raise ValueError(f"must be pvpc or fixed (got {s[:40]!r})")
    return s


class Asker:
    """Asks a question at the prompt, or takes its answer from the answers file.

    ``answers``: the answers file's mapping (None: interactive); ``yes``: confirmations are yes;
    ``ask``/``say``: input and output (tests and the page give their own)."""

    def __init__(self, answers: dict[str, Any] | None, yes: bool = False,
                 ask: Callable[[str], str] = input, say: Callable[[str], None] = print) -> None:
        self.answers, self.yes, self.ask, self.say = answers, yes, ask, say

    def value(self, key: str, prompt: str, default: T | None, parse: Callable[[Any], T],
              given: dict[str, Any] | None = None, where: str | None = None, show: str | None = None) -> T:
        """The answer to ``key`` (``given``: the mapping it is looked up in, default the answers
        file; ``where``: its name in errors; ``show``: the default as the user types it, when
        that differs from ``default``, e.g. "1" for the first of a list). Raises SetupError for a
        bad or missing one in a file."""
        source = self.answers if given is None else given
        if source is not None:
            if key not in source:
                if default is None:
                    raise SetupError(f"answers: {where or key}: missing ({prompt})", 2)
                return default
            try:
                return parse(source[key])
            except ValueError as e:
                raise SetupError(f"answers: {where or key}: {e}", 2) from None
        while True:
            hint = show if show is not None else ("Y/n" if default else "y/N") if isinstance(default, bool) else default
            shown = "" if default is None else f" [{hint}]"
            typed = self.ask(f"{prompt}{shown}: ").strip()
            if not typed and default is not None:
                return default
            try:
                return parse(typed)
            except ValueError as e:
                self.say(f"  {e}; try again")

    def confirm(self, key: str, prompt: str, default: bool = True) -> bool:
        """A yes/no: the answers file's ``key`` if there, else yes with ``--yes``, else asked."""
        if self.answers is not None and key in self.answers:
            return self.value(key, prompt, default, parse_bool)
        if self.yes:
            self.say(f"{prompt}: yes (--yes)")
            return True
        if self.answers is not None:
            return default
        return self.value(key, prompt, default, parse_bool)
