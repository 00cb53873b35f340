"""The ``bill:`` section of settings.yaml (issue 35): the retailer's contract as the monthly bill
needs it (:mod:`gestor.bill.invoice`), and whether the controller steers by the month's
compensation cap. Every key has a default: without the section the bill is a PVPC-like 2.0TD
contract at 4.6 kW priced at gestor's own import and surplus prices. Imports only pydantic (layer
3, as :mod:`gestor.settings.models`)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class BillSettings(BaseModel):
    """The contract (EUR before taxes). ``power_p1_kw``/``power_p2_kw``: contracted power in the
    2.0TD power periods (P1 punta-llano, P2 valle), kW. ``power_p*_eur_per_kw_year``: the
    contract's power prices, both or neither; none: the regulated peajes + cargos by date
    (gestor.bill.rates) plus ``power_margin_eur_per_kw_year`` on P1 (PVPC's 3.113 by default).
    ``energy_p*_eur_per_kwh``: a fixed-price contract's energy prices, all three or none; none:
    the prices gestor already uses (stored PVPC, a prices CSV, or ``tariff.*``).
    ``surplus_eur_per_kwh``: a fixed surplus price; none: gestor's (ESIOS 1739 or
    ``tariff.surplus_eur_per_kwh``). ``virtual_battery``: the retailer keeps the compensation
    over the cap for later bills, starting from ``virtual_battery_start_eur``.
    ``steer_by_cap``: the setpoint devices value surplus at 0 once the month-to-date compensation
    reaches the month-to-date energy term (off by default: it changes what the controller does)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    power_p1_kw: float = Field(4.6, gt=0, le=15)
    power_p2_kw: float = Field(4.6, gt=0, le=15)
    power_p1_eur_per_kw_year: float | None = Field(None, ge=0, le=1000)
    power_p2_eur_per_kw_year: float | None = Field(None, ge=0, le=1000)
    power_margin_eur_per_kw_year: float = Field(3.113, ge=0, le=1000)
    meter_rental_eur_per_day: float = Field(0.02663, ge=0, le=10)
    energy_p1_eur_per_kwh: float | None = Field(None, ge=0, le=10)
    energy_p2_eur_per_kwh: float | None = Field(None, ge=0, le=10)
    energy_p3_eur_per_kwh: float | None = Field(None, ge=0, le=10)
    surplus_eur_per_kwh: float | None = Field(None, ge=0, le=10)
    virtual_battery: bool = False
    virtual_battery_start_eur: float = Field(0.0, ge=0, le=100000)
    steer_by_cap: bool = False

    def prices(self, period: str, import_eur_per_kwh: float, surplus_eur_per_kwh: float) -> tuple[float, float]:
        """(import, surplus) EUR/kWh of a settlement period in 2.0TD ``period`` ("P1".."P3") for the
        bill: the contract's fixed prices where set, else the ones given (gestor's own)."""
        if self.energy_p1_eur_per_kwh is not None:
            import_eur_per_kwh = {"P1": self.energy_p1_eur_per_kwh, "P2": self.energy_p2_eur_per_kwh,
                                  "P3": self.energy_p3_eur_per_kwh}[period] or 0.0
        if self.surplus_eur_per_kwh is not None:
            surplus_eur_per_kwh = self.surplus_eur_per_kwh
        return import_eur_per_kwh, surplus_eur_per_kwh

    def night_eur_per_kwh(self, tariff_p3_eur_per_kwh: float) -> float:
        """The P3 price the bill buys energy at without gestor (the contract's, else ``tariff:``'s)."""
        return self.energy_p3_eur_per_kwh if self.energy_p3_eur_per_kwh is not None else tariff_p3_eur_per_kwh

    @model_validator(mode="after")
    def _together(self) -> "BillSettings":
        for keys in (("power_p1_eur_per_kw_year", "power_p2_eur_per_kw_year"),
                     ("energy_p1_eur_per_kwh", "energy_p2_eur_per_kwh", "energy_p3_eur_per_kwh")):
            given = [k for k in keys if getattr(self, k) is not None]
            if given and len(given) != len(keys):
                missing = [k for k in keys if k not in given]
                raise ValueError(f"{', '.join(keys)}: give all or none (got {', '.join(given)}; "
                                 f"missing {', '.join(missing)})")
        return self
