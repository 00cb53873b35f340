"""``gestor status``: one screen on what gestor is doing, from the files the daemons publish
(``run_dir/reading.json``, ``run_dir/managing.json``), the stop latch and overrides
(``state_dir``), the spool, and a ping of InfluxDB. Works with the daemons stopped (it says so)."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from gestor.core.reasons import say
from gestor.files import read_small_text
from gestor.i18n import DEFAULT, catalog, number
from gestor.i18n.reasons import render_text
from gestor.runtime.livestate import READING_FILE, is_latched, latch_path, pid_alive, read_managing
from gestor.runtime.overrides import read_overrides
from gestor.settings import Settings


def _age(now: datetime, iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return (now - datetime.fromisoformat(iso)).total_seconds()
    except ValueError:
        return None


def collect(s: Settings, now: datetime, ping: bool = True) -> dict[str, Any]:
    """Everything ``gestor status`` shows, as a dict (the ``--json`` output)."""
    out: dict[str, Any] = {"at": now.isoformat(), "site": s.site, "timezone": s.timezone}
    try:
        live = json.loads(read_small_text(Path(s.paths.run_dir) / READING_FILE))
        if not isinstance(live, dict):
            live = {}
    except (OSError, ValueError):
        live = {}
    readings = live.get("readings") or []
    last = readings[-1] if readings else None
    out["monitoring"] = {"running": pid_alive(live.get("pid")), "pid": live.get("pid"),
                         "failed_reads": live.get("errors", 0), "last_error": live.get("last_error"),
                         "last_error_at": live.get("last_error_at")}
    age = None if last is None else _age(now, last["at"])
    out["reading"] = None if last is None else {
        **last, "age_s": age, "stale": age is None or age > s.managing.stale_after_s}
    mg = read_managing(s.paths.run_dir) or {}
    out["managing"] = {"running": pid_alive(mg.get("pid")), "pid": mg.get("pid"), "published_at": mg.get("at"),
                       "age_s": _age(now, mg.get("at")), "policy": mg.get("policy"),
                       "eur_saved_today": mg.get("eur_saved_today")}
    out["mqtt"] = {"enabled": s.mqtt.enabled, "broker": f"{s.mqtt.host}:{s.mqtt.port}",
                   **({k: v for k, v in (mg.get("mqtt") or {}).items() if k in ("connected", "error")})}
    if mg:
        end = mg.get("period_end")
        out["period"] = {"start": mg.get("period_start"), "end": end, "balance_wh": mg.get("balance_wh"),
                         "projected_wh": mg.get("projected_wh"),
                         "remaining_s": max(-_age(now, end), 0.0) if end and _age(now, end) is not None else None}
        out["loads"] = mg.get("loads", {})
        sp = mg.get("setpoints")
        out["setpoints"] = sp if isinstance(sp, dict) else {}
        if not out["managing"]["running"] and not mg.get("stopped"):
            # killed (or never wrote its exit): what it published last is not what the relays do now
            out["loads"] = {n: {**ld, "on": None, "reason": say("managing_down", {"pid": str(mg.get('pid'))})}
                            for n, ld in out["loads"].items() if isinstance(ld, dict)}
            out["setpoints"] = {n: {**d, "setpoint_w": None, "reason": say("managing_down_device",
                                                                              {"pid": str(mg.get('pid'))})}
                                for n, d in out["setpoints"].items() if isinstance(d, dict)}
    else:
        out["period"], out["loads"], out["setpoints"] = None, {}, {}
    if is_latched(s.paths.state_dir):
        try:
            detail = read_small_text(latch_path(s.paths.state_dir), 4096).strip()
        except (OSError, ValueError) as e:
            detail = f"(cannot be read: {getattr(e, 'strerror', None) or e})"
        out["stop_latch"] = {"set": True, "detail": detail}
    else:
        out["stop_latch"] = {"set": False}
    out["overrides"] = {k: v.describe(s.tz) for k, v in read_overrides(s.paths.state_dir, now, move_aside=False).items()}
    spool = Path(s.paths.state_dir) / "spool"
    sizes = {d.name: sum(f.stat().st_size for f in d.glob("*.lp")) for d in spool.glob("*") if d.is_dir()}
    out["spool_bytes"] = sizes
    out["store"] = {"kind": s.store.kind}
    if s.store.kind != "none" and ping:
        out["store"].update(ping_store(s))
    return out


def ping_store(s: Settings) -> dict[str, Any]:
    """InfluxDB's ``/ping``: ``reachable``, ``url``, and ``version`` or ``error``."""
    from drivers.store.influx import StoreError, server_version
    try:
        return {"reachable": True, "version": server_version(s.store.url, 2.0), "url": s.store.url}
    except StoreError as e:
        return {"reachable": False, "error": str(e), "url": s.store.url}


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(max(seconds, 0))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def render(d: dict[str, Any], s: Settings, lang: str = DEFAULT) -> str:
    """The screen of ``gestor status`` in ``lang`` (es, ca, en; ValueError for another): its labels
    and words from the gettext catalogs (context ``status``: msgids are the English screen, byte
    for byte), numbers as the language writes them (:func:`gestor.i18n.number`); the reasons
    ("why:") and the overrides by :func:`gestor.i18n.reasons.render_text`, with each load's
    ``display_gender``; a reason of no known code, an error and the latch's detail as written."""
    tz = s.tz
    genders = {ld.name: ld.display_gender for ld in s.loads}
    t = catalog(lang)

    def _(msg: str) -> str:
        return t.pgettext("status", msg)

    def num(v: float, signed: bool = False) -> str:  # English as the screen always wrote it
        return (f"{v:+,.0f}" if signed else f"{v:,.0f}") if lang == "en" else number(v, lang, signed=signed)

    def label(word: str) -> str:
        return f"{_(word) if word else '':12s}"

    def local(iso: str | None, fmt: str = "%H:%M") -> str:
        return datetime.fromisoformat(iso).astimezone(tz).strftime(fmt) if iso else "?"

    now = datetime.fromisoformat(d["at"])
    lines = [_("gestor status  %(at)s  (site %(site)s)") % {"at": f"{now.astimezone(tz):%Y-%m-%d %H:%M:%S %Z}",
                                                            "site": d["site"]}]
    mon, mg = d["monitoring"], d["managing"]
    running = _("running (pid %(pid)s)")
    lines.append(label("daemons") + _("monitoring: %(monitoring)s   managing: %(managing)s") % {
        "monitoring": running % {"pid": mon["pid"]} if mon["running"] else _("NOT RUNNING"),
        "managing": running % {"pid": mg["pid"]} if mg["running"] else _("NOT RUNNING")})
    r = d["reading"]
    if r is None:
        lines.append(label("meter") + _("no reading published (monitoring never ran here?)"))
    else:
        net = r["net_w"]
        word = _("exporting") if net > 0 else _("importing") if net < 0 else _("balanced")
        parts = [_("net %(power)s W (%(word)s)") % {"power": num(net, signed=True), "word": word}]
        if r.get("production_w") is not None:
            parts.append(_("production %(power)s W") % {"power": num(r["production_w"])})
        if r.get("consumption_w") is not None:
            parts.append(_("consumption %(power)s W") % {"power": num(r["consumption_w"])})
        lines.append(label("meter") + _("%(parts)s; read %(age)s ago") % {"parts": ", ".join(parts),
                                                                         "age": _dur(r["age_s"])}
                     + (_("  STALE: loads are kept off") if r["stale"] else ""))
    if mon.get("last_error") and mon.get("failed_reads"):
        lines.append(label("") + _("last failed read (%(at)s): %(error)s") % {
            "at": local(mon["last_error_at"], "%H:%M:%S"), "error": mon["last_error"]})
    p = d["period"]
    if p:
        old = "" if mg["running"] else _("   (managing's last state, %(age)s old)") % {"age": _dur(mg["age_s"])}
        left = _("over") if p["remaining_s"] == 0 else _("%(time)s left") % {"time": _dur(p["remaining_s"])}
        lines.append(label("period") + _("%(start)s-%(end)s: balance %(balance)s Wh, projected %(projected)s Wh, "
                                         "%(left)s   [policy %(policy)s]%(old)s") % {
            "start": local(p["start"]), "end": local(p["end"]), "balance": num(p["balance_wh"], signed=True),
            "projected": num(p["projected_wh"], signed=True), "left": left, "policy": mg["policy"], "old": old})
    else:
        lines.append(label("period") + _("managing has published nothing (never ran here?)"))
    if not s.loads:  # a house of setpoint devices only (issue 33)
        lines.append(label("loads") + _("none (loads: []): the setpoint devices below are all gestor drives"))
    why = f"{'':12s}{'':14s} " + _("why: %(reason)s")
    first = True
    for name, ld in d["loads"].items():
        ctx = "status feminine" if genders.get(name) == "f" else "status"  # la depuradora: encendida
        state = t.pgettext(ctx, "?UNKNOWN" if ld["on"] is None else ("ON" if ld["on"] else "off"))
        since = (_("since %(at)s (%(age)s)") % {"at": local(ld["since"]), "age": _dur(_age(now, ld["since"]))}
                 if ld.get("since") else _("since start"))
        extra = (_(", %(power)s W measured") % {"power": f"{ld['measured_power_w']:.0f}"}
                 if ld.get("measured_power_w") is not None else "")
        fails = (t.npgettext("status", "  RELAY FAILED %(num)sx", "  RELAY FAILED %(num)sx", ld["failures"])
                 % {"num": ld["failures"]} if ld.get("failures") else "")
        lines.append(label("loads" if first else "") + f"{name:14s} {state:8s} "
                     + _("%(since)s, switches this period: %(num)s") % {"since": since, "num": ld["switches_in_period"]}
                     + extra + fails)
        lines.append(why % {"reason": render_text(ld["reason"], lang, genders.get(name, "m"))})
        first = False
    first = True
    for name, dv in d.get("setpoints", {}).items():
        w = dv.get("setpoint_w")
        state = _("?UNKNOWN") if w is None else (_("idle") if dv.get("idle") else f"{num(w, signed=True)} W")
        soc = _(", state of charge %(pct)s %%") % {"pct": f"{dv['soc_pct']:.0f}"} if dv.get("soc_pct") is not None else ""
        car = "" if dv.get("connected") is None else (_(", car plugged in") if dv["connected"] else _(", no car"))
        rng = (_(", range %(lo)s..%(hi)s W") % {"lo": num(dv["min_w"], signed=True), "hi": num(dv["max_w"], signed=True)}
               if dv.get("min_w") is not None and dv.get("max_w") is not None else "")
        fails = (t.npgettext("status", "  DEVICE FAILED %(num)sx", "  DEVICE FAILED %(num)sx", dv["failures"])
                 % {"num": dv["failures"]} if dv.get("failures") else "")
        lines.append(label("setpoints" if first else "") + f"{name:14s} {state}{soc}{car}{rng}{fails}")
        lines.append(why % {"reason": render_text(dv.get("reason", ""), lang)})
        first = False
    if mg.get("eur_saved_today") is not None:
        eur = f"{mg['eur_saved_today']:.2f}" if lang == "en" else number(mg["eur_saved_today"], lang, 2)
        lines.append(label("money") + _("EUR %(eur)s saved today so far (closed periods, against the same periods "
                                        "without gestor)") % {"eur": eur})
    latch = d["stop_latch"]
    lines.append(label("stop latch") + (_("SET: %(detail)s (stop-loads --release)") % {"detail": latch["detail"]}
                                        if latch["set"] else _("not set")))
    ov = d["overrides"]
    lines.append(label("overrides") + ("; ".join(f"{k}: {render_text(v, lang, genders.get(k, 'm'))}"
                                                 for k, v in ov.items()) if ov else _("none")))
    sp = d["spool_bytes"]
    spool = ", ".join(f"{k} {v / 1000:.1f} kB" if lang == "en" else f"{k} {number(v / 1000, lang, 1)} kB"
                      for k, v in sp.items() if v) or _("empty")
    st = d["store"]
    if st["kind"] == "none":
        lines.append(label("store") + _("none (store.kind: none); spool %(spool)s") % {"spool": spool})
    elif "reachable" not in st:
        lines.append(label("store") + _("%(kind)s; spool %(spool)s") % {"kind": st["kind"], "spool": spool})
    elif st["reachable"]:
        lines.append(label("store") + _("InfluxDB %(url)s reachable (version %(version)s); spool %(spool)s") % {
            "url": st["url"], "version": st["version"], "spool": spool})
    else:
        lines.append(label("store") + _("InfluxDB NOT REACHABLE: %(error)s; spool %(spool)s (replayed when it is "
                                        "back)") % {"error": st["error"], "spool": spool})
    mq = d["mqtt"]
    if mq["enabled"]:
        if mq.get("connected"):
            lines.append(label("mqtt") + _("connected to %(broker)s (managing)") % {"broker": mq["broker"]})
        else:
            lines.append(label("mqtt") + _("NOT CONNECTED to %(broker)s: %(error)s (control goes on; retrying)") % {
                "broker": mq["broker"], "error": mq.get("error") or _("managing has not said")})
    else:
        lines.append(label("mqtt") + _("off (mqtt.enabled: false)"))
    return "\n".join(lines)
