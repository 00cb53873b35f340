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

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from gestor.console import print_out
# every name below is also stop_loads' own: the web page, the CLI, the tests and the benchmarks
# import them from here (the program's seams: what to stop, and stopping it)
from gestor.runtime.stopping import (StopOutcome, Stopper, emergency_stop, is_managing,  # noqa: F401
                                     print_table, set_the_latch, stop_all, through_managing, why_line)
from gestor.runtime.stopplan import (PLAN_FILE, PLAN_FORMAT, plan_path, relay_id, relay_id_or_none,  # noqa: F401
                                     relay_section, save_plan, write_plan)
from gestor.runtime.stoptargets import (DEFAULT_CONFIG, DEFAULT_DEADLINE_S, DEFAULT_RUN_DIR,  # noqa: F401
                                        DEFAULT_STATE_DIR, PLAN_MAX_BYTES, RUN_DIR_ENV, STATE_DIR_ENV, SUDO,
                                        Paths, Plan, PlanError, StopResult, Target, default_run_dir,
                                        default_state_dir, plan_from_file, plan_paths, plan_targets,
                                        read_plan, same_relay_key, trusted_paths)



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



def _read_plan_quietly(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(the checked plan, None), (None, why it cannot be used), or (None, None) when there is none."""
    try:
        return read_plan(path), None
    except FileNotFoundError:
        return None, None
    except PlanError as e:
        return None, f"the stop plan {e} is not usable"
    except OSError as e:
        return None, f"cannot read the stop plan {path}: {why_line(e)}"


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
            print(f"STOP-LOADS: {e if type(e).__name__ == 'LatchError' else why_line(e)}", file=sys.stderr)
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
            plan_keys.add(same_relay_key(t, stopper.run_dir))
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
            if same_relay_key(t, stopper.run_dir) in plan_keys:
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
        results = through_managing(plan, results, a.timeout_s, deadline)
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
