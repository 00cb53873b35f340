"""``gestor simulate --bill`` (issue 35): each month's bill with and without gestor and against
perfect foresight, on a public recording (shared/data/house-2022-06-11_13.csv, 11-14 June 2022),
with the shipped settings (config/settings.yaml: the 2.0TD prices of ``tariff:``, 4.6 kW, the
regulated power term of 2022, IEE 0.5 %, VAT 10 %)."""
from __future__ import annotations

import json
from pathlib import Path

from gestor.cli import main
from tests.conftest import DATA

CONFIG = Path(__file__).resolve().parents[1] / "config" / "settings.yaml"


def test_simulate_bill_prints_each_months_bill_with_without_and_foresight(capsys):
    assert main(["simulate", str(DATA / "house-2022-06-11_13.csv"), "--config", str(CONFIG), "--bill", "--json",
                 "--jobs", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    (m,) = out["bills"]
    w, wo, fo = m["with_gestor"], m["without"], m["foresight"]
    assert m["month"] == "2022-06" and (w["first_day"], w["last_day"]) == ("2022-06-11", "2022-06-14")
    for b in (w, wo, fo):   # the lines add up to the total, to the cent
        assert round(sum(ln["eur"] for ln in b["lines"]), 2) == b["total_eur"]
    # the fixed terms are the same in all three: only the energy differs
    assert w["power_eur"] == wo["power_eur"] == fo["power_eur"] and w["rental_eur"] == wo["rental_eur"]
    assert w["total_eur"] < wo["total_eur"]           # gestor saves on this sunny recording
    assert fo["total_eur"] <= w["total_eur"] + 0.10   # and foresight is about as good or better
    # the energy term and the compensation are the simulator's own periods priced
    imp_eur = sum(r["import_wh"] / 1000 * r["import_eur_per_kwh"] for r in out["periods"])
    comp_eur = sum(r["export_wh"] / 1000 * r["surplus_eur_per_kwh"] for r in out["periods"])
    assert abs(w["energy_eur"] - imp_eur) <= 0.006 and abs(w["compensation_uncapped_eur"] - comp_eur) <= 0.006
    assert w["capped"] is False and wo["capped"] is False
