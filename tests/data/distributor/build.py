"""Build the distributor files of this folder from the real recordings of shared/data (run it from
the repository: ``PYTHONPATH=src:. python tests/data/distributor/build.py``; the files are
committed, the tests only read them).

How: a recording's readings (net power at the connection, ``powerP - powerC``: what the
distributor's meter sees, the recorded loads included) are moved by whole days onto a DST week
of 2022, re-settled into clock hours with gestor's own :class:`gestor.core.balance.Balance`
(:func:`gestor.bill.reconcile.resettle`), and each local day the readings cover whole is written
in a distributor's format, import and surplus from :func:`gestor.core.balance.settled_wh` rounded
as the distributor writes them (kWh with 3 decimals, or whole Wh for i-DE). A few hours are
marked estimated. The formats' sources are in :mod:`gestor.bill.distributor`'s docstring.

* ``datadis-2022-03.csv``: winter-2022-02-01_08 (another site) + 53 days: 26 March .. 1 April,
  Datadis CSV, d/m/Y, hour-ending 1..23 on 27 March (index notation), R/E;
* ``datadis-2022-10.csv``: house-2022-06-11_13 + 140 days: 30..31 October, Datadis CSV, hours
  1..25 on 30 October;
* ``edistribucion-2022-10.csv``: the same days as e-distribución writes them (AE/AS kWh, R/E);
* ``ide-2022-10.csv``: the same days as i-DE writes them (Y/m/d HH:00, clock notation: 03:00
  twice on 30 October with its summer/winter flag, Wh);
* ``datadis-api-2022-03.json``: the March days as Datadis' get-consumption-data answers them
  (``time`` HH:MM clock notation, ``Real``/``Estimada``), for the API emulator.
"""
from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from drivers.meters.replay import ReplayData
from gestor.bill.reconcile import resettle
from gestor.core.balance import periods_of_day, settled_wh
from gestor.sim.inputs import replay_settings_for

HERE = Path(__file__).resolve().parent
TZ = ZoneInfo("Europe/Madrid")
CUPS = "ES0031405678901234AB0F"
SHIFTS = {"winter-2022-02-01_08.csv": 53, "house-2022-06-11_13.csv": 140}


def data_dir() -> Path:
    for d in (Path("/work/shared/data"), HERE.parents[2] / "shared" / "data"):
        if d.exists():
            return d
    sys.exit("shared/data not found")


def readings(name: str, days: int, extra_s: float = 0.0) -> tuple[list[float], list[float]]:
    """The recording's (epoch s, export-positive W) moved by ``days`` days (+ ``extra_s`` s);
    NaN readings left out."""
    s = replay_settings_for(data_dir() / name).model_copy(update={"subtract_columns": []})
    d = ReplayData.load(s)
    t, w = [], []
    for ti, wi in zip(d.t, d.net_w):
        if wi == wi:
            t.append(ti + days * 86400 + extra_s)
            w.append(wi)
    return t, w


def whole_days(name: str) -> list[tuple[datetime, list[tuple[datetime, float]]]]:
    """The local days the shifted recording covers with every hour settled: (day, [(hour start
    UTC, balance Wh)])."""
    t, w = readings(name, SHIFTS[name])
    hours = {h.start: h.balance_wh for h in resettle(t, w, TZ)}
    first = datetime.fromtimestamp(t[0], TZ).date()
    last = datetime.fromtimestamp(t[-1], TZ).date()
    out = []
    d = first
    while d <= last:
        ph = periods_of_day(datetime(d.year, d.month, d.day, 12, tzinfo=TZ), 3600, TZ)
        if all(s in hours for s, _ in ph) and ph[0][0].timestamp() > t[0]:
            out.append((datetime(d.year, d.month, d.day), [(s, hours[s]) for s, _ in ph]))
        d += timedelta(days=1)
    return out


def estimated(i_day: int, k: int) -> bool:
    return i_day == 1 and k in (3, 4, 5)   # the second day's 3rd to 5th hours, as a real file's gap filled


def kwh(wh: float) -> str:
    return f"{wh / 1000:.3f}".replace(".", ",")


def clock_label(start: datetime) -> int:
    """The hour-ending clock hour on the hour's own clock (03:00 twice on 30 October)."""
    return start.astimezone(TZ).hour + 1


def rows(days):
    """Each hour of ``days``: (day, k 1..N, UTC start, import Wh, export Wh, estimated)."""
    for i, (day, hours) in enumerate(days):
        for k, (s, bal) in enumerate(hours, 1):
            exp, imp = settled_wh(bal)
            yield day, k, s, imp, exp, estimated(i, k)


def write_datadis(days, path: Path) -> None:
    lines = ["CUPS;Fecha;Hora;Consumo_kWh;Metodo_obtencion;Energia_vertida_kWh;Energia_generada_kWh;"
             "Energia_autoconsumida_kWh"]
    lines += [f"{CUPS};{day:%d/%m/%Y};{k};{kwh(imp)};{'E' if est else 'R'};{kwh(exp)};;"
              for day, k, _, imp, exp, est in rows(days)]
    path.write_text("\n".join(lines) + "\n")


def write_edistribucion(days, path: Path) -> None:
    lines = ["CUPS;Fecha;Hora;AE_kWh;AS_KWh;AE_AUTOCONS_kWh;REAL/ESTIMADO"]
    lines += [f"{CUPS[:20]};{day:%d/%m/%Y};{k};{kwh(imp)};{kwh(exp)};;{'E' if est else 'R'}"
              for day, k, _, imp, exp, est in rows(days)]
    path.write_text("\n".join(lines) + "\n")


def write_ide(days, path: Path) -> None:
    """i-DE: no method column (every row real), the summer flag of the hour's start."""
    lines = ["CUPS;FECHA-HORA;INV / VER;CONSUMO Wh;GENERACION Wh"]
    lines += [f"{CUPS};{day:%Y/%m/%d} {clock_label(s):02d}:00;{1 if s.astimezone(TZ).dst() else 0};{round(imp)};"
              f"{round(exp)}" for day, _, s, imp, exp, _ in rows(days)]
    path.write_text("\n".join(lines) + "\n")


def write_api(days, path: Path) -> None:
    items = [{"cups": CUPS, "date": f"{day:%Y/%m/%d}", "time": f"{clock_label(s):02d}:00",
              "consumptionKWh": round(imp / 1000, 3), "obtainMethod": "Estimada" if est else "Real",
              "surplusEnergyKWh": round(exp / 1000, 3), "generationEnergyKWh": None, "selfConsumptionEnergyKWh": None}
             for day, _, s, imp, exp, est in rows(days)]
    path.write_text(json.dumps(items, indent=0) + "\n")


def main() -> None:
    march = whole_days("winter-2022-02-01_08.csv")
    october = whole_days("house-2022-06-11_13.csv")
    write_datadis(march, HERE / "datadis-2022-03.csv")
    write_api(march, HERE / "datadis-api-2022-03.json")
    write_datadis(october, HERE / "datadis-2022-10.csv")
    write_edistribucion(october, HERE / "edistribucion-2022-10.csv")
    write_ide(october, HERE / "ide-2022-10.csv")
    for name, days in (("march", march), ("october", october)):
        print(name, [f"{d:%Y-%m-%d} ({len(h)} h)" for d, h in days])


if __name__ == "__main__":
    main()
