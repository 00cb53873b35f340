"""The monitoring daemon: reads the meter every ``monitoring.interval_s``, stores every reading in
InfluxDB (measurement ``meter``) and publishes it to the live state file for managing.

A failed read stores nothing and publishes nothing (the live state goes stale, so managing switches
the loads off); it never becomes a zero reading. A frozen meter (readings identical for longer than
``meter.frozen_after_s``, or counters standing still that long while the power flows:
:class:`drivers.meters.base.CheckedMeter`) is a failed read, logged once as an error, and the live
state's readings are taken back (none vouches for the meter any more), so managing finds no fresh
reading at its next cycle: loads off, devices idle, by the same rule as a silent meter.

A wall-clock step back (NTP correcting a Pi without an RTC) is logged and readings go on being
stored with the new time; the live state is restarted so managing never mixes the two clocks. A
full or read-only disk is logged once and does not stop the readings (InfluxDB still gets them).
"""
from __future__ import annotations

import json
import logging

from drivers.meters import Meter, MeterError, Reading
from drivers.meters.base import CheckedMeter, MeterFrozen
from drivers.store.influx import Store, point
from gestor.clock import Clock
from gestor.runtime.daemon import context, open_meter, run_loop
from gestor.files import WriteGuard, atomic_write_text
from gestor.runtime.livestate import LiveStateWriter
from gestor.settings import Settings
from gestor.runtime.statefiles import MonitoringFile, read_state

log = logging.getLogger("gestor.monitoring")
REPEAT_LOG_EVERY = 60  # failed reads between two log lines during a long outage
STATE_FILE = "monitoring.json"
PERSIST_EVERY_S = 60.0


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
        self._frozen_since = None  # when the values of a frozen meter were first read (logged once)
        self.state_path = settings.paths.state_dir / STATE_FILE
        self._persisted_at = None
        self._last: Reading | None = None
        self._last_mono: float | None = None
        self._file_op = WriteGuard(log, "going on without it (readings still go to the store)")
        self.mqtt = None  # gestor.runtime.mqtt.Link once start_mqtt ran with mqtt.enabled
        self._mqtt_mono: float | None = None
        self._restore()

    def _restore(self) -> None:
        """Resume the last reading (no duplicate after a restart) and the counters' baseline
        (a counter that went backwards while we were down is still caught)."""
        f = read_state(self.state_path, MonitoringFile)
        if f is None:
            return
        try:
            last = f.last.reading()
        except Exception:  # noqa: BLE001 -- an implausible saved reading is no baseline
            return
        if last.at > self.clock.now():
            log.warning("last stored reading (%s) is in the future: the clock went back? not resumed", last.at)
            return
        self.last_at = last.at
        self._last = last
        if isinstance(self.meter, CheckedMeter):
            self.meter.baseline(last)

    def persist(self) -> None:
        if self._last is not None:
            self._persisted_at = self.clock.now()
            self._file_op(str(self.state_path), lambda: atomic_write_text(
                self.state_path, json.dumps({"last": self._last.to_dict()})))

    def cycle(self) -> Reading | None:
        """One read. Returns the new reading, or None (failed read, or no new sample)."""
        try:
            r = self.meter.read()
        except MeterError as e:
            self.failures += 1
            self._failing += 1
            if isinstance(e, MeterFrozen):
                self.live.clear()
                if self._frozen_since != e.since:
                    self._frozen_since = e.since
                    log.error("METER FROZEN: %s (since %s). The live readings are taken back: managing sees a stale "
                              "meter, loads off and devices idle, until they change", e, e.since.isoformat())
            elif self._failing == 1 or self._failing % REPEAT_LOG_EVERY == 0:
                log.warning("meter read failed (%d in a row): %s", self._failing, e)
            msg = str(e)
            self._file_op(str(self.live.path), lambda: self.live.error(self.clock.now(), msg))
            return None
        if self._failing:
            if self._frozen_since is not None:
                log.warning("meter readings move again (frozen since %s)", self._frozen_since.isoformat())
                self._frozen_since = None
            log.info("meter answering again after %d failed reads", self._failing)
            self._failing = 0
        mono = self.clock.monotonic()
        if self.last_at is not None and r.at == self.last_at:
            return None  # the same sample again (a replay slower than the cycle)
        if self.last_at is not None and r.at < self.last_at:
            if self._last_mono is not None and mono > self._last_mono:
                log.warning("wall clock stepped back by %.0f s (NTP?): readings are stored with the new time; "
                            "managing's live state restarts",
                            (self.last_at - r.at).total_seconds() + mono - self._last_mono)
                self.live.clear()
            else:
                return None  # restored from before a restart: not newer
        self.last_at, self._last_mono = r.at, mono
        self.reads += 1
        self.store.write([point("meter", self.tags, {
            "net_w": r.net_w, "production_w": r.production_w, "consumption_w": r.consumption_w,
            "import_wh_total": r.import_wh_total, "export_wh_total": r.export_wh_total}, r.at)])
        self._file_op(str(self.live.path), lambda: self.live.publish(r, mono))
        self._last = r
        # every publish_s; half a cycle early counts (a strict wait skips every other cycle)
        if self.mqtt is not None and (self._mqtt_mono is None or
                                      mono - self._mqtt_mono >= self.s.mqtt.publish_s - 0.5 * self.s.monitoring.interval_s):
            self._mqtt_mono = mono
            self.mqtt.publish(f"{self.mqtt.prefix}/reading", {
                "at": r.at.isoformat(), **{k: None if v is None else round(v, 1) for k, v in (
                    ("net_w", r.net_w), ("production_w", r.production_w), ("consumption_w", r.consumption_w))}})
        if self._persisted_at is None or abs((r.at - self._persisted_at).total_seconds()) >= PERSIST_EVERY_S:
            self.persist()  # once a minute: the SD card is not written every cycle
        return r

    def start_mqtt(self) -> None:
        """Publish the readings over MQTT (``mqtt.enabled``); a broker away never stops monitoring."""
        if self.s.mqtt.enabled:
            from gestor.runtime.mqtt import Link
            self.mqtt = Link(self.s.mqtt, self.s.site, "monitoring")  # assigned before it connects
            self.mqtt.start()

    def close(self) -> None:
        self.persist()
        self.meter.close()
        if self.mqtt is not None:
            self.mqtt.close()
            self.mqtt = None


def run(settings: Settings, clock: Clock, store: Store) -> None:
    m = Monitoring(settings, clock, store)
    m.start_mqtt()
    log.info("monitoring: meter %s every %.1f s", settings.meter.driver, settings.monitoring.interval_s)
    try:
        run_loop(m.cycle, settings.monitoring.interval_s, clock)
    finally:
        m.close()
        store.close()
