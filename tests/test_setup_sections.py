"""Anything ``gestor setup`` can propose validates: every settings section each finder can make
(the Shelly kinds of :mod:`gestor.setup.shelly`, the Enphase announcement, the Fronius Solar API
answer, the SunSpec and Huawei Modbus probes on each unit and port they try, the GoodWe search
answer, the SMA serials a datagram can carry) passes its driver's settings model, the same
models ``gestor check`` validates the file with (drivers.meters.base.METERS,
drivers.relays.base.RELAYS). A relay is checked on each of its channels, as setup writes it.
"""
from __future__ import annotations

import pytest

from drivers.meters.base import METERS
from drivers.relays.base import RELAYS
from gestor.setup import mdns, modbus, shelly, solar_api, udp
from gestor.setup.found import Found

HOST = "192.168.1.20"


def proposals() -> list[Found]:
    out: list[Found | None] = []
    for app in sorted(shelly.GEN2_METERS | set(shelly.GEN2_RELAYS)):
        for auth in (False, True):
            out.append(shelly.classify(HOST, {"gen": 2, "app": app, "model": "X", "auth_en": auth}))
    out += [shelly.classify(HOST, {"type": t, "auth": False}) for t in sorted(shelly.GEN1)]
    out.append(mdns.envoy_found(HOST))
    out.append(solar_api.parse_api_version(HOST, {"APIVersion": 1, "BaseURL": "/solar_api/v1/",
                                                  "CompatibilityRange": "1.6-3"}))
    for port in modbus.PORTS:
        for unit in modbus.SUNSPEC_UNITS:
            out.append(modbus.sunspec_found(HOST, port, unit, 40000, [1, 203]))
            out.append(modbus.sunspec_found(HOST, port, unit, 0, [1, 103]))
        for unit in modbus.HUAWEI_UNITS:
            out.append(modbus.huawei_found(HOST, port, unit, "SUN2000-5KTL-L1"))
    out.append(udp.parse_goodwe_answer(b"192.168.3.48,289C6E62D262,Solar-WiFi223W0252"))
    out += [udp.sma_found(s) for s in ("1", "3014930442", str(udp.SMA_SERIAL_MAX), "4294967296", "999999999999",
                                       "0", "abc", "")]
    return [f for f in out if f is not None]


@pytest.mark.parametrize("found", proposals(), ids=lambda f: f.label)
def test_every_section_a_finder_can_propose_passes_its_drivers_settings_model(found: Found) -> None:
    if found.role == "meter":
        model, _ = METERS[found.section["driver"]]
        sections = [found.section]
    else:
        model, _ = RELAYS[found.section["driver"]]
        sections = [{**found.section, "channel": c} for c in range(found.channels)]
    if found.needs_password:   # written as !secret shelly_password, resolved before validation
        sections = [{**s, "password": "pw"} for s in sections]
    for s in sections:
        model.model_validate(s)   # raises ValidationError naming the key, the value and what is allowed


def test_the_finders_propose_every_meter_family_and_no_serial_the_sma_driver_refuses() -> None:
    drivers = {f.section["driver"] for f in proposals() if f.role == "meter"}
    assert drivers == {"shelly_em", "envoy", "fronius", "sunspec", "huawei", "goodwe", "sma_em"}
    serials = [f.section["serial"] for f in proposals() if f.section["driver"] == "sma_em"]
    assert serials == [1, 3014930442, 0xFFFFFFFF]   # 4294967296, 999999999999, 0 proposed nothing


def test_the_fronius_finder_proposes_only_a_solar_api_v1_answer() -> None:
    recorded = {"APIVersion": 1, "BaseURL": "/solar_api/v1/", "CompatibilityRange": "1.6-3"}   # a Symo's
    assert solar_api.parse_api_version(HOST, recorded).section == {"driver": "fronius", "host": HOST}
    for other in ({**recorded, "APIVersion": 0}, {**recorded, "BaseURL": "/solar_api/"}, {"gen": 2, "app": "Pro3EM"},
                  ["APIVersion", 1], None, "<html>404</html>"):
        assert solar_api.parse_api_version(HOST, other) is None, other


def test_the_sunspec_chain_is_walked_to_its_end_model_and_a_meter_unit_is_told_apart() -> None:
    # Fronius' Smart Meter at unit 240: model 1 (L 65) then 203 (L 105) then the end (Datamanager Modbus map)
    regs = {40002: [1, 65], 40069: [203, 105], 40176: [0xFFFF, 0]}
    assert modbus.sunspec_models(lambda a, n: regs.get(a), 40000) == [1, 203]
    assert modbus.sunspec_models(lambda a, n: None, 40000) == []          # a failed read ends the walk
    loop = modbus.sunspec_models(lambda a, n: [1, 0], 40000)   # a chain that never ends is cut
    assert len(loop) == modbus.MAX_MODELS
    assert not modbus.sunspec_found(HOST, 502, 240, 40000, [1, 203]).notes
    assert modbus.sunspec_found(HOST, 502, 1, 40000, [1, 103, 120]).notes   # an inverter: no meter model
