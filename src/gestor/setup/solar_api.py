"""The Fronius finder: the Solar API over HTTP on port 80 (``driver: fronius``).

Every Fronius Datamanager (Symo, Primo, Galvo, Eco) and Gen24 answers, with no password,
``GET /solar_api/GetAPIVersion.cgi`` (Fronius, "Fronius Solar API V1", operating instructions
42,0410,2012, "Retrieving the API version": fields ``APIVersion``, ``BaseURL``,
``CompatibilityRange``), e.g. ``{"APIVersion": 1, "BaseURL": "/solar_api/v1/",
"CompatibilityRange": "1.6-3"}`` (a Symo's recorded answer, Home Assistant core
``tests/components/fronius/fixtures/symo/GetAPIVersion.json``). pyfronius 0.8.2 asks the same
path (``pyfronius/__init__.py``: ``URL_API_VERSION``, ``fetch_api_version``) to pick its API
version. Only version 1 is proposed: the ``fronius`` driver reads Solar API v1 (an old
Datamanager without the path, API version 0, is left out with a sentence).

Why this finder, and why ``fronius`` is listed before ``sunspec`` when one device answers both
(a Fronius with Modbus TCP enabled: SunSpec on 502, its Smart Meter at unit 240):

- the Solar API is on by default, Modbus TCP only when the installer enabled it, so the Solar
  API finds every Fronius and keeps working if Modbus is switched off again;
- its meter answer says where the meter sits (``Meter_Location_Current``: 0 the feed-in point,
  1 the consumption path) and the driver refuses a meter that is not at the grid connection;
  SunSpec's meter models carry no location;
- it is read-only HTTP and leaves the Datamanager's Modbus TCP (one of a few connections, used
  by batteries, wallboxes and export control) to the devices that control the inverter.

Bounded: port 80 connects within ``connect_timeout_s`` (at most MAX_HOSTS open ports looked at),
each answer at most drivers.http.MAX_BODY_BYTES within TIMEOUT_S, WORKERS asked at once.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from gestor.setup.found import MAX_FOUND, Found, json_answer
from gestor.setup.modbus import open_ports

PORT = 80
PATH = "/solar_api/GetAPIVersion.cgi"   # pyfronius 0.8.2 URL_API_VERSION
TIMEOUT_S = 3.0
MAX_HOSTS = 64                          # hosts with port 80 open that are asked
WORKERS = 8


def parse_api_version(host: str, answer: Any) -> Found | None:
    """The section a ``GetAPIVersion.cgi`` answer from ``host`` proposes (``driver: fronius``),
    or None when it is not a Solar API v1 answer."""
    if not isinstance(answer, dict) or answer.get("APIVersion") != 1:
        return None
    base = str(answer.get("BaseURL", ""))[:40]
    if not base.startswith("/solar_api/v1"):
        return None
    compat = str(answer.get("CompatibilityRange", "?"))[:20]
    return Found("meter", {"driver": "fronius", "host": host}, f"Fronius Solar API v1 at {host} (compatibility {compat})",
                 "fronius_http", extra="fronius",
                 notes=("reads the Smart Meter with DeviceId 0 (meter_id); it must sit at the feed-in point",))


def identify(host: str, timeout_s: float = TIMEOUT_S) -> Found | None:
    """Ask ``http://HOST/solar_api/GetAPIVersion.cgi``; None when it does not answer a Solar API v1."""
    return parse_api_version(host, json_answer(f"http://{host}{PATH}", timeout_s))


def scan(network: ipaddress.IPv4Network, connect_timeout_s: float = 0.5, parallel: int = 64,
         skip: Iterable[str] = ()) -> list[Found]:
    """Every Fronius answering the Solar API on ``network`` (its hosts, but those in ``skip``)."""
    hosts = [str(h) for h in network.hosts() if str(h) not in set(skip)]
    open80 = [h for h, _ in open_ports(hosts, (PORT,), connect_timeout_s, parallel, most=MAX_HOSTS)]
    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="setup-fronius") as pool:
        found = [f for f in pool.map(identify, open80) if f is not None]
    return found[:MAX_FOUND]


def prefer_solar_api(found: list[Found]) -> list[Found]:
    """``found`` with each SunSpec device that also answers the Solar API (same host) put after
    the ``fronius`` one and noted (see the module doc for why the Solar API is preferred)."""
    fronius = {f.section.get("host") for f in found if f.section.get("driver") == "fronius"}
    first, later = [], []
    for f in found:
        if f.section.get("driver") == "sunspec" and f.section.get("host") in fronius:
            later.append(replace(f, notes=f.notes + ("the same Fronius answers the Solar API: driver fronius is "
                                                     "preferred (docs/site/en/setup.md)",)))
        else:
            first.append(f)
    meters = [f for f in first if f.role == "meter"]
    return meters + later + [f for f in first if f.role != "meter"]
