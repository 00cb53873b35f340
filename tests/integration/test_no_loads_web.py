"""The web page of a house with a battery alone (issue 33, ``loads: []``), in Debian's headless
chromium: the real gestor web on the real daemons' data (a SimClock, a real InfluxDB), its day,
week, month and year views from the real endpoints, no script error, no axe violation, the
emergency stop idling the battery."""
from __future__ import annotations

import pytest

from gestor.runtime.livestate import is_latched
from tests.integration.test_no_loads import BATTERY
from tests.integration.test_web import CHROMEDRIVER, CHROMIUM, running_site, wh
from tests.integration.test_web_page import axe_violations, browser, log_in, text_of

pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="chromium and chromium-driver: ./install.sh --test")


@pytest.fixture
def battery_site(tmp_path, influxd):
    yield from running_site(tmp_path, influxd, loads=[], setpoints=BATTERY)


def test_the_page_of_a_house_with_a_battery_alone(battery_site):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    site = battery_site
    assert site.s.loads == [] and site.mgr.setpoints.devices[0].taken_wh > 0
    c = site.web.login()
    r = c.post(f"{site.web.url}/api/load/water_heater", json={"mode": "on"}, timeout=10)
    assert r.status_code == 400 and r.json()["error"] == "no load named 'water_heater': the loads are []"
    c.close()
    b = browser("en")
    wait = WebDriverWait(b, 20)
    try:
        b.get(f"{site.web.url}/login")
        log_in(b, site.web.url)
        st = site.state()
        wait.until(lambda _: text_of(b, "#period-balance") == wh(st["balance_wh"]))
        assert b.find_elements(By.CSS_SELECTOR, ".load") == []
        assert text_of(b, "#no-loads") == "No on/off load: gestor drives the devices with a power setpoint alone (battery)."
        wait.until(lambda _: len(b.find_elements(By.CSS_SELECTOR, "#today-chart canvas")) == 1)
        wait.until(lambda _: " hours · exported " in text_of(b, "#history-summary"))
        assert not b.find_element(By.ID, "range-loads").is_displayed()
        assert axe_violations(b) == []
        assert text_of(b, "#range-title") == "Saturday, 11 June 2022"
        for view, title in (("week", "6 – 12 Jun 2022"), ("month", "June 2022"), ("year", "2022")):
            b.find_element(By.CSS_SELECTOR, f'.views [data-view="{view}"]').click()
            wait.until(lambda _: text_of(b, "#range-title") == title)
            wait.until(lambda _: len(b.find_elements(By.CSS_SELECTOR, "#history-bars canvas")) == 1)
            assert not b.find_element(By.ID, "range-loads").is_displayed()
            assert axe_violations(b) == [], view
        errors = [e for e in b.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors
        # the emergency stop: the battery is what it stops
        b.find_element(By.ID, "stop-button").click()
        b.switch_to.alert.accept()
        wait.until(lambda _: text_of(b, "#stop-result").startswith("Stopped"))
        assert "battery" in text_of(b, "#stop-result") and is_latched(site.s.paths.state_dir)
        site.run(1)
        assert site.mgr.setpoints.devices[0].idle
    finally:
        b.quit()
