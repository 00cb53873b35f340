"""stop-loads: the emergency stop.

Sets the stop latch first (managing keeps every load off while it exists), then switches every
configured load off through its relay driver, all in parallel with a timeout per relay, reads each
back, prints a table and exits 0 only when every load confirmed off. It needs neither InfluxDB nor
a responsive managing daemon. ``--release`` clears the latch. ``--no-latch`` only switches off
(used by systemd's ExecStopPost when managing stops).
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
from dataclasses import dataclass
from datetime import datetime

from drivers.relays import RELAYS, RelayError
from gestor.clock import WallClock
from gestor.daemon import context
from gestor.livestate import clear_latch, pid_alive, read_managing, set_latch
from gestor.settings import SettingsError, load_settings

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


def stop_all(settings, timeout_s: float = 5.0) -> list[StopResult]:
    """Switch every load off in parallel; read each back. Never raises for a relay's fault."""
    ctx = context(settings, WallClock())

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
    pool = ThreadPoolExecutor(max_workers=max(len(settings.loads), 1))
    futures = [(ld, pool.submit(one, ld)) for ld in settings.loads]
    for ld, fut in futures:
        try:
            results.append(fut.result(timeout=timeout_s))
        except FutureTimeout:
            results.append(StopResult(ld.name, ld.relay.driver, error=f"no answer within {timeout_s:g} s"))
    pool.shutdown(wait=False, cancel_futures=True)
    return results


def _through_managing(settings, results: list[StopResult], timeout_s: float) -> list[StopResult]:
    """Relays stop-loads could not switch may be held by a running managing (a GPIO line is
    claimed by one process only). With the latch set, a healthy managing switches them off within
    a cycle and publishes it: wait for that. If it does not (hung), stop managing (SIGTERM, then
    SIGKILL) so that its lines are released, and try again."""
    st = read_managing(settings.paths.run_dir)
    pid = int(st["pid"]) if st and isinstance(st.get("pid"), int) else None
    if pid is None or pid == os.getpid() or not pid_alive(pid):
        return results
    bad = {r.load for r in results if not r.confirmed}
    t0 = WallClock().now()
    wait_s = 2 * float(st.get("interval_s", 10.0)) + timeout_s
    print(f"waiting up to {wait_s:.0f} s for managing (pid {pid}) to switch {', '.join(sorted(bad))} off "
          "under the latch...")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        st = read_managing(settings.paths.run_dir) or {}
        try:
            fresh = datetime.fromisoformat(st["at"]) > t0 and st.get("latched")
        except (KeyError, TypeError, ValueError):
            fresh = False
        if fresh and all((st.get("loads", {}).get(n) or {}).get("on") is False for n in bad):
            for r in results:
                if r.load in bad:
                    r.after, r.error = False, None
                    r.driver += " (via managing)"
            return results
        time.sleep(0.2)
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
    again = {r.load: r for r in stop_all(settings, timeout_s)}
    return [again.get(r.load, r) if r.load in bad else r for r in results]


def print_table(results: list[StopResult], out=None) -> None:
    out = out or sys.stdout
    rows = [("load", "driver", "before", "after", "result")]
    for r in results:
        rows.append((r.load, r.driver, _word(r.before), _word(r.after),
                     "OK off" if r.confirmed else f"NOT CONFIRMED: {r.error or 'unknown state'}"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4], file=out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="stop-loads", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=os.environ.get("GESTOR_CONFIG", DEFAULT_CONFIG))
    ap.add_argument("--release", action="store_true", help="clear the stop latch and exit")
    ap.add_argument("--no-latch", action="store_true", help="switch off without setting the latch")
    ap.add_argument("--timeout-s", type=float, default=5.0, help="per relay (default 5)")
    a = ap.parse_args(argv)
    try:
        settings = load_settings(a.config)
    except SettingsError as e:
        print(str(e), file=sys.stderr)
        return 2
    state_dir = settings.paths.state_dir
    if a.release:
        was = clear_latch(state_dir)
        print("stop latch released: managing may switch loads again" if was else "no stop latch was set")
        return 0
    if not a.no_latch:
        try:
            set_latch(state_dir, WallClock().now(), f"stop-loads pid {os.getpid()} on {socket.gethostname()}")
            print(f"stop latch set ({state_dir}/stop.latch): managing keeps every load off until "
                  f"'stop-loads --release'")
        except OSError as e:
            print(f"STOP LATCH NOT SET: {e} (switching off anyway)", file=sys.stderr)
    results = stop_all(settings, a.timeout_s)
    if not a.no_latch and any(not r.confirmed for r in results):
        results = _through_managing(settings, results, a.timeout_s)
    print_table(results)
    bad = [r for r in results if not r.confirmed]
    for r in bad:
        print(f"STOP-LOADS: load {r.load} NOT CONFIRMED OFF ({r.driver}): {r.error}. "
              f"Switch it off by hand.", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
