"""The CSV side of :class:`drivers.meters.replay.ReplayData`: run as ``python -m
drivers.meters.replay_reader`` by :meth:`ReplayData.load`, it parses a recording with pyarrow and
streams its columns to the parent, which never imports pyarrow.

Why a helper process: pyarrow (with the numpy it loads) is about 90 MB of resident memory
(``libarrow`` and ``libarrow_compute`` alone 42 MB, measured here with ``/proc/self/smaps``) that a
process keeps once it has imported it. Parsed here, a year of 10 s samples (3.15 M rows) costs
``gestor simulate``, the demo and a monitoring daemon playing a recording only the columns
(``array('d')``, 8 bytes a value: 100 MB for the year's four), and this process stays flat (1 MB
record batches) and exits when the file is read.

Protocol (stdin: the :class:`ReplaySettings` as JSON, ``path`` as the parent sees it, same working
directory; stdout: frames, each an 8-byte native signed count ``n`` then):

* ``n >= 0``: a record batch, ``n`` float64 values of each column in the order time,
  production (only when ``production_column`` is set), consumption, net;
* ``RESTART``: discard what came so far, the file is sent again (a subtract column turned out to
  be empty in the whole file: that load was not there, see the replay module's docstring);
* ``FAILED``: a MeterError's message follows (UTF-8, to the end of the stream);
* ``DONE``: one byte follows, ``b"1"`` if the times never went backwards, ``b"0"`` otherwise.

Anything else (no ``DONE``) is a crash; its traceback is on stderr.
"""
from __future__ import annotations

import csv
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from drivers.meters.base import MeterError
from drivers.meters.replay import DONE, FAILED, HEADER, RESTART, ReplaySettings


@dataclass
class _Seen:
    """What a pass over the file sent: rows, whether the times were in order, the last time, and
    the values each subtract column had."""

    rows: int = 0
    ordered: bool = True
    last_t: float | None = None
    values: dict[str, int] = field(default_factory=dict)


def main() -> int:
    """Read the settings from stdin, stream the file's columns to stdout (see module docstring)."""
    s = ReplaySettings.model_validate_json(sys.stdin.buffer.read())
    out = sys.stdout.buffer
    try:
        ordered = stream(s, s.path, out)
    except MeterError as e:
        out.write(HEADER.pack(FAILED) + str(e).encode())
        out.flush()
        return 0
    out.write(HEADER.pack(DONE) + (b"1" if ordered else b"0"))
    out.flush()
    return 0


def stream(s: ReplaySettings, path: Path, out: BinaryIO) -> bool:
    """Write the frames of ``path``'s columns to ``out``; True if its times never go backwards.
    Raises MeterError naming the file (and line) for a missing, unreadable or malformed file or
    missing columns."""
    import pyarrow as pa

    try:
        with open(path, newline="") as f:
            header = next(csv.reader(f), None)
    except OSError as e:
        raise MeterError(f"replay file {path}: {e.strerror or e}") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise MeterError(f"replay file {path}: not a CSV file ({e})") from None
    if not header:
        raise MeterError(f"replay file {path}: empty, expected a CSV header")
    names = [h.strip() for h in header]
    wanted = [s.timestamp_column] + [c for c in (s.production_column, s.consumption_column,
                                                  s.net_column) if c] + list(s.subtract_columns)
    missing = [c for c in wanted if c not in names]
    if missing:
        raise MeterError(f"replay file {path}: no column {', '.join(missing)} (it has: {', '.join(header)})")
    raw = {n.strip(): n for n in header}
    try:
        seen = _pass(s, raw, path, wanted, out)
        empty = [c for c in s.subtract_columns if not seen.values[c]]
        if empty and seen.rows:  # sent with a column that is not there: again without it
            out.write(HEADER.pack(RESTART))
            s = s.model_copy(update={"subtract_columns": [c for c in s.subtract_columns if c not in empty]})
            seen = _pass(s, raw, path, [c for c in wanted if c not in empty], out)
    except pa.ArrowInvalid as e:
        if "conversion error to timestamp" in str(e):
            _bad_time(path, raw[s.timestamp_column])
        raise MeterError(f"replay file {path}: {e}") from None
    except OSError as e:
        raise MeterError(f"replay file {path}: {e}") from None
    if not seen.rows:
        raise MeterError(f"replay file {path}: no samples")
    return seen.ordered


def _batches(path: Path, raw: dict[str, str], s: ReplaySettings, wanted: list[str], ts_type):
    """The file in record batches of 1 MB of text: memory stays flat."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    types = {**{raw[c]: pa.float64() for c in wanted}, raw[s.timestamp_column]: ts_type}
    return pcsv.open_csv(path, read_options=pcsv.ReadOptions(block_size=1 << 20, use_threads=False),
                         convert_options=pcsv.ConvertOptions(column_types=types, strings_can_be_null=True,
                                                             include_columns=[raw[c] for c in dict.fromkeys(wanted)]))


def _pass(s: ReplaySettings, raw: dict[str, str], path: Path, wanted: list[str], out: BinaryIO) -> _Seen:
    """One pass over the file, each batch's columns written as a frame."""
    import pyarrow as pa
    seen = _Seen(values=dict.fromkeys(s.subtract_columns, 0))
    try:  # naive times, parsed by the reader itself (the shared/data files)
        for batch in _batches(path, raw, s, wanted, pa.timestamp("us")):
            _send(batch, s, raw, out, seen)
    except pa.ArrowInvalid as e:
        if "zone offset" not in str(e) or seen.rows:
            raise
        for batch in _batches(path, raw, s, wanted, pa.timestamp("us", tz="UTC")):  # with an offset: to UTC
            _send(batch, s, raw, out, seen)
    return seen


def _send(batch, s: ReplaySettings, raw: dict[str, str], out: BinaryIO, seen: _Seen) -> None:
    """Write one record batch's time, production, consumption and net as a frame (formulas:
    the replay module's docstring), computed column-wise by Arrow's kernels; update ``seen``."""
    import pyarrow as pa
    import pyarrow.compute as pc
    nan = float("nan")

    def col(name: str):  # float64, NaN where a cell is empty or missing
        c = batch.column(raw[name])
        return c.fill_null(nan) if c.null_count else c

    n = batch.num_rows
    if not n:
        return
    for c in s.subtract_columns:
        seen.values[c] += n - batch.column(raw[c]).null_count
    t = batch.column(raw[s.timestamp_column])
    if t.type.tz is None and s.timestamp_tz != "UTC":  # naive times in another zone
        t = pc.assume_timezone(t, timezone=s.timestamp_tz, ambiguous="earliest", nonexistent="earliest")
    # exact integer microseconds / 1e6, rounded once: the float datetime.timestamp() gives
    t = pc.divide(t.view(pa.int64()).cast(pa.float64()), 1e6)
    prod = col(s.production_column) if s.production_column else None
    sub = None
    for c in s.subtract_columns:
        sub = col(c) if sub is None else pc.add(sub, col(c))

    def minus_sub(x):
        return x if sub is None else pc.subtract(x, sub)

    def at_least_0(x):  # max(x, 0) that keeps NaN (a missing cell stays missing)
        return pc.if_else(pc.less(x, 0.0), 0.0, x)

    if s.net_column:
        net = col(s.net_column)
        if s.net_sign == "import_positive":
            net = pc.negate(net)
        if s.consumption_column:
            cons = at_least_0(minus_sub(col(s.consumption_column)))
        else:  # consumption = production - export-positive net
            nans = pa.nulls(n, pa.float64()).fill_null(nan)
            cons = minus_sub(pc.subtract(prod if prod is not None else nans, net))
        net = net if sub is None else pc.add(net, sub)
    else:  # base load, as shared/data/README says
        cons = at_least_0(minus_sub(col(s.consumption_column)))
        net = pc.subtract(prod, cons)
    if seen.ordered:
        before = seen.last_t
        if (before is not None and t[0].as_py() < before) or (
                n > 1 and pc.any(pc.less(t.slice(1), t.slice(0, n - 1))).as_py()):
            seen.ordered = False
    seen.last_t = t[n - 1].as_py()
    seen.rows += n
    out.write(HEADER.pack(n))
    for c in (t, prod, cons, net):
        if c is not None:  # float64 without nulls: the values buffer as it is
            out.write(memoryview(c.buffers()[1])[c.offset * 8:(c.offset + n) * 8])
    pa.default_memory_pool().release_unused()  # the batch's intermediates: memory stays flat


def _bad_time(path: Path, column: str) -> None:
    """Raise MeterError naming the first line whose ``column`` is not an ISO 8601 time (the error
    path only)."""
    from datetime import datetime

    import pyarrow as pa
    import pyarrow.csv as pcsv
    ts = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(
        column_types={column: pa.string()}, include_columns=[column], strings_can_be_null=True)).column(0)
    for i, v in enumerate(ts.to_pylist()):
        try:
            datetime.fromisoformat((v or "").strip())
        except ValueError:
            raise MeterError(f"replay file {path}, line {i + 2}: bad timestamp {v!r}") from None


if __name__ == "__main__":
    sys.exit(main())
