"""How fast the emergency stop acts: the real ``stop-loads`` command (the venv's console script,
a new process each run) on the shipped example's two simulated relays, both on, measured from
just before the process is started to

* **first command**: the first relay's state file written by the driver (its mtime, on the wall
  clock read just before the start: both CLOCK_REALTIME);
* **done**: the process has exited (table printed, latch set).

    .venv/bin/python benchmarks/stop_speed.py [--runs 20]

Three cases: ``plan`` (managing's stop plan in the default state directory, as installed: the
command acts on it before reading the settings file), ``settings`` (no plan: it must read and
validate the settings file first), ``broken`` (the settings file is not YAML: the plan alone).
Prints the median and the maximum of each, in ms. Numbers only: nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

LOADS = ("water_heater", "pool_pump")


def setup(tmp: Path) -> Path:
    """The shipped example under ``tmp`` (store none) and the stop plan managing would save."""
    import stop_loads
    from gestor.settings import load_settings
    raw = yaml.safe_load((ROOT / "config" / "settings.yaml").read_text())
    raw["paths"] = {"state_dir": str(tmp / "state"), "run_dir": str(tmp / "run")}
    raw["store"] = {"kind": "none"}
    raw["meter"] = {"driver": "replay", "path": str(ROOT / "config" / "settings.yaml")}  # never opened here
    f = tmp / "settings.yaml"
    f.write_text(yaml.safe_dump(raw))
    stop_loads.save_plan(load_settings(f))
    return f


def relays_on(tmp: Path) -> None:
    from drivers import DriverContext
    from drivers.relays.simulated import SimulatedRelay, SimulatedRelaySettings
    from gestor.clock import WallClock
    for n in LOADS:
        SimulatedRelay(SimulatedRelaySettings(), DriverContext(WallClock(), tmp / "run", tmp), n, 1000).set(True)


def one(tmp: Path, f: Path, env: dict[str, str]) -> tuple[float, float]:
    """(first command, done) in ms for one run of the command."""
    relays_on(tmp)
    (tmp / "state" / "stop.latch").unlink(missing_ok=True)
    files = [tmp / "run" / "sim-relays" / f"{n}.json" for n in LOADS]
    t0_ns = time.time_ns()
    m0 = time.monotonic()
    p = subprocess.run([str(ROOT / ".venv" / "bin" / "stop-loads"), "--config", str(f)], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    done_ms = (time.monotonic() - m0) * 1000
    if p.returncode not in (0, 1) or "Traceback" in p.stderr:
        raise SystemExit(f"stop-loads failed ({p.returncode}): {p.stderr}")
    first_ms = (min(x.stat().st_mtime_ns for x in files) - t0_ns) / 1e6
    return first_ms, done_ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        f = setup(tmp)
        good = f.read_text()
        base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        modes = {  # bytecode cached (its own cache, warmed by a first run) as an installed system has it,
            # and none at all (PYTHONDONTWRITEBYTECODE=1: every module of src/ compiled at each start)
            "bytecode cached": {**base, "PYTHONPYCACHEPREFIX": str(tmp / "pycache")},
            "no bytecode": {**base, "PYTHONDONTWRITEBYTECODE": "1"},
        }
        print(f"stop-loads, {a.runs} runs each, two simulated relays; ms from the process start (median / max)")
        for mode, env in modes.items():
            env = {**env, "GESTOR_STATE_DIR": str(tmp / "state")}
            one(tmp, f, env)  # warm the page cache (and the bytecode cache)
            print(f" {mode}:")
            for case in ("plan", "settings", "broken"):
                if case == "settings":
                    os.rename(tmp / "state" / "stop-plan.json", tmp / "plan.aside")
                if case == "broken":
                    os.rename(tmp / "plan.aside", tmp / "state" / "stop-plan.json")
                    f.write_text("loads: [\n\tnot yaml")
                if case == "settings":
                    one(tmp, f, env)  # the settings' modules' bytecode too
                runs = [one(tmp, f, env) for _ in range(a.runs)]
                first, done = [r[0] for r in runs], [r[1] for r in runs]
                print(f"  {case:9s} first command {statistics.median(first):6.1f} / {max(first):6.1f}   "
                      f"done {statistics.median(done):6.1f} / {max(done):6.1f}")
                f.write_text(good)


if __name__ == "__main__":
    main()
