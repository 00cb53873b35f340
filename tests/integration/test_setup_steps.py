"""``gestor setup``'s steps one by one, on loopback: the answers (a bad one names the key, the
value and what is allowed; at the prompt it is asked again), a Shelly's ``/shelly`` answer told
apart, the GoodWe search answer, the live check through the real drivers against the Shelly
emulators (power and sign in words, the sign flipped, a relay on then off), and the writing (the
same validation as ``gestor check``: a failure writes nothing; secrets to secrets.yaml 0600 as
``!secret``; the units restarted only where systemd runs). Time is a SimClock.
"""
from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from gestor.clock import SimClock
from gestor.settings import SecretRef, load_settings
from gestor.setup import writing
from gestor.setup.answers import Asker, SetupError, parse_power_w, read_answers
from gestor.setup.command import build
from gestor.setup.live import flipped_sign, in_words, read_meter, switch_relay
from gestor.setup.shelly import classify
from gestor.setup.udp import parse_goodwe_answer
from tests.conftest import free_port
from tests.emulators.http_devices import ShellyPro3EM, ShellyRelayDevice

DATA = Path(__file__).resolve().parents[1] / "data" / "setup"
T0 = datetime(2026, 6, 11, 12, 0, tzinfo=timezone.utc)


def fixture(name: str) -> dict:
    d = json.loads((DATA / name).read_text())
    d.pop("_source")
    return d


def test_a_bad_answer_in_the_file_names_the_key_the_value_and_what_is_allowed(tmp_path: Path) -> None:
    f = tmp_path / "answers.yaml"
    f.write_text("loads: [{name: termo, relay: 1, power_w: -700}]\n")
    ask = Asker(read_answers(f), yes=True, say=lambda s: None)
    with pytest.raises(SetupError) as e:
        ask.value("power_w", "its power", None, parse_power_w, ask.answers["loads"][0], "loads[0].power_w")
    assert str(e.value) == "answers: loads[0].power_w: must be the load's power in W, a number > 0 and <= 50000 (got -700)"
    assert e.value.code == 2
    f.write_text("tarif: pvpc\n")
    with pytest.raises(SetupError, match=r"unknown key 'tarif' \(allowed: loads, meter, paths"):
        read_answers(f)


def test_at_the_prompt_a_bad_answer_is_asked_again_with_what_is_allowed() -> None:
    typed, said = iter(["lots", "0", "1500"]), []
    ask = Asker(None, ask=lambda prompt: next(typed), say=said.append)
    assert ask.value("power_w", "its power in W", None, parse_power_w) == 1500.0
    assert said == ["  must be the load's power in W, a number > 0 and <= 50000 (got 'lots'); try again",
                    "  must be the load's power in W, a number > 0 and <= 50000 (got 0); try again"]
    assert Asker(None, ask=lambda prompt: "").value("tariff", "tariff", "pvpc", str) == "pvpc"   # the default


def test_a_shellys_own_answer_tells_a_meter_from_relays() -> None:
    meter = classify("192.168.1.60", fixture("shelly_pro3em_shelly.json"))
    relay = classify("192.168.1.61", fixture("shelly_plus1_shelly.json"))
    assert meter.role == "meter" and meter.section == {"driver": "shelly_em", "host": "192.168.1.60", "generation": 2}
    assert relay.role == "relay" and relay.section == {"driver": "shelly", "host": "192.168.1.61", "generation": 2}
    assert classify("h", {"type": "SHSW-25", "mac": "x", "auth": False}).channels == 2       # Gen1 Shelly 2.5
    assert classify("h", {"type": "SHEM-3"}).section["generation"] == 1                       # Gen1 3EM
    assert classify("h", {"gen": 2, "app": "PlusHT"}) is None                                 # a thermometer
    assert classify("h", "<html>") is None
    assert classify("h", {**fixture("shelly_pro3em_shelly.json"), "auth_en": True}).needs_password
    assert not meter.needs_password


def test_the_recorded_goodwe_search_answer_proposes_its_host() -> None:
    line = [x for x in (DATA / "goodwe_search_answer.txt").read_text().splitlines() if not x.startswith("#")][0]
    f = parse_goodwe_answer(line.encode())
    assert f.section == {"driver": "goodwe", "host": "192.168.3.48", "port": 8899}
    assert f.label == "GoodWe Solar-WiFi223W0252 at 192.168.3.48" and f.extra == "goodwe"
    assert parse_goodwe_answer(b"garbage,,") is None


def test_power_in_words() -> None:
    assert in_words(1234.0) == "exporting 1.2 kW"
    assert in_words(-350.0) == "importing 350 W"
    assert in_words(0.2) == "neither importing nor exporting (0 W)"


def test_the_meter_is_read_through_its_driver_and_its_sign_can_be_flipped(tmp_path: Path) -> None:
    dev = ShellyPro3EM(free_port()).start()
    try:
        dev.phases_w = [-400.0, -300.0, -500.0]   # the Shelly's phases are import-positive: exporting
        clock, said = SimClock(T0), []
        section = {"driver": "shelly_em", "host": f"127.0.0.1:{dev.port}", "generation": 2}
        readings = read_meter(section, clock, 30, 5, said.append, tmp_path, tmp_path)
        assert len(readings) == 7 and clock.now() == T0.replace(second=30)   # 30 s of reads 5 s apart
        assert said[0] == "  read 1: exporting 1.2 kW (net +1200 W, export-positive)"
        flipped = flipped_sign(section)
        assert flipped["sign"] == "export_positive"
        assert read_meter(flipped, clock, 0, 5, said.append, tmp_path, tmp_path)[0].net_w == -1200.0
        dev.fault = "garbage"
        assert read_meter(section, clock, 0, 5, said.append, tmp_path, tmp_path) == []   # a failed read: none, never 0
        assert said[-1].startswith("  read 1: FAILED: ")
    finally:
        dev.stop()
    with pytest.raises(SetupError, match="meter driver 'nosuch' is not in this gestor version"):
        read_meter({"driver": "nosuch"}, clock, 0, 5, said.append, tmp_path, tmp_path)
    with pytest.raises(SetupError, match=r"meter\.generation: Input should be 1 or 2 \(got '3'\)"):
        read_meter({**section, "generation": 3}, clock, 0, 5, said.append, tmp_path, tmp_path)


def test_a_relay_is_switched_on_then_off_with_its_dead_man_timer(tmp_path: Path) -> None:
    dev = ShellyRelayDevice(free_port(), 2).start()
    try:
        section = {"driver": "shelly", "host": f"127.0.0.1:{dev.port}", "generation": 2, "channel": 0}
        clock = SimClock(T0)
        assert switch_relay(section, "water_heater", 1500, True, clock, tmp_path, tmp_path) is True
        assert dev.timers == [60.0]            # the "on" carried the relay's own auto-off
        assert switch_relay(section, "water_heater", 1500, False, clock, tmp_path, tmp_path) is False
        dev.fault = "500"
        with pytest.raises(SetupError, match="shelly relay water_heater"):
            switch_relay(section, "water_heater", 1500, True, clock, tmp_path, tmp_path)
    finally:
        dev.stop()


def _settings(meter: dict, relay: dict) -> dict:
    return build({}, meter, [{"name": "water_heater", "power_w": 1500.0, "relay": relay}],
                 {"prices": {"source": "pvpc_public"}}, None)


def test_settings_that_would_not_be_valid_write_nothing(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("meter: {driver: shelly_em, host: 192.168.1.60}\nloads: [{name: a, power_w: 1, relay: {driver: simulated}}]\n")
    before = path.read_text()
    data = _settings({"driver": "shelly_em", "host": "192.168.1.60", "generation": 2},
                     {"driver": "shelly", "host": "192.168.1.61", "generation": 2, "channel": 0})
    data["monitoring"] = {"interval_s": -5}
    with pytest.raises(SetupError) as e:
        writing.validate(path, writing.settings_text(data, path, T0), None)
    assert e.value.code == 2 and "nothing was written" in str(e.value)
    assert f"{path}: monitoring.interval_s: " in str(e.value)           # gestor check's own line
    assert path.read_text() == before and list(tmp_path.iterdir()) == [path]


def test_a_shelly_password_goes_to_secrets_yaml_and_the_old_file_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("site: casa\nmeter: {driver: shelly_em, host: 192.168.1.60}\n")
    (tmp_path / "secrets.yaml").write_text("web_password_hash: keep-me\n")
    meter = {"driver": "shelly_em", "host": "192.168.1.60", "generation": 2, "password": SecretRef("shelly_password")}
    data = build(yaml.safe_load(path.read_text()), meter,
                 [{"name": "water_heater", "power_w": 1500.0,
                   "relay": {"driver": "shelly", "host": "192.168.1.61", "generation": 2, "channel": 0}}],
                 {"prices": {"source": "pvpc_public"}}, None)
    text = writing.settings_text(data, path, T0)
    secrets = writing.secrets_text(path, {"shelly_password": "s3cret-pw"})
    writing.validate(path, text, secrets)
    copy = writing.write(path, text, secrets, T0)
    assert copy == tmp_path / "settings.yaml.20260611-120000.bak" and "192.168.1.60}" in copy.read_text()
    assert "password: !secret shelly_password" in path.read_text() and "s3cret" not in path.read_text()
    assert yaml.safe_load((tmp_path / "secrets.yaml").read_text()) == {"web_password_hash": "keep-me",
                                                                       "shelly_password": "s3cret-pw"}
    assert oct((tmp_path / "secrets.yaml").stat().st_mode & 0o777) == "0o600"
    assert oct(path.stat().st_mode & 0o777) == "0o640"
    s = load_settings(path)
    assert s.site == "casa" and s.meter.password.get_secret_value() == "s3cret-pw"


def test_the_units_are_restarted_only_where_systemd_runs(tmp_path: Path) -> None:
    said, ran = [], []
    assert writing.restart_units(said.append, tmp_path / "no-systemd", ran.append) is False
    assert said[0].startswith("systemd is not running here: start monitoring and managing yourself") and ran == []
    (tmp_path / "systemd").mkdir()

    class Done:
        returncode = 0
    assert writing.restart_units(said.append, tmp_path / "systemd",
                                 lambda argv, **kw: ran.append(argv) or Done()) is True
    assert ran == [["systemctl", "restart", "gestor-monitoring.service", "gestor-managing.service"],
                   ["systemctl", "try-restart", "gestor-web.service", "gestor-virtual-meter.service"]]


def test_a_missing_extra_is_named_with_its_install_command() -> None:
    said: list[str] = []
    assert writing.extra_missing("goodwe") is False      # the test venv has every extra
    assert writing.extra_missing("nosuchextra") is True and writing.extra_missing(None) is False
    assert writing.install_script() == writing.REPO / "install.sh"   # the checkout's, which has --extra
    ran: list[list[str]] = []
    writing.install_extra("sunspec", said.append, writing.install_script(),
                          run=lambda argv, **k: ran.append(argv) or subprocess.CompletedProcess(argv, 0))
    assert ran == [[str(writing.REPO / "install.sh"), "--extra", "sunspec"]]
    writing.install_extra("sunspec", said.append, None, run=lambda *a, **k: pytest.fail("nothing to run"))
    assert "sudo ./install.sh --extra sunspec" in said[-1]


