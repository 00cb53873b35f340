"""The grid meter of four households, each at noon (exporting), for ``gestor setup`` on a test
LAN (tests/netns.py; tests/integration/test_setup_houses.py). Run inside a host's namespace as
``python -m tests.emulators.houses KIND --ip IP``; prints ``ready`` once it serves, then serves
until killed. Every answer is a recorded real one (the fixtures' own files cite their sources):

- ``huawei``: a SUN2000 behind its SDongle, Modbus TCP on 502, unit 1: the DTSU666 power-meter
  registers of tests/data/meters/huawei/noon.json (37113 +1101 W, feed-in positive) through
  tests/emulators/modbus_dump.py, and the model name "SUN2000-5KTL-L1" at 30000 (huawei-solar
  2.5.0 ``registers.py`` ``MODEL_NAME``, a string of 15 registers) that setup's probe reads;
- ``fronius``: a Fronius Symo's Datamanager: the Solar API on HTTP 80
  (http_meters.FroniusDatamanager serving the recorded noon answers, -3120.4 W import-positive,
  and ``GetAPIVersion.cgi``) and Modbus TCP enabled on 502 with the Smart Meter at unit 240
  (tests/data/meters/sunspec/noon.json: model 1 and model 203, W -1100.6 W import-positive);
  the inverter's own unit 1 is not emulated (a request for it gets Modbus exception 11);
- ``sma``: a Sunny Home Manager 2.0 sending, every 0.5 s, the recorded datagram
  (tests/data/meters/sma/SunnyHomeManager2.hex, serial 3014930442) with 1100 W fed in and its
  counters moving (tests/emulators/speedwire.py ``net``), each with a new timestamp;
- ``goodwe``: a GoodWe GW20K-ET's Wi-Fi/LAN kit: UDP 48899 answering the discovery
  ("WIFIKIT-214028-READ", tests/data/setup/goodwe_search_answer.txt, through
  lan_devices.goodwe) and UDP 8899 answering the library's reads with the recorded ET answers
  (tests/emulators/goodwe_udp.py), the meter's power set to +1101 W (export-positive, as
  goodwe's et.py reads it).
"""
from __future__ import annotations

import argparse
import threading

HUAWEI_NAME = "SUN2000-5KTL-L1"


def huawei(ip: str) -> None:
    from tests.emulators.lan_devices import text_registers
    from tests.emulators.modbus_dump import DumpServer, huawei_words, load
    words = huawei_words(load("huawei", "noon"))
    words.update(enumerate(text_registers(HUAWEI_NAME, 15), start=30000))
    DumpServer(words, device_id=1).start_tcp(502, ip)


def fronius(ip: str) -> None:
    from tests.emulators.http_meters import FroniusDatamanager
    from tests.emulators.modbus_dump import DumpServer, load, sunspec_words
    dm = FroniusDatamanager(80).use("noon")
    dm.bind = ip
    dm.start()
    DumpServer(sunspec_words(load("sunspec", "noon")), device_id=240).start_tcp(502, ip)


def sma(ip: str, net_w: float = 1100.0) -> None:
    from tests.emulators.lan_devices import send_speedwire
    from tests.emulators.speedwire import net, recorded
    base = recorded()
    first = int.from_bytes(base[24:28], "big")
    # the export counter moving with the power, from 12 MWh at the first datagram's time
    send_speedwire(ip, lambda stamp: net(base, net_w, 8_000_000.0,
                                         12_000_000.0 + net_w * ((stamp - first) % 2**32) / 3_600_000, stamp),
                   first)


def goodwe(ip: str, net_w: int = 1101) -> None:
    from tests.emulators import lan_devices
    from tests.emulators.goodwe_udp import GoodweUdp, et_meter, recorded
    lan_devices.goodwe(ip)   # the discovery answer on 48899
    inverter = GoodweUdp("ET", host=ip)
    inverter.modbus[(0x8CA0, 0x7D)] = et_meter(recorded("GW20K-ET_meter_data"), net_w, 8_000_000.0, 12_000_000.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["huawei", "fronius", "sma", "goodwe"])
    ap.add_argument("--ip", required=True)
    a = ap.parse_args()
    {"huawei": huawei, "fronius": fronius, "sma": sma, "goodwe": goodwe}[a.kind](a.ip)
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
