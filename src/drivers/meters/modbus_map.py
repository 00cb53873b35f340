"""Any Modbus meter described in YAML (a "register map", one device per file, as evcc's templates):
where each quantity is, its data type, word order, scale and sign.

A map file (examples in ``config/meters/``)::

    name: Carlo Gavazzi EM24
    source: "EM24DIN communication protocol, v3, table 'Instantaneous variables'"
    max_block_registers: 80          # read neighbouring registers in one request, up to this many
    counter_resolution_wh: 100       # the counters' smallest step, Wh (default: an integer register's scale)
    registers:
      net_w:           {address: 0x0028, function: input, type: int32, word_order: little, scale: 0.1, sign: -1}
      import_wh_total: {address: 0x0034, function: input, type: int32, word_order: little, scale: 100}
      export_wh_total: {address: 0x004E, function: input, type: int32, word_order: little, scale: 100}

value = raw × ``scale`` × ``sign``, in W for powers and Wh for counters. ``net_w`` is required and
export-positive (DESIGN.md section 2): a meter that reports import-positive power has ``sign: -1``.
``production_w``, ``consumption_w``, ``import_wh_total``, ``export_wh_total`` are optional.
Addresses are the 0-based protocol addresses (a datasheet's "30041"/"40041" is address 40).

Settings: the link (see :class:`drivers.modbus.ModbusLink`) plus ``map:`` (a file, relative to the
settings file) or ``registers:`` inline. The map is validated with the settings, before anything
starts; an error names the map file and the key. A map file is read as settings files are
(:func:`gestor.settings.read_yaml`): a regular file under MAP_MAX_BYTES, no duplicate keys, no
aliases; numbers are numbers (not ``true``, not ``"5"``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, model_validator

from drivers import DriverContext
from drivers.meters.base import COUNTER_SLACK_WH, MeterError, MeterSettings, Reading, register_meter
from drivers.modbus import WIDTH, DataType, ModbusClient, ModbusIOError, ModbusLink, decode

QUANTITIES = ("net_w", "production_w", "consumption_w", "import_wh_total", "export_wh_total")
MAP_MAX_BYTES = 64 * 1024  # a register map is a few lines


class Register(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    address: int = Field(ge=0, le=65535)
    function: Literal["holding", "input"] = "holding"
    type: DataType = "float32"
    word_order: Literal["big", "little"] = "big"  # little = low word first
    scale: float = Field(1.0, gt=0, le=1e6)  # raw x scale = W or Wh (x); the sign goes in sign
    sign: Literal[1, -1] = 1


class RegisterMap(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str = "modbus meter"
    source: str | None = None                      # where the addresses come from
    max_block_registers: int = Field(80, ge=1, le=125)
    # the counters' smallest step, Wh; default: one count of an integer counter register (its
    # scale), else COUNTER_SLACK_WH (100 Wh: a float's step is not known from the map)
    counter_resolution_wh: float | None = Field(None, gt=0, le=1000)
    registers: dict[Literal["net_w", "production_w", "consumption_w", "import_wh_total", "export_wh_total"], Register]

    def resolution_wh(self) -> float:
        """The counters' resolution, Wh (see ``counter_resolution_wh``)."""
        if self.counter_resolution_wh is not None:
            return self.counter_resolution_wh
        counters = [r for q, r in self.registers.items() if q in ("import_wh_total", "export_wh_total")]
        if counters and all(not r.type.startswith("float") for r in counters):
            return max(r.scale for r in counters)
        return COUNTER_SLACK_WH

    @model_validator(mode="after")
    def _net(self) -> "RegisterMap":
        if "net_w" not in self.registers:
            raise ValueError("registers: net_w is required")
        return self


def _format(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())


class ModbusMapSettings(MeterSettings, ModbusLink):
    driver: Literal["modbus_map"] = "modbus_map"
    map: Path | None = None                  # register map file; relative to the settings file
    registers: dict[str, Any] | None = None  # or the map's registers inline
    max_block_registers: int | None = Field(None, ge=1, le=125)
    resolved: RegisterMap | None = Field(None, exclude=True)

    @property
    def counter_resolution_wh(self) -> float:
        """The map's (:meth:`RegisterMap.resolution_wh`): 100 Wh for the EM24's, 10 Wh for the
        DTSU666's."""
        return self.resolved.resolution_wh() if self.resolved is not None else COUNTER_SLACK_WH

    @model_validator(mode="after")
    def _load_map(self, info: ValidationInfo) -> "ModbusMapSettings":
        if (self.map is None) == (self.registers is None):
            raise ValueError("set either map (a register map file) or registers (inline)")
        from gestor.settings import SettingsError, numbers_not_bools, read_yaml  # (settings imports drivers)
        if self.map is not None:
            base = Path((info.context or {}).get("config_dir", "."))
            path = self.map if self.map.is_absolute() else base / self.map
            where = f"map {path}"
            try:
                raw = read_yaml(path, where, MAP_MAX_BYTES)
            except SettingsError as e:
                raise ValueError(e.errors[0]) from None
        else:
            raw, where = {"registers": self.registers}, "inline map"
        if self.max_block_registers is not None and isinstance(raw, dict):
            raw = {**raw, "max_block_registers": self.max_block_registers}
        if isinstance(raw, dict):
            bad = numbers_not_bools(RegisterMap, raw)
            if bad:
                raise ValueError(f"{where}: " + "; ".join(f"{k}: {m}" for k, m in bad))
        try:
            self.resolved = RegisterMap.model_validate(raw)
        except ValidationError as e:
            raise ValueError(f"{where}: {_format(e)}") from None
        return self


def plan_blocks(regs: dict[str, Register], max_block: int) -> list[tuple[str, int, int, list[str]]]:
    """Group registers into as few reads as possible: same function, sorted by address, a block
    spanning at most ``max_block`` registers. Returns (function, address, count, quantities)."""
    blocks: list[tuple[str, int, int, list[str]]] = []
    for fn in ("input", "holding"):
        items = sorted(((r.address, q) for q, r in regs.items() if r.function == fn))
        cur: list[Any] | None = None
        for addr, q in items:
            end = addr + WIDTH[regs[q].type]
            if cur is not None and end - cur[1] <= max_block:
                cur[2] = max(cur[2], end - cur[1])
                cur[3].append(q)
            else:
                if cur is not None:
                    blocks.append(tuple(cur))  # type: ignore[arg-type]
                cur = [fn, addr, end - addr, [q]]
        if cur is not None:
            blocks.append(tuple(cur))  # type: ignore[arg-type]
    return blocks


class ModbusMapMeter:
    """Reads the quantities of a register map. Raises MeterError on any failure."""

    def __init__(self, s: ModbusMapSettings, ctx: DriverContext) -> None:
        assert s.resolved is not None
        self.map = s.resolved
        self.clock = ctx.clock
        self.client = ModbusClient(s)
        self.blocks = plan_blocks(self.map.registers, self.map.max_block_registers)

    def read(self) -> Reading:
        values: dict[str, float] = {}
        try:
            for fn, addr, count, qs in self.blocks:
                regs = self.client.read_registers(fn, addr, count)  # type: ignore[arg-type]
                for q in qs:
                    r = self.map.registers[q]  # type: ignore[index]
                    off = r.address - addr
                    raw = decode(regs[off: off + WIDTH[r.type]], r.type, r.word_order)
                    values[q] = raw * r.scale * r.sign
        except ModbusIOError as e:
            raise MeterError(str(e)) from None
        for q in ("import_wh_total", "export_wh_total"):
            if q in values and values[q] < 0:
                raise MeterError(f"{q} is negative ({values[q]:.0f} Wh): wrong type, word order or sign in the map?")
        return Reading(at=self.clock.now(), **values)

    def close(self) -> None:
        self.client.close()


@register_meter("modbus_map", ModbusMapSettings)
def _open(s: ModbusMapSettings, ctx: DriverContext) -> ModbusMapMeter:
    return ModbusMapMeter(s, ctx)
