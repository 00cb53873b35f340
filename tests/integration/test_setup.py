"""``gestor setup`` on a private test LAN (tests/netns.py): every device an emulator in its own
network namespace, serving recorded answers (tests/data/setup/, each citing its source), and
gestor setup run on the "pi" host, as a household would run ``sudo gestor setup``.

- the house: a Shelly Pro 3EM announcing itself over mDNS and a Shelly Plus 1; setup finds them
  (every finder running), reads the meter through the shelly_em driver, flips the relay, writes
  the settings from an answers file (nobody edits YAML, the old file kept as a dated copy),
  ``gestor check`` passes, and monitoring on the pi host gets readings into an InfluxDB running
  inside the pi's namespace;
- the other families: a SunSpec Modbus responder (marker at 40000), a Huawei SUN2000 on 6607
  (its model name at 30000), a GoodWe kit answering the
  goodwe library's broadcast search, an SMA Home Manager 2.0 on the multicast: each found, each
  proposing its section by the fixed driver names and keys;
- nothing on the LAN: a clear sentence, exit code 3, nothing written.

Needs root and iproute2 (namespaces); skipped otherwise.
"""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests import netns
from tests.influxd import start_influxd

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not netns.available(), reason="needs root and iproute2 (network namespaces)")]

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
PI = "192.168.77.2"


def start(host: netns.Host, kind: str, *extra: str, module: str = "tests.emulators.lan_devices") -> subprocess.Popen:
    """Start the emulator ``kind`` of ``module`` on ``host`` and wait (at most 30 s) for its "ready"."""
    p = host.popen([sys.executable, "-m", module, kind, "--ip", host.ip, *extra],
                   cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready, _, _ = select.select([p.stdout], [], [], 30)
    line = p.stdout.readline() if ready else ""
    if line.strip() != "ready":
        p.kill()
        p.wait(10)
        raise RuntimeError(f"emulator {kind} did not start: {line!r} {p.stderr.read()[-2000:]}")
    return p


def gestor(host: netns.Host, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return host.run([sys.executable, "-m", "gestor.cli", *args], cwd=ROOT, env=ENV, timeout=timeout)


def setup_argv(settings: Path, answers: Path, *extra: str) -> list[str]:
    return ["setup", "--settings", str(settings), "--answers", str(answers), "--yes", "--no-restart",
            "--check-seconds", "2", "--check-interval", "1", "--mdns-seconds", "3", *extra]


def monitoring_points(pi: netns.Host, settings: Path, tmp_path: Path) -> list[dict]:
    """Start an InfluxDB inside the pi (the settings' default store, 127.0.0.1:8086) and
    monitoring on ``settings`` there; return the ``meter`` points (``net_w``) once some are
    stored (the wait bounded at 90 s: a bound, not an assertion on time). Asserts some came."""
    influx = start_influxd(tmp_path, port=8086, host=pi)
    mon = pi.popen([sys.executable, "-m", "gestor.cli", "monitoring", "--config", str(settings)], cwd=ROOT, env=ENV,
                   stdout=subprocess.DEVNULL, stderr=open(tmp_path / "monitoring.log", "w"))
    try:
        query = ("from influxdb import InfluxDBClient; import json; c = InfluxDBClient('127.0.0.1', 8086, "
                 "database='gestor', timeout=5); print(json.dumps(list(c.query("
                 "'SELECT net_w FROM meter').get_points())))")
        points: list = []
        deadline = time.monotonic() + 90
        while not points and time.monotonic() < deadline and mon.poll() is None:
            time.sleep(2)
            r = pi.run([sys.executable, "-c", query], timeout=30)
            points = json.loads(r.stdout) if r.returncode == 0 and r.stdout.strip() else []
    finally:
        mon.terminate()
        mon.wait(20)
        influx.stop()
    assert points, (tmp_path / "monitoring.log").read_text()[-3000:]
    return points


def test_the_shelly_pro3em_house_setup_to_readings_in_influxdb(tmp_path: Path) -> None:
    old = tmp_path / "settings.yaml"
    old.write_text("site: casa\nmeter: {driver: shelly_em, host: 192.168.1.60}\n"
                   "loads: [{name: old_load, power_w: 500, relay: {driver: simulated}}]\n")
    answers = tmp_path / "answers.yaml"
    answers.write_text(yaml.safe_dump({
        "meter": 1, "sign_ok": True, "relays_ok": True,
        "loads": [{"name": "water_heater", "relay": 1, "power_w": 1500}],
        "tariff": "pvpc",
        "paths": {"state_dir": str(tmp_path / "state"), "run_dir": str(tmp_path / "run")}}))
    with netns.Lan() as lan:
        pi = lan.host("pi", PI)
        em, relay = lan.host("em", "192.168.77.10"), lan.host("relay", "192.168.77.11")
        start(em, "shelly-pro3em", "--phases-w=-400,-300,-500")   # import-positive: exporting 1.2 kW
        start(relay, "shelly-plus1")
        out = gestor(pi, *setup_argv(old, answers))
        assert out.returncode == 0, out.stdout + out.stderr
        assert "Shelly Pro3EM (SPEM-003CEBEU) at 192.168.77.10" in out.stdout
        assert "Shelly Plus1 (SNSW-001X16EU) at 192.168.77.11" in out.stdout
        assert "exporting 1.2 kW" in out.stdout, out.stdout
        assert "water_heater: on and off, confirmed" in out.stdout
        assert "--- " in out.stdout and "+meter:" in out.stdout   # the diff was shown
        written = yaml.safe_load(old.read_text())
        assert written["site"] == "casa"                               # the old file's other keys kept
        assert written["meter"] == {"driver": "shelly_em", "host": "192.168.77.10", "generation": 2}
        assert written["loads"] == [{"name": "water_heater", "power_w": 1500.0,
                                     "relay": {"driver": "shelly", "host": "192.168.77.11", "generation": 2,
                                               "channel": 0}}]
        assert written["prices"] == {"source": "pvpc_public"}
        assert oct(old.stat().st_mode & 0o777) == "0o640"
        copies = list(tmp_path.glob("settings.yaml.*.bak"))
        assert len(copies) == 1 and "old_load" in copies[0].read_text()
        check = gestor(pi, "check", "--config", str(old))
        assert check.returncode == 0, check.stderr
        points = monitoring_points(pi, old, tmp_path)
        assert all(1195 <= p["net_w"] <= 1205 for p in points), points   # export-positive: +1.2 kW


def test_sunspec_huawei_goodwe_and_sma_are_found_and_propose_their_sections(tmp_path: Path) -> None:
    settings = tmp_path / "settings.yaml"
    answers = tmp_path / "answers.yaml"
    answers.write_text(yaml.safe_dump({"meter": "sunspec", "tariff": "pvpc"}))
    with netns.Lan() as lan:
        pi = lan.host("pi", PI)
        ss, gw, sma = lan.host("sunspec", "192.168.77.12"), lan.host("goodwe", "192.168.77.13"), lan.host("sma", "192.168.77.14")
        start(ss, "sunspec")
        start(lan.host("huawei", "192.168.77.15"), "huawei")
        start(gw, "goodwe")
        start(sma, "sma")
        out = gestor(pi, *setup_argv(settings, answers, "--find", "modbus,goodwe,sma"))
    text = out.stdout
    assert "proposes: {driver: sunspec, host: 192.168.77.12, port: 502, unit_id: 1}" in text, text + out.stderr
    assert "proposes: {driver: goodwe, host: 192.168.77.13, port: 8899}" in text, text + out.stderr
    assert "proposes: {driver: sma_em, serial: 3014930442}" in text, text + out.stderr
    assert "proposes: {driver: huawei, host: 192.168.77.15, port: 6607, unit_id: 1}" in text, text + out.stderr
    assert "Huawei SUN2000-5KTL-L1 at 192.168.77.15:6607 unit 1" in text
    assert "GoodWe Solar-WiFi223W0252 at 192.168.77.13" in text
    # this SunSpec responder has the common model only: proposed with a note, its check reads no meter
    assert "note: no SunSpec meter model (201-204, 211-214) on units 1, 240, 126" in text, text
    assert out.returncode == 1 and "gave no reading" in out.stderr, out.stdout + out.stderr
    assert "FAILED: sunspec 192.168.77.12:502: no SunSpec meter found (unit 1: SunSpec models [1]" in text, text
    assert not settings.exists()


def test_nothing_found_is_a_sentence_and_exit_code_3_and_nothing_written(tmp_path: Path) -> None:
    settings = tmp_path / "settings.yaml"
    answers = tmp_path / "answers.yaml"
    answers.write_text("tariff: pvpc\n")
    with netns.Lan() as lan:
        pi = lan.host("pi", PI)
        out = gestor(pi, *setup_argv(settings, answers))
    assert out.returncode == 3, out.stdout + out.stderr
    assert "gestor setup: no meter was found on this machine's networks" in out.stderr
    assert "meters found: 0" in out.stdout
    assert not settings.exists()


def test_interactive_questions_reask_bad_answers_and_a_no_to_the_sign_flips_it(tmp_path: Path) -> None:
    settings = tmp_path / "settings.yaml"
    typed = ["",            # which meter [1]
             "n",           # is the house exporting 1.2 kW now? no: the clamps are the other way round
             "",            # how many loads [1]
             "Termo", "termo",   # a name with a capital is asked again
             "", "",        # which relay [1], which channel [0]
             "abc", "1500",  # a power that is not a number is asked again
             "y",           # did termo switch on?
             "fixed", "0.25", "", "", "",   # tariff, P1 (the rest their defaults)
             "y"]           # write it?
    with netns.Lan() as lan:
        pi = lan.host("pi", PI)
        em, relay = lan.host("em", "192.168.77.10"), lan.host("relay", "192.168.77.11")
        start(em, "shelly-pro3em", "--phases-w=-400,-300,-500")
        start(relay, "shelly-plus1")
        out = pi.run([sys.executable, "-m", "gestor.cli", "setup", "--settings", str(settings), "--no-restart",
                      "--find", "mdns", "--check-seconds", "0", "--mdns-seconds", "3"],
                     cwd=ROOT, env=ENV, timeout=180, input="\n".join(typed) + "\n")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "which meter is the grid meter (1-1) [1]: " in out.stdout
    assert "must be lowercase letters, digits and '_', starting with a letter, at most 32 (got 'Termo'); try again" in out.stdout
    assert "must be the load's power in W, a number > 0 and <= 50000 (got 'abc'); try again" in out.stdout
    assert "sign set to export_positive: the house is importing 1.2 kW" in out.stdout
    written = yaml.safe_load(settings.read_text())
    assert written["meter"]["sign"] == "export_positive"
    assert written["loads"][0]["name"] == "termo" and written["loads"][0]["power_w"] == 1500.0
    assert written["prices"] == {"source": "fixed"}
    assert written["tariff"] == {"import_p1_eur_per_kwh": 0.25, "import_p2_eur_per_kwh": 0.15,
                                 "import_p3_eur_per_kwh": 0.10, "surplus_eur_per_kwh": 0.06}


def test_a_shelly_with_a_password_gets_it_from_secrets_yaml(tmp_path: Path) -> None:
    settings = tmp_path / "settings.yaml"
    answers = tmp_path / "answers.yaml"
    answers.write_text(yaml.safe_dump({"shelly_password": "pw-of-the-3em", "tariff": "pvpc",
                                       "loads": [{"name": "water_heater", "relay": 1, "power_w": 1500}]}))
    with netns.Lan() as lan:
        pi = lan.host("pi", PI)
        em, relay = lan.host("em", "192.168.77.10"), lan.host("relay", "192.168.77.11")
        start(em, "shelly-pro3em", "--password", "pw-of-the-3em")
        start(relay, "shelly-plus1", "--password", "pw-of-the-3em")
        out = gestor(pi, *setup_argv(settings, answers, "--find", "mdns", "--check-seconds", "0"))
        assert out.returncode == 0, out.stdout + out.stderr
    assert "note: it asks for a password: answer shelly_password" in out.stdout
    assert "exporting 1.2 kW" in out.stdout and "water_heater: on and off, confirmed" in out.stdout
    text = settings.read_text()
    assert text.count("password: !secret shelly_password") == 2 and "pw-of-the-3em" not in text
    secrets = tmp_path / "secrets.yaml"
    assert yaml.safe_load(secrets.read_text()) == {"shelly_password": "pw-of-the-3em"}
    assert oct(secrets.stat().st_mode & 0o777) == "0o600"
    check = subprocess.run([sys.executable, "-m", "gestor.cli", "check", "--config", str(settings)], cwd=ROOT, env=ENV,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and "written in clear" not in check.stderr, check.stderr
