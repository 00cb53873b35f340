"""gestor web's periods beyond a day, prices and decision log (issue 27) over real HTTP against the
real test InfluxDB holding a year of ``period`` points.

The year (2025, Europe/Madrid) is built from a real recording: ``gestor.sim.simulate`` runs the
shipped example's policy and loads over /work/shared/data/house-2022-06-11_13.csv (three days),
and each local hour of 2025 takes the simulated period of the same local hour of recorded day
``day-of-year % 3``, as a ``period`` point with the fields :meth:`gestor.runtime.books.Books.close`
writes (Wh; EUR at that hour's 2.0TD prices by :func:`gestor.tariff.prices.period_money`).
The summaries are made by ``gestor db-init``'s own continuous query statement run over the past
(a backfill): the points are written to a staging retention policy, ``period_summary``'s
``SELECT last(*) INTO forever.period ... GROUP BY time(60m), *`` is run on them up to 2025-12-31
12:00 local (as if the continuous query lagged half a day), and the staging policy is dropped; the
last two days (2025-12-30 and 31) are written as raw points, as managing writes them. So the
page can only show the whole year by reading the forever summaries and the recent raw points
together. The page's clock is 2026-01-01 10:00 local.
"""
from __future__ import annotations

import csv
import io
import uuid
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

import pytest
import requests

from drivers.meters.replay import ReplayData
from drivers.store.influx import init_database, point
from gestor.clock import SimClock
from gestor.settings import load_settings
from gestor.tariff.calendar import period_2_0td
from gestor.tariff.prices import period_money
from gestor.web import auth
from tests.conftest import DATA

UTC = timezone.utc
TZ = ZoneInfo("Europe/Madrid")
YEAR = 2025
NOW = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)          # 10:00 local
RAW_FROM = date(YEAR, 12, 30)                         # raw points from here on
SUMMARIZED_TO = datetime(YEAR, 12, 31, 12, 0, tzinfo=TZ)  # forever summaries before this
PASSWORD = "correct horse battery staple"


@lru_cache(maxsize=1)
def simulated_days() -> dict[tuple[int, int], dict]:
    """(recorded day 0..2, local hour) → the simulated period's fields, from ``gestor simulate``
    over the house recording with the shipped example's settings."""
    from gestor.sim.simulate import Prices, replay_settings_for, simulate
    from tests.conftest import make_settings
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as d:
        s = make_settings(Path(d))
        r = simulate(ReplayData.load(replay_settings_for(DATA / "house-2022-06-11_13.csv")), s, Prices(s))
    first = r.periods[0].start.astimezone(TZ).date()
    out = {}
    for p in r.periods:
        local = p.start.astimezone(TZ)
        k = (local.date() - first).days
        if 0 <= k < 3:
            out[(k, local.hour)] = {"balance_wh": p.balance_wh, "production_wh": p.production_wh,
                                    "consumption_wh": p.base_wh + p.loads_wh, "load_wh": dict(p.load_wh),
                                    "complete": p.complete}
    return out


def year_points(s, year: int = YEAR, devices_wh: float | None = None) -> list[tuple[datetime, str]]:
    """(start UTC, line protocol) of every settlement period of the local ``year``, shaped as
    managing's ``period`` points; the day-of-year picks the recorded day, the local hour the hour
    (a missing simulated hour is taken as balanced and empty). ``devices_wh``: a setpoint
    device's Wh taken in every period (as Books.close books it with setpoint devices)."""
    sim = simulated_days()
    t = s.tariff
    a = datetime(year, 1, 1, tzinfo=TZ).astimezone(UTC)
    b = datetime(year + 1, 1, 1, tzinfo=TZ).astimezone(UTC)
    out = []
    while a < b:
        local = a.astimezone(TZ)
        src = sim.get((local.timetuple().tm_yday % 3, local.hour)) or {
            "balance_wh": 0.0, "production_wh": 0.0, "consumption_wh": 0.0, "load_wh": {}, "complete": False}
        per_load = {f"{ld.name}_wh": src["load_wh"].get(ld.name, 0.0) for ld in s.loads}
        loads_wh = sum(per_load.values())
        imp, sur = t.import_eur_per_kwh(period_2_0td(a, TZ)), t.surplus_eur_per_kwh
        money = period_money(src["balance_wh"], loads_wh, imp, sur, t.import_p3_eur_per_kwh)
        bal = src["balance_wh"]
        fields = {"balance_wh": bal, "export_wh": max(bal, 0.0), "import_wh": max(-bal, 0.0),
                  "production_wh": src["production_wh"], "consumption_wh": src["consumption_wh"],
                  "loads_wh": loads_wh, **per_load, "devices_wh": devices_wh, "complete": src["complete"], "covered_s": 3600.0, **money,
                  "import_eur_per_kwh": imp, "surplus_eur_per_kwh": sur, "price_source": "fixed"}
        out.append((a, point("period", {"site": s.site, "period_s": "3600"}, fields, a)))
        a += timedelta(hours=1)
    return out


def write_year(s, influxd) -> list[dict]:
    """The year into ``s``'s database (module docstring: forever summaries by db-init's own
    continuous query statement before SUMMARIZED_TO, raw points from RAW_FROM). Returns the periods' fields as
    written (with ``time``, epoch s), the hand-check's reference."""
    stmts = init_database(s.store, s.billing.period_s)
    cq = next(q for q in stmts if '"period_summary"' in q)
    select = cq.split(" BEGIN ", 1)[1].rsplit(" END", 1)[0]
    db = s.store.database
    pts = year_points(s)
    cut = SUMMARIZED_TO.astimezone(UTC)
    raw_from = datetime(RAW_FROM.year, RAW_FROM.month, RAW_FROM.day, tzinfo=TZ).astimezone(UTC)
    c = influxd.client(db)
    try:
        c.query(f'CREATE RETENTION POLICY "staging" ON "{db}" DURATION INF REPLICATION 1')
        old = [ln for t, ln in pts if t < cut]
        for i in range(0, len(old), 5000):
            c.write_points(old[i:i + 5000], protocol="line", retention_policy="staging", time_precision="ms")
        backfill = select.replace(f'"{db}"."raw"."period"', f'"{db}"."staging"."period"').replace(
            " GROUP BY ", f" WHERE time < '{cut:%Y-%m-%dT%H:%M:%SZ}' GROUP BY ")
        c.query(backfill)
        c.query(f'DROP RETENTION POLICY "staging" ON "{db}"')
        c.write_points([ln for t, ln in pts if t >= raw_from], protocol="line", time_precision="ms")
    finally:
        c.close()
    return [reference(t, ln) for t, ln in pts]


def reference(t: datetime, line: str) -> dict:
    """A line of line protocol read back as numbers (what the test expects the page to sum)."""
    fields = line.split(" ")[1]
    out: dict = {"time": t.timestamp()}
    for kv in fields.split(","):
        k, v = kv.split("=", 1)
        out[k] = {"true": True, "false": False}.get(v, v.strip('"') if v.startswith('"') else None)
        if out[k] is None:
            out[k] = float(v)
    return out


def expected(rows: list[dict], a: datetime, b: datetime) -> dict:
    """The hand-check: the bill's net import/export, captured surplus, production, consumption and
    EUR of the periods in [a, b)."""
    sel = [r for r in rows if a.timestamp() <= r["time"] < b.timestamp()]
    return {"n": len(sel),
            "import_wh": sum(max(-r["balance_wh"], 0) for r in sel),
            "export_wh": sum(max(r["balance_wh"], 0) for r in sel),
            "captured_wh": sum(max(r["balance_wh"] + r["loads_wh"] + r.get("devices_wh", 0.0), 0)
                               - max(r["balance_wh"], 0) for r in sel),
            "production_wh": sum(r["production_wh"] for r in sel),
            "consumption_wh": sum(r["consumption_wh"] for r in sel),
            "water_heater_wh": sum(r.get("water_heater_wh", 0.0) for r in sel),
            "cost_eur": sum(r["cost_eur"] for r in sel),
            "cost_without_eur": sum(r["cost_without_eur"] for r in sel)}


def site_settings(tmp_path, influxd, db: str, **changes):
    from tests.integration.test_web import write_settings
    store = {"kind": "influxdb1", "host": influxd.host, "port": influxd.port, "database": db, "raw_retention": "INF"}
    return load_settings(write_settings(tmp_path, influxd, db, store=store, **changes))


@pytest.fixture(scope="module")
def year_site(tmp_path_factory, influxd):
    """gestor web (its clock at NOW) over a database holding the year; yields (web, settings, rows)."""
    from tests.integration.test_web import Web
    tmp = tmp_path_factory.mktemp("ranges")
    db = f"t_ranges_{uuid.uuid4().hex[:8]}"
    s = site_settings(tmp, influxd, db)
    rows = write_year(s, influxd)
    write_decisions(s, influxd)
    web = Web(s, SimClock(NOW), auth.hasher().hash(PASSWORD))
    yield web, s, rows
    web.stop()
    c = influxd.client(db)
    c.drop_database(db)
    c.close()


DECISION_DAY = date(YEAR, 6, 15)


def write_decisions(s, influxd) -> None:
    """2100 decisions on DECISION_DAY (a minute apart from 08:00 local, alternating loads, every
    7th failed) and one the day after."""
    a = datetime(YEAR, 6, 15, 8, 0, tzinfo=TZ).astimezone(UTC)
    names = [ld.name for ld in s.loads]
    lines = []
    for i in range(2100):
        at = a + timedelta(seconds=20 * i)
        bad = i % 7 == 0
        lines.append(point("decision", {"site": s.site, "load": names[i % len(names)]},
                           {"on": i % 2 == 0, "reason": f"reason {i}", "ok": not bad,
                            "error": "relay did not answer" if bad else None, "switched": 0 if bad else 1}, at))
    lines.append(point("decision", {"site": s.site, "load": names[0]}, {"on": True, "reason": "next day", "ok": True,
                                                                         "switched": 1}, a + timedelta(days=1)))
    c = influxd.client(s.store.database)
    try:
        c.write_points(lines, protocol="line", time_precision="ms")
    finally:
        c.close()


def local(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=TZ)


def check(got: dict, want: dict) -> None:
    for k in ("import_wh", "export_wh", "captured_wh", "production_wh", "consumption_wh", "cost_eur",
              "cost_without_eur"):
        assert got[k] == pytest.approx(want[k], rel=1e-9, abs=1e-6), k
    assert got["loads"]["water_heater"]["energy_wh"] == pytest.approx(want["water_heater_wh"], abs=1e-6)
    assert got["saved_eur"] == pytest.approx(want["cost_without_eur"] - want["cost_eur"], abs=1e-9)


def test_the_year_from_the_forever_summaries_and_the_recent_raw_points(year_site):
    web, s, rows = year_site
    c = web.login(PASSWORD)
    d = c.get(f"{web.url}/api/range?view=year&date=2025-07-04", timeout=30).json()
    assert (d["view"], d["tz"]) == ("year", "Europe/Madrid")
    assert d["start"] == "2025-01-01T00:00:00+01:00" and d["end"] == "2026-01-01T00:00:00+01:00"
    assert [b["start"][:7] for b in d["buckets"]] == [f"2025-{m:02d}" for m in range(1, 13)]
    want = expected(rows, local(2025, 1, 1), local(2026, 1, 1))
    assert want["n"] == 8760
    check(d["totals"], want)
    assert d["totals"]["periods"] == 8760
    # each month as the month view sums it; the month view's days add up to it
    for m, bk in enumerate(d["buckets"], start=1):
        end = local(2025 + (m == 12), m % 12 + 1, 1)
        check(bk, expected(rows, local(2025, m, 1), end))
    mv = c.get(f"{web.url}/api/range?view=month&date=2025-12-31", timeout=30).json()
    assert len(mv["buckets"]) == 31 and mv["buckets"][-1]["start"] == "2025-12-31T00:00:00+01:00"
    for k in ("import_wh", "export_wh", "captured_wh", "cost_eur"):
        assert sum(b[k] for b in mv["buckets"]) == pytest.approx(d["buckets"][11][k], abs=1e-6)
        assert mv["totals"][k] == pytest.approx(d["buckets"][11][k], abs=1e-6)
    # the last afternoon comes from the raw points only: without them December would be short
    assert mv["buckets"][-1]["periods"] == 24 and mv["buckets"][-2]["periods"] == 24
    # percentages from the bucket's own sums
    t = d["totals"]
    assert t["self_consumption_pct"] == pytest.approx(100 * (t["production_wh"] - t["export_wh"]) / t["production_wh"])
    assert t["self_sufficiency_pct"] == pytest.approx(100 * (t["consumption_wh"] - t["import_wh"]) / t["consumption_wh"])
    assert 0 < t["self_consumption_pct"] < 100 and 0 < t["self_sufficiency_pct"] < 100
    # on-time from the energy and the rated power
    wh = next(ld for ld in s.loads if ld.name == "water_heater")
    assert t["loads"]["water_heater"]["on_s"] == pytest.approx(t["loads"]["water_heater"]["energy_wh"] * 3600 / wh.power_w)
    assert t["devices_wh"] is None  # no setpoint devices
    # since installation: every period stored (the year), from its first
    si = d["since_install"]
    assert si["since"] == "2024-12-31T23:00:00+00:00"
    assert si["cost_eur"] == pytest.approx(want["cost_eur"], abs=1e-6)
    assert si["saved_eur"] == pytest.approx(want["cost_without_eur"] - want["cost_eur"], abs=1e-6)


def test_dst_days_have_23_and_25_hours_and_weeks_run_monday_to_sunday(year_site):
    web, s, rows = year_site
    c = web.login(PASSWORD)
    spring = c.get(f"{web.url}/api/range?view=day&date=2025-03-30", timeout=30).json()
    autumn = c.get(f"{web.url}/api/range?view=day&date=2025-10-26", timeout=30).json()
    assert len(spring["buckets"]) == 23 and len(autumn["buckets"]) == 25
    assert [b["start"] for b in spring["buckets"][1:3]] == ["2025-03-30T01:00:00+01:00", "2025-03-30T03:00:00+02:00"]
    assert [b["start"] for b in autumn["buckets"][2:4]] == ["2025-10-26T02:00:00+02:00", "2025-10-26T02:00:00+01:00"]
    assert all(b["periods"] == 1 for b in spring["buckets"] + autumn["buckets"])
    check(autumn["totals"], expected(rows, local(2025, 10, 26), local(2025, 10, 27)))
    for b in autumn["buckets"]:
        a = datetime.fromisoformat(b["start"])
        check(b, expected(rows, a, a + timedelta(hours=1)))
    wk = c.get(f"{web.url}/api/range?view=week&date=2025-10-26", timeout=30).json()  # a Sunday
    assert wk["start"] == "2025-10-20T00:00:00+02:00" and wk["end"] == "2025-10-27T00:00:00+01:00"
    assert len(wk["buckets"]) == 7
    check(wk["totals"], expected(rows, local(2025, 10, 20), local(2025, 10, 27)))
    check(wk["buckets"][-1], expected(rows, local(2025, 10, 26), local(2025, 10, 27)))
    # a day with no data: zeros, not complete; production unknown
    empty = c.get(f"{web.url}/api/range?view=day&date=2024-06-01", timeout=30).json()
    assert len(empty["buckets"]) == 24 and not empty["totals"]["complete"]
    assert empty["totals"]["production_wh"] is None and empty["totals"]["self_consumption_pct"] is None
    assert empty["totals"]["import_wh"] == 0


def test_the_csv_in_spanish_and_english_reads_back_to_the_same_numbers(year_site):
    web, s, rows = year_site
    c = web.login(PASSWORD)
    d = c.get(f"{web.url}/api/range?view=month&date=2025-06-10", timeout=30).json()
    r = c.get(f"{web.url}/api/range.csv?view=month&date=2025-06-10&lang=es", timeout=30)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
    assert 'filename="gestor-2025-06.csv"' in r.headers["Content-Disposition"]
    assert r.content.startswith(b"\xef\xbb\xbf")  # UTF-8 with a BOM
    text = r.content.decode("utf-8-sig")
    table = list(csv.reader(io.StringIO(text), delimiter=";"))
    head, body = table[0], table[1:]
    assert head[:7] == ["Inicio", "Inicio (ISO 8601)", "Producción (Wh)", "Consumo (Wh)", "Importación neta (Wh)",
                        "Exportación neta (Wh)", "Excedente aprovechado (Wh)"]
    assert "Termo eléctrico (horas encendido)" in head and head[-1] == "Completo"
    assert len(body) == 30 and body[0][0] == "2025-06-01" and body[0][1] == "2025-06-01T00:00:00+02:00"
    es = lambda v: float(v.replace(",", "."))  # noqa: E731
    assert "," in body[0][4] and "." not in body[0][4]
    for row, bk in zip(body, d["buckets"]):
        assert es(row[head.index("Importación neta (Wh)")]) == pytest.approx(bk["import_wh"], abs=1e-3)
        assert es(row[head.index("Excedente aprovechado (Wh)")]) == pytest.approx(bk["captured_wh"], abs=1e-3)
        assert es(row[head.index("Ahorro (EUR)")]) == pytest.approx(bk["saved_eur"], abs=1e-4)
        assert es(row[head.index("Termo eléctrico (horas encendido)")]) == pytest.approx(
            bk["loads"]["water_heater"]["on_s"] / 3600, abs=1e-4)
    assert sum(es(r_[head.index("Exportación neta (Wh)")]) for r_ in body) == pytest.approx(
        d["totals"]["export_wh"], abs=0.05)
    # Catalan by Accept-Language; English by lang
    ca = c.get(f"{web.url}/api/range.csv?view=year&date=2025-06-10", headers={"Accept-Language": "ca-ES,ca;q=0.9"},
               timeout=30)
    assert ca.content.decode("utf-8-sig").startswith("Inici;") and 'filename="gestor-2025.csv"' in \
        ca.headers["Content-Disposition"]
    en = c.get(f"{web.url}/api/range.csv?view=week&date=2025-06-10&lang=en", timeout=30)
    assert not en.content.startswith(b"\xef\xbb\xbf") and 'filename="gestor-2025-W24.csv"' in \
        en.headers["Content-Disposition"]
    table = list(csv.reader(io.StringIO(en.text)))
    assert table[0][:3] == ["Start", "Start (ISO 8601)", "Production (Wh)"] and len(table) == 8
    wk = c.get(f"{web.url}/api/range?view=week&date=2025-06-10", timeout=30).json()
    assert float(table[1][4]) == pytest.approx(wk["buckets"][0]["import_wh"], abs=1e-3)
    r = c.get(f"{web.url}/api/range.csv?view=month&date=2025-06-10&lang=fr", timeout=30)
    assert r.status_code == 400 and "lang 'fr' must be one of es, ca, en" in r.json()["error"]


def test_decisions_newest_first_filtered_and_bounded(year_site):
    web, s, rows = year_site
    c = web.login(PASSWORD)
    d = c.get(f"{web.url}/api/decisions?date={DECISION_DAY}", timeout=30).json()
    assert len(d) == 2000  # of 2100: the newest
    assert d[0]["reason"] == "reason 2099" and d[-1]["reason"] == "reason 100"
    assert [x["at"] for x in d] == sorted((x["at"] for x in d), reverse=True)
    first = d[-1]
    assert set(first) == {"at", "load", "on", "reason", "ok", "error", "reason_text", "reason_data"}
    assert first["reason_text"] == "reason 100" and first["reason_data"] is None  # no code: as it is
    bad = next(x for x in d if x["reason"] == "reason 2093")  # 2093 = 7 x 299: failed
    assert bad["ok"] is False and bad["error"] == "relay did not answer"
    good = next(x for x in d if x["reason"] == "reason 2098")
    assert good["ok"] is True and good["error"] is None and good["on"] is True
    name = s.loads[1].name
    mine = c.get(f"{web.url}/api/decisions?date={DECISION_DAY}&load={name}", timeout=30).json()
    assert mine and all(x["load"] == name for x in mine)
    assert len(mine) == len([i for i in range(2100) if i % len(s.loads) == 1])
    r = c.get(f"{web.url}/api/decisions?date={DECISION_DAY}&load=nope", timeout=30)
    assert r.status_code == 400 and r.json()["error"].startswith("no load named 'nope'")
    assert c.get(f"{web.url}/api/decisions?date=2025-06-17", timeout=30).json() == []


def test_prices_of_a_fixed_tariff_and_the_daily_minimums_plan(year_site):
    from gestor.runtime.livestate import publish_managing
    web, s, rows = year_site
    c = web.login(PASSWORD)
    plan = {"water_heater": ["2026-01-01T15:00:00+00:00", "2026-01-01T16:00:00+00:00"]}
    s.paths.run_dir.mkdir(parents=True, exist_ok=True)
    publish_managing(s.paths.run_dir, {"pid": 1, "min_run": plan})
    d = c.get(f"{web.url}/api/prices?date=2025-03-30", timeout=30).json()
    assert d["source"] == "fixed" and d["tariff_period_now"] == "P3"  # 1 January: a national holiday
    assert d["min_run"] == plan
    sunday, monday = d["days"]
    assert (sunday["date"], monday["date"]) == ("2025-03-30", "2025-03-31")
    assert len(sunday["hours"]) == 23 and len(monday["hours"]) == 24
    assert {h["period"] for h in sunday["hours"]} == {"P3"}
    assert [h["period"] for h in monday["hours"]] == ["P3"] * 8 + ["P2"] * 2 + ["P1"] * 4 + ["P2"] * 4 + ["P1"] * 4 \
        + ["P2"] * 2
    t = s.tariff
    for h in monday["hours"]:
        assert h["import_eur_per_kwh"] == t.import_eur_per_kwh(h["period"])
        assert h["surplus_eur_per_kwh"] == t.surplus_eur_per_kwh
    assert monday["hours"][10]["start"] == "2025-03-31T10:00:00+02:00" and monday["source"] == "fixed"


def test_bad_requests_are_a_sentence_and_every_endpoint_needs_the_session(year_site):
    web, s, rows = year_site
    for path in ("/api/range?view=day&date=2025-01-01", "/api/range.csv?view=day&date=2025-01-01",
                 "/api/prices?date=2025-01-01", "/api/decisions?date=2025-01-01"):
        assert requests.get(web.url + path, timeout=10).status_code == 401, path
    c = web.login(PASSWORD)
    for path, words in (("/api/range?view=decade&date=2025-01-01", "view 'decade' must be one of day, week, month, year"),
                        ("/api/range?date=2025-01-01", "view '' must be one of"),
                        ("/api/range?view=month&date=2025-13-01", "must be YYYY-MM-DD"),
                        ("/api/range?view=month", "must be YYYY-MM-DD"),
                        ("/api/range?view=year&date=2026-01-03", "must be from 2000-01-01 to 2026-01-02"),
                        ("/api/range.csv?view=week&date=x", "must be YYYY-MM-DD"),
                        ("/api/prices?date=1999-12-31", "must be from 2000-01-01"),
                        ("/api/decisions?date=today", "must be YYYY-MM-DD")):
        r = c.get(web.url + path, timeout=10)
        assert r.status_code == 400 and words in r.json()["error"], (path, r.text)


def test_without_summaries_the_range_reads_the_raw_points(tmp_path, influxd):
    """A database ``db-init`` never set up: no forever policy; the raw points answer. The second
    day has a setpoint device taking 300 Wh a period: the net is then summed per period."""
    from tests.integration.test_web import Web
    db = f"t_ranges_raw_{uuid.uuid4().hex[:8]}"
    s = site_settings(tmp_path, influxd, db)
    pts = [(t, ln) for t, ln in year_points(s) if local(2025, 6, 1) <= t < local(2025, 6, 2)]
    pts += [(t, ln) for t, ln in year_points(s, devices_wh=300.0) if local(2025, 6, 2) <= t < local(2025, 6, 3)]
    c = influxd.client(db)
    c.create_database(db)
    c.write_points([ln for _, ln in pts], protocol="line", time_precision="ms")
    web = Web(s, SimClock(NOW), auth.hasher().hash(PASSWORD))
    try:
        d = web.login(PASSWORD).get(f"{web.url}/api/range?view=month&date=2025-06-01", timeout=30).json()
        check(d["totals"], expected([reference(t, ln) for t, ln in pts], local(2025, 6, 1), local(2025, 7, 1)))
        assert [b["periods"] for b in d["buckets"][:3]] == [24, 24, 0]
        assert d["buckets"][0]["devices_wh"] is None and d["buckets"][1]["devices_wh"] == pytest.approx(24 * 300.0)
        refs = [reference(t, ln) for t, ln in pts]
        for k, bk in enumerate(d["buckets"][:2]):
            check(bk, expected(refs, local(2025, 6, 1 + k), local(2025, 6, 2 + k)))
        # the devices' energy counts as captured surplus (the period without them would have exported it)
        assert d["buckets"][1]["captured_wh"] > expected(refs[:0] + [dict(r, devices_wh=0.0) for r in refs],
                                                         local(2025, 6, 2), local(2025, 6, 3))["captured_wh"]
        assert d["since_install"]["since"] == "2025-05-31T22:00:00+00:00"
    finally:
        web.stop()
        c.drop_database(db)
        c.close()


def test_the_daily_minimums_plan_is_the_guards_choice():
    """min_run_slots (what managing publishes) holds the current period exactly when
    min_run_reason runs the load now, at every 10 minutes of a weekday and a Saturday."""
    from gestor.core.balance import period_bounds
    from gestor.core.guards import min_run_reason, min_run_slots
    pp = lambda t: period_2_0td(t, TZ)  # noqa: E731
    for start in (datetime(2025, 6, 10, 0, 0, tzinfo=UTC), datetime(2025, 6, 14, 0, 0, tzinfo=UTC)):
        for k in range(24 * 6):
            now = start + timedelta(minutes=10 * k)
            for need, done in ((7200, 0), (7200, 1800), (3 * 3600, 600), (3600, 3600)):
                slots = min_run_slots(now, TZ, 3600, need, done, "21:00", pp)
                runs = min_run_reason(now, TZ, 3600, need, done, "21:00", pp, 1000) is not None
                assert (period_bounds(now, 3600, TZ)[0] in slots) == runs, (now, need, done)
                assert sum(1 for _ in slots) >= (0 if need <= done else 1)
    # Tuesday 09:00 local, 2 h to go by 21:00: the two latest P2 hours before 18:00
    got = min_run_slots(datetime(2025, 6, 10, 7, 0, tzinfo=UTC), TZ, 3600, 7200, 0, "21:00", pp)
    assert [f"{t.astimezone(TZ):%H:%M}" for t in got] == ["16:00", "17:00"]


def test_the_page_shows_the_real_months_and_years_euros_in_spanish_with_no_axe_violations(year_site):
    """The page in Chromium over the real endpoints and a year of real-shaped data (not the page
    test's known answers): June 2025 and the year 2025 show the totals /api/range gives, in
    Spanish formats, and axe-core finds nothing on either view (with the banners up: no daemon
    runs here)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.integration.test_web_page import CHROMEDRIVER, CHROMIUM, axe_violations, browser, euros, log_in, text_of
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium and chromium-driver: ./install.sh --test")
    web, s, rows = year_site
    api = web.login()
    b = browser("es")
    wait = WebDriverWait(b, 30)
    try:
        b.get(f"{web.url}/login")
        log_in(b, web.url)
        wait.until(lambda _: b.find_elements(By.CSS_SELECTOR, '.views [data-view="month"]')
                   and b.find_element(By.CSS_SELECTOR, '.views [data-view="month"]').is_displayed())
        b.execute_script("const d = document.getElementById('history-date'); d.value = '2025-06-15'; "
                         "d.dispatchEvent(new Event('change'))")
        for view, title, n in (("month", "Junio de 2025", 30), ("year", "2025", 12)):
            b.find_element(By.CSS_SELECTOR, f'.views [data-view="{view}"]').click()
            wait.until(lambda _: text_of(b, "#range-title") == title)
            wait.until(lambda _: b.execute_script("return gestorCharts['history-bars'].data[0].length") == n)
            r = api.get(f"{web.url}/api/range", params={"view": view, "date": "2025-06-15"}, timeout=30).json()
            totals = text_of(b, "#range-totals")
            assert f"Coste con gestor\n{euros(r['totals']['cost_eur'], 'es')}" in totals, (view, totals)
            assert f"Ahorrado\n{euros(r['totals']['saved_eur'], 'es')}" in totals, (view, totals)
            assert axe_violations(b) == [], view
    finally:
        b.quit()
