"""The UDP finders, each through its family's own library (imported here only):

- GoodWe: goodwe 0.4.10's ``search_inverters()`` (``goodwe/__init__.py``): "WIFIKIT-214028-READ"
  broadcast to UDP 48899; the Wi-Fi/LAN kit answers ``IP,MAC,NAME`` (e.g.
  ``192.168.3.48,289C6E62D262,Solar-WiFi223W0252``) → ``driver: goodwe`` at that IP, the
  library's UDP port ``GOODWE_UDP_PORT`` (8899). The library takes the first answer only, and on
  Linux cannot broadcast at all (goodwe issue #101): then the same request goes out from a socket
  of ours with SO_BROADCAST (:func:`search_broadcast`), every answer kept.
- SMA Energy Meter / Home Manager 2.0: pysma-plus 0.5.4's ``SMAspeedwireEM``
  (``pysmaplus/device_em.py``) joins 239.12.255.254:9522 and lists the serials it hears for
  about 2 s (SMA's "Energy Meter protocol" TI, EMETER-Protokoll-TI-en-10) → ``driver: sma_em``
  with ``serial``.

Bounded: each finder within ``timeout_s`` (drivers.aio.run cancels it past that); answers are
parsed only up to MAX_ANSWER_BYTES, and at most MAX_FOUND serials are kept.
"""
from __future__ import annotations

import ipaddress

from drivers import aio
from gestor.setup.found import MAX_FOUND, Found

MAX_ANSWER_BYTES = 256
SMA_SERIAL_MAX = 0xFFFFFFFF


def parse_goodwe_answer(answer: bytes) -> Found | None:
    """The section a GoodWe search answer ``IP,MAC,NAME`` proposes; None if it is not one."""
    parts = answer[:MAX_ANSWER_BYTES].decode("ascii", "replace").strip().split(",")
    try:
        host = str(ipaddress.IPv4Address(parts[0].strip()))
    except ValueError:
        return None
    name = parts[2].strip()[:40] if len(parts) > 2 else "GoodWe"
    from goodwe.const import GOODWE_UDP_PORT
    return Found("meter", {"driver": "goodwe", "host": host, "port": GOODWE_UDP_PORT},
                 f"GoodWe {name} at {host}", "goodwe_udp", extra="goodwe")


def goodwe(networks: list[ipaddress.IPv4Network], timeout_s: float = 5.0, listen_s: float = 2.0) -> list[Found]:
    """The GoodWe kits answering the search: the library's own ``search_inverters()`` first;
    where it cannot broadcast (on Linux goodwe 0.4.10 opens its socket without SO_BROADCAST, so
    the send fails with EACCES: marcelblijleven/goodwe issue #101, open), the same request sent
    to each of ``networks``' broadcast addresses and 255.255.255.255 (:func:`search_broadcast`)."""
    try:
        import goodwe as gw
        from goodwe.exceptions import InverterError
    except ImportError:
        raise ImportError("GoodWe's search needs goodwe: sudo ./install.sh --extra goodwe") from None
    try:
        answers = [aio.run(gw.search_inverters(), timeout_s)]
    except PermissionError:
        answers = search_broadcast(networks, listen_s)
    except (InverterError, TimeoutError, OSError):
        return []
    found = [f for f in map(parse_goodwe_answer, answers) if f is not None]
    return list({f.section["host"]: f for f in found}.values())[:MAX_FOUND]


SEARCH = b"WIFIKIT-214028-READ"   # goodwe/__init__.py search_inverters()'s request
SEARCH_PORT = 48899


def search_broadcast(networks: list[ipaddress.IPv4Network], listen_s: float) -> list[bytes]:
    """Send the GoodWe search request by broadcast (SO_BROADCAST set) and collect the answers for
    ``listen_s`` (at most MAX_FOUND, each at most MAX_ANSWER_BYTES)."""
    import select
    import socket
    import time
    targets = {str(n.broadcast_address) for n in networks} | {"255.255.255.255"}
    answers: list[bytes] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        for t in sorted(targets):
            try:
                sock.sendto(SEARCH, (t, SEARCH_PORT))
            except OSError:
                continue
        end = time.monotonic() + listen_s
        while len(answers) < MAX_FOUND and (left := end - time.monotonic()) > 0:
            ready, _, _ = select.select([sock], [], [], left)
            if not ready:
                break
            data, _ = sock.recvfrom(MAX_ANSWER_BYTES)
            answers.append(data)
    return answers


def sma(timeout_s: float = 6.0) -> list[Found]:
    """The SMA Energy Meters / Home Managers heard on the speedwire multicast, or []."""
    try:
        from pysmaplus.device_em import SMAspeedwireEM
        from pysmaplus.exceptions import SmaException
    except ImportError:
        raise ImportError("SMA's multicast needs pysma-plus: sudo ./install.sh --extra sma") from None

    async def listen() -> list[str]:
        em = SMAspeedwireEM()
        try:
            await em.new_session()
            return list((await em.device_list()).keys())
        except (SmaException, TimeoutError, OSError):
            return []
        finally:
            await em.close_session()

    try:
        serials = aio.run(listen(), timeout_s)
    except TimeoutError:
        return []
    return [f for f in map(sma_found, serials[:MAX_FOUND]) if f is not None]


def sma_found(serial: str) -> Found | None:
    """What an SMA Energy Meter / Home Manager heard with ``serial`` proposes (``driver: sma_em``
    with its serial), or None when the serial is not one a datagram can carry: 1 to 0xFFFFFFFF
    (four bytes at offset 20 of the header, SMA "EMETER-Protokoll-TI-en-10"; the sma_em settings'
    own range)."""
    if not (serial.isdigit() and len(serial) <= 10 and 1 <= int(serial) <= SMA_SERIAL_MAX):
        return None
    return Found("meter", {"driver": "sma_em", "serial": int(serial)},
                 f"SMA Energy Meter / Home Manager, serial {serial}", "sma_multicast", extra="sma")
