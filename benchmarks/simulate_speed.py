"""Speed and memory of ``gestor simulate`` on a synthetic year of 10 s samples (3.15 M rows, the
three recorded files repeated, each shifted to follow the previous one):

* loading it from CSV (``ReplayData.load``: pyarrow in a helper process), the file written once to
  a temporary folder;
* each policy in one process and split at local midnights over ``--jobs`` processes;
* a 20-value sweep of ``policy.end_at_wh`` over the year with ``--jobs`` processes (``--sweep``);
* peak RSS of this process, which loads the year from its CSV as ``gestor simulate`` does (another
  process writes the CSV).

Goal (issue 11): a year in <= 5 s wall for time_to_consume and steady_surplus, peak RSS <= 250 MB.

    .venv/bin/python benchmarks/simulate_speed.py [--policies time_to_consume,steady_surplus] [--jobs 2] [--sweep]

The code measured is the repository's ``src``, or the tree in ``GESTOR_SRC`` (e.g. the compiled
core that ``./install.sh --build-compiled`` leaves in ``.build/compiled/src``).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = Path(os.environ.get("GESTOR_SRC") or ROOT / "src").resolve()
sys.path[:0] = [str(SRC)]

import yaml  # noqa: E402

from drivers.meters.replay import ReplayData  # noqa: E402
from gestor.settings import parse_settings  # noqa: E402
from gestor.sim.simulate import Prices, replay_settings_for, simulate  # noqa: E402

FILES = ["house-2022-06-11_13.csv", "house-2022-05-08_12.csv", "winter-2022-02-01_08.csv"]


def concatenated(n_rows: int | None = None) -> ReplayData:
    """The three files one after the other (each shifted to start 10 s after the previous one
    ends), repeated until ``n_rows`` samples."""
    parts = [ReplayData.load(replay_settings_for(ROOT.parent / "shared" / "data" / f)) for f in FILES]
    t, p, c, n = array("d"), array("d"), array("d"), array("d")  # as ReplayData.load keeps them
    t_next = parts[0].t[0]
    while True:
        for d in parts:
            shift = t_next - d.t[0]
            t.extend(round((x + shift) * 1e6) / 1e6 for x in d.t)  # µs, as the meters stamp
            p.extend(d.production_w or [0.0] * len(d.t))
            c.extend(d.consumption_w)
            n.extend(d.net_w)
            t_next = t[-1] + 10.0
            if n_rows is not None and len(t) >= n_rows:
                for col in (t, p, c, n):
                    del col[n_rows:]  # in place: no second copy of a year
                return ReplayData(Path("year"), t, p, c, n)
        if n_rows is None:
            return ReplayData(Path("three-files"), t, p, c, n)


def write_csv(data: ReplayData, path: Path) -> None:
    """The data in the house-* format (naive UTC timestamps, powerP, powerC, powerL1/2 zero)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    def arrow(col: array) -> pa.Array:  # array('d') → Arrow float64, no copy
        return pa.Array.from_buffers(pa.float64(), len(col), [None, pa.py_buffer(col)])
    t_us = pc.round(pc.multiply(arrow(data.t), 1e6)).cast(pa.int64()).cast(pa.timestamp("us"))
    zero = pa.nulls(len(data.t), pa.float64()).fill_null(0.0)
    table = pa.table({"timestamp": pc.strftime(t_us, "%Y-%m-%d %H:%M:%S"), "powerC": arrow(data.consumption_w),
                      "powerP": arrow(data.production_w), "powerL1": zero, "powerL2": zero})
    pcsv.write_csv(table, path)


LOAD = """
import resource, sys, time
from drivers.meters.replay import ReplayData
from gestor.sim.simulate import replay_settings_for
a = time.perf_counter()
d = ReplayData.load(replay_settings_for(sys.argv[1]))
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork and exec, so a child would report
# the benchmark's own RSS (the year in memory) when it was started
hwm = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024
reader = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the pyarrow helper (replay_reader)
print(f"{time.perf_counter() - a:.2f} s, {len(d.t):,} rows, peak RSS {hwm:.0f} MB (the CSV reader process: {reader:.0f} MB)")
"""


def hwm_mb() -> float:
    """Peak RSS of this process, MB (VmHWM: ru_maxrss of the children would count the CSV writer)."""
    return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--policies", default="time_to_consume,steady_surplus,hysteresis,min_on_time")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--sweep", action="store_true", help="also a 20-value sweep over the year")
    ap.add_argument("--battery", action="store_true",
                    help="also each policy with a simulated 5 kWh / 2.5 kW battery after the loads (one process)")
    ap.add_argument("--write-year", type=Path, metavar="CSV", help=argparse.SUPPRESS)  # the helper's job
    args = ap.parse_args()
    if args.write_year:
        write_csv(concatenated(3_153_600), args.write_year)
        return
    example = ROOT / "config" / "settings.yaml"
    raw = yaml.safe_load(example.read_text())
    import gestor.core.control
    compiled = Path(gestor.core.control.__file__).suffix != ".py"
    print(f"core: {'compiled with mypyc' if compiled else 'pure Python'} ({Path(gestor.core.control.__file__).parent})")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "year.csv"
        # written by another process: this one holds what gestor simulate holds, nothing more
        subprocess.run([sys.executable, __file__, "--write-year", str(path)], check=True, env=env)
        out = subprocess.run([sys.executable, "-c", LOAD, str(path)], check=True, env=env, capture_output=True, text=True)
        print(f"load the year's CSV ({path.stat().st_size / 1e6:.0f} MB), alone: {out.stdout.strip()}", flush=True)
        a = time.perf_counter()
        year = ReplayData.load(replay_settings_for(path))
        days = (year.t[-1] - year.t[0]) / 86400
        print(f"year: {len(year.t):,} samples, {days:.0f} days; loaded in {time.perf_counter() - a:.2f} s, "
              f"peak RSS {hwm_mb():.0f} MB", flush=True)
        for name in args.policies.split(","):
            s = parse_settings({**raw, "policy": {**raw["policy"], "name": name}}, str(example), example)
            line = f"{name:16s}"
            for jobs in (1, args.jobs):
                a = time.perf_counter()
                r = simulate(year, s, Prices(s), jobs=jobs)
                dt = time.perf_counter() - a
                if jobs == 1:
                    base = dt
                line += f"  jobs {jobs}: {dt:6.2f} s ({r.parts} part{'s' if r.parts > 1 else ''})"
            print(f"{line}  {len(year.t) / dt:>9,.0f} samples/s, {r.totals.switches} switches", flush=True)
            if args.battery:
                bat = [{"name": "battery", "reserve_wh_per_h": 0, "device": {
                    "driver": "simulated", "kind": "battery", "capacity_wh": 5000, "max_charge_w": 2500,
                    "max_discharge_w": 2500}}]
                sb = parse_settings({**raw, "policy": {**raw["policy"], "name": name}, "setpoints": bat},
                                    str(example), example)
                a = time.perf_counter()
                simulate(year, sb, Prices(sb), jobs=1)
                db = time.perf_counter() - a
                print(f"{'':16s}  with a battery, jobs 1: {db:6.2f} s  ({db / base:.2f}x the same policy without, "
                      f"jobs 1)", flush=True)
        print(f"peak RSS of this process (the year loaded as gestor simulate loads it, the simulations): "
              f"{hwm_mb():.0f} MB", flush=True)
        if args.sweep:
            a = time.perf_counter()
            subprocess.run([sys.executable, "-m", "gestor.cli", "simulate", str(path), "--config", str(example),
                            "--sweep", "policy.end_at_wh=-190:0:10", "--jobs", str(args.jobs)],
                           check=True, stdout=subprocess.DEVNULL, env=env)
            print(f"sweep of 20 values of policy.end_at_wh over the year, --jobs {args.jobs}: "
                  f"{time.perf_counter() - a:.1f} s (CLI, loading included)", flush=True)


if __name__ == "__main__":
    main()
