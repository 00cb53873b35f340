"""The emergency stop's acting seam (the program is ``stop_loads``): switch each load off (or
idle each setpoint device) in a thread of its own and read it back (:class:`Stopper`,
:func:`stop_all`), with a timeout per relay and one total deadline; set the stop latch
(:func:`set_the_latch`); confirm through a running managing the relays it holds, stopping it
when it hangs (:func:`through_managing`); :func:`emergency_stop` for the web page's button; and
the per-load table (:func:`print_table`). What to act on is :mod:`gestor.runtime.stoptargets`.

Never raises for a relay's or a device's fault: any exception of a driver is that load's
``StopResult.error``."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gestor.console import print_out
from gestor.runtime.stopplan import relay_id_or_none
from gestor.runtime.stoptargets import (DEFAULT_DEADLINE_S, SUDO, Plan, StopResult, Target, one_line,
                                        same_relay_key)

def _word(v: bool | None) -> str:
    return "?" if v is None else ("on" if v else "off")


def why_line(e: BaseException) -> str:
    """An OSError's reason in a line, with the advice to use sudo when it is a matter of rights."""
    if isinstance(e, PermissionError):
        return f"{e.strerror or e}: {SUDO}"
    return (e.strerror or str(e)) if isinstance(e, OSError) else one_line(e)


def _fault(e: Exception) -> str:
    """A driver's exception as one line: a RelayError's own message; an OSError's reason and
    file (a read-only runtime directory); anything else with its type (a driver's bug)."""
    from drivers.relays import RelayError
    from drivers.setpoints.base import SetpointError
    if isinstance(e, (RelayError, SetpointError)):
        return one_line(e)
    if isinstance(e, OSError) and e.strerror:
        return f"{why_line(e)}" + (f": {e.filename}" if e.filename else "")
    return f"{type(e).__name__}: {one_line(e)}"


def _stop_one(t: Target, run_dir: Path, r: StopResult) -> None:
    """Switch one load off and read it back, filling ``r``. Never raises: any exception of its
    driver (RelayError, OSError from a read-only directory, a driver's bug) is ``r.error``."""
    from drivers import DriverContext
    from drivers.relays import RELAYS
    from gestor.clock import WallClock
    if t.setpoint:
        return _idle_one(t, run_dir, r)
    try:
        _, factory = RELAYS[t.relay.driver]
        relay = factory(t.relay, DriverContext(WallClock(), Path(t.run_dir or run_dir), Path.cwd()), t.name, t.power_w)
    except Exception as e:  # noqa: BLE001 -- a driver that cannot even open must not stop the others
        r.error = f"cannot open relay: {one_line(e)}"
        return

    def read_back() -> None:
        r.after = relay.state()
        if r.after:
            r.error = "relay still reads on"
        else:
            from drivers.relays.base import confirm_off_drawing_w
            drawn = confirm_off_drawing_w(relay, t.power_w)
            if drawn is not None:  # a relay that lies (or welded contacts): its own meter says on
                r.after, r.error = None, (f"relay reads off but its meter shows {drawn:.0f} W drawn: not believed"
                                          if drawn != float("inf") else "relay reads on again after commanding off")

    _command_and_read_back(relay, r, relay.state, lambda: relay.set(False), read_back)


def _idle_one(t: Target, run_dir: Path, r: StopResult) -> None:
    """Send one device with a power setpoint to its idle and read it back, filling ``r``
    (``before``/``after``: whether it held a setpoint other than 0 W). Never raises."""
    from drivers import DriverContext
    from drivers.setpoints import SETPOINTS
    from gestor.clock import WallClock
    try:
        _, factory = SETPOINTS[t.relay.driver]
        dev = factory(t.relay, DriverContext(WallClock(), Path(t.run_dir or run_dir), Path.cwd()), t.name)
    except Exception as e:  # noqa: BLE001 -- a driver that cannot even open must not stop the others
        r.error = f"cannot open device: {one_line(e)}"
        return

    def read_back() -> None:
        st = dev.state()
        r.after = st.setpoint_w != 0.0
        if r.after:
            r.error = f"device still reads a setpoint of {st.setpoint_w:+.0f} W after idle"

    _command_and_read_back(dev, r, lambda: dev.state().setpoint_w != 0.0, dev.idle, read_back)


def _command_and_read_back(driver: Any, r: StopResult, before: Any, command: Any, read_back: Any) -> None:
    """The common part of :func:`_stop_one` and :func:`_idle_one` on an opened ``driver``:
    ``r.before`` from ``before()`` (a failure there is ignored: the command may still work),
    then ``command()`` and ``read_back()`` (which fills ``r.after``/``r.error``); any exception
    (RelayError, SetpointError, OSError, a driver's bug) is ``r.error``; the driver is closed
    whatever happens. Never raises."""
    try:
        try:
            r.before = before()
        except Exception:  # noqa: BLE001 -- the command below may still work; report only its outcome
            pass
        command()
        read_back()
    except Exception as e:  # noqa: BLE001 -- RelayError, SetpointError, OSError, anything: that load's error
        r.error = _fault(e)
    finally:
        try:
            driver.close()
        except Exception:  # noqa: BLE001
            pass


class Stopper:
    """Switches loads off as they are added, each in a daemon thread of its own, and collects the
    outcomes within a timeout per relay and one total deadline: a relay that never finishes (a
    device dripping one byte a second) is reported and abandoned, never waited for."""

    def __init__(self, run_dir: Path | str, deadline: float, timeout_s: float = 5.0) -> None:
        """``deadline``: ``time.monotonic()`` by which :meth:`results` returns; ``timeout_s``: per
        relay, from the moment it was added."""
        self.run_dir = Path(run_dir)
        self.deadline = deadline
        self.timeout_s = timeout_s
        self.jobs: list[tuple[Target, StopResult, threading.Thread, float]] = []
        self.keys: set[tuple[str, str, str]] = set()

    def add(self, t: Target, once: bool = True) -> bool:
        """Start switching ``t`` off now, unless (``once``) the same relay of the same load is
        already being switched. Returns whether it was started."""
        if once:
            key = same_relay_key(t, self.run_dir)
            if key in self.keys:
                return False
            self.keys.add(key)
        r = StopResult(t.name, t.relay.driver + (" setpoint" if t.setpoint else "")
                       + (f" ({t.origin})" if t.origin else ""))
        th = threading.Thread(target=_stop_one, args=(t, self.run_dir, r), name=f"stop-{t.name}", daemon=True)
        th.start()
        self.jobs.append((t, r, th, time.monotonic()))
        return True

    def results(self) -> list[StopResult]:
        """Each load's outcome, in the order added; waits at most until the deadline."""
        out = []
        for t, r, th, started in self.jobs:
            until = min(started + self.timeout_s, self.deadline)
            th.join(max(0.0, until - time.monotonic()))
            if th.is_alive():
                why = (f"no answer within {self.timeout_s:g} s" if started + self.timeout_s <= self.deadline
                       else "no answer before the total deadline")
                out.append(StopResult(r.load, r.driver, r.before, None, why))
            else:
                out.append(r)
        return out


def stop_all(targets, paths: Any, timeout_s: float = 5.0, deadline: float | None = None) -> list[StopResult]:
    """Switch every load off in parallel; read each back. Never raises for a relay's fault (any
    exception of a driver is that load's error). ``targets``: :class:`Target` s or the settings'
    loads (``name``, ``relay``, ``power_w``); ``deadline``: ``time.monotonic()`` by which it
    returns whatever the devices do (default: ``timeout_s`` from now)."""
    st = Stopper(paths.run_dir, time.monotonic() + timeout_s if deadline is None else deadline, timeout_s)
    for ld in targets:
        st.add(ld if isinstance(ld, Target) else Target(ld.name, ld.relay, ld.power_w), once=False)
    return st.results()


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


def through_managing(plan: Plan, results: list[StopResult], timeout_s: float,
                      deadline: float | None = None) -> list[StopResult]:
    """Relays stop-loads could not switch may be held by a running managing (a GPIO line is
    claimed by one process only). With the latch set, a healthy managing switches them off within
    a cycle and publishes it: wait for that. If it does not (hung), stop managing (SIGTERM, then
    SIGKILL) so that its lines are released, and try again; all before ``deadline``
    (``time.monotonic()``; default: no bound but the waits' own)."""
    from gestor.runtime.livestate import pid_alive, read_managing
    end = float("inf") if deadline is None else deadline
    st = read_managing(plan.paths.run_dir)
    pid = st["pid"] if st and isinstance(st.get("pid"), int) and not isinstance(st.get("pid"), bool) else None
    if pid is None or pid == os.getpid() or not pid_alive(pid):
        return results
    # only the loads whose relay is the one managing drives (same fingerprint) can be confirmed
    # through it: a load of the same name moved to another relay cannot
    published = st.get("loads") if isinstance(st.get("loads"), dict) else {}
    mine = {i for i, t in enumerate(plan.targets) if i < len(results) and not results[i].confirmed
            and isinstance(published.get(t.name), dict) and published[t.name].get("relay_id") == relay_id_or_none(t.relay)}
    bad = {plan.targets[i].name for i in mine}
    if not bad:
        return results
    cycle0 = st.get("cycle")  # a cycle after this one has seen the latch (clocks may differ: drills)
    # what the end needs: SIGKILL's wait (1 s) and one more try (timeout_s)
    wait_s = min(2 * float(st.get("interval_s", 10.0)) + timeout_s, end - time.monotonic() - 1.0 - timeout_s)
    if wait_s <= 0:
        print(f"no time left to wait for managing (pid {pid}) within the deadline", file=sys.stderr)
        return results
    print_out(f"waiting up to {wait_s:.0f} s for managing (pid {pid}) to switch {', '.join(sorted(bad))} off "
              "under the latch...")
    until = time.monotonic() + wait_s
    while time.monotonic() < until:
        st = read_managing(plan.paths.run_dir) or {}
        fresh = st.get("latched") is True and isinstance(st.get("cycle"), int) and st.get("cycle") != cycle0
        if fresh and all((st.get("loads", {}).get(n) or {}).get("on") is False for n in bad):
            for i in mine:
                results[i].after, results[i].error = False, None
                results[i].driver += " (via managing)"
            return results
        time.sleep(0.2)
    if not is_managing(pid):
        print(f"pid {pid} (from {plan.paths.run_dir}/managing.json) is not gestor's managing daemon: "
              "not signalled", file=sys.stderr)
        return results
    print(f"managing (pid {pid}) did not confirm: stopping it so its relays are released", file=sys.stderr)
    # SIGTERM's grace (managing switches its loads off on it) shrinks to what the deadline leaves
    term_s = min(10.0, end - time.monotonic() - 1.0 - timeout_s)
    for sig, grace in ((signal.SIGTERM, term_s), (signal.SIGKILL, 1.0)):
        if grace <= 0:
            continue
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        stop = time.monotonic() + grace
        while pid_alive(pid) and time.monotonic() < stop:
            time.sleep(0.1)
        if not pid_alive(pid):
            break
    # results[i] is plan.targets[i]'s (the unusable ones follow): try the unconfirmed ones again
    retry = sorted(mine)
    again = stop_all([plan.targets[i] for i in retry], plan.paths, timeout_s, min(end, time.monotonic() + timeout_s))
    out = list(results)
    for i, r in zip(retry, again):
        r.driver = results[i].driver  # as labelled in the table
        out[i] = r
    return out


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


def set_the_latch(state_dir: Path | str, by: str) -> tuple[str, bool]:
    """Set the stop latch in ``state_dir``, printing how it went: (the table's line, set?)."""
    from datetime import datetime, timezone

    from gestor.runtime.livestate import set_latch
    try:
        set_latch(Path(state_dir), datetime.now(timezone.utc), by)
    except OSError as e:
        why = f"{e.strerror or e}" + (f": {SUDO}" if isinstance(e, PermissionError) else "")
        print(f"STOP-LOADS: STOP LATCH NOT SET ({state_dir}/stop.latch: {why}); switching off anyway, but "
              f"managing may switch loads back on: run stop-loads with the rights to write {state_dir} (sudo), "
              "or stop managing", file=sys.stderr)
        return f"NOT SET: {why}: managing may switch the loads back on", False
    print_out(f"stop latch set ({state_dir}/stop.latch): managing keeps every load off until 'stop-loads --release'")
    return f"SET ({state_dir}/stop.latch): managing keeps every load off until 'stop-loads --release'", True


def emergency_stop(plan: Plan, timeout_s: float = 5.0, latch: bool = True, by: str = "stop-loads",
                   deadline_s: float = DEFAULT_DEADLINE_S) -> StopOutcome:
    """The emergency stop, for the web page's button: set the stop latch (``by`` says who, in
    the latch file), switch every load of ``plan`` off in parallel and read each back; loads held
    by a running managing are confirmed through it (see :func:`through_managing`); all within
    ``deadline_s``. Prints the latch's progress; never raises for a relay's fault."""
    deadline = time.monotonic() + deadline_s
    line, latch_ok = set_the_latch(plan.paths.state_dir, by) if latch else (None, True)
    results = stop_all(plan.targets, plan.paths, timeout_s, deadline) + plan.unusable
    if latch and latch_ok and any(not r.confirmed for r in results):
        results = through_managing(plan, results, timeout_s, deadline)
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
        print_out("  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4], file=out)
    if latch is not None:
        print_out(f"stop latch: {latch}", file=out)
