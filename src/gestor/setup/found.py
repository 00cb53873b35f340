"""What a finder found: a device and the settings section it proposes, by the fixed driver
names and keys (``driver``, ``host``, ``port``, ``unit_id``, ``serial``, ``timeout_s``; see
docs/site/en/setup.md), and the local network to search."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

# Every finder's answer is bounded: at most this many devices of one kind are kept.
MAX_FOUND = 32


@dataclass(frozen=True)
class Found:
    """One device found on the LAN.

    ``role``: "meter" (a grid meter: proposes ``meter:``) or "relay" (proposes ``loads[].relay``);
    ``section``: the settings section, e.g. ``{"driver": "sunspec", "host": "192.168.1.20",
    "port": 502, "unit_id": 1}``; ``label``: what the user is shown; ``how``: which finder
    (mdns, modbus, goodwe_udp, sma_multicast); ``channels``: a relay's outputs (a Pro 2 has 2)."""

    role: str
    section: dict[str, Any]
    label: str
    how: str
    channels: int = 1
    extra: str | None = None   # the optional extra its driver needs (pyproject), None: none
    notes: tuple[str, ...] = field(default_factory=tuple)
    needs_password: bool = False   # the device has a password set (a Shelly's auth_en)

    @property
    def key(self) -> tuple[Any, ...]:
        """What identifies the device (two finders may see the same one)."""
        return (self.role, self.section.get("driver"), self.section.get("host"), self.section.get("serial"))


def dedupe(found: list[Found]) -> list[Found]:
    """``found`` without repeats (same :attr:`Found.key`), first kept, at most MAX_FOUND per role."""
    seen: set[tuple[Any, ...]] = set()
    out: list[Found] = []
    for f in found:
        if f.key in seen or sum(1 for o in out if o.role == f.role) >= MAX_FOUND:
            continue
        seen.add(f.key)
        out.append(f)
    return out


def json_answer(url: str, timeout_s: float) -> Any:
    """The JSON a device answers to ``GET url`` (at most drivers.http.MAX_BODY_BYTES, within
    ``timeout_s``, no password), or None when it does not answer JSON: what a finder asks a
    device to tell what it is."""
    from drivers.http import Device, HttpError
    dev = Device()
    try:
        return dev.get_json(url, timeout_s)
    except HttpError:
        return None
    finally:
        dev.close()


def parse_network(text: str) -> ipaddress.IPv4Network:
    """``--network`` (e.g. ``192.168.1.0/24``): an IPv4 network of at most 1024 addresses (a
    home LAN; a scan of more is refused). Raises ValueError naming the value and what is allowed."""
    try:
        net = ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        raise ValueError(f"--network: {text!r} is not an IPv4 network (allowed: A.B.C.D/N, e.g. 192.168.1.0/24)") from None
    if net.prefixlen < 22:
        raise ValueError(f"--network: {text!r} has {net.num_addresses} addresses: at most 1024 (/22 to /32)")
    return net


def local_networks() -> list[ipaddress.IPv4Network]:
    """The /24 of each private IPv4 address of this machine's interfaces (``ifaddr``, which the
    ``setup`` extra's zeroconf brings), loopback and link-local left out; a /24 at most, whatever
    the interface's own prefix, so a scan stays within 254 addresses."""
    import ifaddr
    nets: list[ipaddress.IPv4Network] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if not isinstance(ip.ip, str):
                continue
            addr = ipaddress.IPv4Address(ip.ip)
            if addr.is_loopback or addr.is_link_local or not addr.is_private:
                continue
            net = ipaddress.IPv4Network(f"{addr}/{max(ip.network_prefix, 24)}", strict=False)
            if net not in nets:
                nets.append(net)
    return nets
