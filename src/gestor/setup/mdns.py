"""mDNS/zeroconf browsing (the ``setup`` extra's ``zeroconf``, imported here only).

What is browsed, and why (each the announcement Home Assistant's integration manifests match):
- ``_shelly._tcp.local.`` and ``_http._tcp.local.`` names starting ``shelly`` (HA's ``shelly``
  manifest): each asked ``/shelly`` (:mod:`gestor.setup.shelly`) to tell a meter from relays;
- ``_enphase-envoy._tcp.local.`` (HA's ``enphase_envoy`` manifest): ``driver: envoy``.
Fronius, SMA, Huawei and GoodWe are not known to announce themselves over mDNS (HA finds Fronius
and SMA by their DHCP MAC prefixes): they are found by the Modbus scan and the UDP finders.

Bounded: browsing lasts ``seconds``; at most MAX_NAMES service names are looked at, each
resolved within RESOLVE_MS.
"""
from __future__ import annotations

import threading
from collections.abc import Callable

from gestor.setup.found import Found
from gestor.setup.shelly import identify

SERVICE_TYPES = ("_shelly._tcp.local.", "_http._tcp.local.", "_enphase-envoy._tcp.local.")
MAX_NAMES = 128
RESOLVE_MS = 3000


def wanted(service_type: str, name: str) -> bool:
    """True for the announcements gestor looks at (see the module doc)."""
    if service_type == "_http._tcp.local.":
        return name.lower().startswith("shelly")
    return service_type in SERVICE_TYPES


def envoy_found(host: str) -> Found:
    """What an Enphase Envoy announcing itself at ``host`` proposes (``driver: envoy``)."""
    return Found("meter", {"driver": "envoy", "host": host}, f"Enphase Envoy at {host}", "mdns",
                 notes=("firmware 7+ needs a token: see docs/site/en/setup.md",))


def browse(seconds: float, log: Callable[[str], None] = print) -> list[Found]:
    """Browse for ``seconds`` and return what was found. Raises ImportError (with the command to
    install it) when zeroconf is missing."""
    try:
        from zeroconf import IPVersion, ServiceBrowser, ServiceStateChange, Zeroconf
    except ImportError:
        raise ImportError("mDNS needs zeroconf: sudo ./install.sh --extra setup "
                          "(or pip install 'gestor[setup]')") from None
    names: list[tuple[str, str]] = []
    lock = threading.Lock()

    def on_change(zeroconf: object, service_type: str, name: str, state_change: object) -> None:
        if state_change is ServiceStateChange.Added and wanted(service_type, name):
            with lock:
                if len(names) < MAX_NAMES and (service_type, name) not in names:
                    names.append((service_type, name))

    zc = Zeroconf(ip_version=IPVersion.V4Only)
    try:
        browser = ServiceBrowser(zc, list(SERVICE_TYPES), handlers=[on_change])
        threading.Event().wait(seconds)
        browser.cancel()
        with lock:
            todo = list(names)
        hosts: list[tuple[str, str]] = []
        for service_type, name in todo:
            info = zc.get_service_info(service_type, name, timeout=RESOLVE_MS)
            addrs = info.parsed_addresses(IPVersion.V4Only) if info else []
            if addrs and all(h != addrs[0] for _, h in hosts):   # a Shelly announces itself twice
                hosts.append((service_type, addrs[0]))
    finally:
        zc.close()
    out: list[Found] = []
    for service_type, host in hosts:
        if service_type == "_enphase-envoy._tcp.local.":
            out.append(envoy_found(host))
            continue
        f = identify(host)
        if f is None:
            log(f"  a Shelly at {host} that gestor neither reads nor switches: left out")
        else:
            out.append(f)
    return out
