"""GoodWe inverters' grid meter, through the ``goodwe`` library (optional extra ``goodwe``; pinned
0.4.10, https://github.com/marcelblijleven/goodwe).

The inverter answers on UDP port 8899 (its Wi-Fi/LAN dongle) or, on the models that have it, on
Modbus TCP (any other ``port``, usually 502: the library picks the transport by the port). The
connection is made once (``goodwe.connect`` with ``family`` when set, else the library's detection)
and the inverter object lives on :mod:`drivers.aio`'s loop; each read is one
``read_runtime_data`` bounded by :attr:`GoodweSettings.read_bound_s`.

What is read, per family (sensor names and register maps of goodwe 0.4.10, ``et.py``, ``es.py``,
``dt.py``), all export-positive as the library gives them (its own ``house_consumption`` formulas
subtract them from production: ET ``ppv + pbattery1 - active_power``, DT ``ppv - meter_active_power``):

* ET/EH/BT/BH: ``meter_active_power_total`` (the grid meter's total, registers 36025-36026, W),
  else ``active_power_total`` (36008); counters ``meter_e_total_imp`` / ``meter_e_total_exp`` (kWh,
  registers 36120 / 36104, or 36017 / 36015 on inverters without the extended meter block).
  ``meter_comm_status`` (36004) 0 means the inverter cannot reach its meter: a failed read.
* ES/EM/BP: ``pgrid`` (the grid power's magnitude, byte 38, signed by ``grid_in_out``: 2 is
  importing); no energy counters (the library leaves them out: they are not known to work).
* DT/MS/NS/XS: ``meter_active_power`` (30195, W), counters ``meter_e_total_imp`` /
  ``meter_e_total_exp`` (30199 / 30197, kWh); ``meter_comm_status`` (30209) 2 is disconnected.

A family without the meter's registers (a DT with no meter: the library then drops them) is a
failed read naming that, never a zero. Counters that read exactly 0.0 kWh both (firmwares that do
not fill them, as the GW25K-ET and GW29K9-ET recordings in the library's tests) are left out.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from drivers import DriverContext, aio
from drivers.meters.base import MeterError, MeterSettings, Reading, import_extra, register_meter

# goodwe 0.4.10 __init__.py ET_FAMILY + ES_FAMILY + DT_FAMILY
FAMILIES = ("ET", "EH", "BT", "BH", "ES", "EM", "BP", "DT", "MS", "NS", "XS")
# the most requests one read_runtime_data makes (ET: running data, battery, battery 2 and its
# extension, meter, meter fall-back, MPPT), for the bound on a whole read
MAX_REQUESTS_PER_READ = 7


class GoodweSettings(MeterSettings):
    driver: Literal["goodwe"] = "goodwe"
    host: str = Field(min_length=1, max_length=253)  # the inverter's IP address or name
    port: int = Field(8899, ge=1, le=65535)          # 8899: UDP (the dongle); 502: Modbus TCP
    family: Literal[FAMILIES] | None = None          # type: ignore[valid-type]  # None: detect
    timeout_s: float = Field(1.0, gt=0, le=10)       # one request's wait for its answer, s
    retries: int = Field(2, ge=0, le=5)              # a request lost on UDP is sent again this often

    @property
    def counter_resolution_wh(self) -> float:
        """10 Wh: the ET's extended meter counters are 0.01 kWh (goodwe ``Energy8``); the others are
        0.001 kWh. The coarser one."""
        return 10.0


    @property
    def read_bound_s(self) -> float:
        """The longest a read (or the first connection) may take, s: every request of a read
        waiting ``timeout_s`` for each of its ``retries`` + 1 sendings, plus one second."""
        return self.timeout_s * (self.retries + 1) * MAX_REQUESTS_PER_READ + 1.0


def grid_reading(kind: str, data: dict[str, Any]) -> tuple[float, float | None, float | None]:
    """(net_w export-positive, import_wh_total, export_wh_total) from one ``read_runtime_data``
    answer of an inverter of class ``kind`` ("ET", "ES" or "DT": the library's classes).

    Raises MeterError naming the sensor when the meter's values are missing or its link is down."""
    if kind == "ES":
        power = data.get("pgrid")
        if not isinstance(power, (int, float)):
            raise MeterError(f"the inverter's answer has no grid power (pgrid = {power!r})")
        return float(power), None, None
    status_key, down = ("meter_comm_status", (0,)) if kind == "ET" else ("meter_comm_status", (2,))
    if data.get(status_key) in down:
        raise MeterError(f"the inverter cannot reach its grid meter ({status_key} = {data.get(status_key)})")
    keys = ("meter_active_power_total", "active_power_total") if kind == "ET" else ("meter_active_power",)
    power = next((data[k] for k in keys if isinstance(data.get(k), (int, float))), None)
    if power is None:
        raise MeterError(f"the inverter reports no grid meter ({' / '.join(keys)} missing: "
                         "no meter connected, or its registers rejected)")
    imp, exp = data.get("meter_e_total_imp"), data.get("meter_e_total_exp")
    if not isinstance(imp, (int, float)) or not isinstance(exp, (int, float)) or (imp == 0 and exp == 0):
        return float(power), None, None
    return float(power), float(imp) * 1000.0, float(exp) * 1000.0


class GoodweMeter:
    """Reads a GoodWe inverter's grid meter. Raises MeterError with the address and the reason."""

    def __init__(self, s: GoodweSettings, ctx: DriverContext) -> None:
        self.s = s
        self.clock = ctx.clock
        self.inverter: Any = None
        self.where = f"goodwe {s.host}:{s.port}"

    async def _read(self, goodwe: Any) -> tuple[str, dict[str, Any]]:
        if self.inverter is None:
            # goodwe.connect's timeout is typed int but used as a float (asyncio call_later)
            self.inverter = await goodwe.connect(self.s.host, self.s.port, self.s.family,
                                                 timeout=self.s.timeout_s, retries=self.s.retries)  # type: ignore[arg-type]
        kind = "ET" if isinstance(self.inverter, goodwe.ET) else "ES" if isinstance(self.inverter, goodwe.ES) else "DT"
        return kind, await self.inverter.read_runtime_data()

    def read(self) -> Reading:
        goodwe = import_extra("goodwe", "goodwe", "goodwe")
        try:
            kind, data = aio.run(self._read(goodwe), self.s.read_bound_s)
        except TimeoutError:
            raise MeterError(f"{self.where}: no complete answer within {self.s.read_bound_s:g} s") from None
        except goodwe.InverterError as e:
            raise MeterError(f"{self.where}: {_sentence(e)}") from None
        except OSError as e:
            raise MeterError(f"{self.where}: {e.strerror or e}") from None
        try:
            net, imp, exp = grid_reading(kind, data)
        except MeterError as e:
            raise MeterError(f"{self.where} ({getattr(self.inverter, 'model_name', '?')}, {kind} family): {e}") from None
        return Reading(at=self.clock.now(), net_w=net, import_wh_total=imp, export_wh_total=exp)

    def close(self) -> None:
        """Forget the inverter: the library opens a UDP socket (or TCP connection) per request and
        closes it after the answer (goodwe 0.4.10 ``protocol.py``, ``keep_alive`` off), so nothing
        stays open between reads."""
        self.inverter = None


def _sentence(e: Exception) -> str:
    """The library's exception as one line: its message, else what kind of failure it was."""
    msg = " ".join(str(getattr(e, "message", "") or e).split())[:200]
    kinds = {"RequestFailedException": "no valid answer (lost, garbled or cut short) after the retries",
             "RequestRejectedException": "the inverter rejected the request",
             "MaxRetriesException": "no answer after the retries"}
    what = kinds.get(type(e).__name__, type(e).__name__)
    return f"{what}: {msg}" if msg else what


@register_meter("goodwe", GoodweSettings)
def _open(s: GoodweSettings, ctx: DriverContext) -> GoodweMeter:
    return GoodweMeter(s, ctx)
