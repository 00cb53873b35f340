"""Replay meter: plays a CSV of recorded samples through the :class:`Meter` interface.

It reads the formats of ``shared/data`` without conversion (see that folder's README):

* ``house-*.csv``: ``timestamp`` (naive UTC), ``powerP`` production W, ``powerC`` consumption W
  including the recorded managed loads ``powerL1``/``powerL2``. Base consumption is
  ``max(powerC - powerL1 - powerL2, 0)`` (``subtract_columns``).
* ``winter-*.csv``: ``timestamp`` (naive UTC), ``powerP`` production W, ``powerLB`` net grid power
  **import-positive** (``net_column: powerLB``, ``net_sign: import_positive``); consumption is
  ``powerP + powerLB``.

Time: opening the meter anchors the clock's time ``c0`` to the data time ``d0`` (``start``, or
the first sample). A read at clock time ``t`` returns the latest sample at or before
``d0 + (t - c0) * speed``, stamped ``c0 + (sample - d0) / speed``. With a simulated clock starting
at the data's first sample and ``speed: 1`` the readings carry the recorded timestamps. During a
gap in the data the last sample is repeated with its old timestamp, so the live state goes stale as
it would with a silent meter. A sample with NaN or an empty cell in a mapped column raises
MeterError: it is a missing reading, never a zero.

With ``add_simulated_loads`` the power of the simulated relays that are on
(:mod:`drivers.relays.simulated`) is added to consumption.
"""
from __future__ import annotations

import bisect
import csv
from array import array
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Literal, Sequence
from zoneinfo import ZoneInfo

from pydantic import field_validator, model_validator

from drivers import DriverContext
from drivers.meters.base import MeterError, MeterSettings, Reading, check_plausible, register_meter
from drivers.relays.simulated import simulated_loads_power_w
from gestor.clock import zone


class ReplaySettings(MeterSettings):
    driver: Literal["replay"] = "replay"
    path: Path                                   # CSV file; relative to the settings file's folder
    timestamp_column: str = "timestamp"
    timestamp_tz: str = "UTC"                    # zone of naive timestamps in the file
    production_column: str | None = "powerP"     # W
    consumption_column: str | None = "powerC"    # W, house consumption
    net_column: str | None = None                # W at the grid connection, if recorded
    net_sign: Literal["export_positive", "import_positive"] = "export_positive"
    subtract_columns: list[str] = []             # W removed from consumption (recorded managed loads)
    add_simulated_loads: bool = True
    speed: float = 1.0                           # data seconds per clock second
    start: datetime | None = None                # first data instant to play (default: first sample)
    loop: bool = False                           # start over at the end instead of failing

    @field_validator("speed")
    @classmethod
    def _speed(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("must be > 0")
        return v

    @field_validator("timestamp_tz")
    @classmethod
    def _tz(cls, v: str) -> str:
        zone(v)
        return v

    @model_validator(mode="after")
    def _columns(self) -> "ReplaySettings":
        if self.net_column is None and (self.production_column is None or self.consumption_column is None):
            raise ValueError("set net_column, or both production_column and consumption_column")
        return self


def _num(cell: str) -> float:
    try:
        return float(cell) if cell.strip() != "" else math.nan
    except ValueError:
        return math.nan


@dataclass
class ReplayData:
    """A recorded CSV in columns. Times are UTC epoch seconds; powers W (NaN where missing).

    ``net_w`` is export-positive and excludes ``subtract_columns``. Raises MeterError with the
    file name (and line) for a missing, unreadable or malformed file or missing columns.
    """

    path: Path
    t: Sequence[float]                 # array('d'): 8 bytes a value, a quarter of a list of floats
    production_w: Sequence[float] | None
    consumption_w: Sequence[float]
    net_w: Sequence[float]

    @classmethod
    def load(cls, s: ReplaySettings, base_dir: Path | None = None) -> "ReplayData":
        path = s.path if s.path.is_absolute() or base_dir is None else (base_dir / s.path)
        tz = ZoneInfo(s.timestamp_tz)
        try:
            f = open(path, newline="")
        except OSError as e:
            raise MeterError(f"replay file {path}: {e.strerror or e}") from None
        with f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header:
                raise MeterError(f"replay file {path}: empty, expected a CSV header")
            idx = {name.strip(): i for i, name in enumerate(header)}
            wanted = [s.timestamp_column] + [c for c in (s.production_column, s.consumption_column,
                                                          s.net_column) if c] + list(s.subtract_columns)
            missing = [c for c in wanted if c not in idx]
            if missing:
                raise MeterError(f"replay file {path}: no column {', '.join(missing)} "
                                 f"(it has: {', '.join(header)})")
            ti = idx[s.timestamp_column]
            pi = idx[s.production_column] if s.production_column else None
            ci = idx[s.consumption_column] if s.consumption_column else None
            ni = idx[s.net_column] if s.net_column else None
            sub = [idx[c] for c in s.subtract_columns]
            cols = (array("d"), array("d"), array("d"), array("d"))
            ta, pa, ca, na = cols
            for lineno, row in enumerate(reader, start=2):
                if not row:
                    continue
                if len(row) < len(header):
                    raise MeterError(f"replay file {path}, line {lineno}: {len(row)} fields, "
                                     f"header has {len(header)}")
                try:
                    at = datetime.fromisoformat(row[ti].strip())
                except ValueError:
                    raise MeterError(f"replay file {path}, line {lineno}: bad timestamp "
                                     f"{row[ti]!r}") from None
                if at.tzinfo is None:
                    at = at.replace(tzinfo=tz)
                prod = _num(row[pi]) if pi is not None else math.nan
                sub_w = sum(_num(row[i]) for i in sub)
                if ni is not None:
                    net = _num(row[ni])
                    if s.net_sign == "import_positive":
                        net = -net
                    if ci is not None:
                        cons = max(_num(row[ci]) - sub_w, 0.0)
                    else:
                        cons = prod - net - sub_w  # consumption = production - export-positive net
                    net = net + sub_w
                else:
                    cons = max(_num(row[ci]) - sub_w, 0.0)  # base load, as shared/data/README says
                    net = prod - cons
                    if math.isnan(_num(row[ci])):
                        cons = net = math.nan
                ta.append(at.timestamp())
                pa.append(prod)
                ca.append(cons)
                na.append(net)
        if not ta:
            raise MeterError(f"replay file {path}: no samples")
        if any(b < a for a, b in zip(ta, ta[1:])):  # out of order: sort all columns by time
            order = sorted(range(len(ta)), key=ta.__getitem__)
            ta, pa, ca, na = (array("d", (col[i] for i in order)) for col in cols)
        return cls(path=path, t=ta, production_w=pa if pi is not None else None, consumption_w=ca, net_w=na)

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


@register_meter("replay", ReplaySettings)
class ReplayMeter:
    """Plays a :class:`ReplayData` against the daemon's clock (see module docstring)."""

    def __init__(self, settings: ReplaySettings, ctx: DriverContext) -> None:
        self.s = settings
        self.ctx = ctx
        self.data = ReplayData.load(settings, ctx.config_dir)
        self.d0 = (settings.start or self.data.first).timestamp()
        self.c0 = ctx.clock.now().timestamp()  # the clock time the data's d0 is played at
        self.span_s = self.data.t[-1] - self.data.t[0] + 10.0

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
        extra = simulated_loads_power_w(self.ctx.run_dir) if self.s.add_simulated_loads else 0.0
        r = self.data.reading(i, datetime.fromtimestamp(at_s, timezone.utc), extra)
        return check_plausible(r, self.s.max_abs_power_w)

    def close(self) -> None:
        pass


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat()


__all__ = ["ReplayData", "ReplayMeter", "ReplaySettings"]
