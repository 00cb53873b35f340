"""Fronius inverters' Smart Meter through the Fronius Solar API v1, with ``pyfronius`` (0.8.2).

Register map (Fronius, "Fronius Solar API V1", operating instructions 42,0410,2012, EN 013-02062020:
"GetMeterRealtimeData request" and "GetPowerFlowRealtimeData request"; field names as in pyfronius
0.8.2 ``pyfronius/__init__.py``, ``Fronius._device_meter_data``):

* ``GET /solar_api/v1/GetMeterRealtimeData.cgi?Scope=Device&DeviceId=<meter_id>``:
  ``PowerReal_P_Sum`` W, **import-positive** (positive = consumption from the grid, negative =
  feed-in), ``EnergyReal_WAC_Sum_Consumed`` Wh (imported) and ``EnergyReal_WAC_Sum_Produced`` Wh
  (exported), ``Meter_Location_Current`` (0 = at the grid connection, the feed-in point; 1 = in the
  consumption path). The sign is the one the API gives the power flow's ``P_Grid`` ("+ from grid,
  - to grid"), and it is what a recorded Fronius Symo answers with no sun: +5,592.57 W at 20:31
  (Home Assistant's test fixture ``tests/components/fronius/fixtures/symo/GetMeterRealtimeData_Device_0.json``).
  ``net_w = -PowerReal_P_Sum``.
* ``Head.Status.Code``: 0 is OK; any other code (8 LNRequestTimeout, 12 DeviceNotAvailable, ...)
  is a failed read (pyfronius ``BadStatusError``).
* with ``read_production``, ``GET /solar_api/v1/GetPowerFlowRealtimeData.fcgi``: ``Site.P_PV`` W,
  the production (``null`` while the inverter sleeps: production unknown, not zero).

Only a meter at the grid connection (location 0) gives the grid's power; a meter in the consumption
path is refused with that reason. pyfronius runs on :mod:`drivers.aio`'s loop with one aiohttp
session kept between reads (:func:`drivers.aio_http.bounded_session`: total time and body size
bounded, non-2xx refused).
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from drivers import DriverContext, aio
from drivers.http import DeviceHost, HttpError, number
from drivers.meters.base import MeterError, MeterSettings, Reading, import_extra, register_meter


class FroniusSettings(MeterSettings):
    driver: Literal["fronius"] = "fronius"
    host: DeviceHost  # the inverter / Datamanager
    port: int = Field(80, ge=1, le=65535)       # the Solar API's HTTP port
    meter_id: int = Field(0, ge=0, le=65535)    # DeviceId of the Smart Meter (the primary meter is 0)
    timeout_s: float = Field(3.0, gt=0, le=20)  # the whole read (both requests), s
    read_production: bool = False               # also read P_PV (one more request per read)

    @property
    def counter_resolution_wh(self) -> float:
        """1 Wh: ``EnergyReal_WAC_Sum_Consumed`` / ``_Produced`` are whole Wh (Solar API V1)."""
        return 1.0


class FroniusMeter:
    """Reads a Fronius Smart Meter. Raises MeterError with the URL and the reason."""

    def __init__(self, s: FroniusSettings, ctx: DriverContext) -> None:
        self.s = s
        self.clock = ctx.clock
        self.base = f"http://{s.host}:{s.port}"
        self.meter_url = f"{self.base}/solar_api/v1/GetMeterRealtimeData.cgi?Scope=Device&DeviceId={s.meter_id}"
        self.flow_url = f"{self.base}/solar_api/v1/GetPowerFlowRealtimeData.fcgi"
        self._session: Any = None     # aiohttp session, on the drivers' loop
        self._fronius: Any = None

    async def _fetch(self) -> tuple[dict, dict | None]:
        import pyfronius
        from drivers.aio_http import bounded_session
        if self._session is None or self._session.closed:
            self._session = bounded_session(self.s.timeout_s)
            self._fronius = pyfronius.Fronius(self._session, self.base, pyfronius.API_VERSION.V1)
        meter = await self._fronius.current_meter_data(str(self.s.meter_id))
        flow = await self._fronius.current_power_flow() if self.s.read_production else None
        return meter, flow

    def read(self) -> Reading:
        try:
            meter, flow = self._run()
            return self._reading(meter, flow)
        except HttpError as e:
            raise MeterError(f"fronius {self.s.host}: {e}") from None

    def _run(self) -> tuple[dict, dict | None]:
        """The two answers as pyfronius converts them; every failure a MeterError sentence."""
        pyfronius = import_extra("pyfronius", "fronius", "fronius")
        from drivers.aio_http import BodyTooLarge, HttpStatusError
        where = f"fronius {self.s.host}"
        try:
            return aio.run(self._fetch(), self.s.timeout_s)
        except TimeoutError:
            raise MeterError(f"{where}: {self.meter_url}: no complete answer within {self.s.timeout_s:g} s") from None
        except (BodyTooLarge, HttpStatusError) as e:
            raise MeterError(f"{where}: {e}") from None
        except pyfronius.BadStatusError as e:
            st = (e.response or {}).get("status") or {}
            n = st.get("Code")
            reason = st.get("Reason") or pyfronius.HEADER_STATUS_CODES.get(n, "unknown")
            raise MeterError(f"{where}: the Solar API answered Status Code {n} ({reason}): no meter data "
                             f"(device busy, or no Smart Meter with DeviceId {self.s.meter_id})") from None
        except pyfronius.NotSupportedError:
            # pyfronius's name for "the answer is not Solar API JSON" (an HTML page, a truncated body)
            raise MeterError(f"{where}: {self.meter_url}: the answer is not Solar API JSON (an HTML page, "
                             "or a truncated or garbled body)") from None
        except pyfronius.InvalidAnswerError as e:
            raise MeterError(f"{where}: the answer lacks the Solar API's Head or Body ({str(e)[:120]})") from None
        except pyfronius.FroniusConnectionError as e:
            cause = type(e.__context__).__name__
            why = ("the connection dropped before a complete answer" if "Disconnected" in cause or "Payload" in cause
                   else "connection refused or host unreachable" if "Connector" in cause
                   # the session's own deadline, the same as aio.run's: one message whichever fires first
                   else f"no complete answer within {self.s.timeout_s:g} s" if "Timeout" in cause
                   else f"connection failed ({cause})")
            raise MeterError(f"{where}: {self.meter_url}: {why}") from None
        except (ValueError, TypeError, KeyError) as e:  # NaN literals and other malformed JSON pyfronius passed
            raise MeterError(f"{where}: malformed answer ({type(e).__name__}: {str(e)[:120]})") from None

    def _reading(self, meter: dict, flow: dict | None) -> Reading:
        url = self.meter_url
        location = number(meter, "meter_location", "value", where=url)
        if location != 0:
            raise MeterError(f"fronius {self.s.host}: meter {self.s.meter_id} is at Meter_Location_Current "
                             f"{location:g} (1 = the consumption path), not at the grid connection (0): its "
                             "power is not the grid's; set meter_id to the meter at the feed-in point")
        net_w = -number(meter, "power_real", "value", where=url)
        imp = number(meter, "energy_real_consumed", "value", where=url)
        exp = number(meter, "energy_real_produced", "value", where=url)
        prod = None
        if flow is not None:
            pv = (flow.get("power_photovoltaics") or {}).get("value")
            prod = None if pv is None else abs(number(flow, "power_photovoltaics", "value", where=self.flow_url))
        return Reading(at=self.clock.now(), net_w=net_w, production_w=prod,
                       consumption_w=None if prod is None else prod - net_w,
                       import_wh_total=imp, export_wh_total=exp)

    def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            try:
                aio.run(session.close(), 2.0)
            except Exception:  # closing is best effort: the loop may be gone at exit
                pass


@register_meter("fronius", FroniusSettings)
def _open(s: FroniusSettings, ctx: DriverContext) -> FroniusMeter:
    return FroniusMeter(s, ctx)
