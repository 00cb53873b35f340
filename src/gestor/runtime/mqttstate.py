"""managing's side of MQTT and Home Assistant: discovery, the state, the commands.

:class:`ManagingMqtt` holds managing's :class:`gestor.runtime.mqtt.Link` (paho's thread), announces
Home Assistant's discovery configs (retained) after every (re)connection and empties those of
removed loads, publishes the state (retained JSON on ``P/state``: W, Wh, EUR, EUR/kWh, each load's
state, reason, switches today, energy and mode) every ``mqtt.publish_s`` and at once when a load,
the latch, an override or the settled counters change, and takes the commands (a load's mode,
written as an override; a setpoint device's mode, minimum state of charge and target, written to
``device-controls.json``: :mod:`gestor.runtime.devicecontrols`; the emergency stop). Its failure mode: a broker away or refusing us is logged by the link, the
state is dropped meanwhile (the next one replaces it) and control goes on; a bad command is
logged and ignored. Nothing here raises into the cycle.
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from gestor.core.guards import Override
from gestor.core.policies import Snapshot, projected_wh
from gestor.core.reasons import as_data, say
from gestor.i18n.reasons import render_text
from gestor.runtime.setpoints import is_battery

if TYPE_CHECKING:
    from gestor.clock import Clock
    from gestor.core.control import Core
    from gestor.runtime.books import Books
    from gestor.runtime.devicebooks import DeviceMeters
    from gestor.runtime.relays import LoadRuntime
    from gestor.runtime.setpoints import Setpoints
    from gestor.settings import Settings

log = logging.getLogger("gestor.managing")

# Home Assistant's longest state (homeassistant.const MAX_LENGTH_STATE_STATE, 255 characters): a
# longer one is refused ("Invalid state with length ...", the sensor falls back to unknown)
HA_STATE_MAX_CHARS = 255


def _round(v: float | None, digits: int) -> float | None:
    return None if v is None else round(float(v), digits)


class ManagingMqtt:
    """MQTT for managing's ``loads`` (of ``core``; counted in ``books``), with the prices of
    ``prices_of(t0, t1)``; ``emergency_stop(origin, reason)`` for ``P/stop/set``. ``state``: the
    last state (None before the first), ``ready``: our stale discovery configs are emptied since
    the connection (the state may go)."""

    def __init__(self, settings: Settings, clock: Clock, core: Core, loads: Sequence[LoadRuntime], books: Books,
                 prices_of: Callable[[float, float], tuple[float, float, str]],
                 emergency_stop: Callable[[str, str], None], setpoints: Setpoints | None = None,
                 device_meters: DeviceMeters | None = None) -> None:
        from gestor.runtime.mqtt import Link, node_id, prefix
        self.s, self.clock, self.core, self.loads, self.books = settings, clock, core, loads, books
        self.prices_of, self.emergency_stop, self.setpoints = prices_of, emergency_stop, setpoints
        self.device_meters = device_meters
        self._at: float | None = None    # monotonic s of the last state published
        self._key: tuple | None = None   # loads' states and the latch then: a change publishes at once
        self.state: dict | None = None
        self.ready = False               # our retained discovery configs read back since the connection
        self._sync = 0                   # the token of that read-back (P/managing/sync)
        self._announced: dict[str, dict] = {}
        self._announced_meter: tuple[str, ...] = ()
        p = prefix(settings.mqtt, settings.site)
        subs = [f"{p}/load/+/mode/set", f"{p}/stop/set", f"{p}/setpoint/+/+/set"]
        if settings.mqtt.discovery:  # our node's retained configs: to empty those of removed loads;
            # our sync token after them; Home Assistant's birth message
            subs += [f"{settings.mqtt.discovery_prefix}/+/{node_id(settings.site)}/+/config", f"{p}/managing/sync",
                     f"{settings.mqtt.discovery_prefix}/status"]
        # assigned before it connects: paho's thread calls _connected, which publishes through it
        self.link = Link(settings.mqtt, settings.site, "managing", subs, self._command, self._connected)

    def start(self) -> None:
        """Connect (in paho's thread; reconnecting with backoff)."""
        self.link.start()

    def status(self) -> dict:
        """The connection as managing publishes it (``gestor status``)."""
        return {"connected": self.link.connected, "error": self.link.error,
                "broker": f"{self.s.mqtt.host}:{self.s.mqtt.port}"}

    def _reason(self, text: str, gender: str = "m") -> dict:
        """A reason as Home Assistant gets it: ``reason``, the English text managing logged (as
        before: automations may match it), ``reason_text``, the sentence in ``mqtt.language``
        (:func:`gestor.i18n.reasons.render_text`; what the reason sensor shows) and
        ``reason_data``, its code and parameters (:func:`gestor.core.reasons.as_data`; None for
        a text of no code)."""
        shown = render_text(text, self.s.mqtt.language, gender)
        if len(shown) > HA_STATE_MAX_CHARS:  # Home Assistant refuses the whole state ("unknown")
            shown = shown[:HA_STATE_MAX_CHARS - 1] + "…"
        return {"reason": text, "reason_text": shown, "reason_data": as_data(text)}

    def close(self) -> None:
        """The loads as they are left published, then disconnected."""
        if self.state is not None:
            for ld in self.loads:
                self.state["loads"][ld.name].update(on=ld.on, **self._reason(ld.reason, ld.cfg.display_gender))
            self.link.publish(f"{self.link.prefix}/state", self.state)
        self.link.close()

    def _connected(self) -> None:
        """After every (re)connection (paho's thread): discovery; then a token to ourselves on
        ``P/managing/sync``. The broker sends it back after the retained configs of our node
        (subscribed before), so when it arrives every stale config is emptied, and only then is
        the state published: Home Assistant never gets a state without a load whose entities it
        still has. Without discovery the state goes at once."""
        self.ready = not self.s.mqtt.discovery
        if self.s.mqtt.discovery:
            self._announce()
            self._sync += 1
            self.link.publish(f"{self.link.prefix}/managing/sync", str(self._sync), retain=False)
        elif self.state is not None:
            self.link.publish(f"{self.link.prefix}/state", self.state)

    def _configuration_url(self) -> str | None:
        """The web page's URL, for Home Assistant's device page (the host's name when the page
        listens on every address)."""
        import socket

        from gestor.settings import listen_address
        try:
            host, port = listen_address(self.s.web.listen)
        except ValueError:
            return None
        if host in ("0.0.0.0", "::", ""):
            host = socket.gethostname() or None
            if host is None:
                return None
        if ":" in host:
            host = f"[{host}]"
        scheme = "https" if self.s.web.tls_cert_file else "http"
        return f"{scheme}://{host}:{port}/"

    def _announce(self) -> None:
        """Publish every discovery config (retained); what is announced is what stays."""
        from gestor import __version__
        from gestor.runtime.mqtt import discovery
        meter = self.books.meter_has()
        expire = int(3 * max(self.s.mqtt.publish_s, self.s.monitoring.interval_s)) + 30
        devices = [(d.name, is_battery(d.cfg)) for d in self.setpoints.devices] if self.setpoints else []
        shown = {ld.name: ld.display_name for ld in self.s.loads}
        self._announced = discovery(self.s.mqtt, self.s.site, [(ld.name, shown.get(ld.name)) for ld in self.loads], meter,
                                    __version__, self._configuration_url(), expire, devices)
        self._announced_meter = meter
        for topic, cfg in self._announced.items():
            self.link.publish(topic, cfg)

    def _command(self, topic: str, payload: str) -> None:
        """A message on a subscribed topic (paho's thread): a load's mode, the stop, one of our
        node's retained discovery configs, our own sync token, or Home Assistant's birth."""
        from gestor.runtime.mqtt import MODES
        p = self.link.prefix
        if topic.endswith("/config"):
            if payload and topic not in self._announced:
                log.info("MQTT: %s is no longer announced (load removed?): emptied", topic)
                self.link.publish(topic, "")
            return
        if topic == f"{p}/managing/sync":
            if payload == str(self._sync) and not self.ready:
                self.ready = True   # the stale configs are emptied: the state may go
                if self.state is not None:
                    self.link.publish(f"{p}/state", self.state)
            return
        if topic == f"{self.s.mqtt.discovery_prefix}/status":
            if payload == "online" and self.ready:  # Home Assistant (re)started: announce again
                log.info("MQTT: Home Assistant is online: discovery and state published again")
                self._announce()
                if self.state is not None:
                    self.link.publish(f"{p}/state", self.state)
            return
        if topic == f"{p}/stop/set":
            if payload != "STOP":
                log.warning("MQTT %s: payload %r ignored (expected STOP)", topic, payload[:40])
                return
            self.emergency_stop("MQTT", say("stop_mqtt"))
            return
        if topic.startswith(f"{p}/setpoint/"):
            self._device_command(topic, payload)
            return
        name = topic[len(p) + len("/load/"):-len("/mode/set")] if topic.startswith(f"{p}/load/") else ""
        if name not in {ld.name for ld in self.loads}:
            log.warning("MQTT %s: no load named %r: ignored", topic, name)
            return
        if payload not in MODES:
            log.warning("MQTT %s: payload %r ignored (expected auto, on or off)", topic, payload[:40])
            return
        from gestor.runtime.overrides import set_override
        try:
            ov = set_override(self.s.paths.state_dir, name, payload, self.clock.now(), None, by="mqtt")
        except OSError as e:
            log.error("MQTT: override of %s not written: %s", name, e)
            return
        log.info("override from MQTT: %s %s (from managing's next cycle; the latch and a stale meter still win)",
                 name, "auto" if ov is None else ov.describe(self.s.tz))

    def _device_command(self, topic: str, payload: str) -> None:
        """``P/setpoint/NAME/KEY/set`` (paho's thread): a device's mode, min SoC or target,
        checked (:func:`gestor.runtime.devicecontrols.check_control`; a bad one is logged and
        ignored) and written to ``device-controls.json``, obeyed from managing's next cycle."""
        from gestor.runtime.devicecontrols import check_control, set_control
        rest = topic[len(self.link.prefix) + len("/setpoint/"):-len("/set")].rsplit("/", 1)
        devices = {d.name: is_battery(d.cfg) for d in self.setpoints.devices} if self.setpoints else {}
        if len(rest) != 2 or rest[0] not in devices:
            log.warning("MQTT %s: no device named %r: ignored (devices: %s)", topic, rest[0][:64],
                        ", ".join(devices) or "none")
            return
        name, key = rest
        try:
            value = check_control(name, devices[name], key, payload)
            ctl = set_control(self.s.paths.state_dir, name, key, value, self.clock.now(), by="mqtt")
        except ValueError as e:
            log.warning("MQTT %s: %s: ignored", topic, e)
            return
        except OSError as e:
            log.error("MQTT: control %s of device %s not written: %s", key, name, e)
            return
        log.info("device control from MQTT: %s %s = %s (%s; from managing's next cycle; the latch and a stale "
                 "meter still idle it)", name, key, value, ctl.describe())

    def publish(self, now: datetime, snap: Snapshot, latched: bool, reading_age_s: float | None,
                overrides: Mapping[str, Override], devices_w: Mapping[str, float | None] | None = None) -> None:
        """The state, retained: every mqtt.publish_s (half a cycle early counts: with equal
        intervals a strict wait would skip every other cycle), at once when a load, the latch or an
        override changes. (Called after managing's published state, which rolls the books'
        switches_today over at midnight.) ``devices_w``: each setpoint device's power as it read
        back, W (+ taken; None unknown): taken out of the house's consumption."""
        self.books.meter_seen(self.core.balance.last)
        if self.s.mqtt.discovery and self.ready and self.books.meter_has() != self._announced_meter:
            self._announce()
        # a step of the settled counters goes at once too (it belongs to the period it steps in)
        key = (tuple(ld.on for ld in self.loads), latched, tuple(sorted(overrides)), tuple(self.books.totals.values()))
        mono = self.clock.monotonic()
        due = self.s.mqtt.publish_s - 0.5 * self.s.managing.interval_s
        if key == self._key and self._at is not None and mono - self._at < due:
            return
        self._key, self._at = key, mono
        from gestor.tariff.calendar import period_2_0td
        imp, sur, _ = self.prices_of(snap.period_start_s, snap.period_end_s)
        verdicts = {w.load: w for w in self.core.verdicts or ()}
        b = self.books

        def reason(ld: LoadRuntime) -> str:
            v = verdicts.get(ld.name)
            if v is not None and v.on == bool(ld.on) and v.reason:
                return v.reason   # the guard that holds it now (ld.reason: why it last switched)
            return ld.reason

        self.state = {
            "at": now.isoformat(), "net_w": _round(snap.net_w, 1), "balance_wh": _round(snap.balance_wh, 3),
            "projected_wh": _round(projected_wh(snap, "instant"), 3), "remaining_s": round(snap.remaining_s),
            "reading_age_s": _round(reading_age_s, 1), "latched": latched,
            "last_period_wh": _round(b.last_period_wh, 3),
            "eur_saved_today": round(b.saved_today(now), 4),
            "tariff_period": period_2_0td(now, self.s.tz),
            "import_eur_per_kwh": _round(imp, 6), "surplus_eur_per_kwh": _round(sur, 6),
            "totals": {k: _round(v, 3) for k, v in b.totals.items()},
            "month_bill": b.month_bill(now),
            "loads": {ld.name: {"on": ld.on, **self._reason(reason(ld), ld.cfg.display_gender),
                                "switches_today": b.switches_today[ld.name],
                                "energy_wh": round(b.loads_wh.get(ld.name, 0.0), 3),
                                "mode": ("on" if overrides[ld.name].on else "off") if ld.name in overrides
                                else "auto"} for ld in self.loads}}
        reading, devices_w = self.core.balance.last, devices_w or {}
        if reading is not None and reading.consumption_w is not None:
            # the house's consumption: the meter's, without the setpoint devices (a battery
            # charging is not the house's consumption, nor discharging a negative one)
            known = [w for w in devices_w.values() if w is not None]
            self.state["consumption_w"] = None if len(known) < len(devices_w) \
                else round(reading.consumption_w - sum(known), 1)
        if self.setpoints:
            controls = self.setpoints.controls   # as managing read them this cycle
            dm = self.device_meters
            self.state["setpoints"] = {}
            for d in self.setpoints.devices:
                c = controls.get(d.name)
                self.state["setpoints"][d.name] = {
                    "setpoint_w": _round(d.setpoint_w, 1), "power_w": _round(devices_w.get(d.name), 1),
                    "soc_pct": _round(d.state.soc_pct, 1) if d.state is not None and d.state.soc_pct is not None else None,
                    "taken_wh": round(dm.in_wh[d.name] if dm else d.taken_wh, 1),
                    "supplied_wh": round(dm.out_wh[d.name] if dm else d.supplied_wh, 1), **self._reason(d.reason),
                    "mode": c.mode if c else "auto",
                    "min_soc_pct": c.min_soc_pct if c and c.min_soc_pct is not None else 0.0,
                    "target_wh": c.target_wh if c and c.target_wh is not None else d.cfg.target_wh}
        if self.ready:
            self.link.publish(f"{self.link.prefix}/state", self.state)
