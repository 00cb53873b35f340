"""monitoring -> InfluxDB with the huawei and sunspec drivers, each against a real pymodbus server
serving its register fixture (tests/data/meters/): a real noon (export) turning into a real night
(import), the counters advancing by the energy that went through (in each register's own unit),
and a busy spell in between. What InfluxDB holds is what the device served, export-positive."""
from __future__ import annotations

import pytest

from tests.conftest import free_port, make_settings
from tests.emulators.modbus_dump import DumpServer, huawei_words, load, sunspec_words
from tests.integration.test_meters import run_monitoring, stored

STEP_S = 10.0
NETS_W = [1101.0] * 5 + [-107.0] * 5   # the fixtures' noon and night, export-positive


class Player:
    """Serves step i: the fixture's power for NETS_W[i] and counters advanced by the energy since
    step i-1 (trapezoid), rounded down to the register's resolution, as a real meter counts.
    ``busy_at``: steps answered "device busy" (Modbus exception 6) instead."""

    def __init__(self, srv: DumpServer, words, busy_at=()) -> None:  # noqa: ANN001
        self.srv, self.words, self.busy_at = srv, words, set(busy_at)
        self.imp_wh, self.exp_wh = 1873050.0, 3524170.0
        self.served: list[tuple[float, float, float] | None] = []

    def __call__(self, i: int) -> None:
        if i:
            e_wh = (NETS_W[i - 1] + NETS_W[i]) / 2 * STEP_S / 3600
            self.imp_wh += max(-e_wh, 0.0)
            self.exp_wh += max(e_wh, 0.0)
        self.srv.busy = -1 if i in self.busy_at else 0
        self.srv.load(self.words(NETS_W[i], self.imp_wh, self.exp_wh))
        self.served.append(None if i in self.busy_at else self.expected(NETS_W[i]))

    def expected(self, net_w: float) -> tuple[float, float, float]:
        raise NotImplementedError


class HuaweiPlayer(Player):
    def __init__(self, srv: DumpServer, busy_at=()) -> None:  # noqa: ANN001
        base = load("huawei", "noon")

        def words(net_w: float, imp_wh: float, exp_wh: float) -> dict[int, int]:
            regs = base["registers"]
            regs["37113"]["value"] = int(net_w)                   # W, > 0 feed-in
            regs["37119"]["value"] = int(exp_wh // 10)            # kWh x 100: 10 Wh counts
            regs["37121"]["value"] = int(imp_wh // 10)
            return huawei_words(base)
        super().__init__(srv, words, busy_at)

    def expected(self, net_w: float) -> tuple[float, float, float]:
        return net_w, (self.imp_wh // 10) * 10, (self.exp_wh // 10) * 10


class SunSpecPlayer(Player):
    def __init__(self, srv: DumpServer, busy_at=()) -> None:  # noqa: ANN001
        base = load("sunspec", "noon")

        def words(net_w: float, imp_wh: float, exp_wh: float) -> dict[int, int]:
            m = base["models"][1]
            m["W"] = int(round(-net_w * 10))                      # import-positive, W_SF -1
            m["TotWhImp"], m["TotWhExp"] = int(imp_wh), int(exp_wh)   # Wh, TotWh_SF 0
            return sunspec_words(base)
        super().__init__(srv, words, busy_at)

    def expected(self, net_w: float) -> tuple[float, float, float]:
        return net_w, float(int(self.imp_wh)), float(int(self.exp_wh))


@pytest.mark.parametrize("family", ["huawei", "sunspec"])
def test_modbus_family_readings_reach_influxdb_export_positive(tmp_path, influxd, influx_db, family):
    unit = 1 if family == "huawei" else 240
    srv = DumpServer({}, device_id=unit).start_tcp(free_port())
    try:
        player = (HuaweiPlayer if family == "huawei" else SunSpecPlayer)(srv, busy_at={3})
        section = {"driver": family, "host": "127.0.0.1", "port": srv.address[1], "timeout_s": 1}
        s = make_settings(tmp_path, influxd, influx_db, meter_section=section)
        mon, got = run_monitoring(s, len(NETS_W), player, STEP_S)
        assert [r is None for r in got] == [i == 3 for i in range(len(NETS_W))]   # the busy spell: missing
        assert mon.failures == 1
        pts = stored(influxd, influx_db)
        want = [x for x in player.served if x is not None]
        assert len(pts) == len(want) == len(NETS_W) - 1
        for p, (net, imp, exp) in zip(pts, want):
            assert p["net_w"] == pytest.approx(net)
            assert p["import_wh_total"] == pytest.approx(imp)
            assert p["export_wh_total"] == pytest.approx(exp)
        assert pts[0]["net_w"] > 0 > pts[-1]["net_w"]            # noon exports (positive), night imports
        assert pts[-1]["export_wh_total"] > pts[0]["export_wh_total"]   # (the night's 107 W: < 10 Wh here)
    finally:
        srv.close()
