#!/usr/bin/env python3
"""Measurements of tools/vm-check.sh on the installed system (issue 36), standard library only.

Copied into the VM as /root/vm_measure.py beside /root/vm_check.py (whose relay and web-login
helpers it uses) and run there as root. Each command prints one JSON object; numbers only, nothing
here decides PASS or FAIL (vm-check.sh does, against the issue's limits).

  stop-time                      ``stop-loads`` (the installed console script, a new process) with
                                 the loads on: ms from just before its start to the first relay's
                                 command (the simulated relay's own ``since_s``, CLOCK_REALTIME) and
                                 to its exit (as benchmarks/stop_speed.py measures it)
  cpu UNIT SECONDS INTERVAL_S    CPU time (utime + stime, /proc/PID/stat) of the unit's main
                                 process over SECONDS, per cycle of INTERVAL_S: the work of one cycle
  path N TIMEOUT                 a reading's path meter -> InfluxDB: for N new ``meter`` points,
                                 ms from the reading's time (the point's timestamp) to the moment
                                 a query of InfluxDB (127.0.0.1:8086, database gestor) first returns
                                 it, polled every 0.25 s; median and max
  range URL PASSWORD DAY         the page's year view (GET /api/range?view=year&date=DAY) after a
                                 login: the first request (cold: gestor-web just restarted, its
                                 cache empty) and three more (warm), ms each
  page URL PASSWORD SECONDS      the page kept open for SECONDS: logged in, GET /api/status every
                                 ``web.poll_s`` (5 s in the example) and /api/day every minute, as
                                 the open page's script does; prints the requests and failures
  simulate CSV DAY               ``gestor simulate CSV --from DAY --to DAY+1`` (the installed
                                 command, the installed settings): wall s and peak RSS (MB)
  memory UNIT...                 each unit's main pid RSS and cgroup memory (MB), the system's
                                 memory (MemTotal - MemAvailable), swap, OOM-killer lines of this
                                 boot's kernel log
"""
from __future__ import annotations

import datetime as dt
import glob
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vm_check  # noqa: E402  (beside this file, in the VM as on the host)

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
OOM = re.compile(r"out of memory|oom-kill|oom_reaper|invoked oom-killer", re.I)


def stop_time() -> dict:
    before = vm_check.loads()
    t_wall = time.time()
    t0 = time.monotonic()
    p = subprocess.run(["/usr/local/bin/stop-loads"], capture_output=True, text=True, timeout=600)
    done_ms = (time.monotonic() - t0) * 1000
    first = None
    for f in glob.glob(os.path.join(vm_check.SIM, "*.json")):
        try:
            with open(f) as fh:
                since = json.load(fh).get("since_s")
        except (OSError, ValueError):
            continue
        if isinstance(since, (int, float)) and since >= t_wall:
            first = since if first is None else min(first, since)
    return {"exit": p.returncode, "loads_before": vm_check.fmt(before), "loads_after": vm_check.fmt(vm_check.loads()),
            "first_cmd_ms": None if first is None else round((first - t_wall) * 1000),
            "done_ms": round(done_ms), "stderr": p.stderr[-300:]}


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        f = fh.read().rsplit(") ", 1)[1].split()
    return int(f[11]) + int(f[12])   # utime, stime (proc(5): fields 14 and 15)


def cpu(unit: str, seconds: float, interval_s: float) -> dict:
    pid = int(vm_check.show(unit, "MainPID") or 0)
    if pid <= 0:
        return {"error": f"{unit} has no main pid"}
    a, t0 = cpu_ticks(pid), time.monotonic()
    time.sleep(seconds)
    b, t1 = cpu_ticks(pid), time.monotonic()
    cycles = (t1 - t0) / interval_s
    return {"pid": pid, "seconds": round(t1 - t0, 1), "cycles": round(cycles, 1),
            "cpu_ms_per_cycle": round((b - a) * TICK_S * 1000 / cycles, 1),
            "cpu_share_pct": round((b - a) * TICK_S * 100 / (t1 - t0), 2)}


def influx_last_ms() -> int | None:
    q = urllib.parse.urlencode({"db": "gestor", "epoch": "ms", "q": "SELECT last(net_w) FROM meter WHERE time > now() - 10m"})
    with urllib.request.urlopen(f"http://127.0.0.1:8086/query?{q}", timeout=30) as r:
        d = json.load(r)
    try:
        return int(d["results"][0]["series"][0]["values"][0][0])
    except (KeyError, IndexError, TypeError):
        return None


def path(n: int, timeout: float) -> dict:
    seen, lat_ms = influx_last_ms(), []
    t0 = time.monotonic()
    while len(lat_ms) < n and time.monotonic() - t0 < timeout:
        last = influx_last_ms()
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


def simulate(csv: str, day: str) -> dict:
    d = dt.date.fromisoformat(day)
    cmd = ["/usr/local/bin/gestor", "simulate", csv, "--config", "/etc/gestor/settings.yaml",
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


def memory(units: list[str]) -> dict:
    per = {}
    for u in units:
        pid = int(vm_check.show(u, "MainPID") or 0)
        cg = vm_check.show(u, "MemoryCurrent")
        per[u] = {"rss_mb": rss_mb(pid) if pid > 0 else None,
                  "cgroup_mb": round(int(cg) / 2**20, 1) if cg.isdigit() else None}
    m = meminfo()
    k = subprocess.run(["journalctl", "-k", "-b", "--no-pager", "-o", "cat"], capture_output=True, text=True).stdout
    oom = [line[:200] for line in k.splitlines() if OOM.search(line)]
    return {"units": per, "mem_total_mb": round(m["MemTotal"] / 1024), "used_mb": round((m["MemTotal"] - m["MemAvailable"]) / 1024),
            "available_mb": round(m["MemAvailable"] / 1024), "swap_total_mb": round(m["SwapTotal"] / 1024),
            "swap_used_mb": round((m["SwapTotal"] - m["SwapFree"]) / 1024), "oom_lines": oom[:5], "oom_count": len(oom)}


def main(argv: list[str]) -> int:
    cmd, a = (argv[0], argv[1:]) if argv else ("", [])
    if cmd == "stop-time":
        r = stop_time()
    elif cmd == "cpu":
        r = cpu(a[0], float(a[1]), float(a[2]))
    elif cmd == "path":
        r = path(int(a[0]), float(a[1]))
    elif cmd == "range":
        r = year_range(a[0].rstrip("/"), a[1], a[2])
    elif cmd == "page":
        r = page(a[0].rstrip("/"), a[1], float(a[2]))
    elif cmd == "simulate":
        r = simulate(a[0], a[1])
    elif cmd == "memory":
        r = memory(a)
    else:
        print(__doc__)
        return 2
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
