"""The emergency stop always acts, and fast (issue 23): the real ``stop-loads`` command falls back
to the stop plan managing saved when the settings file cannot be read, switches off the union of
the plan and a valid file, finishes within its total deadline whatever a device does, never lets a
relay's exception through, and says to use sudo when rights are missing."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

import managing
import stop_loads
from drivers import DriverContext
from drivers.relays.simulated import SimulatedRelay, SimulatedRelaySettings
from drivers.store.influx import NullStore
from gestor.clock import WallClock
from gestor.settings import PathsSettings, load_settings
from tests.conftest import REPO, example_raw, free_port, settings_file
from tests.emulators.http_devices import ShellyRelayDevice

LOADS = ("water_heater", "pool_pump")


def relay(tmp: Path, load: str, power_w: float = 1000.0) -> SimulatedRelay:
    return SimulatedRelay(SimulatedRelaySettings(), DriverContext(WallClock(), tmp / "run", tmp), load, power_w)


def start_managing(f: Path) -> Path:
    """managing's start on settings file ``f`` (it saves the stop plan), then every load on, as
    managing would have them. Returns the plan's path."""
    s = load_settings(f)
    m = managing.Managing(s, WallClock(), NullStore())
    m.start()
    m.relays.close(wait=True)
    for ld in s.loads:
        relay(f.parent, ld.name, ld.power_w).set(True)
    return Path(s.paths.state_dir) / stop_loads.PLAN_FILE


# root without the capabilities that let it read and write any file: as a user without rights
NO_RIGHTS = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--"]


def stop(tmp: Path, *args: str, config: Path | None = None, timeout: float = 60, prefix: list[str] = ()):
    """The real command, as a subprocess: ``python -m stop_loads`` (the console script's main()),
    with the default state directory (where it looks for the plan first) under ``tmp``."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), stop_loads.STATE_DIR_ENV: str(tmp / "state"),
           stop_loads.RUN_DIR_ENV: str(tmp / "run")}
    cmd = [*prefix, sys.executable, "-m", "stop_loads", "--config", str(config or tmp / "settings.yaml"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp)


def all_off(tmp: Path) -> bool:
    return all(relay(tmp, n).state() is False for n in LOADS)


def test_the_default_directories_are_the_settings_defaults():
    assert str(PathsSettings().state_dir) == stop_loads.DEFAULT_STATE_DIR
    assert str(PathsSettings().run_dir) == stop_loads.DEFAULT_RUN_DIR


def test_managing_saves_a_root_only_plan_with_the_relays_secrets(tmp_path):
    raw = example_raw()["loads"]
    raw[0]["relay"] = {"driver": "shelly", "host": "192.0.2.7", "password": "s3cret"}
    f = settings_file(tmp_path, loads=raw)
    s = load_settings(f)
    path = stop_loads.save_plan(s)  # as managing's start does (no Shelly to open here)
    assert path == tmp_path / "state" / "stop-plan.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.stat().st_uid == os.geteuid()
    doc = json.loads(path.read_text())
    assert doc["settings"] == str(f.resolve()) and doc["paths"]["run_dir"] == str(tmp_path / "run")
    heater = doc["loads"][0]
    assert heater["name"] == "water_heater" and heater["relay"]["password"] == "s3cret"  # reaches the device
    assert heater["power_w"] == raw[0]["power_w"]
    plan = stop_loads.Plan.load(path)
    assert [t.name for t in plan.targets] == [ld.name for ld in s.loads]
    assert plan.targets[0].relay == s.loads[0].relay  # validated back into the same relay


def test_managing_start_saves_the_plan(tmp_path):
    f = settings_file(tmp_path)
    path = start_managing(f)
    assert [ld["name"] for ld in json.loads(path.read_text())["loads"]] == list(LOADS)


BROKEN = {
    "garbage": b"\x00\xff\xfe not settings \x81",
    "tab": None,        # the example with a tab in its indentation
    "duplicate": None,  # the example with a key twice
    "huge": b"# " + b"x" * 300_000 + b"\n",
}


@pytest.mark.parametrize("kind", ["garbage", "tab", "duplicate", "missing", "huge"])
def test_a_settings_file_that_cannot_be_read_falls_back_to_the_saved_plan(tmp_path, kind):
    f = settings_file(tmp_path)
    start_managing(f)
    text = f.read_text()
    if kind == "missing":
        f.unlink()
    elif kind == "tab":
        f.write_text(text.replace("\n  ", "\n\t", 1))
    elif kind == "duplicate":
        f.write_text(text + "site: twice\nsite: again\n")
    else:
        f.write_bytes(BROKEN[kind])
    assert not all_off(tmp_path)
    p = stop(tmp_path)
    assert p.returncode == 1, p.stderr
    assert all_off(tmp_path)
    assert (tmp_path / "state" / "stop.latch").exists()
    assert "cannot be read: switching off the loads of the stop plan" in p.stderr
    assert "Traceback" not in p.stderr


def test_without_a_plan_an_unreadable_file_still_sets_the_latch_and_says_nothing_was_known(tmp_path):
    p = stop(tmp_path, config=tmp_path / "missing.yaml")
    assert p.returncode == 1
    assert (tmp_path / "state" / "stop.latch").exists()  # in the default state dir ($GESTOR_STATE_DIR here)
    assert "no usable stop plan" in p.stderr and "NO LOAD IS KNOWN" in p.stderr


def _rewrite_plan(tmp: Path, **paths: str) -> None:
    """The saved stop plan with its ``paths`` rewritten (as anyone who can write it could)."""
    plan = tmp / "state" / stop_loads.PLAN_FILE
    doc = json.loads(plan.read_text())
    doc["paths"].update(paths)
    plan.write_text(json.dumps(doc))


def test_a_plan_whose_state_dir_was_rewritten_cannot_move_the_latch(tmp_path):
    """Issue 32, item 4: the latch goes to the default state dir (and the settings'), never
    where a rewritten plan says."""
    f = settings_file(tmp_path)
    start_managing(f)
    _rewrite_plan(tmp_path, state_dir=str(tmp_path / "elsewhere"))
    f.write_bytes(BROKEN["garbage"])
    p = stop(tmp_path)
    assert p.returncode == 1 and all_off(tmp_path), p.stderr
    assert (tmp_path / "state" / "stop.latch").exists(), p.stdout  # where managing looks
    assert not (tmp_path / "elsewhere").exists()  # nothing written where the plan said


def test_a_plan_whose_run_dir_was_rewritten_cannot_move_the_read_back(tmp_path):
    """Issue 32, item 4: the simulated relays' state was read back under the plan's rewritten
    run_dir: ``OK off`` for two loads still on. The read-back stays in the default run dir."""
    f = settings_file(tmp_path)
    start_managing(f)
    _rewrite_plan(tmp_path, run_dir=str(tmp_path / "elsewhere"))
    f.write_bytes(BROKEN["garbage"])
    assert not any(relay(tmp_path, n).state() is False for n in LOADS)
    p = stop(tmp_path)
    left_on = [n for n in LOADS if relay(tmp_path, n).state() is not False]
    oks = [ln.split()[0] for ln in p.stdout.splitlines() if ln.rstrip().endswith("OK off")]
    assert not left_on or not set(left_on) & set(oks), f"OK off printed for {left_on}, still on:\n{p.stdout}"
    assert not left_on, p.stdout
    assert not (tmp_path / "elsewhere").exists()


def test_a_plan_load_whose_name_is_a_path_is_refused_not_written_outside_the_run_dir(tmp_path):
    """A simulated relay's state file is named after its load: a rewritten plan's name
    ``../../escape`` would have root write (and read back) a file outside the run dir."""
    f = settings_file(tmp_path)
    start_managing(f)
    plan = tmp_path / "state" / stop_loads.PLAN_FILE
    doc = json.loads(plan.read_text())
    doc["loads"].append({**doc["loads"][0], "name": "../../escape"})
    plan.write_text(json.dumps(doc))
    f.write_bytes(BROKEN["garbage"])
    p = stop(tmp_path)
    assert p.returncode == 1 and all_off(tmp_path), p.stderr
    assert not list(tmp_path.rglob("escape*")), list(tmp_path.rglob("escape*"))
    assert "load ../../escape NOT CONFIRMED OFF" in p.stderr and "a name is never a path" in p.stderr


def test_a_rewritten_plan_beside_valid_settings_moves_nothing_either(tmp_path):
    """With a readable file the latch goes to the settings' state dir and the default one; the
    plan's loads are read back under the settings' run_dir."""
    f = settings_file(tmp_path)
    start_managing(f)
    _rewrite_plan(tmp_path, state_dir=str(tmp_path / "elsewhere"), run_dir=str(tmp_path / "elsewhere"))
    p = stop(tmp_path)
    assert p.returncode == 0 and all_off(tmp_path), p.stdout + p.stderr
    assert (tmp_path / "state" / "stop.latch").exists() and not (tmp_path / "elsewhere").exists()
    assert stop(tmp_path, "--release").returncode == 0
    assert not (tmp_path / "state" / "stop.latch").exists()


def test_a_valid_file_and_the_plan_are_switched_off_together(tmp_path):
    """A load removed from the file while managing still runs the old one is switched off too."""
    f = settings_file(tmp_path)
    start_managing(f)
    raw = yaml.safe_load(f.read_text())
    raw["loads"] = raw["loads"][1:]  # water_heater removed (managing still runs it)
    f.write_text(yaml.safe_dump(raw))
    p = stop(tmp_path)
    assert p.returncode == 0, p.stderr
    assert all_off(tmp_path)
    table = {ln.split()[0]: ln for ln in p.stdout.splitlines()[1:]}
    assert "(saved plan)" in table["water_heater"] and "OK off" in table["water_heater"]
    assert "(saved plan)" not in table["pool_pump"]
    assert "switched off too: water_heater" in p.stderr


def test_a_dripping_relay_cannot_hold_stop_loads_past_its_deadline(tmp_path):
    dev = ShellyRelayDevice(free_port()).start()
    dev.output = True
    dev.fault, dev.drip_s = "drip", 1.0  # one byte a second: never a socket timeout
    try:
        raw = example_raw()["loads"]
        raw[0]["relay"] = {"driver": "shelly", "host": f"127.0.0.1:{dev.port}", "timeout_s": 20}
        f = settings_file(tmp_path, loads=raw)
        relay(tmp_path, "pool_pump").set(True)
        t0 = time.monotonic()
        p = stop(tmp_path, "--deadline-s", "3", "--timeout-s", "20")
        took = time.monotonic() - t0
    finally:
        dev.stop()
    assert took < 10, f"stop-loads took {took:.1f} s with a 3 s deadline"
    assert p.returncode == 1
    assert "load water_heater NOT CONFIRMED OFF" in p.stderr and "deadline" in p.stderr
    assert relay(tmp_path, "pool_pump").state() is False  # the other load was not held up
    assert "Traceback" not in p.stderr


def test_a_relay_that_raises_oserror_is_that_loads_error_not_an_exception(tmp_path):
    """A simulated relay whose state file cannot be written (a read-only /run/gestor under
    gestor-web.service; here a directory where the file should be, which stops root too)."""
    s = load_settings(settings_file(tmp_path))
    (tmp_path / "run" / "sim-relays" / "water_heater.json").mkdir(parents=True)
    relay(tmp_path, "pool_pump").set(True)
    results = {r.load: r for r in stop_loads.stop_all(s.loads, s.paths)}
    assert not results["water_heater"].confirmed and "water_heater.json" in results["water_heater"].error
    assert results["pool_pump"].confirmed


def test_the_web_pages_stop_answers_with_the_table_when_a_relay_raises(tmp_path):
    from gestor.web import auth
    from gestor.web.app import create_app
    s = load_settings(settings_file(tmp_path))
    (tmp_path / "run" / "sim-relays" / "water_heater.json").mkdir(parents=True)
    app = create_app(s, WallClock(), auth.hasher().hash("pw"), b"k" * 32)
    app.config["WTF_CSRF_ENABLED"] = False
    c = app.test_client()
    assert c.post("/login", data={"password": "pw"}).status_code == 303
    r = c.post("/api/stop", json={"confirm": "STOP"})
    body = r.get_json()
    assert r.status_code == 502 and body["ok"] is False, r.data[:300]
    rows = {x["load"]: x for x in body["loads"]}
    assert rows["pool_pump"]["confirmed"] and not rows["water_heater"]["confirmed"]
    assert "water_heater" in body["error"]


def test_the_web_pages_stop_switches_off_the_saved_plans_relays_too(tmp_path):
    """The page reads the settings file; managing may still run an older one: a load only the
    stop plan has is switched off as stop-loads does."""
    from gestor.web import auth
    from gestor.web.app import create_app
    f = settings_file(tmp_path)
    start_managing(f)
    raw = yaml.safe_load(f.read_text())
    raw["loads"] = raw["loads"][1:]  # water_heater removed from the file, managing still runs it
    f.write_text(yaml.safe_dump(raw))
    app = create_app(load_settings(f), WallClock(), auth.hasher().hash("pw"), b"k" * 32)
    app.config["WTF_CSRF_ENABLED"] = False
    c = app.test_client()
    assert c.post("/login", data={"password": "pw"}).status_code == 303
    r = c.post("/api/stop", json={"confirm": "STOP"})
    assert r.status_code == 200, r.data[:300]
    assert {x["load"] for x in r.get_json()["loads"]} == {"water_heater", "pool_pump"}
    assert all_off(tmp_path)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_without_rights_it_says_to_use_sudo(tmp_path):
    """The settings file, the plan and the state dir as an installed system has them, run by a
    user who may read none of them (root without its file capabilities)."""
    f = settings_file(tmp_path)
    plan = start_managing(f)
    for path, mode in ((f, 0o000), (plan, 0o000), (tmp_path / "state", 0o555)):
        path.chmod(mode)
    p = stop(tmp_path, prefix=NO_RIGHTS)
    assert p.returncode == 1, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if "Permission denied" in ln]
    assert any("cannot read: Permission denied" in ln for ln in lines)       # the settings file
    assert any("stop plan" in ln for ln in lines) and any("STOP LATCH NOT SET" in ln for ln in lines)
    assert lines and all("sudo" in ln for ln in lines), lines
    assert "Traceback" not in p.stderr


def test_release_with_a_directory_as_the_latch_is_one_line(tmp_path):
    settings_file(tmp_path)
    latch = tmp_path / "state" / "stop.latch"
    (latch / "something").mkdir(parents=True)
    (tmp_path / "state").chmod(0o555)  # cannot be moved aside either (root without its file rights)
    p = stop(tmp_path, "--release", prefix=NO_RIGHTS if shutil.which("setpriv") and os.geteuid() == 0 else [])
    assert "Traceback" not in p.stderr
    assert p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1 and "stop latch" in p.stderr, p.stderr


# --- the invariant, on generated settings files ------------------------------------------------
def _valid_variant(kind: str) -> bytes:
    raw = yaml.safe_load((REPO / "config" / "settings.yaml").read_text())
    raw.update(yaml.safe_load(_BASE.read_text()))
    if kind == "one load":
        raw["loads"] = raw["loads"][:1]
    elif kind == "renamed":
        raw["loads"][0]["name"] = "boiler"
    elif kind == "no answer":
        raw["loads"][1]["relay"] = {"driver": "simulated", "fault": "no_answer"}
    elif kind == "invalid key":
        raw["tyop"] = 1
    return yaml.safe_dump(raw).encode()


_BASE: Path  # the test's settings file as managing started with it
_PLAN: str   # the stop plan managing saved at its start


CONTENTS = st.one_of(
    st.none(),                                                    # missing
    st.binary(max_size=600),                                       # anything
    st.text(max_size=400).map(str.encode),                         # broken (or accidental) YAML
    st.integers(257, 400).map(lambda k: b"a: 1\n" + b"#" * (k * 1024)),  # too big
    st.sampled_from(["same", "one load", "renamed", "no answer", "invalid key"]).map(_valid_variant),
)


@pytest.fixture
def started(tmp_path):
    global _BASE
    f = settings_file(tmp_path)
    global _PLAN
    start_managing(f)
    _PLAN = (tmp_path / "state" / stop_loads.PLAN_FILE).read_text()
    _BASE = tmp_path / "base.yaml"
    _BASE.write_text(yaml.safe_dump({k: v for k, v in yaml.safe_load(f.read_text()).items()
                                     if k in ("meter", "paths", "store")}))
    return f


@hsettings(max_examples=25, derandomize=True, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(content=CONTENTS, moved=st.sampled_from([(), ("state_dir",), ("run_dir",), ("state_dir", "run_dir")]))
def test_whatever_the_settings_file_every_plan_load_ends_off_or_is_named(started, content, moved):
    """Whatever the settings file, and whatever directories the plan was rewritten to name
    (issue 32, item 4): every plan load ends off or is named, the latch is set where managing
    looks, and nothing is written where the plan says."""
    f, tmp = started, started.parent
    plan = tmp / "state" / stop_loads.PLAN_FILE
    plan.write_text(_PLAN)
    if moved:
        _rewrite_plan(tmp, **{k: str(tmp / "elsewhere") for k in moved})
    for n in LOADS:
        relay(tmp, n).set(True)
    (tmp / "state" / "stop.latch").unlink(missing_ok=True)
    if content is None:
        f.unlink(missing_ok=True)
    else:
        f.write_bytes(content)
    p = stop(tmp, "--deadline-s", "10")
    assert "Traceback" not in p.stderr and p.returncode in (0, 1), p.stderr
    latched = (tmp / "state" / "stop.latch").exists()
    left_on = [n for n in LOADS if relay(tmp, n).state() is not False]
    if p.returncode == 0:
        assert latched and not left_on
    else:
        for n in left_on:
            assert f"load {n} NOT CONFIRMED OFF" in p.stderr
    assert not left_on  # the plan's relays all answer here: the plan is always switched off
    assert latched
    assert not (tmp / "elsewhere").exists()


def test_a_plan_whose_format_is_true_is_not_a_plan(tmp_path):
    """``"format": true`` passed as format 1 (True == 1 in Python)."""
    import pytest
    p = tmp_path / "stop-plan.json"
    p.write_text(json.dumps({"format": True, "paths": {"state_dir": "/x", "run_dir": "/y"}, "loads": []}))
    with pytest.raises(stop_loads.PlanError):
        stop_loads.read_plan(p)
