"""The setup page's finders on a private test LAN (tests/netns.py; no packet leaves it): the page's
"find" step (through its blueprint, logged in, with its CSRF token) run on the "pi" host finds the
Shelly Pro 3EM and Plus 1 over mDNS, the SunSpec responder over Modbus TCP, the GoodWe kit by its
UDP search and the SMA Home Manager 2.0 on the multicast, each emulator serving the recorded
answers of tests/data/setup (each file names its source). The web unit's systemd sandbox is not
in play here: tests/test_units_setup.py checks that it allows what these finders need."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests import netns
from tests.conftest import settings_file
from tests.integration.test_setup import ENV, PI, ROOT, start

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not netns.available(), reason="needs root and iproute2 (network namespaces)")]


def test_the_pages_finders_find_every_family_on_the_lan(tmp_path: Path) -> None:
    f = settings_file(tmp_path)
    body = json.dumps({"finders": ["mdns", "modbus", "goodwe", "sma"], "network": "192.168.77.0/24"})
    with netns.Lan() as lan:
        pi = lan.host("pi", PI)
        start(lan.host("em", "192.168.77.10"), "shelly-pro3em", "--phases-w=-400,-300,-500")
        start(lan.host("relay", "192.168.77.11"), "shelly-plus1")
        start(lan.host("sunspec", "192.168.77.12"), "sunspec")
        start(lan.host("goodwe", "192.168.77.13"), "goodwe")
        start(lan.host("sma", "192.168.77.14"), "sma")
        out = pi.run([sys.executable, "-m", "tests.web_setup_client", str(f), body], cwd=ROOT, env=ENV, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    d = json.loads(out.stdout.strip().splitlines()[-1])
    assert d["status"] == 200 and d["skipped"] == [], d
    meters = {m["label"]: (m["driver"], m["how"]) for m in d["meters"]}
    assert meters["Shelly Pro3EM (SPEM-003CEBEU) at 192.168.77.10"] == ("shelly_em", "mdns"), meters
    assert ("sunspec", "modbus") in meters.values() and ("goodwe", "goodwe_udp") in meters.values(), meters
    assert ("sma_em", "sma_multicast") in meters.values(), meters
    assert [(r["label"], r["channels"]) for r in d["relays"]] == [("Shelly Plus1 (SNSW-001X16EU) at 192.168.77.11", 1)]
