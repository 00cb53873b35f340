"""What a simulation reads beside the settings: a recording's columns
(:func:`replay_settings_for`, shared/data/README.md) and the prices of each settlement period
(:class:`Prices`: 2.0TD from the settings, an hourly CSV, or the prices stored in InfluxDB).
Units: W, EUR/kWh, epoch s."""
from __future__ import annotations

import csv
from datetime import datetime, timezone
from pathlib import Path

from drivers.meters.replay import ReplaySettings
from gestor.settings import Settings
from gestor.tariff.calendar import period_2_0td


def replay_settings_for(path: Path) -> ReplaySettings:
    """Column mapping of a recorded CSV from its header: the ``house-*`` format (powerP, powerC,
    powerL1, powerL2) or the ``winter-*`` one (powerP, powerLB import-positive); see
    shared/data/README.md."""
    try:
        with open(path, newline="") as f:
            header = [h.strip() for h in next(csv.reader(f), [])]
    except OSError as e:
        raise ValueError(f"{path}: {e.strerror or e}") from None
    if "powerC" in header:
        sub = [c for c in ("powerL1", "powerL2") if c in header]
        return ReplaySettings(path=path, production_column="powerP", consumption_column="powerC",
                              subtract_columns=sub, add_simulated_loads=False)
    if "powerLB" in header:
        return ReplaySettings(path=path, production_column="powerP", consumption_column=None,
                              net_column="powerLB", net_sign="import_positive", add_simulated_loads=False)
    raise ValueError(f"{path}: unknown format: expected powerP with powerC (house) or powerLB (winter); "
                     f"columns are {', '.join(header)}")


class Prices:
    """Import and surplus prices, EUR/kWh, per settlement period: 2.0TD P1/P2/P3 from settings, or
    an hourly CSV (``time`` ISO 8601 with offset, ``import_eur_per_kwh``, optional
    ``surplus_eur_per_kwh``) such as PVPC."""

    def __init__(self, s: Settings, hourly_csv: Path | None = None) -> None:
        self.tz = s.tz
        self.t = s.tariff
        self.hourly: dict[int, tuple[float, float | None]] = {}
        self.slots: dict[str, list[tuple[float, float, float]]] = {}  # stored prices: kind → (start, end, EUR/kWh)
        self.stored = 0
        if hourly_csv is not None:
            from gestor.tariff.prices import read_csv
            for t, imp, sur in read_csv(hourly_csv, self.tz):
                self.hourly[int(t) // 3600] = (imp, sur)

    @classmethod
    def from_influx(cls, s: Settings, start: float, end: float) -> "Prices":
        """The prices stored in InfluxDB (measurement ``price``, by ``gestor prices fetch`` and
        managing) for epoch [start, end); periods without them keep the 2.0TD prices. Raises
        ValueError when the store is not InfluxDB 1.x or does not answer."""
        from drivers import secret
        if s.store.kind not in ("influxdb1", "auto"):
            raise ValueError(f"--prices influx reads InfluxDB 1.x (store.kind is {s.store.kind})")
        from influxdb import InfluxDBClient
        from influxdb.exceptions import InfluxDBClientError
        c = InfluxDBClient(s.store.host, s.store.port, s.store.username, secret(s.store.password), s.store.database,
                           timeout=s.store.timeout_s)
        a = datetime.fromtimestamp(start, timezone.utc).isoformat()
        b = datetime.fromtimestamp(end, timezone.utc).isoformat()
        try:
            rows = list(c.query(f"SELECT eur_per_kwh, \"kind\" FROM price WHERE time >= '{a}' AND time < '{b}' "
                                f"ORDER BY time", epoch="s").get_points())
        except (OSError, InfluxDBClientError, Exception) as e:  # noqa: BLE001 -- the requests stack's many errors
            raise ValueError(f"--prices influx: InfluxDB at {s.store.host}:{s.store.port}: {e}") from None
        finally:
            c.close()
        from gestor.tariff.prices import slots_of
        out = cls(s)
        for kind in ("import", "surplus"):
            out.slots[kind] = slots_of([(float(r["time"]), float(r["eur_per_kwh"])) for r in rows if r.get("kind") == kind])
        out.stored = len(rows)
        return out

    def _mean(self, kind: str, t0: float, t1: float) -> float | None:
        from gestor.tariff.prices import mean_over
        return mean_over(self.slots.get(kind, []), t0, t1)

    def at(self, start: datetime, end: datetime | None = None) -> tuple[str, float, float]:
        """(2.0TD period, import, surplus EUR/kWh) of the settlement period [start, end): stored
        prices averaged over it when they cover it, else the hourly CSV's, else the fixed ones."""
        p = period_2_0td(start, self.tz)
        if self.slots and end is not None:
            imp = self._mean("import", start.timestamp(), end.timestamp())
            if imp is not None:
                sur = self._mean("surplus", start.timestamp(), end.timestamp())
                return p, imp, sur if sur is not None else self.t.surplus_eur_per_kwh
        hp = self.hourly.get(int(start.timestamp()) // 3600)
        if hp is not None:
            return p, hp[0], hp[1] if hp[1] is not None else self.t.surplus_eur_per_kwh
        return p, self.t.import_eur_per_kwh(p), self.t.surplus_eur_per_kwh

