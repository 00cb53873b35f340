"""gestor web over real HTTP (cheroot on a free loopback port) against the state files of the real
managing and monitoring daemons, replaying a real morning (2022-06-11, house file) on a simulated
clock into the real test InfluxDB; and in Debian's headless chromium (selenium + chromedriver),
asserting from the rendered page that it shows managing's numbers."""
from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
import yaml

import managing
import monitoring
from drivers.store.influx import InfluxStore
from gestor.clock import SimClock
from gestor.runtime.livestate import is_latched
from gestor.sim.lockstep import run_lockstep
from gestor.settings import load_settings
from gestor.web import auth, make_server
from gestor.i18n.reasons import render_text
from tests.conftest import REPO, free_port, settings_file

UTC = timezone.utc
PASSWORD = "correct horse battery staple"
START = datetime(2022, 6, 11, 4, 0, tzinfo=UTC)     # 06:00 in Madrid
MORNING = datetime(2022, 6, 11, 9, 20, tzinfo=UTC)  # 11:20 in Madrid: five hours closed


def write_settings(tmp: Path, influxd=None, db: str | None = None, **changes) -> Path:
    """The shipped example (conftest.settings_file) replaying the house file from START, site
    "test", the test InfluxDB (or none), the page on a free loopback port polling every second."""
    store = {"kind": "influxdb1", "host": influxd.host, "port": influxd.port, "database": db} if influxd else None
    return settings_file(tmp, store=changes.pop("store", store), meter_updates={"loop": False, "start": START.isoformat()},
                         site="test", web={"listen": f"127.0.0.1:{free_port()}", "poll_s": 1}, **changes)


def form_token(html: str) -> str:
    """The CSRF token of the login form."""
    return html.split('name="csrf_token" value="')[1].split('"')[0]


def page_token(html: str) -> str:
    """The CSRF token the page's script sends (its meta tag)."""
    return html.split('name="csrf-token" content="')[1].split('"')[0]


class Web:
    """gestor web on its own thread; ``url``; ``stop()``."""

    def __init__(self, s, clock, password_hash: str) -> None:
        self.server = make_server(s, clock, password_hash, auth.session_key(s.paths.state_dir))
        self.server.prepare()
        self.url = f"http://{s.web.listen}"
        self.thread = threading.Thread(target=self.server.serve, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.stop()

    def login(self, password: str = PASSWORD) -> requests.Session:
        c = requests.Session()
        page = c.get(f"{self.url}/login", timeout=10).text
        token = form_token(page)
        r = c.post(f"{self.url}/login", data={"csrf_token": token, "password": password}, allow_redirects=False,
                   timeout=10)
        assert r.status_code == 303, r.text
        c.headers["X-CSRFToken"] = page_token(c.get(f"{self.url}/", timeout=10).text)
        return c


@dataclass
class Site:
    s: object
    clock: SimClock
    mon: monitoring.Monitoring
    mgr: managing.Managing
    store: InfluxStore
    web: Web

    def run(self, minutes: float) -> None:
        run_lockstep(self.clock, [(self.s.monitoring.interval_s, self.mon.cycle),
                                  (self.s.managing.interval_s, self.mgr.cycle)],
                     self.clock.now() + timedelta(minutes=minutes))
        assert self.store.flush(30)

    def state(self) -> dict:
        return json.loads((self.s.paths.run_dir / "managing.json").read_text())


@pytest.fixture
def site(tmp_path, influxd):
    yield from running_site(tmp_path, influxd)


def running_site(tmp_path, influxd, **changes):
    """The daemons run from START to MORNING on the test InfluxDB, gestor web serving them (a
    generator for a fixture: yields the Site, then stops it and drops its database); ``changes``:
    top-level settings keys (write_settings)."""
    db = f"t_web_{uuid.uuid4().hex[:8]}"
    s = load_settings(write_settings(tmp_path, influxd, db, **changes))
    clock = SimClock(START)
    store = InfluxStore.from_settings(s.store).open()
    mon, mgr = monitoring.Monitoring(s, clock, store), managing.Managing(s, clock, store)
    mgr.start()
    site = Site(s, clock, mon, mgr, store, Web(s, clock, auth.hasher().hash(PASSWORD)))
    site.run((MORNING - START).total_seconds() / 60)
    yield site
    site.web.stop()
    mgr.stop()
    store.close()
    c = influxd.client(db)
    c.drop_database(db)
    c.close()


def test_every_endpoint_needs_a_session_and_a_wrong_password_is_refused_and_logged(site, caplog):
    url = site.web.url
    r = requests.get(f"{url}/", allow_redirects=False, timeout=10)
    assert r.status_code == 302 and r.headers["Location"].startswith("/login")
    for path in ("/api/status", "/api/day?date=2022-06-11", "/day.csv?date=2022-06-11"):
        assert requests.get(url + path, timeout=10).status_code == 401, path
    caplog.set_level(logging.INFO, "gestor.web")
    c = requests.Session()
    token = form_token(c.get(f"{url}/login", timeout=10).text)
    r = c.post(f"{url}/login", data={"csrf_token": token, "password": "not the password"}, timeout=10)
    assert r.status_code == 401 and "Wrong password" in r.text
    assert "wrong password from 127.0.0.1" in caplog.text
    assert c.get(f"{url}/api/status", timeout=10).status_code == 401
    r = c.post(f"{url}/login", data={"password": PASSWORD}, allow_redirects=False, timeout=10)  # no CSRF token
    assert r.status_code == 400 and "CSRF token is missing" in caplog.text
    r = c.post(f"{url}/login", data={"csrf_token": token, "password": PASSWORD}, allow_redirects=False, timeout=10)
    assert r.status_code == 303
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and PASSWORD not in cookie
    assert c.get(f"{url}/api/status", timeout=10).status_code == 200
    page = c.get(f"{url}/", timeout=10)
    assert "Content-Security-Policy" in page.headers
    assert c.post(f"{url}/logout", data={"csrf_token": token}, timeout=10).status_code == 400  # rotated at login
    assert c.get(f"{url}/api/status", timeout=10).status_code == 200
    fresh = page_token(page.text)
    assert c.post(f"{url}/logout", data={"csrf_token": fresh}, timeout=10).status_code == 200
    assert c.get(f"{url}/api/status", timeout=10).status_code == 401


def test_login_is_rate_limited_per_client_and_only_failures_count(site, caplog):
    url = site.web.url
    for _ in range(3):  # successes do not count
        site.web.login()
    c = requests.Session()
    token = form_token(c.get(f"{url}/login", timeout=10).text)
    codes = [c.post(f"{url}/login", data={"csrf_token": token, "password": f"guess {i}"}, timeout=10).status_code
             for i in range(6)]
    assert codes == [401] * 5 + [429]
    r = c.post(f"{url}/login", data={"csrf_token": token, "password": PASSWORD}, allow_redirects=False, timeout=10)
    assert r.status_code == 429  # even the right one, for the rest of the minute
    # the page says the real wait, as Retry-After does
    wait = int(r.headers["Retry-After"])
    assert 50 <= wait <= 60 and f"Too many wrong passwords from this address: try again in {wait} seconds." in r.text
    assert "too many wrong passwords from this address" in caplog.text


def test_status_is_managings_own_state_and_today_is_influxdbs_periods(site):
    c = site.web.login()
    d = c.get(f"{site.web.url}/api/status", timeout=10).json()
    st = site.state()
    assert d["at"] == site.clock.now().isoformat()  # the injected clock, not the wall clock
    assert d["meter"]["net_w"] == site.mon._last.net_w and not d["meter"]["stale"]
    assert d["meter"]["words"].startswith("exporting" if site.mon._last.net_w > 0 else "importing")
    assert d["period"]["balance_wh"] == st["balance_wh"] and d["period"]["projected_wh"] == st["projected_wh"]
    assert d["period"]["label"] == "11:00-12:00"
    assert d["period"]["remaining_s"] == pytest.approx(40 * 60, abs=1)
    for ld in d["loads"]:
        mine = st["loads"][ld["name"]]
        assert (ld["on"], ld["reason"], ld["since"]) == (mine["on"], mine["reason"], mine["since"])
        assert ld["switches_today"] == site.mgr.books.switches_today[ld["name"]] and ld["mode"] == "auto"
    assert sum(ld["switches_today"] for ld in d["loads"]) > 0
    assert d["banners"] == [] and d["daemons"] == {"monitoring": True, "managing": True}
    assert d["eur_saved_today"] == st["eur_saved_today"]
    # today's hours: every closed period of the day, as managing closed it
    closed = [p for p in site.mgr.books.closed if p.start.astimezone(site.s.tz).date() == START.date()]
    got = d["today"]["periods"]
    # (a first, incomplete 05:00 period holds the sample read at 04:00 UTC, stamped a few seconds before)
    assert [p["label"] for p in got] == [f"{q.start.astimezone(site.s.tz):%H:%M}" for q in closed]
    assert [p["label"] for p in got][-5:] == [f"{h:02d}:00" for h in range(6, 11)]
    for p, q in zip(got, closed):
        assert p["balance_wh"] == pytest.approx(q.balance_wh, abs=1e-6)
        assert p["without_wh"] == pytest.approx(p["balance_wh"] + p["loads_wh"], abs=1e-9)
    assert any(p["loads_wh"] > 0 for p in got)


def test_history_of_a_day_and_its_csv(site):
    c = site.web.login()
    d = c.get(f"{site.web.url}/api/day?date=2022-06-11", timeout=10).json()
    n = len([p for p in site.mgr.books.closed if p.start.astimezone(site.s.tz).date() == START.date()])
    assert len(d["periods"]) == n >= 5 and d["curves"]["t"]
    # one point a minute from 06:00 to 11:20 local (the house file starts before 06:00)
    assert 310 <= len(d["curves"]["t"]) <= 321
    noon = d["curves"]["production_w"][-1]
    assert noon is not None and noon > 1000  # a sunny June morning
    csv = c.get(f"{site.web.url}/day.csv?date=2022-06-11", timeout=10)
    assert csv.headers["Content-Type"].startswith("text/csv")
    assert 'filename="gestor-test-2022-06-11.csv"' in csv.headers["Content-Disposition"]
    lines = csv.text.splitlines()
    assert lines[0].startswith("period_start_local,period_start_utc,balance_wh,without_gestor_wh,import_wh")
    assert len(lines) == n + 1 and lines[-5].startswith("2022-06-11T06:00:00+02:00,2022-06-11T04:00:00Z,")
    assert float(lines[-5].split(",")[2]) == pytest.approx(d["periods"][-5]["balance_wh"])
    assert c.get(f"{site.web.url}/api/day?date=2022-06-12", timeout=10).json()["periods"] == []
    r = c.get(f"{site.web.url}/api/day?date=yesterday", timeout=10)
    assert r.status_code == 400 and "YYYY-MM-DD" in r.json()["error"]
    # in Spanish and Catalan (issue 37; ?lang= is kept in a cookie: last): the headers in words, booleans as words, decimal commas
    es = c.get(f"{site.web.url}/day.csv?date=2022-06-11&lang=es", timeout=10)
    assert es.headers["Content-Language"] == "es" and es.text.startswith("\ufeff")
    rows = [line.split(";") for line in es.text.lstrip("\ufeff").splitlines()]
    assert rows[0][:4] == ["Inicio del periodo (hora local)", "Inicio del periodo (UTC)", "Balance (Wh)", "Sin gestor (Wh)"]
    complete = rows[0].index("Completo")
    assert {r[complete] for r in rows[1:]} <= {"sí", "no"} and "True" not in es.text and "False" not in es.text
    assert float(rows[-5][2].replace(",", ".")) == pytest.approx(d["periods"][-5]["balance_wh"], abs=1e-3)
    assert "." not in rows[-5][2]
    assert c.get(f"{site.web.url}/day.csv?date=2022-06-11&lang=ca", timeout=10).text.lstrip("\ufeff").startswith(
        "Inici del període (hora local);")
    assert c.get(f"{site.web.url}/day.csv?date=2022-06-11&lang=fr", timeout=10).status_code == 400


def test_a_command_switches_the_load_through_the_guards_and_not_under_the_latch(site, caplog):
    c = site.web.login()
    url = site.web.url
    pump = next(ld for ld in site.mgr.loads if ld.name == "pool_pump")
    r = requests.post(f"{url}/api/load/pool_pump", json={"mode": "off"}, timeout=10)
    assert r.status_code == 401  # no session
    r = c.post(f"{url}/api/load/pool_pump", json={"mode": "off"}, headers={"X-CSRFToken": "forged"}, timeout=10)
    assert r.status_code == 400 and "forged" in r.json()["error"]
    assert c.post(f"{url}/api/load/nope", json={"mode": "on"}, timeout=10).json()["error"].startswith("no load named")
    assert "mode 'up'" in c.post(f"{url}/api/load/pool_pump", json={"mode": "up"}, timeout=10).json()["error"]
    r = c.post(f"{url}/api/load/pool_pump", json={"mode": "on", "for": "1h"}, timeout=10)
    assert r.status_code == 200 and "switched on by hand until 2022-06-11 12:20" in r.json()["message"]
    site.run(1)
    assert pump.on is True and "manual override on" in pump.reason
    assert "override from the web page (127.0.0.1)" in caplog.text
    st = c.get(f"{url}/api/status", timeout=10).json()
    assert next(ld for ld in st["loads"] if ld["name"] == "pool_pump")["mode"] == "on"
    r = c.post(f"{url}/api/load/pool_pump", json={"mode": "off"}, timeout=10)
    site.run(1)
    assert pump.on is False and "manual override off" in pump.reason
    r = c.post(f"{url}/api/load/pool_pump", json={"mode": "on"}, timeout=10)
    site.run(1)
    assert pump.on is True
    # the emergency stop: the latch, every load off, confirmed
    assert c.post(f"{url}/api/stop", json={}, timeout=10).status_code == 400  # not confirmed
    r = c.post(f"{url}/api/stop", json={"confirm": "STOP"}, timeout=30)
    assert r.status_code == 200 and r.json()["ok"] and all(x["confirmed"] for x in r.json()["loads"])
    assert is_latched(site.s.paths.state_dir) and "EMERGENCY STOP from the web page" in caplog.text
    site.run(1)
    assert all(ld.on is False for ld in site.mgr.loads)
    r = c.post(f"{url}/api/load/water_heater", json={"mode": "on"}, timeout=10)
    assert "stop latch is set" in r.json()["message"]
    site.run(2)
    assert all(ld.on is False for ld in site.mgr.loads)  # the latch wins
    st = c.get(f"{url}/api/status", timeout=10).json()
    assert st["latch"]["set"] and st["banners"][0].startswith("STOP LATCH SET")
    # a sentence with the local time, not the latch file's JSON
    assert re.fullmatch(r"STOP LATCH SET at (\d{4}-\d\d-\d\d )?\d\d:\d\d by the web page from 127\.0\.0\.1: every load "
                        r"is kept off\. Release it on the Pi: sudo stop-loads --release", st["banners"][0]), st["banners"][0]


def test_banners_when_the_daemons_are_down_the_meter_stale_and_influxdb_away(tmp_path):
    s = load_settings(write_settings(tmp_path, store={"kind": "influxdb1", "host": "127.0.0.1", "port": free_port()}))
    clock = SimClock(START)
    web = Web(s, clock, auth.hasher().hash(PASSWORD))
    try:
        c = web.login()
        d = c.get(f"{web.url}/api/status", timeout=10).json()
        text = "\n".join(d["banners"])
        assert "gestor monitoring is not running" in text and "gestor managing is not running" in text
        assert "No meter reading" in text and re.search(r"InfluxDB at http://\S+ does not answer \(\[Errno 111\] "
                                                        r"Connection refused\): the readings wait in the spool", text)
        assert "does not answer" in d["today"]["error"]
        assert c.get(f"{web.url}/api/day?date=2022-06-11", timeout=10).status_code == 503
        # a reading that went stale
        mon = monitoring.Monitoring(s, clock, InfluxStore.from_settings(s.store))
        mon.cycle()
        clock.set(clock.now() + timedelta(seconds=s.managing.stale_after_s + 5))
        d = c.get(f"{web.url}/api/status", timeout=10).json()
        assert d["meter"]["stale"] and any(b.startswith("The meter is stale") for b in d["banners"])
    finally:
        web.stop()


def test_set_password_keeps_a_hash_mode_600_and_web_refuses_without_one(tmp_path, capsys, monkeypatch):
    from gestor.cli import main
    f = write_settings(tmp_path)
    assert main(["web", "--config", str(f)]) == 2
    assert "no web password is set: run 'sudo gestor web --set-password'" in capsys.readouterr().err
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text("mqtt_password: keep-me\n")
    secrets.chmod(0o640)
    import io
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["web", "--set-password", "--config", str(f)]) == 1
    assert "at least 10 characters" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["web", "--set-password", "--config", str(f)]) == 0
    out = capsys.readouterr().out
    assert PASSWORD not in out and "$argon2" not in out
    data = yaml.safe_load(secrets.read_text())
    assert data["mqtt_password"] == "keep-me" and data["web_password_hash"].startswith("$argon2id$")
    assert secrets.stat().st_mode & 0o777 == 0o600  # never group-readable
    s = load_settings(f)
    assert auth.check_password(auth.password_hash(s), PASSWORD)
    assert not auth.check_password(auth.password_hash(s), PASSWORD + "x")


# -- the page in a real browser --------------------------------------------------------------------
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def wh(v: float) -> str:
    """As app.js writes Wh."""
    return f"{'+' if v >= 0 else '−'}{abs(round(v)):,} Wh"


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="chromium and chromium-driver: ./install.sh --test")
def test_the_page_in_chromium_shows_managings_numbers_live_and_its_buttons_work(site):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
              "--force-device-scale-factor=1", "--lang=en-GB"):
        opts.add_argument(a)
    b = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    wait = WebDriverWait(b, 20)
    text = lambda sel: b.find_element(By.CSS_SELECTOR, sel).text.replace("\u00a0", " ")  # noqa: E731 (no-break spaces: as spaces)
    try:
        b.set_window_size(390, 844)
        b.get(f"{site.web.url}/")
        assert "/login" in b.current_url
        b.find_element(By.ID, "password").send_keys(PASSWORD)
        b.find_element(By.ID, "login-button").click()
        st = site.state()
        wait.until(lambda _: text("#period-balance") == wh(st["balance_wh"]))
        assert text("#period-projected") == wh(st["projected_wh"])
        net = site.mon._last.net_w
        assert text("#net-words") == ("Exporting " if net > 0 else "Importing ") + (
            f"{abs(net) / 1000:.1f} kW" if abs(net) >= 1000 else f"{abs(net):.0f} W")
        assert text("#period-label") == "11:00-12:00" and text("#period-left") == "· 40 min left"
        for name, mine in st["loads"].items():
            card = f"#load-{name}"
            assert text(f"{card} .state") == ("ON" if mine["on"] else "OFF")
            assert text(f"{card} .reason") == render_text(mine["reason"], "en")  # managing's reason, in words
            n = site.mgr.books.switches_today[name]
            assert text(f"{card} .switches") == f"{n} switch{'' if n == 1 else 'es'} today"
        assert text("#eur-saved") == f"€{st['eur_saved_today']:.2f}"
        assert text("#banners") == ""
        wait.until(lambda _: len(b.find_elements(By.CSS_SELECTOR, "#today-chart canvas")) == 1)
        wait.until(lambda _: " hours · exported " in text("#history-summary"))
        docs = REPO / "docs"

        def screen(w: int, h: int, mobile: bool, name: str) -> None:  # exactly w x h CSS pixels of page
            b.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                              {"width": w, "height": h, "deviceScaleFactor": 1, "mobile": mobile})
            time.sleep(0.5)  # the charts follow the resize
            b.save_screenshot(str(docs / name))
        screen(390, 844, True, "web-phone.png")
        screen(1280, 1400, False, "web-desktop.png")
        # a phone turned to landscape and back: the page is as wide as the phone again
        for w, h in ((844, 390), (390, 844)):
            b.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                              {"width": w, "height": h, "deviceScaleFactor": 1, "mobile": True})
        # the charts redraw on resize: wait for it (bounded), not for a fixed time
        fits = lambda d: d.execute_script("return document.documentElement.scrollWidth") <= 390 and all(  # noqa: E731
            c.size["width"] <= 390 for c in d.find_elements(By.CSS_SELECTOR, ".chart canvas"))
        try:
            WebDriverWait(b, 10, poll_frequency=0.1).until(fits)
        except Exception:  # noqa: BLE001 -- the assertions below say what does not fit
            pass
        assert b.execute_script("return document.documentElement.scrollWidth") <= 390
        assert all(c.size["width"] <= 390 for c in b.find_elements(By.CSS_SELECTOR, ".chart canvas"))
        # the first and the last hour's bars show whole: the x range has half an hour more each side
        xs = b.execute_script("const u = gestorCharts['today-chart']; "
                              "return [u.scales.x.min, u.scales.x.max, u.data[0][0], u.data[0][u.data[0].length - 1]]")
        assert xs[0] <= xs[2] - 1800 and xs[1] >= xs[3] + 1800
        # the history's date field has a label (axe: "form elements must have labels")
        assert b.execute_script("return [...document.getElementById('history-date').labels].map(l => l.textContent)") \
            == ["Day"]
        b.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        # live: the daemons go on, the page follows without a reload
        site.run(5)
        st = site.state()
        wait.until(lambda _: text("#period-balance") == wh(st["balance_wh"]))
        assert text("#period-left") == "· 35 min left"
        # a command from the page goes through managing's guards
        assert text("#load-pool_pump .state") == "OFF"
        Select(b.find_element(By.CSS_SELECTOR, "#load-pool_pump .mode")).select_by_value("on")
        Select(b.find_element(By.CSS_SELECTOR, "#load-pool_pump .for")).select_by_value("30m")
        b.find_element(By.CSS_SELECTOR, "#load-pool_pump .apply").click()
        wait.until(lambda _: "switched on by hand until 2022-06-11 11:55" in text("#command-result"))
        site.run(1)
        assert site.mgr.loads[1].name == "pool_pump" and site.mgr.loads[1].on is True
        wait.until(lambda _: text("#load-pool_pump .state") == "ON" and
                   "switched on by hand" in text("#load-pool_pump .reason"))
        # the emergency stop, confirmed in the dialog
        b.find_element(By.ID, "stop-button").click()
        b.switch_to.alert.accept()
        wait.until(lambda _: text("#stop-result").startswith("Stopped"))
        assert is_latched(site.s.paths.state_dir)
        site.run(1)
        assert all(ld.on is False for ld in site.mgr.loads)
        wait.until(lambda _: "STOP LATCH SET" in text("#banners") and
                   all(text(f"#load-{ld.name} .state") == "OFF" for ld in site.mgr.loads))
    finally:
        b.quit()


def tls_settings(tmp_path):
    """Settings serving HTTPS with a self-signed certificate for 127.0.0.1 (openssl); returns
    (settings, the certificate's path)."""
    cert, key = tmp_path / "web.crt", tmp_path / "web.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    f = write_settings(tmp_path)
    raw = yaml.safe_load(f.read_text())
    raw["web"].update(tls_cert_file=str(cert), tls_key_file=str(key))
    f.write_text(yaml.safe_dump(raw))
    return load_settings(f), cert


def test_https_with_the_configured_certificate_and_a_secure_cookie(tmp_path):
    s, cert = tls_settings(tmp_path)
    web = Web(s, SimClock(START), auth.hasher().hash(PASSWORD))
    url = f"https://{s.web.listen}"
    try:
        with pytest.raises(requests.exceptions.SSLError):  # not a certificate the system trusts
            requests.get(f"{url}/login", timeout=10)
        c = requests.Session()
        v = str(cert)  # per request: REQUESTS_CA_BUNDLE in the environment would override Session.verify
        token = form_token(c.get(f"{url}/login", timeout=10, verify=v).text)
        r = c.post(f"{url}/login", data={"csrf_token": token, "password": PASSWORD}, allow_redirects=False,
                   timeout=10, verify=v, headers={"Referer": f"{url}/login"})
        assert r.status_code == 303 and "Secure" in r.headers["Set-Cookie"]
        assert c.get(f"{url}/api/status", timeout=10, verify=v).json()["site"] == "test"
        with pytest.raises(requests.exceptions.ConnectionError):  # no plain HTTP on the same port
            requests.get(f"http://{s.web.listen}/login", timeout=5).raise_for_status()
    finally:
        web.stop()


def test_a_day_older_than_the_raw_retention_comes_from_the_forever_summaries(tmp_path, influxd):
    from drivers.store.influx import init_database
    db = f"t_web_{uuid.uuid4().hex[:8]}"
    s = load_settings(write_settings(tmp_path, influxd, db))
    init_database(s.store)
    # what the period_summary continuous query leaves once the raw points have expired
    line = ("period,period_s=3600,site=test last_balance_wh=-12.5,last_loads_wh=800.0,last_complete=true,"
            "last_cost_eur=0.02 1614596400")  # 2021-03-01 11:00 UTC
    r = requests.post(f"http://{influxd.host}:{influxd.port}/write",
                      params={"db": db, "rp": "forever", "precision": "s"}, data=line, timeout=10)
    assert r.status_code == 204, r.text
    web = Web(s, SimClock(START), auth.hasher().hash(PASSWORD))
    try:
        c = web.login()
        d = c.get(f"{web.url}/api/day?date=2021-03-01", timeout=10).json()
        assert [(p["label"], p["balance_wh"], p["without_wh"], p["complete"]) for p in d["periods"]] == \
            [("12:00", -12.5, 787.5, True)]
        assert d["curves"]["t"] == []  # the raw readings are gone: bars only
        assert c.get(f"{web.url}/api/day?date=2021-03-02", timeout=10).json()["periods"] == []
    finally:
        web.stop()
        influxd.client(db).drop_database(db)


def test_a_new_password_ends_the_sessions_opened_with_the_old_one(tmp_path):
    s = load_settings(write_settings(tmp_path))
    web = Web(s, SimClock(START), auth.hasher().hash(PASSWORD))
    c = web.login()
    cookies = c.cookies.copy()
    web.stop()
    web = Web(s, SimClock(START), auth.hasher().hash("another long password"))  # restarted after --set-password
    try:
        assert requests.get(f"{web.url}/api/status", cookies=cookies, timeout=10).status_code == 401
        assert web.login("another long password").get(f"{web.url}/api/status", timeout=10).status_code == 200
    finally:
        web.stop()
