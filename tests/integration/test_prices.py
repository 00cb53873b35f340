"""ESIOS prices against an HTTP emulator on loopback serving the API's documented JSON shape
(``indicator.values`` with ``value`` in EUR/MWh, ``datetime``, ``datetime_utc``, ``geo_id``,
``geo_name``): quarter-hours, a DST day, an empty answer, a bad token, a 500, a slow answer."""
from __future__ import annotations

import json
import threading
import time
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse
from zoneinfo import ZoneInfo

import pytest

from gestor.tariff import prices
from gestor.cli import main
from gestor.settings import PricesSettings
from tests.conftest import settings_file

MAD = ZoneInfo("Europe/Madrid")
UTC = timezone.utc
TOKEN = "t0ken-for-tests"


def served(indicator: int, day: date, slot_s: int) -> list[dict]:
    a, b = prices.day_bounds(day, MAD)
    out, t, k = [], a, 0
    while t < b:
        v = (100.0 + k % 37) if indicator == 1001 else (40.0 + k % 11)
        out.append({"value": v, "datetime": t.astimezone(MAD).isoformat(), "datetime_utc": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "tz_time": t.isoformat(), "geo_id": 8741 if indicator == 1001 else 3,
                    "geo_name": "Península" if indicator == 1001 else "España"})
        if indicator == 1001:  # another zone's values in the same answer: not ours
            out.append({**out[-1], "geo_id": 8742, "geo_name": "Canarias", "value": 999.0})
        t += timedelta(seconds=slot_s)
        k += 1
    return out


class Esios:
    def __init__(self) -> None:
        self.mode = "ok"
        self.calls = 0
        self.fail_first = 0
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):  # noqa: ANN002
                pass

            def do_GET(self) -> None:  # noqa: N802
                outer.calls += 1
                u = urlparse(self.path)
                if self.headers.get("x-api-key") != TOKEN:
                    return self._send(401, {"message": "HTTP Token: Access denied."})
                if outer.fail_first > 0:
                    outer.fail_first -= 1
                    return self._send(500, {"message": "Internal Server Error"})
                if outer.mode == "slow":
                    time.sleep(3)
                ind = int(u.path.rsplit("/", 1)[1])
                q = parse_qs(u.query)
                day = datetime.fromisoformat(q["start_date"][0]).astimezone(MAD).date()
                values = [] if outer.mode == "empty" else served(ind, day, 900 if ind == 1001 else 3600)
                self._send(200, {"indicator": {"id": ind, "name": "x", "values": values}})

            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()


@pytest.fixture
def esios():
    e = Esios()
    yield e
    e.close()


def ps(esios, **kw) -> PricesSettings:
    return PricesSettings(source="esios", esios_token=TOKEN, esios_url=esios.url, timeout_s=1.5, **kw)


def test_a_quarter_hour_day_and_a_dst_day(esios):
    p = prices.fetch_esios(ps(esios), date(2026, 6, 10), MAD)
    assert p.slot_s == 900 and len(p.import_) == 96 and len(p.surplus) == 24
    assert p.import_[0] == (datetime(2026, 6, 9, 22, 0, tzinfo=UTC), 0.1)          # 100 EUR/MWh, 00:00 CEST
    assert all(v < 0.2 for _, v in p.import_)                                     # not Canarias' 999
    assert prices.at(p.surplus, datetime(2026, 6, 10, 7, 45, tzinfo=UTC)) == pytest.approx(0.040 + 0.001 * (9 % 11))
    dst = prices.fetch_esios(ps(esios), date(2026, 10, 25), MAD)                   # 25 h: 100 quarter-hours
    assert len(dst.import_) == 100 and len(dst.surplus) == 25
    spring = prices.fetch_esios(ps(esios), date(2026, 3, 29), MAD)                 # 23 h
    assert len(spring.import_) == 92


def test_errors_are_one_clear_line(esios):
    with pytest.raises(prices.PriceError, match=r"ESIOS refused the token \(401\)"):
        prices.fetch_esios(PricesSettings(source="esios", esios_token="wrong", esios_url=esios.url), date(2026, 6, 10), MAD)
    esios.mode = "empty"
    with pytest.raises(prices.PriceError, match="no import .PVPC. prices published for 2026-06-10"):
        prices.fetch_esios(ps(esios), date(2026, 6, 10), MAD)
    esios.mode, esios.fail_first = "ok", 1       # a 500, then an answer: retried
    assert len(prices.fetch_esios(ps(esios), date(2026, 6, 10), MAD).import_) == 96
    esios.mode = "slow"
    t0 = time.monotonic()
    with pytest.raises(prices.PriceError, match="no answer within 1.5 s"):
        prices.fetch_esios(ps(esios), date(2026, 6, 10), MAD)
    assert time.monotonic() - t0 < 12


def test_fetch_stores_every_slot_caches_the_day_and_the_cache_survives(tmp_path, esios, influxd, influx_db, capsys,
                                                                       monkeypatch):
    monkeypatch.setenv("ESIOS_TOKEN", TOKEN)                    # the token from the environment
    f = settings_file(tmp_path, store={"kind": "influxdb1", "host": influxd.host, "port": influxd.port,
                                       "database": influx_db},
                      prices={"source": "esios", "esios_url": esios.url, "timeout_s": 2})
    assert main(["prices", "fetch", "--day", "2026-06-10", "--config", str(f)]) == 0
    out = capsys.readouterr().out
    assert "96 slots of 15 min, cached and stored in InfluxDB" in out and "00:00 CEST" in out
    c = influxd.client(influx_db)
    got = list(c.query("SELECT eur_per_kwh FROM price WHERE kind = 'import' ORDER BY time", epoch="s").get_points())
    sur = list(c.query("SELECT eur_per_kwh FROM price WHERE kind = 'surplus'", epoch="s").get_points())
    c.close()
    want = [(datetime.fromisoformat(v["datetime_utc"].replace("Z", "+00:00")).timestamp(), v["value"] / 1000)
            for v in served(1001, date(2026, 6, 10), 900) if v["geo_id"] == 8741]
    assert [(g["time"], g["eur_per_kwh"]) for g in got] == [(pytest.approx(t), pytest.approx(v)) for t, v in want]
    assert len(sur) == 24
    # the network is gone: the cache still has the day, and says so
    cache = prices.cached(tmp_path / "state", date(2026, 6, 10))
    assert cache is not None and len(cache.import_) == 96
    esios.close()
    assert main(["prices", "fetch", "--day", "2026-06-10", "--config", str(f)]) == 1
    assert "the cached prices of that day stay in use" in capsys.readouterr().err
    assert main(["prices", "fetch", "--day", "2026-06-11", "--config", str(f)]) == 1
    assert "the fixed 2.0TD prices of tariff: are used" in capsys.readouterr().err


def test_prices_settings_name_the_key():
    from gestor.settings import SettingsError, parse_settings
    from tests.conftest import example_raw
    raw = example_raw()
    raw["prices"] = {"source": "esios", "esios_url": "http://api.esios.ree.es"}
    with pytest.raises(SettingsError) as e:
        parse_settings(raw, "settings.yaml")
    assert "prices.esios_url" in str(e.value) and "must be https://" in str(e.value)


def test_the_daily_minimum_runs_in_the_cheapest_served_hours(tmp_path):
    """A cloudy Monday (no surplus), 2 h needed by 21:00, and the day's PVPC cached: cheapest at
    14:00-16:00 local (midday solar prices), not in the P3 hours of the 2.0TD calendar."""
    from tests.integration.test_relays import cloudy_min_run_day
    state_dir = tmp_path / "state"                        # make_settings puts the state dir there
    day = date(2026, 11, 23)
    a, _ = prices.day_bounds(day, MAD)
    served_eur = [0.20 - (0.15 if h in (14, 15) else 0.0) + 0.001 * h for h in range(24)]   # 14-16 h cheapest
    prices.save(state_dir, prices.DayPrices(day, 3600, [(a + timedelta(hours=h), served_eur[h]) for h in range(24)],
                                            [(a + timedelta(hours=h), 0.05) for h in range(24)]))
    trace = cloudy_min_run_day(tmp_path, prices={"source": "esios"})
    on = [t for t, o, _ in trace if o]
    assert on[0] == datetime(2026, 11, 23, 13, 0, tzinfo=UTC)          # 14:00 CET
    assert on[-1] == datetime(2026, 11, 23, 14, 59, 30, tzinfo=UTC)
    assert len(on) == 240
    assert "EUR/kWh" in next(r for t, o, r in trace if o)


def test_managing_fetches_tomorrows_prices_after_2030_by_itself(tmp_path, esios, monkeypatch, caplog):
    import logging

    import managing
    import monitoring
    from drivers.store.influx import NullStore
    from gestor.clock import SimClock
    from gestor.sim.lockstep import run_lockstep
    from tests.conftest import make_settings, write_csv
    from tests.integration.test_safety import HEADER
    monkeypatch.setenv("ESIOS_TOKEN", TOKEN)
    start = datetime(2026, 6, 10, 18, 25, tzinfo=UTC)               # 20:25 CEST
    csv = write_csv(tmp_path / "evening.csv", HEADER, [
        f"{start + timedelta(seconds=10 * i):%Y-%m-%d %H:%M:%S}.000000,0,,0,0,500,300,0,0,-200" for i in range(6 * 10)])
    s = make_settings(tmp_path, meter={"path": str(csv)}, prices={"source": "esios", "esios_url": esios.url})
    clock = SimClock(start)
    mon, mgr = monitoring.Monitoring(s, clock, NullStore()), managing.Managing(s, clock, NullStore())
    mgr.start()
    with caplog.at_level(logging.INFO, "gestor"):
        run_lockstep(clock, [(5, mon.cycle), (10, mgr.cycle)], start + timedelta(minutes=2))
        assert mgr.prices.thread is not None
        mgr.prices.thread.join(20)
        assert prices.cached(s.paths.state_dir, date(2026, 6, 10)) is not None     # today's, missing: fetched
        assert prices.cached(s.paths.state_dir, date(2026, 6, 11)) is None          # tomorrow's: not before 20:30
        run_lockstep(clock, [(5, mon.cycle), (10, mgr.cycle)], start + timedelta(minutes=7))
        mgr.prices.thread.join(20)
    mgr.stop()
    assert prices.cached(s.paths.state_dir, date(2026, 6, 11)) is not None
    assert "prices for 2026-06-11 fetched from ESIOS: 96 slots of 15 min" in caplog.text


def test_each_closed_period_carries_its_euros_and_status_adds_up_today(tmp_path, capsys):
    """Two sunny hours with the loads on: each closed period's EUR equal a hand computation at
    its prices (the cached PVPC for the first day, the fixed 2.0TD ones without a cache)."""
    import managing
    import monitoring
    from drivers.store.influx import NullStore
    from gestor.clock import SimClock
    from gestor.sim.lockstep import run_lockstep
    from gestor.runtime.status import collect, render
    from tests.conftest import make_settings
    from tests.integration.test_safety import T0, sunny_csv
    csv = sunny_csv(tmp_path / "sun.csv", 130)
    for cache in (True, False):
        d = tmp_path / ("esios" if cache else "fixed")
        s = make_settings(d, meter={"path": str(csv)}, prices={"source": "esios" if cache else "fixed"})
        day = T0.astimezone(MAD).date()
        a, _ = prices.day_bounds(day, MAD)
        if cache:
            prices.save(s.paths.state_dir, prices.DayPrices(day, 900, [(a + timedelta(minutes=15 * k), 0.10 + 0.01 * (k % 4))
                                                                       for k in range(96)],
                                                            [(a + timedelta(hours=h), 0.04) for h in range(24)]))
        clock = SimClock(T0)
        mon, mgr = monitoring.Monitoring(s, clock, NullStore()), managing.Managing(s, clock, NullStore())
        mgr.start()
        run_lockstep(clock, [(5, mon.cycle), (10, mgr.cycle)], T0 + timedelta(minutes=125))
        p = mgr.books.closed[1]                                     # 11:00-12:00 UTC, complete
        loads_wh = sum(ld.power_w for ld in mgr.loads) * 1.0   # both on the whole hour
        from gestor.tariff.calendar import period_2_0td
        fixed = {"P1": s.tariff.import_p1_eur_per_kwh, "P2": s.tariff.import_p2_eur_per_kwh,
                 "P3": s.tariff.import_p3_eur_per_kwh}[period_2_0td(p.start, MAD)]   # a Saturday: P3
        imp, sur = (0.115, 0.04) if cache else (fixed, s.tariff.surplus_eur_per_kwh)
        want = prices.period_money(p.balance_wh, loads_wh, imp, sur, s.tariff.import_p3_eur_per_kwh)
        got = mgr.books.money(p, loads_wh)
        assert got["price_source"] == ("esios" if cache else "fixed")
        assert got["import_eur_per_kwh"] == pytest.approx(imp) and got["cost_eur"] == pytest.approx(want["cost_eur"])
        assert got["cost_without_eur"] == pytest.approx(want["cost_without_eur"])
        assert mgr.books.eur_saved_today > 0
        out = render(collect(s, clock.now(), ping=False), s)
        assert "saved today so far" in out
        mgr.stop()


def test_simulate_with_the_stored_prices_equals_a_hand_computation(tmp_path, influxd, influx_db, capsys):
    from drivers.store.influx import InfluxStore
    from tests.conftest import settings_file
    from tests.test_simulate import house_csv
    day = date(2026, 6, 10)                                     # a Wednesday
    a, _ = prices.day_bounds(day, MAD)
    imp = [(a + timedelta(minutes=15 * k), 0.08 + 0.02 * (k % 4)) for k in range(96)]   # hourly mean 0.11
    sur = [(a + timedelta(hours=h), 0.03 + 0.001 * h) for h in range(24)]
    f = settings_file(tmp_path, store={"kind": "influxdb1", "host": influxd.host, "port": influxd.port,
                                       "database": influx_db})
    from gestor.settings import load_settings
    s = load_settings(f)
    store = InfluxStore.from_settings(s.store).open()
    store.write(prices.points(prices.DayPrices(day, 900, imp, sur), s.site))
    assert store.flush(30)
    store.close()
    # 10:00-13:00 local: two hours of 3 kW surplus, then one of 400 W import
    start = datetime(2026, 6, 10, 8, 0, tzinfo=UTC)
    csv = house_csv(tmp_path / "day.csv", start, 3 * 3600 - 10, lambda k: 3500 if k < 7200 else 0, lambda k: 500 if k < 7200 else 400)
    assert main(["simulate", str(csv), "--config", str(f), "--prices", "influx", "--json", "--jobs", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = out["periods"]
    assert len(rows) == 3
    for r in rows:
        h = datetime.fromisoformat(r["start"]).astimezone(MAD).hour
        assert r["import_eur_per_kwh"] == pytest.approx(0.11)                      # the mean of four quarters
        assert r["surplus_eur_per_kwh"] == pytest.approx(0.03 + 0.001 * h)
    cost = sum(r["import_wh"] / 1000 * r["import_eur_per_kwh"] for r in rows)
    comp = sum(r["export_wh"] / 1000 * r["surplus_eur_per_kwh"] for r in rows)
    assert out["totals"]["cost_eur"] == pytest.approx(cost - min(comp, cost), abs=1e-9)
    assert cost > 0.04                                                             # the 400 W hour, at least


def test_prices_from_a_csv_file(tmp_path, caplog):
    f = tmp_path / "pvpc.csv"
    f.write_text("time,import_eur_per_kwh,surplus_eur_per_kwh\n"
                 "2026-06-10T13:00:00+02:00,0.05,0.02\n2026-06-10T14:00:00+02:00,0.07,\n2026-06-10T15:00,0.09,0.03\n")
    b = prices.Book(tmp_path / "state", MAD, f)
    b.refresh(datetime(2026, 6, 10, 11, 0, tzinfo=UTC), 0.0)
    assert b.import_price(datetime(2026, 6, 10, 11, 30, tzinfo=UTC)) == 0.05
    assert b.import_price(datetime(2026, 6, 10, 13, 59, tzinfo=UTC)) == 0.09   # naive: local time (15:59 CEST)
    assert b.import_price(datetime(2026, 6, 10, 14, 0, tzinfo=UTC)) is None    # after the last slot
    t0 = datetime(2026, 6, 10, 11, 0, tzinfo=UTC).timestamp()
    assert b.period_prices(t0, t0 + 3600) == (0.05, 0.02)
    assert b.period_prices(t0 + 3600, t0 + 7200) is None                       # no surplus price then
    f.write_text("time,import_eur_per_kwh\nyesterday,0.1\n")
    import os
    os.utime(f, (1, 1))                                      # changed (whatever the clock's resolution)
    b.refresh(datetime(2026, 6, 10, 12, 0, tzinfo=UTC), 1.0)
    assert b.slots == [] and "prices.file" in caplog.text and "the fixed 2.0TD prices apply" in caplog.text
