"""Validating a settings document (:func:`parse_settings`): phase 1 the sections
(:mod:`gestor.settings.models`), phase 2 each driver section by the model its driver registered
(selected by ``driver:``), then the checks across sections (outputs shared by two loads, the
virtual meter's sockets, the time zone, prices and the policy)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

import drivers.meters as meters
import drivers.relays as relays
import drivers.setpoints as setpoints
from gestor.settings.messages import MASK, SecretValue, error_lines, key_path, numbers_not_bools, shown_value
from gestor.settings.models import FETCHED_SOURCES, WATCHDOG_S, Settings, SettingsError, listen_address


def _validate_driver(prefix: str, loc: tuple[Any, ...], raw: dict[str, Any],
                     registry: dict[str, tuple[type[BaseModel], Any]], errors: list[str],
                     config_dir: Path, skip: frozenset[str] = frozenset()) -> BaseModel | None:
    driver = raw.get("driver")
    if not isinstance(driver, str):
        return None  # phase 1 already said "driver: required" or "must be a string"
    if driver not in registry:
        errors.append(f"{prefix}: {key_path(loc + ('driver',))}: unknown driver {shown_value(driver)} "
                      f"(allowed: {', '.join(sorted(registry))})")
        return None
    model = registry[driver][0]
    try:
        return model.model_validate(raw, context={"config_dir": config_dir})
    except ValidationError as e:
        errors.extend(error_lines(prefix, e, loc, skip))
        return None


def _shared_outputs(name: str, loads_raw: list[Any], relays_ok: list[tuple[int, BaseModel | None]],
                    devices_raw: list[Any], devices_ok: list[tuple[int, BaseModel | None]]) -> list[str]:
    """Each load its own relay and each setpoint device its own device: two loads on one device
    output (same ``relay_key()``) would switch each other, two setpoint sections on one battery or
    charger (same ``device_key()``) would fight over its setpoint, and a burst SSR on a load's
    GPIO line would do both. One line per section that repeats an earlier one's, naming both."""
    errors: list[str] = []
    first: dict[Any, tuple[str, int]] = {}
    items = [("loads", "relay", i, r, getattr(r, "relay_key", lambda: None)()) for i, r in relays_ok] + \
        [("setpoints", "device", i, d, getattr(d, "device_key", lambda: None)()) for i, d in devices_ok]

    def who(what: str, n: int) -> str:
        raw = (loads_raw if what == "loads" else devices_raw)[n]
        return key_path((raw.get("name"),)) if isinstance(raw, dict) else f"{what}[{n}]"

    for what, part, i, sec, key in items:
        if key is None:
            continue
        if key not in first:
            first[key] = (what, i)
            continue
        ow, j = first[key]
        label = sec.relay_label() if what == "loads" else sec.device_label()  # type: ignore[union-attr]
        if what == ow == "loads":
            errors.append(f"{name}: loads[{i}].relay: {who(what, i)} is on the same relay as loads[{j}] {who(ow, j)} "
                          f"({label}): each load needs its own relay")
        else:
            errors.append(f"{name}: {what}[{i}].{part}: {who(what, i)} is the same device as {ow}[{j}] {who(ow, j)} "
                          f"({label}): each load and setpoint device needs a device of its own")
    return errors


def _non_finite(raw: Any, loc: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], float]]:
    """Every NaN or infinite number in a parsed document, with its place."""
    if isinstance(raw, float) and not math.isfinite(raw):
        return [(loc, raw)]
    if isinstance(raw, dict):
        return [x for k, v in raw.items() for x in _non_finite(v, loc + (k,))]
    if isinstance(raw, list):
        return [x for i, v in enumerate(raw) for x in _non_finite(v, loc + (i,))]
    return []


def _cross_checks(name: str, s: Settings) -> list[str]:
    """Rules between keys: the stale-meter guard must be able to fire, and every daemon's cycle
    must fit in systemd's watchdog (``WATCHDOG_S``)."""
    errors = []
    if s.managing.stop_button_pin is not None:  # the button's line may not be a relay's
        from drivers.relays.gpio import gpio_pin
        button = ("gpio", gpio_pin(s.managing.stop_button_pin))
        for i, ld in enumerate(s.loads):
            if getattr(ld.relay, "relay_key", lambda: None)() == button:
                errors.append(f"{name}: managing.stop_button_pin: {button[1]} is the relay of loads[{i}] {ld.name}: "
                              f"the stop button needs a GPIO of its own (got {s.managing.stop_button_pin!r})")
    if s.managing.stale_after_s <= s.monitoring.interval_s:
        errors.append(f"{name}: managing.stale_after_s: must be > monitoring.interval_s "
                      f"({s.monitoring.interval_s:g} s) (got {s.managing.stale_after_s:g})")
    frozen = getattr(s.meter, "frozen_after_s", None)  # several identical readings before a meter is frozen
    if frozen is not None and frozen < 3 * s.monitoring.interval_s:
        errors.append(f"{name}: meter.frozen_after_s: must be >= 3 x monitoring.interval_s "
                      f"({3 * s.monitoring.interval_s:g} s) (got {frozen:g})")
    for i, ld in enumerate(s.loads):
        t = float(getattr(ld.relay, "timeout_s", 0.0))
        if s.managing.interval_s + 2 * t >= WATCHDOG_S:
            errors.append(f"{name}: loads[{i}].relay.timeout_s: managing.interval_s + 2 x timeout_s must be < the "
                          f"units' WatchdogSec {WATCHDOG_S:g} s (got {s.managing.interval_s:g} + 2 x {t:g})")
    for i, dev in enumerate(s.setpoints):
        t = float(getattr(dev.device, "timeout_s", 0.0))
        if s.managing.interval_s + 3 * t >= WATCHDOG_S:  # a cycle reads it, commands it, and may idle it
            errors.append(f"{name}: setpoints[{i}].device.timeout_s: managing.interval_s + 3 x timeout_s must be < "
                          f"the units' WatchdogSec {WATCHDOG_S:g} s (got {s.managing.interval_s:g} + 3 x {t:g})")
        hold = getattr(dev.device, "hold_s", None) or getattr(dev.device, "power_timeout_s", None)
        if hold is not None and hold <= 2 * s.managing.interval_s:
            errors.append(f"{name}: setpoints[{i}].device: the device's timeout ({hold:g} s) must be > 2 x "
                          f"managing.interval_s ({s.managing.interval_s:g} s), or it drops every setpoint "
                          f"between two cycles")
    errors += _zone_timezone(name, s)
    errors += _virtual_meter(name, s)
    return errors


def _same_socket(a: str, b: str) -> bool:
    """Whether two HOST:PORT listen addresses would take the same TCP port (the same port on the
    same host, or on a wildcard host that covers the other)."""
    (ha, pa), (hb, pb) = listen_address(a), listen_address(b)
    wild = ("0.0.0.0", "::")
    return pa == pb and (ha == hb or ha in wild or hb in wild)


def _virtual_meter(name: str, s: Settings) -> list[str]:
    """The virtual meter, when enabled: its staleness bound above monitoring's interval, its
    correction's floor inside a period, its TCP ports taken once (the web page's too)."""
    vm = s.virtual_meter
    if not vm.enabled:
        return []
    errors = []
    if vm.stale_after_s is not None and vm.stale_after_s <= s.monitoring.interval_s:
        errors.append(f"{name}: virtual_meter.stale_after_s: must be > monitoring.interval_s "
                      f"({s.monitoring.interval_s:g} s) (got {vm.stale_after_s:g})")
    if vm.min_remaining_s >= s.billing.period_s:
        errors.append(f"{name}: virtual_meter.min_remaining_s: must be < billing.period_s "
                      f"({s.billing.period_s} s) (got {vm.min_remaining_s:g})")
    if vm.shelly_listen is not None and vm.sdm630_listen is not None and _same_socket(vm.shelly_listen, vm.sdm630_listen):
        errors.append(f"{name}: virtual_meter.sdm630_listen: the same TCP port as virtual_meter.shelly_listen "
                      f"(got {vm.sdm630_listen!r} and {vm.shelly_listen!r})")
    for key in ("shelly_listen", "sdm630_listen"):
        v = getattr(vm, key)
        if v is not None and _same_socket(v, s.web.listen):
            errors.append(f"{name}: virtual_meter.{key}: the same TCP port as web.listen {s.web.listen!r}: "
                          f"choose another port (got {v!r})")
    return errors


def _zone_timezone(name: str, s: Settings) -> list[str]:
    """A fetched price day (prices.source esios | pvpc_public) applies by the zone's own clock
    hour: ``prices.zone`` and ``timezone`` must name the same clock (gestor.tariff.prices)."""
    from gestor.tariff.calendar import zone_timezones
    ok = zone_timezones(s.prices.zone)
    if s.prices.source not in FETCHED_SOURCES or s.timezone in ok:
        return []
    other = next((z for z in ("canarias", "peninsula") if s.timezone in zone_timezones(z)), None)
    fix = f"set prices.zone: {other} or timezone: {ok[0]}" if other else f"set timezone: {ok[0]}"
    return [f"{name}: prices.zone: {s.prices.zone!r} prices apply by {' / '.join(ok)} clock hours, but timezone is "
            f"{s.timezone!r}: they must agree ({fix})"]


def parse_settings(raw: Any, name: str = "settings.yaml", source: Path | None = None) -> Settings:
    """Validate a parsed YAML document. Raises SettingsError listing every problem."""
    if not isinstance(raw, dict):
        raise SettingsError([f"{name}: (top level): must be a mapping of keys (got {type(raw).__name__})"])
    bad = _non_finite(raw)
    if bad:  # .nan / .inf would disable a guard (a NaN never compares true): refused everywhere
        raise SettingsError([f"{name}: {key_path(loc)}: must be a finite number (got {v})" for loc, v in bad])
    try:
        s = _parse(raw, name, source)
    except SettingsError as e:  # whatever a validator quoted, a secret's value is not shown
        secrets = {str(v) for v in _secret_values(raw) if len(v) >= 4}
        if not secrets:
            raise
        lines = []
        for line in e.errors:
            head, sep, msg = line.partition(": ")
            key, sep2, msg = msg.partition(": ") if sep else ("", "", line)
            for v in sorted(secrets, key=len, reverse=True):
                msg = msg.replace(v, MASK)
            lines.append(f"{head}{sep}{key}{sep2}{msg}")
        raise SettingsError(lines) from None
    return s


def _secret_values(raw: Any) -> list[SecretValue]:
    if isinstance(raw, SecretValue):
        return [raw]
    if isinstance(raw, dict):
        return [x for v in raw.values() for x in _secret_values(v)]
    if isinstance(raw, list):
        return [x for v in raw for x in _secret_values(v)]
    return []


def _parse(raw: dict[Any, Any], name: str, source: Path | None) -> Settings:
    """:func:`parse_settings` without the masking of secrets."""
    config_dir = source.parent if source else Path.cwd()
    typed = numbers_not_bools(Settings, raw)
    errors: list[str] = [f"{name}: {k}: {m}" for k, m in typed]
    skip = frozenset(k for k, _ in typed)
    try:
        s = Settings.model_validate(raw)
    except ValidationError as e:
        errors.extend(error_lines(name, e, skip=skip))
        s = None
    # phase 2: driver sections, even when phase 1 failed elsewhere, to report everything at once
    meter_raw = raw.get("meter")
    meter = None
    if isinstance(meter_raw, dict):
        meter = _validate_driver(name, ("meter",), meter_raw, meters.METERS, errors, config_dir, skip)
    loads_raw = raw.get("loads") if isinstance(raw.get("loads"), list) else []
    relays_ok: list[tuple[int, BaseModel | None]] = []
    for i, ld in enumerate(loads_raw):
        if isinstance(ld, dict) and isinstance(ld.get("relay"), dict):
            relays_ok.append((i, _validate_driver(name, ("loads", i, "relay"), ld["relay"], relays.RELAYS, errors,
                                                  config_dir, skip)))
    devices_raw = raw.get("setpoints") if isinstance(raw.get("setpoints"), list) else []
    devices_ok: list[tuple[int, BaseModel | None]] = []
    for i, d in enumerate(devices_raw):
        if isinstance(d, dict) and isinstance(d.get("device"), dict):
            devices_ok.append((i, _validate_driver(name, ("setpoints", i, "device"), d["device"], setpoints.SETPOINTS,
                                                   errors, config_dir, skip)))
    errors.extend(_shared_outputs(name, loads_raw, relays_ok, devices_raw, devices_ok))
    if s is not None and policy_needs_thresholds(s) and not errors:
        for i, ld in enumerate(s.loads):
            if ld.on_above_wh is None or ld.off_below_wh is None:
                errors.append(f"{name}: loads[{i}]: policy hysteresis needs on_above_wh and off_below_wh")
            elif ld.on_above_wh <= ld.off_below_wh:
                errors.append(f"{name}: loads[{i}].on_above_wh: must be > off_below_wh "
                              f"(got {ld.on_above_wh} <= {ld.off_below_wh})")
    if errors:
        raise SettingsError(list(dict.fromkeys(errors)))
    assert s is not None and meter is not None
    s.meter = meter  # type: ignore[assignment]
    for ld, (_, r) in zip(s.loads, relays_ok):
        ld.relay = r  # type: ignore[assignment]
    for dev, (_, d) in zip(s.setpoints, devices_ok):
        dev.device = d  # type: ignore[assignment]
    errors = _cross_checks(name, s)
    if errors:
        raise SettingsError(errors)
    # relative file paths are relative to the settings file's folder (as the replay meter's path),
    # not to the working directory (systemd starts the daemons in /)
    for sec, key in RELATIVE_FILES:
        section = getattr(s, sec)
        v = getattr(section, key)
        if v is not None and not v.is_absolute():
            setattr(section, key, config_dir / v)
    s.source = source
    return s


RELATIVE_FILES = (("prices", "file"), ("mqtt", "ca_file"), ("mqtt", "cert_file"), ("mqtt", "key_file"),
                  ("web", "tls_cert_file"), ("web", "tls_key_file"))


def policy_needs_thresholds(s: Settings) -> bool:
    return s.policy.name == "hysteresis"
