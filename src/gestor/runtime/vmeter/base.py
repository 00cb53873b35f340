"""The virtual meter's reading (:class:`VirtualMeter`, :class:`View`): what every emulated meter
shows, from the files monitoring and managing publish; and the helpers its servers share. See
:mod:`gestor.runtime.virtualmeter` for the whole of it."""
from __future__ import annotations

import json
import logging
import socket
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from gestor.clock import Clock
from gestor.core.balance import period_bounds
from gestor.core.virtualmeter import balance_since, virtual_net_w
from gestor.runtime.daemon import GestorError
from gestor.runtime.livestate import is_latched, pid_alive, read_live, read_managing, reading_age
from gestor.runtime.statefiles import Number
from gestor.settings import Settings

log = logging.getLogger("gestor.virtualmeter")

CACHE_S = 0.25            # a view is computed at most this often (a flood of requests reads the files once)
NOMINAL_V = 230.0
NOMINAL_HZ = 50.0


# --- what the meter shows -----------------------------------------------------------------------
@dataclass(frozen=True)
class View:
    """What the virtual meter shows now. ``stale`` is None when it shows a reading, else why it
    shows none (then the power fields are 0 and must not be served).

    Attributes:
        at: when it was computed (the injected clock).
        stale: why there is no meter to show, or None.
        net_w: the real net power, W, export-positive.
        virtual_net_w: what is shown, W, export-positive.
        balance_wh: the period's balance it was corrected by, Wh (None: not corrected).
        remaining_s: the period's time left, s.
        uncorrected: why it was not corrected (None when it was).
        import_wh_total, export_wh_total: the real meter's energy counters, Wh, if it has them.
        reading_age_s: the age of the reading shown, s.
        reading_at: when the reading shown was measured (a new one is pushed to WebSocket clients).
    """

    at: datetime
    stale: str | None
    net_w: float = 0.0
    virtual_net_w: float = 0.0
    balance_wh: float | None = None
    remaining_s: float = 0.0
    uncorrected: str | None = None
    import_wh_total: float | None = None
    export_wh_total: float | None = None
    reading_age_s: float | None = None
    reading_at: datetime | None = None

    @property
    def import_w(self) -> float:
        """What is shown, import-positive (Shelly's ``act_power``, Eastron's power): the one
        conversion from gestor's export-positive ``net_w``."""
        return -self.virtual_net_w


class _Published(BaseModel):
    """The fields of managing's published state (``run_dir/managing.json``) the meter uses."""
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)
    at: AwareDatetime
    pid: StrictInt | None = None
    stopped: StrictBool = False
    period_start: AwareDatetime
    period_end: AwareDatetime
    balance_wh: Annotated[Number, Field(ge=-1e9, le=1e9)]
    reading_at: AwareDatetime | None = None


class VirtualMeter:
    """The meter's reading, from the files monitoring and managing publish, on ``clock``."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.s = settings
        self.vm = settings.virtual_meter
        self.clock = clock
        self.stale_after_s = self.vm.stale_s(settings.monitoring.interval_s)
        self.managing_fresh_s = 3.0 * settings.managing.interval_s
        self._lock = threading.Lock()
        self._cached: tuple[float, View] | None = None

    def view(self) -> View:
        """The meter now (computed at most every :data:`CACHE_S` of the clock's monotonic time).
        Never raises: a file that cannot be read is a missing one."""
        with self._lock:
            mono = self.clock.monotonic()
            if self._cached is not None and 0 <= mono - self._cached[0] < CACHE_S:
                return self._cached[1]
            try:
                v = self._compute()
            except Exception as e:  # noqa: BLE001 -- whatever it is, the devices get no meter
                log.exception("virtual meter: cannot compute the reading")
                v = View(self.clock.now(), stale=f"internal error ({type(e).__name__})")
            self._cached = (mono, v)
            return v

    def _compute(self) -> View:
        now = self.clock.now()
        if is_latched(self.s.paths.state_dir):
            return View(now, stale="the stop latch is set (stop-loads --release lifts it)")
        live = read_live(self.s.paths.run_dir)
        age = reading_age(now, live, self.clock.monotonic)
        if age is None:
            return View(now, stale="monitoring has published no reading")
        if age < 0 or age > self.stale_after_s:
            return View(now, stale=f"the newest reading is {age:.0f} s old (stale after {self.stale_after_s:g} s)",
                        reading_age_s=age)
        r = live[-1][0]
        start, end = period_bounds(now, self.s.billing.period_s, self.s.tz)
        remaining = (end - now).total_seconds()
        balance, why = self._balance(now, live, start, end)
        if balance is None:
            shown = min(max(r.net_w, -self.vm.max_power_w), self.vm.max_power_w)
        else:
            shown = virtual_net_w(r.net_w, balance, remaining, self.vm.target_wh, self.vm.min_remaining_s,
                                  self.vm.max_power_w)
        return View(now, None, r.net_w, shown, balance, remaining, why, r.import_wh_total, r.export_wh_total, age,
                    r.at)

    def _balance(self, now: datetime, live: list, start: datetime, end: datetime) -> tuple[float | None, str | None]:
        """(the period's balance now, None) or (None, why it is not known)."""
        raw = read_managing(self.s.paths.run_dir)
        if raw is None:
            return None, "managing has published no state"
        try:
            mg = _Published.model_validate(raw)
        except ValidationError:
            return None, "managing's published state lacks the balance"
        if mg.stopped or not pid_alive(mg.pid):
            return None, "managing is not running"
        age = (now - mg.at).total_seconds()
        if not 0 <= age <= self.managing_fresh_s:
            return None, f"managing's state is {age:.0f} s old"
        if mg.period_start == start and mg.period_end == end:
            base_wh = float(mg.balance_wh)
            from_s = max(mg.reading_at, start).timestamp() if mg.reading_at is not None else start.timestamp()
        elif mg.period_end == start:  # the period has just begun: managing has not cycled into it yet
            base_wh, from_s = 0.0, start.timestamp()
        else:
            return None, "managing's published period is not this one"
        samples = [(r.at.timestamp(), r.net_w) for r, _ in live]
        return balance_since(base_wh, from_s, samples, min(now, end).timestamp(), self.s.billing.max_gap_s), None


def json_bytes(obj: Any) -> bytes:
    """``obj`` as compact JSON (every float with its decimal point, as Python writes them)."""
    return json.dumps(obj, separators=(",", ":")).encode()


def listen_failure(e: OSError) -> str:
    """Why a server cannot listen, in one phrase (a port below 1024: the capability it needs)."""
    if isinstance(e, PermissionError):
        return f"{e.strerror or e} (a port below 1024 needs CAP_NET_BIND_SERVICE: the systemd unit has it)"
    return e.strerror or str(e)


def probe_tcp(host: str, port: int, listen: str) -> None:
    """Raise GestorError (one line) when ``host:port`` cannot be bound for TCP."""
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
    except OSError as e:
        raise GestorError(f"cannot listen on {listen} (TCP): {listen_failure(e)}") from None
    finally:
        s.close()
