"""Victron ESS (MultiPlus / Quattro with a GX device: Cerbo GX, Venus GX, CCGX, Ekrano) as a
battery whose power gestor sets, through the GX device's Modbus TCP server (port 502; enable it
under Settings → Services → Modbus TCP).

Sources: Victron Energy, "CCGX Modbus TCP register list" (the xlsx; the same rows as
``attributes.csv`` of victronenergy/dbus_modbustcp), and Victron's "ESS mode 2 and 3" page
(victronenergy.com/live/ess:ess_mode_2_and_3, section "Mode 3"). All registers are holding
registers (read FC03, write FC06/FC16), big-endian, scale 1:

=====  ===========================  =====  ================================  ================================
unit   service                      reg    D-Bus path                        type, unit
=====  ===========================  =====  ================================  ================================
100    com.victronenergy.system     842    /Dc/Battery/Power                 int16, W (+ charging)
100    com.victronenergy.system     843    /Dc/Battery/Soc                   uint16, %
100    com.victronenergy.settings   2902   /Settings/CGwacs/Hub4Mode         uint16: 1 ESS with phase
                                                                             compensation, 2 without, 3
                                                                             external control
vebus  com.victronenergy.vebus      37     /Hub4/L1/AcPowerSetpoint          int16, W (+ taken at AC-in)
vebus  com.victronenergy.vebus      38     /Hub4/DisableCharge               uint16: 0 allowed, 1 disabled
vebus  com.victronenergy.vebus      39     /Hub4/DisableFeedIn               uint16: 0 allowed, 1 disabled
vebus  com.victronenergy.vebus      40/41  /Hub4/L2/AcPowerSetpoint, L3      int16, W
=====  ===========================  =====  ================================  ================================

The vebus unit id is the GX's own (Settings → Services → Modbus TCP → Available services): 227 on a
Cerbo GX's VE.Bus port, 246 on a CCGX, 242 on a Venus GX, 228 on a MultiPlus-II GX.

**Why Mode 3 (the vebus per-phase setpoints) and not the grid setpoint (settings 2700).** The grid
setpoint of Mode 1/2 is the power at the *grid meter*: ESS keeps balancing the whole house around
it, a second control loop on the very quantity gestor regulates, and the battery's own power is
whatever that loop makes it. Register 2700 is also a stored setting (flash; Victron asks for 2716
instead for frequent writes since Venus OS 3.50), and it has no timeout: a gestor that dies leaves
the battery charging from the grid at its last setpoint indefinitely. Mode 3's setpoint is the power the
inverter/charger takes at its AC input: exactly this interface's house-side ``power_w`` (+ it
takes, the battery charges; - it supplies), and the Multi drops it by itself when it is not refreshed.
(Loads on the Multi's AC-out are behind that point: from the grid meter's side they are part of the
device.) While a setpoint is held, the direction not asked for is disabled (38/39), so a
charge command never feeds in and a discharge command never charges.

**Idle** writes 0 W to the setpoints and puts Hub4Mode back to ``idle_hub4_mode`` (1 by default: ESS's
own self-consumption; the GX writes the setpoints itself again). A command while Hub4Mode is not
3 writes 3 first. Hub4Mode is read before each command and each idle, so it is written only on
the way in and out (it is a stored setting), and a GX whose mode someone else changed is seen.

**Device-side timeout**: in Mode 3 the Multi drops a setpoint that is not written again within
about 60 s (Victron's page; users report sooner on some firmware, ~10 s), back to 0 W at its AC input.
``hold_s`` (60) says so; it is fixed by the firmware, so :meth:`VictronEss.set_power_w`'s ``hold_s``
argument changes nothing, and gestor must refresh well within it (each cycle). The Multi stays in
external control after that drop: ESS self-consumption comes back only with :meth:`VictronEss.idle`
(managing's exit, ``stop-loads``).
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from drivers import DriverContext
from drivers.modbus import ModbusClient, ModbusIOError, ModbusLink, decode, encode
from drivers.setpoints._battery import BatteryLimits, checked_soc_pct
from drivers.setpoints.base import SetpointError, SetpointSettings, SetpointState, register_setpoint

REG_BATTERY_POWER, REG_SOC = 842, 843        # system, unit system_unit_id
REG_HUB4_MODE = 2902                         # settings, unit system_unit_id
REG_SETPOINT_L1 = 37                         # vebus: 37 L1, 38 disable charge, 39 disable feed-in, 40 L2, 41 L3
HUB4_EXTERNAL = 3
HOLD_S = 60.0                                # Mode 3 setpoints revert after this without a write (Victron)
REQUESTS = 4                                 # Modbus requests in the longest command (set_power_w)


class VictronEssSettings(BatteryLimits, SetpointSettings):
    driver: Literal["victron_ess"] = "victron_ess"
    host: str = Field(min_length=1)                    # the GX device
    port: int = Field(502, gt=0, lt=65536)
    system_unit_id: int = Field(100, ge=0, le=247)     # com.victronenergy.system and .settings
    vebus_unit_id: int = Field(227, ge=0, le=247)      # com.victronenergy.vebus (see the GX's list)
    phases: Literal[1, 3] = 1                          # 3: the setpoint is split over L1..L3

    def device_key(self) -> tuple:
        """The GX device (host and port): one GX runs one ESS, whatever unit ids a section names."""
        return ("victron_ess", self.host.strip().lower(), self.port)

    def device_label(self) -> str:
        return f"victron_ess at {self.host}:{self.port} unit {self.system_unit_id}"
    idle_hub4_mode: Literal[1, 2, 3] = 1               # Hub4Mode idle returns to (3: stays in external control at 0 W)
    max_charge_w: float = Field(3000.0, ge=0, le=30000)
    max_discharge_w: float = Field(3000.0, ge=0, le=30000)


@register_setpoint("victron_ess", VictronEssSettings)
class VictronEss:
    """A Victron ESS in Mode 3. ``hold_s``: the device-side timeout, s (fixed by the firmware).

    Raises SetpointError (every method): the GX does not answer within ``timeout_s`` (each of
    the at most 4 requests of a command has a quarter of it), answers a Modbus exception (wrong
    unit id: "gateway path unavailable"), or reads a state of charge that is not 0..100 %.
    """

    hold_s: float = HOLD_S

    def __init__(self, s: VictronEssSettings, ctx: DriverContext, name: str) -> None:
        self.s = s
        self.name = name
        self.client = ModbusClient(ModbusLink(transport="tcp", host=s.host, port=s.port, device_id=s.system_unit_id,
                                              timeout_s=s.timeout_s / REQUESTS, retries=0))

    def _fail(self, e: Exception) -> SetpointError:
        return SetpointError(f"victron_ess ({self.name}): {e}")

    def _read(self, unit: int, address: int, count: int) -> list[int]:
        return self.client.read_registers("holding", address, count, device_id=unit)

    def _soc_pct(self) -> float:
        raw = self._read(self.s.system_unit_id, REG_SOC, 1)
        return checked_soc_pct(decode(raw, "uint16"), f"system register {REG_SOC}")

    def _hub4_mode(self) -> int:
        return int(decode(self._read(self.s.system_unit_id, REG_HUB4_MODE, 1), "uint16"))

    def _write_setpoints(self, per_phase_w: int) -> None:
        disable_charge, disable_feed_in = int(per_phase_w < 0), int(per_phase_w > 0)
        words = encode(per_phase_w, "int16") + [disable_charge, disable_feed_in]
        if self.s.phases == 3:
            words += encode(per_phase_w, "int16") * 2
        self.client.write_registers(REG_SETPOINT_L1, words, device_id=self.s.vebus_unit_id)

    def set_power_w(self, power_w: float, hold_s: float | None = None) -> float:
        """Set the Multi to take ``power_w`` W at its AC input (+ charge, - discharge), clamped
        to the power limits and the state-of-charge limits; split evenly over the phases, whole W
        each (toward 0). Returns the setpoint written, W. ``hold_s`` is ignored: see :attr:`hold_s`."""
        try:
            target = self.s.clamp_w(power_w, self._soc_pct())
            per_phase = int(target / self.s.phases)  # whole W toward 0: never past a limit
            if self._hub4_mode() != HUB4_EXTERNAL:
                self.client.write_registers(REG_HUB4_MODE, [HUB4_EXTERNAL], device_id=self.s.system_unit_id)
            self._write_setpoints(per_phase)
        except (ModbusIOError, SetpointError) as e:
            raise self._fail(e) from None
        return float(per_phase * self.s.phases)

    def idle(self) -> None:
        """0 W, then Hub4Mode back to ``idle_hub4_mode`` (ESS's own self-consumption); nothing
        is written when the GX is not in external control."""
        try:
            if self._hub4_mode() != HUB4_EXTERNAL:
                return
            self._write_setpoints(0)
            if self.s.idle_hub4_mode != HUB4_EXTERNAL:
                self.client.write_registers(REG_HUB4_MODE, [self.s.idle_hub4_mode], device_id=self.s.system_unit_id)
        except ModbusIOError as e:
            raise self._fail(e) from None

    def state(self) -> SetpointState:
        """Battery power and state of charge (system), and the setpoint the vebus holds: the
        sum of the phases in external control, 0 otherwise (ESS's own)."""
        try:
            power_raw, soc_raw = self._read(self.s.system_unit_id, REG_BATTERY_POWER, 2)
            soc = checked_soc_pct(decode([soc_raw], "uint16"), f"system register {REG_SOC}")
            setpoint = 0.0
            if self._hub4_mode() == HUB4_EXTERNAL:
                words = self._read(self.s.vebus_unit_id, REG_SETPOINT_L1, 5 if self.s.phases == 3 else 1)
                setpoint = sum(decode([words[i]], "int16") for i in ((0, 3, 4) if self.s.phases == 3 else (0,)))
        except (ModbusIOError, SetpointError) as e:
            raise self._fail(e) from None
        lo, hi = self.s.range_w(soc)
        return SetpointState(setpoint_w=setpoint, power_w=decode([power_raw], "int16"), min_w=lo, max_w=hi,
                             soc_pct=soc)

    def close(self) -> None:
        self.client.close()
