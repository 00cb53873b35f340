"""gestor's hours against the distributor's (issue 35), on real data: the files of
tests/data/distributor were written from shared/data's recordings moved onto the 2022 DST weeks
(tests/data/distributor/build.py); here the same recordings are settled again by gestor's own
balance code and reconciled with each file, a synthetic meter clock offset (the readings stamped
late) is found back, a gain error gives its ratio and an alert, and ``gestor bill
import|fetch|reconcile`` go through a real InfluxDB and the Datadis emulator."""
from __future__ import annotations

import csv
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from drivers.store.influx import point
from gestor.bill.distributor import read_curve
from gestor.bill.reconcile import ROUNDING_WH, compare, find_offset, resettle
from gestor.cli import main
from tests.conftest import DATA, settings_file
from tests.data.distributor import build
from tests.emulators.datadis import DatadisEmulator

FIX = Path(build.__file__).resolve().parent
TZ = ZoneInfo("Europe/Madrid")
CUPS = build.CUPS
FILES = {"datadis-2022-03.csv": "winter-2022-02-01_08.csv", "datadis-2022-10.csv": "house-2022-06-11_13.csv",
         "edistribucion-2022-10.csv": "house-2022-06-11_13.csv", "ide-2022-10.csv": "house-2022-06-11_13.csv"}


def readings(recording: str, extra_s: float = 0.0, gain: float = 1.0) -> tuple[list[float], list[float]]:
    t, w = build.readings(recording, build.SHIFTS[recording], extra_s)
    return t, [x * gain for x in w]


@pytest.mark.parametrize("name", sorted(FILES))
def test_distributor_files_reconcile_with_gestors_books_to_the_meter_resolution(name: str) -> None:
    curve = read_curve(FIX / name, TZ, CUPS)
    t, w = readings(FILES[name])
    r = compare(resettle(t, w, TZ), curve)
    skipped = len(curve) - len(r.hours)
    # every hour of the file is compared but the one the winter recording's 23-minute gap cut
    assert skipped == (1 if name.endswith("-03.csv") else 0)
    assert max(max(abs(h.import_diff_wh), abs(h.surplus_diff_wh)) for h in r.hours) <= ROUNDING_WH + 1e-6
    assert abs(r.total("import_diff_wh")) <= ROUNDING_WH * len(r.hours)
    assert abs(r.total("surplus_diff_wh")) <= ROUNDING_WH * len(r.hours)
    assert r.alerts == [] and abs(r.ratio - 1.0) < 1e-3
    assert r.estimated == (0 if name.startswith("ide") else 3)


@pytest.mark.parametrize("name", ["datadis-2022-10.csv", "datadis-2022-03.csv"])
@pytest.mark.parametrize("minutes", [1, 3, 10, -3, 4.25])
def test_a_meter_clock_offset_is_found_within_a_minute(name: str, minutes: int) -> None:
    """The meter's clock ``minutes`` ahead: its readings are stamped that much late."""
    curve = read_curve(FIX / name, TZ, CUPS)
    t, w = readings(FILES[name], extra_s=minutes * 60.0)
    offset_s, scores = find_offset(t, w, curve, TZ)
    assert abs(offset_s - minutes * 60) < 60, (offset_s, scores)
    assert len(scores) == 31 and scores[0][0] == -900 and scores[-1][0] == 900


def test_no_offset_gives_zero_within_a_minute() -> None:
    curve = read_curve(FIX / "ide-2022-10.csv", TZ, CUPS)
    offset_s, _ = find_offset(*readings("house-2022-06-11_13.csv"), curve, TZ)
    assert abs(offset_s) < 60


def test_a_meter_reading_5_percent_low_gives_the_ratio_and_an_alert() -> None:
    curve = read_curve(FIX / "datadis-2022-03.csv", TZ, CUPS)
    t, w = readings("winter-2022-02-01_08.csv", gain=0.95)
    r = compare(resettle(t, w, TZ), curve, max_difference_pct=2.0)
    assert r.ratio == pytest.approx(1 / 0.95, rel=1e-3)
    assert [a.split(":")[0] for a in r.alerts] == ["import", "surplus"]
    assert "more than the" in r.alerts[0]


# -- the commands, through a real InfluxDB ------------------------------------------------------
def _cfg(tmp_path: Path, influxd, db: str, **distributor) -> Path:
    return settings_file(tmp_path, store={"kind": "influxdb1", "host": influxd.host, "port": influxd.port,
                                          "database": db},
                         site="test", distributor={"cups": CUPS, "source": "csv", **distributor})


def _write_books(influxd, db: str, t: list[float], w: list[float]) -> None:
    """What monitoring and managing store: the meter's readings and the settled periods (gestor's
    own balance code on those readings)."""
    c = influxd.client(db)
    c.create_database(db)
    utc = timezone.utc
    lines = [point("meter", {"site": "test"}, {"net_w": x}, datetime.fromtimestamp(ti, utc)) for ti, x in zip(t, w)]
    lines += [point("period", {"site": "test", "period_s": "3600"},
                    {"balance_wh": h.balance_wh, "complete": h.complete}, h.start) for h in resettle(t, w, TZ)]
    for i in range(0, len(lines), 5000):
        c.write_points(lines[i:i + 5000], protocol="line", time_precision="ms")
    c.close()


def test_import_then_reconcile_from_influxdb_finds_the_offset(tmp_path: Path, influxd, influx_db, capsys) -> None:
    cfg = _cfg(tmp_path, influxd, influx_db)
    assert main(["bill", "import", str(FIX / "edistribucion-2022-10.csv"), "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "49 hours, 2022-10-30 to 2022-10-31 (3 estimated)" in out and "stored in InfluxDB (measurement distributor)" in out
    c = influxd.client(influx_db)
    rows = list(c.query('SELECT count(import_wh) FROM distributor GROUP BY "method"').items())
    assert {k[1]["method"]: list(v)[0]["count"] for k, v in rows} == {"real": 46, "estimated": 3}
    _write_books(influxd, influx_db, *readings("house-2022-06-11_13.csv", extra_s=180.0))
    assert main(["bill", "reconcile", "--month", "2022-10", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    m = re.search(r"meter clock offset: ([+-]\d+) s", out)
    assert m and abs(int(m.group(1)) - 180) < 60, out
    assert "2022-10-30 02:00 CEST" in out and "2022-10-30 02:00 CET" in out   # both 02:00s of the long day
    pts = list(c.query("SELECT * FROM reconcile").get_points())
    assert len(pts) == 1 and pts[0]["month"] == "2022-10" and pts[0]["cups"] == CUPS
    assert abs(pts[0]["offset_s"] - 180) < 60 and pts[0]["hours"] == 49
    c.close()


def test_reconcile_with_a_recording_and_a_csv_agrees(tmp_path: Path, capsys) -> None:
    """``--csv`` and ``--recording`` (no store): the shifted recording written as a recorded CSV."""
    src = DATA / "house-2022-06-11_13.csv"
    rec = tmp_path / "house-2022-10.csv"
    with open(src, newline="") as fi, open(rec, "w", newline="") as fo:
        r, wr = csv.reader(fi), csv.writer(fo)
        wr.writerow(next(r))
        for row in r:
            row[0] = (datetime.fromisoformat(row[0]) + timedelta(days=140)).isoformat(sep=" ")
            wr.writerow(row)
    cfg = settings_file(tmp_path, distributor={"cups": CUPS, "source": "csv"})
    assert main(["bill", "reconcile", "--month", "2022-10", "--csv", str(FIX / "ide-2022-10.csv"), "--recording",
                 str(rec), "--summary", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "hours compared: 49 (0 estimated by the distributor)" in out
    assert "agreement: within 2 % (+0.5 Wh an hour) on import and surplus" in out
    ratio = re.search(r"calibration ratio \(distributor / gestor, net balance, least squares\): (\d\.\d+)", out)
    assert ratio and abs(float(ratio.group(1)) - 1) < 1e-3   # i-DE's whole Wh: 2 Wh of 2.8 kWh
    m = re.search(r"meter clock offset: ([+-]\d+) s", out)
    assert m and abs(int(m.group(1))) < 60


def test_reconcile_alerts_in_the_log_and_the_point(tmp_path: Path, influxd, influx_db, capsys) -> None:
    cfg = _cfg(tmp_path, influxd, influx_db, max_month_difference_pct=1.0)
    assert main(["bill", "import", str(FIX / "datadis-2022-03.csv"), "--config", str(cfg)]) == 0
    _write_books(influxd, influx_db, *readings("winter-2022-02-01_08.csv", gain=1.03))
    assert main(["bill", "reconcile", "--month", "2022-03", "--no-offset", "--config", str(cfg)]) == 0
    cap = capsys.readouterr()
    assert "ALERT: import: the distributor bills" in cap.out
    assert re.search(rf"distributor {CUPS} 2022-03: import: the distributor bills \d+ Wh, gestor counted", cap.err)
    c = influxd.client(influx_db)
    pts = list(c.query("SELECT * FROM reconcile").get_points())
    c.close()
    assert len(pts) == 1 and pts[0]["alert"] is True and pts[0]["ratio"] == pytest.approx(1 / 1.03, rel=2e-3)


def test_reconcile_without_distributor_hours_says_what_to_do(tmp_path: Path, influxd, influx_db, capsys) -> None:
    cfg = _cfg(tmp_path, influxd, influx_db)
    influxd.client().create_database(influx_db)
    assert main(["bill", "reconcile", "--month", "2022-05", "--config", str(cfg)]) == 1
    assert "no distributor hours in 2022-05 (InfluxDB, measurement distributor): import a file" in capsys.readouterr().err


def test_fetch_from_datadis_into_influxdb(tmp_path: Path, influxd, influx_db, capsys) -> None:
    emu = DatadisEmulator()
    try:
        cfg = _cfg(tmp_path, influxd, influx_db, source="datadis", nif=emu.nif, password=emu.password,
                   datadis_url=emu.url)
        assert main(["bill", "fetch", "--until", "2022-04-01", "--days", "6", "--config", str(cfg)]) == 0
    finally:
        emu.close()
    assert f"Datadis {CUPS}: 143 hours, 2022-03-27 to 2022-04-01 (3 estimated)" in capsys.readouterr().out
    c = influxd.client(influx_db)
    assert list(c.query("SELECT count(import_wh) FROM distributor").get_points())[0]["count"] == 143
    c.close()


def test_fetch_without_a_distributor_block_does_nothing(tmp_path: Path, capsys) -> None:
    cfg = settings_file(tmp_path)
    assert main(["bill", "fetch", "--config", str(cfg)]) == 0
    assert "nothing to fetch" in capsys.readouterr().out


def test_estimated_hours_count_in_the_differences_not_in_the_ratio_or_the_offset() -> None:
    """A distributor's estimate is no measurement: a wild one moves the month's difference, not
    the calibration ratio nor the clock offset."""
    from dataclasses import replace
    curve = read_curve(FIX / "datadis-2022-10.csv", TZ, CUPS)
    wild = [replace(h, import_wh=h.import_wh + 5000.0) if h.estimated else h for h in curve]
    t, w = readings("house-2022-06-11_13.csv", extra_s=180.0)
    gestor = resettle(*readings("house-2022-06-11_13.csv"), TZ)
    assert compare(gestor, wild).total("import_diff_wh") == pytest.approx(15000.0, abs=2)
    assert compare(gestor, wild).ratio == pytest.approx(compare(gestor, curve).ratio, abs=1e-12)
    assert abs(find_offset(t, w, wild, TZ)[0] - 180) < 60


def test_fetch_with_a_refused_login_exits_1_with_a_sentence(tmp_path: Path, capsys) -> None:
    emu = DatadisEmulator()
    try:
        cfg = settings_file(tmp_path, distributor={"cups": CUPS, "nif": emu.nif, "password": "wrong",
                                                   "datadis_url": emu.url, "timeout_s": 5})
        assert main(["bill", "fetch", "--until", "2022-04-01", "--config", str(cfg)]) == 1
    finally:
        emu.close()
    assert "gestor bill: error: Datadis refused the login (HTTP 401): check distributor.nif and distributor.password" \
        in capsys.readouterr().err


def test_reconcile_without_a_store_needs_both_files(tmp_path: Path, capsys) -> None:
    cfg = settings_file(tmp_path, distributor={"cups": CUPS, "source": "csv"})
    assert main(["bill", "reconcile", "--month", "2022-10", "--csv", str(FIX / "ide-2022-10.csv"), "--config", str(cfg)]) == 1
    assert "store.kind is none: the hours are read from InfluxDB 1.x only; give --csv FILE" in capsys.readouterr().err
