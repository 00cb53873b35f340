"""The distributor's curve (gestor.bill.distributor, .distributor_datadis; issue 35): the files of
tests/data/distributor (built from shared/data's real recordings by build.py there, in each
distributor's format, on both 2022 DST days, with estimated rows), the Datadis API against its
emulator on loopback (tests/emulators/datadis.py), the settings block, and every bad input
named by file, line and what was expected."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from gestor.bill.distributor import (MAX_CURVE_BYTES, DistributorError, month_bounds, points, prefer_real,
                                     read_curve)
from gestor.bill.distributor_datadis import Datadis
from gestor.settings.distributor import DistributorSettings
from tests.emulators.datadis import DatadisEmulator

FIX = Path(__file__).resolve().parent / "data" / "distributor"
TZ = ZoneInfo("Europe/Madrid")
UTC = timezone.utc
CUPS = "ES0031405678901234AB0F"
OCTOBER = ["datadis-2022-10.csv", "edistribucion-2022-10.csv", "ide-2022-10.csv"]


def test_march_datadis_file_has_the_23_hour_day() -> None:
    hours = read_curve(FIX / "datadis-2022-03.csv", TZ, CUPS)
    assert len(hours) == 23 + 5 * 24
    assert hours[0].start == datetime(2022, 3, 26, 23, tzinfo=UTC)       # 27 March 00:00 CET
    assert [h.start.astimezone(TZ).hour for h in hours[:4]] == [0, 1, 3, 4]  # no 02:00 that day
    assert all(b.start - a.start == timedelta(hours=1) for a, b in zip(hours, hours[1:]))
    assert sum(h.estimated for h in hours) == 3
    assert all(h.import_wh >= 0 and h.surplus_wh is not None and h.surplus_wh >= 0 for h in hours)
    assert all(min(h.import_wh, h.surplus_wh) == 0 for h in hours)    # each hour nets, as settled


@pytest.mark.parametrize("name", OCTOBER)
def test_october_files_have_the_25_hour_day_in_each_notation(name: str) -> None:
    hours = read_curve(FIX / name, TZ, CUPS)
    assert len(hours) == 25 + 24
    local = [h.start.astimezone(TZ) for h in hours[:5]]
    assert [(t.hour, t.utcoffset().total_seconds() // 3600) for t in local] == [(0, 2), (1, 2), (2, 2), (2, 1), (3, 1)]
    assert all(b.start - a.start == timedelta(hours=1) for a, b in zip(hours, hours[1:]))


def test_the_three_october_formats_give_the_same_hours() -> None:
    a, b, c = ([(h.start, h.import_wh, h.surplus_wh) for h in read_curve(FIX / n, TZ, CUPS)] for n in OCTOBER)
    assert a == b == c
    assert sum(h.estimated for h in read_curve(FIX / "edistribucion-2022-10.csv", TZ)) == 3


def _rewrite(tmp_path: Path, name: str, edit) -> Path:
    lines = (FIX / name).read_text().splitlines()
    out = tmp_path / name
    out.write_text("\n".join(edit(lines)) + "\n")
    return out


def test_dates_y_m_d_and_hours_hh00_and_decimal_points_read_the_same(tmp_path: Path) -> None:
    def edit(lines):
        out = [lines[0]]
        for ln in lines[1:]:
            c = ln.split(";")
            d, m, y = c[1].split("/")
            c[1], c[2] = f"{y}/{m}/{d}", f"{int(c[2]):02d}:00"
            c[3] = c[3].replace(",", ".")
            out.append(";".join(c))
        return out
    f = _rewrite(tmp_path, "datadis-2022-03.csv", edit)
    assert read_curve(f, TZ) == read_curve(FIX / "datadis-2022-03.csv", TZ)


def test_thousands_and_decimal_comma() -> None:
    from gestor.bill.distributor import number
    assert number("1.234,5", "f:2", "x") == 1234.5 and number("0,325", "f:2", "x") == 0.325 and number("7", "f", "x") == 7


@pytest.mark.parametrize("edit, message", [
    (lambda ls: ls[:5] + [ls[5].replace("ES0031405678901234AB0F", "ES0021000000000000XY0F")] + ls[6:],
     r"datadis-2022-03.csv:6: CUPS ES0021000000000000XY0F, expected ES0031405678901234AB0F \(the settings' distributor.cups\)"),
    (lambda ls: ls[:24] + ls[48:],  # 28 March gone
     r"datadis-2022-03.csv:25: no rows for 2022-03-28 \(the curve jumps from 2022-03-27 to 2022-03-29\): a missing day"),
    (lambda ls: ls[:10] + ls[11:],   # one hour of 27 March gone
     r"datadis-2022-03.csv:2-23: 2022-03-27 has 22 hourly rows, expected 23 \(the day has 23 hours in Europe/Madrid\)"),
    (lambda ls: ["CUPS;Fecha;Hora;Consumo;Metodo"] + ls[1:],
     r"datadis-2022-03.csv:1: header 'CUPS;Fecha;Hora;Consumo;Metodo' is of no known kind; expected CUPS;Fecha;Hora;Consumo_kWh"),
    (lambda ls: ls[:3] + [ls[3].replace(";R;", ";X;")] + ls[4:],
     r"datadis-2022-03.csv:4: method 'X': expected R/Real or E/Estimada"),
    (lambda ls: ls[:3] + [ls[3].replace(";0,", ";-0,", 1)] + ls[4:],
     r"datadis-2022-03.csv:4: Consumo_kWh '-0,\d+': must be a finite number >= 0"),
    (lambda ls: ls[:3] + [ls[3].replace(";0,", ";n/a;", 1).replace("n/a;", "n/a", 1)] + ls[4:],
     r"datadis-2022-03.csv:4: Consumo_kWh 'n/a\d+' is not a number"),
    (lambda ls: ls[:3] + [ls[3].replace(";3;", ";2;")] + ls[4:],   # 27 March: 1, 2, 2 ...
     r"datadis-2022-03.csv:4: 2022-03-27 hour 2, expected 3 \(hour-ending 1..23\) or 4 \(the local clock hour at its end\)"),
    (lambda ls: ls[:1] + ls[24:48] + ls[1:24] + ls[48:],   # 28 March before 27 March
     r"datadis-2022-03.csv:\d+: day 2022-03-27 after 2022-03-28 \(rows must be in time order\)"),
])
def test_bad_files_are_a_sentence_naming_file_line_and_what_was_expected(tmp_path: Path, edit, message: str) -> None:
    f = _rewrite(tmp_path, "datadis-2022-03.csv", edit)
    with pytest.raises(DistributorError, match=message):
        read_curve(f, TZ, CUPS)


def test_empty_and_oversized_files(tmp_path: Path) -> None:
    f = tmp_path / "empty.csv"
    f.write_text("\n")
    with pytest.raises(DistributorError, match="empty.csv: empty, expected a header line"):
        read_curve(f, TZ)
    big = tmp_path / "big.csv"
    with open(big, "wb") as fh:
        fh.truncate(MAX_CURVE_BYTES + 1)
    with pytest.raises(DistributorError, match=r"big.csv: cannot read it: .*\(at most 16 MB\)"):
        read_curve(big, TZ)
    with pytest.raises(DistributorError, match="cannot read it"):
        read_curve(tmp_path / "missing.csv", TZ)


def test_ide_with_its_summer_flag_and_clock_hours_on_the_25_hour_day(tmp_path: Path) -> None:
    text = (FIX / "ide-2022-10.csv").read_text().splitlines()
    assert text[3].startswith(f"{CUPS};2022/10/30 03:00;1;") and text[4].startswith(f"{CUPS};2022/10/30 03:00;0;")
    f = _rewrite(tmp_path, "ide-2022-10.csv", lambda ls: ls[:3] + ls[4:])   # one 03:00 gone
    with pytest.raises(DistributorError, match=r"ide-2022-10.csv:2-25: 2022-10-30 has 24 hourly rows, expected 25"):
        read_curve(f, TZ)


def test_points_and_real_preferred_over_estimated() -> None:
    hours = read_curve(FIX / "datadis-2022-10.csv", TZ, CUPS)
    lines = points(hours[:2], "casa")
    assert lines[0] == f"distributor,cups={CUPS},method=real,site=casa import_wh=108,surplus_wh=0 1667080800000"
    est = [h for h in read_curve(FIX / "datadis-2022-03.csv", TZ) if h.estimated]
    from dataclasses import replace
    real = [replace(h, estimated=False, import_wh=h.import_wh + 1) for h in est]
    both = prefer_real(est + real)
    assert [(h.estimated, h.import_wh) for h in both] == [(False, h.import_wh) for h in real]


def test_month_bounds_are_local_months() -> None:
    a, b = month_bounds("2022-10", TZ)
    assert (a, b) == (datetime(2022, 9, 30, 22, tzinfo=UTC), datetime(2022, 10, 31, 23, tzinfo=UTC))
    with pytest.raises(ValueError, match="month '2022/10': expected YYYY-MM"):
        month_bounds("2022/10", TZ)


# -- settings ---------------------------------------------------------------------------------
def test_distributor_settings_are_checked() -> None:
    s = DistributorSettings(cups="es0031405678901234ab0f", nif="12345678Z", password="x")
    assert s.cups == CUPS and s.max_month_difference_pct == 2.0
    with pytest.raises(ValidationError, match=r"must be a CUPS: ES, 16 digits, 2 letters.*got 'ES123'"):
        DistributorSettings(cups="ES123", source="csv")
    with pytest.raises(ValidationError, match="source datadis needs nif and password"):
        DistributorSettings(cups=CUPS)
    with pytest.raises(ValidationError, match="less than or equal to 50"):
        DistributorSettings(cups=CUPS, source="csv", max_month_difference_pct=80)


def test_settings_file_takes_a_distributor_block(tmp_path: Path) -> None:
    from tests.conftest import make_settings
    s = make_settings(tmp_path, distributor={"cups": CUPS, "source": "csv", "max_month_difference_pct": 1.5})
    assert s.distributor is not None and s.distributor.max_month_difference_pct == 1.5
    from gestor.settings import SettingsError
    with pytest.raises(SettingsError, match=r"distributor.cups: .*must be a CUPS"):
        make_settings(tmp_path, distributor={"cups": "ES00", "source": "csv"})
    assert make_settings(tmp_path).distributor is None


# -- the Datadis API ----------------------------------------------------------------------------
@pytest.fixture
def datadis():
    emu = DatadisEmulator()
    yield emu
    emu.close()


def _dsettings(emu: DatadisEmulator, **kw) -> DistributorSettings:
    return DistributorSettings(**{"cups": CUPS, "nif": emu.nif, "password": emu.password, "datadis_url": emu.url,
                                  "timeout_s": 5, **kw})


def test_datadis_api_gives_the_same_hours_as_the_csv(datadis: DatadisEmulator) -> None:
    c = Datadis(_dsettings(datadis))
    try:
        hours = c.hours(datetime(2022, 3, 27).date(), datetime(2022, 4, 1).date(), TZ)
    finally:
        c.close()
    want = read_curve(FIX / "datadis-2022-03.csv", TZ, CUPS)
    assert [(h.start, h.import_wh, h.surplus_wh, h.estimated) for h in hours] == \
        [(h.start, h.import_wh, h.surplus_wh, h.estimated) for h in want]
    paths = [p for p, _ in datadis.requests]
    assert paths == ["/nikola-auth/tokens/login", "/api-private/api/get-supplies"] + \
        ["/api-private/api/get-consumption-data"] * 2   # a month a request: each answer stays small
    assert [(q["startDate"], q["endDate"], q["measurementType"], q["distributorCode"], q["pointType"])
            for _, q in datadis.requests[2:]] == [("2022/03", "2022/03", "0", "2", "5"), ("2022/04", "2022/04", "0", "2", "5")]


def test_months_of_a_span() -> None:
    from gestor.bill.distributor_datadis import months
    assert months(datetime(2022, 11, 30).date(), datetime(2023, 2, 1).date()) == ["2022/11", "2022/12", "2023/01", "2023/02"]


def test_datadis_leaves_out_a_last_day_still_coming_in(datadis: DatadisEmulator) -> None:
    datadis.hours = datadis.hours[:-5]        # 1 April: 19 of 24 hours published
    c = Datadis(_dsettings(datadis))
    try:
        hours = c.hours(datetime(2022, 3, 27).date(), datetime(2022, 4, 1).date(), TZ)
    finally:
        c.close()
    assert len(hours) == 23 + 4 * 24 and hours[-1].start.astimezone(TZ).date().isoformat() == "2022-03-31"


def test_datadis_hole_inside_is_an_error(datadis: DatadisEmulator) -> None:
    del datadis.hours[30]
    c = Datadis(_dsettings(datadis))
    with pytest.raises(DistributorError, match=r"Datadis /api-private/api/get-consumption-data:24-46: 2022-03-28 has "
                                               r"23 hourly rows, expected 24"):
        c.hours(datetime(2022, 3, 27).date(), datetime(2022, 4, 1).date(), TZ)
    c.close()


def test_datadis_refused_login_and_unknown_cups(datadis: DatadisEmulator) -> None:
    c = Datadis(_dsettings(datadis, password="wrong"))
    with pytest.raises(DistributorError, match=r"Datadis refused the login \(HTTP 401\): check distributor.nif"):
        c.hours(datetime(2022, 3, 27).date(), datetime(2022, 3, 28).date(), TZ)
    c.close()
    c = Datadis(_dsettings(datadis, cups="ES0031000000000000ZZ"))
    with pytest.raises(DistributorError, match=r"CUPS ES0031000000000000ZZ \(distributor.cups\) is not a supply of "
                                               rf"this login \(it has: {CUPS}\)"):
        c.hours(datetime(2022, 3, 27).date(), datetime(2022, 3, 28).date(), TZ)
    c.close()


def test_datadis_answer_of_another_shape(datadis: DatadisEmulator) -> None:
    datadis.hours = [{k: v for k, v in h.items() if k != "obtainMethod"} for h in datadis.hours]
    c = Datadis(_dsettings(datadis))
    with pytest.raises(DistributorError, match=r"item 1: no 'obtainMethod' \(expected cups, date, time"):
        c.hours(datetime(2022, 3, 27).date(), datetime(2022, 3, 28).date(), TZ)
    c.close()


def test_datadis_unreachable_is_a_sentence() -> None:
    from tests.influxd import free_port
    s = DistributorSettings(cups=CUPS, nif="x", password="y", datadis_url=f"http://127.0.0.1:{free_port()}", timeout_s=2)
    c = Datadis(s)
    with pytest.raises(DistributorError, match=r"Datadis login at http://127.0.0.1:\d+/nikola-auth/tokens/login: "
                                               r"ConnectionError"):
        c.login()
    c.close()


def test_api_fixture_is_the_documented_shape() -> None:
    items = json.loads((FIX / "datadis-api-2022-03.json").read_text())
    assert set(items[0]) == {"cups", "date", "time", "consumptionKWh", "obtainMethod", "surplusEnergyKWh",
                             "generationEnergyKWh", "selfConsumptionEnergyKWh"}
    assert {i["obtainMethod"] for i in items} == {"Real", "Estimada"}


def test_the_datadis_login_in_clear_is_flagged(tmp_path: Path) -> None:
    """The holder's NIF and password belong in secrets.yaml: gestor check warns for both."""
    from gestor.settings import clear_text_secrets
    from tests.conftest import settings_file
    f = settings_file(tmp_path, distributor={"cups": CUPS, "nif": "12345678Z", "password": "secreto"})
    assert {"distributor.nif", "distributor.password"} <= set(clear_text_secrets(f))


def test_datadis_login_answer_dripping_forever_is_cut_at_the_deadline() -> None:
    """A server that sends a byte now and then (each within the socket timeout) cannot hold the
    login: the answer must be whole within distributor.timeout_s."""
    import socket
    import threading
    import time
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    stop = threading.Event()

    def drip() -> None:
        conn, _ = srv.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n")
        try:
            while not stop.is_set():
                conn.sendall(b"x")
                time.sleep(0.1)
        except OSError:
            pass
        conn.close()
    th = threading.Thread(target=drip, daemon=True)
    th.start()
    s = DistributorSettings(cups=CUPS, nif="x", password="y", datadis_url=f"http://127.0.0.1:{srv.getsockname()[1]}",
                            timeout_s=1)
    c = Datadis(s)
    try:
        with pytest.raises(DistributorError, match=r"Datadis login at .*: no whole answer within 1 s"):
            c.login()
    finally:
        stop.set()
        c.close()
        th.join(5)
        srv.close()
