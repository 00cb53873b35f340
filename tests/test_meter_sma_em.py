"""The ``sma_em`` meter driver (pysma-plus's speedwire listener) on a private test LAN
(tests/netns.py): the emulator multicasts datagrams made from a real Home Manager 2.0 recording
(tests/data/meters/sma/) from one host, and monitoring reads them on another (tests/meter_host.py),
with its own InfluxDB in that host for the integration test. Nothing leaves the test's namespaces.
Each test checks the sign: export (fed in) reads positive ``net_w``."""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from contextlib import contextmanager

import pytest

from tests import netns
from gestor.settings import SettingsError
from tests.conftest import REPO, make_settings
from tests.emulators.speedwire import datagram, net, recorded
from tests.integration.test_meters import house_rows

needs_lan = pytest.mark.skipif(not netns.available(), reason="needs root and iproute2 for a private test LAN")

SERIAL = 3014930442                  # the recorded Home Manager's serial
T0 = 1_718_964_000.0                 # 2024-06-21 10:00 UTC


class House:
    """The meter host sending datagrams, the Pi host running monitoring (tests/meter_host.py)."""

    def __init__(self, lan: netns.Lan, work, meter: dict, influx: bool = False) -> None:
        env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}:{REPO}"}
        self.meter_host, self.pi = lan.host("meter", "192.168.77.10"), lan.host("pi", "192.168.77.2")
        kw = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO, env=env)
        self.emu = self.meter_host.popen([sys.executable, "-m", "tests.emulators.speedwire", self.meter_host.ip], **kw)
        argv = [sys.executable, "-m", "tests.meter_host", str(work), json.dumps(meter)] + (["--influx"] if influx else [])
        self.mon = self.pi.popen(argv, **kw)
        assert self._line(self.mon) == {"ready": True}
        self.sent = 0

    @staticmethod
    def _line(p: subprocess.Popen, bound_s: float = 120.0) -> dict:
        ready, _, _ = select.select([p.stdout], [], [], bound_s)
        line = p.stdout.readline() if ready else ""
        assert line, f"no answer from {p.args[-3:]} (exit {p.poll()})"
        return json.loads(line) if line.startswith("{") else {"line": line.strip()}

    def send(self, p: bytes) -> None:
        self.emu.stdin.write(p.hex() + "\n")
        self.emu.stdin.flush()
        assert self._line(self.emu)["line"].startswith("sent")
        self.sent += 1

    def ask(self, cmd: str) -> dict:
        self.mon.stdin.write(cmd + "\n")
        self.mon.stdin.flush()
        return self._line(self.mon)

    def read_after(self, at: float, *datagrams: bytes, cmd: str = "read", wait: bool = True) -> dict:
        """Set the Pi's clock to ``at``, send ``datagrams``, wait until the driver has handled all
        sent so far (``wait``), then one ``cmd`` (read / cycle)."""
        self.ask(f"at {at}")
        for p in datagrams:
            self.send(p)
        if wait:
            self.ask(f"wait {self.sent}")
        return self.ask(cmd)

    def close(self) -> None:
        for p in (self.emu, self.mon):
            p.stdin.close()
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


@contextmanager
def house(tmp_path, meter: dict, influx: bool = False):
    with netns.Lan() as lan:
        h = House(lan, tmp_path, meter, influx)
        try:
            yield h
        finally:
            h.close()


@needs_lan
def test_recorded_then_a_real_noon_and_night_read_with_export_positive(tmp_path):
    base = recorded()
    with house(tmp_path, {"driver": "sma_em", "timeout_s": 5}) as h:
        r = h.read_after(T0, base)
        # recorded: 201.1 W drawn, nothing fed in; counters 20,540,962,440 Ws / 36,257,373,000 Ws
        assert r["net_w"] == pytest.approx(-201.1)
        assert r["import_wh_total"] == pytest.approx(20_540_962_440 / 3600)
        assert r["export_wh_total"] == pytest.approx(36_257_373_000 / 3600)
        imp, exp = 20_540_962_440 / 3600, 36_257_373_000 / 3600      # Wh
        noon = h.read_after(T0 + 10, net(base, 2480.0, imp, exp + 6.9, timestamp_ms=1000))
        assert noon["net_w"] == pytest.approx(2480.0) and noon["net_w"] > 0, noon
        assert (noon["import_wh_total"], noon["export_wh_total"]) == pytest.approx((imp, exp + 6.9), abs=1e-3)
        night = h.read_after(T0 + 20, net(base, -350.0, imp + 1.0, exp + 6.9, timestamp_ms=2000))
        assert night["net_w"] == pytest.approx(-350.0) and night["net_w"] < 0, night
        assert night["import_wh_total"] == pytest.approx(imp + 1.0, abs=1e-3)
        # several datagrams between reads: the newest counts
        newest = h.read_after(T0 + 30, net(base, 100.0, imp + 1.0, exp + 7.0, timestamp_ms=3000),
                              net(base, 1200.0, imp + 1.0, exp + 8.0, timestamp_ms=4000))
        assert newest["net_w"] == pytest.approx(1200.0), newest
        # no ``serial`` set and two meters sending: which is the grid's? a failed read, never a mix
        two = h.read_after(T0 + 40, net(base, 100.0, imp + 1.0, exp + 8.0, timestamp_ms=5000),
                           net(base, -900.0, 5.0, 6.0, timestamp_ms=5001, serial=1234567))
        assert two["error"] == ("sma_em 239.12.255.254:9522: several energy meters send (serials 1234567, "
                                "3014930442): set meter.serial to the one on the grid connection"), two


@needs_lan
def test_silence_a_dropped_datagram_and_a_repeat_are_failed_reads_then_it_reads_again(tmp_path):
    base = recorded()
    with house(tmp_path, {"driver": "sma_em", "timeout_s": 1}) as h:
        silent = h.read_after(T0)
        assert silent["error"] == ("sma_em 239.12.255.254:9522: no usable energy meter datagram within 1 s")
        assert h.read_after(T0 + 10, net(base, 500.0, 1000.0, 2000.0, timestamp_ms=10))["net_w"] == pytest.approx(500.0)
        # the same datagram again (same sender and timestamp): the library drops it; never a new reading
        assert "no usable" in h.read_after(T0 + 20, net(base, 500.0, 1000.0, 2000.0, timestamp_ms=10))["error"]
        # a datagram that arrived, then nothing for longer than timeout_s: stale, not read
        h.ask(f"at {T0 + 30}")
        h.send(net(base, 600.0, 1000.0, 2000.0, timestamp_ms=20))
        h.ask(f"wait {h.sent}")
        h.ask(f"at {T0 + 32}")
        assert "no usable" in h.ask("read")["error"]
        assert h.read_after(T0 + 40, net(base, -80.0, 1000.0, 2000.0, timestamp_ms=30))["net_w"] == pytest.approx(-80.0)


@needs_lan
def test_garbage_and_another_meter_are_failed_reads_with_a_sentence(tmp_path):
    base = recorded()
    with house(tmp_path, {"driver": "sma_em", "serial": SERIAL, "interface": "192.168.77.2", "timeout_s": 1}) as h:
        good = net(base, 900.0, 1000.0, 2000.0, timestamp_ms=100)
        cut = h.read_after(T0, good[:300])
        assert cut["error"].endswith("refused a datagram: truncated (300 bytes, its header says 604), from 192.168.77.10")
        assert "net_w" not in cut
        wrong = h.read_after(T0 + 10, b"SMB\x00" + good[4:])
        assert "refused a datagram: not speedwire (starts b'SMB\\x00', 608 bytes)" in wrong["error"]
        big = h.read_after(T0 + 20, good + bytes(2000))
        assert "refused a datagram: oversized (2608 bytes, more than 2048)" in big["error"]
        other = h.read_after(T0 + 30, net(base, 900.0, 1.0, 2.0, timestamp_ms=200, serial=1234567))
        assert other["error"] == ("sma_em 239.12.255.254:9522 serial 3014930442: no usable energy meter datagram "
                                  "within 1 s; heard only serial(s) 1234567 (meter.serial picks one)")
        # ours, after the other meter's: read (one emulator sends both: their timestamps differ, or the
        # library would take the second for a repeat of the first)
        both = h.read_after(T0 + 40, net(base, 750.0, 1000.0, 2000.0, timestamp_ms=300),
                            net(base, 900.0, 1.0, 2.0, timestamp_ms=301, serial=1234567))
        assert both["net_w"] == pytest.approx(750.0), both


@needs_lan
def test_an_interface_the_pi_does_not_have_is_a_failed_read_naming_it(tmp_path):
    with house(tmp_path, {"driver": "sma_em", "interface": "192.168.77.99", "timeout_s": 1}) as h:
        r = h.read_after(T0, recorded(), wait=False)
        assert r["error"].startswith("sma_em 239.12.255.254:9522: cannot listen to the multicast group on "
                                     "interface 192.168.77.99: "), r


@needs_lan
def test_monitoring_stores_the_meters_readings_in_influxdb(tmp_path):
    """Integration: house rows (2022-06-11 from row 3050: export, then import) sent as datagrams, one monitoring cycle each,
    InfluxDB (inside the Pi's namespace) holds what was sent."""
    base, rows = recorded(), house_rows(30, start=3050)
    imp, exp, sent = 5_705_822.9, 10_071_492.5, []
    with house(tmp_path, {"driver": "sma_em", "timeout_s": 5}, influx=True) as h:
        for i, row in enumerate(rows):
            w = round(row["net_w"], 1)
            if i:
                e = (sent[-1][0] + w) / 2 * 10 / 3600
                imp, exp = imp + max(-e, 0.0), exp + max(e, 0.0)
            sent.append((w, round(imp * 3600) / 3600, round(exp * 3600) / 3600))
            r = h.read_after(T0 + 10 * i, net(base, w, imp, exp, timestamp_ms=1000 * i), cmd="cycle")
            assert "error" not in r, r
        pts = h.ask("stored")["points"]
    assert len(pts) == len(rows)
    for i, (p, (w, i_wh, e_wh)) in enumerate(zip(pts, sent)):
        assert p["time"] == int((T0 + 10 * i) * 1000)
        assert p["net_w"] == pytest.approx(w, abs=1e-6)
        assert (p["import_wh_total"], p["export_wh_total"]) == pytest.approx((i_wh, e_wh), abs=1e-6)
    assert min(w for w, _, _ in sent) < 0 < max(w for w, _, _ in sent)   # both signs: a flip would show


def test_settings_name_the_bad_key_value_and_what_is_allowed(tmp_path):
    for section, says in (({"interface": "eth0"}, "meter.interface: input is not a valid IPv4 address (got 'eth0')"),
                          ({"serial": 0}, "meter.serial: must be >= 1 (got 0)"),
                          ({"timeout_s": 60}, "meter.timeout_s: must be <= 30 (got 60)")):
        with pytest.raises(SettingsError) as e:
            make_settings(tmp_path, meter_section={"driver": "sma_em", **section})
        assert says in str(e.value)
    s = make_settings(tmp_path, meter_section={"driver": "sma_em"})
    assert (s.meter.serial, s.meter.interface, s.meter.timeout_s) == (None, None, 3.0)
