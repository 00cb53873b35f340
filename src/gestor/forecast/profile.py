"""The clear-sky production profile file: what :func:`gestor.forecast.pvmodel.write_profile`
writes (with pvlib, from a command) and managing reads each cycle or hour (standard library only:
no pvlib, no numpy on the Pi Zero's daemons).

The file is JSON, at most :data:`MAX_BYTES`::

    {"format": "gestor-clear-sky-profile/1", "start_s": <epoch s, UTC>, "step_s": <s>,
     "values_w": [<W>, ...], "written_s": <epoch s>, "model": {<the fitted parameters>}}

``values_w[i]`` is the installation's clear-sky production at ``start_s + i * step_s``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from gestor.core.nowcast import ClearSkyProfile
from gestor.files import atomic_write_text, read_small_text

FORMAT = "gestor-clear-sky-profile/1"
MAX_BYTES = 256 * 1024     # 7 days at 1-min steps fit in ~100 KB
MAX_VALUES = 7 * 24 * 60   # a week at 1-min steps


def dumps_profile(profile: ClearSkyProfile, written_s: float, model: dict | None = None) -> str:
    """The file's text for ``profile`` (values rounded to 0.1 W). Raises ValueError over
    :data:`MAX_VALUES` values."""
    if len(profile.values_w) > MAX_VALUES:
        raise ValueError(f"{len(profile.values_w)} values, over the {MAX_VALUES} a profile may hold")
    return json.dumps({"format": FORMAT, "start_s": profile.start_s, "step_s": profile.step_s,
                       "values_w": [round(v, 1) for v in profile.values_w], "written_s": written_s,
                       "model": model or {}}, separators=(",", ":"))


def save_profile(path: Path | str, profile: ClearSkyProfile, written_s: float, model: dict | None = None) -> None:
    """Replace the file at ``path`` atomically (:func:`gestor.files.atomic_write_text`, mode
    0644: the daemons' user reads it). Raises OSError, ValueError as :func:`dumps_profile`."""
    atomic_write_text(path, dumps_profile(profile, written_s, model), mode=0o644)


def loads_profile(text: str) -> ClearSkyProfile:
    """The profile in ``text``. Raises ValueError (malformed JSON, another format, a missing or
    wrong field, a negative or non-finite value, too many values)."""
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON: {e}") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} file")
    try:
        start_s, step_s, values = float(d["start_s"]), float(d["step_s"]), d["values_w"]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"missing or malformed field: {e}") from None
    if not isinstance(values, list) or len(values) > MAX_VALUES:
        raise ValueError(f"values_w must be a list of at most {MAX_VALUES} numbers")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise ValueError("values_w must hold numbers")
    if not math.isfinite(start_s):
        raise ValueError(f"start_s {start_s} must be finite")
    return ClearSkyProfile(start_s, step_s, tuple(float(v) for v in values))


def read_profile(path: Path | str) -> ClearSkyProfile:
    """The profile in the file at ``path`` (read with :func:`gestor.files.read_small_text`: a
    regular file of at most :data:`MAX_BYTES`, within its deadline).

    Raises:
        FileNotFoundError: no file (no profile written yet: run without the nowcast).
        OSError: unreadable, not a regular file, too large.
        ValueError: malformed (:func:`loads_profile`).
    """
    return loads_profile(read_small_text(path, max_bytes=MAX_BYTES))
