"""`gestor db-init` on the real InfluxDB: retention policies, continuous queries, and that the
summaries they compute are what a user will query a year later."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from drivers.store.influx import InfluxStore, point
from gestor.cli import main
from tests.conftest import make_settings, settings_file

UTC = timezone.utc


def test_db_init_creates_retention_and_summaries(tmp_path, influxd, influx_db, capsys):
    f = settings_file(tmp_path, store={"kind": "influxdb1", "host": influxd.host, "port": influxd.port,
                                       "database": influx_db, "raw_retention": "30d"})
    assert main(["db-init", "--config", str(f)]) == 0
    assert main(["db-init", "--config", str(f)]) == 0       # idempotent
    c = influxd.client(influx_db)
    rps = {r["name"]: r for r in c.get_list_retention_policies(influx_db)}
    assert rps["raw"]["default"] and rps["raw"]["duration"] == "720h0m0s"
    assert rps["forever"]["duration"] == "0s"
    cqs = [cq for s in c.query("SHOW CONTINUOUS QUERIES").raw["series"] if s["name"] == influx_db
           for cq in s.get("values", [])]
    assert sorted(q[0] for q in cqs) == ["period_summary", "switches_summary"]

    s = make_settings(tmp_path, influxd, influx_db)
    store = InfluxStore.from_settings(s.store).open()
    t = (datetime.now(UTC) - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)  # within 30 d
    store.write([point("period", {"site": "test", "period_s": "3600"},
                       {"balance_wh": 12.5, "water_heater_wh": 800.0}, t),
                 point("decision", {"site": "test", "load": "water_heater"},
                       {"on": True, "reason": "r", "ok": True, "switched": 1}, t.replace(minute=5)),
                 point("decision", {"site": "test", "load": "water_heater"},
                       {"on": False, "reason": "r", "ok": True, "switched": 1}, t.replace(minute=40)),
                 point("decision", {"site": "test", "load": "water_heater"},
                       {"on": False, "reason": "exit", "ok": True, "switched": 0}, t.replace(minute=50))])
    assert store.flush(30)
    store.close()
    # run each continuous query's SELECT for that hour, as the CQ service does every period
    for name, q in cqs:
        select = q.split(" BEGIN ")[1].rsplit(" END", 1)[0]
        head, group = select.split(" GROUP BY ")
        a, b = t.strftime("%Y-%m-%dT%H:%M:%SZ"), (t + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        c.query(f"{head} WHERE time >= '{a}' AND time < '{b}' GROUP BY {group}")
    per = list(c.query("SELECT * FROM forever.period").get_points())
    sw = list(c.query("SELECT * FROM forever.switches").get_points())
    c.close()
    assert per[0]["last_balance_wh"] == 12.5 and per[0]["last_water_heater_wh"] == 800.0
    assert sw[0]["switches"] == 2 and sw[0]["load"] == "water_heater"
