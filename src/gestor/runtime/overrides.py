"""Manual overrides per load, set by ``gestor override LOAD on|off|auto [--for 2h]`` and obeyed by
managing (see :mod:`gestor.core.guards`). Kept in ``state_dir/overrides.json`` (survives restarts):
``{"water_heater": {"on": true, "until": "2026-11-22T21:00:00+00:00", "by": "..."}}``.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path

from gestor.files import atomic_write_text, read_small_text
from gestor.core.guards import Override
from gestor.runtime.statefiles import MAX_STATE_BYTES, OverridesFile, parse_state, read_state

FILE = "overrides.json"


MAX_OVERRIDE = timedelta(days=31)  # the longest "for": past it, use no duration (until auto)


def parse_duration(text: str) -> timedelta:
    """``"2h"``, ``"90m"``, ``"1h30m"``, ``"45s"`` → timedelta, more than 0 and at most
    ``MAX_OVERRIDE`` (31 days). Raises ValueError naming the text and what is allowed."""
    m = re.fullmatch(r"\s*(?:(\d{1,9}(?:\.\d{1,6})?)h)?\s*(?:(\d{1,9}(?:\.\d{1,6})?)m)?\s*(?:(\d{1,9}(?:\.\d{1,6})?)s)?\s*",
                     text[:100])
    if len(text) > 100 or not m or not any(m.groups()):
        raise ValueError(f"duration {text[:40]!r} must look like 2h, 90m, 1h30m or 45s")
    h, mi, s = (float(x) if x else 0.0 for x in m.groups())
    seconds = h * 3600 + mi * 60 + s
    if seconds <= 0:
        raise ValueError(f"duration {text!r} must be > 0")
    if seconds > MAX_OVERRIDE.total_seconds():
        raise ValueError(f"duration {text!r} must be at most {MAX_OVERRIDE.days} days (for longer, give none: "
                         f"the override holds until 'auto')")
    return timedelta(seconds=seconds)


def read_overrides(state_dir: Path, now: datetime, move_aside: bool = True) -> dict[str, Override]:
    """The overrides in force at ``now`` (expired ones are ignored). A damaged file (wrong shape,
    ``"on": "false"``, an entry that is not an object) is logged, moved aside and ignored: no
    override, rather than a wrong one or a crash."""
    f = read_state(Path(state_dir) / FILE, OverridesFile, wrap="entries", move_aside=move_aside)
    if f is None:
        return {}
    return {load: Override(o.on, o.until, o.by) for load, o in f.entries.items()
            if o.until is None or o.until > now}


def set_override(state_dir: Path, load: str, mode: str, now: datetime, duration: timedelta | None = None,
                 by: str = "") -> Override | None:
    """Set ``load`` to ``on``/``off`` (for ``duration``, or until ``auto``), or back to ``auto``.
    Returns the override now in force (None for auto)."""
    path = Path(state_dir) / FILE
    try:
        raw = json.loads(read_small_text(path, MAX_STATE_BYTES))
        parse_state(json.dumps(raw), OverridesFile, wrap="entries")
    except (OSError, ValueError, RecursionError):
        raw = {}  # missing or damaged (a FIFO, a directory, not JSON...): start a clean file
    if mode == "auto":
        raw.pop(load, None)
        ov = None
    else:
        until = now + duration if duration else None
        ov = Override(mode == "on", until, by)
        raw[load] = {"on": ov.on, "until": until.isoformat() if until else None, "by": by,
                     "set_at": now.isoformat()}
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(raw, indent=1))
    return ov


def apply_override(settings, load: str, mode: str, for_text: str | None, now: datetime, by: str) -> str:
    """What ``gestor override`` and the web page's buttons do: check ``load`` (a configured load),
    ``mode`` (on, off, auto) and ``for_text`` (a duration for on/off, e.g. ``2h``; None: until
    auto), write the override and return the sentence saying what managing will do.

    Raises:
        ValueError: an unknown load, mode or duration (the message names it and what is allowed).
        OSError: the state directory cannot be written.
    """
    names = [ld.name for ld in settings.loads]
    if load not in names:
        raise ValueError(f"no load named {load!r} (loads: {', '.join(names) or 'none, loads: [] in the settings'})")
    if mode not in ("on", "off", "auto"):
        raise ValueError(f"mode {mode!r} must be on, off or auto")
    duration = parse_duration(for_text) if for_text else None
    if mode == "auto" and duration:
        raise ValueError("a duration goes with on or off, not auto")
    ov = set_override(settings.paths.state_dir, load, mode, now, duration, by=by)
    if ov is None:
        return f"{load}: back to auto (the policy decides) from managing's next cycle"
    return (f"{load}: {ov.describe(settings.tz)}, from managing's next cycle "
            f"(the stop latch and a stale meter still switch it off)")
