"""The ``distributor:`` section of settings.yaml (issue 35): whose hourly curve gestor fetches and
checks itself against. Without the section nothing is fetched (``gestor bill fetch`` says so and
install.sh leaves its timer off). Imports only pydantic (layer 3, as :mod:`gestor.settings.models`)."""
from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

# CUPS: "ES", 16 digits, 2 control letters, optionally a 2-character boundary suffix (1F, 0F...):
# the Código Unificado de Punto de Suministro of Real Decreto 1074/2015 (art. 3, the CUPS format)
CUPS_RE = re.compile(r"^ES\d{16}[A-Z]{2}(\d[A-Z])?$")


class DistributorSettings(BaseModel):
    """The holder's supply point and how its hourly curve is fetched. ``source: datadis``: the
    Datadis API (``nif`` and ``password``, the holder's Datadis login, from secrets.yaml); ``csv``:
    only files imported with ``gestor bill import FILE``. ``max_month_difference_pct``: the
    month's import or surplus may differ from the distributor's by this share of the
    distributor's month total before ``gestor bill reconcile`` alerts (% of Wh)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    cups: str
    source: Literal["datadis", "csv"] = "datadis"
    nif: SecretStr | None = None            # the holder's NIF, Datadis' user name (!secret NAME)
    password: SecretStr | None = None       # the holder's Datadis password (!secret NAME)
    authorized_nif: str | None = None       # when the holder authorised another NIF to read the supply
    datadis_url: str = "https://datadis.es"  # the API's base URL
    days_back: int = Field(7, ge=1, le=62)  # gestor bill fetch asks for this many days (data come 1-2 days late)
    max_month_difference_pct: float = Field(2.0, gt=0, le=50)
    timeout_s: float = Field(30.0, gt=0, le=120)

    @field_validator("cups")
    @classmethod
    def _cups(cls, v: str) -> str:
        c = v.strip().upper()
        if not CUPS_RE.match(c):
            raise ValueError(f"must be a CUPS: ES, 16 digits, 2 letters, optionally 2 more characters "
                             f"(as on the bill), got {v!r}")
        return c

    @field_validator("datadis_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"must be an http(s) URL, got {v!r}")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _login(self) -> "DistributorSettings":
        if self.source == "datadis" and (self.nif is None or self.password is None):
            raise ValueError("source datadis needs nif and password (the holder's Datadis login: nif: !secret "
                             "datadis_nif, password: !secret datadis_password in secrets.yaml); or source: csv")
        return self
