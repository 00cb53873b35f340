"""Settings: the shipped example is valid; every mistake is named with key, value and what is allowed."""
import copy
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
