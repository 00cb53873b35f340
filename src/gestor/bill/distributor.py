"""The distributor's hourly curve: the official import and surplus of each clock hour of a CUPS,
read from the CSV files a holder downloads (one reader per kind of file) and stored in InfluxDB as
the ``distributor`` measurement.

The kinds of file (the header tells them apart; ``;``-separated, decimal commas):

* **Datadis / CNMC** (also what most distributors offer): ``CUPS;Fecha;Hora;Consumo_kWh;
  Metodo_obtencion[;Energia_vertida_kWh;Energia_generada_kWh;Energia_autoconsumida_kWh]``, kWh,
  ``Metodo_obtencion`` ``R``/``Real`` or ``E``/``Estimada``. Sources: pvpcbill 0.x
  (azogue/pvpcbill, ``pvpcbill/helpers.py``, ``load_csv_consumo_cups``: the header, d/m/Y dates,
  hour-ending 1..24, ``R``); the Datadis export's extra columns as rubiojr/ergs
  ``importers/datadis-importer/README.md`` lists them (``Energia_vertida_kWh`` = surplus).
* **e-distribución** (Endesa): ``CUPS;Fecha;Hora;AE_kWh;AS_KWh;AE_AUTOCONS_kWh;REAL/ESTIMADO``
  (AE: imported, AS: exported), ``R``/``E``. Source: a public parser's tests of the Spanish
  consumption files (code index, "e-distribución format with exports and estimated readings").
* **i-DE** (Iberdrola): ``CUPS;FECHA-HORA;INV / VER;CONSUMO Wh;GENERACION Wh``, Wh, ``FECHA-HORA``
  ``Y/m/d HH:00`` hour-ending (``24:00`` ends the day), ``INV / VER`` a winter/summer flag
  (same source, "i-DE format (FECHA-HORA with hour ending, Wh)"); no method column: real. The
  flag is not relied on: that source's own example writes 0 on a July day, so its meaning is not
  settled; the rows' order tells the two 03:00 of the autumn day apart.

Hours are hour-ending. A day has 23, 24 or 25 hours in Europe/Madrid (DST, BOE: the summer time
directive 2000/84/EC as Real Decreto 236/2002). Two notations are accepted for a day's hours, the
rows in file order: the hour's index 1..N (N = 23 or 25 on a DST day: Datadis numbers the extra
hour 25, as the same source's "DST 25-hour day" test), or the local clock hour at the hour's end
on the hour's own clock (``3`` skipped on the spring day; ``3`` twice on the autumn day, once
in summer time and once in winter time, as i-DE writes it with its summer/winter flag). Anything else is an error naming the file, line and what was expected; so
are a day with too few or too many rows, a missing day between the first and the last, a CUPS
other than the settings' one, a negative or unreadable number, an unknown method and a header of
no known kind. A file is read up to :data:`MAX_CURVE_BYTES`.

Units: Wh (the files' kWh x 1000), UTC hour starts. Sign: import and surplus are both >= 0.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence
from zoneinfo import ZoneInfo

from gestor.core.balance import periods_of_day
from gestor.files import read_small_file

if TYPE_CHECKING:
    from gestor.settings import Settings, StoreSettings

MAX_CURVE_BYTES = 16 * 1024 * 1024   # a file's bound: years of hourly rows (a year is about 0.6 MB)
MEASUREMENT = "distributor"
REAL, ESTIMATED = "real", "estimated"
_METHODS = {"r": REAL, "real": REAL, "e": ESTIMATED, "estimada": ESTIMATED, "estimado": ESTIMATED}


class DistributorError(ValueError):
    """A distributor's file or answer that cannot be read as a complete hourly curve; the message
    names the file (or source), the line and what was expected."""


@dataclass(frozen=True)
class HourRecord:
    """One hour of the distributor's curve: ``start`` (aware UTC, the hour's start), ``import_wh``
    and ``surplus_wh`` (Wh, >= 0; surplus None where the source does not give it), ``estimated``
    (the distributor estimated it: no real reading), the ``cups``."""

    start: datetime
    import_wh: float
    surplus_wh: float | None
    estimated: bool
    cups: str

    @property
    def method(self) -> str:
        return ESTIMATED if self.estimated else REAL

    @property
    def balance_wh(self) -> float:
        """The hour's net balance, Wh, + surplus (DESIGN.md section 2): surplus minus import."""
        return (self.surplus_wh or 0.0) - self.import_wh


@dataclass(frozen=True)
class RawRow:
    """A row as a reader found it, before its day is checked: the local ``day``, the hour's
    ``label`` (hour-ending index or clock hour), Wh, the method, and the ``line`` (1-based)."""

    cups: str
    day: date
    label: int
    import_wh: float
    surplus_wh: float | None
    estimated: bool
    line: int


def number(text: str, where: str, what: str) -> float:
    """A file's number: decimal comma or point, thousands dots when a comma is there; >= 0.
    Raises DistributorError naming ``where`` (file:line), ``what`` (the column) and the text."""
    s = text.strip().replace(" ", "")
    if "," in s:
        s = s.replace(".", "").replace(",", ".")
    try:
        v = float(s)
    except ValueError:
        raise DistributorError(f"{where}: {what} {text!r} is not a number (expected e.g. 0,325)") from None
    if not v >= 0 or v == float("inf"):
        raise DistributorError(f"{where}: {what} {text!r}: must be a finite number >= 0")
    return v


def day_of(text: str, where: str) -> date:
    """``d/m/Y``, ``Y/m/d`` or ``Y-m-d`` (the sources write all three)."""
    s = text.strip()
    for fmt in ("%d/%m/%Y", "%Y/%m/%d", "%Y-%m-%d", "%d-%m-%Y"):
        try:
            return datetime.strptime(s, fmt).date()
        except ValueError:
            continue
    raise DistributorError(f"{where}: date {text!r}: expected d/m/Y or Y/m/d")


def hour_label(text: str, where: str) -> int:
    """An hour as ``1``..``25`` or ``HH:00`` (``01:00``..``24:00``)."""
    s = text.strip()
    if s.endswith(":00"):
        s = s[:-3]
    try:
        h = int(s)
    except ValueError:
        raise DistributorError(f"{where}: hour {text!r}: expected 1..25 or HH:00 (hour-ending)") from None
    if not 1 <= h <= 25:
        raise DistributorError(f"{where}: hour {text!r}: expected 1..25 or HH:00 (hour-ending)")
    return h


def method_of(text: str, where: str) -> bool:
    """True for an estimated row (``E``, ``Estimada``), False for a real one (``R``, ``Real``)."""
    m = _METHODS.get(text.strip().lower())
    if m is None:
        raise DistributorError(f"{where}: method {text!r}: expected R/Real or E/Estimada")
    return m == ESTIMATED


def _col(header: list[str], *names: str) -> int | None:
    low = [h.lower() for h in header]
    for n in names:
        if n.lower() in low:
            return low.index(n.lower())
    return None


def _rows_datadis(header: list[str], rows: Iterable[tuple[int, list[str]]], name: str,
                  import_col: str, surplus_col: str | None, method_col: str) -> list[RawRow]:
    ci, cd, ch = _col(header, "CUPS"), _col(header, "Fecha"), _col(header, "Hora")
    cimp, cm = _col(header, import_col), _col(header, method_col)
    csur = _col(header, surplus_col) if surplus_col else None
    assert ci is not None and cd is not None and ch is not None and cimp is not None and cm is not None
    out = []
    for line, r in rows:
        where = f"{name}:{line}"
        if len(r) < len(header):
            raise DistributorError(f"{where}: {len(r)} columns, expected {len(header)} ({';'.join(header)})")
        sur = None if csur is None or not r[csur].strip() else number(r[csur], where, header[csur]) * 1000.0
        out.append(RawRow(r[ci].strip().upper(), day_of(r[cd], where), hour_label(r[ch], where),
                          number(r[cimp], where, header[cimp]) * 1000.0, sur, method_of(r[cm], where), line))
    return out


def _rows_ide(header: list[str], rows: Iterable[tuple[int, list[str]]], name: str) -> list[RawRow]:
    ci, cdh = _col(header, "CUPS"), _col(header, "FECHA-HORA")
    cimp, csur = _col(header, "CONSUMO Wh"), _col(header, "GENERACION Wh")
    assert ci is not None and cdh is not None and cimp is not None
    out = []
    for line, r in rows:
        where = f"{name}:{line}"
        if len(r) < len(header):
            raise DistributorError(f"{where}: {len(r)} columns, expected {len(header)} ({';'.join(header)})")
        parts = r[cdh].split()
        if len(parts) != 2:
            raise DistributorError(f"{where}: FECHA-HORA {r[cdh]!r}: expected 'Y/m/d HH:00'")
        sur = None if csur is None or not r[csur].strip() else number(r[csur], where, header[csur])
        out.append(RawRow(r[ci].strip().upper(), day_of(parts[0], where), hour_label(parts[1], where),
                          number(r[cimp], where, header[cimp]), sur, False, line))
    return out


# the kinds of file: name, the columns that identify it, and what the error message shows
KINDS = (
    ("datadis", ("CUPS", "Fecha", "Hora", "Consumo_kWh", "Metodo_obtencion"),
     "CUPS;Fecha;Hora;Consumo_kWh;Metodo_obtencion[;Energia_vertida_kWh;...] (Datadis)"),
    ("edistribucion", ("CUPS", "Fecha", "Hora", "AE_kWh", "REAL/ESTIMADO"),
     "CUPS;Fecha;Hora;AE_kWh;AS_KWh;AE_AUTOCONS_kWh;REAL/ESTIMADO (e-distribución)"),
    ("ide", ("CUPS", "FECHA-HORA", "CONSUMO Wh"), "CUPS;FECHA-HORA;INV / VER;CONSUMO Wh;GENERACION Wh (i-DE)"),
)


def kind_of(header: list[str]) -> str | None:
    """The kind of file whose header is ``header`` (see :data:`KINDS`), or None."""
    for kind, cols, _ in KINDS:
        if all(_col(header, c) is not None for c in cols):
            return kind
    return None


def read_curve(path: Path | str, tz: ZoneInfo, cups: str | None = None) -> list[HourRecord]:
    """The hourly curve in the file ``path`` (any kind of :data:`KINDS`), checked whole: every day
    from the first to the last with all its hours (23, 24 or 25 in ``tz``), one CUPS (``cups``
    when given: the settings' ``distributor.cups``). Hours in time order.

    Raises:
        DistributorError: unreadable, too large (> :data:`MAX_CURVE_BYTES`), a header of no known
            kind, a bad value, a missing hour or day, another CUPS (a sentence naming file and line).
    """
    name = str(path)
    try:
        data = read_small_file(path, MAX_CURVE_BYTES, deadline_s=30.0)
    except OSError as e:
        raise DistributorError(f"{name}: cannot read it: {e.strerror or e} (at most {MAX_CURVE_BYTES // 2**20} MB)") from None
    for enc in ("utf-8-sig", "cp1252"):
        try:
            text = data.decode(enc)
            break
        except UnicodeDecodeError:
            continue
    lines = [(i + 1, ln) for i, ln in enumerate(text.splitlines()) if ln.strip()]
    if not lines:
        raise DistributorError(f"{name}: empty, expected a header line and hourly rows")
    sep = ";" if ";" in lines[0][1] else ","
    parsed = [(n, r) for (n, _), r in zip(lines, csv.reader(io.StringIO("\n".join(ln for _, ln in lines)), delimiter=sep))]
    header = [h.strip() for h in parsed[0][1]]
    body = parsed[1:]
    kind = kind_of(header)
    if kind == "datadis":
        raw = _rows_datadis(header, body, name, "Consumo_kWh", "Energia_vertida_kWh", "Metodo_obtencion")
    elif kind == "edistribucion":
        raw = _rows_datadis(header, body, name, "AE_kWh", "AS_kWh", "REAL/ESTIMADO")
    elif kind == "ide":
        raw = _rows_ide(header, body, name)
    else:
        raise DistributorError(f"{name}:{parsed[0][0]}: header {';'.join(header)!r} is of no known kind; expected "
                               + " or ".join(k[2] for k in KINDS))
    if not raw:
        raise DistributorError(f"{name}: a header and no hourly rows")
    return assemble(raw, tz, name, cups)


def _same_cups(a: str, b: str) -> bool:
    """CUPS are 20 characters, 22 with the 2-character boundary suffix some files add."""
    return a.strip().upper()[:20] == b.strip().upper()[:20]


def assemble(raw: Sequence[RawRow], tz: ZoneInfo, name: str, cups: str | None = None) -> list[HourRecord]:
    """Turn a source's rows (in its order) into hours, checking each day is whole and the days
    follow one another (module docstring: the two notations of a day's hours). ``name``: the file
    or source the messages name. Raises DistributorError."""
    want = cups or raw[0].cups
    out: list[HourRecord] = []
    days: list[tuple[date, list[RawRow]]] = []
    for r in raw:
        if not _same_cups(r.cups, want):
            what = "the settings' distributor.cups" if cups else f"the CUPS of line {raw[0].line}"
            raise DistributorError(f"{name}:{r.line}: CUPS {r.cups}, expected {want} ({what})")
        if days and days[-1][0] == r.day:
            days[-1][1].append(r)
            continue
        if any(d == r.day for d, _ in days):
            raise DistributorError(f"{name}:{r.line}: day {r.day} again, after {days[-1][0]} (rows must be in time order)")
        if days and r.day != days[-1][0] + timedelta(days=1):
            if r.day < days[-1][0]:
                raise DistributorError(f"{name}:{r.line}: day {r.day} after {days[-1][0]} (rows must be in time order)")
            raise DistributorError(f"{name}:{r.line}: no rows for {days[-1][0] + timedelta(days=1)}"
                                   f"{'' if r.day == days[-1][0] + timedelta(days=2) else f' to {r.day - timedelta(days=1)}'}"
                                   f" (the curve jumps from {days[-1][0]} to {r.day}): a missing day")
        days.append((r.day, [r]))
    for day, rows in days:
        hours = periods_of_day(datetime(day.year, day.month, day.day, 12, tzinfo=tz), 3600, tz)
        n = len(hours)
        if len(rows) != n:
            raise DistributorError(f"{name}:{rows[0].line}-{rows[-1].line}: {day} has {len(rows)} hourly rows, "
                                   f"expected {n} (the day has {n} hours in {tz.key})")
        index = list(range(1, n + 1))
        clock = [s.astimezone(tz).hour + 1 for s, _ in hours]  # hour-ending on the hour's own clock
        labels = [r.label for r in rows]
        if labels != index and labels != clock:
            k = next(i for i in range(n) if labels[i] not in (index[i], clock[i]))
            alt = "" if index[k] == clock[k] else f" or {clock[k]} (the local clock hour at its end)"
            raise DistributorError(f"{name}:{rows[k].line}: {day} hour {labels[k]}, expected {index[k]} "
                                   f"(hour-ending 1..{n}){alt}")
        for (start, _), r in zip(hours, rows):
            out.append(HourRecord(start, r.import_wh, r.surplus_wh, r.estimated, r.cups))
    return out


def points(hours: Iterable[HourRecord], site: str) -> list[str]:
    """The ``distributor`` points of ``hours``: tags ``site``, ``cups``, ``method`` (real or
    estimated); fields ``import_wh``, ``surplus_wh`` (Wh); time the hour's start (UTC). A later
    real reading of an hour first stored estimated is a second point at the same time (its
    ``method`` differs): readers prefer the real one (:func:`prefer_real`)."""
    from drivers.store.influx import point
    return [point(MEASUREMENT, {"site": site, "cups": h.cups, "method": h.method},
                  {"import_wh": h.import_wh, "surplus_wh": h.surplus_wh}, h.start) for h in hours]


def prefer_real(hours: Iterable[HourRecord]) -> list[HourRecord]:
    """One record per hour, the real one where an hour is there twice; in time order."""
    best: dict[datetime, HourRecord] = {}
    for h in hours:
        if h.start not in best or (best[h.start].estimated and not h.estimated):
            best[h.start] = h
    return [best[k] for k in sorted(best)]


def month_bounds(month: str, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """``YYYY-MM`` → its local start and the next month's, as aware UTC. Raises ValueError."""
    try:
        y, m = (int(x) for x in month.split("-"))
        start = datetime(y, m, 1, tzinfo=tz)
    except ValueError:
        raise ValueError(f"month {month!r}: expected YYYY-MM") from None
    end = datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=tz)
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)


def query_store(st: StoreSettings, q: str, params: dict[str, str], epoch: str = "s") -> list[dict]:
    """The rows of InfluxQL ``q`` (``$name`` bound from ``params``) on the store ``st``
    (StoreSettings, InfluxDB 1.x), times as epoch ``epoch`` units. The one reader of the bill's
    measurements. Raises DistributorError (a ValueError) when the store does not answer."""
    from drivers import secret
    from influxdb import InfluxDBClient
    c = InfluxDBClient(host=st.host, port=st.port, username=st.username, password=secret(st.password),
                       database=st.database, timeout=max(st.timeout_s, 30.0))
    try:
        return list(c.query(q, bind_params=params, epoch=epoch).get_points())
    except Exception as e:  # noqa: BLE001 (requests and influxdb errors alike: the store did not answer)
        raise DistributorError(f"InfluxDB at {st.host}:{st.port}: {type(e).__name__}: {e}") from None
    finally:
        c.close()


def from_influx(s: Settings, start: datetime, end: datetime) -> list[HourRecord]:
    """The ``distributor`` hours stored for ``s.distributor.cups`` (or any CUPS without one) in
    [start, end), real preferred. Raises DistributorError when the store does not answer."""
    rows = query_store(s.store, f"SELECT import_wh, surplus_wh, \"method\", cups FROM {MEASUREMENT} WHERE site = $site "
                                f"AND time >= {int(start.timestamp())}s AND time < {int(end.timestamp())}s",
                       {"site": s.site})
    want = s.distributor.cups if s.distributor else None
    out = [HourRecord(datetime.fromtimestamp(r["time"], timezone.utc), float(r["import_wh"]),
                      None if r.get("surplus_wh") is None else float(r["surplus_wh"]), r.get("method") == ESTIMATED,
                      r.get("cups") or "") for r in rows if r.get("import_wh") is not None]
    if want:
        out = [h for h in out if _same_cups(h.cups, want)]
    return prefer_real(out)
