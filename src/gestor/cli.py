"""``gestor <command>``: monitoring, managing, stop-loads, check, meter-test, override, db-init, simulate, tune, status, demo, web,
virtual-meter, setup, bill.

Exit codes: 0 fine, 1 a runtime/startup error (one line naming the file, key or address),
2 invalid settings (one line per problem).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from drivers.meters import MeterError
from drivers.relays import RelayError
from drivers.store.influx import StoreError, open_store
from gestor.clock import Clock, WallClock
from gestor.i18n import LANGS
from gestor.runtime.daemon import GestorError, setup_logging
from gestor.settings import SettingsError, dump_settings, load_settings

DEFAULT_CONFIG = os.environ.get("GESTOR_CONFIG", "/etc/gestor/settings.yaml")


def _daemon(args: argparse.Namespace, which: str) -> int:
    settings = load_settings(args.config)
    setup_logging(settings.log_level)
    from gestor.runtime.daemon import single_instance
    lock = single_instance(settings, which)  # noqa: F841 (held until the process exits)
    store = open_store(settings.store, settings.paths.state_dir / "spool" / which)
    clock = WallClock()
    if os.environ.get("GESTOR_CLOCK"):  # drills and tests: accelerated time shared by the daemons
        from gestor.clock import AcceleratedClock
        clock = AcceleratedClock.from_env(os.environ["GESTOR_CLOCK"])
    if which == "monitoring":
        import monitoring
        monitoring.run(settings, clock, store)
    else:
        import managing
        managing.run(settings, clock, store)
    return 0


def _check(args: argparse.Namespace) -> int:
    from gestor.settings import clear_text_secrets
    settings = load_settings(args.config)
    for key in clear_text_secrets(args.config):
        print(f"warning: {key} is written in clear in {args.config}, which the gestor group can read: move it "
              f"to secrets.yaml beside it (root only) and write {key.rsplit('.', 1)[-1]}: !secret NAME",
              file=sys.stderr)
    print(f"# {args.config}: valid. Resolved settings (defaults filled in; secrets hidden):")
    print(dump_settings(settings), end="")
    if settings.web.password_hash is None:  # the default: secrets.yaml's web_password_hash, not shown above
        from gestor.web.auth import NoPassword, password_hash
        try:
            password_hash(settings)
            print("# web password: set (an argon2 hash, secrets.yaml: web_password_hash)")
        except NoPassword as e:
            print(f"# web password: NOT SET ({e})")
    if getattr(args, "read", False):
        print()
        return _meter_test(args)
    return 0


def _fmt(v: float | None, unit: str) -> str:
    return "-" if v is None else f"{v:,.1f} {unit}"


def _meter_test(args: argparse.Namespace) -> int:
    """Read the configured meter ``--count`` times and print each reading with units."""
    from drivers import DriverContext
    from gestor.runtime.daemon import open_meter, read_times
    settings = load_settings(args.config)
    clock = WallClock()
    interval = args.interval if args.interval is not None else settings.monitoring.interval_s
    meter = open_meter(settings, DriverContext(clock, settings.paths.run_dir, settings.config_dir))
    print(f"meter: {settings.meter.driver}; {args.count} reads, {interval:g} s apart. "
          "net is export-positive: with the sun up and little consumption it must be > 0.")
    print(f"{'#':>2}  {'time':8}  {'net':>12}  {'production':>12}  {'consumption':>12}  "
          f"{'import total':>16}  {'export total':>16}")
    ok = 0
    try:
        for i, r in enumerate(read_times(meter, clock, args.count, interval)):
            if isinstance(r, MeterError):
                print(f"{i + 1:>2}  {clock.now().astimezone(settings.tz):%H:%M:%S}  FAILED: {r}")
                continue
            ok += 1
            print(f"{i + 1:>2}  {r.at.astimezone(settings.tz):%H:%M:%S}  {_fmt(r.net_w, 'W'):>12}  "
                  f"{_fmt(r.production_w, 'W'):>12}  {_fmt(r.consumption_w, 'W'):>12}  "
                  f"{_fmt(r.import_wh_total, 'Wh'):>16}  {_fmt(r.export_wh_total, 'Wh'):>16}")
    finally:
        meter.close()
    print(f"{ok} of {args.count} reads succeeded.")
    return 0 if ok == args.count else 1


def _override(args: argparse.Namespace) -> int:
    """``gestor override LOAD on|off|auto [--for 2h]``: managing obeys it from its next cycle."""
    import getpass

    from gestor.runtime.overrides import apply_override
    settings = load_settings(args.config)
    try:
        print(apply_override(settings, args.load, args.mode, args.for_, WallClock().now(),
                             by=f"{getpass.getuser()} via gestor override"))
    except ValueError as e:
        raise GestorError(str(e)) from None
    except OSError as e:
        raise GestorError(f"cannot write the override under {settings.paths.state_dir}: {e} (run with sudo?)") from None
    return 0


def _prices(args: argparse.Namespace) -> int:
    """``gestor prices fetch [--day D]``: the day's PVPC and surplus prices from ESIOS, validated,
    cached under the state dir and stored in InfluxDB (measurement ``price``)."""
    from datetime import date, timedelta

    from gestor.tariff import prices
    settings = load_settings(args.config)
    if settings.prices.source not in prices.FETCHED_SOURCES:
        raise GestorError(f"prices.source is {settings.prices.source!r}: nothing to fetch "
                          f"(set it to {' or '.join(prices.FETCHED_SOURCES)})")
    now = WallClock().now().astimezone(settings.tz)
    try:
        day = date.fromisoformat(args.day) if args.day else \
            (now.date() + timedelta(days=1) if (now.hour, now.minute) >= (20, 30) else now.date())
    except ValueError:
        raise GestorError(f"--day {args.day!r}: expected YYYY-MM-DD") from None
    try:
        p = prices.fetch(settings, day)
    except prices.PriceError as e:
        have = prices.cached(settings.paths.state_dir, day)
        raise GestorError(f"{e}; " + ("the cached prices of that day stay in use" if have else
                                      "the fixed 2.0TD prices of tariff: are used for that day")) from None
    prices.save(settings.paths.state_dir, p)
    stored = ""
    if settings.store.kind != "none":
        from drivers.store.influx import StoreError, open_store
        try:
            store = open_store(settings.store)
            store.write(prices.points(p, settings.site))
            ok = store.flush(30)
            store.close()
            stored = " and stored in InfluxDB (measurement price)" if ok else "; InfluxDB did not take them"
        except StoreError as e:
            stored = f"; not stored in InfluxDB: {e}"
    print(f"{day}: {len(p.import_)} slots of {p.slot_s // 60} min, cached{stored}")
    print("local time   import EUR/kWh  surplus EUR/kWh")
    for t, v in p.import_:
        print(f"{t.astimezone(settings.tz):%H:%M %Z}    {v:14.5f}  {prices.at(p.surplus, t):15.5f}")
    return 0


def _db_init(args: argparse.Namespace) -> int:
    """Create the database, its retention policies and continuous queries (install.sh runs it)."""
    from drivers.store.influx import init_database
    settings = load_settings(args.config)
    if settings.store.kind == "none":
        print("store.kind is none: nothing to create")
        return 0
    kind = settings.store.kind
    if kind == "auto":
        from drivers.store.influx import server_version
        kind = "influxdb2" if server_version(settings.store.url).lstrip("v").startswith("2") else "influxdb1"
    if kind == "influxdb2":
        print("InfluxDB 2.x: create the bucket with its retention and the summary task yourself "
              "(documentation: InfluxDB, 'InfluxDB 2.x'); nothing done")
        return 0
    for q in init_database(settings.store, settings.billing.period_s):
        print(q)
    return 0


def _status(args: argparse.Namespace) -> int:
    import json as _json

    from gestor.i18n import from_environment
    from gestor.runtime.status import collect, render
    settings = load_settings(args.config, secrets_optional=True)  # status needs no secret
    d = collect(settings, WallClock().now())
    print(_json.dumps(d, indent=1, default=str) if args.json else render(d, settings, args.lang or from_environment()))
    return 0


def _virtual_meter(args: argparse.Namespace) -> int:
    """``gestor virtual-meter``: serve the virtual meter (``virtual_meter:`` in the settings) until
    SIGTERM; exit 2 when it is not enabled (systemd does not restart it: RestartPreventExitStatus=2)."""
    settings = load_settings(args.config)
    setup_logging(settings.log_level)
    if not settings.virtual_meter.enabled:
        print(f"gestor virtual-meter: virtual_meter.enabled is false in {args.config}: nothing to serve "
              "(set it to true, with the addresses the devices ask)", file=sys.stderr)
        return 2
    from gestor.runtime.daemon import single_instance
    from gestor.runtime.virtualmeter import serve
    lock = single_instance(settings, "virtual-meter")  # noqa: F841 (held until the process exits)
    clock: Clock = WallClock()
    if os.environ.get("GESTOR_CLOCK"):  # drills and tests: the daemons' accelerated time
        from gestor.clock import AcceleratedClock
        clock = AcceleratedClock.from_env(os.environ["GESTOR_CLOCK"])
    serve(settings, clock)
    return 0


def _setup(args: argparse.Namespace) -> int:
    """``gestor setup`` (:mod:`gestor.setup.command`); its errors are one sentence, with their own
    exit code (2 a bad answer or invalid settings, 3 nothing found)."""
    from gestor.setup.answers import SetupError
    from gestor.setup.command import run_setup
    try:
        if args.apply_proposal is not None:
            from gestor.clock import WallClock
            from gestor.setup.proposal import apply_proposal
            return apply_proposal(args.apply_proposal, Path(args.settings), WallClock(), print,
                                  restart=not args.no_restart)
        return run_setup(args)
    except SetupError as e:
        print(f"gestor setup: {e}", file=sys.stderr)
        return e.code


def _demo(args: argparse.Namespace) -> int:
    from gestor.sim.demo import run_demo
    return run_demo(args)


def _bill(args: argparse.Namespace) -> int:
    """``gestor bill import|fetch|reconcile``: the distributor's curve (gestor.bill.commands)."""
    from gestor.bill import commands
    from gestor.bill.distributor import DistributorError
    settings = load_settings(args.config)
    setup_logging(settings.log_level)
    recording = None
    if getattr(args, "recording", None):
        def recording() -> tuple[list[float], list[float]]:  # the readings at the connection, loads included
            from drivers.meters.replay import ReplayData
            from gestor.sim.inputs import replay_settings_for
            d = ReplayData.load(replay_settings_for(Path(args.recording)).model_copy(update={"subtract_columns": []}))
            return list(d.t), list(d.net_w)
    try:
        return commands.run(args, settings, recording)
    except (commands.BillError, DistributorError) as e:
        raise GestorError(str(e)) from None


def main(argv: list[str] | None = None) -> int:
    """The ``gestor`` command; a reader of its output that goes away (``gestor check | head -1``)
    ends it quietly (:func:`gestor.console.quiet_on_broken_pipe`)."""
    from gestor.console import quiet_on_broken_pipe
    as_command = argv is None  # `gestor ...` itself, not a call from Python (tests)
    args = sys.argv[1:] if argv is None else argv
    return quiet_on_broken_pipe(lambda: _main(args, as_command))


def _main(argv: list[str], as_command: bool) -> int:
    if argv and argv[0] == "stop-loads":
        import stop_loads
        return stop_loads.main(argv[1:], hard_exit=as_command)  # as the command: never waits for a hung relay
    ap = argparse.ArgumentParser(prog="gestor", description="Home energy manager for hourly net billing.")
    sub = ap.add_subparsers(dest="command", required=True)
    for name, help_ in (("monitoring", "run the monitoring daemon (meter → InfluxDB, live state)"),
                        ("managing", "run the managing daemon (balance → policy → relays)"),
                        ("check", "validate settings and print them resolved"),
                        ("meter-test", "read the configured meter a few times and print the readings"),
                        ("db-init", "create the InfluxDB database, retention policies and summaries"),
                        ("status", "one screen: meter, period balance, loads and why, latch, spool, InfluxDB"),
                        ("virtual-meter", "serve the virtual meter (Shelly Pro 3EM, Eastron SDM630) to zero-export devices")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--config", default=DEFAULT_CONFIG, help=f"settings file (default {DEFAULT_CONFIG})")
        if name == "status":
            p.add_argument("--json", action="store_true", help="machine-readable")
            p.add_argument("--lang", choices=LANGS, help="the reasons' language (default: the locale, LANG / "
                                                         "LC_MESSAGES; English for another)")
        if name in ("check", "meter-test"):
            if name == "check":
                p.add_argument("--read", action="store_true", help="then read the meter (as meter-test)")
            p.add_argument("--count", type=int, default=5, help="reads (default 5)")
            p.add_argument("--interval", type=float, default=None,
                           help="seconds between reads (default monitoring.interval_s)")
    sub.add_parser("stop-loads", help="emergency stop: every load off, latch set (see stop-loads -h)")
    sm = sub.add_parser("simulate", help="replay recorded data through a policy and price the result")
    from gestor.sim import report as simreport
    simreport.add_arguments(sm)
    tu = sub.add_parser("tune", help="choose a policy's parameters on your own recording (cross-validated by day)")
    from gestor.sim import tune_report
    tune_report.add_tune_arguments(tu)
    bi = sub.add_parser("bill", help="the month's bill as the retailer computes it (--month), and the distributor's "
                                     "curve: import, fetch (Datadis), reconcile with gestor's hours")
    from gestor.bill.commands import add_arguments as add_bill_arguments
    from gestor.sim import bill_report
    bill_report.add_arguments(bi)
    add_bill_arguments(bi, DEFAULT_CONFIG)
    pr = sub.add_parser("prices", help="real prices from ESIOS (PVPC 2.0TD and surplus): fetch, store, cache")
    pr.add_argument("action", choices=["fetch"])
    pr.add_argument("--day", help="local day YYYY-MM-DD (default: today, or tomorrow after 20:30)")
    pr.add_argument("--config", default=DEFAULT_CONFIG, help=f"settings file (default {DEFAULT_CONFIG})")
    o = sub.add_parser("override", help="force a load on or off (or back to auto), optionally for a while")
    o.add_argument("load", help="load name, as in settings.yaml")
    o.add_argument("mode", choices=["on", "off", "auto"])
    o.add_argument("--for", dest="for_", metavar="DURATION", help="e.g. 2h, 90m, 1h30m (default: until auto)")
    o.add_argument("--config", default=DEFAULT_CONFIG, help=f"settings file (default {DEFAULT_CONFIG})")
    w = sub.add_parser("web", help="serve the web page (needs a password: gestor web --set-password)")
    w.add_argument("--set-password", action="store_true", help="set the page's password (asked twice; stdin if not a terminal)")
    w.add_argument("--config", default=DEFAULT_CONFIG, help=f"settings file (default {DEFAULT_CONFIG})")
    d = sub.add_parser("demo", help="run monitoring and managing on recorded real data, then show the day")
    d.add_argument("--config", default=str(Path(__file__).resolve().parents[2] / "config" / "settings.yaml"))
    d.add_argument("--data", default=None, help="recorded CSV (default: shared/data/house-2022-06-11_13.csv)")
    d.add_argument("--days", type=float, default=1.0, help="days to replay (default 1)")
    d.add_argument("--speed", type=float, default=1440.0,
                   help="simulated seconds per real second (default 1440: a day a minute; 0 = flat out)")
    d.add_argument("--influx-host", default="127.0.0.1")
    d.add_argument("--influx-port", type=int, default=8086)
    d.add_argument("--database", default="gestor_demo", help="dropped and refilled by the demo")
    d.add_argument("--battery", type=float, nargs="?", const=5.0, default=None, metavar="KWH",
                   help="add a simulated home battery of KWH kWh (default 5; charges and discharges at KWH/2 kW) "
                        "after the loads")
    d.add_argument("--heater", type=float, nargs="?", const=2000.0, default=None, metavar="W",
                   help="add a simulated modulating heater of W watts (default 2000; 0..W by setpoint) after the "
                        "loads and the battery")
    d.add_argument("--no-loads", action="store_true",
                   help="no on/off load (loads: []): the setpoint devices alone, e.g. with --battery or --heater")
    su = sub.add_parser("setup", help="find the meter and relays on the LAN, check them live, write the settings")
    from gestor.setup.options import add_arguments as setup_arguments
    setup_arguments(su, DEFAULT_CONFIG)
    args = ap.parse_args(argv)
    try:
        if args.command == "setup":
            return _setup(args)
        if args.command == "bill" and args.bill_command is not None:
            return _bill(args)
        if args.command in ("monitoring", "managing"):
            return _daemon(args, args.command)
        if args.command == "check":
            return _check(args)
        if args.command == "meter-test":
            return _meter_test(args)
        if args.command == "override":
            return _override(args)
        if args.command == "db-init":
            return _db_init(args)
        if args.command == "status":
            return _status(args)
        if args.command == "simulate":
            from gestor.sim import report as simreport
            return simreport.main(args)
        if args.command == "bill":
            if args.month is None:
                print("gestor bill: say which month (--month YYYY-MM), or import, fetch or reconcile "
                      "(gestor bill -h)", file=sys.stderr)
                return 2
            return bill_report.main(args)
        if args.command == "prices":
            return _prices(args)
        if args.command == "tune":
            from gestor.sim import tune_report
            return tune_report.tune_main(args)
        if args.command == "demo":
            return _demo(args)
        if args.command == "virtual-meter":
            return _virtual_meter(args)
        if args.command == "web":
            from gestor import web
            return web.set_password_main(args) if args.set_password else web.serve_main(args)
    except SettingsError as e:
        print(str(e), file=sys.stderr)
        return 2
    except (GestorError, MeterError, StoreError, RelayError) as e:
        print(f"gestor {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
