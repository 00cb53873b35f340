"""The outage spool: an append-only, on-disk FIFO of line-protocol points, so that nothing is lost
while InfluxDB is away, across restarts and power cuts.

Layout under ``state_dir/spool/``: segments ``000001.lp``, ``000002.lp``... of at most
``segment_bytes``, one point per line, and ``position`` (``<segment> <byte offset>``, written
atomically) marking what the server has acknowledged. Appends are fsync'd per call (the writer
batches them). Reading returns whole lines from the position; :meth:`ack` advances it and deletes
acknowledged segments. Past ``max_bytes`` the oldest segments are dropped, counted and logged.

A power cut during an append can leave a truncated last line: a reopened spool never appends to
a segment that does not end in a newline (it starts a new one), and a line without its newline at
the end of a segment that is no longer written to is skipped with a warning.

A ``position`` that cannot be trusted (not a regular file, not two numbers, past the end of its
segment or of the spool, in the middle of a line) is logged and replaced by one that loses
nothing: the start of the line it points into, or else the start of the oldest segment. Points
already sent are then sent again, which is harmless: InfluxDB keeps one point per series (same
measurement and tags) and timestamp, so a point written twice is stored once.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from gestor.files import atomic_write_text, read_small_text

log = logging.getLogger("gestor.store")


class Spool:
    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int = 4 * 1024 * 1024) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.dropped_points = 0
        self.skipped_lines = 0
        self._refused: set[str] = set()   # names of non-regular segment files, logged once
        self._pos = self._checked_position(self._read_position())
        self._size = 0
        self._recount()
        segs = self.segments()
        self._active: int | None = None
        if segs:
            last = segs[-1]
            p = self._path(last)
            if p.stat().st_size and not _ends_with_newline(p):
                log.warning("spool %s ends in a truncated line (power cut during a write?): it will be "
                            "skipped on replay; new points go to a new segment", p.name)
            else:
                self._active = last

    # -- files -------------------------------------------------------------------------------
    def _path(self, seg: int) -> Path:
        return self.dir / f"{seg:06d}.lp"

    def segments(self) -> list[int]:
        """The segments' numbers, oldest first. A ``NNNNNN.lp`` that is not a regular file (a FIFO,
        a directory, a link to a device) would block or exhaust the reader: it is left out, with
        one log line."""
        out = []
        with os.scandir(self.dir) as it:
            for e in it:
                if not e.name.endswith(".lp"):
                    continue
                try:
                    n = int(e.name[:-3])
                except ValueError:
                    continue
                try:
                    regular = e.is_file()  # follows a symlink: True only for a regular file
                except OSError:
                    regular = False
                if not regular:
                    if e.name not in self._refused:
                        self._refused.add(e.name)
                        log.error("spool %s is not a regular file: left out of the spool", e.name)
                    continue
                out.append(n)
        return sorted(out)

    def _read_position(self) -> tuple[int, int] | str:
        """The saved position, (0, 0) without a file (a new spool: from the oldest segment), or
        the reason it cannot be read (a FIFO or directory in its place, garbage)."""
        try:
            seg, off = read_small_text(self.dir / "position", 256).split()
            return int(seg), int(off)
        except FileNotFoundError:
            return 0, 0
        except OSError as e:
            return e.strerror or str(e)
        except ValueError:
            return "not '<segment> <offset>'"

    def _checked_position(self, pos: tuple[int, int] | str) -> tuple[int, int]:
        """``pos`` if it points at the start of a line in the spool (or before it all), else a
        position that loses nothing (logged): the start of the line it points into, or the start
        of the oldest segment. Replayed points are stored once (see the module's docstring)."""
        segs = self.segments()
        if isinstance(pos, str):
            why = f"unreadable ({pos})"
        elif pos[0] < 0 or pos[1] < 0:
            why = f"negative ({pos[0]} {pos[1]})"
        elif not segs:
            if pos[1] == 0:
                return pos
            why = f"past the end of the spool (offset {pos[1]} in segment {pos[0]}, which does not exist)"
        elif pos[0] < segs[0] or (pos[0] not in segs and pos[0] < segs[-1]):
            return pos  # nothing unread before it: read() starts at the next segment's start
        elif pos[0] > segs[-1]:
            why = f"past the last segment ({pos[0]} > {segs[-1]})"
        else:
            path = self._path(pos[0])
            size = path.stat().st_size
            if pos[1] > size:
                why = f"past the end of segment {pos[0]} (offset {pos[1]} > {size} bytes)"
            elif pos[1] == 0 or _byte_before(path, pos[1]) == b"\n":
                return pos
            else:
                start = _line_start(path, pos[1])
                log.error("spool position %d %d is in the middle of a line: replaying from the line's start "
                          "(offset %d); a point sent twice is stored once", pos[0], pos[1], start)
                return pos[0], start
        if not segs:
            log.error("spool position file is %s: nothing to replay, new points start a new segment", why)
            return (pos[0] if isinstance(pos, tuple) and pos[0] > 0 else 0), 0
        log.error("spool position file is %s: replaying every point from the start of segment %d, so none is "
                  "lost (points already sent are sent again, and stored once)", why, segs[0])
        return segs[0], 0

    def _write_position(self) -> None:
        """Persist the position. A full disk keeps it in memory only: after a restart some points
        are sent twice, which InfluxDB absorbs (one point per series and timestamp)."""
        try:
            atomic_write_text(self.dir / "position", f"{self._pos[0]} {self._pos[1]}\n")
        except OSError as e:
            log.warning("spool position not saved (%s): kept in memory", e.strerror or e)

    def _recount(self) -> int:
        """Bytes not yet acknowledged, from the files (lists the directory)."""
        total = 0
        for seg in self.segments():
            size = self._path(seg).stat().st_size
            total += size - (self._pos[1] if seg == self._pos[0] else 0)
        self._size = max(total, 0)
        return self._size

    @property
    def size_bytes(self) -> int:
        """Bytes not yet acknowledged (kept in memory: an idle writer does not list the directory)."""
        return self._size

    def empty(self) -> bool:
        return self._size == 0

    # -- writing -----------------------------------------------------------------------------
    def append(self, lines: list[str]) -> None:
        """Append points (fsync'd before returning). Drops the oldest segments past the bound."""
        if not lines:
            return
        data = "".join(line.rstrip("\n") + "\n" for line in lines).encode()
        segs = self.segments()
        if self._active is None or self._active not in segs or \
                self._path(self._active).stat().st_size + len(data) > self.segment_bytes:
            self._active = (segs[-1] + 1) if segs else max(self._pos[0], 1)
        fd = os.open(self._path(self._active), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        try:
            size = os.fstat(fd).st_size
            try:
                view = memoryview(data)
                while view:  # os.write may write part of it
                    n = os.write(fd, view)
                    view = view[n:]
                os.fsync(fd)
            except OSError:
                # a full disk mid-write: take the torn part back, so no half line is ever left
                try:
                    os.ftruncate(fd, size)
                except OSError:
                    pass
                raise
        finally:
            os.close(fd)
        self._size += len(data)
        self._enforce_bound()

    def _enforce_bound(self) -> None:
        while self.size_bytes > self.max_bytes and self._recount() > self.max_bytes:
            segs = self.segments()
            if len(segs) <= 1:
                # one segment over the bound: drop its oldest lines by moving the read position
                seg = segs[0]
                lines = self._path(seg).read_bytes()
                start = self._pos[1] if self._pos[0] == seg else 0
                over = self.size_bytes - self.max_bytes
                cut = lines.find(b"\n", start + over)
                cut = len(lines) if cut < 0 else cut + 1
                n = lines[start:cut].count(b"\n")
                self._pos = (seg, cut)
                self._write_position()
                self._dropped(n)
                self._recount()
                return
            oldest = segs[0]
            p = self._path(oldest)
            start = self._pos[1] if self._pos[0] == oldest else 0
            n = p.read_bytes()[start:].count(b"\n")
            p.unlink()
            self._pos = (segs[1], 0)
            self._write_position()
            self._dropped(n)
            self._recount()

    def _dropped(self, n: int) -> None:
        self.dropped_points += n
        log.error("SPOOL FULL (store.spool_max_mb=%g): dropped the %d oldest points (%d dropped in all)",
                  self.max_bytes / 1e6, n, self.dropped_points)

    # -- reading -----------------------------------------------------------------------------
    def read(self, max_lines: int, chunk_bytes: int = 1 << 20) -> tuple[list[str], tuple[int, int]]:
        """Up to ``max_lines`` complete points from the position, and the position after them.
        Reads at most about ``chunk_bytes`` per segment from its offset, not whole segments."""
        out: list[str] = []
        seg, off = self._pos
        for s in self.segments():
            if s < seg:
                continue
            if s > seg:
                seg, off = s, 0
            path = self._path(s)
            size = path.stat().st_size
            active = s == self._active
            while len(out) < max_lines and off < size:
                with open(path, "rb") as f:
                    f.seek(off)
                    data = f.read(chunk_bytes)
                at_eof = off + len(data) >= size
                pos = 0
                while len(out) < max_lines:
                    nl = data.find(b"\n", pos)
                    if nl < 0:
                        break
                    line = data[pos:nl].decode(errors="replace").strip()
                    pos = nl + 1
                    if line:
                        out.append(line)
                if pos < len(data) and len(out) < max_lines and at_eof and data.find(b"\n", pos) < 0:
                    off += pos
                    if active:
                        break  # being written: wait for the rest
                    self.skipped_lines += 1
                    log.warning("spool %s: skipped a truncated last line (%d bytes): %r", path.name,
                                size - off, data[pos:pos + 120])
                    off = size
                    break
                if pos == 0:
                    break  # a line longer than the chunk: give up on this segment for now
                off += pos
            if len(out) >= max_lines:
                break
        return out, (seg, off)

    def ack(self, pos: tuple[int, int]) -> None:
        """The server has the points up to ``pos``: advance and delete finished segments."""
        self._pos = pos
        for s in self.segments():
            p = self._path(s)
            if s < pos[0] or (s == pos[0] and pos[1] >= p.stat().st_size and s != self._active):
                p.unlink()
        if self._recount() == 0:
            for s in self.segments():
                self._path(s).unlink()
            self._active = None
            nxt = pos[0] + 1
            self._pos = (nxt, 0)
        self._write_position()


def _byte_before(p: Path, off: int) -> bytes:
    with open(p, "rb") as f:
        f.seek(off - 1)
        return f.read(1)


def _line_start(p: Path, off: int, chunk: int = 64 * 1024) -> int:
    """The offset of the start of the line holding byte ``off - 1`` of ``p``."""
    with open(p, "rb") as f:
        end = off
        while end > 0:
            a = max(end - chunk, 0)
            f.seek(a)
            nl = f.read(end - a).rfind(b"\n")
            if nl >= 0:
                return a + nl + 1
            end = a
    return 0


def _ends_with_newline(p: Path) -> bool:
    with open(p, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"
