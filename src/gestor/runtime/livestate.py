"""The monitoring → managing handoff, and the stop latch.

monitoring keeps the last readings in a small ring and atomically replaces
``<run_dir>/reading.json`` after every read, so managing (another process) sees every reading even
when its own cycle is slower; managing integrates those newer than the last it accounted. A failed
read leaves the readings as they were (they go stale) and records the error. Each reading carries
``mono_s``, monitoring's monotonic clock when it was read, so managing can tell its age whatever
the wall clock does.

The stop latch is ``<state_dir>/stop.latch``: persistent, so it survives a reboot. While it exists,
managing keeps every load off.
"""
from __future__ import annotations

import json
import os
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Callable

from drivers.meters.base import Reading
from gestor.files import atomic_write_text, read_small_text
from gestor.runtime.statefiles import LiveFile, read_state

READING_FILE = "reading.json"
LATCH_FILE = "stop.latch"


class LiveStateWriter:
    """monitoring's side. ``keep``: how many recent readings the file holds."""

    def __init__(self, run_dir: Path, keep: int = 30) -> None:
        self.path = Path(run_dir) / READING_FILE
        self.readings: deque[dict] = deque(maxlen=keep)  # serialised once, written many times
        self.errors = 0
        self.last_error: str | None = None
        self.last_error_at: datetime | None = None

    def publish(self, reading: Reading, mono_s: float | None = None) -> None:
        self.readings.append({**reading.to_dict(), "mono_s": mono_s})
        self._write()

    def clear(self) -> None:
        """Forget the readings (after a wall-clock step: their times belong to the old clock; a
        frozen meter: none vouches for it any more)."""
        self.readings.clear()

    def error(self, at: datetime, message: str) -> None:
        self.errors += 1
        self.last_error, self.last_error_at = message, at
        self._write()

    def _write(self) -> None:
        atomic_write_text(self.path, json.dumps({
            "pid": os.getpid(),
            "readings": list(self.readings),
            "errors": self.errors,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at.isoformat() if self.last_error_at else None,
        }))


def read_live(run_dir: Path) -> list[tuple[Reading, float | None]]:
    """Recent readings with their monotonic stamps, oldest first; empty if monitoring has
    published none or the file is damaged (then they go stale, and the loads off). A reading out
    of bounds (``net_w: 1e308``) is a missing one; the others are used. Never raises, never
    blocks (a FIFO in the file's place is a damaged file: :func:`gestor.runtime.statefiles.read_state`)."""
    path = Path(run_dir) / READING_FILE
    live = read_state(path, LiveFile, move_aside=False)
    if live is None:
        return []
    out = []
    for m in live.valid_readings(path):
        try:
            out.append((m.reading(), None if m.mono_s is None else float(m.mono_s)))
        except Exception:  # noqa: BLE001 -- an implausible reading is a missing one
            continue
    return out


def reading_age(now: datetime, live: list[tuple[Reading, float | None]],
                monotonic: Callable[[], float]) -> float | None:
    """Age of the newest reading of ``live`` (:func:`read_live`), s; None without one. Measured on
    the wall clock (``now``) and on the monotonic clock monitoring stamped it with (``monotonic``:
    the reader's, the same clock): the worse of the two counts, and a negative age (a reading
    from the future: the clock stepped) is passed on as such, which the stale-meter guard treats
    as stale."""
    if not live:
        return None
    r, mono = live[-1]
    ages = [(now - r.at).total_seconds()]
    if mono is not None:
        ages.append(monotonic() - mono)
    return min(ages) if min(ages) < 0 else max(ages)


def latch_path(state_dir: Path) -> Path:
    return Path(state_dir) / LATCH_FILE


def set_latch(state_dir: Path, at: datetime, by: str) -> None:
    """Create the latch (group-readable only, group of the state dir). Raises OSError."""
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_text(latch_path(state_dir), json.dumps({"at": at.isoformat(), "by": by}) + "\n", fsync=True,
                      mode=0o640)


class LatchError(OSError):
    """The stop latch exists but cannot be removed; ``str()`` is one line saying why and what to
    do."""

    def __str__(self) -> str:
        return f"cannot release the stop latch {self.filename}: {self.strerror}"


def clear_latch(state_dir: Path) -> bool:
    """Remove the stop latch, whatever it is: True when one was set, False when there was none.
    A directory in its place (``mkdir stop.latch`` counts as latched) is removed when empty, else
    renamed ``stop.latch.bad`` (nothing is deleted that a person put there).

    Raises:
        LatchError (an OSError): it cannot be removed (no right to write the state directory:
            run with sudo; a read-only file system); the message is one line.
    """
    path = latch_path(state_dir)
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False
    except IsADirectoryError:
        pass
    except OSError as e:
        raise LatchError(e.errno, _why(e), str(path)) from None
    try:
        path.rmdir()
        return True
    except FileNotFoundError:
        return False
    except OSError:
        pass  # not empty: keep what is in it
    bad = path.with_name(path.name + ".bad")
    try:
        os.rename(path, bad)
        return True
    except FileNotFoundError:
        return False
    except OSError as e:
        raise LatchError(e.errno, f"it is a directory that is not empty and cannot be moved aside to {bad.name} "
                                  f"({_why(e)})", str(path)) from None


def _why(e: OSError) -> str:
    if isinstance(e, PermissionError):
        return f"{e.strerror or e}: run it with sudo"
    return e.strerror or str(e)


def is_latched(state_dir: Path) -> bool:
    """True while the latch exists, or when it cannot be told (an unreadable state dir): in doubt,
    latched."""
    try:
        os.stat(latch_path(state_dir))
        return True
    except FileNotFoundError:
        return False
    except OSError:
        return True


MANAGING_FILE = "managing.json"


def publish_managing(run_dir: Path, status: dict) -> None:
    """managing's state after each cycle (loads, balance, latch, overrides), for ``gestor status``
    and ``stop-loads``: ``run_dir/managing.json``."""
    atomic_write_text(Path(run_dir) / MANAGING_FILE, json.dumps(status))


MAX_MANAGING_BYTES = 1024 * 1024


def read_managing(run_dir: Path) -> dict | None:
    """managing's last published state (:func:`publish_managing`); None when it is missing or not
    a JSON object, or the file is anything :func:`gestor.files.read_small_file` refuses (a FIFO,
    a directory, over 1 MiB). Never raises, never blocks."""
    try:
        d = json.loads(read_small_text(Path(run_dir) / MANAGING_FILE, MAX_MANAGING_BYTES))
        return d if isinstance(d, dict) else None
    except (OSError, ValueError, RecursionError):
        return None


def pid_alive(pid: object) -> bool:
    """Whether process ``pid`` exists (a process of another user counts as alive)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
