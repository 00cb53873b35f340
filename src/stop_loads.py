"""stop-loads: the emergency stop.

Sets the stop latch first (managing keeps every load off while it exists), then switches every
configured load off through its relay driver, all in parallel with a timeout per relay, reads each
back, prints a table and exits 0 only when every load confirmed off **and** the latch is set. It
needs neither InfluxDB nor a responsive managing daemon, nor even a fully valid settings file: it
switches off every relay it can build from the file and reports the others (exit 1).
``--release`` clears the latch. ``--no-latch`` only switches off (used by systemd's ExecStopPost
when managing stops).
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from drivers import DriverContext
from drivers.relays import RELAYS, RelayError
from gestor.clock import WallClock
from gestor.livestate import clear_latch, pid_alive, read_managing, set_latch
from gestor.settings import PathsSettings, SettingsError, load_settings, read_raw

DEFAULT_CONFIG = "/etc/gestor/settings.yaml"


@dataclass
class StopResult:
    load: str
    driver: str
    before: bool | None = None
    after: bool | None = None
    error: str | None = None

    @property
    def confirmed(self) -> bool:
        return self.after is False and self.error is None


def _word(v: bool | None) -> str:
    return "?" if v is None else ("on" if v else "off")


@dataclass
class Target:
    """A load stop-loads can switch: its name, its relay's validated settings and its power."""

    name: str
    relay: Any
    power_w: float = 0.0


@dataclass
class Plan:
    """What stop-loads could make of the settings file: the loads it can switch, those it cannot
    (with why), and the directories."""

    targets: list[Target] = field(default_factory=list)
    unusable: list[StopResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    paths: PathsSettings = field(default_factory=PathsSettings)

    @classmethod
    def of(cls, s: Any) -> "Plan":
        """Every load of valid settings."""
        return cls([Target(ld.name, ld.relay, ld.power_w) for ld in s.loads], paths=s.paths)


def plan_from_file(path: str) -> Plan:
    """Best effort on any settings file: a fully valid one gives every load; an invalid one still
    gives every load whose relay section its driver accepts. Raises SettingsError only when the
    file cannot be read or parsed at all."""
    try:
        return Plan.of(load_settings(path))
    except SettingsError as e:
        problems = list(e.errors)
    try:
        raw = read_raw(path)
    except SettingsError:
        raw = read_raw(path, secrets_optional=True)  # a relay without its password may still be a GPIO line
    plan = Plan(problems=problems)
    if isinstance(raw, dict):
        try:
            plan.paths = PathsSettings.model_validate(raw.get("paths") or {})
        except ValidationError:
            pass
    loads = raw.get("loads") if isinstance(raw, dict) else None
    for i, ld in enumerate(loads if isinstance(loads, list) else []):
        name = ld.get("name") if isinstance(ld, dict) and isinstance(ld.get("name"), str) else f"loads[{i}]"
        sec = ld.get("relay") if isinstance(ld, dict) else None
        driver = sec.get("driver") if isinstance(sec, dict) else None
        if driver not in RELAYS:
            plan.unusable.append(StopResult(name, str(driver), error=f"relay section unusable (driver {driver!r})"))
            continue
        try:
            relay = RELAYS[driver][0].model_validate(sec)
        except ValidationError as e:
            first = e.errors()[0]
            plan.unusable.append(StopResult(name, driver, error=f"relay section invalid: "
                                            f"{'.'.join(map(str, first['loc']))}: {first['msg']}"))
            continue
        power = ld.get("power_w") if isinstance(ld.get("power_w"), (int, float)) else 0.0
        plan.targets.append(Target(name, relay, float(power)))
    return plan


def stop_all(targets, paths: PathsSettings | Any, timeout_s: float = 5.0) -> list[StopResult]:
    """Switch every load off in parallel; read each back. Never raises for a relay's fault.
    ``targets``: :class:`Target` s or the settings' loads (``name``, ``relay``, ``power_w``)."""
    ctx = DriverContext(WallClock(), Path(paths.run_dir), Path.cwd())

    def one(ld) -> StopResult:
        r = StopResult(ld.name, ld.relay.driver)
        try:
            _, factory = RELAYS[ld.relay.driver]
            relay = factory(ld.relay, ctx, ld.name, ld.power_w)
        except Exception as e:  # a driver that cannot even open must not stop the others
            r.error = f"cannot open relay: {e}"
            return r
        try:
            try:
                r.before = relay.state()
            except RelayError:
                pass  # the command below may still work; report only its outcome
            relay.set(False)
            r.after = relay.state()
            if r.after:
                r.error = "relay still reads on"
        except RelayError as e:
            r.error = str(e)
        finally:
            try:
                relay.close()
            except Exception:
                pass
        return r

    results: list[StopResult] = []
    pool = ThreadPoolExecutor(max_workers=max(len(targets), 1))
    futures = [(ld, pool.submit(one, ld)) for ld in targets]
    for ld, fut in futures:
        try:
            results.append(fut.result(timeout=timeout_s))
        except FutureTimeout:
            results.append(StopResult(ld.name, ld.relay.driver, error=f"no answer within {timeout_s:g} s"))
    pool.shutdown(wait=False, cancel_futures=True)
    return results


def is_managing(pid: int) -> bool:
    """Whether ``pid`` is a gestor managing daemon: its command line runs gestor's ``managing``,
    and under systemd it lives in the gestor-managing unit. stop-loads runs as root and reads the
    pid from a file the gestor user can write: it signals nothing else."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    text = [a.decode(errors="replace") for a in args]
    if "managing" not in text or not any("gestor" in a for a in text):
        return False
    if Path("/run/systemd/system").is_dir():
        try:
            cgroup = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            return False
        if "gestor-managing.service" not in cgroup and not os.environ.get("GESTOR_ALLOW_MANUAL_MANAGING"):
            return False
    return True


def _through_managing(plan: Plan, results: list[StopResult], timeout_s: float) -> list[StopResult]:
    """Relays stop-loads could not switch may be held by a running managing (a GPIO line is
    claimed by one process only). With the latch set, a healthy managing switches them off within
    a cycle and publishes it: wait for that. If it does not (hung), stop managing (SIGTERM, then
    SIGKILL) so that its lines are released, and try again."""
    st = read_managing(plan.paths.run_dir)
    pid = st["pid"] if st and isinstance(st.get("pid"), int) and not isinstance(st.get("pid"), bool) else None
    if pid is None or pid == os.getpid() or not pid_alive(pid):
        return results
    bad = {r.load for r in results if not r.confirmed}
    cycle0 = st.get("cycle")  # a cycle after this one has seen the latch (clocks may differ: drills)
    wait_s = 2 * float(st.get("interval_s", 10.0)) + timeout_s
    print(f"waiting up to {wait_s:.0f} s for managing (pid {pid}) to switch {', '.join(sorted(bad))} off "
          "under the latch...")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        st = read_managing(plan.paths.run_dir) or {}
        fresh = st.get("latched") is True and isinstance(st.get("cycle"), int) and st.get("cycle") != cycle0
        if fresh and all((st.get("loads", {}).get(n) or {}).get("on") is False for n in bad):
            for r in results:
                if r.load in bad:
                    r.after, r.error = False, None
                    r.driver += " (via managing)"
            return results
        time.sleep(0.2)
    if not is_managing(pid):
        print(f"pid {pid} (from {plan.paths.run_dir}/managing.json) is not gestor's managing daemon: "
              "not signalled", file=sys.stderr)
        return results
    print(f"managing (pid {pid}) did not confirm: stopping it so its relays are released", file=sys.stderr)
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        end = time.monotonic() + grace
        while pid_alive(pid) and time.monotonic() < end:
            time.sleep(0.1)
        if not pid_alive(pid):
            break
    again = {r.load: r for r in stop_all([t for t in plan.targets if t.name in bad], plan.paths, timeout_s)}
    return [again.get(r.load, r) if r.load in bad else r for r in results]


@dataclass
class StopOutcome:
    """What :func:`emergency_stop` did: each load's result, the latch's line (None with
    ``latch=False``) and whether the latch is set."""

    results: list[StopResult]
    latch: str | None
    latch_ok: bool

    @property
    def ok(self) -> bool:
        return self.latch_ok and all(r.confirmed for r in self.results)


def emergency_stop(plan: Plan, timeout_s: float = 5.0, latch: bool = True, by: str = "stop-loads") -> StopOutcome:
    """The emergency stop, for ``stop-loads`` and the web page's button: set the stop latch
    (``by`` says who, in the latch file), switch every load of ``plan`` off in parallel and read
    each back; loads held by a running managing are confirmed through it (see
    :func:`_through_managing`). Prints the latch's progress; never raises for a relay's fault."""
    state_dir = plan.paths.state_dir
    line: str | None = None
    latch_ok = True
    if latch:
        try:
            set_latch(state_dir, WallClock().now(), by)
            line = f"SET ({state_dir}/stop.latch): managing keeps every load off until 'stop-loads --release'"
            print(f"stop latch set ({state_dir}/stop.latch): managing keeps every load off until "
                  f"'stop-loads --release'")
        except OSError as e:
            latch_ok = False
            line = f"NOT SET: {e.strerror or e}: managing may switch the loads back on"
            print(f"STOP-LOADS: STOP LATCH NOT SET ({state_dir}/stop.latch: {e.strerror or e}); switching off "
                  f"anyway, but managing may switch loads back on: run stop-loads with the rights to write "
                  f"{state_dir} (sudo), or stop managing", file=sys.stderr)
    results = stop_all(plan.targets, plan.paths, timeout_s) + plan.unusable
    if latch and latch_ok and any(not r.confirmed for r in results):
        results = _through_managing(plan, results, timeout_s)
    return StopOutcome(results, line, latch_ok)


def print_table(results: list[StopResult], out=None, latch: str | None = None) -> None:
    """The per-load table; ``latch``: the latch's line (None with --no-latch)."""
    out = out or sys.stdout
    rows = [("load", "driver", "before", "after", "result")]
    for r in results:
        rows.append((r.load, r.driver, _word(r.before), _word(r.after),
                     "OK off" if r.confirmed else f"NOT CONFIRMED: {r.error or 'unknown state'}"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4], file=out)
    if latch is not None:
        print(f"stop latch: {latch}", file=out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="stop-loads", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=os.environ.get("GESTOR_CONFIG", DEFAULT_CONFIG))
    ap.add_argument("--release", action="store_true", help="clear the stop latch and exit")
    ap.add_argument("--no-latch", action="store_true", help="switch off without setting the latch")
    ap.add_argument("--timeout-s", type=float, default=5.0, help="per relay (default 5)")
    a = ap.parse_args(argv)
    try:
        plan = plan_from_file(a.config)
    except SettingsError as e:
        print(str(e), file=sys.stderr)
        print("STOP-LOADS: the settings file cannot be read at all: NO LOAD WAS SWITCHED OFF. "
              "Switch them off by hand.", file=sys.stderr)
        return 2
    for p in plan.problems:
        print(p, file=sys.stderr)
    if plan.problems:
        print(f"STOP-LOADS: {a.config} is not valid: switching off every load it can still describe "
              f"({len(plan.targets)}), reporting the others; exit 1 whatever happens", file=sys.stderr)
    if a.release:
        was = clear_latch(plan.paths.state_dir)
        print("stop latch released: managing may switch loads again" if was else "no stop latch was set")
        return 0
    outcome = emergency_stop(plan, a.timeout_s, latch=not a.no_latch,
                             by=f"stop-loads pid {os.getpid()} on {socket.gethostname()}")
    results, latch, latch_ok = outcome.results, outcome.latch, outcome.latch_ok
    print_table(results, latch=latch)
    bad = [r for r in results if not r.confirmed]
    for r in bad:
        print(f"STOP-LOADS: load {r.load} NOT CONFIRMED OFF ({r.driver}): {r.error}. "
              f"Switch it off by hand.", file=sys.stderr)
    return 1 if bad or not latch_ok or plan.problems else 0


if __name__ == "__main__":
    sys.exit(main())
