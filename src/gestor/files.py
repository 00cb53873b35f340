"""Small file helpers shared by the daemons."""
from __future__ import annotations

import errno
import logging
import os
import stat
import threading
import time
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


# -- the one reader of state and runtime files ---------------------------------------------------
STATE_FILE_MAX_BYTES = 4 * 1024 * 1024   # the live state, managing's state, overrides: a few kB each
STATE_FILE_DEADLINE_S = 2.0
_CHUNK = 64 * 1024
_KINDS = ((stat.S_ISDIR, "a directory", errno.EISDIR), (stat.S_ISFIFO, "a FIFO (named pipe)", errno.EINVAL),
          (stat.S_ISCHR, "a character device", errno.EINVAL), (stat.S_ISBLK, "a block device", errno.EINVAL),
          (stat.S_ISSOCK, "a socket", errno.EINVAL))


class UnsafeFileError(OSError):
    """A state file gestor refuses to read: not a regular file, over its size cap, or slower to
    read than its deadline. ``strerror`` is the one-line reason (``"is a FIFO (named pipe), not a
    regular file"``), ``filename`` the path; ``str()`` gives both."""

    def __init__(self, path: Path | str, reason: str, code: int = errno.EINVAL) -> None:
        super().__init__(code, reason, str(path))

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


def _refuse_unless_regular(path: Path | str, st: os.stat_result) -> None:
    """Raise UnsafeFileError unless ``st`` is a regular file's."""
    if stat.S_ISREG(st.st_mode):
        return
    what, code = next(((w, c) for test, w, c in _KINDS if test(st.st_mode)), ("not a file", errno.EINVAL))
    raise UnsafeFileError(path, f"is {what}, not a regular file", code)


def read_small_file(path: Path | str, max_bytes: int = STATE_FILE_MAX_BYTES,
                    deadline_s: float = STATE_FILE_DEADLINE_S) -> bytes:
    """The bytes of the regular file at ``path`` (symlinks followed), at most ``max_bytes``, read
    within ``deadline_s`` seconds: the one reader of every state and runtime file, so that no file
    can block, exhaust or crash a daemon.

    The file is checked with ``stat`` (a device is not even opened), opened with ``O_NONBLOCK``
    (a FIFO cannot block the open), ``O_NOCTTY`` and ``O_CLOEXEC``, and checked again with
    ``fstat`` on the descriptor (a file swapped in between is caught); at most ``max_bytes + 1``
    bytes are ever read.

    Raises:
        FileNotFoundError: there is no file (also a dangling symlink).
        UnsafeFileError (an OSError): a directory, FIFO, device or socket; larger than
            ``max_bytes``; or not read within ``deadline_s`` (a hung file system).
        OSError: any other failure to read (PermissionError...).
    """
    _refuse_unless_regular(path, os.stat(path))
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        _refuse_unless_regular(path, st)
        if st.st_size > max_bytes:
            raise UnsafeFileError(path, f"is {st.st_size} bytes, over the {max_bytes}-byte cap", errno.EFBIG)
        deadline = time.monotonic() + deadline_s
        parts: list[bytes] = []
        got = 0
        while got <= max_bytes:
            chunk = os.read(fd, min(_CHUNK, max_bytes + 1 - got))
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
            if time.monotonic() > deadline:
                raise UnsafeFileError(path, f"not read within {deadline_s:g} s", errno.ETIMEDOUT)
        if got > max_bytes:  # it grew while being read
            raise UnsafeFileError(path, f"is over the {max_bytes}-byte cap", errno.EFBIG)
        return b"".join(parts)
    finally:
        os.close(fd)


def read_small_text(path: Path | str, max_bytes: int = STATE_FILE_MAX_BYTES,
                    deadline_s: float = STATE_FILE_DEADLINE_S) -> str:
    """:func:`read_small_file` decoded as UTF-8. Raises as it does, and UnicodeDecodeError (a
    ValueError) for bytes that are not UTF-8."""
    return read_small_file(path, max_bytes, deadline_s).decode("utf-8")
