"""``gestor setup`` from the page (issue 34; docs/site/en/setup.md, "From the page"): the real gestor
web over HTTP on loopback (cheroot, a SimClock), owner only with CSRF on every POST; the steps on
the Shelly Pro 3EM and relay emulators (tests/emulators/http_devices.py: the JSON shapes of
Shelly's API docs); the proposal applied by ``gestor setup --apply-proposal`` into a tmp settings
dir (the old copy kept, ``gestor check`` passes); malicious proposals refused with a sentence;
the page in Spanish and Catalan with no English left; axe-core with no violations on it."""
from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
import yaml

from gestor.clock import SimClock
from gestor.settings import load_settings
from gestor.setup.proposal import PROPOSAL_FILE, RESULT_FILE, apply_proposal
from gestor.web import auth
from tests.conftest import free_port
from tests.emulators.http_devices import ShellyPro3EM, ShellyRelayDevice
from tests.emulators.lan_devices import fixture
from tests.integration.test_web import CHROMEDRIVER, CHROMIUM, PASSWORD, Web, write_settings

T0 = datetime(2026, 6, 11, 12, 0, tzinfo=timezone.utc)


def _answers_shelly(base: type, fixture_name: str, **changes: object) -> type:
    """``base`` (an emulator of tests/emulators/http_devices.py) answering ``/shelly`` with the
    recorded device info of tests/data/setup (its source in the file, ``changes`` applied), as
    lan_devices does."""
    info = {**fixture(fixture_name), **changes}

    class Device(base):  # type: ignore[valid-type,misc]
        def route(self, path: str, q: dict[str, str]) -> tuple[int, object]:
            return (200, info) if path == "/shelly" else super().route(path, q)
    return Device


@pytest.fixture
def page(tmp_path):
    """gestor web (no store) on a SimClock, a Shelly Pro 3EM exporting 1.2 kW and a Shelly Plus 1
    relay, both on loopback; yields (web, settings path, clock, meter, relay)."""
    f = write_settings(tmp_path)
    clock = SimClock(T0)
    meter = _answers_shelly(ShellyPro3EM, "shelly_pro3em_shelly.json")(free_port()).start()
    relay = _answers_shelly(ShellyRelayDevice, "shelly_plus1_shelly.json")(free_port()).start()
    meter.phases_w = [-400.0, -300.0, -500.0]        # import-positive phases: exporting 1.2 kW
    web = Web(load_settings(f), clock, auth.hasher().hash(PASSWORD))
    try:
        yield web, f, clock, meter, relay
    finally:
        web.stop()
        meter.stop()
        relay.stop()


def _find(c: requests.Session, web: Web, meter, relay) -> dict:
    r = c.post(f"{web.url}/setup/api/find", json={"finders": [], "hosts": [f"127.0.0.1:{meter.port}",
                                                                          f"127.0.0.1:{relay.port}"]}, timeout=20)
    assert r.status_code == 200, r.text
    return r.json()


def test_only_the_owner_with_the_csrf_token_reaches_the_setup_steps(page):
    web, _f, _clock, meter, relay = page
    anon = requests.Session()
    assert anon.get(f"{web.url}/setup", timeout=10).status_code == 401
    r = anon.post(f"{web.url}/setup/api/find", json={"finders": []}, timeout=10)
    assert r.status_code == 401 and relay.requests == [] and meter.requests == []
    c = web.login()
    bad = requests.Session()
    bad.cookies.update(c.cookies)
    for headers in ({}, {"X-CSRFToken": "forged"}):
        r = bad.post(f"{web.url}/setup/api/relay", json={"relay": 0, "channel": 0, "on": True}, headers=headers,
                     timeout=10)
        assert r.status_code == 400 and "forged or expired request" in r.json()["error"]
    assert relay.requests == []                         # nothing was switched
    assert c.get(f"{web.url}/setup", timeout=10).status_code == 200
    assert 'href="/setup"' in c.get(f"{web.url}/", timeout=10).text    # the header's link


def test_the_steps_on_emulated_devices_and_the_proposal_applied_as_root_would(page, tmp_path):
    web, f, clock, meter, relay = page
    c = web.login()
    d = _find(c, web, meter, relay)
    assert [m["driver"] for m in d["meters"]] == ["shelly_em"] and d["relays"][0]["channels"] == 1
    # the meter read through its driver: 3 readings on the page's clock, the sign flipped on request
    r = c.post(f"{web.url}/setup/api/read", json={"meter": 0, "flipped": False}, timeout=20).json()
    assert r == {"net_w": [1200.0, 1200.0, 1200.0], "errors": []}
    r = c.post(f"{web.url}/setup/api/read", json={"meter": 0, "flipped": True}, timeout=20).json()
    assert r["net_w"][0] == -1200.0
    meter.fault = "garbage"
    r = c.post(f"{web.url}/setup/api/read", json={"meter": 0}, timeout=20).json()
    assert r["net_w"] == [] and len(r["errors"]) == 3      # a failed read is no reading, never 0
    meter.fault = None
    # each relay on (with its dead-man timer) then off, on the user's click
    assert c.post(f"{web.url}/setup/api/relay", json={"relay": 0, "channel": 0, "on": True}, timeout=20).json() == {"on": True}
    assert relay.timers == [60.0]
    assert c.post(f"{web.url}/setup/api/relay", json={"relay": 0, "channel": 0, "on": False}, timeout=20).json() == {"on": False}
    r = c.post(f"{web.url}/setup/api/relay", json={"relay": 0, "channel": 1, "on": True}, timeout=20)
    assert r.status_code == 400 and r.json()["error"] == "channel must be from 0 to 0"
    r = c.post(f"{web.url}/setup/api/read", json={"meter": 3}, timeout=20)
    assert r.status_code == 400 and "meter must be the number of a device found (0 to 0)" == r.json()["error"]
    # the questions and the diff, validated as gestor check does
    body = {"meter": 0, "flipped": False, "tariff": "fixed",
            "prices": {"p1": 0.2, "p2": 0.12, "p3": 0.08, "surplus": 0.05},
            "loads": [{"name": "water_heater", "relay": 0, "channel": 0, "power_w": 1500}]}
    r = c.post(f"{web.url}/setup/api/propose", json=body, timeout=20)
    assert r.status_code == 200, r.text
    diff = r.json()["diff"]
    assert f"+  host: 127.0.0.1:{meter.port}" in diff and "+  driver: shelly_em" in diff and r.json()["proposal"] is None
    bad = c.post(f"{web.url}/setup/api/propose", json={**body, "loads": [{**body["loads"][0], "power_w": -5}]}, timeout=20)
    assert bad.status_code == 400 and "must be the load's power in W, a number > 0" in bad.json()["error"]
    before = f.read_text()
    r = c.post(f"{web.url}/setup/api/propose", json={**body, "apply": True}, timeout=20).json()
    proposal = Path(r["proposal"])
    assert proposal.name == PROPOSAL_FILE and proposal.parent.name == "setup"
    assert oct(proposal.stat().st_mode & 0o777) == "0o640" and f.read_text() == before   # the page wrote no settings
    assert c.get(f"{web.url}/setup/api/result", timeout=10).json() == {"pending": True}
    # root's side (gestor-setup-apply.service), run directly: no systemd here
    said: list[str] = []
    when = clock.now()                                      # the page's reads moved the simulated clock
    assert apply_proposal(proposal, f, clock, said.append, restart=False) == 0
    assert not proposal.exists()
    copy = f.with_name(f"settings.yaml.{when:%Y%m%d-%H%M%S}.bak")
    assert copy.read_text() == before
    s = load_settings(f)                                    # gestor check passes
    assert s.meter.driver == "shelly_em" and s.meter.host == f"127.0.0.1:{meter.port}"
    assert [(ld.name, ld.power_w, ld.relay.channel) for ld in s.loads] == [("water_heater", 1500.0, 0)]
    old = yaml.safe_load(before)
    assert s.paths.state_dir == Path(old["paths"]["state_dir"]) and s.tariff.import_p1_eur_per_kwh == 0.2
    res = c.get(f"{web.url}/setup/api/result", timeout=10).json()
    assert res["ok"] is True and res["message"] == f"written: {f} (the old one kept as {copy})"


def test_a_device_that_asks_a_password_is_left_to_the_command_line(page):
    web, _f, _clock, _meter, relay = page
    locked = _answers_shelly(ShellyPro3EM, "shelly_pro3em_shelly.json", auth_en=True)(free_port()).start()
    try:
        c = web.login()
        d = _find(c, web, locked, relay)
        assert d["meters"][0]["needs_password"] is True
        r = c.post(f"{web.url}/setup/api/propose", json={"meter": 0, "tariff": "pvpc", "apply": True, "loads": [
            {"name": "water_heater", "relay": 0, "channel": 0, "power_w": 1500}]}, timeout=20)
        assert r.status_code == 400 and r.json()["error"] == ("a device asks for a password: run sudo gestor setup "
                                                              "on the Pi for it")
        assert c.get(f"{web.url}/setup/api/result", timeout=10).json() == {}    # no proposal written
    finally:
        locked.stop()


def _apply(tmp_path: Path, f: Path, text: str) -> tuple[int, dict]:
    d = tmp_path / "state" / "setup"
    d.mkdir(parents=True, exist_ok=True)
    (d / PROPOSAL_FILE).write_text(text)
    code = apply_proposal(d / PROPOSAL_FILE, f, SimClock(T0), lambda _s: None, restart=False)
    return code, json.loads((d / RESULT_FILE).read_text())


GOOD = {"meter": {"driver": "shelly_em", "host": "192.168.1.60", "generation": 2}, "tariff": "pvpc",
        "loads": [{"name": "water_heater", "power_w": 1500,
                   "relay": {"driver": "shelly", "host": "192.168.1.61", "generation": 2, "channel": 0}}]}


@pytest.mark.parametrize("change, sentence", [
    ({"meter": {"driver": "replay", "path": "/etc/shadow"}},
     "proposal: meter.path: '/etc/shadow' is not allowed (allowed: the keys driver, host, port, unit_id, serial, "
     "timeout_s, generation, sign); nothing was written"),
    ({"meter": {"driver": "replay"}},
     "proposal: meter.driver: 'replay' is not allowed (allowed: shelly_em, envoy, sunspec, huawei, goodwe, sma_em, "
     "fronius, wibeee); nothing was written"),
    ({"store": {"kind": "influxdb1", "host": "evil"}},
     "proposal: store: {'kind': 'influxdb1', 'host': 'evil'} is not allowed (allowed: the keys meter, loads, tariff, "
     "prices: the rest is kept from the current settings); nothing was written"),
    ({"paths": {"state_dir": "/etc"}}, "proposal: paths: "),
    ({"web": {"listen": "0.0.0.0:80"}}, "proposal: web: "),
    ({"loads": [{"name": "x", "power_w": 10, "relay": {"driver": "simulated", "state_dir": "/etc"}}]},
     "proposal: loads[0].relay.state_dir: '/etc' is not allowed"),
    ({"loads": [{"name": "x", "power_w": 10, "relay": {"driver": "gpio", "pin": 4}}]},
     "proposal: loads[0].relay.pin: 4 is not allowed"),
    ({"meter": {"driver": "shelly_em", "host": "a/../../x"}}, "proposal: meter.host: 'a/../../x' is not allowed"),
    ({"meter": {"driver": "shelly_em", "host": {"nested": 1}}}, "proposal: meter.host: "),
])
def test_a_malicious_proposal_is_refused_with_a_sentence_and_nothing_written(tmp_path, change, sentence):
    f = write_settings(tmp_path)
    before = f.read_text()
    code, res = _apply(tmp_path, f, yaml.safe_dump({**GOOD, **change}, sort_keys=False))
    assert code == 2 and res["ok"] is False and res["message"].startswith(sentence), res["message"]
    assert f.read_text() == before and sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("settings")) == [
        "settings.yaml"]
    assert not (tmp_path / "state" / "setup" / PROPOSAL_FILE).exists()   # taken: not applied again


def test_links_planted_in_the_state_dir_are_never_followed(tmp_path):
    f = write_settings(tmp_path)
    before = f.read_text()
    d = tmp_path / "state" / "setup"
    d.mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_text(yaml.safe_dump(GOOD))
    os.symlink(victim, d / PROPOSAL_FILE)                 # root must not read through it
    os.symlink(victim, d / RESULT_FILE)                   # nor write through it
    assert apply_proposal(d / PROPOSAL_FILE, f, SimClock(T0), lambda _s: None, restart=False) == 1
    assert victim.read_text() == yaml.safe_dump(GOOD) and f.read_text() == before
    res = json.loads((d / RESULT_FILE).read_text())       # the link replaced by a file of root's
    assert not (d / RESULT_FILE).is_symlink() and "not a link, is needed" in res["message"]
    os.link(victim, d / PROPOSAL_FILE)                    # a second name of another file
    assert apply_proposal(d / PROPOSAL_FILE, f, SimClock(T0), lambda _s: None, restart=False) == 1
    assert "not a regular file with one link" in json.loads((d / RESULT_FILE).read_text())["message"]
    (d / PROPOSAL_FILE).write_bytes(b"meter: " + b"x" * 20000)
    assert apply_proposal(d / PROPOSAL_FILE, f, SimClock(T0), lambda _s: None, restart=False) == 2
    assert "more than 16384 bytes" in json.loads((d / RESULT_FILE).read_text())["message"]
    assert f.read_text() == before
    os.rename(d, tmp_path / "state" / "elsewhere")
    os.symlink(tmp_path / "state" / "elsewhere", d)      # the folder itself a link
    assert apply_proposal(d / PROPOSAL_FILE, f, SimClock(T0), lambda _s: None, restart=False) == 1


def test_gestor_setup_apply_proposal_on_the_command_line(tmp_path, capsys):
    from gestor.cli import main
    f = write_settings(tmp_path)
    d = tmp_path / "state" / "setup"
    d.mkdir(parents=True)
    (d / PROPOSAL_FILE).write_text(yaml.safe_dump(GOOD))
    assert main(["setup", "--apply-proposal", str(d / PROPOSAL_FILE), "--settings", str(f), "--no-restart"]) == 0
    assert load_settings(f).meter.host == "192.168.1.60"
    assert "written: " in capsys.readouterr().out


# names, the same in every language: the program, the tariff periods, protocols and brands, the switch
ENGLISH_OK = {"gestor", "P1", "P2", "P3", "mDNS", "Modbus TCP", "mDNS (Shelly, Enphase)",
              "Modbus TCP 502/6607 (SunSpec, Huawei)", "·", "Español", "Català", "English"}


def _words(html: str) -> set[str]:
    """The page's words: its text between tags and the script's words (the i18n JSON's values)."""
    data = json.loads(html.split('id="setup-i18n">')[1].split("</script>")[0])
    body = re.sub(r"<script.*?</script>", "", html, flags=re.S)
    texts = {t.strip() for t in re.findall(r">([^<>]+)<", body)} | set(re.findall(r'(?:aria-label|placeholder)="([^"]+)"', body))
    return {t for t in texts | set(data.values()) if t and not re.fullmatch(r"[\d\s./:,]+", t)}


@pytest.mark.parametrize("lang", ["es", "ca"])
def test_the_setup_page_in_spanish_and_catalan_has_no_english_left(page, lang):
    web = page[0]
    c = web.login()
    en = _words(c.get(f"{web.url}/setup?lang=en", timeout=10).text)
    there = _words(c.get(f"{web.url}/setup?lang={lang}", timeout=10).text)
    left = {w for w in there & en if w not in ENGLISH_OK}
    assert left == set(), left
    assert len(there) > 40


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="chromium and chromium-driver: ./install.sh --test")
def test_the_setup_page_has_no_axe_violations_light_and_dark(page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.integration.test_web_page import axe_violations, browser, dark, log_in
    web, _f, _clock, meter, relay = page
    b = browser("es")
    try:
        b.get(f"{web.url}/")
        log_in(b, web.url)
        WebDriverWait(b, 20).until(lambda _: "/login" not in b.current_url)
        b.get(f"{web.url}/setup")
        assert b.find_element(By.TAG_NAME, "html").get_attribute("lang") == "es"
        for box in b.find_elements(By.CSS_SELECTOR, 'input[name="finder"]'):
            box.click()                                   # no LAN finder: the emulators by address
        b.find_element(By.ID, "hosts").send_keys(f"127.0.0.1:{meter.port}, 127.0.0.1:{relay.port}")
        b.find_element(By.ID, "find").click()
        WebDriverWait(b, 20).until(lambda _: b.find_elements(By.CSS_SELECTOR, 'input[name="meter"]'))
        b.find_element(By.ID, "read").click()
        WebDriverWait(b, 20).until(lambda _: "exportando 1,2 kW" in b.find_element(By.ID, "readings").text)
        b.find_element(By.ID, "add-load").click()
        b.find_element(By.ID, "show-diff").click()
        WebDriverWait(b, 20).until(lambda _: b.find_element(By.ID, "diff").text
                                   or b.find_element(By.ID, "apply-status").text)
        for on in (False, True):
            dark(b, on)
            found = axe_violations(b)
            assert found == [], "\n".join(found)
    finally:
        b.quit()
