"""The settings' models (pydantic): every section of settings.yaml (``billing``, ``monitoring``,
``managing``, ``policy``, ``loads``, ``setpoints``, ``store``, ``mqtt``, ``web``,
``virtual_meter``, ``prices``, ``tariff``, ``paths``) and :class:`Settings`, with the checks one
section makes on itself; the limits they use (``WATCHDOG_S``, ``MAX_WH``, ...) and
:class:`SettingsError`. Driver sections (``meter``, ``loads[i].relay``, ``setpoints[i].device``)
are :class:`DriverSection` s here, validated by their driver's model in
:mod:`gestor.settings.checks`."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, SecretStr, SerializeAsAny, field_validator, model_validator

from drivers import DEVICE_NAME
from gestor.settings.bill import BillSettings
from gestor.core.guards import parse_window  # the windows' format is the guards'
from gestor.clock import zone
from gestor.settings.distributor import DistributorSettings


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
    display_gender: Literal["m", "f"] = "m"    # its name's grammatical gender: "Termo eléctrico apagado", "Bomba apagada"

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
    the setpoint law of :mod:`gestor.core.setpoint` after the on/off loads
    (docs/site/en/devices/index.md)."""

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
    # demands it (0: no such rule; docs/site/en/devices/index.md, issue 32)
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
    language: Literal["es", "ca", "en"] = "en"  # the reasons Home Assistant shows (the journal stays English)

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
    bill: BillSettings = BillSettings()  # the retailer's contract for the monthly bill (issue 35)
    mqtt: MqttSettings = MqttSettings()
    prices: PricesSettings = PricesSettings()
    web: WebSettings = WebSettings()
    virtual_meter: VirtualMeterSettings = VirtualMeterSettings()
    distributor: DistributorSettings | None = None  # the distributor's curve (issue 35); None: not fetched
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
