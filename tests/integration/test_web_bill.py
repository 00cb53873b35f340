"""The page's month view of the bill (gestor.web.bill_page) over HTTP on a real InfluxDB 1.x
(tests/influxd.py) holding June 2025's ``period``, ``distributor`` and ``reconcile`` points:
the bills with and without gestor and from the distributor's curve (the hand-worked figures of
tests/integration/test_bill_month.py: 16.70, 16.83, 16.72 EUR), the hours that differ, the clock
offset and ratio of the ``reconcile`` point, the alert banner, Spanish and Catalan, the session
as the other data views, and axe-core in Chromium."""
from __future__ import annotations

import uuid
from contextlib import contextmanager
from datetime import datetime

import pytest

from gestor.clock import SimClock
from gestor.web import auth
from tests.integration.test_web import PASSWORD

from zoneinfo import ZoneInfo

MAD = ZoneInfo("Europe/Madrid")
NOW = datetime(2025, 7, 10, 12, tzinfo=MAD)
CUPS = "ES0021000000000000AA"


def _write(s, pts) -> None:
    from drivers.store.influx import InfluxStore
    store = InfluxStore.from_settings(s.store).open()
    store.write(pts)
    assert store.flush(30)
    store.close()


def june(s) -> None:
    """June 2025 as test_bill_month.py's (two priced hours, worked by hand), one more hour both
    sides agree on, and the month's ``reconcile`` point with its alert up."""
    from drivers.store.influx import point
    noon, eve, morning = (datetime(2025, 6, 2, h, tzinfo=MAD) for h in (12, 20, 9))
    tags = {"site": s.site, "period_s": "3600"}
    _write(s, [point("period", tags, {"balance_wh": 1000.0, "loads_wh": 2000.0, "import_eur_per_kwh": 0.15,
                                      "surplus_eur_per_kwh": 0.05, "complete": True}, noon),
               point("period", tags, {"balance_wh": -4000.0, "loads_wh": 0.0, "import_eur_per_kwh": 0.20,
                                      "surplus_eur_per_kwh": 0.05, "complete": True}, eve),
               point("period", tags, {"balance_wh": 0.0, "loads_wh": 0.0, "import_eur_per_kwh": 0.15,
                                      "surplus_eur_per_kwh": 0.05, "complete": True}, morning)])
    dtags = {"site": s.site, "cups": CUPS, "method": "real"}
    _write(s, [point("distributor", dtags, {"import_wh": 0.0, "surplus_wh": 950.0}, noon),
               point("distributor", dtags, {"import_wh": 4100.0, "surplus_wh": 0.0}, eve),
               point("distributor", dtags, {"import_wh": 0.0, "surplus_wh": 0.0}, morning),
               point("reconcile", {"site": s.site, "cups": CUPS, "month": "2025-06"},
                     {"hours": 3.0, "estimated_hours": 0.0, "import_diff_wh": 100.0, "surplus_diff_wh": -50.0,
                      "ratio": 1.0204, "offset_s": 62.0, "alert": True}, datetime(2025, 6, 1, tzinfo=MAD))])


@contextmanager
def serving(tmp, influxd, extra: list[str] = ()):
    """gestor web (its clock in July 2025) over a new database holding June and ``extra`` points;
    yields (web, settings), then stops it and drops the database."""
    from tests.integration.test_web import Web
    from tests.integration.test_web_ranges import site_settings
    db = f"t_bill_{uuid.uuid4().hex[:8]}"
    s = site_settings(tmp, influxd, db)
    june(s)
    if extra:
        _write(s, extra)
    web = Web(s, SimClock(NOW), auth.hasher().hash(PASSWORD))
    try:
        yield web, s
    finally:
        web.stop()
        c = influxd.client(db)
        c.drop_database(db)
        c.close()


@pytest.fixture(scope="module")
def bill_site(tmp_path_factory, influxd):
    with serving(tmp_path_factory.mktemp("billpage"), influxd) as site:
        yield site


def test_the_months_bills_hours_and_reconcile_point_as_json(bill_site):
    web, s = bill_site
    api = web.login()
    v = api.get(f"{web.url}/api/bill", params={"month": "2025-06"}, timeout=30).json()
    b = v["bills"]
    assert set(b) == {"with_gestor", "without", "distributor"}
    assert (b["with_gestor"]["total_eur"], b["without"]["total_eur"], b["distributor"]["total_eur"]) == (16.70, 16.83, 16.72)
    assert [ln["label"] for ln in b["with_gestor"]["lines"]][:2] == ["Energy term", "Compensation"]
    c = v["compare"]
    assert (c["hours"], c["estimated_hours"], c["only_gestor"], c["only_distributor"]) == (3, 0, 0, 0)
    assert [h["local"] for h in c["differ"]] == ["2025-06-02 12:00 CEST", "2025-06-02 20:00 CEST"]
    assert c["totals"]["import_diff_wh"] == 100.0 and c["totals"]["surplus_diff_wh"] == -50.0
    assert c["alerts"] and c["alerts"][0].startswith("import: the distributor bills 4100 Wh")  # 2 % + 1.5 Wh < 100 Wh
    assert (v["reconcile"]["offset_s"], v["reconcile"]["ratio"], v["reconcile"]["alert"]) == (62.0, 1.0204, True)
    assert v["last_reconcile"]["month"] == "2025-06"
    # a month without any point: a sentence for the bill, nothing to compare, no point of its own
    v = api.get(f"{web.url}/api/bill", params={"month": "2025-05"}, timeout=30).json()
    assert v["bills"] == {} and "no 'period' points in InfluxDB for 2025-05" in v["bills_error"]
    assert v["compare"] == {"error": None, "hours": 0} and v["reconcile"] is None
    assert v["last_reconcile"]["alert"] is True  # the banner follows the newest point whatever the month


@pytest.mark.parametrize("lang, words", [
    ("es", ("Con gestor", "Desde la curva de la distribuidora", "16,70\xa0€", "+62 s", "1,0204",
            "no coinciden con las de gestor")),
    ("ca", ("Amb gestor", "Des de la corba de la distribuïdora", "16,70\xa0€", "+62 s", "1,0204",
            "no coincideixen amb les de gestor")),
    ("en", ("With gestor", "From the distributor's curve", "€16.70", "+62 s", "1.0204",
            "disagree with gestor's beyond the bound")),
])
def test_the_page_in_spanish_catalan_and_english_with_the_alert_banner(bill_site, lang, words):
    web, s = bill_site
    api = web.login()
    r = api.get(f"{web.url}/bill", params={"month": "2025-06", "lang": lang}, timeout=30)
    assert r.status_code == 200
    html = r.text
    assert f'<html lang="{lang}">' in html
    for w in words:
        assert w in html, (lang, w)
    assert 'id="reconcile-alert"' in html and 'id="rec-table"' in html
    assert "<script>" not in html and "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert '/bill"' in api.get(f"{web.url}/", timeout=30).text  # the link in the page's header


def test_no_banner_once_the_newest_reconcile_point_agrees(tmp_path, influxd):
    """The banner follows the newest ``reconcile`` point: July's, written later, agrees."""
    from drivers.store.influx import point
    july = point("reconcile", {"site": "test", "cups": CUPS, "month": "2025-07"},
                 {"hours": 200.0, "ratio": 1.001, "offset_s": 3.0, "alert": False}, datetime(2025, 7, 1, tzinfo=MAD))
    with serving(tmp_path, influxd, [july]) as (web, s):
        html = web.login().get(f"{web.url}/bill", params={"month": "2025-06", "lang": "en"}, timeout=30).text
        assert 'id="reconcile-alert"' not in html
        assert "+62 s" in html  # June's own offset still shown in its month


def test_the_session_as_the_other_views_and_a_bad_month_is_a_sentence(bill_site):
    import html

    import requests
    web, s = bill_site
    r = requests.get(f"{web.url}/bill", allow_redirects=False, timeout=10)
    assert r.status_code == 302 and r.headers["Location"].endswith("/login")
    assert requests.get(f"{web.url}/api/bill", timeout=10).status_code == 401
    api = web.login()
    for bad in ("2025-13", "June", "2025-08", "1999-12"):
        r = api.get(f"{web.url}/api/bill", params={"month": bad, "lang": "en"}, timeout=10)
        assert r.status_code == 400
        assert r.json()["error"] == f"month {bad!r} must be YYYY-MM, from 2000-01 to 2025-07"
    r = api.get(f"{web.url}/bill", params={"month": "2025-13", "lang": "es"}, timeout=10)
    assert r.status_code == 400 and "el mes '2025-13' debe ser AAAA-MM, de 2000-01 a 2025-07" in html.unescape(r.text)
    assert api.get(f"{web.url}/api/bill", timeout=30).json()["month"] == "2025-07"  # default: this month


def test_the_month_view_in_chromium_light_and_dark_with_no_axe_violations(bill_site):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.integration.test_web_page import CHROMEDRIVER, CHROMIUM, axe_violations, browser, dark, log_in, text_of
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium and chromium-driver: ./install.sh --test")
    web, s = bill_site
    b = browser("es")
    try:
        b.get(f"{web.url}/login")
        log_in(b, web.url)
        b.get(f"{web.url}/bill?month=2025-06")
        WebDriverWait(b, 20).until(lambda _: b.find_elements(By.ID, "bill-table"))
        assert text_of(b, "#total-with_gestor").replace("\xa0", " ") == "16,70 €"
        assert "no coinciden" in text_of(b, "#reconcile-alert")
        for on in (False, True):
            dark(b, on)
            assert axe_violations(b) == [], ("dark" if on else "light")
        # picking another month shows it (bill.js; the Show button without a script)
        b.execute_script("const m = document.getElementById('month'); m.value = '2025-05'; "
                         "m.dispatchEvent(new Event('change'))")
        WebDriverWait(b, 20).until(lambda _: b.find_elements(By.ID, "bill-none"))
        assert "month=2025-05" in b.current_url
    finally:
        b.quit()
