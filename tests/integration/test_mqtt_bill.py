"""The bill in Home Assistant (issue 35), against the real mosquitto of tests/integration/test_mqtt.py:
the "Reconciliation alert" binary sensor that ``gestor bill reconcile`` feeds (retained on
``gestor/<site>/reconcile``), and the "Month's energy term after compensation" sensor from managing's
books (the month so far against the compensation cap, RD 244/2019 art. 14.3)."""
from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from gestor.cli import main
from tests.conftest import DATA, settings_file
from tests.data.distributor import build
from tests.integration.test_mqtt import HA, PASSWORD, broker, run, sunny_daemons  # noqa: F401 -- broker: the fixture

FIX = Path(build.__file__).resolve().parent
NODE = "homeassistant/{}/gestor_test/{}/config"


def recording(tmp_path: Path, gain: float) -> Path:
    """The house recording moved to October 2022 (the i-DE fixture's month, as
    test_reconcile.py's), its powers times ``gain`` (a CT reading ``gain`` x)."""
    out = tmp_path / f"house-2022-10-{gain}.csv"
    with open(DATA / "house-2022-06-11_13.csv", newline="") as fi, open(out, "w", newline="") as fo:
        r, wr = csv.reader(fi), csv.writer(fo)
        head = next(r)
        wr.writerow(head)
        scaled = [i for i, h in enumerate(head) if h.startswith(("energy", "power"))]
        for row in r:
            row[0] = (datetime.fromisoformat(row[0]) + timedelta(days=140)).isoformat(sep=" ")
            for i in scaled:
                row[i] = repr(float(row[i]) * gain)
            wr.writerow(row)
    return out


def test_reconcile_publishes_its_alert_retained_for_home_assistant(tmp_path, broker):  # noqa: F811
    cfg = settings_file(tmp_path, site="test", distributor={"cups": build.CUPS, "source": "csv"},
                        mqtt={"enabled": True, "host": "127.0.0.1", "port": broker.port, "username": "gestor",
                              "password": PASSWORD})
    args = ["bill", "reconcile", "--month", "2022-10", "--csv", str(FIX / "ide-2022-10.csv"), "--summary",
            "--no-offset", "--config", str(cfg)]
    assert main(args + ["--recording", str(recording(tmp_path, 1.05))]) == 0   # the CT 5 % high: an alert
    ha = HA(broker.port)
    try:
        assert ha.wait(lambda m: "gestor/test/reconcile" in m)   # retained: Home Assistant reads it later
        got = json.loads(ha.get("gestor/test/reconcile"))
        assert got["month"] == "2022-10" and got["alert"] is True and got["hours"] == 49
        assert got["alerts"][0].startswith("import: the distributor bills") or got["alerts"][0].startswith("surplus:")
        assert got["ratio"] == pytest.approx(1 / 1.05, rel=5e-3) and got["offset_s"] is None
        assert ha.get("gestor/test/bill/availability") == "offline"   # the command is done
        assert main(args + ["--recording", str(recording(tmp_path, 1.0))]) == 0  # the same CT, right
        assert ha.wait(lambda m: json.loads(m["gestor/test/reconcile"])["alert"] is False)
    finally:
        ha.close()


def test_reconcile_goes_on_when_the_broker_is_away(tmp_path, capsys):
    from tests.conftest import free_port
    cfg = settings_file(tmp_path, site="test", distributor={"cups": build.CUPS, "source": "csv"},
                        mqtt={"enabled": True, "host": "127.0.0.1", "port": free_port(), "username": "gestor",
                              "password": PASSWORD})
    assert main(["bill", "reconcile", "--month", "2022-10", "--csv", str(FIX / "ide-2022-10.csv"), "--summary",
                 "--no-offset", "--recording", str(recording(tmp_path, 1.0)), "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "not published to MQTT: MQTT broker 127.0.0.1:" in out and "did not take the connection within 10 s" in out


def test_the_entities_and_the_month_so_far_from_managings_books(tmp_path, broker):  # noqa: F811
    ha = HA(broker.port)
    _, s, clock, mon, mgr = sunny_daemons(tmp_path, broker, 70)
    try:
        run(clock, mon, mgr, 62)   # a period closes: it is booked into the month
        assert ha.wait(lambda m: "gestor/test/state" in m and NODE.format("binary_sensor", "reconcile_alert") in m)
        cfgs = {t: json.loads(p) for t, p in ha.msgs.items() if t.startswith("homeassistant/") and p}
        alert = cfgs[NODE.format("binary_sensor", "reconcile_alert")]
        assert (alert["state_topic"], alert["device_class"], alert["json_attributes_topic"]) == \
            ("gestor/test/reconcile", "problem", "gestor/test/reconcile")
        assert "availability_topic" not in alert   # retained by a one-shot command: no daemon's availability
        month = cfgs[NODE.format("sensor", "month_energy_eur")]
        assert (month["device_class"], month["unit_of_measurement"], month["state_topic"]) == \
            ("monetary", "EUR", "gestor/test/state")
        cap = mgr.books.cap
        assert cap.month == clock.now().astimezone(s.tz).strftime("%Y-%m") and cap.energy_eur + cap.compensation_eur > 0
        want = round(cap.energy_eur - min(cap.energy_eur, cap.compensation_eur), 4)
        assert ha.wait(lambda m: json.loads(m["gestor/test/state"]).get("month_bill", {}).get(
            "energy_after_compensation_eur") == want)
        mb = json.loads(ha.get("gestor/test/state"))["month_bill"]
        assert mb["capped"] == (cap.compensation_eur > cap.energy_eur)
        assert mb["compensation_eur"] == round(min(cap.energy_eur, cap.compensation_eur), 4)
    finally:
        mgr.stop()
        mon.close()
        ha.close()
