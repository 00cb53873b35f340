"""``gestor demo``: monitoring and managing, the very daemons' cycles, run on a recorded real day
with simulated relays, writing to a local InfluxDB; then the day's table read back from InfluxDB,
against the same day without gestor.

Time is simulated (:mod:`gestor.sim.lockstep`), paced to ``--speed`` simulated seconds per real second.
The demo never touches real hardware: every relay is forced to ``simulated`` and the meter to a
replay of ``--data``.
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import managing
import monitoring
from drivers.meters.replay import ReplayData, ReplaySettings
from drivers.relays.simulated import SimulatedRelaySettings
from drivers.store.influx import InfluxStore, StoreError
from gestor.core.balance import Balance, PeriodSummary, period_start
from gestor.clock import SimClock
from gestor.runtime.daemon import GestorError, setup_logging
from gestor.sim.lockstep import run_lockstep
from gestor.settings import PathsSettings, Settings, StoreSettings, load_settings

DEMO_FILE = "house-2022-06-11_13.csv"


def default_data_dir() -> Path:
    env = os.environ.get("GESTOR_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[4] / "shared" / "data"


def replay_settings_for(path: Path) -> ReplaySettings:
    """Replay settings for a file in one of shared/data's two formats (chosen by its header)."""
    try:
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
    except OSError as e:
        raise GestorError(f"demo data {path}: {e.strerror or e}") from None
    if "powerLB" in header:  # winter format: net grid power, import-positive
        return ReplaySettings(path=path, consumption_column=None, net_column="powerLB",
                              net_sign="import_positive", speed=1.0)
    return ReplaySettings(path=path, subtract_columns=["powerL1", "powerL2"], speed=1.0)


def demo_settings(args: argparse.Namespace, workdir: Path) -> tuple[Settings, ReplaySettings]:
    s = load_settings(args.config)
    data = Path(args.data) if args.data else default_data_dir() / DEMO_FILE
    meter = replay_settings_for(data.resolve())
    s.meter = meter  # type: ignore[assignment]
    for ld in s.loads:
        ld.relay = SimulatedRelaySettings()  # type: ignore[assignment]
    for d in s.setpoints:  # the demo touches no hardware: a configured device is not driven
        if d.device.driver != "simulated":
            print(f"demo: setpoint device {d.name} ({d.device.driver}) left out: the demo drives no hardware")
    s.setpoints = [d for d in s.setpoints if d.device.driver == "simulated"]
    if getattr(args, "battery", None):  # a simulated home battery after the loads (docs/site/en/devices/batteries.md)
        from drivers.setpoints.simulated import SimulatedSetpointSettings
        from gestor.settings import SetpointDeviceSettings
        kwh = float(args.battery)
        dev = SimulatedSetpointSettings(kind="battery", capacity_wh=kwh * 1000, max_charge_w=kwh * 500,
                                        max_discharge_w=kwh * 500, soc_pct=50, min_soc_pct=10, efficiency=0.9)
        s.setpoints = [SetpointDeviceSettings.model_validate({"name": "battery", "device": {"driver": "simulated"},
                                                              "reserve_wh_per_h": 0, "deadband_w": 20})]
        s.setpoints[0].device = dev  # type: ignore[assignment]
    if getattr(args, "heater", None):  # a simulated modulating heater, after the battery if any (docs/site/en/devices/heaters.md)
        from drivers.setpoints.simulated import SimulatedSetpointSettings
        from gestor.settings import SetpointDeviceSettings
        if not 0 < float(args.heater) <= 100000:
            raise GestorError(f"demo --heater: the heater's power in W must be > 0 and <= 100000 (got {args.heater:g})")
        heater = SetpointDeviceSettings.model_validate({"name": "heater", "device": {"driver": "simulated"}})
        heater.device = SimulatedSetpointSettings(kind="heater", max_charge_w=float(args.heater))  # type: ignore[assignment]
        s.setpoints = [*s.setpoints, heater]
    if getattr(args, "no_loads", False):  # a house of setpoint devices only (issue 33)
        if not s.setpoints:
            raise GestorError("demo --no-loads: no device left to drive: add --battery or --heater (or a simulated "
                              "device under setpoints: in --config)")
        s.loads = []
    s.site = "demo"
    s.store = StoreSettings(host=args.influx_host, port=args.influx_port, database=args.database)
    s.paths = PathsSettings(state_dir=workdir / "state", run_dir=workdir / "run")
    return s, meter


class Status:
    """The live one-line status (a line per simulated hour when stdout is not a terminal)."""

    def __init__(self, mgr: managing.Managing, tz, out=sys.stdout) -> None:
        self.mgr, self.tz, self.out = mgr, tz, out
        self.tty = out.isatty()
        self.last_hour: datetime | None = None

    def __call__(self, t: datetime) -> None:
        local = t.astimezone(self.tz)
        hour = local.replace(minute=0, second=0, microsecond=0)
        if not self.tty and hour == self.last_hour:
            return
        self.last_hour = hour
        r = self.mgr.balance.last
        loads = "  ".join(f"{ld.name} {'ON ' if ld.on else 'off'}" for ld in self.mgr.loads)
        line = (f"{local:%Y-%m-%d %H:%M %Z}  net {r.net_w if r else 0:+6.0f} W  "
                f"balance {self.mgr.balance.balance_wh:+6.0f} Wh  {loads}  switches {self.mgr.relays.switches_total}")
        if self.tty:
            print("\r" + line, end="", file=self.out, flush=True)
        else:
            print(line, file=self.out, flush=True)

    def done(self) -> None:
        if self.tty:
            print(file=self.out)


def run_demo(args: argparse.Namespace) -> int:
    setup_logging("WARNING")
    shm = Path("/dev/shm")  # tmpfs, like /run on the Pi
    workdir = Path(tempfile.mkdtemp(prefix="gestor-demo-", dir=shm if shm.is_dir() else None))
    try:
        return _run(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run(args: argparse.Namespace, workdir: Path) -> int:
    s, meter = demo_settings(args, workdir)
    data = ReplayData.load(meter)
    start = data.first
    boundary = period_start(start + timedelta(days=args.days), s.billing.period_s, s.tz)
    until = min(boundary + timedelta(seconds=30), data.last + timedelta(seconds=1))
    store = InfluxStore.from_settings(s.store)
    try:
        _client(s).drop_database(s.store.database)
    except Exception:
        pass  # unreachable: open() says so clearly
    try:
        store.open()
    except StoreError as e:
        raise GestorError(f"{e}. Start one with ./install.sh --demo, or pass --influx-port") from None

    clock = SimClock(start)
    mon = monitoring.Monitoring(s, clock, store)
    mgr = managing.Managing(s, clock, store)
    status = Status(mgr, s.tz)
    local0 = start.astimezone(s.tz)
    print(f"gestor demo: {data.path.name}, {args.days:g} day(s) from {local0:%Y-%m-%d %H:%M %Z}, "
          f"policy {s.policy.name}, loads "
          + (", ".join(f"{ld.name} {ld.power_w:.0f} W" for ld in s.loads) or "none")
          + "".join(f", {d.name} ({d.device.kind}"
                    + (f" {d.device.capacity_wh / 1000:g} kWh" if d.device.kind == "battery" else "")
                    + f", {d.device.max_charge_w:.0f} W)" for d in s.setpoints)
          + f", InfluxDB {store.url} database {s.store.database}")
    mgr.start()
    run_lockstep(clock, [(s.monitoring.interval_s, mon.cycle), (s.managing.interval_s, mgr.cycle)],
                 until, speed=args.speed or None, on_tick=status)
    status.done()
    mgr.stop()
    if not store.flush(120):
        print("warning: not every point reached InfluxDB", file=sys.stderr)
    periods = read_periods(store, s, period_start(start, s.billing.period_s, s.tz), boundary)
    baseline = baseline_periods(data, s, start, until)
    print_report(periods, baseline, s, mgr, mon, sys.stdout)
    store.close()
    print(f"\nStored history ({mon.reads} readings). Look at it with the influx CLI, e.g.:\n"
          f"  influx -host {s.store.host} -port {s.store.port} -database {s.store.database} "
          f"-precision rfc3339 -execute \"SELECT balance_wh, loads_wh, complete FROM period "
          f"WHERE time >= '{start:%Y-%m-%dT%H:00:00Z}' AND time < '{boundary:%Y-%m-%dT%H:%M:%SZ}'\"\n"
          f"  influx -host {s.store.host} -port {s.store.port} -database {s.store.database} "
          f"-precision rfc3339 -execute \"SELECT load, \\\"on\\\", reason FROM decision\"")
    return 0


def _client(s: Settings):
    """An InfluxDB 1.x query client (the demo reads back what the daemons stored)."""
    from influxdb import InfluxDBClient

    from drivers import secret
    return InfluxDBClient(s.store.host, s.store.port, s.store.username, secret(s.store.password),
                          s.store.database, timeout=s.store.timeout_s)


def read_periods(store: InfluxStore, s: Settings, start: datetime, end: datetime) -> list[dict]:
    """The ``period`` points the managing daemon stored, read back from InfluxDB."""
    q = (f"SELECT * FROM period WHERE site = '{s.site}' AND time >= '{start:%Y-%m-%dT%H:%M:%SZ}' "
         f"AND time < '{end:%Y-%m-%dT%H:%M:%SZ}'")
    c = _client(s)
    try:
        rows = list(c.query(q, epoch="s").get_points())
    finally:
        c.close()
    for r in rows:
        r["start"] = datetime.fromtimestamp(r["time"], timezone.utc)
    return rows


def baseline_periods(data: ReplayData, s: Settings, start: datetime, until: datetime) -> dict[datetime, PeriodSummary]:
    """The same periods without gestor: the recorded base load alone, integrated the same way."""
    b = Balance(s.billing.period_s, s.tz, s.billing.max_gap_s)
    out: dict[datetime, PeriodSummary] = {}
    for r in data.readings(start, until):
        for p in b.update(r):
            out[p.start] = p
    return out


def print_report(periods: list[dict], baseline: dict[datetime, PeriodSummary], s: Settings,
                 mgr: managing.Managing, mon: monitoring.Monitoring, out) -> None:
    names = [ld.name for ld in s.loads]
    print(f"\n{'hour (' + s.timezone + ')':<22}{'prod kWh':>9}{'cons kWh':>9}{'loads kWh':>10}"
          f"{'balance Wh':>12}{'without Wh':>12}", file=out)
    tot = dict(prod=0.0, cons=0.0, loads=0.0, exp=0.0, imp=0.0, exp0=0.0, imp0=0.0, eur=0.0, eur0=0.0)
    for p in periods:
        base = baseline.get(p["start"])
        without = base.balance_wh if base else float("nan")
        mark = "" if p.get("complete") else " *"
        local = p["start"].astimezone(s.tz)
        prod, cons = (p.get("production_wh") or 0.0) / 1000, (p.get("consumption_wh") or 0.0) / 1000
        loads = (p.get("loads_wh") or 0.0) / 1000
        print(f"{local:%Y-%m-%d %H:%M}{mark:<6}{prod:>9.2f}{cons:>9.2f}{loads:>10.2f}"
              f"{p['balance_wh']:>+12.0f}{without:>+12.0f}", file=out)
        tot["prod"] += prod
        tot["cons"] += cons
        tot["loads"] += loads
        tot["exp"] += max(p["balance_wh"], 0) / 1000
        tot["imp"] += max(-p["balance_wh"], 0) / 1000
        if base:
            tot["exp0"] += base.export_wh / 1000
            tot["imp0"] += base.import_wh / 1000
        tot["eur"] += p.get("cost_eur") or 0.0           # as managing priced each closed period
        tot["eur0"] += p.get("cost_without_eur") or 0.0
    print(f"{'total':<22}{tot['prod']:>9.2f}{tot['cons']:>9.2f}{tot['loads']:>10.2f}", file=out)
    print("(* = period not fully covered by readings)\n", file=out)
    print(f"{'':<28}{'with gestor':>12}{'without':>12}", file=out)
    print(f"{'exported (hourly net), kWh':<28}{tot['exp']:>12.2f}{tot['exp0']:>12.2f}", file=out)
    print(f"{'imported (hourly net), kWh':<28}{tot['imp']:>12.2f}{tot['imp0']:>12.2f}", file=out)
    print(f"{'surplus captured, kWh':<28}{tot['exp0'] - tot['exp']:>12.2f}", file=out)
    print(f"{'extra import, kWh':<28}{tot['imp'] - tot['imp0']:>12.2f}", file=out)
    print(f"{'energy cost, EUR':<28}{tot['eur']:>12.2f}{tot['eur0']:>12.2f}   (saved {tot['eur0'] - tot['eur']:.2f}; "
          f"prices: {s.prices.source}; without gestor the loads run on the P3 price)", file=out)
    print(f"{'switches':<28}{mgr.relays.switches_total:>12d}   ({', '.join(names) or 'no on/off load'})", file=out)
    for d in mgr.setpoints.devices:
        soc = f", state of charge {d.state.soc_pct:.0f} % at the end" if d.state and d.state.soc_pct is not None else ""
        print(f"{d.name + ' took / gave, kWh':<28}{d.taken_wh / 1000:>12.2f}{d.supplied_wh / 1000:>12.2f}   "
              f"(house side{soc})", file=out)
    print(f"{'meter reads / failed':<28}{mon.reads:>12d}{mon.failures:>12d}", file=out)
