"""The virtual meter read by the clients that are not ours (issue 32, item 13), each in a venv of
its own as Home Assistant's is (``.build/vmeter-clients-<pins>-py<ver>``, installed from PyPI with
pip on the first run, under a lock, reused while the pins stay):

* ``aioshelly`` 8.1.1, the version Home Assistant 2024.3.3's Shelly integration pins (its
  manifest), and 13.35.0, the newest here (it also asks ``Shelly.GetComponents``): ``RpcDevice.create()`` + ``initialize()`` (``GET /shelly``, then the WebSocket on
  ``/rpc``: ``Shelly.GetConfig``, ``Shelly.GetStatus``), the status it reads, a ``NotifyStatus``
  pushed when the reading changes, and the device gone (disconnected, ``initialize()`` failing,
  as Home Assistant marks it unavailable) while the reading is stale. That aioshelly has no port
  setting (nor has Home Assistant 2024.3's form): the meter listens on port 80, of a loopback
  address of its own (127.x.y.z) so that nothing else on this machine is in the way; binding 80
  needs root or CAP_NET_BIND_SERVICE (the test skips, saying so, without them).
* ``sdm-modbus`` 0.7.0 (with the pymodbus 3.6 it was written for): ``SDM630.read_all()`` of the
  input and the holding registers, every register of its table answered and equal to gestor's
  values; another unit id answered 0x0B.

* Home Assistant 2024.3.3 itself (the venv of test_home_assistant.py, reused as it is; the Shelly
  integration's requirements, which that venv lacks, go in a folder of their own on its
  PYTHONPATH): its Shelly config flow adds the virtual meter from the host alone, its total
  active power follows a new reading, and it turns ``unavailable`` when the reading is stale.

The servers run in this process on the injected clock (``SimClock``); the clients are driven
step by step over their stdin/stdout. ``GESTOR_REQUIRE_CLIENTS=1`` makes a failed install a
failure instead of a skip.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from gestor.runtime import virtualmeter as vmod
from gestor.runtime.vmeter.sdm630 import sdm630_holding, sdm630_registers, serial_number
from tests.integration.test_virtual_meter import House
from tests.venvs import pinned_venv

pytestmark = pytest.mark.slow

PINS = ["aioshelly==8.1.1", "aiohttp==3.9.3", "async-timeout==4.0.3", "sdm-modbus==0.7.0", "pymodbus==3.6.9"]
LATEST = ["aioshelly==13.35.0"]   # the newest aioshelly here (Home Assistant's current Shelly integration)
ROOT = Path(__file__).resolve().parents[2]


def _unavailable(msg: str) -> None:
    if os.environ.get("GESTOR_REQUIRE_CLIENTS"):
        pytest.fail(msg)
    pytest.skip(msg)


def clients_venv(pins: list[str] = PINS) -> Path:
    """The venv with the pinned clients (:func:`tests.venvs.pinned_venv`)."""
    def install(venv: Path) -> None:
        r = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-input", "-q", *pins],
                           capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            _unavailable(f"the clients ({', '.join(pins)}) could not be installed: {r.stderr[-800:]}")
    venv = ROOT / ".build" / (f"vmeter-clients-{hashlib.sha256(' '.join(pins).encode()).hexdigest()[:8]}"
                              f"-py{sys.version_info[0]}{sys.version_info[1]}")
    return pinned_venv(venv, pins, "vmeter-clients.lock", install)


class Client:
    """A client program in the clients' venv, spoken to line by line (JSON)."""

    def __init__(self, venv: Path, script: str, *args: str) -> None:
        self.proc = subprocess.Popen([str(venv / "bin" / "python"), "-c", script, *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def said(self) -> dict:
        line = self.proc.stdout.readline()  # each step is bounded by the client's own timeouts
        if not line:
            self.proc.wait(30)
            raise AssertionError(f"the client ended ({self.proc.returncode}): {self.proc.stderr.read()[-3000:]}")
        return json.loads(line)

    def go(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


AIOSHELLY = r'''
import asyncio, json, sys
import aiohttp
from aioshelly.common import ConnectionOptions
from aioshelly.exceptions import DeviceConnectionError
from aioshelly.rpc_device import RpcDevice, WsServer

def say(**kw):
    print(json.dumps(kw), flush=True)

async def step():
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

async def main(ip):
    updates = asyncio.Queue()
    async with aiohttp.ClientSession() as session:
        device = await RpcDevice.create(session, WsServer(), ConnectionOptions(ip))
        if not device.initialized:  # aioshelly >= 9: create() does not initialize
            await device.initialize()
        device.subscribe_updates(lambda d, kind: updates.put_nowait(kind.name))
        say(step="initialized", initialized=device.initialized, connected=device.connected, model=device.model,
            gen=device.gen, firmware=device.firmware_version, name=device.name, mac=device.shelly["mac"],
            power=device.status["em:0"]["total_act_power"], energy=device.status["emdata:0"]["total_act"])
        await step()  # a new reading was published
        while (kind := await asyncio.wait_for(updates.get(), 30)) != "STATUS":
            pass
        say(step="pushed", power=device.status["em:0"]["total_act_power"],
            energy=device.status["emdata:0"]["total_act"])
        await step()  # the reading went stale
        while (kind := await asyncio.wait_for(updates.get(), 30)) != "DISCONNECTED":
            pass
        say(step="disconnected", connected=device.connected)
        try:
            await device.initialize()
            say(step="reinitialized", initialized=device.initialized)
        except DeviceConnectionError as e:
            cause = e  # the HTTP status of the refused handshake, down the chain of causes
            while cause is not None and not hasattr(cause, "status"):
                cause = cause.args[0] if cause.args and isinstance(cause.args[0], BaseException) else cause.__cause__
            say(step="unavailable", status=getattr(cause, "status", None))
        await device.shutdown()

asyncio.run(main(sys.argv[1]))
'''

SDM_MODBUS = r'''
import json, sys
import sdm_modbus
host, port = sys.argv[1], int(sys.argv[2])
meter = sdm_modbus.SDM630(host=host, port=port, unit=1, timeout=2, retries=1)
out = {"input": meter.read_all(sdm_modbus.registerType.INPUT),
       "holding": meter.read_all(sdm_modbus.registerType.HOLDING),
       "table": {k: [v[0], v[2].name] for k, v in meter.registers.items()}}
rr = meter.client.read_input_registers(0x0034, 2, slave=7)  # another unit
out["other_unit"] = getattr(rr, "exception_code", None)
meter.disconnect()
print(json.dumps(out), flush=True)
'''


def loopback_80() -> str:
    """A loopback address of this test's own with port 80 free on it, or skip without root."""
    if os.geteuid() != 0:
        start = Path("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        if not (start.exists() and int(start.read_text()) <= 80):
            _unavailable("port 80 needs root or CAP_NET_BIND_SERVICE (aioshelly 8.1.1 has no port setting)")
    rnd = random.Random(os.getpid())
    return f"127.{rnd.randrange(100, 250)}.{rnd.randrange(1, 250)}.{rnd.randrange(2, 250)}"


@pytest.mark.parametrize("pins", [PINS, LATEST], ids=["aioshelly-8.1.1", "aioshelly-13.35.0"])
def test_aioshelly_adds_the_virtual_meter_follows_it_and_sees_it_go(tmp_path, pins):
    venv = clients_venv(pins)
    ip = loopback_80()
    h = House(tmp_path, shelly_listen=f"{ip}:80", shelly_udp_ports=[])
    h.reading(-300.0, import_wh_total=5000.0)
    h.managing(0.0)
    h.start()
    client = Client(venv, AIOSHELLY, ip)
    try:
        first = client.said()
        assert first["initialized"] and first["connected"] and first["gen"] == 2
        assert first["model"] == "SPEM-003CEBEU" and first["name"] == "gestor virtual meter"
        assert first["power"] == 300.0 and first["energy"] == 5000.0
        assert first["mac"] == h.servers.rpc.mac
        # a new reading: pushed over the WebSocket, not polled
        h.advance(2)
        h.reading(-1500.0, import_wh_total=5001.0)
        h.advance(vmod.CACHE_S)
        want = round(h.servers.meter.view().import_w, 1)
        client.go()
        pushed = client.said()
        assert pushed["step"] == "pushed" and pushed["energy"] == 5001.0
        assert pushed["power"] == pytest.approx(want, abs=0.2) and want == pytest.approx(1500.0, abs=5)
        # stale: the WebSocket is closed, and the device cannot be initialized again (unavailable)
        h.advance(16)
        client.go()
        gone = client.said()
        assert gone == {"step": "disconnected", "connected": False}
        last = client.said()
        assert last == {"step": "unavailable", "status": 503}
    finally:
        client.close()
        h.stop()


def test_sdm_modbus_reads_every_register_a_real_sdm630_has(tmp_path):
    venv = clients_venv()
    h = House(tmp_path)
    h.reading(600.0, import_wh_total=12345.0, export_wh_total=678.0)
    h.managing(0.0)
    h.start()
    client = Client(venv, SDM_MODBUS, "127.0.0.1", str(h.modbus_port))
    try:
        out = client.said()
    finally:
        client.close()
        h.stop()
    table = out["table"]
    inputs = {k for k, (_, kind) in table.items() if kind == "INPUT"}
    holding = {k for k, (_, kind) in table.items() if kind == "HOLDING"}
    assert len(inputs) == 90 and len(holding) == 12  # sdm_modbus 0.7.0: SDM630's table
    assert set(out["input"]) == inputs and set(out["holding"]) == holding  # every register answered
    regs = sdm630_registers(h.servers.meter.view())
    for key in inputs:
        assert out["input"][key] == pytest.approx(regs[table[key][0]], rel=1e-6, abs=1e-6), key
    assert out["input"]["total_power_active"] == pytest.approx(h.servers.meter.view().import_w, rel=1e-6)
    assert out["input"]["total_energy_active"] == pytest.approx(13.023, rel=1e-6)
    assert out["input"]["l1_import_energy_active"] == pytest.approx(12.345 / 3, rel=1e-6)
    hold = sdm630_holding(h.s.virtual_meter.unit_id, h.s.virtual_meter.max_power_w)
    for key in holding - {"serial_number"}:
        assert out["holding"][key] == pytest.approx(int(hold[table[key][0]]) if isinstance(out["holding"][key], int)
                                                    else hold[table[key][0]]), key
    assert out["holding"]["serial_number"] == serial_number(h.s.site)
    assert out["holding"]["system_type"] == 3 and out["holding"]["meter_id"] == 1
    assert out["other_unit"] == 0x0B  # another unit: the gateway's "no response", not the stale 0x04


# --- Home Assistant 2024.3.3's own Shelly integration ------------------------------------------------
# Its requirements and those of the integrations it depends on (bluetooth, usb) and imports
# (zeroconf), as its manifests pin them: installed beside the shared Home Assistant venv of
# test_home_assistant.py (``pip install --target``, first on Home Assistant's PYTHONPATH), which
# stays as that test made it.
HA_SHELLY_PINS = ["aioshelly==8.1.1", "bleak==0.21.1", "bleak-retry-connector==3.4.0", "bluetooth-adapters==0.18.0",
                  "bluetooth-auto-recovery==1.3.0", "bluetooth-data-tools==1.19.0", "dbus-fast==2.21.1",
                  "habluetooth==2.4.2", "pyudev==0.23.2", "pyserial==3.5", "zeroconf==0.131.0"]


def ha_shelly_overlay(ha_version: str) -> Path:
    """The folder with the Shelly integration's requirements for Home Assistant ``ha_version``."""
    def install(target: Path) -> None:
        r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-input", "-q", "--no-deps", "--target",
                            str(target), *HA_SHELLY_PINS], capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            _unavailable(f"the Shelly integration's requirements could not be installed: {r.stderr[-800:]}")
    key = hashlib.sha256(" ".join(HA_SHELLY_PINS).encode()).hexdigest()[:8]
    path = ROOT / ".build" / f"ha-shelly-{ha_version}-{key}-py{sys.version_info[0]}{sys.version_info[1]}"
    return pinned_venv(path, HA_SHELLY_PINS, "ha-shelly.lock", install, create_venv=False)


def test_home_assistant_adds_the_virtual_meter_with_its_shelly_integration(tmp_path, monkeypatch):
    import time

    from tests.integration.test_home_assistant import HA_VERSION, HomeAssistant, ha_venv
    ip = loopback_80()
    venv = ha_venv()
    overlay = ha_shelly_overlay(HA_VERSION)
    h = House(tmp_path, shelly_listen=f"{ip}:80", shelly_udp_ports=[])
    h.reading(-450.0, import_wh_total=7000.0)
    h.managing(0.0)
    h.start()
    monkeypatch.setenv("PYTHONPATH", str(overlay))
    ha = HomeAssistant(venv, tmp_path / "ha")
    try:
        ha.wait_up()
        ha.onboard()
        # the config flow, as the UI runs it: the form asks the host only (port 80)
        flow = ha.post("/api/config/config_entries/flow", {"handler": "shelly", "show_advanced_options": False})
        assert flow["type"] == "form" and [f["name"] for f in flow["data_schema"]] == ["host"], flow
        done = ha.post(f"/api/config/config_entries/flow/{flow['flow_id']}", {"host": ip})
        assert done["type"] == "create_entry" and done["title"] == "gestor virtual meter", done
        assert done["result"]["domain"] == "shelly"

        def power_w() -> str | None:
            for st in ha.get("/api/states"):
                if st["entity_id"].startswith("sensor.") and st["entity_id"].endswith("total_active_power"):
                    return st["state"]
            return None

        def wait_for(pred, what: str, timeout_s: float = 60.0) -> str | None:
            deadline = time.monotonic() + timeout_s
            while True:
                got = power_w()
                if pred(got):
                    return got
                assert time.monotonic() < deadline, f"Home Assistant: not {what} within {timeout_s} s (got {got!r}): {ha.tail()}"
                time.sleep(0.3)

        assert float(wait_for(lambda s: s not in (None, "unknown", "unavailable"), "a power")) == 450.0
        # a new reading: Home Assistant follows it (pushed; its own poll is every 60 s)
        h.advance(2)
        h.reading(-2000.0, import_wh_total=7001.0)
        h.advance(vmod.CACHE_S)
        want = round(h.servers.meter.view().import_w, 1)
        assert float(wait_for(lambda s: s not in (None, "unknown", "unavailable") and float(s) != 450.0,
                              "the new power")) == pytest.approx(want, abs=0.2)
        # stale: unavailable in Home Assistant
        h.advance(16)
        assert wait_for(lambda s: s == "unavailable", "unavailable") == "unavailable"
    finally:
        ha.close()
        h.stop()
