"""Replay meter: plays a CSV of recorded samples through the :class:`Meter` interface.

It reads the formats of ``shared/data`` without conversion (see that folder's README):

* ``house-*.csv``: ``timestamp`` (naive UTC), ``powerP`` production W, ``powerC`` consumption W
  including the recorded managed loads ``powerL1``/``powerL2``. Base consumption is
  ``max(powerC - powerL1 - powerL2, 0)`` (``subtract_columns``). A subtract column with no value
  in the whole file (``powerL2`` in ``house-2022-04-22_26.csv``: that load was not recorded then)
  counts as 0 W; an empty cell in a column that has values elsewhere is a missing sample.
* ``winter-*.csv``: ``timestamp`` (naive UTC), ``powerP`` production W, ``powerLB`` net grid power
  **import-positive** (``net_column: powerLB``, ``net_sign: import_positive``); consumption is
  ``powerP + powerLB``.

Time: opening the meter anchors the clock's time ``c0`` to the data time ``d0`` (``start``; else,
with ``same_time_of_day``, the first instant of the data at the clock's UTC time of day, so the
recorded sun stands where the real one does: what the installed example uses; else the first
sample). A read at clock time ``t`` returns the latest sample at or before
``d0 + (t - c0) * speed``, stamped ``c0 + (sample - d0) / speed``. With a simulated clock starting
at the data's first sample and ``speed: 1`` the readings carry the recorded timestamps. During a
gap in the data the last sample is repeated with its old timestamp, so the live state goes stale as
it would with a silent meter. A sample with NaN or an empty cell in a mapped column raises
MeterError: it is a missing reading, never a zero.

With ``add_simulated_loads`` the power of the simulated relays that are on
(:mod:`drivers.relays.simulated`) and of the simulated setpoint devices
(:mod:`drivers.setpoints.simulated`; a battery discharging counts negative) is added to consumption.
"""
from __future__ import annotations

import bisect
import math
import os
import struct
import subprocess
import sys
import tempfile
from array import array
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Iterator, Literal, Sequence

from pydantic import AfterValidator, Field, model_validator

from drivers import DriverContext
from drivers.meters.base import MeterError, MeterSettings, Reading, check_plausible, register_meter
from drivers.relays.simulated import simulated_loads_power_w
from drivers.setpoints.simulated import simulated_setpoints_power_w
from gestor.clock import zone_name

# the reader's protocol (drivers.meters.replay_reader): a batch's row count, or one of the markers
HEADER = struct.Struct("=q")
RESTART, FAILED, DONE = -1, -2, -3


class ReplaySettings(MeterSettings):
    driver: Literal["replay"] = "replay"
    path: Path                                   # CSV file; relative to the settings file's folder
    timestamp_column: str = "timestamp"
    timestamp_tz: Annotated[str, AfterValidator(zone_name)] = "UTC"  # zone of naive timestamps in the file
    production_column: str | None = "powerP"     # W
    consumption_column: str | None = "powerC"    # W, house consumption
    net_column: str | None = None                # W at the grid connection, if recorded
    net_sign: Literal["export_positive", "import_positive"] = "export_positive"
    subtract_columns: list[str] = []             # W removed from consumption (recorded managed loads)
    add_simulated_loads: bool = True
    speed: float = Field(1.0, gt=0, le=10_000)   # data seconds per clock second (x)
    start: datetime | None = None                # first data instant to play (default: first sample)
    same_time_of_day: bool = False               # without start: begin at the clock's UTC time of day
    loop: bool = False                           # start over at the end instead of failing

    @property
    def counter_resolution_wh(self) -> float:
        """1 Wh: the recordings carry no counters (powers only), so it bounds nothing."""
        return 1.0

    def frozen_s(self, monitoring_interval_s: float) -> float:
        """A recording plays what the meter said: frozen only with ``frozen_after_s`` set (no
        real recording of shared/data holds a value longer than 20 s; made-up ones hold levels for
        minutes on purpose)."""
        return self.frozen_after_s if self.frozen_after_s is not None else math.inf

    @model_validator(mode="after")
    def _columns(self) -> "ReplaySettings":
        if self.net_column is None and (self.production_column is None or self.consumption_column is None):
            raise ValueError("set net_column, or both production_column and consumption_column")
        return self


@dataclass
class ReplayData:
    """A recorded CSV in columns. Times are UTC epoch seconds; powers W (NaN where missing).

    ``net_w`` is export-positive and excludes ``subtract_columns``. Raises MeterError with the
    file name (and line) for a missing, unreadable or malformed file or missing columns.

    Loaded with pyarrow in a helper process and computed column-wise (see :meth:`load`);
    the columns are kept as ``array('d')``: 8 bytes a value, no numpy needed.
    """

    path: Path
    t: Sequence[float]                 # array('d')
    production_w: Sequence[float] | None
    consumption_w: Sequence[float]
    net_w: Sequence[float]

    @classmethod
    def load(cls, s: ReplaySettings, base_dir: Path | None = None) -> "ReplayData":
        """Read ``s.path`` (relative to ``base_dir``) column-wise.

        pyarrow, not pandas: it reads the CSV in C++, parses ISO 8601 timestamps natively (no
        datetime per row), and imports in half the memory (78 MB RSS against 132 MB measured here;
        pandas itself would read through pyarrow for speed). It runs in a helper process
        (:mod:`drivers.meters.replay_reader`) that streams the columns back, so this process never
        holds pyarrow's ~90 MB: a year of 10 s samples peaks at the columns' 100 MB plus the
        interpreter. The helper costs ~0.4 s to start. Raises MeterError (see the class).
        """
        path = s.path if s.path.is_absolute() or base_dir is None else (base_dir / s.path)
        t, prod, cons, net = _columns(s, path)
        return cls(path=path, t=t, production_w=prod, consumption_w=cons, net_w=net)

    @property
    def first(self) -> datetime:
        return datetime.fromtimestamp(self.t[0], timezone.utc)

    @property
    def last(self) -> datetime:
        return datetime.fromtimestamp(self.t[-1], timezone.utc)

    def index_at(self, t: float) -> int:
        """Index of the latest sample at or before epoch ``t`` (-1 if none)."""
        return bisect.bisect_right(self.t, t) - 1

    def reading(self, i: int, at: datetime | None = None, extra_load_w: float = 0.0) -> Reading:
        """Sample ``i`` as a Reading (stamped ``at`` or its own time); MeterError if it has NaN."""
        prod = self.production_w[i] if self.production_w is not None else None
        cons, net = self.consumption_w[i], self.net_w[i]
        if math.isnan(net) or math.isnan(cons) or (prod is not None and math.isnan(prod)):
            raise MeterError(f"replay file {self.path.name}: sample at "
                             f"{datetime.fromtimestamp(self.t[i], timezone.utc).isoformat()} has no value")
        return Reading(at=at or datetime.fromtimestamp(self.t[i], timezone.utc),
                       net_w=net - extra_load_w, production_w=prod, consumption_w=cons + extra_load_w)

    def readings(self, start: datetime | None = None, end: datetime | None = None) -> Iterator[Reading]:
        """Every valid sample in [start, end) as Readings (samples with NaN are skipped)."""
        i0 = 0 if start is None else bisect.bisect_left(self.t, start.timestamp())
        i1 = len(self.t) if end is None else bisect.bisect_left(self.t, end.timestamp())
        for i in range(i0, i1):
            try:
                yield self.reading(i)
            except MeterError:
                continue


def _columns(s: ReplaySettings, path: Path) -> list:
    """The file's time, production, consumption and net columns as ``array('d')`` (production
    None without its column), parsed by :mod:`drivers.meters.replay_reader` in a helper process
    (same python, same ``sys.path``) and streamed back; see :meth:`ReplayData.load`."""
    out = [array("d"), array("d") if s.production_column else None, array("d"), array("d")]
    cols = [c for c in out if c is not None]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    settings = s.model_copy(update={"path": path}).model_dump_json().encode()  # same cwd: relative is fine
    with tempfile.TemporaryFile() as err, subprocess.Popen(
            [sys.executable, "-m", "drivers.meters.replay_reader"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=err, env=env) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(settings)
            proc.stdin.close()  # flushes: the reader may be gone already (closes the pipe anyway)
        except BrokenPipeError:
            pass  # it exited before reading its input: its exit code and stderr say why, below
        f = proc.stdout
        ordered = None
        try:
            while (head := f.read(HEADER.size)) and len(head) == HEADER.size:
                (n,) = HEADER.unpack(head)
                if n >= 0:
                    for c in cols:
                        c.fromfile(f, n)
                elif n == RESTART:
                    for c in cols:
                        del c[:]
                elif n == FAILED:
                    raise MeterError(f.read().decode(errors="replace"))
                elif n == DONE:
                    ordered = f.read(1) == b"1"
                    break
        except EOFError:
            pass  # the reader stopped in a frame: reported below
        if ordered is None:
            raise MeterError(f"replay file {path}: the CSV reader failed ({_ended(proc)}): {_last_line(err)}")
    t = out[0]
    if not ordered:  # out of order: sort every column by time (stable)
        order = sorted(range(len(t)), key=t.__getitem__)
        out = [array("d", (col[i] for i in order)) if col is not None else None for col in out]
    return out


def _ended(proc: subprocess.Popen) -> str:
    """How the reader ended, once its output stopped: its exit code (waited for, as it may still be
    exiting), or that it was killed (by a signal, or here when it neither wrote nor exited)."""
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return "stopped writing without exiting: killed"
    return f"killed by signal {-code}" if code < 0 else f"exit {code}"


def _last_line(err) -> str:
    err.seek(0)
    lines = err.read().decode(errors="replace").strip().splitlines()
    return lines[-1].strip() if lines else "no message"


@register_meter("replay", ReplaySettings)
class ReplayMeter:
    """Plays a :class:`ReplayData` against the daemon's clock (see module docstring)."""

    def __init__(self, settings: ReplaySettings, ctx: DriverContext) -> None:
        self.s = settings
        self.ctx = ctx
        self.data = ReplayData.load(settings, ctx.config_dir)
        self.d0 = (settings.start or self._time_of_day(ctx.clock.now()) or self.data.first).timestamp()
        self.c0 = ctx.clock.now().timestamp()  # the clock time the data's d0 is played at
        self.span_s = self.data.t[-1] - self.data.t[0] + 10.0

    def _time_of_day(self, now: datetime) -> datetime | None:
        """With ``same_time_of_day``: the first instant of the data at ``now``'s UTC time of day
        (the next day's if the first day began later), or None when the data ends before it."""
        if not self.s.same_time_of_day:
            return None
        first = self.data.first.astimezone(timezone.utc)
        now = now.astimezone(timezone.utc)
        at = first.replace(hour=now.hour, minute=now.minute, second=now.second, microsecond=0)
        if at < first:
            at += timedelta(days=1)
        return at if at.timestamp() <= self.data.t[-1] else None

    def read(self) -> Reading:
        now = self.ctx.clock.now().timestamp()
        data_t = self.d0 + (now - self.c0) * self.s.speed
        shift = 0.0
        if self.s.loop and data_t > self.data.t[-1]:
            laps = math.floor((data_t - self.data.t[0]) / self.span_s)
            shift = laps * self.span_s
            data_t -= shift
        i = self.data.index_at(data_t)
        if i < 0:
            raise MeterError(f"replay file {self.data.path.name}: no sample before {_iso(data_t)}")
        if not self.s.loop and data_t > self.data.t[-1] + 60:
            raise MeterError(f"replay file {self.data.path.name}: ended at {_iso(self.data.t[-1])}")
        at_s = self.c0 + (self.data.t[i] + shift - self.d0) / self.s.speed
        # the loads as they were when the sample was measured (at_s), not as they are now: a switch
        # between the two belongs to the next sample, as managing's core attributes it
        extra = (simulated_loads_power_w(self.ctx.run_dir, at_s) + simulated_setpoints_power_w(self.ctx.run_dir, at_s)
                 if self.s.add_simulated_loads else 0.0)
        r = self.data.reading(i, datetime.fromtimestamp(at_s, timezone.utc), extra)
        return check_plausible(r, self.s.max_abs_power_w)

    def close(self) -> None:
        pass


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat()


__all__ = ["ReplayData", "ReplayMeter", "ReplaySettings"]
