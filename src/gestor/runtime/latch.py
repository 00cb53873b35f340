"""managing's hold on the stop latch (``<state_dir>/stop.latch``, :mod:`gestor.runtime.livestate`).

:class:`Latch` sets the latch for an emergency stop from inside managing (the stop button, MQTT)
and reads it at every cycle, logging its changes. Its failure mode: a latch that cannot be written
(a read-only SD card) is held by managing itself (every cycle counts as latched) and written as
soon as it can; a state directory that cannot be read counts as latched. Nothing here raises.
"""
from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from gestor.runtime.livestate import is_latched, latch_path, set_latch

log = logging.getLogger("gestor.managing")


class Latch:
    """The stop latch of ``state_dir`` as managing holds it."""

    def __init__(self, state_dir: Path | str) -> None:
        self.state_dir = Path(state_dir)
        self._pending: tuple[datetime, str] | None = None  # a stop whose latch file could not be written
        self._seen: bool | None = None   # the latch at the last cycle (its changes are logged)

    def set(self, now: datetime, origin: str) -> None:
        """Set the latch (``origin``: who stopped), or hold it here until the file can be written."""
        try:
            set_latch(self.state_dir, now, origin)
        except OSError as e:  # a read-only SD card: the stop is held here until the file can be written
            self._pending = (now, origin)
            log.error("stop latch NOT written (%s): managing holds the stop itself and writes the latch as "
                      "soon as it can; every load off", e)

    def is_set(self) -> bool:
        """The latch now (its file, or a stop held here until the file can be written), without
        writing or logging anything."""
        return self._pending is not None or is_latched(self.state_dir)

    def check(self) -> tuple[bool, bool]:
        """At each cycle: (latched, released since the last check). A pending latch is written
        now if it can be (and holds meanwhile); a change is logged."""
        latched = is_latched(self.state_dir)
        if self._pending is not None:  # a stop whose latch could not be written: it still holds
            try:
                set_latch(self.state_dir, *self._pending)
                log.warning("stop latch written now (%s)", latch_path(self.state_dir))
                self._pending = None
            except OSError:
                pass
            latched = True
        released = False
        if latched != self._seen:
            if latched:
                log.warning("stop latch set (%s): every load off until 'stop-loads --release'",
                            latch_path(self.state_dir))
            elif self._seen is not None:
                log.warning("stop latch released: the policy decides again")
                released = True
            self._seen = latched
        return latched, released
