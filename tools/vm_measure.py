#!/usr/bin/env python3
"""Measurements of tools/vm-check.sh on the installed system (issue 36), standard library only.

Copied into the VM as /root/vm_measure.py beside /root/vm_check.py (whose relay and web-login
helpers it uses) and run there as root; tools/host_measure.py runs it on this machine too, with
the options below pointing at its own processes and files. Each command prints one JSON object;
numbers only, nothing here decides PASS or FAIL (vm-check.sh does, against the issue's limits).

Options (before the command; defaults: the installed system):
  --stop-loads EXE   the stop-loads program (/usr/local/bin/stop-loads)
  --gestor EXE       the gestor program (/usr/local/bin/gestor)
  --settings FILE    the settings file both are given (/etc/gestor/settings.yaml)
  --sim-dir DIR      the simulated relays' state files (/run/gestor/sim-relays)
  --influx URL       InfluxDB 1.x, database gestor (http://127.0.0.1:8086)
  --kernel-log CMD   the command that prints this boot's kernel log (journalctl -k -b ...)

Commands (a TARGET is a systemd unit, whose main pid is taken, or a pid; LABEL=TARGET names it):
  stop-time                      ``stop-loads`` (a new process) with the loads on: ms from just
                                 before its start to the first relay's command (the simulated
                                 relay's own ``since_s``, CLOCK_REALTIME) and to its exit (as
                                 benchmarks/stop_speed.py measures it)
  cpu TARGET SECONDS INTERVAL_S  CPU time (utime + stime, /proc/PID/stat) of the target's process
                                 over SECONDS, per cycle of INTERVAL_S: the work of one cycle
  path N TIMEOUT                 a reading's path meter -> InfluxDB: for N new ``meter`` points,
                                 ms from the reading's time (the point's timestamp) to the moment
                                 a query of InfluxDB first returns it, polled every 0.25 s; median
                                 and max
  range URL PASSWORD DAY         the page's year view (GET /api/range?view=year&date=DAY) after a
                                 login: the first request (cold: the page just started, its cache
                                 empty) and three more (warm), ms each
  page URL PASSWORD SECONDS      the page kept open for SECONDS: logged in, GET /api/status every
                                 ``web.poll_s`` (5 s in the example) and /api/day every minute, as
                                 the open page's script does; prints the requests and failures
  simulate CSV DAY               ``gestor simulate CSV --from DAY --to DAY+1`` (the settings
                                 file's): wall s and peak RSS (MB)
  memory [LABEL=]TARGET...       each target's RSS (MB; a unit's cgroup memory too), the system's
                                 memory (MemTotal - MemAvailable), swap, OOM-killer lines of the
                                 kernel log
  rows KEY JSON [NAME=VALUE...]  the lines ``quantity<TAB>value`` of measure.tsv for one
                                 measurement: KEY one of ROWS, JSON what its command printed (the
                                 one place of the quantities' names and formats, for vm-check and
                                 host_measure.py alike)
"""
from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import os
import re
import resource
import shlex
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vm_check  # noqa: E402  (beside this file, in the VM as on the host)

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
OOM = re.compile(r"out of memory|oom-kill|oom_reaper|invoked oom-killer", re.I)
STOP_LOADS = "/usr/local/bin/stop-loads"
GESTOR = "/usr/local/bin/gestor"
SETTINGS = "/etc/gestor/settings.yaml"
INFLUX = "http://127.0.0.1:8086"
KERNEL_LOG = "journalctl -k -b --no-pager -o cat"


def stop_time(stop_loads: str = STOP_LOADS, settings: str = SETTINGS, sim: str = vm_check.SIM) -> dict:
    """``stop_loads --config settings`` with the loads on (relays under ``sim``): ms to the first
    relay command and to the exit."""
    before = vm_check.loads(sim)
    t_wall = time.time()
    t0 = time.monotonic()
    p = subprocess.run([stop_loads, "--config", settings], capture_output=True, text=True, timeout=600)
    done_ms = (time.monotonic() - t0) * 1000
    first = None
    for f in glob.glob(os.path.join(sim, "*.json")):
        try:
            with open(f) as fh:
                since = json.load(fh).get("since_s")
        except (OSError, ValueError):
            continue
        if isinstance(since, (int, float)) and since >= t_wall:
            first = since if first is None else min(first, since)
    return {"exit": p.returncode, "loads_before": vm_check.fmt(before), "loads_after": vm_check.fmt(vm_check.loads(sim)),
            "first_cmd_ms": None if first is None else round((first - t_wall) * 1000),
            "done_ms": round(done_ms), "stderr": p.stderr[-300:]}


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        f = fh.read().rsplit(") ", 1)[1].split()
    return int(f[11]) + int(f[12])   # utime, stime (proc(5): fields 14 and 15)


def target_pid(target: str) -> int:
    """The pid of ``target``: itself when it is a number, else the systemd unit's main pid (0:
    none)."""
    return int(target) if target.isdigit() else int(vm_check.show(target, "MainPID") or 0)


def cpu(target: str, seconds: float, interval_s: float) -> dict:
    """CPU ms per cycle of ``interval_s`` s (and % of a core) of ``target`` (a unit or a pid) over
    ``seconds`` s."""
    pid = target_pid(target)
    if pid <= 0 or not vm_check.pid_alive(pid):
        return {"error": f"{target} has no running process"}
    a, t0 = cpu_ticks(pid), time.monotonic()
    time.sleep(seconds)
    b, t1 = cpu_ticks(pid), time.monotonic()
    cycles = (t1 - t0) / interval_s
    return {"pid": pid, "seconds": round(t1 - t0, 1), "cycles": round(cycles, 1),
            "cpu_ms_per_cycle": round((b - a) * TICK_S * 1000 / cycles, 1),
            "cpu_share_pct": round((b - a) * TICK_S * 100 / (t1 - t0), 2)}


def influx_last_ms(influx: str = INFLUX) -> int | None:
    """The epoch ms of the newest ``meter`` point (last 10 min) in database gestor at ``influx``."""
    q = urllib.parse.urlencode({"db": "gestor", "epoch": "ms", "q": "SELECT last(net_w) FROM meter WHERE time > now() - 10m"})
    with urllib.request.urlopen(f"{influx}/query?{q}", timeout=30) as r:
        d = json.load(r)
    try:
        return int(d["results"][0]["series"][0]["values"][0][0])
    except (KeyError, IndexError, TypeError):
        return None


def path(n: int, timeout: float, influx: str = INFLUX) -> dict:
    """ms from a reading's time to its point being queryable, for ``n`` new points within
    ``timeout`` s."""
    seen, lat_ms = influx_last_ms(influx), []
    t0 = time.monotonic()
    while len(lat_ms) < n and time.monotonic() - t0 < timeout:
        last = influx_last_ms(influx)
        if last is not None and last != seen:
            lat_ms.append(time.time() * 1000 - last)
            seen = last
        time.sleep(0.25)
    if not lat_ms:
        return {"error": f"no new meter point in InfluxDB within {timeout:.0f} s"}
    return {"points": len(lat_ms), "median_ms": round(statistics.median(lat_ms)), "max_ms": round(max(lat_ms)),
            "min_ms": round(min(lat_ms))}


def timed_get(call, p: str) -> tuple[int, float, int]:
    t0 = time.monotonic()
    code, body = call("GET", p)
    return code, round((time.monotonic() - t0) * 1000), len(body)


def year_range(url: str, password: str, day: str) -> dict:
    call, out, token = vm_check.web_login(url, password)
    if token is None:
        return out
    p = f"/api/range?view=year&date={day}"
    code, cold_ms, size = timed_get(call, p)
    warm = [timed_get(call, p) for _ in range(3)]
    return {"status": code, "bytes": size, "cold_ms": cold_ms, "warm_ms": [w[1] for w in warm],
            "warm_status": [w[0] for w in warm]}


def page(url: str, password: str, seconds: float, poll_s: float = 5.0) -> dict:
    call, out, token = vm_check.web_login(url, password)
    if token is None:
        return out
    n = bad = 0
    t0 = time.monotonic()
    next_day = 0.0
    while time.monotonic() - t0 < seconds:
        now = time.monotonic() - t0
        paths = ["/api/status"]
        if now >= next_day:
            paths.append(f"/api/day?date={dt.date.today().isoformat()}")
            next_day = now + 60
        for p in paths:
            try:
                code, _ = call("GET", p)
            except OSError:
                code = 0
            n += 1
            bad += code != 200
        time.sleep(poll_s)
    return {"requests": n, "not_200": bad}


def simulate(csv: str, day: str, gestor: str = GESTOR, settings: str = SETTINGS) -> dict:
    """``gestor simulate`` of the day ``day`` (YYYY-MM-DD) of ``csv``: wall s, peak RSS MB."""
    d = dt.date.fromisoformat(day)
    cmd = [gestor, "simulate", csv, "--config", settings,
           "--from", d.isoformat(), "--to", (d + dt.timedelta(days=1)).isoformat()]
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    wall = time.monotonic() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"exit": p.returncode, "wall_s": round(wall, 1), "peak_rss_mb": round(peak_kb / 1024, 1),
            "last_line": (p.stdout.strip().splitlines() or [""])[-1][:160], "stderr": p.stderr[-300:]}


def meminfo() -> dict[str, int]:
    out = {}
    with open("/proc/meminfo") as fh:
        for line in fh:
            k, v = line.split(":", 1)
            out[k] = int(v.split()[0])   # kB
    return out


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def label_target(arg: str) -> tuple[str, str]:
    """``LABEL=TARGET`` or ``TARGET`` (its own label) -> (label, target)."""
    label, eq, target = arg.partition("=")
    return (label, target) if eq else (arg, arg)


def memory(targets: list[str], kernel_log: str = KERNEL_LOG) -> dict:
    """Each ``[LABEL=]TARGET``'s RSS MB (a unit's cgroup MB too), the system's memory, swap (MB)
    and the OOM-killer lines of the kernel log that ``kernel_log`` prints."""
    per = {}
    for label, target in map(label_target, targets):
        pid = target_pid(target)
        cg = "" if target.isdigit() else vm_check.show(target, "MemoryCurrent")
        per[label] = {"rss_mb": rss_mb(pid) if pid > 0 else None,
                      "cgroup_mb": round(int(cg) / 2**20, 1) if cg.isdigit() else None}
    m = meminfo()
    out = {"units": per, "mem_total_mb": round(m["MemTotal"] / 1024), "used_mb": round((m["MemTotal"] - m["MemAvailable"]) / 1024),
           "available_mb": round(m["MemAvailable"] / 1024), "swap_total_mb": round(m["SwapTotal"] / 1024),
           "swap_used_mb": round((m["SwapTotal"] - m["SwapFree"]) / 1024)}
    try:
        k = subprocess.run(shlex.split(kernel_log), capture_output=True, text=True).stdout
    except OSError as e:
        return {**out, "oom_lines": [], "oom_count": None, "error": f"kernel log unreadable ({kernel_log}: {e})"}
    oom = [line[:200] for line in k.splitlines() if OOM.search(line)]
    return {**out, "oom_lines": oom[:5], "oom_count": len(oom)}


# --- measure.tsv: the quantities' names and formats, one place (vm-check-measure.sh, host_measure.py)

ROWS = ("machine", "install", "managing_cpu", "monitoring_cpu", "path", "stop", "simulate", "range", "memory")


def _v(r: dict, key: str) -> str:
    """Field ``key`` of a result as text, "?" where it is missing."""
    x = r.get(key)
    return "?" if x is None else str(x)


def _err(r: dict) -> str:
    return f"; {r['error']}" if r.get("error") else ""


def rows(key: str, r: dict, ctx: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """The measure.tsv lines (quantity, value) of one measurement: ``key`` (one of ROWS), ``r``
    its command's JSON result, ``ctx`` what the name or value also says: machine machine (its description);
    install install_s (s), else note; managing_cpu/monitoring_cpu interval_s (s);
    simulate csv, day; range data (the history's age); memory soak_min (min), page (the page
    command's JSON), system_note and oom_note (prefixes saying whose memory and log it is)."""
    c = ctx or {}
    if key == "machine":
        return [("machine", c.get("machine", "?"))]
    if key == "install":
        return [("install (sudo ./install.sh, first run)", f"{c['install_s']} s" if c.get("install_s") else c.get("note", "-"))]
    if key in ("managing_cpu", "monitoring_cpu"):
        iv = c.get("interval_s", "10" if key == "managing_cpu" else "5")
        if key == "managing_cpu":
            return [(f"managing: CPU per cycle (every {iv} s)",
                     f"{_v(r, 'cpu_ms_per_cycle')} ms ({_v(r, 'cpu_share_pct')} % of a core, {_v(r, 'cycles')} cycles){_err(r)}")]
        return [(f"monitoring: CPU per read (every {iv} s)", f"{_v(r, 'cpu_ms_per_cycle')} ms ({_v(r, 'cpu_share_pct')} % of a core){_err(r)}")]
    if key == "path":
        return [("reading: meter -> InfluxDB (queryable)",
                 f"median {_v(r, 'median_ms')} ms, max {_v(r, 'max_ms')} ms over {_v(r, 'points')} points{_err(r)}")]
    if key == "stop":
        return [("stop-loads: first relay command", f"{_v(r, 'first_cmd_ms')} ms"),
                ("stop-loads: done (process exit)", f"{_v(r, 'done_ms')} ms (exit {_v(r, 'exit')}; after: {_v(r, 'loads_after')})")]
    if key == "simulate":
        return [(f"gestor simulate, one day ({c.get('csv', '?')}, {c.get('day', '?')})",
                 f"{_v(r, 'wall_s')} s, peak RSS {_v(r, 'peak_rss_mb')} MB (exit {_v(r, 'exit')})")]
    if key == "range":
        return [("page: year view (/api/range?view=year), cold",
                 f"{_v(r, 'cold_ms')} ms (HTTP {_v(r, 'status')}, {_v(r, 'bytes')} bytes; data: {c.get('data', '?')}){_err(r)}"),
                ("page: year view, warm (3 requests)", f"{_v(r, 'warm_ms')} ms")]
    if key == "memory":
        soak = c.get("soak_min", "?")
        out, total = [], 0.0
        for u, d in (r.get("units") or {}).items():
            cg = "" if d.get("cgroup_mb") is None else f" (cgroup {d['cgroup_mb']} MB)"
            out.append((f"RSS after {soak} min: {u}", f"{_v(d, 'rss_mb')} MB{cg}"))
            total += d.get("rss_mb") or 0.0
        out.append((f"RSS after {soak} min: these {len(out)} together", f"{round(total, 1)} MB"))
        pg = json.loads(c["page"]) if c.get("page") else {}
        out += [(f"system memory used after {soak} min (MemTotal - MemAvailable)",
                 f"{c.get('system_note', '')}{_v(r, 'used_mb')} MB of {_v(r, 'mem_total_mb')} MB; "
                 f"page open: {_v(pg, 'requests')} requests, {_v(pg, 'not_200')} not 200{_err(pg)}"),
                ("swap", f"{_v(r, 'swap_total_mb')} MB configured, {_v(r, 'swap_used_mb')} MB used"),
                ("OOM-killer lines in the kernel journal", f"{c.get('oom_note', '')}{_v(r, 'oom_count')}{_err(r)}")]
        return out
    raise ValueError(f"no rows for {key!r}: one of {', '.join(ROWS)}")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="vm_measure.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stop-loads", default=STOP_LOADS)
    ap.add_argument("--gestor", default=GESTOR)
    ap.add_argument("--settings", default=SETTINGS)
    ap.add_argument("--sim-dir", default=vm_check.SIM)
    ap.add_argument("--influx", default=INFLUX)
    ap.add_argument("--kernel-log", default=KERNEL_LOG)
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    sub.add_parser("stop-time")
    c = sub.add_parser("cpu")
    c.add_argument("target")
    c.add_argument("seconds", type=float)
    c.add_argument("interval_s", type=float)
    c = sub.add_parser("path")
    c.add_argument("n", type=int)
    c.add_argument("timeout", type=float)
    for name, last, kind in (("range", "day", str), ("page", "seconds", float)):
        c = sub.add_parser(name)
        c.add_argument("url")
        c.add_argument("password")
        c.add_argument(last, type=kind)
    c = sub.add_parser("simulate")
    c.add_argument("csv")
    c.add_argument("day", type=dt.date.fromisoformat)
    c = sub.add_parser("memory")
    c.add_argument("targets", nargs="+")
    c = sub.add_parser("rows")
    c.add_argument("key", choices=ROWS)
    c.add_argument("json")
    c.add_argument("ctx", nargs="*", metavar="NAME=VALUE")
    return ap


def main(argv: list[str]) -> int:
    """Run one command (see the module's doc); bad arguments: one sentence on stderr, exit 2."""
    ap = _parser()
    a = ap.parse_args(argv)
    if a.cmd == "cpu" and (a.seconds <= 0 or a.interval_s <= 0):
        ap.error(f"cpu {a.target} {a.seconds:g} {a.interval_s:g}: SECONDS and INTERVAL_S must be above 0")
    if a.cmd == "stop-time":
        r: Any = stop_time(a.stop_loads, a.settings, a.sim_dir)
    elif a.cmd == "cpu":
        r = cpu(a.target, a.seconds, a.interval_s)
    elif a.cmd == "path":
        r = path(a.n, a.timeout, a.influx)
    elif a.cmd == "range":
        r = year_range(a.url.rstrip("/"), a.password, a.day)
    elif a.cmd == "page":
        r = page(a.url.rstrip("/"), a.password, a.seconds)
    elif a.cmd == "simulate":
        r = simulate(a.csv, a.day.isoformat(), a.gestor, a.settings)
    elif a.cmd == "memory":
        r = memory(a.targets, a.kernel_log)
    else:
        try:
            res = json.loads(a.json or "{}")
        except ValueError:
            ap.error(f"rows {a.key}: the result is not JSON: {a.json[:80]!r}")
        bad = [x for x in a.ctx if "=" not in x]
        if bad:
            ap.error(f"rows {a.key}: {bad[0]!r} is not NAME=VALUE")
        for q, val in rows(a.key, res if isinstance(res, dict) else {}, dict(x.split("=", 1) for x in a.ctx)):
            print(f"{q}\t{val}")
        return 0
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
