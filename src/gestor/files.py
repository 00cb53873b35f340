"""Small file helpers shared by the daemons."""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Callable


def atomic_write_text(path: Path | str, text: str, fsync: bool = False, mode: int = 0o640) -> None:
    """Replace ``path`` with ``text`` atomically (write a temp file beside it, then rename), so a
    reader sees the old or the new content, never half of one. ``fsync`` makes it durable across
    a power cut (use it under /var/lib, not on tmpfs).

    The file gets ``mode`` (0640 by default: the group reads, others nothing) and the group of its
    directory, so a file written through ``sudo`` (an override, the stop latch) stays readable by
    the daemons' group and by nobody else. Raises OSError (a full or read-only disk)."""
    path = Path(path)
    # unique per writer (process and thread), so concurrent writers never share a temp file
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with open(fd, "w") as f:
            os.fchmod(fd, mode)  # whatever the umask
            if os.geteuid() == 0:  # root (sudo): hand the file to the directory's group
                try:
                    os.fchown(fd, -1, os.stat(path.parent).st_gid)
                except OSError:
                    pass
            f.write(text)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


class WriteGuard:
    """File writes a daemon does on the side (its state, the live state): a full or read-only
    disk is logged once per file and reason, and again when it can be written, never fatal (a
    crash loop would pulse the loads on at every restart)."""

    def __init__(self, log: logging.Logger, consequence: str) -> None:
        self.log = log
        self.consequence = consequence
        self.errors: dict[str, str] = {}

    def __call__(self, what: str, fn: Callable[[], object]) -> bool:
        try:
            fn()
        except OSError as e:
            msg = e.strerror or str(e)
            if self.errors.get(what) != msg:
                self.log.error("cannot write %s: %s; %s", what, msg, self.consequence)
                self.errors[what] = msg
            return False
        if self.errors.pop(what, None):
            self.log.warning("%s can be written again", what)
        return True
