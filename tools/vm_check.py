#!/usr/bin/env python3
"""Helper of tools/vm-check.sh (standard library only).

Inside the VM (copied there as /root/vm_check.py, run as root):
  loads                         the simulated relays' states, "water_heater=on pool_pump=off"
  wait off|on|all-on TIMEOUT    wait until every load is off, at least one is on, every one is on;
                                prints the seconds waited; exit 1 on timeout
  kill9 UNIT TIMEOUT            SIGKILL the unit's main pid; JSON: seconds to every load off, to a
                                new main pid active
  sigstop UNIT TIMEOUT          SIGSTOP the unit's main pid (a hung daemon); JSON: seconds until
                                systemd killed it (watchdog), to every load off, to a new main pid
  web-stop URL PASSWORD         log in to the web page (cookie jar, CSRF token from the forms),
                                POST /api/stop {"confirm": "STOP"}; JSON: status codes and answer
On the host:
  table RESULTS.tsv             the results (check, expected, observed, PASS/FAIL) as a table
  measures MEASURE.tsv...       the measurements of one or more runs side by side (vm-check-measure.sh)
"""
from __future__ import annotations

import glob
import http.cookiejar
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

SIM = "/run/gestor/sim-relays"


def loads(sim: str = SIM) -> dict[str, bool | None]:
    """Each simulated relay's state under the directory ``sim`` (default the installed one), by
    load name: True on, False off, None unreadable."""
    out: dict[str, bool | None] = {}
    for f in sorted(glob.glob(os.path.join(sim, "*.json"))):
        name = os.path.basename(f)[:-5]
        try:
            with open(f) as fh:
                d = json.load(fh)
            on = bool(d.get("on"))
            # the device's own dead-man timer, as the simulated relay goes by it
            end = d.get("auto_off_at_s")
            if on and isinstance(end, (int, float)) and time.time() >= end and not d.get("welded"):
                on = False
            out[name] = on
        except (OSError, ValueError):
            out[name] = None
    return out


def fmt(ls: dict[str, bool | None]) -> str:
    if not ls:
        return "(no relay state files)"
    return " ".join(f"{k}={'?' if v is None else ('on' if v else 'off')}" for k, v in ls.items())


def all_off(ls: dict[str, bool | None]) -> bool:
    return bool(ls) and all(v is False for v in ls.values())


def any_on(ls: dict[str, bool | None]) -> bool:
    return any(v is True for v in ls.values())


def poll(ok, timeout: float, every_s: float = 0.1) -> float | None:
    """Seconds waited until ``ok()`` is true, asked every ``every_s`` s, or None after ``timeout`` s
    (the one wait of these tools on a condition outside them: a relay file, a port, a process)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if ok():
            return time.monotonic() - t0
        time.sleep(every_s)
    return None


def wait_loads(want: str, timeout: float, sim: str = SIM) -> float | None:
    """Seconds waited until the relays under ``sim`` are as ``want`` says (off: every one off; on:
    at least one on; all-on: every one on), or None after ``timeout`` s."""
    def as_wanted() -> bool:
        ls = loads(sim)
        return ((want == "off" and all_off(ls)) or (want == "on" and any_on(ls))
                or (want == "all-on" and bool(ls) and all(v is True for v in ls.values())))
    return poll(as_wanted, timeout)


def show(unit: str, prop: str) -> str:
    r = subprocess.run(["systemctl", "show", "-p", prop, "--value", unit], capture_output=True, text=True)
    return r.stdout.strip()


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def off_since(t_wall: float) -> float | None:
    """Seconds from epoch ``t_wall`` to the last load's off command, from the relays' own record
    (``since_s`` of each state file that reads off), or None."""
    latest = None
    for f in glob.glob(os.path.join(SIM, "*.json")):
        try:
            with open(f) as fh:
                d = json.load(fh)
        except (OSError, ValueError):
            return None
        if d.get("on"):
            return None
        since = d.get("since_s")
        if isinstance(since, (int, float)) and since >= t_wall:
            latest = since if latest is None else max(latest, since)
    return None if latest is None else round(latest - t_wall, 2)


def signal_and_watch(unit: str, sig: int, timeout: float) -> dict:
    pid = int(show(unit, "MainPID") or 0)
    if pid <= 0:
        return {"error": f"{unit} has no main pid"}
    before = loads()
    t_wall = time.time()
    t0 = time.monotonic()
    os.kill(pid, sig)
    r: dict = {"old_pid": pid, "loads_before": fmt(before), "loads_off_s": None, "old_pid_gone_s": None,
               "new_pid": None, "restarted_s": None}
    next_show = 0.0
    while time.monotonic() - t0 < timeout:
        now = time.monotonic() - t0
        if r["old_pid_gone_s"] is None and not pid_alive(pid):
            r["old_pid_gone_s"] = round(now, 2)
        if r["loads_off_s"] is None and all_off(loads()):
            r["loads_off_s"] = round(now, 2)       # seen by polling
            r["loads_off_cmd_s"] = off_since(t_wall)  # the relays' own time of the off command
            r["loads_at_off"] = fmt(loads())
        if r["restarted_s"] is None and now >= next_show:  # systemctl is slow under emulation
            next_show = now + 0.5
            p = int(show(unit, "MainPID") or 0)
            if p and p != pid and show(unit, "ActiveState") == "active":
                r["new_pid"], r["restarted_s"] = p, round(time.monotonic() - t0, 2)
        if r["restarted_s"] is not None and r["loads_off_s"] is not None and r["old_pid_gone_s"] is not None:
            break
        time.sleep(0.05)
    r["loads_after"] = fmt(loads())
    r["result"] = show(unit, "Result")
    r["n_restarts"] = show(unit, "NRestarts")
    return r


def web_login(url: str, password: str) -> tuple:
    """Log in to the page at ``url`` (cookie jar, the CSRF token of the login form). Returns
    ``(call, out, page_token)``: ``call(method, path, data=None, headers=None)`` -> (status, body)
    in that session, the status codes so far in ``out`` (``out["error"]`` on a failure) and the
    page's CSRF token for POSTs (None when the login failed)."""
    jar = http.cookiejar.CookieJar()

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None

    op = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)

    def call(method: str, path: str, data: bytes | None = None, headers: dict | None = None):
        req = urllib.request.Request(url + path, data=data, method=method, headers=headers or {})
        try:
            with op.open(req, timeout=60) as resp:
                return resp.status, resp.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    out: dict = {}

    def token(path: str, key: str, pattern: str, missing: str) -> str | None:
        """GET ``path`` (its status in ``out[key]``) and the CSRF token ``pattern`` finds in it;
        None, with ``missing`` in ``out["error"]``, where there is none."""
        code, html = call("GET", path)
        out[key] = code
        m = re.search(pattern, html)
        if not m:
            out["error"] = missing
        return m[1] if m else None

    login_token = token("/login", "get_login", r'name="csrf_token" value="([^"]+)"', "no csrf_token in the login form")
    if login_token is None:
        return call, out, None
    code, _ = call("POST", "/login", urllib.parse.urlencode({"csrf_token": login_token, "password": password}).encode(),
                   {"Content-Type": "application/x-www-form-urlencoded"})
    out["post_login"] = code
    page_token = token("/", "get_page", r'name="csrf-token" content="([^"]+)"', "no csrf-token on the page (not logged in?)")
    return call, out, page_token


def web_stop(url: str, password: str) -> dict:
    call, out, page_token = web_login(url, password)
    if page_token is None:
        return out
    t0 = time.monotonic()
    code, body = call("POST", "/api/stop", json.dumps({"confirm": "STOP"}).encode(),
                      {"Content-Type": "application/json", "X-CSRFToken": page_token, "Referer": url + "/"})
    out["post_stop"] = code
    out["stop_s"] = round(time.monotonic() - t0, 2)
    out["stop_answer"] = body[:400]
    out["loads_after"] = fmt(loads())
    out["all_off"] = all_off(loads())
    return out


def table(path: str) -> str:
    rows = [("#", "check", "expected", "observed", "result")]
    with open(path) as fh:
        for i, line in enumerate(fh, 1):
            parts = (line.rstrip("\n").split("\t") + ["", "", "", ""])[:4]
            rows.append((str(i), *parts))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    widths[3] = min(widths[3], 90)

    def wrap(text: str, w: int) -> list[str]:
        out, cur = [], ""
        for word in text.split(" "):
            while len(word) > w:
                if cur:
                    out.append(cur)
                    cur = ""
                out.append(word[:w])
                word = word[w:]
            if len(cur) + len(word) + (1 if cur else 0) > w:
                out.append(cur)
                cur = word
            else:
                cur = f"{cur} {word}" if cur else word
        out.append(cur)
        return out

    lines = []
    sep = "+".join("-" * (w + 2) for w in widths)
    for n, r in enumerate(rows):
        obs = wrap(r[3], widths[3])
        for k, o in enumerate(obs):
            cells = [r[0], r[1], r[2], o, r[4]] if k == 0 else ["", "", "", o, ""]
            lines.append(" | ".join(c.ljust(widths[i]) for i, c in enumerate(cells)).rstrip())
        if n == 0:
            lines.append(sep)
    fails = sum(1 for r in rows[1:] if r[4] != "PASS")
    lines.append(sep)
    lines.append(f"{len(rows) - 1} checks, {len(rows) - 1 - fails} PASS, {fails} not PASS")
    return "\n".join(lines)


def measures(paths: list[str]) -> str:
    """The measurements of several runs (vm-check-measure.sh's measure.tsv files: quantity, value)
    side by side, one column per file, headed by its "machine" line; quantities in first-seen order."""
    cols: list[dict[str, str]] = []
    order: list[str] = []
    for p in paths:
        d: dict[str, str] = {}
        with open(p) as fh:
            for line in fh:
                k, _, v = line.rstrip("\n").partition("\t")
                d[k] = v
                if k not in order and k != "machine":
                    order.append(k)
        cols.append(d)
    rows = [("measured", *(c.get("machine", p) for c, p in zip(cols, paths)))]
    rows += [(k, *(c.get(k, "-") for c in cols)) for k in order]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows]
    lines.insert(1, "+".join("-" * (w + 2) for w in widths))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    cmd, args = argv[0], argv[1:]
    if cmd == "loads":
        print(fmt(loads()))
        return 0
    if cmd == "wait":
        waited = wait_loads(args[0], float(args[1]))
        print(f"timeout after {float(args[1]):.0f} s: {fmt(loads())}" if waited is None else f"{waited:.2f}")
        return 1 if waited is None else 0
    if cmd in ("kill9", "sigstop"):
        sig = signal.SIGKILL if cmd == "kill9" else signal.SIGSTOP
        print(json.dumps(signal_and_watch(args[0], sig, float(args[1]))))
        return 0
    if cmd == "web-stop":
        print(json.dumps(web_stop(args[0].rstrip("/"), args[1])))
        return 0
    if cmd == "table":
        print(table(args[0]))
        return 0
    if cmd == "measures":
        print(measures(args))
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
