"""A private LAN for tests that discover or listen on a network: network namespaces that the test
creates and removes itself (``ip netns``, veth pairs and a bridge, from iproute2), so that no
packet of a discovery (mDNS, UDP broadcast, multicast, a port scan) ever reaches another network.

    with Lan() as lan:                       # a bridge in its own namespace, 192.168.77.0/24
        meter = lan.host("meter", "192.168.77.10")
        pi = lan.host("pi", "192.168.77.2")
        p = meter.popen([sys.executable, "-m", "tests.emulators.x", ...])
        out = pi.run([sys.executable, "-m", "gestor.cli", "setup", ...])

Each host is a namespace with ``lo`` up and one veth on the bridge; its routes send the multicast
(224.0.0.0/4) and broadcast traffic onto that bridge. Processes run inside with
``ip netns exec`` (Python 3.11 has no ``os.setns``); everything is torn down on exit, also after
a failure. Needs root and iproute2: :func:`available` tells, for a ``skipif``.
"""
from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

_seq = itertools.count()


def available() -> bool:
    """True where namespaces can be made here: root and ``ip`` present."""
    return os.geteuid() == 0 and shutil.which("ip") is not None


def _ip(*args: str, ns: str | None = None) -> None:
    argv = ["ip", *(["-n", ns] if ns else []), *args]
    subprocess.run(argv, check=True, capture_output=True, text=True, timeout=20)


class Host:
    """One machine on the test LAN: a network namespace with one address."""

    def __init__(self, ns: str, ip: str) -> None:
        self.ns, self.ip = ns, ip

    def argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *argv]

    def popen(self, argv: Sequence[str], **kw: Any) -> subprocess.Popen:
        """Start ``argv`` inside this host (same environment and cwd unless given)."""
        return subprocess.Popen(self.argv(argv), **kw)

    def run(self, argv: Sequence[str], timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess:
        """Run ``argv`` inside this host to its end; text output captured unless told otherwise."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(self.argv(argv), timeout=timeout, **kw)


class Lan:
    """A bridge (in its own namespace) and the hosts on it; a context manager that removes all."""

    def __init__(self, prefix: str = "192.168.77", prefixlen: int = 24) -> None:
        self.tag = f"g{os.getpid() % 100000}x{next(_seq)}"
        self.prefix, self.prefixlen = prefix, prefixlen
        self.switch = f"{self.tag}sw"
        self.hosts: list[Host] = []

    def __enter__(self) -> "Lan":
        _ip("netns", "add", self.switch)
        _ip("link", "set", "lo", "up", ns=self.switch)
        _ip("link", "add", "br0", "type", "bridge", ns=self.switch)
        _ip("link", "set", "br0", "up", ns=self.switch)
        return self

    def host(self, name: str, ip: str | None = None) -> Host:
        """Add a host named ``name`` (at most 6 characters are used) with address ``ip``
        (default: the next free one from .10)."""
        n = len(self.hosts)
        ip = ip or f"{self.prefix}.{10 + n}"
        ns = f"{self.tag}{name[:6]}"
        inside, outside = f"v{self.tag}{n}"[:15], f"w{self.tag}{n}"[:15]
        _ip("netns", "add", ns)
        _ip("link", "set", "lo", "up", ns=ns)
        _ip("link", "add", inside, "type", "veth", "peer", "name", outside)
        _ip("link", "set", inside, "netns", ns)
        _ip("link", "set", outside, "netns", self.switch)
        _ip("link", "set", outside, "master", "br0", ns=self.switch)
        _ip("link", "set", outside, "up", ns=self.switch)
        _ip("link", "set", inside, "name", "eth0", ns=ns)
        _ip("addr", "add", f"{ip}/{self.prefixlen}", "broadcast", "+", "dev", "eth0", ns=ns)
        _ip("link", "set", "eth0", "up", "multicast", "on", ns=ns)
        _ip("route", "add", "224.0.0.0/4", "dev", "eth0", ns=ns)
        _ip("route", "add", "default", "dev", "eth0", ns=ns)
        h = Host(ns, ip)
        self.hosts.append(h)
        return h

    def __exit__(self, *exc: object) -> None:
        for ns in [h.ns for h in self.hosts] + [self.switch]:
            out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            for pid in out:
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
