"""Shelly energy meters over the local HTTP API.

* Generation 2+ (Shelly Pro 3EM; ``generation: 2``): ``GET /rpc/EM.GetStatus?id=0`` (Shelly API
  docs, "EM" component: ``a_act_power``, ``b_act_power``, ``c_act_power``, ``total_act_power`` W)
  and, with ``use_counters``, ``GET /rpc/EMData.GetStatus?id=0`` (``total_act`` imported Wh,
  ``total_act_ret`` exported Wh).
* Generation 1 (Shelly EM, Shelly 3EM; ``generation: 1``): ``GET /status``, ``emeters[i]`` with
  ``power`` W, ``is_valid``, ``total`` and ``total_returned`` Wh (Shelly Gen1 API docs, "/status"
  of Shelly EM / 3EM).

Shelly power is import-positive (consumption positive). The phases are summed with their signs,
which is how the Spanish utility meter nets them; ``net_w = -sum``. ``grid_channels`` picks the
clamps on the grid connection (Gen1; default: all of a 3EM, channel 0 of an EM), and
``production_channel`` a clamp on the PV line (its absolute value is production).

Counters are off by default: Shelly's energy counters add each phase's own import and export, not
the netted energy the utility bills, so on three phases they disagree with the balance; gestor
then integrates the netted power instead.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr

from drivers import DriverContext, secret
from drivers.http import Device, HttpError, number
from drivers.meters.base import MeterError, MeterSettings, Reading, register_meter


class ShellyEmSettings(MeterSettings):
    driver: Literal["shelly_em"] = "shelly_em"
    host: str                                  # IP address or name of the Shelly
    generation: Literal[1, 2] = 2              # 2: Pro 3EM (RPC API); 1: Shelly EM / 3EM (/status)
    timeout_s: float = Field(2.0, gt=0, le=20)
    username: str | None = None                # Gen1: basic auth user; Gen2: "admin" (digest)
    password: SecretStr | None = None          # better: !secret NAME (secrets.yaml)
    # Gen1: emeters on the grid connection (default all); a 3EM has 0-2
    grid_channels: list[Annotated[int, Field(ge=0, le=2)]] | None = Field(None, min_length=1, max_length=3)
    production_channel: int | None = Field(None, ge=0, le=2)  # Gen1: emeter on the PV line, if any
    use_counters: bool = False                 # report Shelly's energy counters (see module doc)
    sign: Literal["import_positive", "export_positive"] = "import_positive"  # clamps' orientation

    @property
    def counter_resolution_wh(self) -> float:
        """1 Wh: Gen2 ``EMData`` ``total_act``/``total_act_ret`` and Gen1 ``total``/``total_returned``
        are Wh with decimals (Shelly API docs)."""
        return 1.0


class ShellyEmMeter:
    """Reads a Shelly EM / 3EM / Pro 3EM. Raises MeterError with the URL and the reason."""

    def __init__(self, s: ShellyEmSettings, ctx: DriverContext) -> None:
        self.s = s
        self.clock = ctx.clock
        self.device = Device(s.username, secret(s.password), digest=s.generation == 2)
        self.base = f"http://{s.host}"
        self._k = -1.0 if s.sign == "import_positive" else 1.0

    def read(self) -> Reading:
        try:
            return self._read2() if self.s.generation == 2 else self._read1()
        except HttpError as e:
            raise MeterError(f"shelly {self.s.host}: {e}") from None

    def _read2(self) -> Reading:
        url = f"{self.base}/rpc/EM.GetStatus?id=0"
        st = self.device.get_json(url, self.s.timeout_s)
        if not isinstance(st, dict):
            raise MeterError(f"shelly {self.s.host}: {url}: answer is not a JSON object")
        phases = [number(st, f"{p}_act_power", where=url) for p in "abc"]
        total = number(st, "total_act_power", where=url) if "total_act_power" in st else sum(phases)
        if abs(total - sum(phases)) > max(5.0, 0.02 * sum(abs(p) for p in phases)):
            raise MeterError(f"shelly {self.s.host}: total_act_power {total:.0f} W disagrees with "
                             f"the phases' sum {sum(phases):.0f} W (partial answer?)")
        imp = exp = None
        if self.s.use_counters:
            url = f"{self.base}/rpc/EMData.GetStatus?id=0"
            d = self.device.get_json(url, self.s.timeout_s)
            imp, exp = number(d, "total_act", where=url), number(d, "total_act_ret", where=url)
            if self.s.sign == "export_positive":
                imp, exp = exp, imp
        return Reading(at=self.clock.now(), net_w=self._k * total, import_wh_total=imp, export_wh_total=exp)

    def _read1(self) -> Reading:
        url = f"{self.base}/status"
        st = self.device.get_json(url, self.s.timeout_s)
        em = st.get("emeters") if isinstance(st, dict) else None
        if not isinstance(em, list) or not em:
            raise MeterError(f"shelly {self.s.host}: {url}: answer lacks emeters")
        grid = self.s.grid_channels if self.s.grid_channels is not None else (
            [0] if len(em) == 2 else [i for i in range(len(em)) if i != self.s.production_channel])
        for i in grid + ([self.s.production_channel] if self.s.production_channel is not None else []):
            if i >= len(em):
                raise MeterError(f"shelly {self.s.host}: channel {i} does not exist (device has {len(em)})")
            if not isinstance(em[i], dict):
                raise MeterError(f"shelly {self.s.host}: {url}: emeters[{i}] is {str(em[i])[:40]!r}, not an object")
            if em[i].get("is_valid") is False:
                raise MeterError(f"shelly {self.s.host}: emeters[{i}] is_valid=false (clamp or voltage missing)")
        total = sum(number(em, i, "power", where=url) for i in grid)
        prod = abs(number(em, self.s.production_channel, "power", where=url)) if self.s.production_channel is not None else None
        imp = exp = None
        if self.s.use_counters:
            imp = sum(number(em, i, "total", where=url) for i in grid)
            exp = sum(number(em, i, "total_returned", where=url) for i in grid)
            if self.s.sign == "export_positive":
                imp, exp = exp, imp
        net = self._k * total
        return Reading(at=self.clock.now(), net_w=net, production_w=prod,
                       consumption_w=None if prod is None else prod - net,
                       import_wh_total=imp, export_wh_total=exp)

    def close(self) -> None:
        self.device.close()


@register_meter("shelly_em", ShellyEmSettings)
def _open(s: ShellyEmSettings, ctx: DriverContext) -> ShellyEmMeter:
    return ShellyEmMeter(s, ctx)
