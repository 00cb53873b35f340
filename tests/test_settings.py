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


def _errors_after(changes: dict[tuple, object]) -> list[str]:
    """The errors of the example settings with each ``changes`` key path (keys and indexes) set to
    its value."""
    raw = example_raw()
    for path, value in changes.items():
        node = raw
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
    return errors_of(raw)


def test_every_error_is_reported_at_once():
    errs = _errors_after({("loads", 0, "power_w"): 0, ("billing", "period_s"): 1800, ("meter", "speed"): -1})
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
    errs = _errors_after({("loads", 0, "powr_w"): 5, ("meter", "colums"): "x", ("polcy",): {}})
    assert "settings.yaml: loads[0].powr_w: unknown key" in errs
    assert "settings.yaml: meter.colums: unknown key" in errs
    assert "settings.yaml: polcy: unknown key" in errs


def test_display_names_carry_accents_and_spaces_and_the_identifiers_stay():
    raw = example_raw()
    raw["site_display_name"] = "  Casa de la playa  "
    raw["loads"][1].pop("display_name", None)
    raw["loads"][0]["display_name"] = "Termo eléctrico"
    s = parse_settings(raw, "settings.yaml")
    assert s.site == "home" and s.site_display_name == "Casa de la playa"
    assert (s.loads[0].name, s.loads[0].display_name) == ("water_heater", "Termo eléctrico")
    assert s.loads[1].display_name is None
    raw["loads"][1]["display_name"] = "x" * 41
    raw["loads"][0]["display_name"] = "Termo\nbomba"
    raw["site_display_name"] = ""
    assert errors_of(raw) == [
        "settings.yaml: site_display_name: must have 1 to 40 characters (got '')",
        "settings.yaml: loads[0].display_name: must be printable characters (no control characters or line breaks) "
        "(got 'Termo\\nbomba')",
        f"settings.yaml: loads[1].display_name: must have 1 to 40 characters (got '{'x' * 41}')"]


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
    (("meter", "frozen_after_s"), 12, "meter.frozen_after_s: must be >= 3 x monitoring.interval_s (15 s) (got 12)"),
    (("meter", "frozen_after_s"), 5, "meter.frozen_after_s: must be >= 10 (got 5)"),
    (("meter", "frozen_after_s"), float("inf"), "meter.frozen_after_s: must be a finite number (got inf)"),
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


# --- settings accepted that should not be (issue 23): bounds, types, relays, files, YAML, secrets --
OUT_OF_BOUNDS = [
    (("policy", "margin_wh"), -1e12, "policy.margin_wh: must be >= -50000 (got -1000000000000.0)"),
    (("policy", "on_min_wh"), -1e300, "policy.on_min_wh: must be >= -50000 (got -1e+300)"),
    (("policy", "end_at_wh"), -1e300, "policy.end_at_wh: must be >= -50000 (got -1e+300)"),
    (("policy", "doubt"), 11, "policy.doubt: must be <= 10 (got 11)"),
    (("policy", "time_factor"), 11, "policy.time_factor: must be <= 10 (got 11)"),
    (("managing", "interval_s"), 0.001, "managing.interval_s: must be >= 0.5 (got 0.001)"),
    (("monitoring", "interval_s"), 0.1, "monitoring.interval_s: must be >= 0.5 (got 0.1)"),
    (("monitoring", "interval_s"), True, "monitoring.interval_s: must be a number, not true or false (got True)"),
    (("billing", "period_s"), True, "billing.period_s: must be a number, not true or false (got True)"),
    (("loads", 0, "power_w"), "1000", "loads[0].power_w: must be a number, not text (got '1000')"),
    (("loads", 0, "priority"), 1000, "loads[0].priority: must be <= 100 (got 1000)"),
    (("loads", 0, "max_switches_per_period"), 61, "loads[0].max_switches_per_period: must be <= 60 (got 61)"),
    (("loads", 0, "on_above_wh"), 1e9, "loads[0].on_above_wh: must be <= 50000 (got 1000000000.0)"),
    (("tariff", "surplus_eur_per_kwh"), 11, "tariff.surplus_eur_per_kwh: must be <= 10 (got 11)"),
    (("meter", "speed"), False, "meter.speed: must be a number, not true or false (got False)"),
    (("loads", 0, "relay"), {"driver": "shelly", "host": "192.0.2.1", "max_auto_off_s": 0.5},
     "loads[0].relay.max_auto_off_s: must be >= 60 (got 0.5)"),
    (("loads", 0, "relay"), {"driver": "shelly", "host": "192.0.2.1", "max_auto_off_s": 7201},
     "loads[0].relay.max_auto_off_s: must be <= 7200 (got 7201)"),
    (("loads", 0, "relay"), {"driver": "modbus_coil", "host": "192.0.2.1", "coil": True},
     "loads[0].relay.coil: must be a number, not true or false (got True)"),
    (("loads", 0, "relay"), {"driver": "modbus_coil", "host": "192.0.2.1", "coil": 1, "port": True},
     "loads[0].relay.port: must be a number, not true or false (got True)"),
    (("meter",), {"driver": "shelly_em", "host": "192.0.2.1", "production_channel": 3},
     "meter.production_channel: must be <= 2 (got 3)"),
]


@pytest.mark.parametrize("path,value,want", OUT_OF_BOUNDS, ids=[w.split(" (got")[0] for _, _, w in OUT_OF_BOUNDS])
def test_every_number_has_physical_bounds_and_is_a_number(path, value, want):
    raw = example_raw()
    node = raw
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    assert errors_of(raw) == [f"settings.yaml: {want}"]


def test_legitimate_values_at_the_bounds_pass():
    raw = example_raw()
    raw["policy"].update(margin_wh=-50_000, on_min_wh=50_000, end_at_wh=0, doubt=10, time_factor=10)
    raw["managing"]["interval_s"] = 1  # an int for a float
    raw["monitoring"]["interval_s"] = 0.5
    raw["loads"][0].update(priority=-100, max_switches_per_period=60)
    raw["loads"][0]["relay"] = {"driver": "shelly", "host": "192.0.2.1", "max_auto_off_s": 60}
    s = parse_settings(raw)
    assert s.managing.interval_s == 1.0 and s.loads[0].relay.max_auto_off_s == 60


@pytest.mark.parametrize("a,b", [
    ({"driver": "shelly", "host": "192.0.2.1", "channel": 1}, {"driver": "shelly", "host": "192.0.2.1 ", "channel": 1}),
    ({"driver": "modbus_coil", "host": "gw", "coil": 3}, {"driver": "modbus_coil", "host": "GW", "port": 502, "coil": 3}),
    ({"driver": "modbus_coil", "transport": "rtu", "serial_port": "/dev/ttyUSB0", "coil": 0},
     {"driver": "modbus_coil", "transport": "rtu", "serial_port": "/dev/ttyUSB0", "coil": 0}),
    ({"driver": "gpio", "pin": 17}, {"driver": "gpio", "pin": "BOARD11"}),
], ids=["shelly", "modbus_tcp", "modbus_rtu", "gpio"])
def test_two_loads_on_one_relay_is_an_error_naming_both(a, b):
    raw = example_raw()
    raw["loads"][0]["relay"], raw["loads"][1]["relay"] = a, b
    (err,) = errors_of(raw)
    assert err.startswith("settings.yaml: loads[1].relay: pool_pump is on the same relay as loads[0] water_heater (")
    assert err.endswith("): each load needs its own relay")
    # another channel, coil, unit or pin is another relay
    other = {**b, **({"channel": 2} if "channel" in b else {"coil": 7} if "coil" in b else {"pin": "GPIO27"})}
    raw["loads"][1]["relay"] = other
    parse_settings(raw)


@pytest.mark.parametrize("a,b,other", [
    ({"driver": "victron_ess", "host": "192.0.2.5"}, {"driver": "victron_ess", "host": "192.0.2.5 ", "port": 502,
                                                     "vebus_unit_id": 246}, {"host": "192.0.2.6"}),
    ({"driver": "marstek_venus", "host": "gw", "device_id": 1}, {"driver": "marstek_venus", "host": "GW"},
     {"device_id": 2}),
    ({"driver": "marstek_venus", "transport": "rtu", "serial_port": "/dev/ttyUSB0"},
     {"driver": "marstek_venus", "transport": "rtu", "serial_port": "/dev/ttyUSB0"}, {"serial_port": "/dev/ttyUSB1"}),
    ({"driver": "mypv_elwa", "host": "192.0.2.9", "power_timeout_s": 60},
     {"driver": "mypv_elwa", "host": "192.0.2.9", "power_timeout_s": 30}, {"port": 503}),
    ({"driver": "openevse", "host": "openevse.local"}, {"driver": "openevse", "host": "http://OpenEVSE.local/"},
     {"host": "openevse2.local"}),
    ({"driver": "goe", "host": "192.0.2.30"}, {"driver": "goe", "host": "http://192.0.2.30"}, {"host": "192.0.2.31"}),
    ({"driver": "burst_ssr", "pin": 18, "power_w": 2000}, {"driver": "burst_ssr", "pin": "GPIO18", "power_w": 2000},
     {"pin": 19}),
], ids=["victron_ess", "marstek_tcp", "marstek_rtu", "mypv_elwa", "openevse", "goe", "burst_ssr"])
def test_two_setpoint_devices_on_one_device_is_an_error_naming_both(a, b, other):
    """Issue 32, item 7: two sections on the same Victron were accepted (two loads on one relay
    were refused); both are refused, naming both and the device."""
    raw = example_raw()
    raw["setpoints"] = [{"name": "battery", "device": a}, {"name": "battery2", "device": b}]
    (err,) = errors_of(raw)
    assert err.startswith("settings.yaml: setpoints[1].device: battery2 is the same device as setpoints[0] battery (")
    assert err.endswith("): each load and setpoint device needs a device of its own")
    raw["setpoints"][1]["device"] = {**b, **other}  # another GX, unit, port, charger or pin: another device
    parse_settings(raw)


def test_the_same_victron_error_names_its_address_and_unit():
    raw = example_raw()
    raw["setpoints"] = [{"name": f"b{i}", "device": {"driver": "victron_ess", "host": "192.0.2.5"}} for i in (0, 1)]
    assert errors_of(raw) == ["settings.yaml: setpoints[1].device: b1 is the same device as setpoints[0] b0 "
                              "(victron_ess at 192.0.2.5:502 unit 100): each load and setpoint device needs a device "
                              "of its own"]


def test_a_burst_ssr_on_a_loads_gpio_line_is_refused():
    raw = example_raw()
    raw["loads"][0]["relay"] = {"driver": "gpio", "pin": 17}
    raw["setpoints"] = [{"name": "heater", "device": {"driver": "burst_ssr", "pin": "BOARD11", "power_w": 2000}}]
    (err,) = errors_of(raw)
    assert err.startswith("settings.yaml: setpoints[0].device: heater is the same device as loads[0] water_heater (")


def test_two_simulated_setpoint_devices_are_two_devices():
    raw = example_raw()
    raw["setpoints"] = [{"name": f"b{i}", "device": {"driver": "simulated"}} for i in (0, 1)]
    parse_settings(raw)


@pytest.mark.parametrize("pin,ok", [(22, True), ("GPIO22", True), ("BCM22", True), ("BOARD15", True), ("J8:15", True),
                                    ("WPI3", True), ("banana", False), (28, False), ("BOARD1", False), (True, False)])
def test_gpio_pins_are_checked_as_gpiozero_reads_them(pin, ok):
    raw = example_raw()
    raw["managing"]["stop_button_pin"] = pin
    raw["loads"][0]["relay"] = {"driver": "gpio", "pin": pin}
    if ok:  # each on its own line (the button may not share a relay's: the campaign's finding 04)
        parse_settings({**raw, "managing": {**raw["managing"], "stop_button_pin": "GPIO27"}})
        raw["loads"][0]["relay"] = {"driver": "gpio", "pin": "GPIO27"}
        parse_settings(raw)
        return
    errs = errors_of(raw)
    assert [e.split(":")[1].strip() for e in errs] == ["managing.stop_button_pin", "loads[0].relay.pin"], errs
    assert all("GPIO17, BCM17, BOARD11, J8:11, WPI0" in e for e in errs)


def _fifo(path: Path) -> Path:
    import os
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("kind", ["missing", "fifo", "device", "directory", "duplicate", "alias", "bool"])
def test_a_register_map_is_checked_quickly_and_strictly(tmp_path, kind):
    m = tmp_path / "map.yaml"
    text = {"duplicate": "registers:\n  net_w: {address: 1}\n  net_w: {address: 2}\n",
            "alias": "a: &a {address: 1}\nregisters:\n  net_w: *a\n",
            "bool": "registers:\n  net_w: {address: true}\n"}
    if kind in text:
        m.write_text(text[kind])
    elif kind == "fifo":
        _fifo(m)
    elif kind == "device":
        m = Path("/dev/zero")
    elif kind == "directory":
        m.mkdir()
    raw = example_raw()
    raw["meter"] = {"driver": "modbus_map", "host": "192.0.2.1", "map": str(m)}
    (err,) = errors_of(raw)
    assert err.startswith(f"settings.yaml: meter: map {m}: ")
    want = {"missing": "cannot read: No such file or directory", "fifo": "is a FIFO (named pipe), not a regular file",
            "device": "is a character device, not a regular file", "directory": "is a directory, not a regular file",
            "duplicate": "line 3, column 3: not valid YAML: duplicate key 'net_w' (first on line 2)",
            "alias": "not valid YAML: an alias (*a) is not allowed in settings",
            "bool": "registers.net_w.address: must be a number, not true or false (got True)"}[kind]
    assert want in err


def test_the_shipped_register_maps_are_valid():
    from tests.conftest import REPO
    for m in sorted((REPO / "config" / "meters").glob("*.yaml")):
        raw = example_raw()
        raw["meter"] = {"driver": "modbus_map", "host": "192.0.2.1", "map": str(m)}
        assert parse_settings(raw).meter.resolved.registers["net_w"], m


@pytest.mark.parametrize("key,section,value", [
    ("mqtt.ca_file", "mqtt", {"enabled": True, "tls": True, "ca_file": "ca.pem"}),
    ("mqtt.key_file", "mqtt", {"enabled": True, "tls": True, "cert_file": "c.pem", "key_file": "k.pem"}),
    ("web.tls_cert_file", "web", {"tls_cert_file": "web.crt", "tls_key_file": "web.key"}),
    ("prices.file", "prices", {"source": "file", "file": "prices.csv"}),
])
def test_every_file_the_settings_name_is_checked_by_load_settings(tmp_path, key, section, value):
    from tests.conftest import settings_file
    f = settings_file(tmp_path, **{section: value})
    with pytest.raises(SettingsError) as e:
        load_settings(f)
    assert any(line.startswith(f"{f}: {key}: {tmp_path}") and line.endswith("cannot read: No such file or directory")
               for line in e.value.errors), e.value.errors
    for name in ("ca.pem", "c.pem", "web.crt", "web.key", "prices.csv"):
        (tmp_path / name).write_text("x\n")
    _fifo(tmp_path / "k.pem")
    if key == "mqtt.key_file":  # a FIFO is refused at once, not waited on
        (err,) = (x for x in pytest.raises(SettingsError, load_settings, f).value.errors)
        assert err == f"{f}: mqtt.key_file: {tmp_path / 'k.pem'}: is a FIFO (named pipe), not a regular file"
    else:
        load_settings(f)
    assert load_settings(f, secrets_optional=True)  # gestor status opens none of them


def test_a_settings_file_that_is_a_fifo_or_a_device_is_refused_at_once(tmp_path):
    fifo = _fifo(tmp_path / "settings.yaml")
    for f, what in ((fifo, "a FIFO (named pipe)"), (Path("/dev/zero"), "a character device")):
        p = subprocess.run(GESTOR + ["check", "--config", str(f)], capture_output=True, text=True, timeout=60)
        assert p.returncode == 2 and p.stderr == f"{f}: is {what}, not a regular file\n"


BILLION_LAUGHS = "".join(
    [f'l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n']
    + [f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]\n" for i in range(1, 10)])


def test_an_alias_bomb_is_one_line_at_once(tmp_path):
    f = tmp_path / "settings.yaml"
    f.write_text(BILLION_LAUGHS)
    assert len(BILLION_LAUGHS) < 1800
    p = subprocess.run(GESTOR + ["check", "--config", str(f)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert p.stderr == f"{f}: line 2, column 10: not valid YAML: an alias (*l0) is not allowed in settings: write the value out\n"


@pytest.mark.parametrize("text,want", [
    ("site: home\nwhen: 2022-13-45\n", "line 2, column 7: not valid YAML: cannot read this value (month must be in 1..12)"),
    ("site: " + "9" * 5000 + "\n", "line 1, column 7: not valid YAML: cannot read this value (Exceeds the limit"),
])
def test_a_value_yaml_cannot_build_is_one_line(tmp_path, text, want):
    f = tmp_path / "settings.yaml"
    f.write_text(text)
    with pytest.raises(SettingsError) as e:
        load_settings(f)
    (err,) = e.value.errors
    assert err.startswith(f"{f}: {want}")


def test_a_secret_under_a_number_or_quoted_by_a_validator_is_never_shown(tmp_path):
    text = EXAMPLE.read_text().replace("    power_w: 1000 ", "    power_w: !secret heater_w ", 1)
    text = text.replace("timezone: Europe/Madrid", "timezone: !secret tz", 1)
    text = text.replace("../../shared/data/", str(EXAMPLE.parents[2] / "shared" / "data") + "/", 1)
    f = tmp_path / "settings.yaml"
    f.write_text(text)
    (tmp_path / "secrets.yaml").write_text("heater_w: hunter2-power\ntz: Europe/hunter2-zone\n")
    p = subprocess.run(GESTOR + ["check", "--config", str(f)], capture_output=True, text=True)
    assert p.returncode == 2 and "hunter2" not in p.stdout + p.stderr, p.stderr
    assert p.stderr.splitlines() == [f"{f}: loads[0].power_w: must be a number, not text (got **********)",
                                     f"{f}: timezone: not a known timezone (e.g. Europe/Madrid, Atlantic/Canary, UTC) "
                                     "(got **********)"]


@pytest.mark.parametrize("which,hint", [("settings.yaml", "run it with sudo, or as a member of the gestor group"),
                                        ("secrets.yaml", "run it with sudo")])
def test_permission_denied_says_run_it_with_sudo(tmp_path, monkeypatch, which, hint):
    import gestor.settings.reading as gs  # where the settings read their files
    real = gs.read_small_file

    def denied(path, *a, **k):
        if Path(path).name == which:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(gs, "read_small_file", denied)
    f = tmp_path / "settings.yaml"
    f.write_text(EXAMPLE.read_text().replace("  driver: replay", "  driver: !secret meter_driver", 1))
    (tmp_path / "secrets.yaml").write_text("meter_driver: replay\n")
    with pytest.raises(SettingsError) as e:
        load_settings(f)
    (err,) = e.value.errors
    assert err.endswith(f"cannot read: Permission denied ({hint})") and err.startswith(str(f))
