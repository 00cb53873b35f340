"""Devices of a test LAN (tests/netns.py), each run as its own process inside its host's
namespace: ``python -m tests.emulators.lan_devices KIND --ip IP``; prints ``ready`` once it
serves, then serves until killed.

KIND:
- ``shelly-pro3em``: the Shelly Pro 3EM HTTP emulator (http_devices.ShellyPro3EM) on port 80,
  answering ``/shelly`` with tests/data/setup/shelly_pro3em_shelly.json, its phases
  ``--phases-w A,B,C`` (import-positive, W; a watt of noise added each read), announced over mDNS
  as ``_shelly._tcp`` and ``_http._tcp`` (TXT gen/app/ver, Shelly Gen2 API docs "mDNS");
  ``--password PW``: digest auth (user admin) on everything but ``/shelly``, which says auth_en;
- ``shelly-plus1``: the Shelly relay emulator (http_devices.ShellyRelayDevice, Gen2) on port 80,
  ``/shelly`` from shelly_plus1_shelly.json, announced the same way;
- ``sunspec``: a pymodbus 3.16 server on 502, unit 1, with the SunSpec marker ``SunS`` at 40000, a
  common model (1) naming Fronius, and the end marker (SunSpec Information Model Specification);
- ``huawei``: the same on 6607 (a SUN2000's own port), the model name "SUN2000-5KTL-L1" at 30000 and
  a serial at 30015, strings of 15 and 10 registers (huawei-solar 2.5.0 ``registers.py``
  ``MODEL_NAME``, ``SERIAL_NUMBER``);
- ``goodwe``: UDP 48899 answering "WIFIKIT-214028-READ" with the recorded answer
  (tests/data/setup/goodwe_search_answer.txt), its own address in the first field;
- ``sma``: sends the recorded Home Manager 2.0 datagram (sma_shm2_packet.json) to
  239.12.255.254:9522 every 0.5 s, its timestamp (bytes 24-27, ms: pysma-plus's
  ``speedwireHeader6069``) advanced 500 ms each time as a real meter's.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import socket
import threading
import time
from pathlib import Path
from typing import Callable

DATA = Path(__file__).resolve().parents[1] / "data" / "setup"


def fixture(name: str) -> dict:
    d = json.loads((DATA / name).read_text())
    d.pop("_source", None)
    return d


def announce(ip: str, name: str, info: dict) -> object:
    """Register ``name`` over mDNS as a Shelly Gen2 does (``_shelly._tcp`` and ``_http._tcp``)."""
    from zeroconf import IPVersion, ServiceInfo, Zeroconf
    zc = Zeroconf(interfaces=[ip], ip_version=IPVersion.V4Only)
    txt = {"gen": str(info["gen"]), "app": info["app"], "ver": info["ver"]}
    for kind in ("_shelly._tcp.local.", "_http._tcp.local."):
        zc.register_service(ServiceInfo(kind, f"{name}.{kind}", addresses=[socket.inet_aton(ip)], port=80,
                                        properties=txt, server=f"{name}.local."))
    return zc


def shelly(kind: str, ip: str, phases_w: list[float], password: str | None = None) -> None:
    from tests.emulators.http_devices import ShellyPro3EM, ShellyRelayDevice
    info = fixture("shelly_pro3em_shelly.json" if kind == "shelly-pro3em" else "shelly_plus1_shelly.json")
    info["auth_en"] = password is not None
    base = ShellyPro3EM if kind == "shelly-pro3em" else ShellyRelayDevice

    class Device(base):  # type: ignore[valid-type,misc]
        reads = 0

        def _authorized(self, h: object) -> bool:   # /shelly answers without a password (Gen2 API docs)
            return str(getattr(h, "path", "")).startswith("/shelly") or super()._authorized(h)

        def route(self, path: str, q: dict[str, str]) -> tuple[int, object]:
            if path in ("/shelly", "/rpc/Shelly.GetDeviceInfo"):
                return 200, info
            if path == "/rpc/EM.GetStatus":
                Device.reads += 1
                noise = 0.5 if Device.reads % 2 else -0.5
                self.phases_w = [phases_w[0] + noise, phases_w[1], phases_w[2]]
            return super().route(path, q)

    dev = Device(80)
    dev.bind = ip
    if password is not None:
        dev.auth = ("digest", "admin", password)   # Gen2: HTTP digest, user admin
    dev.start()
    announce(ip, info["id"], info)


def text_registers(s: str, regs: int) -> list[int]:
    """``s`` as ``regs`` Modbus registers, two ASCII bytes each, NUL-padded (SunSpec and Huawei strings)."""
    raw = s.encode().ljust(regs * 2, b"\0")
    return [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]


def modbus_server(ip: str, port: int, address: int, regs: list[int]) -> None:
    """A pymodbus 3.16 TCP server on ``ip:port``, unit 1, holding ``regs`` from ``address``
    (anything else an illegal address, as on the devices)."""
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice
    holding = [SimData(address, values=regs, datatype=DataType.REGISTERS)]
    bits = [SimData(0, count=16, values=False, datatype=DataType.BITS)]
    device = SimDevice(1, simdata=(bits, list(bits), holding, list(holding)))

    def main() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)

        async def serve() -> None:
            await ModbusTcpServer(device, address=(ip, port)).serve_forever()
        loop.run_until_complete(serve())
    threading.Thread(target=main, daemon=True).start()
    from tests.emulators.modbus_server import wait_port
    wait_port(port, ip)


def sunspec(ip: str) -> None:
    t = text_registers
    common = [1, 66] + t("Fronius", 16) + t("Smart Meter 63A", 16) + t("", 8) + t("1.0", 8) + t("12345678", 16) \
        + [1, 0x8000]
    modbus_server(ip, 502, 40000, [0x5375, 0x6E53] + common + [0xFFFF, 0])


def huawei(ip: str) -> None:
    modbus_server(ip, 6607, 30000, text_registers("SUN2000-5KTL-L1", 15) + text_registers("HV2150012345", 10))


def goodwe(ip: str) -> None:
    lines = [x for x in (DATA / "goodwe_search_answer.txt").read_text().splitlines() if x and not x.startswith("#")]
    answer = ",".join([ip] + lines[0].split(",")[1:]).encode()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", 48899))

    def serve() -> None:
        while True:
            data, addr = sock.recvfrom(512)
            if data.strip() == b"WIFIKIT-214028-READ":
                sock.sendto(answer, addr)
    threading.Thread(target=serve, daemon=True).start()


def send_speedwire(ip: str, datagram: Callable[[int], bytes], stamp_ms: int) -> None:
    """Send ``datagram(timestamp_ms)`` to SMA's multicast group from ``ip`` every 0.5 s, in a
    daemon thread, the timestamp 500 ms on each time (a real meter's every datagram has a new
    one; pysma-plus drops a repeat)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(ip))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)

    def send() -> None:
        stamp = stamp_ms
        while True:
            stamp = (stamp + 500) & 0xFFFFFFFF
            sock.sendto(datagram(stamp), ("239.12.255.254", 9522))
            time.sleep(0.5)   # the meter's own pace, not a wait on the test
    threading.Thread(target=send, daemon=True).start()


def sma(ip: str) -> None:
    packet = base64.b64decode(fixture("sma_shm2_packet.json")["packet"])
    send_speedwire(ip, lambda stamp: packet[:24] + stamp.to_bytes(4, "big") + packet[28:],
                   int.from_bytes(packet[24:28], "big"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["shelly-pro3em", "shelly-plus1", "sunspec", "huawei", "goodwe", "sma"])
    ap.add_argument("--ip", required=True)
    ap.add_argument("--phases-w", default="-400,-300,-500")
    ap.add_argument("--password", default=None, help="a Shelly's password (digest auth, auth_en true)")
    a = ap.parse_args()
    if a.kind.startswith("shelly"):
        shelly(a.kind, a.ip, [float(x) for x in a.phases_w.split(",")], a.password)
    else:
        {"sunspec": sunspec, "huawei": huawei, "goodwe": goodwe, "sma": sma}[a.kind](a.ip)
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
