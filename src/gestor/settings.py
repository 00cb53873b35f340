"""settings.yaml → validated settings (pydantic), before anything starts.

Every error names the file, the key, what is allowed and the value found, e.g.
``settings.yaml: loads[1].power_w: must be > 0 (got -700)``. Driver sections (``meter``,
``loads[i].relay``) are validated by the model their driver registered, selected by ``driver:``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator

import drivers.meters as meters
import drivers.relays as relays
from gestor.clock import zone


class SettingsError(Exception):
    """Invalid settings. ``errors`` holds one line per problem, each naming file and key."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DriverSection(BaseModel):
    """A ``meter`` or ``relay`` section before its driver's own model validates it (phase 2 of
    :func:`parse_settings`); after loading, the field holds the driver's settings model."""

    model_config = ConfigDict(extra="allow")
    driver: str


class BillingSettings(_Model):
    period_s: Literal[3600, 900] = 3600    # settlement period, s (one hour today; 900 = quarter-hour)
    max_gap_s: float = Field(120.0, gt=0)  # longest interval between readings that is integrated, s


class MonitoringSettings(_Model):
    interval_s: float = Field(5.0, gt=0)   # meter read period, s


class ManagingSettings(_Model):
    interval_s: float = Field(10.0, gt=0)      # control cycle, s
    stale_after_s: float = Field(60.0, gt=0)   # no reading newer than this → every load off, s
    relay_retry_max_s: float = Field(300.0, gt=0)  # a failing relay is retried with backoff up to this, s
    stop_button_pin: int | str | None = None   # GPIO of an emergency-stop push button (gpiozero Button)
    stop_button_pull_up: bool = True           # button wired to ground (True) or to 3.3 V (False)


class PolicySettings(_Model):
    name: Literal["time_to_consume", "hysteresis", "min_on_time", "steady_surplus"] = "time_to_consume"
    projection: Literal["instant", "average", "none"] = "instant"  # time_to_consume's projection
    on_min_wh: float = 75.0          # time_to_consume: no switch-on below this projected surplus, Wh
    time_factor: float = Field(1.0, gt=0)  # time_to_consume: scales the period's remaining time
    end_at_wh: float = 0.0           # time_to_consume: off when the period would end at/below this without the load, Wh
    min_on_s: float = Field(300.0, gt=0)   # min_on_time: run a load at least this long, s
    window_s: float = Field(150.0, gt=0)   # steady_surplus: the surplus rate is the median over this, s
    doubt: float = Field(2.0, ge=0)        # steady_surplus: running loads count on median - doubt x MAD of the surplus
    margin_wh: float = 5.0                 # steady_surplus: the period should end at or above this, Wh


class LoadSettings(_Model):
    name: str
    power_w: float = Field(gt=0)              # rated power of the load, W
    relay: SerializeAsAny[DriverSection]       # the relay driver's settings (drivers/relays/)
    min_on_s: float = Field(0.0, ge=0)         # once on, stay on at least this long, s
    min_off_s: float = Field(0.0, ge=0)        # once off, stay off at least this long, s
    on_above_wh: float | None = None           # hysteresis: on at or above this balance, Wh
    off_below_wh: float | None = None          # hysteresis: off at or below this balance, Wh
    priority: int = 0                          # lower first; equal: the order of loads
    max_switches_per_period: int | None = Field(None, ge=1)  # switches allowed per settlement period
    windows: list[str] = []                    # local times the load may run, e.g. ["10:00-19:00"]; [] = always
    min_run_s: float = Field(0.0, ge=0)        # daily minimum run time, s (0 = none)
    min_run_by: str = "21:00"                  # ... reached by this local hour (HH:00) each day

    @field_validator("windows")
    @classmethod
    def _windows(cls, v: list[str]) -> list[str]:
        for w in v:
            parse_window(w)
        return v

    @field_validator("min_run_by")
    @classmethod
    def _by(cls, v: str) -> str:
        m = re.fullmatch(r"([01]\d|2[0-3]):00", v)
        if not m:
            raise ValueError(f"must be a whole local hour HH:00 (got {v!r})")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", v):
            raise ValueError("must be lowercase letters, digits and _, starting with a letter")
        return v


def parse_window(w: str) -> tuple[int, int]:
    """``"HH:MM-HH:MM"`` → (start, end) in minutes of the local day; end may be before start (the
    window crosses midnight). Raises ValueError naming the format."""
    m = re.fullmatch(r"\s*([01]?\d|2[0-3]):([0-5]\d)\s*-\s*([01]?\d|2[0-4]):([0-5]\d)\s*", w)
    if not m:
        raise ValueError(f"window {w!r} must be HH:MM-HH:MM, e.g. 10:00-19:00")
    a, b = int(m[1]) * 60 + int(m[2]), int(m[3]) * 60 + int(m[4])
    if b > 24 * 60 or a == b:
        raise ValueError(f"window {w!r} is empty or ends after 24:00")
    return a, b


class StoreSettings(_Model):
    kind: Literal["influxdb1", "influxdb2", "auto", "none"] = "influxdb1"  # auto: ask /ping for the version
    host: str = "127.0.0.1"
    port: int = Field(8086, gt=0, lt=65536)
    database: str = "gestor"                    # 1.x database (2.x: the bucket, unless bucket is set)
    username: str | None = None                 # 1.x
    password: str | None = None                 # 1.x
    org: str | None = None                      # 2.x organisation
    bucket: str | None = None                   # 2.x bucket (default: database)
    token: str | None = None                    # 2.x API token with write access to the bucket
    spool_max_mb: float = Field(100.0, gt=0)    # on-disk spool while InfluxDB is away; oldest dropped past it
    timeout_s: float = Field(5.0, gt=0)
    batch_size: int = Field(500, gt=0)          # points per write
    queue_max_points: int = Field(200_000, gt=0)  # in memory, without a spool (tests, demo)
    raw_retention: str = "90d"                  # how long raw points are kept (1.x retention policy); INF = forever

    @field_validator("raw_retention")
    @classmethod
    def _retention(cls, v: str) -> str:
        if not re.fullmatch(r"INF|[1-9]\d*[hdw]", v):
            raise ValueError(f"must be a duration like 90d, 12w, 720h, or INF (got {v!r})")
        return v

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class TariffSettings(_Model):
    """Energy prices for ``gestor simulate`` (EUR/kWh, taxes included as you pay them)."""

    import_p1_eur_per_kwh: float = Field(0.22, ge=0)   # 2.0TD P1 (punta): weekdays 10-14, 18-22 h
    import_p2_eur_per_kwh: float = Field(0.15, ge=0)   # 2.0TD P2 (llano): weekdays 8-10, 14-18, 22-24 h
    import_p3_eur_per_kwh: float = Field(0.10, ge=0)   # 2.0TD P3 (valle): 0-8 h, weekends, holidays
    surplus_eur_per_kwh: float = Field(0.06, ge=0)     # compensation per exported kWh


class PathsSettings(_Model):
    state_dir: Path = Path("/var/lib/gestor")   # persistent: balance state, stop latch
    run_dir: Path = Path("/run/gestor")         # volatile: live reading, simulated relays


class Settings(_Model):
    site: str = "home"                  # tag on every stored point
    timezone: str = "Europe/Madrid"     # settlement periods are aligned to this zone's clock
    billing: BillingSettings = BillingSettings()
    meter: SerializeAsAny[DriverSection]  # the meter driver's settings (drivers/meters/)
    monitoring: MonitoringSettings = MonitoringSettings()
    managing: ManagingSettings = ManagingSettings()
    policy: PolicySettings = PolicySettings()
    loads: list[LoadSettings] = Field(min_length=1, max_length=8)
    store: StoreSettings = StoreSettings()
    tariff: TariffSettings = TariffSettings()
    paths: PathsSettings = PathsSettings()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    source: Path | None = Field(None, exclude=True)  # the file these came from

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        zone(v)
        return v

    @field_validator("loads")
    @classmethod
    def _unique_names(cls, loads: list[LoadSettings]) -> list[LoadSettings]:
        names = [ld.name for ld in loads]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"names must be unique (got {', '.join(dup)} twice)")
        return loads

    def loads_by_priority(self) -> list[LoadSettings]:
        """The loads in the order the policies stack them: ``priority``, then file order."""
        return sorted(self.loads, key=lambda ld: ld.priority)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def config_dir(self) -> Path:
        return self.source.parent if self.source else Path.cwd()


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _message(err: dict[str, Any]) -> str:
    t, ctx = err["type"], err.get("ctx") or {}
    bounds = {"greater_than": (">", "gt"), "greater_than_equal": (">=", "ge"),
              "less_than": ("<", "lt"), "less_than_equal": ("<=", "le")}
    if t in bounds:
        op, key = bounds[t]
        msg = f"must be {op} {ctx[key]:g}"
    elif t == "extra_forbidden":
        return "unknown key"
    elif t == "missing":
        return "required, missing"
    elif t == "literal_error":
        msg = f"must be one of {ctx['expected']}"
    elif t in ("too_short", "too_long"):
        msg = err["msg"].replace("List should have", "must have")
    elif t == "value_error":
        msg = str(err["msg"]).removeprefix("Value error, ")
    else:
        msg = err["msg"][0].lower() + err["msg"][1:]
    if "input" in err and not isinstance(err["input"], (dict, list)):
        msg += f" (got {err['input']!r})"
    return msg


def _errors(prefix: str, exc: ValidationError, base: tuple[Any, ...] = ()) -> list[str]:
    return [f"{prefix}: {_loc(base + tuple(e['loc']))}: {_message(e)}" for e in exc.errors()]


def _validate_driver(prefix: str, loc: tuple[Any, ...], raw: dict[str, Any],
                     registry: dict[str, tuple[type[BaseModel], Any]], errors: list[str],
                     config_dir: Path) -> BaseModel | None:
    driver = raw.get("driver")
    if not isinstance(driver, str):
        return None  # phase 1 already said "driver: required" or "must be a string"
    if driver not in registry:
        errors.append(f"{prefix}: {_loc(loc + ('driver',))}: unknown driver {driver!r} "
                      f"(allowed: {', '.join(sorted(registry))})")
        return None
    model = registry[driver][0]
    try:
        return model.model_validate(raw, context={"config_dir": config_dir})
    except ValidationError as e:
        errors.extend(_errors(prefix, e, loc))
        return None


def parse_settings(raw: Any, name: str = "settings.yaml", source: Path | None = None) -> Settings:
    """Validate a parsed YAML document. Raises SettingsError listing every problem."""
    if not isinstance(raw, dict):
        raise SettingsError([f"{name}: (top level): must be a mapping of keys (got {type(raw).__name__})"])
    errors: list[str] = []
    config_dir = source.parent if source else Path.cwd()
    try:
        s = Settings.model_validate(raw)
    except ValidationError as e:
        errors.extend(_errors(name, e))
        s = None
    # phase 2: driver sections, even when phase 1 failed elsewhere, to report everything at once
    meter_raw = raw.get("meter")
    meter = None
    if isinstance(meter_raw, dict):
        meter = _validate_driver(name, ("meter",), meter_raw, meters.METERS, errors, config_dir)
    loads_raw = raw.get("loads") if isinstance(raw.get("loads"), list) else []
    relays_ok = []
    for i, ld in enumerate(loads_raw):
        if isinstance(ld, dict) and isinstance(ld.get("relay"), dict):
            relays_ok.append(_validate_driver(name, ("loads", i, "relay"), ld["relay"], relays.RELAYS, errors,
                                               config_dir))
    if s is not None and policy_needs_thresholds(s) and not errors:
        for i, ld in enumerate(s.loads):
            if ld.on_above_wh is None or ld.off_below_wh is None:
                errors.append(f"{name}: loads[{i}]: policy hysteresis needs on_above_wh and off_below_wh")
            elif ld.on_above_wh <= ld.off_below_wh:
                errors.append(f"{name}: loads[{i}].on_above_wh: must be > off_below_wh "
                              f"(got {ld.on_above_wh} <= {ld.off_below_wh})")
    if errors:
        raise SettingsError(list(dict.fromkeys(errors)))
    assert s is not None and meter is not None
    s.meter = meter  # type: ignore[assignment]
    for ld, r in zip(s.loads, relays_ok):
        ld.relay = r  # type: ignore[assignment]
    s.source = source
    return s


def policy_needs_thresholds(s: Settings) -> bool:
    return s.policy.name == "hysteresis"


def load_settings(path: Path | str) -> Settings:
    """Read and validate a settings file.

    Raises:
        SettingsError: the file is missing, not YAML, or not valid; one line per problem.
    """
    path = Path(path)
    name = str(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise SettingsError([f"{name}: cannot read: {e.strerror or e}"]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise SettingsError([f"{name}: {where}not valid YAML: {problem}"]) from None
    return parse_settings(raw, name, path.resolve())


def dump_settings(s: Settings) -> str:
    """The resolved settings as YAML (defaults filled in)."""
    data = s.model_dump(mode="json", exclude={"source"})
    return yaml.safe_dump(data, sort_keys=False)
