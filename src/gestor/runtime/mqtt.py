"""MQTT and Home Assistant: gestor's state out, the household's overrides and emergency stop in.

paho-mqtt 2.x does the protocol, the reconnection (1 s doubling to 60 s) and the TLS (the
broker's certificate verified against ``ca_file`` or the system's CAs). Nothing here may stop
control: a broker that is down or refuses the password is logged once (and once again when it
comes back), managing and monitoring go on controlling and storing to InfluxDB, and discovery and
the retained state are published again on every (re)connection.

Topics, under ``mqtt.topic_prefix`` (``P``, default ``gestor/<site>``), every state retained:

=================================  ===========================================================
``P/managing/availability``         ``online`` / ``offline`` (the last will)
``P/monitoring/availability``       the same for monitoring
``P/state``                         managing's JSON: ``at``, ``net_w``, ``balance_wh``,
                                    ``projected_wh``, ``remaining_s``, ``reading_age_s``,
                                    ``latched``, ``last_period_wh``, ``eur_saved_today``,
                                    ``tariff_period``, ``import_eur_per_kwh``,
                                    ``surplus_eur_per_kwh``, ``totals: {import_wh, export_wh,
                                    production_wh, consumption_wh}`` (Wh, settled: each
                                    period's stepped at its last cycle >= 10 s before its
                                    end, only increasing: :meth:`gestor.runtime.books.Books.settle`),
                                    ``loads: {NAME: {on, mode,
                                    reason, reason_text, reason_data, switches_today,
                                    energy_wh}}`` (``reason``: the journal's English;
                                    ``reason_text``: in ``mqtt.language``, what the reason
                                    sensor shows; ``reason_data``: its code and numbers,
                                    :mod:`gestor.core.reasons`),
                                    ``consumption_w`` (the house's, W, without the devices),
                                    ``setpoints: {NAME: {setpoint_w, power_w, soc_pct,
                                    taken_wh, supplied_wh, reason, reason_text, reason_data,
                                    mode, min_soc_pct,
                                    target_wh}}``
``P/reading``                       monitoring's JSON: ``at``, ``net_w``, ``production_w``,
                                    ``consumption_w`` (W, to 0.1)
``P/load/NAME/mode/set``            in: ``auto`` | ``on`` | ``off``, as ``gestor override``
``P/setpoint/NAME/mode/set``        in: a device's mode: ``auto`` | ``idle`` (a battery also
                                    ``charge_only`` | ``discharge_only``)
``P/setpoint/NAME/min_soc/set``     in: a battery's minimum state of charge, % (0..100)
``P/setpoint/NAME/target/set``      in: a device's period target, Wh (-10000..10000)
``P/stop/set``                      in: ``STOP``, as ``stop-loads`` (sets the latch; releasing it
                                    is only ``stop-loads --release`` on the Pi)
``P/reconcile``                     ``gestor bill reconcile``'s last month (issue 35), retained:
                                    ``month``, ``alert`` (bool), ``import_diff_wh``,
                                    ``surplus_diff_wh`` (Wh, distributor minus gestor),
                                    ``ratio``, ``offset_s`` (s, + the meter's clock ahead),
                                    ``hours``, ``alerts`` (sentences); :func:`publish_once`
``P/bill/availability``             ``online`` while ``gestor bill reconcile`` publishes, then ``offline``
``P/managing/sync``                 managing to itself after each connection: its discovery
                                    configs were read back (stale ones emptied) before any state
``<discovery_prefix>/status``       in: Home Assistant's birth message; ``online`` makes managing
                                    announce discovery and the state again
=================================  ===========================================================

Home Assistant discovery (``mqtt.discovery``): one device "gestor <site>" under
``<discovery_prefix>/<component>/gestor_<site>/<object>/config`` with the entities listed by
:func:`discovery`. A load removed from the settings loses its entities: on connection managing
reads back its node's retained configs and empties those it no longer announces, before it
publishes a state without that load (and the value templates of a load tolerate its absence).
"""
from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable

from gestor.runtime.devicecontrols import BATTERY_MODES, TARGET_LIMIT_WH
from gestor.runtime.devicecontrols import MODES as DEVICE_MODES
from gestor.settings import MqttSettings

log = logging.getLogger("gestor.mqtt")

MODES = ("auto", "on", "off")


def prefix(s: MqttSettings, site: str) -> str:
    return s.topic_prefix or f"gestor/{site}"


def node_id(site: str) -> str:
    return "gestor_" + "".join(c if c.isalnum() else "_" for c in site)


def label(name: str) -> str:
    """A load's name as Home Assistant shows it: ``water_heater`` → ``Water heater``."""
    text = " ".join(name.replace("_", " ").replace("-", " ").split())
    return text[:1].upper() + text[1:] if text else name


def _in_load(name: str, expr: str, missing: str = "None") -> str:
    """A value template reading ``expr`` of load ``name`` in the state, and ``missing`` when the
    state has no such load (a load just removed: no template error in Home Assistant's log)."""
    q = json.dumps(name)
    return f"{{{{ ({expr.format(f'value_json.loads[{q}]')}) if {q} in value_json.loads else {missing} }}}}"


def discovery(s: MqttSettings, site: str, loads: list[tuple[str, str | None]], meter: tuple[str, ...] = (),
              sw_version: str | None = None, configuration_url: str | None = None,
              expire_after_s: int | None = None,
              setpoints: list[tuple[str, bool]] = ()) -> dict[str, dict[str, Any]]:
    """Topic → config payload of every entity managing announces (HA MQTT discovery schema).

    ``loads``: (name, display name or None) of each load; its entities are named by its display
    name ("Termo eléctrico"), else by :func:`label` of its name.

    ``setpoints``: (name, is a battery) of each device with a power setpoint: its setpoint (W,
    house side), its energy taken and supplied (Wh, only increasing, for the Energy dashboard's
    battery: in and out) and its reason; a battery's state of charge too.

    ``meter``: what the meter measures beside the net power (``"production"``,
    ``"consumption"``): their power and energy entities are announced only then. Entities of the
    reading (``P/reading``) follow monitoring's availability and, with ``expire_after_s``, go
    unavailable when no reading came for that long (a meter that stopped answering)."""
    p, node = prefix(s, site), node_id(site)
    device: dict[str, Any] = {"identifiers": [node], "name": f"gestor {site}", "manufacturer": "gestor",
                              "model": "home energy manager (Spanish hourly net balance)"}
    if sw_version:
        device["sw_version"] = sw_version
    if configuration_url:
        device["configuration_url"] = configuration_url
    managing = {"availability_topic": f"{p}/managing/availability"}
    monitoring = {"availability_topic": f"{p}/monitoring/availability"}
    if expire_after_s:
        monitoring["expire_after"] = int(expire_after_s)
    out: dict[str, dict[str, Any]] = {}

    def add(component: str, obj: str, name: str, avail: dict[str, Any] = managing, **cfg: Any) -> None:
        out[f"{s.discovery_prefix}/{component}/{node}/{obj}/config"] = {
            "name": name, "unique_id": f"{node}_{obj}", "object_id": f"{node}_{obj}", "device": device,
            **avail, **{k: v for k, v in cfg.items() if v is not None}}

    state, reading = f"{p}/state", f"{p}/reading"
    diag = "diagnostic"
    # the reading, as monitoring publishes it (its own availability)
    for obj, name, key, kind in (("net_power", "Net power (export +)", "net_w", None),
                                 ("production_power", "Production power", "production_w", "production")):
        if kind is None or kind in meter:
            add("sensor", obj, name, monitoring, state_topic=reading, value_template=f"{{{{ value_json.{key} }}}}",
                device_class="power", state_class="measurement", unit_of_measurement="W")
    if "consumption" in meter:  # the house's: the meter's without the setpoint devices (managing's state)
        add("sensor", "consumption_power", "Consumption power", state_topic=f"{p}/state",
            value_template="{{ value_json.consumption_w if value_json.consumption_w is defined else None }}",
            device_class="power", state_class="measurement", unit_of_measurement="W")
    # the settlement period now: values that restart each period and may be negative, so no
    # cumulative state class (Home Assistant keeps no long-term sums of them)
    for obj, name, key in (("period_balance", "Period balance", "balance_wh"),
                           ("period_projection", "Period projected end", "projected_wh"),
                           ("last_period_balance", "Last period balance", "last_period_wh")):
        add("sensor", obj, name, state_topic=state, value_template=f"{{{{ value_json.{key} }}}}",
            device_class="energy", unit_of_measurement="Wh")
    for obj, name, key in (("period_time_left", "Period time left", "remaining_s"),
                           ("meter_age", "Meter reading age", "reading_age_s")):
        add("sensor", obj, name, state_topic=state, value_template=f"{{{{ value_json.{key} }}}}",
            device_class="duration", state_class="measurement", unit_of_measurement="s", entity_category=diag)
    # counters for Home Assistant's Energy dashboard: settled (closed periods), only increasing
    for obj, name, key, kind in (("grid_import", "Grid import (net, settled)", "import_wh", None),
                                 ("grid_export", "Grid export (net, settled)", "export_wh", None),
                                 ("production_energy", "Production energy", "production_wh", "production"),
                                 ("consumption_energy", "Consumption energy", "consumption_wh", "consumption")):
        if kind is None or kind in meter:
            add("sensor", obj, name, state_topic=state, value_template=f"{{{{ value_json.totals.{key} }}}}",
                device_class="energy", state_class="total_increasing", unit_of_measurement="Wh")
    add("sensor", "saved_today", "Saved today", state_topic=state, value_template="{{ value_json.eur_saved_today }}",
        device_class="monetary", unit_of_measurement="EUR", icon="mdi:piggy-bank-outline")
    # 2.0TD's P1/P2/P3 (text: Home Assistant 2024.3's MQTT sensor takes no enum options)
    add("sensor", "tariff_period", "Tariff period", state_topic=state, value_template="{{ value_json.tariff_period }}",
        icon="mdi:clock-outline")
    for obj, name, key in (("import_price", "Import price", "import_eur_per_kwh"),
                           ("surplus_price", "Surplus price", "surplus_eur_per_kwh")):
        add("sensor", obj, name, state_topic=state, value_template=f"{{{{ value_json.{key} }}}}",
            state_class="measurement", unit_of_measurement="EUR/kWh", icon="mdi:currency-eur",
            suggested_display_precision=4)
    add("binary_sensor", "stop_latch", "Stop latch", state_topic=state, device_class="problem",
        value_template="{{ 'ON' if value_json.latched else 'OFF' }}")
    # the bill (issue 35): the month so far against the cap (managing's books), and the last
    # reconciliation with the distributor (gestor bill reconcile, retained: no availability of its own)
    add("sensor", "month_energy_eur", "Month's energy term after compensation", state_topic=state,
        value_template="{{ value_json.month_bill.energy_after_compensation_eur if value_json.month_bill is defined "
                       "else None }}", device_class="monetary", unit_of_measurement="EUR", icon="mdi:receipt-text-outline",
        suggested_display_precision=2)
    add("binary_sensor", "reconcile_alert", "Reconciliation alert", {}, state_topic=f"{p}/reconcile",
        device_class="problem", value_template="{{ 'ON' if value_json.alert else 'OFF' }}",
        json_attributes_topic=f"{p}/reconcile", icon="mdi:scale-unbalanced")
    add("button", "stop", "Emergency stop", command_topic=f"{p}/stop/set", payload_press="STOP", icon="mdi:stop-circle")
    for name, display_name in loads:
        obj, shown = "".join(c if c.isalnum() else "_" for c in name), display_name or label(name)
        add("binary_sensor", f"{obj}_on", shown, state_topic=state, device_class="power",
            value_template=_in_load(name, "'ON' if {}.on else 'OFF'"))
        add("sensor", f"{obj}_reason", f"{shown} reason", state_topic=state, value_template=_in_load(name, "{}.reason_text", "''"),
            icon="mdi:comment-question-outline", entity_category=diag)
        add("sensor", f"{obj}_switches_today", f"{shown} switches today", state_topic=state,
            value_template=_in_load(name, "{}.switches_today"), state_class="total_increasing",
            icon="mdi:counter", entity_category=diag)
        add("sensor", f"{obj}_energy", f"{shown} energy", state_topic=state,
            value_template=_in_load(name, "{}.energy_wh"), device_class="energy", state_class="total_increasing",
            unit_of_measurement="Wh")
        add("select", f"{obj}_mode", f"{shown} mode", state_topic=state, value_template=_in_load(name, "{}.mode"),
            command_topic=f"{p}/load/{name}/mode/set", options=list(MODES))
    for name, battery in setpoints:
        obj, shown = "".join(c if c.isalnum() else "_" for c in name), label(name)

        def tpl(expr: str, missing: str = "None") -> str:
            q = json.dumps(name)
            return (f"{{{{ ({expr.format(f'value_json.setpoints[{q}]')}) if value_json.setpoints is defined "
                    f"and {q} in value_json.setpoints else {missing} }}}}")

        add("sensor", f"{obj}_setpoint", f"{shown} setpoint", state_topic=state, value_template=tpl("{}.setpoint_w"),
            device_class="power", state_class="measurement", unit_of_measurement="W")
        add("sensor", f"{obj}_energy_in", f"{shown} energy in", state_topic=state, value_template=tpl("{}.taken_wh"),
            device_class="energy", state_class="total_increasing", unit_of_measurement="Wh")
        add("sensor", f"{obj}_energy_out", f"{shown} energy out", state_topic=state,
            value_template=tpl("{}.supplied_wh"), device_class="energy", state_class="total_increasing",
            unit_of_measurement="Wh")
        add("sensor", f"{obj}_reason", f"{shown} reason", state_topic=state, value_template=tpl("{}.reason_text", "''"),
            icon="mdi:comment-question-outline", entity_category=diag)
        # the household's controls (gestor.runtime.devicecontrols): the latch wins over them
        add("select", f"{obj}_mode", f"{shown} mode", state_topic=state, value_template=tpl("{}.mode"),
            command_topic=f"{p}/setpoint/{name}/mode/set", options=list(BATTERY_MODES if battery else DEVICE_MODES))
        add("number", f"{obj}_target", f"{shown} period target", state_topic=state, value_template=tpl("{}.target_wh"),
            command_topic=f"{p}/setpoint/{name}/target/set", min=-TARGET_LIMIT_WH, max=TARGET_LIMIT_WH, step=10,
            mode="box", unit_of_measurement="Wh", icon="mdi:target")
        if battery:
            add("number", f"{obj}_min_soc", f"{shown} minimum state of charge", state_topic=state,
                value_template=tpl("{}.min_soc_pct"), command_topic=f"{p}/setpoint/{name}/min_soc/set", min=0, max=100,
                step=1, mode="slider", unit_of_measurement="%", icon="mdi:battery-arrow-down")
            add("sensor", f"{obj}_soc", f"{shown} state of charge", state_topic=state,
                value_template=tpl("{}.soc_pct"), device_class="battery", state_class="measurement",
                unit_of_measurement="%")
    return out


def publish_once(s: MqttSettings, site: str, daemon: str, obj: str, payload: dict[str, Any],
                 timeout_s: float = 10.0) -> str | None:
    """Publish ``payload`` (JSON) retained on ``P/<obj>`` from a one-shot command (``daemon``
    names its availability topic, ``online`` while it publishes), waiting at most ``timeout_s``
    for the connection and again for the broker's acknowledgement (QoS 1). Returns None when
    published, else one sentence saying why not (the command goes on: MQTT is never required)."""
    connected = threading.Event()
    link = Link(s, site, daemon, on_connected=connected.set).start()
    try:
        if not connected.wait(timeout_s):
            return (f"MQTT broker {s.host}:{s.port} did not take the connection within {timeout_s:g} s"
                    f" ({link.error or 'no answer'})")
        info = link.client.publish(f"{link.prefix}/{obj}", json.dumps(payload, separators=(",", ":")), qos=1, retain=True)
        info.wait_for_publish(timeout_s)
        return None if info.is_published() else \
            f"MQTT broker {s.host}:{s.port} did not acknowledge {link.prefix}/{obj} within {timeout_s:g} s"
    finally:
        link.close()


class Link:
    """One daemon's connection. ``on_message(topic, payload)`` runs in paho's thread for the
    topics ``subscribe`` lists; ``on_connected()`` after every (re)connection."""

    def __init__(self, s: MqttSettings, site: str, daemon: str, subscribe: list[str] | None = None,
                 on_message: Callable[[str, str], None] | None = None,
                 on_connected: Callable[[], None] | None = None) -> None:
        import paho.mqtt.client as mqtt

        from drivers import secret
        self.s, self.site, self.daemon = s, site, daemon
        self.prefix = prefix(s, site)
        self.avail = f"{self.prefix}/{daemon}/availability"
        self.subscribe = subscribe or []
        self._on_message, self._on_connected = on_message, on_connected
        self.connected = False
        self.closing = False
        self.error: str | None = None
        self._said: str | None = None   # the last state logged (one line per change)
        self._lock = threading.Lock()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=s.client_id or f"gestor-{site}-{daemon}")
        if s.username:
            c.username_pw_set(s.username, secret(s.password))
        if s.tls:
            c.tls_set(ca_certs=str(s.ca_file) if s.ca_file else None,
                      certfile=str(s.cert_file) if s.cert_file else None,
                      keyfile=str(s.key_file) if s.key_file else None)
        c.will_set(self.avail, "offline", qos=1, retain=True)
        c.reconnect_delay_set(1, 60)
        c.on_connect, c.on_disconnect, c.on_message = self._connect, self._disconnect, self._message
        self.client = c

    def start(self) -> "Link":
        self.client.connect_async(self.s.host, self.s.port, keepalive=30)
        self.client.loop_start()
        return self

    def close(self) -> None:
        self.closing = True
        try:
            if self.connected:
                self.client.publish(self.avail, "offline", qos=1, retain=True).wait_for_publish(2.0)
            self.client.disconnect()
        except Exception:  # noqa: BLE001 -- closing: nothing left to do about it
            pass
        self.client.loop_stop()

    def publish(self, topic: str, payload: Any, retain: bool = True) -> None:
        """Publish (JSON unless a str); dropped while disconnected: the next state replaces it."""
        if not self.connected:
            return
        data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
        self.client.publish(topic, data, qos=1, retain=retain)

    def _say(self, level: int, text: str) -> None:
        if text != self._said:
            self._said = text
            log.log(level, "%s", text)

    def _connect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        if reason_code.is_failure:
            self.connected, self.error = False, str(reason_code)
            self._say(logging.ERROR, f"MQTT broker {self.s.host}:{self.s.port} refused {self.daemon}: {reason_code} "
                                     f"(check mqtt.username/password; retrying; control goes on)")
            return
        self.connected, self.error = True, None
        self._say(logging.INFO, f"MQTT connected to {self.s.host}:{self.s.port} as {self.daemon}")
        client.publish(self.avail, "online", qos=1, retain=True)
        for t in self.subscribe:
            client.subscribe(t, qos=1)
        if self._on_connected is not None:
            try:
                self._on_connected()
            except Exception:  # noqa: BLE001 -- never let a publish error kill paho's thread
                log.exception("MQTT: publishing after connection failed")

    def _disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        was = self.connected
        self.connected = False
        if self.closing:
            return
        if was or not reason_code.is_failure:
            self.error = str(reason_code)
            self._say(logging.WARNING, f"MQTT broker {self.s.host}:{self.s.port} lost ({reason_code}): "
                                       f"reconnecting with backoff; control goes on")

    def _message(self, client, userdata, msg) -> None:  # noqa: ANN001
        if self._on_message is None:
            return
        try:
            payload = msg.payload.decode("utf-8", "strict").strip()
        except UnicodeDecodeError:
            log.warning("MQTT %s: payload is not UTF-8: ignored", msg.topic)
            return
        try:
            self._on_message(msg.topic, payload)
        except Exception:  # noqa: BLE001
            log.exception("MQTT %s: handling the command failed", msg.topic)
