"""The files the daemons keep and hand each other, validated like the settings (pydantic, strict
types): a file of the wrong shape is never half-used.

| file | written by | model |
|---|---|---|
| ``run_dir/reading.json`` | monitoring, each read | :class:`LiveFile` |
| ``state_dir/managing.json`` | managing, once a minute | :class:`ManagingFile` |
| ``state_dir/monitoring.json`` | monitoring, once a minute | :class:`MonitoringFile` |
| ``state_dir/overrides.json`` | ``gestor override`` | :class:`OverridesFile` |
| ``state_dir/device-energy.json`` | managing, once a minute | :class:`DeviceEnergyFile` |
| ``state_dir/device-controls.json`` | managing (MQTT commands) | :class:`DeviceControlsFile` |

:func:`read_state` returns the validated model, or None when the file is missing; a damaged one
is logged, moved aside (``NAME.bad``, so a person can look at it) and ignored. Every file is read
through :func:`gestor.files.read_small_file`: a FIFO, directory, device or socket in a file's place,
or a file over :data:`MAX_STATE_BYTES`, is a damaged file, never a blocked or exhausted daemon.

Values have physical bounds (:data:`MAX_POWER_W`, :data:`MAX_COUNTER_WH`), so ``net_w: 1e308`` is
a rejected reading, not an overflow in the balance; a live file with one bad reading loses that
reading only (:meth:`LiveFile.valid_readings`).
"""
from __future__ import annotations

import json
import logging
import math
import os
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import (AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr,
                      ValidationError, field_validator)

from gestor.files import STATE_FILE_DEADLINE_S, read_small_text

log = logging.getLogger("gestor.state")
MAX_STATE_BYTES = 4 * 1024 * 1024
MAX_POWER_W = 1e6        # |W| of any power in a reading: 1 MW is far beyond any house's connection
MAX_COUNTER_WH = 1e12    # an energy counter, Wh (1 TWh)
MAX_MONO_S = 1e12        # monitoring's monotonic clock, s
Number = StrictFloat | StrictInt
Power = Annotated[Number, Field(ge=-MAX_POWER_W, le=MAX_POWER_W)]
Counter = Annotated[Number, Field(ge=0, le=MAX_COUNTER_WH)]


class _State(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class ReadingModel(_State):
    at: AwareDatetime
    net_w: Power                   # W, |net_w| <= MAX_POWER_W
    production_w: Power | None = None
    consumption_w: Power | None = None
    import_wh_total: Counter | None = None   # Wh, 0..MAX_COUNTER_WH
    export_wh_total: Counter | None = None
    mono_s: Annotated[Number, Field(ge=-MAX_MONO_S, le=MAX_MONO_S)] | None = None   # monitoring's monotonic clock when it was read

    def reading(self) -> Any:
        from drivers.meters.base import Reading
        return Reading(self.at, float(self.net_w), *(None if v is None else float(v) for v in (
            self.production_w, self.consumption_w, self.import_wh_total, self.export_wh_total)))


class LiveFile(_State):
    """``reading.json``. ``readings`` are checked one by one (:meth:`valid_readings`): a bad one
    is a missing reading, not a lost file."""
    pid: StrictInt | None = None
    readings: list[Any] = []
    errors: StrictInt = 0
    last_error: StrictStr | None = None
    last_error_at: AwareDatetime | None = None

    def valid_readings(self, path: Path | str = "reading.json") -> list[ReadingModel]:
        """The readings that pass :class:`ReadingModel`, in file order; each other one is
        skipped and logged (once per file and reason)."""
        out = []
        for raw in self.readings:
            try:
                out.append(ReadingModel.model_validate(raw))
            except ValidationError as e:
                _report(f"{path}: a reading skipped", _first_error(e), ": it counts as missing")
        return out


class MonitoringFile(_State):
    last: ReadingModel


class LoadStateModel(_State):
    on: StrictBool | None = None
    since: AwareDatetime | None = None


class MonthCapModel(_State):
    """The month so far against the compensation cap (gestor.core.setpoint.MonthCap), EUR."""
    month: Annotated[StrictStr, Field(pattern=r"^(\d{4}-\d{2})?$")] = ""
    energy_eur: Annotated[Number, Field(ge=-1e6, le=1e6)] = 0.0
    compensation_eur: Annotated[Number, Field(ge=-1e6, le=1e6)] = 0.0


class ManagingFile(_State):
    """``managing.json``: the period being integrated, and what a user sees that must survive a
    restart (every field after ``loads`` is optional: files of earlier versions still load)."""
    balance: dict[str, Any]
    on_s: dict[str, dict[str, Number]] = {}
    day_on_s: dict[str, dict[str, Number]] = {}
    switches: dict[str, dict[str, StrictInt]] = {}
    loads: dict[str, LoadStateModel] = {}
    # Wh over every closed period, only increasing (Home Assistant's Energy dashboard):
    # import_wh, export_wh (the net, settled figures), production_wh, consumption_wh
    totals: dict[str, Counter] = {}
    booked: dict[str, Counter] = {}                # the same over the closed periods as they closed
    settled_start: AwareDatetime | None = None     # the period whose counters stepped already
    loads_wh: dict[str, Counter] = {}              # each load's energy over the closed periods, Wh
    switches_today: dict[str, Annotated[StrictInt, Field(ge=0)]] = {}
    switches_day: date | None = None               # the local day switches_today counts
    last_period_wh: Annotated[Number, Field(ge=-MAX_COUNTER_WH, le=MAX_COUNTER_WH)] | None = None
    last_period_end: AwareDatetime | None = None
    eur_saved_today: Annotated[Number, Field(ge=-1e6, le=1e6)] | None = None
    money_day: date | None = None                  # the local day eur_saved_today adds up
    # each setpoint device's energy per settlement period {"<epoch s>": [taken_wh, supplied_wh,
    # need_wh]} (gestor.runtime.setpoints.Setpoints.to_state): the period's devices_wh and its
    # cost without gestor survive a restart, as the loads' on_s
    device_wh: dict[str, dict[str, Annotated[list[Counter], Field(min_length=3, max_length=3)]]] = {}
    month_cap: MonthCapModel | None = None         # the month so far against the compensation cap (issue 35)


class OverrideEntry(_State):
    on: StrictBool
    until: AwareDatetime | None = None
    by: StrictStr = ""
    set_at: AwareDatetime | None = None

    @field_validator("until", "set_at")
    @classmethod
    def _within_the_calendar(cls, v: datetime | None) -> datetime | None:
        # a time a local zone cannot show (year 9999 in Madrid overflows) would crash every cycle:
        # an end past the year 2999 is no end (until auto), as the household meant
        return None if v is not None and v.year > 2999 else v


class OverridesFile(_State):
    entries: dict[str, OverrideEntry] = Field(default_factory=dict)

    @field_validator("entries")
    @classmethod
    def _names(cls, v: dict[str, OverrideEntry]) -> dict[str, OverrideEntry]:
        for name in v:
            if len(name) > 64:
                raise ValueError("load name too long")
        return v


class DeviceEnergyEntry(_State):
    in_wh: Counter = 0.0     # Wh the device took, from the power it read back, only increasing
    out_wh: Counter = 0.0    # Wh it supplied, likewise


class DeviceEnergyFile(_State):
    """``state_dir/device-energy.json`` (:mod:`gestor.runtime.devicebooks`)."""
    devices: dict[str, DeviceEnergyEntry] = Field(default_factory=dict)


class DeviceControlEntry(_State):
    mode: StrictStr = "auto"
    min_soc_pct: Annotated[Number, Field(ge=0, le=100)] | None = None
    target_wh: Annotated[Number, Field(ge=-1e6, le=1e6)] | None = None
    by: StrictStr = ""
    set_at: AwareDatetime | None = None


class DeviceControlsFile(_State):
    """``state_dir/device-controls.json`` (:mod:`gestor.runtime.devicecontrols`)."""
    entries: dict[str, DeviceControlEntry] = Field(default_factory=dict)


M = TypeVar("M", bound=BaseModel)
_reported: set[tuple[str, str]] = set()


def _finite(v: Any) -> bool:
    if isinstance(v, float):
        return math.isfinite(v)
    if isinstance(v, dict):
        return all(_finite(x) for x in v.values())
    if isinstance(v, list):
        return all(_finite(x) for x in v)
    return True


def _first_error(e: ValidationError, skip: int = 0) -> str:
    """A pydantic error's first line: ``where: what``."""
    first = e.errors()[0]
    return f"{'.'.join(str(x) for x in first['loc'][skip:]) or '(top level)'}: {first['msg']}"


def _first_time(what: str, reason: str) -> bool:
    """Whether ``what`` failed for ``reason`` for the first time (the memory is bounded)."""
    key = (what, reason)
    if key in _reported:
        return False
    if len(_reported) > 1000:
        _reported.clear()
    _reported.add(key)
    return True


def _report(what: str, reason: str, consequence: str) -> None:
    """One log line per ``what`` and ``reason``, however often it happens."""
    if _first_time(what, reason):
        log.error("%s (%s)%s", what, reason, consequence)


def parse_state(text: str, model: type[M], wrap: str | None = None) -> M:
    """Validate a state file's text. Raises ValueError with a one-line reason."""
    if wrap is None and model is LiveFile:  # every cycle: pydantic's own JSON parser, no detour
        try:
            return model.model_validate_json(text)
        except ValidationError as e:
            raise ValueError(_first_error(e)) from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"not JSON ({str(e)[:80]})") from None
    if not _finite(data):
        raise ValueError("holds a NaN or infinite number")
    try:
        return model.model_validate({wrap: data} if wrap else data)
    except ValidationError as e:
        raise ValueError(_first_error(e, 1 if wrap else 0)) from None


def read_state(path: Path, model: type[M], wrap: str | None = None, move_aside: bool = True,
               max_bytes: int = MAX_STATE_BYTES, deadline_s: float = STATE_FILE_DEADLINE_S) -> M | None:
    """The file at ``path`` validated by ``model``; None when it is missing or damaged. Never
    raises, never blocks (longer than ``deadline_s``).

    Damaged: anything :func:`gestor.files.read_small_file` refuses (a FIFO, directory, device or
    socket; over ``max_bytes`` bytes), bytes that are not UTF-8, text that is not JSON, JSON of
    the wrong shape or out of bounds. It is logged (once per file and reason) and, with
    ``move_aside``, renamed ``NAME.bad`` so the next read starts clean (if the directory is
    read-only it stays, and is ignored each time)."""
    path = Path(path)
    try:
        return parse_state(read_small_text(path, max_bytes, deadline_s), model, wrap)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as e:
        reason = (e.strerror or str(e)) if isinstance(e, OSError) else (
            "not UTF-8 text" if isinstance(e, UnicodeDecodeError) else str(e) or type(e).__name__)
        aside, moved = "", False
        if move_aside:
            try:
                os.replace(path, path.with_name(path.name + ".bad"))
                aside, moved = f"; moved aside to {path.name}.bad", True
            except OSError:
                aside = "; could not move it aside"
        # a file moved aside is gone: the next damaged one is a new event, with its own line
        if _first_time(str(path), reason) or moved:
            log.error("state file %s is damaged (%s): ignored%s", path, reason, aside)
        return None


def iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None
