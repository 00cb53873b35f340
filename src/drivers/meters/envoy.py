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
serial number); firmware 7+ needs HTTPS and a token from Enphase's site (``auth: token``). The
Envoy's certificate is self-signed: ``verify_tls`` is off by default.
"""
from __future__ import annotations

import json
import logging
import threading
from typing import Any, Literal

import requests
import urllib3
from pydantic import Field, model_validator

from drivers import DriverContext
from drivers.http import HttpError, get_json, number
from drivers.meters.base import MeterError, MeterSettings, Reading, register_meter

log = logging.getLogger("gestor.envoy")


class EnvoySettings(MeterSettings):
    driver: Literal["envoy"] = "envoy"
    host: str
    scheme: Literal["http", "https"] = "http"     # firmware 7+: https
    port: int | None = None
    source: Literal["production_json", "stream"] = "production_json"
    auth: Literal["none", "digest", "token"] = "none"
    username: str = "installer"
    password: str | None = None                   # digest
    token: str | None = None                      # firmware 7+ (JWT from entrez.enphaseenergy.com)
    verify_tls: bool = False
    timeout_s: float = Field(5.0, gt=0)

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
        self.session = requests.Session()
        self.session.verify = s.verify_tls
        if not s.verify_tls:
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        if s.auth == "digest":
            self.session.auth = requests.auth.HTTPDigestAuth(s.username, s.password or "")
        elif s.auth == "token":
            self.session.headers["Authorization"] = f"Bearer {s.token}"
        port = f":{s.port}" if s.port else ""
        self.base = f"{s.scheme}://{s.host}{port}"
        self._latest: tuple[Any, Reading] | None = None
        self._stream_error = "no sample received yet"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._response: requests.Response | None = None

    # --- production.json ---------------------------------------------------------------------
    def _read_json(self) -> Reading:
        url = f"{self.base}/production.json?details=1"
        d = get_json(self.session, url, self.s.timeout_s)
        prod = cons = net = None
        for e in d.get("production", []) if isinstance(d, dict) else []:
            if e.get("measurementType") == "production":
                prod = number(e, "wNow", where=url)
        if prod is None:
            for e in d.get("production", []) if isinstance(d, dict) else []:
                if e.get("type") == "inverters":
                    prod = number(e, "wNow", where=url)
        for e in d.get("consumption", []) if isinstance(d, dict) else []:
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
    def _stream_loop(self) -> None:
        url = f"{self.base}/stream/meter"
        backoff = 1.0
        while not self._stop.is_set():
            try:
                with self.session.get(url, stream=True, timeout=self.s.timeout_s) as r:
                    self._response = r
                    if r.status_code == 401:
                        raise HttpError(f"{url}: HTTP 401, authentication failed (installer password?)")
                    if not r.ok:
                        raise HttpError(f"{url}: HTTP {r.status_code} {r.reason}")
                    for line in r.iter_lines():
                        if self._stop.is_set():
                            return
                        if not line.startswith(b"data:"):
                            continue
                        try:
                            d = json.loads(line[5:])
                            where = f"{url} sample"
                            net = -_sum_phases(d["net-consumption"], where)
                            prod = _sum_phases(d["production"], where) if "production" in d else None
                            cons = _sum_phases(d["total-consumption"], where) if "total-consumption" in d else None
                        except (ValueError, KeyError) as e:
                            self._stream_error = f"{url}: bad sample ({type(e).__name__}: {e})"
                            continue
                        except HttpError as e:
                            self._stream_error = str(e)
                            continue
                        self._latest = (self.clock.now(), Reading(at=self.clock.now(), net_w=net,
                                                                  production_w=prod, consumption_w=cons))
                        backoff = 1.0
                self._stream_error = f"{url}: stream ended"
            except requests.RequestException as e:
                self._stream_error = f"{url}: {'no answer' if isinstance(e, requests.Timeout) else 'unreachable'} ({type(e).__name__})"
            except HttpError as e:
                self._stream_error = str(e)
            self._response = None
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 30.0)

    def _read_stream(self) -> Reading:
        if self._thread is None:
            self._thread = threading.Thread(target=self._stream_loop, name="envoy-stream", daemon=True)
            self._thread.start()
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
        r = self._response
        if r is not None:
            try:
                r.close()
            except Exception:
                pass
        if self._thread is not None:
            self._thread.join(self.s.timeout_s + 1)
        self.session.close()


@register_meter("envoy", EnvoySettings)
def _open(s: EnvoySettings, ctx: DriverContext) -> EnvoyMeter:
    return EnvoyMeter(s, ctx)
