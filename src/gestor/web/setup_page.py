"""``gestor setup`` in the page (issue 34; docs/site/en/setup.md, "From the page"): a Flask
blueprint under ``/setup``, owner only (the page's session check) and CSRF on every POST, as the
rest of :mod:`gestor.web.app`.

| method, path | what |
|---|---|
| GET /setup | the steps (templates/setup.html, static/setup.js) |
| POST /setup/api/find | JSON ``{"finders": ["mdns", ...], "network": "192.168.1.0/24", "hosts": ["192.168.1.60"]}``: the finders of :mod:`gestor.setup.command` (and each address given asked ``/shelly``); the found devices, numbered |
| POST /setup/api/read | ``{"meter": N, "flipped": bool}``: READS readings of found meter N through its driver |
| POST /setup/api/relay | ``{"relay": N, "channel": C, "on": bool}``: switch found relay N (an "on" with its dead-man timer, :data:`gestor.setup.live.CHECK_AUTO_OFF_S`); its state read back |
| POST /setup/api/propose | ``{"meter", "flipped", "loads": [{"name", "relay", "channel", "power_w"}], "tariff", "prices", "apply"}``: the settings' diff, validated as ``gestor check`` does; with ``apply`` the proposal written for the root unit (:mod:`gestor.setup.proposal`) |
| GET /setup/api/result | the root unit's result file (``{}``: none yet; ``pending``: waiting) |

The page refers to devices by their number in the last find only: a section is never taken from
the browser, so the page reads and switches only what a finder found. The page runs as ``gestor``
and writes only the proposal; root applies it (daemons/gestor-setup-apply.path).
"""
from __future__ import annotations

import logging
import tempfile
import threading
from pathlib import Path
from typing import Any

from flask import Blueprint, jsonify, render_template, request
from flask_babel import gettext as _
from flask_wtf.csrf import generate_csrf

from gestor.settings import Settings
from gestor.setup import proposal as prop
from gestor.setup import writing
from gestor.setup.answers import MAX_LOADS, SetupError
from gestor.setup.found import MAX_FOUND, Found, dedupe, local_networks, parse_network
from gestor.setup.live import flipped_sign, read_meter, switch_relay
from gestor.setup.options import FINDERS

log = logging.getLogger("gestor.web")
READS, READ_INTERVAL_S = 3, 2.0     # the meter's check on the page: 3 readings 2 s apart
MDNS_S = 4.0
MAX_HOSTS = 8


def _found_json(i: int, f: Found) -> dict[str, Any]:
    return {"id": i, "role": f.role, "label": f.label, "how": f.how, "channels": f.channels,
            "driver": f.section.get("driver"), "needs_password": f.needs_password}


def _hosts(raw: Any) -> list[str]:
    """The addresses the user typed (each an IPv4 address or a name, optionally :port)."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_HOSTS:
        raise ValueError(_("hosts: at most %(n)s addresses", n=MAX_HOSTS))
    for h in raw:
        if not isinstance(h, str) or not prop.HOST.fullmatch(h):
            raise ValueError(_("%(value)s is not an address (allowed: an IP address or a name, optionally :port)",
                               value=repr(str(h)[:40])))
    return raw


def create_blueprint(s: Settings, clock: Any) -> Blueprint:
    """The blueprint, for :func:`gestor.web.app.create_app` (``clock``: the page's)."""
    bp = Blueprint("setup", __name__)
    lock = threading.Lock()          # one step at a time: a device is asked by one request only
    found: list[Found] = []
    settings_path = Path(s.source) if s.source else Path("/etc/gestor/settings.yaml")

    def body(keys: tuple[str, ...]) -> dict[str, Any] | None:
        got = request.get_json(silent=True)
        return got if isinstance(got, dict) and set(got) <= set(keys) else None

    def pick(key: str, role: str, got: dict[str, Any]) -> Found:
        these = [f for f in found if f.role == role]
        i = got.get(key)
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(these):
            raise ValueError(_("%(key)s must be the number of a device found (0 to %(last)s)", key=key,
                               last=len(these) - 1))
        return these[i]

    def bad(e: Exception):
        return jsonify(error=str(e)), 400

    @bp.get("/setup")
    def page():
        return render_template("setup.html", csrf=generate_csrf(), finders=FINDERS, settings_path=str(settings_path))

    @bp.post("/setup/api/find")
    def find():
        got = body(("finders", "network", "hosts"))
        if got is None:
            return bad(ValueError(_('send JSON {"finders": [...], "network": "...", "hosts": [...]}')))
        chosen = got.get("finders") or []
        if not isinstance(chosen, list) or any(c not in FINDERS for c in chosen):
            return bad(ValueError(_("finders must be some of %(allowed)s", allowed=", ".join(FINDERS))))
        try:
            hosts = _hosts(got.get("hosts"))
            net = got.get("network") or ""
            nets = [parse_network(net)] if isinstance(net, str) and net.strip() else []
        except ValueError as e:
            return bad(e)
        skipped: list[str] = []
        out: list[Found] = []
        with lock:
            from gestor.setup import mdns, modbus, shelly, udp
            for h in hosts:
                f = shelly.identify(h)
                if f is not None:
                    out.append(f)
            steps = {"mdns": lambda: mdns.browse(MDNS_S, lambda _t: None),
                     "modbus": lambda: [f for n in (nets or local_networks()) for f in modbus.scan(n)],
                     "goodwe": lambda: udp.goodwe(nets or local_networks()),
                     "sma": udp.sma}
            for name in chosen:
                try:
                    out += steps[name]()
                except (ImportError, OSError) as e:   # a missing library, or the sandbox refusing a socket
                    log.warning("web setup: finder %s: %s", name, e)
                    skipped.append(name)
            found[:] = dedupe(out)[:2 * MAX_FOUND]
            meters = [f for f in found if f.role == "meter"]
            relays = [f for f in found if f.role == "relay"]
        return jsonify(meters=[_found_json(i, f) for i, f in enumerate(meters)],
                       relays=[_found_json(i, f) for i, f in enumerate(relays)], skipped=skipped)

    @bp.post("/setup/api/read")
    def read():
        got = body(("meter", "flipped"))
        if got is None:
            return bad(ValueError(_('send JSON {"meter": N, "flipped": false}')))
        with lock:
            try:
                f = pick("meter", "meter", got)
                section = f.section
                if got.get("flipped") is True:
                    section = flipped_sign(section)
                    if section is None:
                        return bad(ValueError(_("this meter's driver has no sign setting: the meter or its clamps "
                                                "are wired the other way round")))
                errors: list[str] = []
                with tempfile.TemporaryDirectory(prefix="gestor-web-setup-") as run_dir:
                    readings = read_meter(section, clock, (READS - 1) * READ_INTERVAL_S, READ_INTERVAL_S,
                                          lambda line: errors.append(line.strip()) if "FAILED" in line else None,
                                          Path(run_dir), settings_path.parent)
            except (ValueError, SetupError) as e:
                return bad(e)
        return jsonify(net_w=[round(r.net_w, 1) for r in readings], errors=errors[:READS])

    @bp.post("/setup/api/relay")
    def relay():
        got = body(("relay", "channel", "on"))
        if got is None or not isinstance(got.get("on"), bool):
            return bad(ValueError(_('send JSON {"relay": N, "channel": C, "on": true}')))
        with lock:
            try:
                f = pick("relay", "relay", got)
                ch = got.get("channel", 0)
                if isinstance(ch, bool) or not isinstance(ch, int) or not 0 <= ch < f.channels:
                    raise ValueError(_("channel must be from 0 to %(last)s", last=f.channels - 1))
                with tempfile.TemporaryDirectory(prefix="gestor-web-setup-") as run_dir:
                    state = switch_relay({**f.section, "channel": ch}, "setup_check", 1.0, got["on"], clock,
                                         Path(run_dir), settings_path.parent)
            except (ValueError, SetupError) as e:
                return bad(e)
        log.warning("web setup: relay %s channel %s switched %s from %s", f.label, ch, "on" if got["on"] else "off",
                    request.remote_addr)
        return jsonify(on=state)

    def proposal_of(got: dict[str, Any]) -> dict[str, Any]:
        meter = pick("meter", "meter", got)
        section = dict(meter.section)
        if got.get("flipped") is True:
            section = flipped_sign(section) or section
        loads = got.get("loads") or []
        if not isinstance(loads, list) or len(loads) > MAX_LOADS:
            raise ValueError(_("loads: at most %(n)s", n=MAX_LOADS))
        out = []
        for ld in loads:
            if not isinstance(ld, dict):
                raise ValueError(_("loads: each a mapping of name, relay, channel, power_w"))
            r = pick("relay", "relay", ld)
            out.append({"name": ld.get("name"), "power_w": ld.get("power_w"),
                        "relay": {**r.section, "channel": ld.get("channel", 0)}})
        raw = {"meter": section, "loads": out, "tariff": got.get("tariff", "pvpc")}
        if got.get("prices") is not None:
            raw["prices"] = got["prices"]
        return prop.check_proposal(raw)

    @bp.post("/setup/api/propose")
    def propose():
        got = body(("meter", "flipped", "loads", "tariff", "prices", "apply"))
        if got is None:
            return bad(ValueError(_('send JSON {"meter", "flipped", "loads", "tariff", "prices", "apply"}')))
        with lock:
            try:
                p = proposal_of(got)
                if any(f.needs_password for f in found if f.section.get("host") in
                       [p["meter"].get("host")] + [ld["relay"].get("host") for ld in p["loads"]]):
                    raise ValueError(_("a device asks for a password: run sudo gestor setup on the Pi for it"))
                old_text, text = prop.new_settings(p, settings_path, clock.now())
                diff = writing.diff(old_text, text, settings_path)
                writing.validate(settings_path, text, None)
            except (ValueError, SetupError) as e:
                return bad(e)
            except OSError as e:
                return jsonify(error=_("cannot read %(file)s: %(why)s", file=e.filename or settings_path,
                                       why=e.strerror or e)), 500
            written = None
            if got.get("apply") is True:
                try:
                    written = str(prop.write_proposal(s.paths.state_dir, p))
                except OSError as e:
                    return jsonify(error=_("cannot write the proposal under %(dir)s: %(why)s", dir=s.paths.state_dir,
                                           why=e.strerror or e)), 500
                log.warning("web setup: settings proposed from %s: %s", request.remote_addr, written)
        return jsonify(diff=diff, proposal=written)

    @bp.get("/setup/api/result")
    def result():
        return jsonify(prop.read_result(s.paths.state_dir) or {})

    return bp


def register(app: Any, s: Settings, clock: Any) -> None:
    """Add the setup steps to the page's application."""
    app.register_blueprint(create_blueprint(s, clock))

