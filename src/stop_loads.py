"""stop-loads: the emergency stop.

Sets the stop latch (managing keeps every load off while it exists), switches every load off
through its relay driver, each in a thread of its own with a timeout per relay and one total
deadline (``--deadline-s``, 15 s), reads each back, prints a table and exits 0 only when every
load confirmed off **and** the latch is set. It needs neither InfluxDB nor a responsive managing
daemon, nor even a readable settings file. ``--release`` clears the latch. ``--no-latch`` only
switches off (used by systemd's ExecStopPost when managing stops).

Where the loads come from, fastest first:

1. **The stop plan** ``<state_dir>/stop-plan.json``, which managing writes at every start (after
   its settings validated and its relays opened): the loads it runs, their relay sections
   (secrets included: mode 0600, owner the daemon's user; root reads it), their power and the
   directories. stop-loads reads it first (plain JSON; only the drivers it names are imported)
   and starts switching at once, before the settings file is even parsed. It is looked for at
   ``--plan FILE``, else in the default state directory (``$GESTOR_STATE_DIR``, else
   ``/var/lib/gestor``) when it was saved from the same settings file, and in the state directory
   the settings file names.
2. **The settings file**: every load it describes, even when it is partly invalid (every relay
   section its driver accepts); a load the plan has and the file lacks, or whose relay changed,
   is switched off too (the union: managing may still run the old file).
3. **A settings file that cannot be read at all** (missing, unreadable, not YAML, too big...):
   the plan alone, said on stderr; without a plan, nothing is known: the latch is still set and
   the exit code says so. The exit code is then 1, never 0.

The plan may add loads to switch off, never move the latch or the read-back (issue 32, item 4):
the latch always goes to the default state directory and to the settings' ``paths.state_dir``;
every relay is read back under the settings' ``paths.run_dir``, else the default run directory
(``$GESTOR_RUN_DIR``, else ``/run/gestor``); the plan's own ``paths`` are never used.

Exit codes: 0 all confirmed off and the latch set; 1 anything else (each unconfirmed load is
named on stderr); 2 only for a bad command line.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from gestor.console import print_out
from gestor.runtime.stopplan import (PLAN_FILE, PLAN_FORMAT, plan_path, relay_id, relay_id_or_none,  # noqa: F401
                                     relay_section, save_plan, write_plan)

DEFAULT_CONFIG = "/etc/gestor/settings.yaml"
DEFAULT_STATE_DIR = "/var/lib/gestor"  # = gestor.settings.PathsSettings' default (a test checks)
DEFAULT_RUN_DIR = "/run/gestor"        # idem
STATE_DIR_ENV = "GESTOR_STATE_DIR"     # overrides DEFAULT_STATE_DIR here (tests, drills)
RUN_DIR_ENV = "GESTOR_RUN_DIR"         # overrides DEFAULT_RUN_DIR here (tests, drills)
PLAN_MAX_BYTES = 256 * 1024
DEFAULT_DEADLINE_S = 15.0
SUDO = "run it with sudo"


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
class Paths:
    """The directories stop-loads uses (the settings' ``paths``, without importing them)."""

    state_dir: Path = Path(DEFAULT_STATE_DIR)
    run_dir: Path = Path(DEFAULT_RUN_DIR)


@dataclass
class Target:
    """A load stop-loads can switch: its name, its relay's validated settings and its power;
    ``run_dir``: the runtime directory its driver gets (None: the plan's); ``origin``: shown
    beside the driver ("saved plan" for a load only the stop plan has)."""

    name: str
    relay: Any
    power_w: float = 0.0
    run_dir: Path | None = None
    origin: str = ""
    setpoint: bool = False  # a device with a power setpoint (``relay`` holds its device section): idled


class PlanError(ValueError):
    """A stop plan file that is not a plan (not JSON, wrong shape, another format)."""


def default_state_dir() -> Path:
    """``$GESTOR_STATE_DIR`` or ``/var/lib/gestor``: where the latch goes when nothing says
    otherwise, and where the stop plan is looked for before the settings file is read."""
    return Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)


def default_run_dir() -> Path:
    """``$GESTOR_RUN_DIR`` or ``/run/gestor``: where the relays' state is read back (and managing's
    published state read) when the settings file cannot say. Never a stop plan's ``run_dir``: a
    rewritten plan must not move the read-back (issue 32, item 4)."""
    return Path(os.environ.get(RUN_DIR_ENV) or DEFAULT_RUN_DIR)


def trusted_paths() -> Paths:
    """The directories stop-loads trusts before (or without) the settings file: the defaults."""
    return Paths(default_state_dir(), default_run_dir())


def _same_relay_key(t: Target, run_dir: Path) -> tuple[str, str, str]:
    return t.name, str(t.run_dir or run_dir), json.dumps(relay_section(t.relay), sort_keys=True)


@dataclass
class Plan:
    """What stop-loads could make of the settings file or the stop plan: the loads it can switch,
    those it cannot (with why), and the directories."""

    targets: list[Target] = field(default_factory=list)
    unusable: list[StopResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    paths: Any = field(default_factory=Paths)

    @classmethod
    def of(cls, s: Any) -> "Plan":
        """Every load of valid settings."""
        return cls([Target(ld.name, ld.relay, ld.power_w) for ld in s.loads]
                   + [Target(d.name, d.device, setpoint=True) for d in getattr(s, "setpoints", ())], paths=s.paths)

    def save(self, path: Path | str, settings_file: Path | str | None = None, config_dir: Path | str | None = None,
             by: str = "managing") -> None:
        """Write this plan as the stop plan ``path`` (JSON, see :func:`read_plan`): atomically,
        fsynced, mode 0600 and owned by the writer (the relay sections hold the secrets that reach
        the devices: the daemon's user and root read it, nobody else). Raises OSError."""
        write_plan(path, [(t.name, t.power_w, t.relay) for t in self.targets if not t.setpoint], self.paths.state_dir,
                   self.paths.run_dir, settings_file, config_dir, by,
                   setpoints=[(t.name, t.relay) for t in self.targets if t.setpoint])

    def add_saved(self) -> list[str]:
        """Add the relays of the stop plan managing saved under this plan's state dir that this
        plan lacks (managing may still run an older settings file); returns their loads' names.
        No saved plan, or an unreadable one: nothing added."""
        try:
            saved = Plan.load(plan_path(self.paths.state_dir))
        except (OSError, ValueError):
            return []
        run_dir = Path(self.paths.run_dir)
        have = {_same_relay_key(t, run_dir) for t in self.targets}
        extra = [t for t in saved.targets if _same_relay_key(t, run_dir) not in have]
        self.targets += extra
        return [t.name for t in extra]

    @classmethod
    def load(cls, path: Path | str) -> "Plan":
        """A saved stop plan, every relay section validated by its driver (a section its driver
        refuses is in ``unusable``). ``paths`` is what the plan says, for people: its targets
        carry no directory (the caller's trusted ``run_dir`` is used). Raises as :func:`read_plan`."""
        doc = read_plan(path)
        plan = cls(paths=plan_paths(doc))
        for t in plan_targets(doc):
            (plan.targets if isinstance(t, Target) else plan.unusable).append(t)
        return plan


def read_plan(path: Path | str) -> dict[str, Any]:
    """The stop plan file as checked JSON (no driver imported): ``format`` 1, ``paths``
    (``state_dir``, ``run_dir``), ``loads`` (each ``name``, ``power_w``, ``relay``), and for
    people ``saved_at``, ``by``, ``settings`` (the settings file it came from) and ``config_dir``.

    Raises:
        FileNotFoundError: there is none. PermissionError: not allowed to read it (run with sudo).
        OSError: any other failure to read it, or not a small regular file.
        PlanError: not a stop plan (not JSON, wrong shape, another format).
    """
    from gestor.files import read_small_text
    try:
        doc = json.loads(read_small_text(path, PLAN_MAX_BYTES))
    except (ValueError, RecursionError) as e:
        raise PlanError(f"{path}: not a stop plan (not JSON: {e})") from None
    fmt = doc.get("format") if isinstance(doc, dict) else None
    if isinstance(fmt, bool) or fmt != PLAN_FORMAT or not isinstance(doc.get("loads"), list):
        raise PlanError(f"{path}: not a stop plan of format {PLAN_FORMAT}")
    p = doc.get("paths")
    if not (isinstance(p, dict) and isinstance(p.get("state_dir"), str) and isinstance(p.get("run_dir"), str)):
        raise PlanError(f"{path}: not a stop plan (paths.state_dir and paths.run_dir missing)")
    return doc


def plan_paths(doc: dict[str, Any]) -> Paths:
    return Paths(Path(doc["paths"]["state_dir"]), Path(doc["paths"]["run_dir"]))


def plan_targets(doc: dict[str, Any], origin: str = "", run_dir: Path | None = None) -> Iterator[Target | StopResult]:
    """The loads of a checked plan (:func:`read_plan`) one by one, each relay section validated
    by its driver's model when it is reached (only the drivers named are imported): a
    :class:`Target`, or a :class:`StopResult` saying why that load cannot be switched; then its
    devices with a power setpoint likewise. ``run_dir``: where their state is read back (the
    caller's trusted directory; None: the stopper's). The plan's own ``paths`` are never used: a
    plan may add loads to switch off, never move the latch or the read-back (issue 32, item 4)."""
    ctx = {"config_dir": Path(doc["config_dir"])} if isinstance(doc.get("config_dir"), str) else None
    yield from _targets(doc["loads"], False, ctx, run_dir, origin, "stop plan: ")
    yield from _targets(doc.get("setpoints"), True, ctx, run_dir, origin, "stop plan: ")


def _targets(items: Any, setpoint: bool, ctx: dict | None, run_dir: Path | None, origin: str,
             where: str) -> Iterator[Target | StopResult]:
    """The loads (``setpoint`` False: ``name``, ``relay`` section, ``power_w``) or the devices
    with a power setpoint (True: ``name``, ``device`` section) of a plan or settings file, each
    section validated by its driver's model: a :class:`Target`, or a :class:`StopResult` saying
    why it cannot be switched off or idled."""
    if not isinstance(items, list):
        return
    from drivers import DEVICE_NAME
    if setpoint:
        from drivers.setpoints import SETPOINTS as registry
    else:
        from drivers.relays import RELAYS as registry
    key, what = ("device", "setpoints") if setpoint else ("relay", "loads")
    for i, d in enumerate(items):
        ok = isinstance(d, dict) and isinstance(d.get("name"), str)
        name = d["name"] if ok else f"{what}[{i}]"
        sec = d.get(key) if ok else None
        driver = sec.get("driver") if isinstance(sec, dict) else None
        if ok and not DEVICE_NAME.fullmatch(name):  # a simulated device's state file is named after it
            yield StopResult(name[:40], str(driver), error=f"{where}name {name[:40]!r} refused: must be lowercase "
                             "letters, digits and _, starting with a letter (a name is never a path)")
            continue
        if driver not in registry:
            yield StopResult(name, str(driver), error=f"{where}{key} section unusable (driver {driver!r})")
            continue
        try:
            dev = registry[driver][0].model_validate(sec, context=ctx)
        except Exception as e:  # noqa: BLE001 -- a ValidationError, or a driver that cannot be imported
            yield StopResult(name, driver, error=f"{where}{key} section refused by its driver: {_one_line(e)}")
            continue
        power = d.get("power_w")
        yield Target(name, dev, float(power) if isinstance(power, (int, float)) else 0.0, run_dir, origin,
                     setpoint=setpoint)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def plan_from_file(path: str) -> Plan:
    """Best effort on any settings file: a fully valid one gives every load; an invalid one still
    gives every load whose relay section its driver accepts. Raises SettingsError only when the
    file cannot be read or parsed at all."""
    from pydantic import ValidationError

    from drivers.relays import RELAYS
    from gestor.settings import PathsSettings, SettingsError, load_settings, read_raw
    try:
        return Plan.of(load_settings(path))
    except SettingsError as e:
        problems = list(e.errors)
    try:
        raw = read_raw(path)
    except SettingsError:
        raw = read_raw(path, secrets_optional=True)  # a relay without its password may still be a GPIO line
    plan = Plan(problems=problems, paths=PathsSettings())
    if isinstance(raw, dict):
        try:
            plan.paths = PathsSettings.model_validate(raw.get("paths") or {})
        except ValidationError:
            pass
    loads = raw.get("loads") if isinstance(raw, dict) else None
    ctx = {"config_dir": Path(path).resolve().parent}
    for i, ld in enumerate(loads if isinstance(loads, list) else []):
        name = ld.get("name") if isinstance(ld, dict) and isinstance(ld.get("name"), str) else f"loads[{i}]"
        sec = ld.get("relay") if isinstance(ld, dict) else None
        driver = sec.get("driver") if isinstance(sec, dict) else None
        if driver not in RELAYS:
            plan.unusable.append(StopResult(name, str(driver), error=f"relay section unusable (driver {driver!r})"))
            continue
        try:
            relay = RELAYS[driver][0].model_validate(sec, context=ctx)
        except ValidationError as e:
            first = e.errors()[0]
            plan.unusable.append(StopResult(name, driver, error=f"relay section invalid: "
                                            f"{'.'.join(map(str, first['loc']))}: {first['msg']}"))
            continue
        power = ld.get("power_w") if isinstance(ld.get("power_w"), (int, float)) else 0.0
        plan.targets.append(Target(name, relay, float(power)))
    for t in _targets(raw.get("setpoints") if isinstance(raw, dict) else None, True, ctx, None, "", ""):
        (plan.targets if isinstance(t, Target) else plan.unusable).append(t)
    return plan


def _fault(e: Exception) -> str:
    """A driver's exception as one line: a RelayError's own message; an OSError's reason and
    file (a read-only runtime directory); anything else with its type (a driver's bug)."""
    from drivers.relays import RelayError
    from drivers.setpoints.base import SetpointError
    if isinstance(e, (RelayError, SetpointError)):
        return _one_line(e)
    if isinstance(e, OSError) and e.strerror:
        return f"{_why(e)}" + (f": {e.filename}" if e.filename else "")
    return f"{type(e).__name__}: {_one_line(e)}"


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
        r.error = f"cannot open relay: {_one_line(e)}"
        return
    try:
        try:
            r.before = relay.state()
        except Exception:  # noqa: BLE001 -- the command below may still work; report only its outcome
            pass
        relay.set(False)
        r.after = relay.state()
        if r.after:
            r.error = "relay still reads on"
        else:
            from drivers.relays.base import confirm_off_drawing_w
            drawn = confirm_off_drawing_w(relay, t.power_w)
            if drawn is not None:  # a relay that lies (or welded contacts): its own meter says on
                r.after, r.error = None, (f"relay reads off but its meter shows {drawn:.0f} W drawn: not believed"
                                          if drawn != float("inf") else "relay reads on again after commanding off")
    except Exception as e:  # noqa: BLE001 -- RelayError, OSError, anything: that load's error
        r.error = _fault(e)
    finally:
        try:
            relay.close()
        except Exception:  # noqa: BLE001
            pass


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
        r.error = f"cannot open device: {_one_line(e)}"
        return
    try:
        try:
            r.before = dev.state().setpoint_w != 0.0
        except Exception:  # noqa: BLE001 -- the command below may still work; report only its outcome
            pass
        dev.idle()
        st = dev.state()
        r.after = st.setpoint_w != 0.0
        if r.after:
            r.error = f"device still reads a setpoint of {st.setpoint_w:+.0f} W after idle"
    except Exception as e:  # noqa: BLE001 -- SetpointError, OSError, anything: that device's error
        r.error = _fault(e)
    finally:
        try:
            dev.close()
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
            key = _same_relay_key(t, self.run_dir)
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


def _through_managing(plan: Plan, results: list[StopResult], timeout_s: float,
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
    by a running managing are confirmed through it (see :func:`_through_managing`); all within
    ``deadline_s``. Prints the latch's progress; never raises for a relay's fault."""
    deadline = time.monotonic() + deadline_s
    line, latch_ok = set_the_latch(plan.paths.state_dir, by) if latch else (None, True)
    results = stop_all(plan.targets, plan.paths, timeout_s, deadline) + plan.unusable
    if latch and latch_ok and any(not r.confirmed for r in results):
        results = _through_managing(plan, results, timeout_s, deadline)
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


def _args(argv: list[str] | None):
    import argparse
    ap = argparse.ArgumentParser(prog="stop-loads", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=os.environ.get("GESTOR_CONFIG", DEFAULT_CONFIG))
    ap.add_argument("--release", action="store_true", help="clear the stop latch and exit")
    ap.add_argument("--no-latch", action="store_true", help="switch off without setting the latch")
    ap.add_argument("--timeout-s", type=float, default=5.0, help="per relay (default 5)")
    ap.add_argument("--deadline-s", type=float, default=DEFAULT_DEADLINE_S,
                    help="in all, whatever a device does (default 15)")
    ap.add_argument("--plan", default=None,
                    help=f"the stop plan to act on first (default: {DEFAULT_STATE_DIR}/{PLAN_FILE}, or "
                         f"${STATE_DIR_ENV}/{PLAN_FILE}, when saved from the same settings file)")
    a = ap.parse_args(argv)
    if not (a.timeout_s > 0 and a.deadline_s > 0):
        ap.error("--timeout-s and --deadline-s must be > 0")
    return a


def _why(e: BaseException) -> str:
    """An OSError's reason in a line, with the advice to use sudo when it is a matter of rights."""
    if isinstance(e, PermissionError):
        return f"{e.strerror or e}: {SUDO}"
    return (e.strerror or str(e)) if isinstance(e, OSError) else _one_line(e)


def _read_plan_quietly(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(the checked plan, None), (None, why it cannot be used), or (None, None) when there is none."""
    try:
        return read_plan(path), None
    except FileNotFoundError:
        return None, None
    except PlanError as e:
        return None, f"the stop plan {e} is not usable"
    except OSError as e:
        return None, f"cannot read the stop plan {path}: {_why(e)}"


def _sudo_hint(lines: list[str]) -> list[str]:
    return [ln + (f" ({SUDO})" if "Permission denied" in ln and "sudo" not in ln else "") for ln in lines]


def _unique_dirs(dirs: list[Path]) -> list[Path]:
    """``dirs`` without repeats (by real path), in order."""
    seen: dict[str, Path] = {}
    for d in dirs:
        seen.setdefault(os.path.realpath(d), Path(d))
    return list(seen.values())


def _release(a) -> int:
    """``--release``: the latch of the default state dir and of the settings' (never a stop
    plan's: stop-loads sets the latch only in those two)."""
    from gestor.runtime.livestate import clear_latch
    from gestor.settings import SettingsError
    try:
        state_dir = Path(plan_from_file(a.config).paths.state_dir)
    except SettingsError as e:
        state_dir = default_state_dir()
        print("\n".join(_sudo_hint(e.errors)), file=sys.stderr)
        print(f"STOP-LOADS: {a.config} cannot be read: releasing the latch in {state_dir}", file=sys.stderr)
    was = False
    for d in _unique_dirs([default_state_dir(), state_dir]):  # where stop-loads sets it
        try:
            was = clear_latch(d) or was
        except OSError as e:
            print(f"STOP-LOADS: {e if type(e).__name__ == 'LatchError' else _why(e)}", file=sys.stderr)
            return 1
    print_out("stop latch released: managing may switch loads again" if was else "no stop latch was set")
    return 0


def main(argv: list[str] | None = None, hard_exit: bool | None = None) -> int:
    """The ``stop-loads`` command. ``hard_exit`` (default: when run as the command, ``argv``
    None): end the process with ``os._exit`` once the table is printed if a relay's thread is
    still hanging, so that nothing waits for it. A reader of its output that goes away
    (``stop-loads | head -1``) changes nothing: every load is still switched, the warnings still
    reach stderr and the exit code is the stop's."""
    from gestor.console import flush_stdout, quiet_on_broken_pipe
    a = quiet_on_broken_pipe(lambda: _args(argv))  # --help into a closed pipe
    if isinstance(a, int):
        return a
    if a.release:
        return quiet_on_broken_pipe(lambda: _release(a))
    code = _stop(a)
    if (argv is None if hard_exit is None else hard_exit) and threading.active_count() > 1:
        flush_stdout()
        sys.stderr.flush()
        os._exit(code)  # threads left hanging on a device: the deadline is the deadline
    flush_stdout()
    return code


def _stop(a) -> int:
    deadline = time.monotonic() + a.deadline_s
    by = f"stop-loads pid {os.getpid()} on {os.uname().nodename}"
    config = os.path.realpath(a.config)
    stopper: Stopper | None = None
    notes: list[str] = []            # lines for stderr, after the table's latch lines
    latched: dict[str, tuple[str, bool]] = {}  # state dir -> (line, ok)
    read_plans: set[str] = set()
    saved: dict[str, Any] | None = None  # the plan acted on (the first found)
    saved_at: Path | None = None
    extra: list[str] = []            # loads (or relays) only the stop plan has

    def latch_in(state_dir: Path) -> None:
        key = os.path.realpath(state_dir)
        if not a.no_latch and key not in latched:
            latched[key] = set_the_latch(state_dir, by)

    def act_on(doc: dict[str, Any], path: Path, run_dir: Path, origin: str = "saved plan") -> None:
        """Switch off the loads of plan ``doc``, read back under ``run_dir`` (trusted: the
        default's or the settings'; never the plan's own, nor its state_dir for the latch)."""
        nonlocal stopper, saved, saved_at
        if stopper is None:
            stopper = Stopper(run_dir, deadline, a.timeout_s)
        if saved is None:
            saved, saved_at = doc, path
        for t in plan_targets(doc, origin, run_dir):
            if isinstance(t, Target):
                stopper.add(t)
            else:
                unusable.append(t)

    unusable: list[StopResult] = []
    trusted = trusted_paths()
    # 1. the stop plan in the default place, when it belongs to this settings file: act at once
    first = Path(a.plan) if a.plan else plan_path(default_state_dir())
    read_plans.add(os.path.realpath(first))
    doc0, why0 = _read_plan_quietly(first)
    if doc0 is not None and (a.plan or doc0.get("settings") == config):
        act_on(doc0, first, trusted.run_dir)
    latch_in(trusted.state_dir)  # always: where managing looks when nothing else says
    # 2. the settings file
    from gestor.settings import SettingsError
    try:
        plan = plan_from_file(a.config)
    except SettingsError as e:
        print("\n".join(_sudo_hint(e.errors)), file=sys.stderr)
        if doc0 is not None:
            if saved is None:
                act_on(doc0, first, trusted.run_dir)
            print(f"STOP-LOADS: {a.config} cannot be read: switching off the loads of the stop plan {first} "
                  f"(saved {doc0.get('saved_at', '?')} by {doc0.get('by', '?')}); exit 1 whatever happens",
                  file=sys.stderr)
        else:
            print(f"STOP-LOADS: {a.config} cannot be read and there is no usable stop plan "
                  f"({why0 or f'none at {first}'}): NO LOAD IS KNOWN, NONE WAS SWITCHED OFF. "
                  "Switch them off by hand.", file=sys.stderr)
        plan = Plan(paths=trusted, problems=[f"{a.config}: cannot be read"])
    else:
        for p in _sudo_hint(plan.problems):
            print(p, file=sys.stderr)
        if plan.problems:
            print(f"STOP-LOADS: {a.config} is not valid: switching off every load it can still describe "
                  f"({len(plan.targets)}), reporting the others; exit 1 whatever happens", file=sys.stderr)
        latch_in(Path(plan.paths.state_dir))
        if stopper is None:
            stopper = Stopper(Path(plan.paths.run_dir), deadline, a.timeout_s)
        plan_keys = set()
        for t in plan.targets:
            t.run_dir = t.run_dir or Path(plan.paths.run_dir)
            plan_keys.add(_same_relay_key(t, stopper.run_dir))
            stopper.add(t)
        # the plan managing saved under this file's state dir (it may still run an older file)
        here = plan_path(plan.paths.state_dir)
        if os.path.realpath(here) in read_plans:
            doc, why = doc0, why0
        else:
            read_plans.add(os.path.realpath(here))
            doc, why = _read_plan_quietly(here)
        if doc is not None and doc is not saved:
            act_on(doc, here, Path(plan.paths.run_dir))
        elif why and saved is None:
            notes.append(f"STOP-LOADS: {why}; the settings file alone is used")
        for t, r, _, _ in stopper.jobs:
            if not t.origin:
                continue
            if _same_relay_key(t, stopper.run_dir) in plan_keys:
                r.driver = t.relay.driver  # the file has it too: no "(saved plan)"
            else:
                extra.append(t.name)
    if stopper is not None:
        plan.targets = [t for t, _, _, _ in stopper.jobs]
    if extra:
        notes.append(f"STOP-LOADS: the stop plan {saved_at} (managing's last start) has relays the settings file "
                     f"lacks: switched off too: {', '.join(extra)}")
    results = (stopper.results() if stopper else []) + plan.unusable + unusable
    latch_ok = all(ok for _, ok in latched.values())
    if latched and latch_ok and any(not r.confirmed for r in results):
        results = _through_managing(plan, results, a.timeout_s, deadline)
    latch = None if a.no_latch else "; ".join(line for line, _ in sorted(latched.values(), key=lambda x: x[1])) or "NOT SET"
    print_table(results, latch=latch)
    if plan.targets and not plan.unusable and not unusable and all(t.setpoint for t in plan.targets):
        print_out(f"no on/off loads (loads: [] in {a.config}): its setpoint devices were idled")
    for n in notes:
        print(n, file=sys.stderr)
    bad = [r for r in results if not r.confirmed]
    for r in bad:
        print(f"STOP-LOADS: load {r.load} NOT CONFIRMED OFF ({r.driver}): {r.error}. "
              f"Switch it off by hand.", file=sys.stderr)
    return 1 if bad or not latch_ok or plan.problems or not results else 0


if __name__ == "__main__":
    sys.exit(main())
