"""What the emergency stop acts on (the seam of :mod:`stop_loads` that reads, never switches):
the :class:`Target` s and the :class:`Plan` made from the stop plan managing saved
(``<state_dir>/stop-plan.json``, :func:`read_plan`, :func:`plan_targets`) or from a settings file,
even a partly invalid one (:func:`plan_from_file`), each relay or device section validated by its
driver's model; the directories stop-loads trusts (:func:`trusted_paths`: ``$GESTOR_STATE_DIR``,
``$GESTOR_RUN_DIR`` or the defaults) and the outcome of one load (:class:`StopResult`).

Switching off and reading back is :mod:`gestor.runtime.stopping`; the program is ``stop_loads``.
Rule source: issue 32, item 4 (a plan may add loads to switch off, never move the latch or the
read-back)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from gestor.runtime.stopplan import PLAN_FORMAT, plan_path, relay_section, write_plan

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


def same_relay_key(t: Target, run_dir: Path) -> tuple[str, str, str]:
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
        have = {same_relay_key(t, run_dir) for t in self.targets}
        extra = [t for t in saved.targets if same_relay_key(t, run_dir) not in have]
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
    yield from section_targets(doc["loads"], False, ctx, run_dir, origin, "stop plan: ")
    yield from section_targets(doc.get("setpoints"), True, ctx, run_dir, origin, "stop plan: ")


def section_targets(items: Any, setpoint: bool, ctx: dict | None, run_dir: Path | None, origin: str,
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
            yield StopResult(name, driver, error=f"{where}{key} section refused by its driver: {one_line(e)}")
            continue
        power = d.get("power_w")
        yield Target(name, dev, float(power) if isinstance(power, (int, float)) else 0.0, run_dir, origin,
                     setpoint=setpoint)


def one_line(e: BaseException) -> str:
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
    for t in section_targets(raw.get("setpoints") if isinstance(raw, dict) else None, True, ctx, None, "", ""):
        (plan.targets if isinstance(t, Target) else plan.unusable).append(t)
    return plan
