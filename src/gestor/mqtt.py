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
``P/state``                         managing's JSON: ``net_w``, ``balance_wh``, ``projected_wh``,
                                    ``remaining_s``, ``reading_age_s``, ``latched``,
                                    ``last_period_wh``, ``loads: {NAME: {on, mode, reason,
                                    switches_today}}``
``P/reading``                       monitoring's JSON: ``at``, ``net_w``, ``production_w``,
                                    ``consumption_w``
``P/load/NAME/mode/set``            in: ``auto`` | ``on`` | ``off``, as ``gestor override``
``P/stop/set``                      in: ``STOP``, as ``stop-loads`` (sets the latch; releasing it
                                    is only ``stop-loads --release`` on the Pi)
=================================  ===========================================================

Home Assistant discovery (``mqtt.discovery``): one device "gestor <site>" under
``<discovery_prefix>/<component>/gestor_<site>/<object>/config`` with the entities listed by
:func:`discovery`. A load removed from the settings loses its entities: on connection managing
reads back its node's retained configs and empties those it no longer announces.
"""
from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable

from gestor.settings import MqttSettings

log = logging.getLogger("gestor.mqtt")

MODES = ("auto", "on", "off")


def prefix(s: MqttSettings, site: str) -> str:
    return s.topic_prefix or f"gestor/{site}"


def node_id(site: str) -> str:
    return "gestor_" + "".join(c if c.isalnum() else "_" for c in site)


def discovery(s: MqttSettings, site: str, loads: list[str]) -> dict[str, dict[str, Any]]:
    """Topic → config payload of every entity managing announces (HA MQTT discovery schema)."""
    p, node = prefix(s, site), node_id(site)
    device = {"identifiers": [node], "name": f"gestor {site}", "manufacturer": "gestor",
              "model": "home energy manager (Spanish hourly net balance)"}
    avail = {"availability_topic": f"{p}/managing/availability"}
    out: dict[str, dict[str, Any]] = {}

    def add(component: str, obj: str, name: str, **cfg: Any) -> None:
        out[f"{s.discovery_prefix}/{component}/{node}/{obj}/config"] = {
            "name": name, "unique_id": f"{node}_{obj}", "object_id": f"{node}_{obj}", "device": device, **avail, **cfg}

    state = f"{p}/state"
    for obj, name, key, dc, sc, unit in (
            ("net_power", "Net power (export +)", "net_w", "power", "measurement", "W"),
            ("period_balance", "Period balance", "balance_wh", "energy", "total", "Wh"),
            ("period_projection", "Period projected end", "projected_wh", "energy", "total", "Wh"),
            ("last_period_balance", "Last period balance", "last_period_wh", "energy", "total", "Wh"),
            ("period_time_left", "Period time left", "remaining_s", "duration", "measurement", "s"),
            ("meter_age", "Meter reading age", "reading_age_s", "duration", "measurement", "s")):
        add("sensor", obj, name, state_topic=state, value_template=f"{{{{ value_json.{key} }}}}",
            device_class=dc, state_class=sc, unit_of_measurement=unit)
    add("binary_sensor", "stop_latch", "Stop latch", state_topic=state, device_class="problem",
        value_template="{{ 'ON' if value_json.latched else 'OFF' }}")
    add("button", "stop", "Emergency stop", command_topic=f"{p}/stop/set", payload_press="STOP", icon="mdi:stop-circle")
    for name in loads:
        obj = "".join(c if c.isalnum() else "_" for c in name)
        lj = f"value_json.loads['{name}']"
        add("binary_sensor", f"{obj}_on", f"{name}", state_topic=state, device_class="power",
            value_template=f"{{{{ 'ON' if {lj}.on else 'OFF' }}}}")
        add("sensor", f"{obj}_reason", f"{name} reason", state_topic=state, value_template=f"{{{{ {lj}.reason }}}}",
            icon="mdi:comment-question-outline")
        add("sensor", f"{obj}_switches_today", f"{name} switches today", state_topic=state,
            value_template=f"{{{{ {lj}.switches_today }}}}", state_class="total_increasing")
        add("select", f"{obj}_mode", f"{name} mode", state_topic=state, value_template=f"{{{{ {lj}.mode }}}}",
            command_topic=f"{p}/load/{name}/mode/set", options=list(MODES))
    return out


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
