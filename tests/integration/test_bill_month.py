"""``gestor bill --month`` from a real InfluxDB 1.x (tests/influxd.py): the month's bill from
gestor's ``period`` points with and without gestor, and from the distributor's curve (the
``distributor`` measurement, UTC hour starts) where present. June 2025, worked by hand:

Power term (both bills): P1 4.6 kW x 30 d x (22.958932 + 3.971618 + 3.113) / 365 = 11.3589 -> 11.36,
P2 4.6 x 30 x (0.442165 + 0.255423) / 365 = 0.2637 -> 0.26: 11.62. Rental 30 x 0.02663 -> 0.80.
IEE 5.11269632 % (Ley 38/1992 art. 99.1), VAT 21 % (2025).

* with gestor: 12:00 +1000 Wh (0.05 EUR/kWh surplus), 20:00 -4000 Wh at 0.20: energy 0.80,
  compensation 0.05; IEE 5.11269632 % x 12.37 = 0.6324 -> 0.63; VAT 21 % x 13.80 = 2.898 -> 2.90;
  total 16.70.
* without gestor: 12:00 +1000 + 2000 (the loads) = 3000 Wh surplus, the loads' 2000 Wh bought at
  P3 0.10 (tariff: of config/settings.yaml): energy 0.80 + 0.20 = 1.00, compensation 0.15; IEE x
  12.47 = 0.6376 -> 0.64; VAT 21 % x 13.91 = 2.9211 -> 2.92; total 16.83.
* the distributor: 950 Wh surplus at 12:00, 4100 Wh import at 20:00: energy 0.82, compensation
  0.0475 -> 0.05; IEE x 12.39 = 0.6335 -> 0.63; VAT 21 % x 13.82 = 2.9022 -> 2.90; total 16.72.
"""
from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

from gestor.cli import main
from tests.conftest import settings_file

MAD = ZoneInfo("Europe/Madrid")


def _write(s, pts) -> None:
    from drivers.store.influx import InfluxStore
    store = InfluxStore.from_settings(s.store).open()
    store.write(pts)
    assert store.flush(30)
    store.close()


def test_bill_month_from_influx_with_without_and_the_distributor(tmp_path, influxd, influx_db, capsys):
    from drivers.store.influx import point
    from gestor.settings import load_settings
    f = settings_file(tmp_path, store={"kind": "influxdb1", "host": influxd.host, "port": influxd.port,
                                       "database": influx_db})
    s = load_settings(f)
    noon, eve = datetime(2025, 6, 2, 12, tzinfo=MAD), datetime(2025, 6, 2, 20, tzinfo=MAD)
    tags = {"site": s.site, "period_s": "3600"}
    _write(s, [point("period", tags, {"balance_wh": 1000.0, "loads_wh": 2000.0, "import_eur_per_kwh": 0.15,
                                      "surplus_eur_per_kwh": 0.05}, noon),
               point("period", tags, {"balance_wh": -4000.0, "loads_wh": 0.0, "import_eur_per_kwh": 0.20,
                                      "surplus_eur_per_kwh": 0.05}, eve),
               point("period", tags, {"balance_wh": -9999.0, "loads_wh": 0.0}, datetime(2025, 7, 1, 0, tzinfo=MAD))])
    assert main(["bill", "--month", "2025-06", "--config", str(f), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"with_gestor", "without"}            # no distributor points: no such column
    w, wo = out["with_gestor"], out["without"]
    assert (w["energy_eur"], w["compensation_eur"], w["power_eur"], w["tax_eur"], w["vat_eur"], w["total_eur"]) == \
        (0.80, 0.05, 11.62, 0.63, 2.90, 16.70)
    assert (wo["energy_eur"], wo["compensation_eur"], wo["tax_eur"], wo["vat_eur"], wo["total_eur"]) == \
        (1.00, 0.15, 0.64, 2.92, 16.83)
    dtags = {"site": s.site, "cups": "ES0021000000000000AA", "method": "real"}
    _write(s, [point("distributor", dtags, {"import_wh": 0.0, "surplus_wh": 950.0}, noon),
               point("distributor", dtags, {"import_wh": 4100.0, "surplus_wh": 0.0}, eve)])
    assert main(["bill", "--month", "2025-06", "--config", str(f)]) == 0
    text = capsys.readouterr().out
    assert "from the distributor's curve" in text
    assert main(["bill", "--month", "2025-06", "--config", str(f), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)["distributor"]
    assert (d["energy_eur"], d["compensation_eur"], d["tax_eur"], d["vat_eur"], d["total_eur"]) == (0.82, 0.05, 0.63, 2.90, 16.72)


def test_bill_month_without_points_or_with_a_bad_month_says_so(tmp_path, influxd, influx_db, capsys):
    f = settings_file(tmp_path, store={"kind": "influxdb1", "host": influxd.host, "port": influxd.port,
                                       "database": influx_db})
    assert main(["bill", "--month", "2025-06", "--config", str(f)]) == 1
    assert f"database not found: {influx_db}" in capsys.readouterr().err
    c = influxd.client()
    c.create_database(influx_db)
    c.close()
    assert main(["bill", "--month", "2025-06", "--config", str(f)]) == 1
    assert "no 'period' points in InfluxDB for 2025-06" in capsys.readouterr().err
    assert main(["bill", "--month", "June", "--config", str(f)]) == 1
    assert "--month: must be YYYY-MM" in capsys.readouterr().err
