"""The monitoring daemon: reads the meter every ``monitoring.interval_s``, stores every reading in
InfluxDB (measurement ``meter``) and publishes it to the live state file for managing.

A failed read stores nothing and publishes nothing (the live state goes stale, so managing switches
the loads off); it never becomes a zero reading.
"""
from __future__ import annotations

import logging

from drivers.meters import Meter, MeterError, Reading
from drivers.store.influx import Store, point
from gestor.clock import Clock
from gestor.daemon import context, open_meter, run_loop
from gestor.livestate import LiveStateWriter
from gestor.settings import Settings

log = logging.getLogger("gestor.monitoring")
REPEAT_LOG_EVERY = 60  # failed reads between two log lines during a long outage


class Monitoring:
    def __init__(self, settings: Settings, clock: Clock, store: Store, meter: Meter | None = None) -> None:
        self.s = settings
        self.clock = clock
        self.store = store
        self.meter = meter or open_meter(settings, context(settings, clock))
        self.live = LiveStateWriter(settings.paths.run_dir)
        self.tags = {"site": settings.site}
        self.last_at = None
        self.reads = 0
        self.failures = 0
        self._failing = 0

    def cycle(self) -> Reading | None:
        """One read. Returns the new reading, or None (failed read, or no new sample)."""
        try:
            r = self.meter.read()
        except MeterError as e:
            self.failures += 1
            self._failing += 1
            if self._failing == 1 or self._failing % REPEAT_LOG_EVERY == 0:
                log.warning("meter read failed (%d in a row): %s", self._failing, e)
            self.live.error(self.clock.now(), str(e))
            return None
        if self._failing:
            log.info("meter answering again after %d failed reads", self._failing)
            self._failing = 0
        if self.last_at is not None and r.at <= self.last_at:
            return None
        self.last_at = r.at
        self.reads += 1
        self.store.write([point("meter", self.tags, {
            "net_w": r.net_w, "production_w": r.production_w, "consumption_w": r.consumption_w,
            "import_wh_total": r.import_wh_total, "export_wh_total": r.export_wh_total}, r.at)])
        self.live.publish(r)
        return r

    def close(self) -> None:
        self.meter.close()


def run(settings: Settings, clock: Clock, store: Store) -> None:
    m = Monitoring(settings, clock, store)
    log.info("monitoring: meter %s every %.1f s", settings.meter.driver, settings.monitoring.interval_s)
    try:
        run_loop(m.cycle, settings.monitoring.interval_s, clock)
    finally:
        m.close()
        store.close()
