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
from gestor.i18n import DEFAULT
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
    """The screen of ``gestor status``; the reasons ("why:") and the overrides in ``lang`` (es,
    ca, en: :func:`gestor.i18n.reasons.render_text`, with each load's ``display_gender``); a
    reason of no known code as managing wrote it."""
    tz = s.tz
    genders = {ld.name: ld.display_gender for ld in s.loads}

    def local(iso: str | None, fmt: str = "%H:%M") -> str:
        return datetime.fromisoformat(iso).astimezone(tz).strftime(fmt) if iso else "?"

    now = datetime.fromisoformat(d["at"])
    lines = [f"gestor status  {now.astimezone(tz):%Y-%m-%d %H:%M:%S %Z}  (site {d['site']})"]
    mon, mg = d["monitoring"], d["managing"]
    lines.append(f"daemons     monitoring: {'running (pid %s)' % mon['pid'] if mon['running'] else 'NOT RUNNING'}"
                 f"   managing: {'running (pid %s)' % mg['pid'] if mg['running'] else 'NOT RUNNING'}")
    r = d["reading"]
    if r is None:
        lines.append("meter       no reading published (monitoring never ran here?)")
    else:
        net = r["net_w"]
        word = "exporting" if net > 0 else "importing" if net < 0 else "balanced"
        parts = [f"net {net:+,.0f} W ({word})"]
        if r.get("production_w") is not None:
            parts.append(f"production {r['production_w']:,.0f} W")
        if r.get("consumption_w") is not None:
            parts.append(f"consumption {r['consumption_w']:,.0f} W")
        lines.append(f"meter       {', '.join(parts)}; read {_dur(r['age_s'])} ago"
                     + ("  STALE: loads are kept off" if r["stale"] else ""))
    if mon.get("last_error") and mon.get("failed_reads"):
        lines.append(f"            last failed read ({local(mon['last_error_at'], '%H:%M:%S')}): {mon['last_error']}")
    p = d["period"]
    if p:
        old = "" if mg["running"] else f"   (managing's last state, {_dur(mg['age_s'])} old)"
        left = "over" if p["remaining_s"] == 0 else f"{_dur(p['remaining_s'])} left"
        lines.append(f"period      {local(p['start'])}-{local(p['end'])}: balance {p['balance_wh']:+,.0f} Wh, "
                     f"projected {p['projected_wh']:+,.0f} Wh, {left}"
                     f"   [policy {mg['policy']}]{old}")
    else:
        lines.append("period      managing has published nothing (never ran here?)")
    if not s.loads:  # a house of setpoint devices only (issue 33)
        lines.append("loads       none (loads: []): the setpoint devices below are all gestor drives")
    first = True
    for name, ld in d["loads"].items():
        state = "?UNKNOWN" if ld["on"] is None else ("ON" if ld["on"] else "off")
        since = f"since {local(ld['since'])} ({_dur(_age(now, ld['since']))})" if ld.get("since") else "since start"
        extra = f", {ld['measured_power_w']:.0f} W measured" if ld.get("measured_power_w") is not None else ""
        fails = f"  RELAY FAILED {ld['failures']}x" if ld.get("failures") else ""
        lines.append(f"{'loads' if first else '':12s}{name:14s} {state:8s} {since}, switches this period: "
                     f"{ld['switches_in_period']}{extra}{fails}")
        lines.append(f"{'':12s}{'':14s} why: {render_text(ld['reason'], lang, genders.get(name, 'm'))}")
        first = False
    first = True
    for name, dv in d.get("setpoints", {}).items():
        w = dv.get("setpoint_w")
        state = "?UNKNOWN" if w is None else ("idle" if dv.get("idle") else f"{w:+,.0f} W")
        soc = f", state of charge {dv['soc_pct']:.0f} %" if dv.get("soc_pct") is not None else ""
        car = "" if dv.get("connected") is None else (", car plugged in" if dv["connected"] else ", no car")
        rng = (f", range {dv['min_w']:+,.0f}..{dv['max_w']:+,.0f} W" if dv.get("min_w") is not None
               and dv.get("max_w") is not None else "")
        fails = f"  DEVICE FAILED {dv['failures']}x" if dv.get("failures") else ""
        lines.append(f"{'setpoints' if first else '':12s}{name:14s} {state}{soc}{car}{rng}{fails}")
        lines.append(f"{'':12s}{'':14s} why: {render_text(dv.get('reason', ''), lang)}")
        first = False
    if mg.get("eur_saved_today") is not None:
        lines.append(f"money       EUR {mg['eur_saved_today']:.2f} saved today so far (closed periods, against the same "
                     f"periods without gestor)")
    latch = d["stop_latch"]
    lines.append(f"stop latch  {'SET: ' + latch['detail'] + ' (stop-loads --release)' if latch['set'] else 'not set'}")
    ov = d["overrides"]
    lines.append("overrides   " + ("; ".join(f"{k}: {render_text(v, lang, genders.get(k, 'm'))}" for k, v in ov.items())
                                   if ov else "none"))
    sp = d["spool_bytes"]
    spool = ", ".join(f"{k} {v / 1000:.1f} kB" for k, v in sp.items() if v) or "empty"
    st = d["store"]
    if st["kind"] == "none":
        lines.append(f"store       none (store.kind: none); spool {spool}")
    elif "reachable" not in st:
        lines.append(f"store       {st['kind']}; spool {spool}")
    elif st["reachable"]:
        lines.append(f"store       InfluxDB {st['url']} reachable (version {st['version']}); spool {spool}")
    else:
        lines.append(f"store       InfluxDB NOT REACHABLE: {st['error']}; spool {spool} (replayed when it is back)")
    mq = d["mqtt"]
    if mq["enabled"]:
        if mq.get("connected"):
            lines.append(f"mqtt        connected to {mq['broker']} (managing)")
        else:
            lines.append(f"mqtt        NOT CONNECTED to {mq['broker']}: {mq.get('error') or 'managing has not said'}"
                         f" (control goes on; retrying)")
    else:
        lines.append("mqtt        off (mqtt.enabled: false)")
    return "\n".join(lines)
