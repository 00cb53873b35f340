"""Settings: the shipped example is valid; every mistake is named with key, value and what is allowed."""
import copy
from pathlib import Path
import subprocess
import sys

import pytest
import yaml

from gestor.settings import SettingsError, load_settings, parse_settings
from tests.conftest import EXAMPLE, example_raw

GESTOR = [sys.executable, "-m", "gestor.cli"]


def errors_of(raw):
    with pytest.raises(SettingsError) as e:
        parse_settings(raw, "settings.yaml")
    return e.value.errors


def test_shipped_example_is_valid():
    s = load_settings(EXAMPLE)
    assert s.billing.period_s == 3600 and s.timezone == "Europe/Madrid"
    assert [ld.name for ld in s.loads] == ["water_heater", "pool_pump"]
    assert [ld.power_w for ld in s.loads] == [1000.0, 700.0]
    assert s.meter.driver == "replay" and s.meter.subtract_columns == ["powerL1", "powerL2"]
    assert all(ld.relay.driver == "simulated" for ld in s.loads)


def test_negative_power_names_key_value_and_rule():
    raw = example_raw()
    raw["loads"][1]["power_w"] = -700
    assert errors_of(raw) == ["settings.yaml: loads[1].power_w: must be > 0 (got -700)"]


def test_every_error_is_reported_at_once():
    raw = example_raw()
    raw["loads"][0]["power_w"] = 0
    raw["billing"]["period_s"] = 1800
    raw["meter"]["speed"] = -1
    errs = errors_of(raw)
    assert "settings.yaml: loads[0].power_w: must be > 0 (got 0)" in errs
    assert "settings.yaml: billing.period_s: must be one of 3600 or 900 (got 1800)" in errs
    assert "settings.yaml: meter.speed: must be > 0 (got -1)" in errs


def test_unknown_driver_lists_the_allowed_ones():
    raw = example_raw()
    raw["meter"] = {"driver": "sdm999"}
    (err,) = errors_of(raw)
    assert err.startswith("settings.yaml: meter.driver: unknown driver 'sdm999' (allowed: ")
    assert "replay" in err
    raw = example_raw()
    raw["loads"][0]["relay"]["driver"] = "telepathy"
    assert errors_of(raw)[0].startswith("settings.yaml: loads[0].relay.driver: unknown driver 'telepathy'")


def test_unknown_keys_are_rejected_where_they_are():
    raw = example_raw()
    raw["loads"][0]["powr_w"] = 5
    raw["meter"]["colums"] = "x"
    raw["polcy"] = {}
    errs = errors_of(raw)
    assert "settings.yaml: loads[0].powr_w: unknown key" in errs
    assert "settings.yaml: meter.colums: unknown key" in errs
    assert "settings.yaml: polcy: unknown key" in errs


def test_duplicate_load_names_and_bad_timezone():
    raw = example_raw()
    raw["loads"][1]["name"] = "water_heater"
    raw["timezone"] = "Europe/Madird"
    errs = errors_of(raw)
    assert any("names must be unique (got water_heater twice)" in e for e in errs)
    assert any(e.startswith("settings.yaml: timezone: not a known timezone") and "'Europe/Madird'" in e for e in errs)


def test_hysteresis_needs_sane_thresholds():
    raw = example_raw()
    raw["policy"]["name"] = "hysteresis"
    raw["loads"][0]["on_above_wh"] = -10
    assert errors_of(raw) == ["settings.yaml: loads[0].on_above_wh: must be > off_below_wh (got -10.0 <= 0.0)"]


def test_bad_yaml_names_the_line(tmp_path):
    f = tmp_path / "settings.yaml"
    f.write_text("site: home\nloads: [\n  - oops: : :\n")
    with pytest.raises(SettingsError) as e:
        load_settings(f)
    assert str(f) in str(e.value) and "line " in str(e.value) and "not valid YAML" in str(e.value)


def test_check_command_prints_errors_and_exits_2(tmp_path):
    raw = example_raw()
    raw["loads"][1]["power_w"] = -700
    f = tmp_path / "settings.yaml"
    f.write_text(yaml.safe_dump(raw))
    p = subprocess.run(GESTOR + ["check", "--config", str(f)], capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stderr.strip() == f"{f}: loads[1].power_w: must be > 0 (got -700)"
    assert "Traceback" not in p.stderr


def test_check_command_prints_resolved_settings(tmp_path):
    p = subprocess.run(GESTOR + ["check", "--config", str(EXAMPLE)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    resolved = yaml.safe_load(p.stdout)
    assert resolved["managing"]["stale_after_s"] == 60.0
    assert resolved["loads"][0]["relay"] == {"driver": "simulated", "timeout_s": 3.0, "fault": "none"}


def test_missing_settings_file(tmp_path):
    p = subprocess.run(GESTOR + ["check", "--config", str(tmp_path / "nope.yaml")], capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stderr.strip() == f"{tmp_path / 'nope.yaml'}: cannot read: No such file or directory"


def test_parse_does_not_mutate_input():
    raw = example_raw()
    before = copy.deepcopy(raw)
    parse_settings(raw)
    assert raw == before


# --- settings that would disable a guard, and files that are not settings (issue 10, item 4) ----
UNSAFE = [
    (("managing", "stale_after_s"), float("inf"), "managing.stale_after_s: must be a finite number (got inf)"),
    (("policy", "end_at_wh"), float("nan"), "policy.end_at_wh: must be a finite number (got nan)"),
    (("managing", "interval_s"), 1e9, "managing.interval_s: must be <= 30 (got 1000000000.0)"),
    (("managing", "interval_s"), 65, "managing.interval_s: must be <= 30 (got 65)"),
    (("monitoring", "interval_s"), 65, "monitoring.interval_s: must be <= 30 (got 65)"),
    (("loads", 0, "relay", "timeout_s"), 0, "loads[0].relay.timeout_s: must be > 0 (got 0)"),
    (("loads", 0, "relay", "timeout_s"), float("inf"), "loads[0].relay.timeout_s: must be a finite number (got inf)"),
    (("loads", 0, "relay", "timeout_s"), 25, "loads[0].relay.timeout_s: must be <= 20 (got 25)"),
    (("managing", "stale_after_s"), 5, "managing.stale_after_s: must be > monitoring.interval_s (5 s) (got 5)"),
    (("loads", 1, "min_off_s"), float("-inf"), "loads[1].min_off_s: must be a finite number (got -inf)"),
]


@pytest.mark.parametrize("path,value,want", UNSAFE, ids=[w.split(":")[0] + f"={v}" for _, v, w in UNSAFE])
def test_settings_that_would_disable_safety_are_refused_naming_the_key(tmp_path, path, value, want):
    raw = example_raw()
    node = raw
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    f = tmp_path / "settings.yaml"
    f.write_text(yaml.safe_dump(raw))
    p = subprocess.run(GESTOR + ["check", "--config", str(f)], capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stderr.strip() == f"{f}: {want}", p.stderr
    assert "Traceback" not in p.stderr


def test_relay_timeouts_must_fit_in_the_watchdog(tmp_path):
    raw = example_raw()
    raw["managing"]["interval_s"] = 30
    raw["loads"][0]["relay"]["timeout_s"] = 15
    (err,) = errors_of(raw)
    assert err == ("settings.yaml: loads[0].relay.timeout_s: managing.interval_s + 2 x timeout_s must be < the "
                   "units' WatchdogSec 60 s (got 30 + 2 x 15)")


def test_the_watchdog_limit_is_the_units_one():
    from gestor.settings import WATCHDOG_S
    from tests.conftest import REPO
    for unit in (REPO / "daemons").glob("gestor-m*.service"):  # monitoring and managing (the page has no cycle)
        assert f"WatchdogSec={WATCHDOG_S:g}\n" in unit.read_text(), unit


BAD_FILES = [
    ("duplicate", "site: home\nsite: other\n", "line 2, column 1: not valid YAML: duplicate key 'site' (first on line 1)"),
    ("latin1", None, "line 10: not UTF-8 text (byte 0xf1); save it as UTF-8"),
    ("nested", "a: " + "[" * 5000 + "]" * 5000 + "\n", "nested"),
    ("long", "", "site: must have at most 32 characters (got 100000)"),
]


@pytest.mark.parametrize("kind,text,want", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_a_file_that_is_not_settings_is_one_line_never_a_traceback(tmp_path, kind, text, want):
    f = tmp_path / "settings.yaml"
    if text is None:
        f.write_bytes(EXAMPLE.read_bytes().replace(b"site: home", b"site: home\n# Espa\xf1a", 1))
    else:
        f.write_text(text if kind != "long" else EXAMPLE.read_text().replace("site: home", "site: " + "x" * 100_000))
    p = subprocess.run(GESTOR + ["check", "--config", str(f)], capture_output=True, text=True)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert len(p.stderr.strip().splitlines()) == 1 and len(p.stderr) < 400, p.stderr[:1000]
    assert want in p.stderr


def test_secrets_live_in_secrets_yaml_and_are_never_printed(tmp_path):
    raw = example_raw()
    raw["store"] = {"kind": "influxdb1", "username": "gestor", "password": "!SECRET!"}
    raw["loads"][0]["relay"] = {"driver": "shelly", "host": "192.0.2.1", "password": "!SECRET!"}
    text = yaml.safe_dump(raw).replace("'!SECRET!'", "!secret relay_pw", 1).replace("'!SECRET!'", "!secret db_pw")
    f = tmp_path / "settings.yaml"
    f.write_text(text)
    (tmp_path / "secrets.yaml").write_text("relay_pw: hunter2-relay\ndb_pw: hunter2-db\n")
    s = load_settings(f)
    from drivers import secret
    assert secret(s.loads[0].relay.password) == "hunter2-relay" and secret(s.store.password) == "hunter2-db"
    p = subprocess.run(GESTOR + ["check", "--config", str(f)], capture_output=True, text=True)
    assert p.returncode == 0 and "hunter2" not in p.stdout + p.stderr and "**********" in p.stdout
    # a password written in clear still works, but is never echoed and is warned about
    f.write_text(yaml.safe_dump({**raw, "store": {"kind": "none"}}).replace("'!SECRET!'", "hunter2-clear"))
    p = subprocess.run(GESTOR + ["check", "--config", str(f)], capture_output=True, text=True)
    assert p.returncode == 0 and "hunter2" not in p.stdout + p.stderr
    assert "loads[0].relay.password is written in clear" in p.stderr
    # without the secrets file: one line naming the key; `gestor status` works all the same
    f.write_text(text)
    (tmp_path / "secrets.yaml").unlink()
    p = subprocess.run(GESTOR + ["check", "--config", str(f)], capture_output=True, text=True)
    assert p.returncode == 2 and "loads[0].relay.password: !secret relay_pw:" in p.stderr and "cannot read" in p.stderr
    raw2 = yaml.safe_load(text.replace("!secret relay_pw", "x").replace("!secret db_pw", "x"))
    assert raw2["store"]["kind"] == "influxdb1"
    p = subprocess.run(GESTOR + ["status", "--config", str(f)], capture_output=True, text=True)
    assert p.returncode == 0 and "gestor status" in p.stdout, p.stderr


def test_mqtt_settings_name_the_key_the_value_and_the_rule():
    raw = example_raw()
    raw["mqtt"] = {"enabled": True, "topic_prefix": "gestor/#", "port": 0}
    errs = "\n".join(errors_of(raw))
    assert "mqtt.topic_prefix" in errs and "'gestor/#'" in errs and "without wildcards" in errs
    assert "mqtt.port" in errs
    raw["mqtt"] = {"enabled": True, "password": "x"}
    assert "password needs a username" in "\n".join(errors_of(raw))
    raw["mqtt"] = {"enabled": True, "cert_file": "/etc/gestor/c.pem"}
    assert "cert_file and key_file go together" in "\n".join(errors_of(raw))


def test_relative_files_are_relative_to_the_settings_folder_not_the_working_directory(tmp_path, monkeypatch):
    from gestor.settings import load_settings
    from tests.conftest import settings_file
    key = tmp_path / "abs" / "web.key"
    f = settings_file(tmp_path, prices={"source": "file", "file": "prices.csv"},
                      web={"tls_cert_file": "tls/web.crt", "tls_key_file": str(key)})
    for name in ("prices.csv", "tls/web.crt", "abs/web.key"):  # load_settings checks they are there
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x\n")
    monkeypatch.chdir("/")
    s = load_settings(f)
    assert s.prices.file == tmp_path / "prices.csv"
    assert (s.web.tls_cert_file, s.web.tls_key_file) == (tmp_path / "tls" / "web.crt", key)
    assert yaml.safe_load(f.read_text())["prices"]["file"] == "prices.csv"
