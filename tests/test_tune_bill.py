"""``gestor tune --bill`` (issue 35): candidates scored by the bill's euros of each month
(gestor/sim/tune_bill.py: the compensation capped at the month's energy term, RD 244/2019 art.
14.3, with the electricity tax and VAT), cross-validated as tune does; the default unchanged."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
import yaml

from gestor.bill import rates
from gestor.bill.invoice import Contract
from gestor.cli import main
from gestor.sim.simulate import Totals
from gestor.sim.tune import cross_validate
from gestor.sim.tune_bill import DayEuros, bill_eur
from tests.conftest import EXAMPLE
from tests.test_simulate import house_csv

UTC = timezone.utc
P3 = 0.10


def e(import_kwh: float, energy_eur: float, surplus_kwh: float, compensation_eur: float, heat_kwh: float) -> DayEuros:
    return DayEuros(import_kwh * 1000, surplus_kwh * 1000, energy_eur, compensation_eur, heat_kwh * 1000, P3)


def t(money_eur: float) -> Totals:
    return Totals(periods=24, money_eur=money_eur)


# Two candidates on 30 June (sunny: past the cap) and 1-2 July 2025 (cloudy: below it), by hand.
# June: A exports 44 kWh (2.20 EUR at 0.05), heat 1 kWh; B exports 25 kWh (1.25), heat 5 kWh; both
#   import 1 kWh (0.20). Money (import - compensation - heat x P3 0.10): A -2.10, B -1.55.
#   Bill: A's energy term 0.20 + (5 - 1) kWh heat bought at night x 0.10 = 0.60 < 2.20: capped, 0;
#   B's 0.20 < 1.25: capped, 0.
# 1 July: A imports 5 kWh (1.00), exports 2 (0.10), heat 1: money 0.80; B imports 4 (0.80),
#   exports 2 (0.10), heat 2: money 0.50. Bill: A 1.00 + 0.10 night heat - 0.10 = 1.00; B 0.70.
# Money over both days: A -1.30, B -1.05 (A); the bill: A 1.00, B 0.70 before taxes (B): A's
# lead in June is surplus the cap makes worth nothing.
JUNE = {"A": e(1, 0.20, 44, 2.20, 1), "B": e(1, 0.20, 25, 1.25, 5)}
JULY = {"A": e(5, 1.00, 2, 0.10, 1), "B": e(4, 0.80, 2, 0.10, 2)}
HELD = e(3, 0.60, 1, 0.05, 1)   # 2 July, the same for both: held out
MONEY = {"A": (-2.10, 0.80), "B": (-1.55, 0.50)}


def runs():
    results = [[{"2025-06-30": t(MONEY[c][0]), "2025-07-01": t(MONEY[c][1]), "2025-07-02": t(0.0)}] for c in "AB"]
    euros = [[{"2025-06-30": JUNE[c], "2025-07-01": JULY[c], "2025-07-02": HELD}] for c in "AB"]
    return results, euros


def test_the_bill_chooses_what_the_uncapped_money_does_not():
    results, euros = runs()
    cands, group = [{"c": "A"}, {"c": "B"}], lambda fi, d: "held" if d == "2025-07-02" else "train"
    (by_money,) = cross_validate(results, cands, ["held"], group, 3600)
    (by_bill,) = cross_validate(results, cands, ["held"], group, 3600, euros, Contract())
    assert by_money.chosen == {"c": "A"} and by_money.train.money_eur == pytest.approx(-1.30)
    assert by_bill.chosen == {"c": "B"}
    # the bill's euros of the training days: June at the cap (0), July's energy term less its
    # compensation with the electricity tax (its rate; the 1 EUR/MWh floor does not bind) and 21 % VAT (2025)
    taxes = (1 + rates.IEE_GENERAL) * (1 + rates.VAT_GENERAL)
    assert by_bill.train.bill_eur == pytest.approx(0.70 * taxes)
    assert bill_eur(euros, Contract(), lambda fi, d: d != "2025-07-02") == pytest.approx([1.00 * taxes, 0.70 * taxes])
    assert bill_eur(euros, Contract(), lambda fi, d: d == "2025-06-30") == pytest.approx([0.0, 0.0], abs=1e-12)
    assert by_bill.test.bill_eur == pytest.approx(0.55 * taxes)     # 2 July: 0.60 - 0.05


def test_with_a_virtual_battery_the_excess_over_the_cap_counts():
    """bill.virtual_battery: the compensation over the cap is kept in euros for later bills, so it
    is money again (before taxes: it pays the total after VAT): June's lead, 1.60 - 1.05 EUR, outweighs
    July's 0.30 EUR with taxes, so A is the cheaper, as by money."""
    results, euros = runs()
    vb = Contract(virtual_battery=True)
    june = bill_eur(euros, vb, lambda fi, d: d == "2025-06-30")
    assert june == pytest.approx([-(2.20 - 0.60), -(1.25 - 0.20)])  # pre-tax excess, counted as money
    cands, group = [{"c": "A"}, {"c": "B"}], lambda fi, d: "held" if d == "2025-07-02" else "train"
    (fold,) = cross_validate(results, cands, ["held"], group, 3600, euros, vb)
    assert fold.chosen == {"c": "A"}


def june_and_july(tmp_path):
    """29-30 June 2025: sun with a passing cloud every 20 minutes and a clear midday of 9 kW (the
    month far past the cap); 1-2 July: weak sun (1.5 kW) with the same clouds (below it). A house of
    300 W and one 2 kW modulating heater, no on/off load."""
    start = datetime(2025, 6, 28, 22, 0, tzinfo=UTC)   # 29 June, 00:00 in Madrid

    def prod(k):
        h = (k % 86400) / 3600
        if not 8 <= h < 16 or not (k // 1200) % 3:
            return 0 if not 8 <= h < 16 else (400 if k < 2 * 86400 else 300)
        return (9000 if 11 <= h < 13 else 3500) if k < 2 * 86400 else 1500
    csv = house_csv(tmp_path / "four.csv", start, 4 * 86400 - 10, prod, lambda k: 300, step=30)
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["loads"] = []
    raw["setpoints"] = [{"name": "heater2", "device": {"driver": "simulated", "kind": "heater", "max_charge_w": 2000}}]
    cfg = tmp_path / "settings.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    return csv, cfg


def reserve(out: str) -> float:
    return yaml.safe_load(out[out.index("setpoints:"):])["setpoints"][0]["reserve_wh_per_h"]


def test_gestor_tune_bill_picks_by_the_bills_euros_and_the_default_is_unchanged(tmp_path, capsys):
    """By the uncapped money the sunny June days decide: no reserve, the most surplus turned into
    heat (worth P3 0.10 against 0.06 exported). On the bill June is past the cap, so the surplus
    exported there is worth nothing either way and the heat not taken is bought at night out of
    compensation that was lost anyway: every reserve bills June at 0. July, below the cap, decides:
    the largest reserve, which imports least under the clouds. The default (no --bill) output is
    money's, without a word of the bill."""
    csv, cfg = june_and_july(tmp_path)
    args = ["tune", str(csv), "--config", str(cfg), "--folds", "2", "--jobs", "1"]
    assert main(args) == 0
    plain = capsys.readouterr().out
    assert "bill" not in plain and "Chosen by money" in plain
    assert reserve(plain) == 0
    assert main(args + ["--bill"]) == 0
    out = capsys.readouterr().out
    assert "Chosen by the bill" in out and "bill EUR/day" in out
    assert reserve(out) == 300
    line = next(ln for ln in out.splitlines() if ln.startswith("bill EUR on the whole recording"))
    assert "perfect foresight" in line and "now" in line and "chosen" in line


def test_gestor_tune_bill_names_the_setting_a_date_without_rates_needs(tmp_path, capsys):
    """2026 has no regulated power term in gestor.bill.rates: --bill says which setting to give,
    before it simulates anything."""
    start = datetime(2026, 6, 8, 0, 0, tzinfo=UTC)
    csv = house_csv(tmp_path / "four.csv", start, 4 * 86400 - 10, lambda k: 2000 if 30000 < k % 86400 < 60000 else 0,
                    lambda k: 300, step=60)
    assert main(["tune", str(csv), "--config", str(EXAMPLE), "--policy", "time_to_consume", "--folds", "2",
                 "--jobs", "1", "--bill"]) == 2
    err = capsys.readouterr().err
    assert "--bill:" in err and "bill.power_p1_eur_per_kw_year" in err and "no rate known for 2026-06-08" in err
    assert "runs" not in err


def test_an_exact_bill_is_the_printed_one_unrounded():
    """gestor.bill.invoice.bill(exact=True), which tune --bill ranks by: the same lines, no cent
    rounding (here an energy term of 0.123 EUR that a bill prints as 0.12)."""
    from datetime import date

    from gestor.bill.invoice import Hour, bill
    hs = [Hour(datetime(2025, 7, 1, 10, tzinfo=UTC), 1000.0, 0.0, 0.123, 0.05)]
    rounded, exact = bill(hs, Contract(), date(2025, 7, 1), date(2025, 7, 1)), \
        bill(hs, Contract(), date(2025, 7, 1), date(2025, 7, 1), exact=True)
    assert (rounded.energy_eur, exact.energy_eur) == (0.12, pytest.approx(0.123))
    assert exact.total_before_battery_eur == pytest.approx(
        (exact.energy_eur + exact.power_eur + exact.tax_eur + exact.rental_eur) * (1 + rates.VAT_GENERAL))
    assert abs(exact.total_before_battery_eur - rounded.total_eur) < 0.02
