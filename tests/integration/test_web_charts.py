"""The page's charts as a household reads them (issue 37), in Chromium over the real endpoints:
every value axis carries its unit, money and energy bars are measured from 0, the year has one
label per month, consumption is drawn positive and stacked by source (own solar + grid = the
consumption /api/range gives), the prices have day labels and a "now" line at the Pi's time, the
month is compared with the month before and the same month a year before, the per-load table
fits a 360 px phone, and the live energy flow shows the live state's numbers. Data: the year and
a half test_web_ranges writes to a real InfluxDB, and the daemons of test_web on the house
recording. axe-core stays at 0 violations."""
from __future__ import annotations

import pytest

from tests.integration.test_web import site  # noqa: F401 -- the fixture
from tests.integration.test_web_page import (CHROMEDRIVER, CHROMIUM, axe_violations, browser, euros, grouped, log_in,
                                             text_of)
from tests.integration.test_web_ranges import year_site  # noqa: F401 -- the fixture

needs_chromium = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="chromium and chromium-driver: ./install.sh --test")


def js(b, expr: str):
    return b.execute_script(f"return {expr}")


def ticks(b, chart: str, axis: int = 0) -> list[str]:
    """The labels uPlot drew on an axis (empty ones left out)."""
    return [v for v in js(b, f"gestorCharts['{chart}'].axes[{axis}]._values") or [] if v]


@needs_chromium
def test_the_years_and_months_charts_units_zero_months_stacking_comparison_and_a_360_px_table(year_site):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    web, s, rows = year_site
    api = web.login()
    b = browser("es")
    wait = WebDriverWait(b, 30)
    try:
        b.set_window_size(360, 800)
        b.get(f"{web.url}/login")
        log_in(b, web.url)
        wait.until(lambda _: b.find_element(By.CSS_SELECTOR, '.views [data-view="year"]').is_displayed())
        b.execute_script("const d = document.getElementById('history-date'); d.value = '2025-06-15'; "
                         "d.dispatchEvent(new Event('change'))")
        # the year
        b.find_element(By.CSS_SELECTOR, '.views [data-view="year"]').click()
        wait.until(lambda _: text_of(b, "#range-title") == "2025")
        wait.until(lambda _: js(b, "gestorCharts['range-money'] && gestorCharts['range-money'].data[0].length") == 12)
        r = api.get(f"{web.url}/api/range", params={"view": "year", "date": "2025-06-15"}, timeout=30).json()
        assert js(b, "gestorCharts['history-bars'].axes[1].label") == "kWh"
        assert js(b, "gestorCharts['range-money'].axes[1].label") == "€"
        # money from 0: the axis's minimum is 0 (no month cost less than nothing here)
        costs = [bk[k] for bk in r["buckets"] for k in ("cost_eur", "cost_without_eur")]
        assert min(costs) >= 0
        assert js(b, "gestorCharts['range-money'].scales.y.min") == 0
        assert js(b, "gestorCharts['history-bars'].scales.y.min") == 0
        # one label per month, each month once, in order
        months = ticks(b, "range-money")
        assert len(months) >= 4 and len(set(months)) == len(months), months
        names = ["Ene", "Feb", "Mar", "Abr", "May", "Jun", "Jul", "Ago", "Sept", "Oct", "Nov", "Dic"]
        assert [names.index(m.rstrip(".")) for m in months] == sorted(names.index(m.rstrip(".")) for m in months), months
        # consumption positive and stacked: own solar below, grid on top, together the consumption
        total, own = js(b, "gestorCharts['history-bars'].data[1]"), js(b, "gestorCharts['history-bars'].data[2]")
        for bk, tot, mine in zip(r["buckets"], total, own):
            assert tot >= 0 and mine >= 0
            assert tot == pytest.approx(bk["consumption_wh"], abs=1e-6)
            assert tot - mine == pytest.approx(bk["import_wh"], abs=1e-6)
        # the year's per-load table on a 360 px phone: no number clipped, the table within its card
        wait.until(lambda _: b.find_element(By.ID, "range-loads").is_displayed())
        cells = b.find_elements(By.CSS_SELECTOR, "#range-loads th, #range-loads td")
        assert any(" h " in c.text.replace("\u00a0", " ") for c in cells)
        assert all(js(b, f"(() => {{ const c = document.querySelectorAll('#range-loads th, #range-loads td')[{i}]; "
                         "return c.scrollWidth <= c.clientWidth; })()") for i in range(len(cells)))
        assert js(b, "document.getElementById('range-loads').getBoundingClientRect().right "
                     "<= document.getElementById('history').getBoundingClientRect().right")
        assert js(b, "document.documentElement.scrollWidth") <= 360
        assert axe_violations(b) == [], "year"
        # the month, compared with the month before and June 2024 (nothing stored: "–", not 0)
        b.find_element(By.CSS_SELECTOR, '.views [data-view="month"]').click()
        wait.until(lambda _: text_of(b, "#range-title") == "Junio de 2025")
        wait.until(lambda _: b.find_element(By.ID, "compare").is_displayed())
        lines = [tr.text.replace("\u00a0", " ").replace("\u202f", " ")
                 for tr in b.find_elements(By.CSS_SELECTOR, "#compare tbody tr")]
        assert len(lines) == 3, lines
        for line, day in zip(lines, ("2025-06-15", "2025-05-15")):
            t = api.get(f"{web.url}/api/range", params={"view": "month", "date": day}, timeout=30).json()["totals"]
            assert t["periods"] > 0
            assert f"{grouped(t['consumption_wh'] / 1000, 'es')} kWh" in line, line
            assert euros(t["cost_eur"], "es") in line and euros(t["saved_eur"], "es") in line, line
        assert lines[0].startswith("Junio de 2025") and lines[1].startswith("Mayo de 2025")
        assert lines[2].startswith("Junio de 2024") and lines[2].count("–") == 3, lines[2]
        # the comparison within the 360 px phone too
        assert js(b, "document.getElementById('compare').getBoundingClientRect().right "
                     "<= document.getElementById('history').getBoundingClientRect().right")
        assert all(js(b, f"(() => {{ const c = document.querySelectorAll('#compare td')[{i}]; "
                         "return c.scrollWidth <= c.clientWidth; })()") for i in range(9))
        assert js(b, "gestorCharts['range-money'].scales.y.min") == 0
        assert axe_violations(b) == [], "month"
    finally:
        b.quit()


@needs_chromium
def test_the_prices_have_units_day_labels_and_now_at_the_pis_time(year_site):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    from datetime import datetime
    web, s, rows = year_site
    b = browser("es")
    wait = WebDriverWait(b, 30)
    try:
        b.get(f"{web.url}/login")
        log_in(b, web.url)
        wait.until(lambda _: b.find_element(By.ID, "prices").is_displayed() and js(b, "!!gestorCharts['prices-chart']"))
        assert js(b, "gestorCharts['prices-chart'].axes[1].label") == "€/kWh"
        at = datetime.fromisoformat(js(b, "document.body.dataset.at"))
        assert js(b, "gestorCharts['prices-chart'].gestorNow") == at.timestamp()  # the Pi's clock: SimClock's NOW
        labels = ticks(b, "prices-chart")
        days = [x.split("\n")[1] for x in labels if "\n" in x]
        assert days and days[0].startswith("Jue"), labels  # 1 January 2026 was a Thursday
        assert len(set(days)) == len(days)
    finally:
        b.quit()


@needs_chromium
def test_the_live_energy_flow_shows_the_live_states_numbers(site):  # noqa: F811
    import requests
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    b = browser("es")
    wait = WebDriverWait(b, 30)
    try:
        b.get(f"{site.web.url}/login")
        log_in(b, site.web.url)
        wait.until(lambda _: b.find_element(By.ID, "flow").is_displayed())
        c = requests.Session()
        for k, v in b.get_cookies() and {x["name"]: x["value"] for x in b.get_cookies()}.items():
            c.cookies.set(k, v)
        d = c.get(f"{site.web.url}/api/status", timeout=30).json()  # the clock stands still: the page's state
        m = d["meter"]
        assert m["production_w"] is not None and m["net_w"] is not None

        def w(sel: str) -> float:
            return float(b.find_element(By.ID, sel).get_attribute("data-w"))
        wait.until(lambda _: b.find_element(By.ID, "flow-sun-w").get_attribute("data-w") not in (None, ""))
        assert w("flow-sun-w") == m["production_w"] and w("flow-house-w") == m["consumption_w"]
        assert w("flow-grid-w") == abs(m["net_w"])
        assert w("flow-sun-house-w") == max(0, min(m["production_w"], m["consumption_w"]))
        assert w("flow-loads-w") == sum(ld["power_w"] for ld in d["loads"] if ld["on"] is True)
        assert text_of(b, "#flow-sun-w") == f"{grouped(round(m['production_w']), 'es')} W"
        assert text_of(b, "#flow-grid-dir") == ("a la red" if m["net_w"] > 0 else "de la red")
        assert axe_violations(b) == []
    finally:
        b.quit()
