"""Enphase Envoy-S Metered (IQ Gateway) over its local HTTP API.

* ``source: production_json`` (default): ``GET /production.json?details=1``. Production is the
  ``production`` entry with ``type: eim`` and ``measurementType: production`` (its ``wNow``, W;
  the ``inverters`` entry when no production CT is fitted); consumption the ``consumption`` entry
  with ``measurementType: total-consumption``; the grid the one with ``net-consumption``
  (import-positive, so ``net_w = -wNow``). Source: Enphase "Envoy-S API" local endpoints, as used
  by Enphase's own Enlighten installer toolkit and by the original project of this thesis.
* ``source: stream``: ``GET /stream/meter``, the server-sent stream the original project used
  (lines ``data: {"production": {"ph-a": {"p": W, ...}, "ph-b": ..., "ph-c": ...},
  "net-consumption": {...}, "total-consumption": {...}}``, about one a second). A background
  thread keeps the latest sample; a read returns it when it is younger than ``timeout_s``, and
  raises MeterError otherwise. The phases' ``p`` are summed with their signs.

Auth: firmware before 7 uses digest auth (user ``installer`` or ``envoy``, password from the
serial number); firmware 7+ needs HTTPS and a token from Enphase's site (``auth: token``).

TLS is verified (``verify_tls: true``). The Envoy's certificate is self-signed, so pin it:
``tls_fingerprint`` (its SHA-256; the error of the first failed read prints the fingerprint the
device presented, to compare with the Envoy's own page). ``verify_tls: false`` turns the check off
and is logged as a warning at every start.

Every malformed answer (a sample that is not an object, a block of the wrong type) is a failed
read, never a crash; the stream's reader thread survives any sample, and a reader thread that
died anyway makes ``read`` raise a non-meter error, so the daemon exits and systemd restarts it
(its watchdog is not fed by a monitoring that cannot read).
"""
from __future__ import annotations

import json
import logging
import threading
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from drivers import DriverContext, secret
from drivers.http import Device, HttpError, normalise_fingerprint, number
from drivers.meters.base import MeterError, MeterSettings, Reading, register_meter

log = logging.getLogger("gestor.envoy")


class EnvoySettings(MeterSettings):
    driver: Literal["envoy"] = "envoy"
    host: str
    scheme: Literal["http", "https"] = "http"     # firmware 7+: https
    port: int | None = Field(None, gt=0, lt=65536)  # default 80 (http) or 443 (https)
    source: Literal["production_json", "stream"] = "production_json"
    auth: Literal["none", "digest", "token"] = "none"
    username: str = "installer"
    password: SecretStr | None = None             # digest (better: !secret NAME in secrets.yaml)
    token: SecretStr | None = None                # firmware 7+ (JWT from entrez.enphaseenergy.com; !secret NAME)
    verify_tls: bool = True                       # verify https certificates (false: not verified, logged)
    tls_fingerprint: str | None = None            # SHA-256 of the Envoy's self-signed certificate: pinned
    timeout_s: float = Field(5.0, gt=0, le=20)

    @property
    def counter_resolution_wh(self) -> float:
        """1 Wh (the Envoy's ``whLifetime`` counts Wh); this driver reads no counters: the balance
        is integrated from its power."""
        return 1.0

    @field_validator("tls_fingerprint")
    @classmethod
    def _fp(cls, v: str | None) -> str | None:
        return None if v is None else normalise_fingerprint(v)

    @model_validator(mode="after")
    def _auth(self) -> "EnvoySettings":
        if self.auth == "digest" and not self.password:
            raise ValueError("auth digest needs password")
        if self.auth == "token" and not self.token:
            raise ValueError("auth token needs token")
        return self


def _sum_phases(block: Any, where: str) -> float:
    if not isinstance(block, dict) or not block:
        raise HttpError(f"{where}: phase block missing or empty")
    return sum(number(block, ph, "p", where=where) for ph in sorted(block))


class EnvoyMeter:
    """Reads an Envoy-S Metered. Raises MeterError with the URL and the reason."""

    def __init__(self, s: EnvoySettings, ctx: DriverContext) -> None:
        self.s = s
        self.clock = ctx.clock
        headers = {"Authorization": f"Bearer {secret(s.token)}"} if s.auth == "token" else {}
        self.device = Device(s.username if s.auth == "digest" else None,
                             secret(s.password) if s.auth == "digest" else None, digest=True,
                             verify_tls=s.verify_tls, tls_fingerprint=s.tls_fingerprint, headers=headers)
        if s.scheme == "https" and not s.verify_tls and not s.tls_fingerprint:
            log.warning("envoy %s: TLS NOT VERIFIED (verify_tls: false): anyone on the network can pose as the "
                        "Envoy; pin its certificate with tls_fingerprint instead", s.host)
        port = f":{s.port}" if s.port else ""
        self.base = f"{s.scheme}://{s.host}{port}"
        self._latest: tuple[Any, Reading] | None = None
        self._stream_error = "no sample received yet"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- production.json ---------------------------------------------------------------------
    def _read_json(self) -> Reading:
        url = f"{self.base}/production.json?details=1"
        d = self.device.get_json(url, self.s.timeout_s)
        if not isinstance(d, dict):
            raise HttpError(f"{url}: answer is not a JSON object")
        production, consumption = _entries(d, "production", url), _entries(d, "consumption", url)
        prod = cons = net = None
        for e in production:
            if e.get("measurementType") == "production":
                prod = number(e, "wNow", where=url)
        if prod is None:
            for e in production:
                if e.get("type") == "inverters":
                    prod = number(e, "wNow", where=url)
        for e in consumption:
            if e.get("measurementType") == "total-consumption":
                cons = number(e, "wNow", where=url)
            elif e.get("measurementType") == "net-consumption":
                net = -number(e, "wNow", where=url)
        if net is None:
            if prod is None or cons is None:
                raise HttpError(f"{url}: answer has no net-consumption, nor production and total-consumption "
                                "(a production-only Envoy cannot drive gestor)")
            net = prod - cons
        return Reading(at=self.clock.now(), net_w=net, production_w=prod, consumption_w=cons)

    # --- /stream/meter ----------------------------------------------------------------------
    def _sample(self, line: bytes, url: str) -> Reading:
        """One ``data: {...}`` line → a Reading. Raises HttpError for anything malformed."""
        where = f"{url} sample"
        try:
            d = json.loads(line[5:])
        except ValueError as e:
            raise HttpError(f"{where}: not JSON ({e})") from None
        if not isinstance(d, dict):
            raise HttpError(f"{where}: {str(d)[:40]!r} is not an object")
        if "net-consumption" not in d:
            raise HttpError(f"{where}: no net-consumption block")
        net = -_sum_phases(d["net-consumption"], where)
        prod = _sum_phases(d["production"], where) if "production" in d else None
        cons = _sum_phases(d["total-consumption"], where) if "total-consumption" in d else None
        return Reading(at=self.clock.now(), net_w=net, production_w=prod, consumption_w=cons)

    def _stream_loop(self) -> None:
        url = f"{self.base}/stream/meter"
        backoff = 1.0
        while not self._stop.is_set():
            try:
                for line in self.device.stream_lines(url, self.s.timeout_s):
                    if self._stop.is_set():
                        return
                    if not line.startswith(b"data:"):
                        continue
                    try:
                        reading = self._sample(line, url)
                    except (HttpError, MeterError) as e:
                        self._stream_error = str(e)
                        continue
                    self._latest = (reading.at, reading)
                    backoff = 1.0
                self._stream_error = f"{url}: stream ended"
            except HttpError as e:
                self._stream_error = str(e)
            except Exception as e:  # noqa: BLE001 -- the reader must outlive any answer
                self._stream_error = f"{url}: {type(e).__name__}: {str(e)[:120]}"
                log.exception("envoy stream reader: unexpected error (reconnecting)")
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 30.0)

    def _read_stream(self) -> Reading:
        if self._thread is None:
            self._thread = threading.Thread(target=self._stream_loop, name="envoy-stream", daemon=True)
            self._thread.start()
        if not self._thread.is_alive() and not self._stop.is_set():
            raise RuntimeError(f"envoy {self.s.host}: the stream reader thread died: monitoring exits so that "
                               "systemd restarts it")
        latest = self._latest
        if latest is None:
            raise MeterError(f"envoy {self.s.host}: {self._stream_error}")
        got_at, reading = latest
        age = (self.clock.now() - got_at).total_seconds()
        if age > self.s.timeout_s:
            raise MeterError(f"envoy {self.s.host}: last stream sample is {age:.0f} s old: {self._stream_error}")
        return reading

    def read(self) -> Reading:
        try:
            return self._read_json() if self.s.source == "production_json" else self._read_stream()
        except HttpError as e:
            raise MeterError(f"envoy {self.s.host}: {e}") from None

    def close(self) -> None:
        self._stop.set()
        self.device.close()
        if self._thread is not None:
            self._thread.join(self.s.timeout_s + 1)


def _entries(d: dict, key: str, url: str) -> list[dict]:
    """``d[key]``: a list of objects (production.json), or HttpError."""
    v = d.get(key, [])
    if not isinstance(v, list) or not all(isinstance(e, dict) for e in v):
        raise HttpError(f"{url}: {key} is not a list of objects")
    return v


@register_meter("envoy", EnvoySettings)
def _open(s: EnvoySettings, ctx: DriverContext) -> EnvoyMeter:
    return EnvoyMeter(s, ctx)
