"""settings.yaml → validated settings (pydantic), before anything starts.

Every error names the file, the key, what is allowed and the value found, e.g.
``settings.yaml: loads[1].power_w: must be > 0 (got -700)``. Driver sections (``meter``,
``loads[i].relay``) are validated by the model their driver registered, selected by ``driver:``.
"""
from __future__ import annotations

import math
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, SerializeAsAny, ValidationError, field_validator, model_validator

import drivers.meters as meters
import drivers.relays as relays
import drivers.setpoints as setpoints
from drivers import DEVICE_NAME
from gestor.core.guards import parse_window  # the windows' format is the guards'
from gestor.clock import zone
from gestor.files import UnsafeFileError, read_small_file


class SettingsError(Exception):
    """Invalid settings. ``errors`` holds one line per problem, each naming file and key."""

    def __init__(self, errors: list[str]) -> None:
        errors = [" ".join(e.splitlines()) for e in errors]  # one line each, whatever a value held
        super().__init__("\n".join(errors))
        self.errors = errors


# systemd's WatchdogSec in daemons/*.service: a daemon that sends no WATCHDOG=1 for this long is
# killed and restarted. Every cycle (its interval plus its device calls) must fit well inside it.
WATCHDOG_S = 60.0
MAX_INTERVAL_S = 30.0       # monitoring.interval_s and managing.interval_s: at most half the watchdog
MAX_DEVICE_TIMEOUT_S = 20.0  # any meter or relay timeout_s
SECRETS_FILE = "secrets.yaml"
MAX_SETTINGS_BYTES = 256 * 1024
MAX_DEPTH = 20
MAX_PEM_BYTES = 1024 * 1024          # a CA bundle, certificate or key the settings name
MAX_PRICES_BYTES = 16 * 1024 * 1024  # prices.file: years of quarter-hour prices
MAX_WH = 50_000.0   # Wh: what a 50 kW household connection carries in an hour; every Wh threshold is within ±this
SUDO_HINT = "run it with sudo, or as a member of the gestor group"
FETCHED_SOURCES = ("esios", "pvpc_public")  # prices.source values fetched from the network (gestor.tariff.prices)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class DriverSection(BaseModel):
    """A ``meter`` or ``relay`` section before its driver's own model validates it (phase 2 of
    :func:`parse_settings`); after loading, the field holds the driver's settings model."""

    model_config = ConfigDict(extra="allow")
    driver: str


class BillingSettings(_Model):
    period_s: Literal[3600, 900] = 3600    # settlement period, s (one hour today; 900 = quarter-hour)
    max_gap_s: float = Field(120.0, gt=0, le=3600)  # longest interval between readings that is integrated, s


class MonitoringSettings(_Model):
    interval_s: float = Field(5.0, ge=0.5, le=MAX_INTERVAL_S)   # meter read period, s


class ManagingSettings(_Model):
    interval_s: float = Field(10.0, ge=0.5, le=MAX_INTERVAL_S)  # control cycle, s
    stale_after_s: float = Field(60.0, ge=1, le=600)  # no reading newer than this → every load off, s
    relay_retry_max_s: float = Field(300.0, ge=1, le=3600)  # a failing relay is retried with backoff up to this, s
    stop_button_pin: int | str | None = None   # GPIO of an emergency-stop push button (gpiozero Button)
    stop_button_pull_up: bool = True           # button wired to ground (True) or to 3.3 V (False)

    @field_validator("stop_button_pin", mode="before")
    @classmethod
    def _pin(cls, v: int | str | None) -> int | str | None:
        if v is not None:
            from drivers.relays.gpio import gpio_pin  # the relay driver's parser (gpiozero's own)
            gpio_pin(v)
        return v


class PolicySettings(_Model):
    name: Literal["time_to_consume", "hysteresis", "min_on_time", "steady_surplus"] = "time_to_consume"
    projection: Literal["instant", "average", "none"] = "instant"  # time_to_consume's projection
    on_min_wh: float = Field(75.0, ge=-MAX_WH, le=MAX_WH)  # time_to_consume: no switch-on below this projected surplus, Wh
    time_factor: float = Field(1.0, gt=0, le=10)  # time_to_consume: scales the period's remaining time (x)
    end_at_wh: float = Field(0.0, ge=-MAX_WH, le=MAX_WH)  # time_to_consume: off when the period would end at/below
                                                          # this without the load, Wh
    min_on_s: float = Field(300.0, gt=0, le=3600)   # min_on_time: run a load at least this long, s
    window_s: float = Field(150.0, gt=0, le=3600)   # steady_surplus: the surplus rate is the median over this, s
    doubt: float = Field(2.0, ge=0, le=10)  # steady_surplus: running loads count on median - doubt x MAD of the surplus (MADs)
    margin_wh: float = Field(5.0, ge=-MAX_WH, le=MAX_WH)  # steady_surplus: the period should end at or above this, Wh
    carry_wh: float = Field(0.0, ge=0, le=MAX_WH)  # steady_surplus: in a period's last minute, keep a load the steady
                                           # surplus still carries running into the next period at up to this deficit, Wh


def _display_name(v: str | None) -> str | None:
    """A name for people (the web page): any printable Unicode, accents and spaces, 1 to 40
    characters after trimming; the identifier (``name``, ``site``) stays what it is."""
    if v is None:
        return None
    v = v.strip()
    if not 1 <= len(v) <= 40:
        raise ValueError("must have 1 to 40 characters")
    if not v.isprintable():
        raise ValueError("must be printable characters (no control characters or line breaks)")
    return v


def _device_name(v: str) -> str:
    """A load's or a setpoint device's name: an identifier (topics, entity ids, file names)."""
    if not DEVICE_NAME.fullmatch(v):
        raise ValueError("must be lowercase letters, digits and _, starting with a letter")
    return v


class LoadSettings(_Model):
    name: str
    power_w: float = Field(gt=0, le=50_000)   # rated power of the load, W
    relay: SerializeAsAny[DriverSection]       # the relay driver's settings (drivers/relays/)
    min_on_s: float = Field(0.0, ge=0, le=86400)   # once on, stay on at least this long, s
    min_off_s: float = Field(0.0, ge=0, le=86400)  # once off, stay off at least this long, s
    on_above_wh: float | None = Field(None, ge=-MAX_WH, le=MAX_WH)   # hysteresis: on at or above this balance, Wh
    off_below_wh: float | None = Field(None, ge=-MAX_WH, le=MAX_WH)  # hysteresis: off at or below this balance, Wh
    priority: int = Field(0, ge=-100, le=100)  # lower first; equal: the order of loads
    max_switches_per_period: int | None = Field(None, ge=1, le=60)  # switches allowed per settlement period
    windows: list[str] = []                    # local times the load may run, e.g. ["10:00-19:00"]; [] = always
    min_run_s: float = Field(0.0, ge=0, le=86400)  # daily minimum run time, s (0 = none)
    min_run_by: str = "21:00"                  # ... reached by this local hour (HH:00) each day
    display_name: str | None = None            # what the web page calls it ("Termo eléctrico"); None: the name

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

    _name = field_validator("name")(classmethod(lambda cls, v: _device_name(v)))
    _display = field_validator("display_name")(classmethod(lambda cls, v: _display_name(v)))


class SetpointDeviceSettings(_Model):
    """A device whose power gestor sets (a battery, an EV charger, a modulating heater), driven by
    the setpoint law of :mod:`gestor.core.setpoint` after the on/off loads (README "Devices with a
    power setpoint")."""

    name: str
    device: SerializeAsAny[DriverSection]      # the driver's settings (drivers/setpoints/)
    target_wh: float = Field(0.0, ge=-MAX_WH, le=MAX_WH)  # the balance each settlement period should end at, Wh
    # Wh kept banked per hour left in the period; 150: chosen by euros against perfect foresight for a
    # heater, leave-one-recording-out (benchmarks/setpoint.py, issue 33); a battery: 0
    reserve_wh_per_h: float = Field(150.0, ge=0, le=MAX_WH)
    deadband_w: float = Field(50.0, ge=0, le=5000)        # a change smaller than this, W, is not commanded
    ramp_w_per_s: float | None = Field(None, gt=0, le=100_000)  # the largest change per second, W/s (None: none)
    min_remaining_s: float = Field(60.0, ge=10, le=900)   # the shortest time a balance is spread over, s
    # s a device keeps one direction (charge/discharge) before reversing, unless the period's end
    # demands it (0: no such rule; README "Devices with a power setpoint", issue 32)
    min_reversal_s: float = Field(60.0, ge=0, le=900)

    _name = field_validator("name")(classmethod(lambda cls, v: _device_name(v)))


class StoreSettings(_Model):
    kind: Literal["influxdb1", "influxdb2", "auto", "none"] = "influxdb1"  # auto: ask /ping for the version
    host: str = "127.0.0.1"
    port: int = Field(8086, gt=0, lt=65536)
    database: str = "gestor"                    # 1.x database (2.x: the bucket, unless bucket is set)
    username: str | None = None                 # 1.x
    password: SecretStr | None = None           # 1.x (better: !secret NAME, kept in secrets.yaml)
    org: str | None = None                      # 2.x organisation
    bucket: str | None = None                   # 2.x bucket (default: database)
    token: SecretStr | None = None              # 2.x API token with write access to the bucket (!secret NAME)
    spool_max_mb: float = Field(100.0, gt=0, le=100_000)  # on-disk spool while InfluxDB is away; oldest dropped past it
    timeout_s: float = Field(5.0, gt=0, le=60)
    batch_size: int = Field(500, gt=0, le=100_000)          # points per write
    queue_max_points: int = Field(200_000, gt=0, le=10_000_000)  # in memory when the spool cannot take them
    flush_s: float = Field(10.0, ge=0, le=60)    # points are sent in batches at least this often, s (SD card wear)
    memory_max_s: float = Field(5.0, gt=0, le=60)  # a point waits at most this long in memory only before it is spooled
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


class MqttSettings(_Model):
    """MQTT and Home Assistant (off by default). Topics under ``topic_prefix`` (default
    ``gestor/<site>``); Home Assistant discovers the entities under ``discovery_prefix``."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(1883, gt=0, lt=65536)
    username: str | None = None
    password: SecretStr | None = None           # !secret NAME, kept in secrets.yaml
    tls: bool = False                           # verify the broker's certificate (ca_file, or the system's CAs)
    ca_file: Path | None = None
    cert_file: Path | None = None               # client certificate (with key_file), if the broker asks for one
    key_file: Path | None = None
    client_id: str | None = None                # default gestor-<site>-<daemon>
    topic_prefix: str | None = None             # default gestor/<site>
    discovery: bool = True                      # Home Assistant MQTT discovery
    discovery_prefix: str = "homeassistant"
    publish_s: float = Field(10.0, ge=1, le=3600)  # state at most this often (and at once when a load or the latch changes)

    @field_validator("topic_prefix", "discovery_prefix")
    @classmethod
    def _topic(cls, v: str | None) -> str | None:
        if v is not None and (not v or any(c in v for c in "#+\0") or v.startswith("/") or v.endswith("/")):
            raise ValueError(f"must be a topic without wildcards (#, +) and without a leading or trailing / (got {v!r})")
        return v

    @model_validator(mode="after")
    def _pairs(self) -> "MqttSettings":
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if self.password is not None and self.username is None:
            raise ValueError("password needs a username")
        return self


class WebSettings(_Model):
    """``gestor web`` (daemons/gestor-web.service): the page on the LAN. It refuses to start until
    a password is set (``sudo gestor web --set-password``, which keeps its argon2id hash in
    secrets.yaml as ``web_password_hash``; ``password_hash: !secret NAME`` picks another name).
    HTTPS when both ``tls_cert_file`` and ``tls_key_file`` are given."""

    listen: str = "0.0.0.0:8080"                # HOST:PORT ([::]:8080 for IPv6); 127.0.0.1:8080 = this machine only
    password_hash: SecretStr | None = None      # default: secrets.yaml's web_password_hash
    tls_cert_file: Path | None = None           # PEM certificate (chain) for HTTPS
    tls_key_file: Path | None = None            # its private key (readable by the gestor user only)
    session_hours: float = Field(12.0, gt=0, le=24 * 31)  # a login lasts this long
    poll_s: float = Field(5.0, ge=1, le=60)     # the page asks for fresh state this often

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        listen_address(v)
        return v

    @model_validator(mode="after")
    def _tls(self) -> "WebSettings":
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        return self


class VirtualMeterSettings(_Model):
    """``gestor virtual-meter`` (daemons/gestor-virtual-meter.service; off by default): a grid
    meter for zero-export devices (plug-in batteries, limiters, chargers, diverters) showing the
    real net power corrected by the period's balance (:mod:`gestor.core.virtualmeter`), as a
    Shelly Pro 3EM (HTTP RPC on ``shelly_listen``, UDP RPC on ``shelly_udp_ports``) and as an
    Eastron SDM630 (Modbus TCP on ``sdm630_listen``). Bound to this machine (127.0.0.1) unless
    set otherwise: devices on the LAN need the LAN address (or 0.0.0.0) written here."""

    enabled: bool = False
    shelly_listen: str | None = "127.0.0.1:8081"   # HOST:PORT of the Shelly HTTP RPC; null = none (devices ask port 80)
    shelly_udp_ports: list[Annotated[int, Field(gt=0, lt=65536)]] = Field([], max_length=4)  # UDP RPC on
                                                   # shelly_listen's host: 1010 Marstek Venus/B2500 fw <= 224, 2220 B2500 fw >= 226
    sdm630_listen: str | None = "127.0.0.1:5020"   # HOST:PORT of the SDM630 Modbus TCP; null = none (devices ask port 502)
    unit_id: int = Field(1, ge=1, le=247)          # the SDM630's Modbus unit (device) id
    stale_after_s: float | None = Field(None, ge=1, le=600)  # no reading newer than this: devices get no meter, s
                                                   # (default 3 x monitoring.interval_s)
    max_power_w: float = Field(10_000.0, gt=0, le=50_000)  # the connection's largest power: the shown power's bound, W
    target_wh: float = Field(0.0, ge=-MAX_WH, le=MAX_WH)    # the balance each period should end at, Wh
    min_remaining_s: float = Field(60.0, ge=10, le=1800)    # the correction is spread over at least this, s

    @field_validator("shelly_listen", "sdm630_listen")
    @classmethod
    def _listen(cls, v: str | None) -> str | None:
        if v is not None:
            listen_address(v)
        return v

    @model_validator(mode="after")
    def _what(self) -> "VirtualMeterSettings":
        if self.shelly_udp_ports and self.shelly_listen is None:
            raise ValueError("shelly_udp_ports needs shelly_listen (the UDP RPC listens on its host)")
        if len(set(self.shelly_udp_ports)) != len(self.shelly_udp_ports):
            raise ValueError(f"shelly_udp_ports: each port once (got {self.shelly_udp_ports})")
        if self.enabled and self.shelly_listen is None and self.sdm630_listen is None:
            raise ValueError("enabled with neither shelly_listen nor sdm630_listen: nothing to serve")
        return self

    def stale_s(self, monitoring_interval_s: float) -> float:
        """Readings older than this are stale, s: ``stale_after_s``, else 3 monitoring intervals."""
        return self.stale_after_s if self.stale_after_s is not None else 3.0 * monitoring_interval_s


def listen_address(v: str) -> tuple[str, int]:
    """``"HOST:PORT"`` or ``"[IPv6]:PORT"`` → (host, port). Raises ValueError naming the form."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([A-Za-z0-9.-]+):(\d{1,5})", v or "")
    if not m:
        raise ValueError(f"must be HOST:PORT, e.g. 0.0.0.0:8080, 127.0.0.1:8080 or [::]:8080 (got {v!r})")
    host, port = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    if not 0 < int(port) < 65536:
        raise ValueError(f"port must be 1-65535 (got {port})")
    return host, int(port)


class PricesSettings(_Model):
    """Where the real hourly (or quarter-hourly) prices come from; ``fixed``: the 2.0TD prices of
    ``tariff``. ``esios``: Red Eléctrica's ESIOS API (PVPC 2.0TD, indicator 1001; surplus for
    simplified compensation, indicator 1739), with ``esios_token`` or the env var ESIOS_TOKEN.
    ``pvpc_public``: REE's public PVPC day file, no token (import prices; the surplus from 1739
    when a token is set, else ``tariff.surplus_eur_per_kwh``). ``zone`` must be on ``timezone``'s
    clock (canarias: Atlantic/Canary; the others Europe/Madrid, Ceuta and Melilla also
    Africa/Ceuta): checked in :func:`_cross_checks`."""

    source: Literal["fixed", "esios", "pvpc_public", "file"] = "fixed"
    esios_token: SecretStr | None = None        # !secret NAME (asked from consultasios@ree.es)
    zone: Literal["peninsula", "canarias", "baleares", "ceuta", "melilla"] = "peninsula"
    esios_url: str = "https://api.esios.ree.es"  # the API's base URL (both esios and pvpc_public)
    file: Path | None = None                    # source file: CSV time, import_eur_per_kwh[, surplus_eur_per_kwh]
    timeout_s: float = Field(15.0, gt=0, le=60)

    @model_validator(mode="after")
    def _file(self) -> "PricesSettings":
        if self.source == "file" and self.file is None:
            raise ValueError("source file needs prices.file (a CSV: time, import_eur_per_kwh[, surplus_eur_per_kwh])")
        return self

    @field_validator("esios_url")
    @classmethod
    def _url(cls, v: str) -> str:
        from urllib.parse import urlparse
        u = urlparse(v)
        local = u.hostname in ("127.0.0.1", "localhost", "::1")
        if u.scheme != "https" and not (u.scheme == "http" and local):
            raise ValueError(f"must be https:// (http:// only on this machine) (got {v!r})")
        return v.rstrip("/")


class TariffSettings(_Model):
    """Energy prices for ``gestor simulate`` (EUR/kWh, taxes included as you pay them)."""

    import_p1_eur_per_kwh: float = Field(0.22, ge=0, le=10)   # 2.0TD P1 (punta): weekdays 10-14, 18-22 h
    import_p2_eur_per_kwh: float = Field(0.15, ge=0, le=10)   # 2.0TD P2 (llano): weekdays 8-10, 14-18, 22-24 h
    import_p3_eur_per_kwh: float = Field(0.10, ge=0, le=10)   # 2.0TD P3 (valle): 0-8 h, weekends, holidays
    surplus_eur_per_kwh: float = Field(0.06, ge=0, le=10)   # compensation per exported kWh

    def import_eur_per_kwh(self, period: str) -> float:
        """The fixed import price of a 2.0TD period ("P1", "P2" or "P3", gestor.tariff.calendar.period_2_0td)."""
        return {"P1": self.import_p1_eur_per_kwh, "P2": self.import_p2_eur_per_kwh,
                "P3": self.import_p3_eur_per_kwh}[period]


class PathsSettings(_Model):
    state_dir: Path = Path("/var/lib/gestor")   # persistent: balance state, stop latch
    run_dir: Path = Path("/run/gestor")         # volatile: live reading, simulated relays


class Settings(_Model):
    site: str = "home"                  # tag on every stored point
    site_display_name: str | None = None  # what the web page calls the site ("Casa de la playa"); None: site
    timezone: str = "Europe/Madrid"     # settlement periods are aligned to this zone's clock
    billing: BillingSettings = BillingSettings()
    meter: SerializeAsAny[DriverSection]  # the meter driver's settings (drivers/meters/)
    monitoring: MonitoringSettings = MonitoringSettings()
    managing: ManagingSettings = ManagingSettings()
    policy: PolicySettings = PolicySettings()
    loads: list[LoadSettings] = Field([], max_length=8)  # may be empty when setpoints has a device
    setpoints: list[SetpointDeviceSettings] = Field([], max_length=4, validate_default=True)  # devices whose power gestor sets
    store: StoreSettings = StoreSettings()
    tariff: TariffSettings = TariffSettings()
    mqtt: MqttSettings = MqttSettings()
    prices: PricesSettings = PricesSettings()
    web: WebSettings = WebSettings()
    virtual_meter: VirtualMeterSettings = VirtualMeterSettings()
    paths: PathsSettings = PathsSettings()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    source: Path | None = Field(None, exclude=True)  # the file these came from

    _site_display = field_validator("site_display_name")(classmethod(lambda cls, v: _display_name(v)))

    @field_validator("site")
    @classmethod
    def _site(cls, v: str) -> str:
        if len(v) > 32:
            raise ValueError(f"must have at most 32 characters (got {len(v)})")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", v):
            raise ValueError("must be letters, digits, '_', '.' or '-'")
        return v

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

    @field_validator("setpoints")
    @classmethod
    def _something_to_drive(cls, v: list[SetpointDeviceSettings], info: Any) -> list[SetpointDeviceSettings]:
        """A house needs one thing to drive: an on/off load or a setpoint device (issue 33: a
        battery alone, or a modulating heater alone, is a valid house)."""
        if not v and "loads" in info.data and not info.data["loads"]:
            raise ValueError("loads and setpoints are both empty: give at least one on/off load under "
                             "loads: or one device under setpoints: (got loads: [] and setpoints: [])")
        return v

    @model_validator(mode="after")
    def _names_across(self) -> "Settings":
        loads = {ld.name for ld in self.loads}
        names = [d.name for d in self.setpoints]
        dup = sorted({n for n in names if names.count(n) > 1 or n in loads})
        if dup:
            raise ValueError(f"setpoints: names must differ from each other's and the loads' "
                             f"(got {', '.join(dup)} twice)")
        return self

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
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            plain = isinstance(part, str) and re.fullmatch(r"[\w.\-\[\]]{1,64}", part)
            out += ("." if out else "") + (part if plain else _short_repr(part, 40))
    return out or "(top level)"


MASK = "**********"


class SecretValue(str):
    """A value that came from secrets.yaml (``!secret NAME``): every error shows it as ``**********``."""


def _show(v: Any) -> str:
    """A value for an error line: short, one line, a secret masked."""
    return MASK if isinstance(v, SecretValue) else _short_repr(v)


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
    v = err.get("input")
    if isinstance(v, SecretValue):  # a validator may have quoted it in its message
        msg = msg.replace(repr(str(v)), MASK).replace(str(v), MASK) if v else msg
    if "input" in err and not isinstance(v, (dict, list)):
        msg += f" (got {_show(v)})"
    return msg


def _short_repr(v: Any, limit: int = 60) -> str:
    """``repr(v)``, cut to ``limit`` characters: an error line stays one readable line."""
    try:
        r = repr(v)
    except ValueError:  # an int of more than 4300 digits
        return f"an {type(v).__name__} too long to show"
    return r if len(r) <= limit else r[:limit] + f"... ({len(r)} characters)"


def _errors(prefix: str, exc: ValidationError, base: tuple[Any, ...] = (),
            skip: frozenset[str] = frozenset()) -> list[str]:
    """One line per pydantic error; none for the keys in ``skip`` (already reported)."""
    out = []
    for e in exc.errors():
        key = _loc(base + tuple(e["loc"]))
        if not any(key == k or key.startswith(k + ".") for k in skip):
            out.append(f"{prefix}: {key}: {_message(e)}")
    return out


def _numeric(ann: Any) -> bool:
    """Whether a field of this annotation takes numbers only (int, float, a Literal of ints, or
    one of those or None)."""
    origin = typing.get_origin(ann)
    if origin is typing.Annotated:
        return _numeric(typing.get_args(ann)[0])
    if origin in (Union, types.UnionType):
        parts = [a for a in typing.get_args(ann) if a is not type(None)]
        return bool(parts) and all(_numeric(a) for a in parts)
    if origin is Literal:
        return all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in typing.get_args(ann))
    return ann in (int, float)


def _model(ann: Any) -> type[BaseModel] | None:
    """The model class a field of this annotation holds (also when optional), else None."""
    origin = typing.get_origin(ann)
    if origin is typing.Annotated:
        return _model(typing.get_args(ann)[0])
    if origin in (Union, types.UnionType):
        found = [m for m in map(_model, typing.get_args(ann)) if m is not None]
        return found[0] if len(found) == 1 else None
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def numbers_not_bools(model: type[BaseModel], raw: dict[Any, Any], loc: tuple[Any, ...] = ()
                      ) -> list[tuple[str, str]]:
    """Types strict for numbers, in every model (and every driver's, selected by ``driver:``): a
    number field given ``true``/``false`` or text is refused, where pydantic would take True as 1
    and "5" as 5. Ints stay valid for floats. Returns (key, message) pairs."""
    out: list[tuple[str, str]] = []

    def check(ann: Any, v: Any, at: tuple[Any, ...]) -> None:
        if _numeric(ann):
            if isinstance(v, bool):
                out.append((_loc(at), f"must be a number, not true or false (got {_show(v)})"))
            elif isinstance(v, str):
                out.append((_loc(at), f"must be a number, not text (got {_show(v)})"))
            return
        origin, args = typing.get_origin(ann), typing.get_args(ann)
        if origin in (Union, types.UnionType):
            inner = [a for a in args if a is not type(None)]
            if len(inner) == 1:
                check(inner[0], v, at)
            return
        if origin is typing.Annotated:
            check(args[0], v, at)
            return
        if origin is list and args and isinstance(v, list):
            for i, x in enumerate(v):
                check(args[0], x, at + (i,))
            return
        if origin is dict and len(args) == 2 and isinstance(v, dict):
            for k, x in v.items():
                check(args[1], x, at + (k,))
            return
        sub = _model(ann)
        if sub is not None and isinstance(v, dict):
            out.extend(numbers_not_bools(_driver_model(sub, at, v), v, at))

    for field_name, f in model.model_fields.items():
        key = f.alias or field_name
        if key in raw:
            check(f.annotation, raw[key], loc + (key,))
    return out


def _driver_model(model: type[BaseModel], loc: tuple[Any, ...], raw: dict[Any, Any]) -> type[BaseModel]:
    """For a ``meter`` or ``relay`` section, the model its ``driver:`` registered (when known)."""
    if model is not DriverSection:
        return model
    registry = (meters.METERS if loc[-1:] == ("meter",) else setpoints.SETPOINTS if loc[-1:] == ("device",)
                else relays.RELAYS)
    driver = raw.get("driver")
    return registry[driver][0] if driver in registry else model


def _validate_driver(prefix: str, loc: tuple[Any, ...], raw: dict[str, Any],
                     registry: dict[str, tuple[type[BaseModel], Any]], errors: list[str],
                     config_dir: Path, skip: frozenset[str] = frozenset()) -> BaseModel | None:
    driver = raw.get("driver")
    if not isinstance(driver, str):
        return None  # phase 1 already said "driver: required" or "must be a string"
    if driver not in registry:
        errors.append(f"{prefix}: {_loc(loc + ('driver',))}: unknown driver {_show(driver)} "
                      f"(allowed: {', '.join(sorted(registry))})")
        return None
    model = registry[driver][0]
    try:
        return model.model_validate(raw, context={"config_dir": config_dir})
    except ValidationError as e:
        errors.extend(_errors(prefix, e, loc, skip))
        return None


def _shared_outputs(name: str, loads_raw: list[Any], relays_ok: list[tuple[int, BaseModel | None]],
                    devices_raw: list[Any], devices_ok: list[tuple[int, BaseModel | None]]) -> list[str]:
    """Each load its own relay and each setpoint device its own device: two loads on one device
    output (same ``relay_key()``) would switch each other, two setpoint sections on one battery or
    charger (same ``device_key()``) would fight over its setpoint, and a burst SSR on a load's
    GPIO line would do both. One line per section that repeats an earlier one's, naming both."""
    errors: list[str] = []
    first: dict[Any, tuple[str, int]] = {}
    items = [("loads", "relay", i, r, getattr(r, "relay_key", lambda: None)()) for i, r in relays_ok] + \
        [("setpoints", "device", i, d, getattr(d, "device_key", lambda: None)()) for i, d in devices_ok]

    def who(what: str, n: int) -> str:
        raw = (loads_raw if what == "loads" else devices_raw)[n]
        return _loc((raw.get("name"),)) if isinstance(raw, dict) else f"{what}[{n}]"

    for what, part, i, sec, key in items:
        if key is None:
            continue
        if key not in first:
            first[key] = (what, i)
            continue
        ow, j = first[key]
        label = sec.relay_label() if what == "loads" else sec.device_label()  # type: ignore[union-attr]
        if what == ow == "loads":
            errors.append(f"{name}: loads[{i}].relay: {who(what, i)} is on the same relay as loads[{j}] {who(ow, j)} "
                          f"({label}): each load needs its own relay")
        else:
            errors.append(f"{name}: {what}[{i}].{part}: {who(what, i)} is the same device as {ow}[{j}] {who(ow, j)} "
                          f"({label}): each load and setpoint device needs a device of its own")
    return errors


def _non_finite(raw: Any, loc: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], float]]:
    """Every NaN or infinite number in a parsed document, with its place."""
    if isinstance(raw, float) and not math.isfinite(raw):
        return [(loc, raw)]
    if isinstance(raw, dict):
        return [x for k, v in raw.items() for x in _non_finite(v, loc + (k,))]
    if isinstance(raw, list):
        return [x for i, v in enumerate(raw) for x in _non_finite(v, loc + (i,))]
    return []


def _cross_checks(name: str, s: Settings) -> list[str]:
    """Rules between keys: the stale-meter guard must be able to fire, and every daemon's cycle
    must fit in systemd's watchdog (``WATCHDOG_S``)."""
    errors = []
    if s.managing.stop_button_pin is not None:  # the button's line may not be a relay's
        from drivers.relays.gpio import gpio_pin
        button = ("gpio", gpio_pin(s.managing.stop_button_pin))
        for i, ld in enumerate(s.loads):
            if getattr(ld.relay, "relay_key", lambda: None)() == button:
                errors.append(f"{name}: managing.stop_button_pin: {button[1]} is the relay of loads[{i}] {ld.name}: "
                              f"the stop button needs a GPIO of its own (got {s.managing.stop_button_pin!r})")
    if s.managing.stale_after_s <= s.monitoring.interval_s:
        errors.append(f"{name}: managing.stale_after_s: must be > monitoring.interval_s "
                      f"({s.monitoring.interval_s:g} s) (got {s.managing.stale_after_s:g})")
    frozen = getattr(s.meter, "frozen_after_s", None)  # several identical readings before a meter is frozen
    if frozen is not None and frozen < 3 * s.monitoring.interval_s:
        errors.append(f"{name}: meter.frozen_after_s: must be >= 3 x monitoring.interval_s "
                      f"({3 * s.monitoring.interval_s:g} s) (got {frozen:g})")
    for i, ld in enumerate(s.loads):
        t = float(getattr(ld.relay, "timeout_s", 0.0))
        if s.managing.interval_s + 2 * t >= WATCHDOG_S:
            errors.append(f"{name}: loads[{i}].relay.timeout_s: managing.interval_s + 2 x timeout_s must be < the "
                          f"units' WatchdogSec {WATCHDOG_S:g} s (got {s.managing.interval_s:g} + 2 x {t:g})")
    for i, dev in enumerate(s.setpoints):
        t = float(getattr(dev.device, "timeout_s", 0.0))
        if s.managing.interval_s + 3 * t >= WATCHDOG_S:  # a cycle reads it, commands it, and may idle it
            errors.append(f"{name}: setpoints[{i}].device.timeout_s: managing.interval_s + 3 x timeout_s must be < "
                          f"the units' WatchdogSec {WATCHDOG_S:g} s (got {s.managing.interval_s:g} + 3 x {t:g})")
        hold = getattr(dev.device, "hold_s", None) or getattr(dev.device, "power_timeout_s", None)
        if hold is not None and hold <= 2 * s.managing.interval_s:
            errors.append(f"{name}: setpoints[{i}].device: the device's timeout ({hold:g} s) must be > 2 x "
                          f"managing.interval_s ({s.managing.interval_s:g} s), or it drops every setpoint "
                          f"between two cycles")
    errors += _zone_timezone(name, s)
    errors += _virtual_meter(name, s)
    return errors


def _same_socket(a: str, b: str) -> bool:
    """Whether two HOST:PORT listen addresses would take the same TCP port (the same port on the
    same host, or on a wildcard host that covers the other)."""
    (ha, pa), (hb, pb) = listen_address(a), listen_address(b)
    wild = ("0.0.0.0", "::")
    return pa == pb and (ha == hb or ha in wild or hb in wild)


def _virtual_meter(name: str, s: Settings) -> list[str]:
    """The virtual meter, when enabled: its staleness bound above monitoring's interval, its
    correction's floor inside a period, its TCP ports taken once (the web page's too)."""
    vm = s.virtual_meter
    if not vm.enabled:
        return []
    errors = []
    if vm.stale_after_s is not None and vm.stale_after_s <= s.monitoring.interval_s:
        errors.append(f"{name}: virtual_meter.stale_after_s: must be > monitoring.interval_s "
                      f"({s.monitoring.interval_s:g} s) (got {vm.stale_after_s:g})")
    if vm.min_remaining_s >= s.billing.period_s:
        errors.append(f"{name}: virtual_meter.min_remaining_s: must be < billing.period_s "
                      f"({s.billing.period_s} s) (got {vm.min_remaining_s:g})")
    if vm.shelly_listen is not None and vm.sdm630_listen is not None and _same_socket(vm.shelly_listen, vm.sdm630_listen):
        errors.append(f"{name}: virtual_meter.sdm630_listen: the same TCP port as virtual_meter.shelly_listen "
                      f"(got {vm.sdm630_listen!r} and {vm.shelly_listen!r})")
    for key in ("shelly_listen", "sdm630_listen"):
        v = getattr(vm, key)
        if v is not None and _same_socket(v, s.web.listen):
            errors.append(f"{name}: virtual_meter.{key}: the same TCP port as web.listen {s.web.listen!r}: "
                          f"choose another port (got {v!r})")
    return errors


def _zone_timezone(name: str, s: Settings) -> list[str]:
    """A fetched price day (prices.source esios | pvpc_public) applies by the zone's own clock
    hour: ``prices.zone`` and ``timezone`` must name the same clock (gestor.tariff.prices)."""
    from gestor.tariff.calendar import zone_timezones
    ok = zone_timezones(s.prices.zone)
    if s.prices.source not in FETCHED_SOURCES or s.timezone in ok:
        return []
    other = next((z for z in ("canarias", "peninsula") if s.timezone in zone_timezones(z)), None)
    fix = f"set prices.zone: {other} or timezone: {ok[0]}" if other else f"set timezone: {ok[0]}"
    return [f"{name}: prices.zone: {s.prices.zone!r} prices apply by {' / '.join(ok)} clock hours, but timezone is "
            f"{s.timezone!r}: they must agree ({fix})"]


def parse_settings(raw: Any, name: str = "settings.yaml", source: Path | None = None) -> Settings:
    """Validate a parsed YAML document. Raises SettingsError listing every problem."""
    if not isinstance(raw, dict):
        raise SettingsError([f"{name}: (top level): must be a mapping of keys (got {type(raw).__name__})"])
    bad = _non_finite(raw)
    if bad:  # .nan / .inf would disable a guard (a NaN never compares true): refused everywhere
        raise SettingsError([f"{name}: {_loc(loc)}: must be a finite number (got {v})" for loc, v in bad])
    try:
        s = _parse(raw, name, source)
    except SettingsError as e:  # whatever a validator quoted, a secret's value is not shown
        secrets = {str(v) for v in _secret_values(raw) if len(v) >= 4}
        if not secrets:
            raise
        lines = []
        for line in e.errors:
            head, sep, msg = line.partition(": ")
            key, sep2, msg = msg.partition(": ") if sep else ("", "", line)
            for v in sorted(secrets, key=len, reverse=True):
                msg = msg.replace(v, MASK)
            lines.append(f"{head}{sep}{key}{sep2}{msg}")
        raise SettingsError(lines) from None
    return s


def _secret_values(raw: Any) -> list[SecretValue]:
    if isinstance(raw, SecretValue):
        return [raw]
    if isinstance(raw, dict):
        return [x for v in raw.values() for x in _secret_values(v)]
    if isinstance(raw, list):
        return [x for v in raw for x in _secret_values(v)]
    return []


def _parse(raw: dict[Any, Any], name: str, source: Path | None) -> Settings:
    """:func:`parse_settings` without the masking of secrets."""
    config_dir = source.parent if source else Path.cwd()
    typed = numbers_not_bools(Settings, raw)
    errors: list[str] = [f"{name}: {k}: {m}" for k, m in typed]
    skip = frozenset(k for k, _ in typed)
    try:
        s = Settings.model_validate(raw)
    except ValidationError as e:
        errors.extend(_errors(name, e, skip=skip))
        s = None
    # phase 2: driver sections, even when phase 1 failed elsewhere, to report everything at once
    meter_raw = raw.get("meter")
    meter = None
    if isinstance(meter_raw, dict):
        meter = _validate_driver(name, ("meter",), meter_raw, meters.METERS, errors, config_dir, skip)
    loads_raw = raw.get("loads") if isinstance(raw.get("loads"), list) else []
    relays_ok: list[tuple[int, BaseModel | None]] = []
    for i, ld in enumerate(loads_raw):
        if isinstance(ld, dict) and isinstance(ld.get("relay"), dict):
            relays_ok.append((i, _validate_driver(name, ("loads", i, "relay"), ld["relay"], relays.RELAYS, errors,
                                                  config_dir, skip)))
    devices_raw = raw.get("setpoints") if isinstance(raw.get("setpoints"), list) else []
    devices_ok: list[tuple[int, BaseModel | None]] = []
    for i, d in enumerate(devices_raw):
        if isinstance(d, dict) and isinstance(d.get("device"), dict):
            devices_ok.append((i, _validate_driver(name, ("setpoints", i, "device"), d["device"], setpoints.SETPOINTS,
                                                   errors, config_dir, skip)))
    errors.extend(_shared_outputs(name, loads_raw, relays_ok, devices_raw, devices_ok))
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
    for ld, (_, r) in zip(s.loads, relays_ok):
        ld.relay = r  # type: ignore[assignment]
    for dev, (_, d) in zip(s.setpoints, devices_ok):
        dev.device = d  # type: ignore[assignment]
    errors = _cross_checks(name, s)
    if errors:
        raise SettingsError(errors)
    # relative file paths are relative to the settings file's folder (as the replay meter's path),
    # not to the working directory (systemd starts the daemons in /)
    for sec, key in RELATIVE_FILES:
        section = getattr(s, sec)
        v = getattr(section, key)
        if v is not None and not v.is_absolute():
            setattr(section, key, config_dir / v)
    s.source = source
    return s


RELATIVE_FILES = (("prices", "file"), ("mqtt", "ca_file"), ("mqtt", "cert_file"), ("mqtt", "key_file"),
                  ("web", "tls_cert_file"), ("web", "tls_key_file"))


def policy_needs_thresholds(s: Settings) -> bool:
    return s.policy.name == "hysteresis"


class SecretRef(str):
    """``!secret NAME`` in settings.yaml: the value of NAME in secrets.yaml (Home Assistant's
    convention), resolved by :func:`load_settings`."""


class _Loader(yaml.SafeLoader):
    """YAML's safe loader, refusing duplicate keys (YAML would silently keep the last one) and
    aliases (``*name``: settings never need them, and a "billion laughs" of nested aliases expands
    a 2 kB file past any memory), knowing ``!secret NAME``; a value YAML cannot build (a date
    2022-13-45, an int of 5000 digits) is an error at its line, not a traceback."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"an alias (*{_short_repr(event.anchor, 30)[1:-1]}) is not allowed in settings: "
                "write the value out", event.start_mark)
        return super().compose_node(parent, index)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError, TypeError) as e:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value ({_short_repr(str(e), 80)[1:-1]})", node.start_mark) from None

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(None, None, "a key must be a plain value",
                                                        key_node.start_mark) from None
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {_short_repr(key)} (first on line {seen[key].line + 1})",
                    key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


_Loader.add_constructor("!secret", lambda loader, node: SecretRef(loader.construct_scalar(node)))


def read_file(path: Path, prefix: str, max_bytes: int, hint: str = SUDO_HINT) -> bytes:
    """The bytes of a file the settings are or name: a regular file only (never blocks on a FIFO,
    never reads /dev/zero), at most ``max_bytes``. Raises SettingsError (one line, starting with
    ``prefix``); a permission denied says how to get it (``hint``)."""
    try:
        return read_small_file(path, max_bytes)
    except UnsafeFileError as e:
        raise SettingsError([f"{prefix}: {e.strerror}"]) from None
    except PermissionError as e:
        raise SettingsError([f"{prefix}: cannot read: {e.strerror} ({hint})"]) from None
    except OSError as e:
        raise SettingsError([f"{prefix}: cannot read: {e.strerror or e}"]) from None


def read_yaml(path: Path, prefix: str, max_bytes: int = MAX_SETTINGS_BYTES, hint: str = SUDO_HINT) -> Any:
    """Parse one YAML file into plain data. Raises SettingsError (one line, starting with
    ``prefix``) for anything wrong with the file itself: unreadable (:func:`read_file`), too
    large, not UTF-8, not YAML, duplicate keys, aliases, too deep."""
    data = read_file(path, prefix, max_bytes, hint)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise SettingsError([f"{prefix}: line {line}: not UTF-8 text (byte 0x{data[e.start]:02x}); "
                             "save it as UTF-8"]) from None
    try:
        raw = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise SettingsError([f"{prefix}: {where}not valid YAML: {' '.join(problem.split())}"]) from None
    except RecursionError:
        raise SettingsError([f"{prefix}: nested too deeply to be settings"]) from None
    if _depth(raw) > MAX_DEPTH:
        raise SettingsError([f"{prefix}: nested more than {MAX_DEPTH} levels deep: not settings"])
    return raw


def _read_yaml(path: Path, name: str, errors_prefix: str | None = None) -> Any:
    """:func:`read_yaml` of a settings file (the name older callers use)."""
    return read_yaml(path, errors_prefix or name)


def _depth(v: Any, d: int = 0) -> int:
    if d > MAX_DEPTH:
        return d
    if isinstance(v, dict):
        return max((_depth(x, d + 1) for x in v.values()), default=d + 1)
    if isinstance(v, list):
        return max((_depth(x, d + 1) for x in v), default=d + 1)
    return d


def secrets_path(settings_path: Path) -> Path:
    """secrets.yaml beside the settings file (``/etc/gestor/secrets.yaml`` when installed)."""
    return settings_path.parent / SECRETS_FILE


def _resolve_secrets(raw: Any, name: str, path: Path, optional: bool) -> Any:
    """Replace every ``!secret NAME`` by its value in secrets.yaml. With ``optional`` (``gestor
    status``, which needs no secret and may not be allowed to read them) an unreadable secrets
    file leaves a placeholder."""
    refs: list[tuple[tuple[Any, ...], SecretRef]] = []

    def walk(v: Any, loc: tuple[Any, ...]) -> None:
        if isinstance(v, SecretRef):
            refs.append((loc, v))
        elif isinstance(v, dict):
            for k, x in v.items():
                walk(x, loc + (k,))
        elif isinstance(v, list):
            for i, x in enumerate(v):
                walk(x, loc + (i,))

    walk(raw, ())
    if not refs:
        return raw
    spath = secrets_path(path)
    try:
        secrets = read_yaml(spath, str(spath), hint="run it with sudo")
        if not isinstance(secrets, dict):
            raise SettingsError([f"{spath}: must be a mapping NAME: value"])
    except SettingsError as e:
        if optional:
            secrets = {}
        else:
            loc, ref = refs[0]
            raise SettingsError([f"{name}: {_loc(loc)}: !secret {ref}: {e.errors[0]}"]) from None
    errors = []

    def get(loc: tuple[Any, ...], ref: SecretRef) -> Any:
        if ref in secrets and isinstance(secrets[ref], (str, int)) and not isinstance(secrets[ref], bool):
            return SecretValue(secrets[ref])
        if optional:
            return "<secret not readable>"
        errors.append(f"{name}: {_loc(loc)}: !secret {ref}: no such name in {spath} "
                      f"(it must be a string there)")
        return None

    def replace(v: Any, loc: tuple[Any, ...]) -> Any:
        if isinstance(v, SecretRef):
            return get(loc, v)
        if isinstance(v, dict):
            return {k: replace(x, loc + (k,)) for k, x in v.items()}
        if isinstance(v, list):
            return [replace(x, loc + (i,)) for i, x in enumerate(v)]
        return v

    out = replace(raw, ())
    if errors:
        raise SettingsError(errors)
    return out


def read_raw(path: Path | str, secrets_optional: bool = False) -> Any:
    """The settings file as plain data, secrets resolved. Raises SettingsError."""
    path = Path(path)
    raw = _read_yaml(path, str(path))
    return _resolve_secrets(raw, str(path), path, secrets_optional)


def load_settings(path: Path | str, secrets_optional: bool = False) -> Settings:
    """Read and validate a settings file.

    ``!secret NAME`` values come from ``secrets.yaml`` beside it (root-only on an installed system);
    ``secrets_optional`` lets commands that need no secret (``gestor status``) work without them.

    Raises:
        SettingsError: the file is missing, not YAML, or not valid; one line per problem.
    """
    path = Path(path)
    s = parse_settings(read_raw(path, secrets_optional), str(path), path.resolve())
    if not secrets_optional:
        errors = check_files(s, str(path))
        if errors:
            raise SettingsError(errors)
    return s


def check_files(s: Settings, name: str) -> list[str]:
    """Every file the settings name and a daemon will open (besides the meter's, checked with its
    section): readable, a regular file, not over its size cap; one error line for each that is
    not. MQTT's certificates when MQTT is enabled with TLS, the page's TLS pair, prices.file when
    prices come from it."""
    files: list[tuple[str, Path, int]] = []
    if s.mqtt.enabled and s.mqtt.tls:
        files += [(f"mqtt.{k}", getattr(s.mqtt, k), MAX_PEM_BYTES) for k in ("ca_file", "cert_file", "key_file")]
    files += [(f"web.{k}", getattr(s.web, k), MAX_PEM_BYTES) for k in ("tls_cert_file", "tls_key_file")]
    if s.prices.source == "file":
        files.append(("prices.file", s.prices.file, MAX_PRICES_BYTES))  # type: ignore[arg-type]
    errors = []
    for key, f, cap in files:
        if f is None:
            continue
        try:
            read_file(f, f"{name}: {key}: {f}", cap)
        except SettingsError as e:
            errors.extend(e.errors)
    return errors


SECRET_KEYS = ("password", "token", "esios_token", "password_hash")


def clear_text_secrets(path: Path | str) -> list[str]:
    """Keys of ``path`` holding a password or token in clear (not ``!secret NAME``)."""
    return plain_secrets(_read_yaml(Path(path), str(path)))


def plain_secrets(raw: Any, loc: tuple[Any, ...] = ()) -> list[str]:
    """Places in a settings document where a password or token is written in clear (``gestor
    check`` warns: they belong in secrets.yaml)."""
    out = []
    if isinstance(raw, dict):
        for k, v in raw.items():
            if k in SECRET_KEYS and isinstance(v, str) and not isinstance(v, SecretRef) and v:
                out.append(_loc(loc + (k,)))
            else:
                out.extend(plain_secrets(v, loc + (k,)))
    elif isinstance(raw, list):
        for i, v in enumerate(raw):
            out.extend(plain_secrets(v, loc + (i,)))
    return out


def dump_settings(s: Settings) -> str:
    """The resolved settings as YAML (defaults filled in), secrets shown as ``**********``."""
    data = s.model_dump(mode="json", exclude={"source"})
    return yaml.safe_dump(data, sort_keys=False)
