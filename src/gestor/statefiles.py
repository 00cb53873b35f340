"""The files the daemons keep and hand each other, validated like the settings (pydantic, strict
types): a file of the wrong shape is never half-used.

| file | written by | model |
|---|---|---|
| ``run_dir/reading.json`` | monitoring, each read | :class:`LiveFile` |
| ``state_dir/managing.json`` | managing, once a minute | :class:`ManagingFile` |
| ``state_dir/monitoring.json`` | monitoring, once a minute | :class:`MonitoringFile` |
| ``state_dir/overrides.json`` | ``gestor override`` | :class:`OverridesFile` |

:func:`read_state` returns the validated model, or None when the file is missing; a damaged one
is logged, moved aside (``NAME.bad``, so a person can look at it) and ignored.
"""
from __future__ import annotations

import json
import logging
import math
import os
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import (AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr,
                      ValidationError, field_validator)

log = logging.getLogger("gestor.state")
MAX_STATE_BYTES = 4 * 1024 * 1024
Number = StrictFloat | StrictInt


class _State(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class ReadingModel(_State):
    at: AwareDatetime
    net_w: Number
    production_w: Number | None = None
    consumption_w: Number | None = None
    import_wh_total: Number | None = None
    export_wh_total: Number | None = None
    mono_s: Number | None = None   # monitoring's monotonic clock when it was read

    def reading(self) -> Any:
        from drivers.meters.base import Reading
        return Reading(self.at, float(self.net_w), *(None if v is None else float(v) for v in (
            self.production_w, self.consumption_w, self.import_wh_total, self.export_wh_total)))


class LiveFile(_State):
    pid: StrictInt | None = None
    readings: list[ReadingModel] = []
    errors: StrictInt = 0
    last_error: StrictStr | None = None
    last_error_at: AwareDatetime | None = None


class MonitoringFile(_State):
    last: ReadingModel


class LoadStateModel(_State):
    on: StrictBool | None = None
    since: AwareDatetime | None = None


class ManagingFile(_State):
    balance: dict[str, Any]
    on_s: dict[str, dict[str, Number]] = {}
    day_on_s: dict[str, dict[str, Number]] = {}
    switches: dict[str, dict[str, StrictInt]] = {}
    loads: dict[str, LoadStateModel] = {}


class OverrideEntry(_State):
    on: StrictBool
    until: AwareDatetime | None = None
    by: StrictStr = ""
    set_at: AwareDatetime | None = None


class OverridesFile(_State):
    entries: dict[str, OverrideEntry] = Field(default_factory=dict)

    @field_validator("entries")
    @classmethod
    def _names(cls, v: dict[str, OverrideEntry]) -> dict[str, OverrideEntry]:
        for name in v:
            if len(name) > 64:
                raise ValueError("load name too long")
        return v


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


def parse_state(text: str, model: type[M], wrap: str | None = None) -> M:
    """Validate a state file's text. Raises ValueError with a one-line reason."""
    if wrap is None and model is LiveFile:  # every cycle: pydantic's own JSON parser, no detour
        try:
            return model.model_validate_json(text)
        except ValidationError as e:
            first = e.errors()[0]
            raise ValueError(f"{'.'.join(str(x) for x in first['loc']) or '(top level)'}: {first['msg']}") from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"not JSON ({str(e)[:80]})") from None
    if not _finite(data):
        raise ValueError("holds a NaN or infinite number")
    try:
        return model.model_validate({wrap: data} if wrap else data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"][1 if wrap else 0:]) or "(top level)"
        raise ValueError(f"{where}: {first['msg']}") from None


def read_state(path: Path, model: type[M], wrap: str | None = None, move_aside: bool = True) -> M | None:
    """The file at ``path`` validated by ``model``; None when it is missing or damaged. A damaged
    file is logged (once per reason) and, with ``move_aside``, renamed ``NAME.bad`` so the next
    read starts clean (if the directory is read-only it stays, and is ignored each time)."""
    try:
        if path.stat().st_size > MAX_STATE_BYTES:
            raise ValueError(f"{path.stat().st_size} bytes: too large to be gestor's")
        text = path.read_text(errors="strict")
        return parse_state(text, model, wrap)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        reason = str(e) if not isinstance(e, OSError) else (e.strerror or str(e))
        key = (str(path), reason)
        if key not in _reported:
            _reported.add(key)
            aside = ""
            if move_aside:
                try:
                    os.replace(path, path.with_name(path.name + ".bad"))
                    aside = f"; moved aside to {path.name}.bad"
                except OSError:
                    aside = "; could not move it aside"
            log.error("state file %s is damaged (%s): ignored%s", path, reason, aside)
        return None


def iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None
