"""Huawei SUN2000 inverters' power meter (a DTSU666-H or DDSU666-H behind the inverter), read over
Modbus TCP through the SDongle (port 502) or the inverter's own network port (6607 on older
firmware), with the ``huawei-solar`` library (optional extra ``huawei``; 2.5).

Registers (Huawei "SUN2000 V100R001C00 Modbus Interface Definitions", section "Power meter";
the same addresses, types and gains as huawei-solar 2.5.0 ``registers.py`` ``METER_REGISTERS``),
holding registers read in one request, 37100-37122:

=====  ===========================  ==========================  ====  ======  =====================
addr   Huawei's name                huawei-solar's name          type  gain    unit, sign
=====  ===========================  ==========================  ====  ======  =====================
37100  Meter status                 ``meter_status``             U16   1       0 offline, 1 normal
37113  Active power                 ``power_meter_active_power`` I32   1       W, > 0 feed-in (export)
37119  Positive active electricity  ``grid_exported_energy``     I32   100     kWh, fed to the grid
37121  Reverse active power         ``grid_accumulated_energy``  I32   100     kWh, taken from it
=====  ===========================  ==========================  ====  ======  =====================

Huawei's sign is already gestor's: active power is positive when feeding in, so
``net_w = active power`` (DESIGN.md section 2), ``export_wh_total`` = 37119 and
``import_wh_total`` = 37121, both in hundredths of a kWh (``counter_resolution_wh`` 10 Wh).
huawei-solar reads 0x7FFFFFFF ("not available") as None: a failed read here, never a zero.

The dongle's quirks are handled by the library's own means, on the one shared asyncio loop
(:mod:`drivers.aio`): one connection kept open between reads (the SDongle serves one client at a
time), its wait after connecting (``huawei_solar.modbus.WAIT_ON_CONNECT``, 1.5 s) before the first
request, and its retries with back-off on "device busy" (Modbus exception 6) and on a dropped
connection. Each read is bounded by ``timeout_s`` (plus that wait when it connects); a read that
fails or runs out of time closes the connection, and the next read opens a new one.
"""
from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field

from drivers import DriverContext, aio
from drivers.meters.base import MeterError, MeterSettings, Reading, register_meter
from drivers.modbus import EXCEPTION_CODES, quiet_library_log

# huawei-solar's register names (huawei_solar/register_names.py), read in one request in this order
REGISTER_NAMES = ("meter_status", "power_meter_active_power", "grid_exported_energy", "grid_accumulated_energy")
CONNECT_WAIT_S = 1.5   # huawei_solar.modbus.WAIT_ON_CONNECT (1500 ms): the dongle's wait after connecting


class HuaweiSettings(MeterSettings):
    """``driver: huawei``. ``port``: 502 (the SDongle, and newer inverters' own port) or 6607 (the
    inverter's own port on older firmware). ``unit_id``: the inverter's Modbus address, 1 through
    the SDongle, often 0 on the inverter's own port. ``timeout_s``: bound on one read, s."""

    driver: Literal["huawei"] = "huawei"
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(502, gt=0, lt=65536)
    unit_id: int = Field(1, ge=0, le=247)
    timeout_s: float = Field(5.0, gt=0, le=20)

    @property
    def counter_resolution_wh(self) -> float:
        """10 Wh: registers 37119 and 37121 count hundredths of a kWh (gain 100)."""
        return 10.0


    def describe(self) -> str:
        return f"huawei {self.host}:{self.port} unit {self.unit_id}"


class HuaweiMeter:
    """Reads the power meter behind a Huawei SUN2000. Raises MeterError (naming the link and the
    reason) on any failure."""

    def __init__(self, s: HuaweiSettings, ctx: DriverContext) -> None:
        self.s = s
        self.clock = ctx.clock
        self._client: Any = None   # huawei_solar.AsyncHuaweiSolar, lives on drivers.aio's loop
        for name in ("huawei_solar", "pymodbus", "backoff"):   # the library, its client, its retries
            quiet_library_log(name)

    async def _read(self) -> list[Any]:
        from huawei_solar import AsyncHuaweiSolar
        if self._client is None:
            self._client = await AsyncHuaweiSolar.create(self.s.host, self.s.port, self.s.unit_id,
                                                         timeout=max(1, math.ceil(self.s.timeout_s)))
        return [r.value for r in await self._client.get_multiple(list(REGISTER_NAMES))]

    def read(self) -> Reading:
        from huawei_solar.exceptions import HuaweiSolarException, ReadException
        bound_s = self.s.timeout_s + (CONNECT_WAIT_S if self._client is None else 0.0)
        try:
            status, power_w, export_kwh, import_kwh = aio.run(self._read(), bound_s)
        except TimeoutError:
            self.close()
            raise MeterError(f"{self.s.describe()}: no answer within {bound_s:g} s (not reachable, the port "
                             "refused, a wrong unit_id, busy past its retries, or the SDongle serving "
                             "another client: it takes one at a time)") from None
        except ReadException as e:
            self.close()
            code = e.modbus_exception_code
            why = f"Modbus exception {code} ({EXCEPTION_CODES.get(code, 'unknown')})" if code else str(e)[:160]
            hint = ": wrong unit_id?" if code in (2, 10, 11) else ""
            raise MeterError(f"{self.s.describe()}: the power meter's registers could not be read: "
                             f"{why}{hint}") from None
        except HuaweiSolarException as e:
            self.close()
            raise MeterError(f"{self.s.describe()}: {type(e).__name__} {str(e)[:160]}".rstrip()) from None
        except (OSError, ValueError) as e:
            self.close()
            raise MeterError(f"{self.s.describe()}: {type(e).__name__}: {str(e)[:160]}") from None
        at = self.clock.now()
        if status is None or int(status) != 1:
            raise MeterError(f"{self.s.describe()}: the power meter is offline (meter_status, register 37100, "
                             f"reads {status if status is None else int(status)}; 1 is normal): is the DTSU666 "
                             "wired to the inverter's RS-485?")
        for name, v in zip(REGISTER_NAMES[1:], (power_w, export_kwh, import_kwh)):
            if v is None or not math.isfinite(float(v)):
                raise MeterError(f"{self.s.describe()}: {name} reads 'not available' (0x7FFFFFFF): no power "
                                 "meter value")
        return Reading(at=at, net_w=float(power_w), import_wh_total=float(import_kwh) * 1000.0,
                       export_wh_total=float(export_kwh) * 1000.0)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                aio.run(client.stop(), 2.0)
            except Exception:   # closing a broken connection: nothing more to do
                pass


@register_meter("huawei", HuaweiSettings)
def _open(s: HuaweiSettings, ctx: DriverContext) -> HuaweiMeter:
    return HuaweiMeter(s, ctx)
