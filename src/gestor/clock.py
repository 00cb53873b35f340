"""Clocks. Every daemon and policy takes one, so tests and the simulator can run hours in
milliseconds, deterministically, across DST changes.

All clocks return timezone-aware UTC datetimes; local time is a presentation concern
(see :mod:`gestor.core.balance` for settlement periods in the configured timezone).

Each clock also has ``monotonic()``: seconds that never go back, whatever the wall clock does (NTP
stepping the time of a Pi without an RTC at boot). On Linux CLOCK_MONOTONIC is one clock for every
process, so monitoring stamps each reading with it and managing measures the reading's age with
it: a wall-clock step can neither make a stale reading look fresh nor a fresh one stale.
"""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``. Raises ValueError (for settings validators) if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("not a known timezone (e.g. Europe/Madrid, Atlantic/Canary, UTC)") from None


def zone_name(name: str) -> str:
    """``name`` itself once :func:`zone` knows it: a settings validator
    (``Annotated[str, AfterValidator(zone_name)]``). Raises ValueError as :func:`zone`."""
    zone(name)
    return name


class Clock(Protocol):
    def now(self) -> datetime:
        """Current time, aware, UTC."""

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time (or until :meth:`wake` is called)."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (shared by the processes of one machine)."""


class WallClock:
    """The real clock. ``sleep`` can be interrupted by :meth:`wake` (used on SIGTERM)."""

    def __init__(self) -> None:
        self._wake = threading.Event()

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._wake.wait(seconds)

    def wake(self) -> None:
        self._wake.set()


class SimClock:
    """A clock that only moves when told: ``sleep`` advances it instantly. :meth:`step` moves the
    wall time alone, as NTP does (the monotonic time goes on), for clock-step drills.

    Args:
        start: the first instant (aware; converted to UTC).
    Raises:
        ValueError: if ``start`` is naive.
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("SimClock start must be timezone-aware")
        self._now = start.astimezone(timezone.utc)
        self._mono = 1000.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._now += timedelta(seconds=seconds)
        self._mono += seconds

    def set(self, at: datetime) -> None:
        at = at.astimezone(timezone.utc)
        if at < self._now:
            raise ValueError("a clock does not go backwards")
        self._mono += (at - self._now).total_seconds()
        self._now = at

    def step(self, seconds: float) -> None:
        """Step the wall time by ``seconds`` (either way) without moving the monotonic time."""
        self._now += timedelta(seconds=seconds)

    def wake(self) -> None:  # nothing to interrupt
        pass


class AcceleratedClock:
    """Wall-clock driven time running ``speed`` times faster, starting at ``start``.

    Used to replay recorded data in real (or accelerated) time in a long-running daemon.
    """

    def __init__(self, start: datetime, speed: float = 1.0, anchor_epoch_s: float | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self._start = start.astimezone(timezone.utc)
        # anchored to the wall clock (time.time) several processes share one accelerated time
        self._anchor = anchor_epoch_s
        self._t0 = time.monotonic()
        self._speed = speed
        self._wake = threading.Event()

    def now(self) -> datetime:
        if self._anchor is not None:
            return self._start + timedelta(seconds=(time.time() - self._anchor) * self._speed)
        return self._start + timedelta(seconds=(time.monotonic() - self._t0) * self._speed)

    def monotonic(self) -> float:
        return time.monotonic() * self._speed  # CLOCK_MONOTONIC is shared by the machine's processes

    @classmethod
    def from_env(cls, text: str) -> "AcceleratedClock":
        """``START@ANCHOR*SPEED`` (ISO time, wall-clock epoch s, factor), as in ``GESTOR_CLOCK``:
        drills and tests run the real daemons on accelerated, shared time."""
        try:
            start, rest = text.split("@")
            anchor, speed = rest.split("*")
            return cls(datetime.fromisoformat(start), float(speed), float(anchor))
        except ValueError:
            raise ValueError(f"GESTOR_CLOCK={text!r}: expected START@ANCHOR_EPOCH*SPEED") from None

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._wake.wait(seconds / self._speed)

    def wake(self) -> None:
        self._wake.set()
