#!/usr/bin/env python3
"""The "this machine" column of vm-check's measurements (issue 36): the same measurements as
tools/vm-check-measure.sh takes in the VM, taken here, where there is no systemd.

  nice -n 10 .venv/bin/python tools/host_measure.py [--soak-min 30] [--out measure.tsv]

In a new temporary directory it starts InfluxDB 1.x on a free loopback port as the tests do
(tests/influxd.py: Debian's influxd, config/influxd-local.conf.in), writes the example settings as
``install.sh`` installs them (the bundled recording replayed at the real time of day, simulated
relays) with their paths in that directory, the store at that InfluxDB and the page on a free
loopback port, and starts ``gestor monitoring`` and ``gestor managing`` from the repository's
.venv (this checkout's src/ first on PYTHONPATH) as plain processes; ``gestor web`` later, after
``gestor web --set-password``, so that its year view is measured cold. The measurements are
tools/vm_measure.py's commands, with its options pointing at these processes and files, with the
VM's durations; measure.tsv gets vm_measure.py's rows (the VM's quantity names, so
``tools/vm_check.py measures`` lines the runs up), rewritten after each step. Every process it
started is stopped on exit, Ctrl-C and SIGTERM included. Exit 0 when every step ran, 1 when one
failed (measure.tsv has what was measured), 2 for bad arguments.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE), str(REPO)]
import vm_check  # noqa: E402
import vm_measure  # noqa: E402

BIN = REPO / ".venv" / "bin"
DATA = REPO.parent / "shared" / "data"
CSV, DAY = "house-2022-06-11_13.csv", "2022-06-12"   # as vm-check-measure.sh
CPU_S, PATH_POINTS, PATH_TIMEOUT_S = 120, 6, 240       # as vm-check-measure.sh
LABELS = ("influxdb", "gestor-monitoring", "gestor-managing", "gestor-web")   # the VM's units
SYSTEM_NOTE = "shared host (the VMs' runs too), not comparable: "
OOM_NOTE = "dmesg of the shared host: "


def write_tsv(out: Path, results: dict[str, tuple[dict, dict[str, str]]]) -> None:
    """measure.tsv from ``results`` (ROWS key -> (the command's JSON, the rows' context)), in
    vm_measure.ROWS' order, each line ``quantity<TAB>value``."""
    lines = [f"{q}\t{v}\n" for k in vm_measure.ROWS if k in results for q, v in vm_measure.rows(k, *results[k])]
    out.write_text("".join(lines))


def example_settings(tmp: Path, influx_port: int, web_port: int) -> dict:
    """The shipped example as install.sh installs it (the recording from the bundled data, at
    the real time of day), its paths under ``tmp``, the store and the page on these loopback ports."""
    import yaml
    raw = yaml.safe_load((REPO / "config" / "settings.yaml").read_text())
    raw["meter"]["path"] = str(DATA / Path(raw["meter"]["path"]).name)
    raw["meter"]["same_time_of_day"] = True
    raw["store"].update(host="127.0.0.1", port=influx_port)
    raw["paths"] = {"state_dir": str(tmp / "state"), "run_dir": str(tmp / "run")}
    raw["web"]["listen"] = f"127.0.0.1:{web_port}"
    return raw


def machine() -> str:
    """This machine in one line: CPU, cores, memory, load average at the start."""
    model = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "")
    mem = vm_measure.meminfo()["MemTotal"] // 1024
    return (f"this machine: {platform.machine()}, {os.cpu_count()} cores ({model}), {mem} MB, no systemd "
            f"(processes by hand), load average {os.getloadavg()[0]:.1f} at the start")


class Stack:
    """The processes this run started, stopped (reverse order) by :meth:`stop`."""

    def __init__(self, tmp: Path, env: dict[str, str]):
        self.tmp, self.env = tmp, env
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, label: str, argv: list[str]) -> subprocess.Popen:
        with open(self.tmp / f"{label}.log", "ab") as log:
            p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        self.procs[label] = p
        return p

    def gestor(self, label: str, cmd: str, settings: Path) -> subprocess.Popen:
        return self.start(label, [str(BIN / "gestor"), cmd, "--config", str(settings)])

    def stop(self, grace_s: float = 20) -> None:
        """SIGTERM each, the last started first (InfluxDB last, so the daemons flush to it); SIGKILL
        one that has not exited within ``grace_s`` s."""
        for p in reversed(list(self.procs.values())):
            if p.poll() is None:
                p.terminate()
            try:
                p.wait(grace_s)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def wait_for(what: str, ok, timeout_s: float) -> None:
    """Poll ``ok()`` every 0.5 s until true; RuntimeError naming ``what`` after ``timeout_s`` s."""
    if vm_check.poll(ok, timeout_s, 0.5) is None:
        raise RuntimeError(f"{what}: not within {timeout_s:.0f} s")


def fresh(f: Path, max_age_s: float = 15) -> bool:
    return f.exists() and time.time() - f.stat().st_mtime < max_age_s


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=5)
        return True
    except OSError:
        return False


def run(args: argparse.Namespace, tmp: Path, stack: Stack, out: Path) -> None:
    """Start the stack and take every measurement, measure.tsv rewritten after each."""
    import yaml
    from tests.influxd import free_port, start_influxd
    results: dict[str, tuple[dict, dict[str, str]]] = {"machine": ({}, {"machine": machine()}), "install": ({}, {})}
    influx_dir = tmp / "influxdb"
    influx_dir.mkdir()
    influx = start_influxd(influx_dir)
    stack.procs["influxdb"] = influx.proc
    raw = example_settings(tmp, influx.port, free_port())
    settings = tmp / "settings.yaml"
    settings.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False))
    gestor, env = str(BIN / "gestor"), stack.env
    subprocess.run([gestor, "db-init", "--config", str(settings)], env=env, check=True, capture_output=True, timeout=120)
    stack.gestor("gestor-monitoring", "monitoring", settings)
    stack.gestor("gestor-managing", "managing", settings)
    run_dir, sim = Path(raw["paths"]["run_dir"]), Path(raw["paths"]["run_dir"]) / "sim-relays"
    wait_for("readings arriving (run/reading.json fresh)", lambda: fresh(run_dir / "reading.json"), 120)
    wait_for("managing running (run/managing.json fresh)", lambda: fresh(run_dir / "managing.json", 30), 120)
    print(f"host-measure: running in {tmp}", file=sys.stderr)

    opts = ["--stop-loads", str(BIN / "stop-loads"), "--gestor", gestor, "--settings", str(settings),
            "--sim-dir", str(sim), "--influx", influx.url, "--kernel-log", "dmesg"]

    def measure(key: str, cmd: list[str], ctx: dict[str, str] | None = None) -> dict:
        p = subprocess.run([sys.executable, str(HERE / "vm_measure.py"), *opts, *cmd], env=env,
                           capture_output=True, text=True)
        try:
            r = json.loads(p.stdout)
        except ValueError:
            r = {"error": f"vm_measure.py {cmd[0]} exit {p.returncode}: {p.stderr.strip()[-200:]}"}
        (tmp / f"measure-{key}.json").write_text(json.dumps(r))
        if key in vm_measure.ROWS:
            results[key] = (r, ctx or {})
            write_tsv(out, results)
            for q, v in vm_measure.rows(key, r, ctx):
                print(f"  MEAS {q}: {v}", file=sys.stderr)
        return r

    def pid(label: str) -> str:
        return str(stack.procs[label].pid)

    iv = str(raw["managing"]["interval_s"])
    measure("managing_cpu", ["cpu", pid("gestor-managing"), str(CPU_S), iv], {"interval_s": iv})
    iv = str(raw["monitoring"]["interval_s"])
    measure("monitoring_cpu", ["cpu", pid("gestor-monitoring"), str(CPU_S), iv], {"interval_s": iv})
    measure("path", ["path", str(PATH_POINTS), str(PATH_TIMEOUT_S)])

    loads = [ld["name"] for ld in raw["loads"]]
    for name in loads:
        subprocess.run([gestor, "override", name, "on", "--for", "2h", "--config", str(settings)], env=env,
                       check=True, capture_output=True, timeout=60)
    if vm_check.wait_loads("all-on", 60, str(sim)) is None:
        print(f"host-measure: the loads did not all go on: {vm_check.fmt(vm_check.loads(str(sim)))}", file=sys.stderr)
    measure("stop", ["stop-time"])
    subprocess.run([str(BIN / "stop-loads"), "--release", "--config", str(settings)], env=env, capture_output=True, timeout=120)
    for name in loads:
        subprocess.run([gestor, "override", name, "auto", "--config", str(settings)], env=env, capture_output=True, timeout=60)

    measure("simulate", ["simulate", str(DATA / CSV), DAY], {"csv": CSV, "day": DAY})

    password = secrets.token_urlsafe(12)
    subprocess.run([gestor, "web", "--set-password", "--config", str(settings)], input=password + "\n", text=True,
                   env=env, check=True, capture_output=True, timeout=120)
    stack.gestor("gestor-web", "web", settings)
    url = "http://" + raw["web"]["listen"]
    wait_for(f"the page answering at {url}/login", lambda: answers(url + "/login"), 120)
    measure("range", ["range", url, password, dt.date.today().isoformat()], {"data": "since this run's start"})

    print(f"host-measure: the example running with the page open for {args.soak_min} min, then its memory", file=sys.stderr)
    page = measure("page", ["page", url, password, str(args.soak_min * 60)])
    measure("memory", ["memory", *(f"{label}={pid(label)}" for label in LABELS)],
            {"soak_min": str(args.soak_min), "page": json.dumps(page), "system_note": SYSTEM_NOTE, "oom_note": OOM_NOTE})
    dead = [label for label, p in stack.procs.items() if p.poll() is not None]
    if dead:
        raise RuntimeError(f"exited during the run: {', '.join(dead)} (logs in {tmp})")


def _terminate(signum, frame):
    """SIGTERM/SIGHUP: say so and unwind (main's finally stops the processes)."""
    print(f"host-measure: {signal.Signals(signum).name}: stopping", file=sys.stderr)
    raise SystemExit(128 + signum)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="host_measure.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--soak-min", type=int, default=30, help="minutes with the page open before the memory (default 30)")
    ap.add_argument("--out", type=Path, help="measure.tsv to write (default: in the run's temporary directory)")
    args = ap.parse_args(argv)
    if args.soak_min < 1:
        ap.error(f"--soak-min {args.soak_min}: a whole number of minutes, at least 1, is allowed")
    if args.out is not None and not args.out.parent.is_dir():
        ap.error(f"--out {args.out}: the folder {args.out.parent} does not exist")
    missing = [str(p) for p in (BIN / "gestor", BIN / "stop-loads", DATA / CSV) if not p.exists()]
    if missing:
        ap.error(f"missing {', '.join(missing)}: the repository's .venv (./install.sh --test) and ../shared/data")
    tmp = Path(tempfile.mkdtemp(prefix="gestor-host-measure-"))
    out = args.out or tmp / "measure.tsv"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]),
           "GESTOR_STATE_DIR": str(tmp / "state"), "GESTOR_RUN_DIR": str(tmp / "run")}
    stack = Stack(tmp, env)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _terminate)
    try:
        run(args, tmp, stack, out)
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        print(f"host-measure: {e} (logs in {tmp})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("host-measure: interrupted", file=sys.stderr)
        return 130
    finally:
        stack.stop()
    print(f"host-measure: {out}", file=sys.stderr)
    print(vm_check.measures([str(out)]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
