"""The web page's Flask application (served by cheroot, see :mod:`gestor.web`).

Endpoints (all but ``/login`` and ``/static`` need a session; the API answers 401 without one,
pages redirect to ``/login``; every POST needs the session's CSRF token, in the form field
``csrf_token`` or the ``X-CSRFToken`` header, Flask-WTF's ``CSRFProtect``):

| method, path | what |
|---|---|
| GET /login, POST /login | the login form; POST: :class:`gestor.web.auth.LoginGuard` (per address; 429, 503) |
| GET /manifest.webmanifest, /favicon.ico | the web app manifest and the icon (no session: a phone's home screen asks without one) |
| POST /logout | ends the session (server-side: a copied cookie is refused too) |
| GET / | the page (today, live) |
| GET /api/status | :func:`gestor.web.data.live` as JSON |
| GET /api/day?date=YYYY-MM-DD | that day's periods and power curves (InfluxDB); a day from 2000-01-01 to tomorrow |
| GET /day.csv?date=YYYY-MM-DD | that day's periods as CSV |
| POST /api/load/NAME | JSON ``{"mode": "auto"/"on"/"off", "for": "2h"}`` (``for`` <= 7 days): :func:`~gestor.runtime.overrides.apply_override` |
| POST /api/stop | JSON ``{"confirm": "STOP"}``: :func:`stop_loads.emergency_stop` |
| GET /docs/... | the documentation site, public (:mod:`gestor.web.docs`) |
| GET /bill?month=YYYY-MM, /api/bill?month=YYYY-MM | the month's bill and reconciliation (:mod:`gestor.web.bill_page`) |

A session ends at logout or ``web.session_hours`` after its login (:class:`gestor.web.auth.Sessions`).
Every input that is not understood is a 4xx with a sentence (JSON ``error``), never a 500; the
server's own limits (request size, slow clients) are in :mod:`gestor.web.serving`. The sentences,
the pages and the banners are in the request's language (:mod:`gestor.web.i18n`: ``?lang=``, its
cookie, ``Accept-Language``).

Refused requests (wrong password, no session, a forged or token-less POST, too many logins) are
logged on ``gestor.web`` with the client's address.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Callable

from flask import Flask, Response, jsonify, redirect, render_template, request, send_from_directory, session, url_for
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError, CSRFProtect, generate_csrf
from werkzeug.exceptions import HTTPException

from gestor.runtime.livestate import is_latched
from gestor.runtime.overrides import apply_override, parse_duration, read_overrides
from gestor.settings import Settings
from gestor.web import auth, docs, i18n
from gestor.web.data import History, HistoryError, StorePing, live, periods_csv

log = logging.getLogger("gestor.web")

FIRST_DAY = date(2000, 1, 1)           # the history's first day (the page asks no earlier)
MAX_OVERRIDE = timedelta(days=7)       # the longest "for" of a command (the page offers 30 min to 4 h)


def create_app(s: Settings, clock: Any, password_hash: str, secret_key: bytes, https: bool = False,
               stop: Callable[[str], Any] | None = None, docs_dir: Path = docs.DEFAULT_DIR) -> Flask:
    """The application. ``clock``: ``now()`` gives an aware datetime (injected: tests run the
    page on the daemons' simulated clock). ``stop(by)``: the emergency stop (default: the
    settings file's loads through :func:`stop_loads.emergency_stop`). ``docs_dir``: the built
    documentation site served at ``/docs/`` (:mod:`gestor.web.docs`)."""
    app = Flask("gestor.web", root_path=str(Path(__file__).parent))
    app.config.update(
        SECRET_KEY=secret_key,
        SESSION_COOKIE_NAME="gestor_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=https,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=s.web.session_hours),
        SESSION_REFRESH_EACH_REQUEST=False,  # the cookie ends with the session: session_hours after the login
        WTF_CSRF_TIME_LIMIT=None,          # the token lives as long as the session
        MAX_CONTENT_LENGTH=16 * 1024,
    )
    guard = auth.LoginGuard()
    sessions = auth.Sessions(s.paths.state_dir, s.web.session_hours)
    i18n.init(app)
    history = History(s)
    site_name = s.site_display_name or s.site
    ping = StorePing(s)
    if stop is None:
        stop = _stop_from(s)

    def client() -> str:
        return request.remote_addr or "?"

    # a session names the password it was opened with: a new password (and a restart) ends them all
    pw_tag = hashlib.sha256(password_hash.encode()).hexdigest()[:16]

    def logged_in() -> bool:
        return (session.get("user") == "admin" and session.get("pw") == pw_tag
                and sessions.valid(session.get("sid"), clock.now()))

    @app.before_request
    def _guard():
        if request.endpoint in ("login", "static", "manifest", "favicon", *docs.ENDPOINTS) or logged_in():
            return None
        if request.path in ("/", "/bill") and request.method == "GET":
            return redirect(url_for("login"))
        log.warning("web: refused %s %s from %s: no session", request.method, request.path, client())
        return jsonify(error=_("not logged in")), 401

    docs.register(app, docs_dir)
    csrf = CSRFProtect(app)  # after the session check: a request without a session is refused as such (401)
    from gestor.web import setup_page
    setup_page.register(app, s, clock)   # gestor setup's steps at /setup (owner only, CSRF as here)

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers.setdefault("Content-Security-Policy",
                                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                                "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        if request.endpoint != "static":
            resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    @app.errorhandler(CSRFError)
    def _csrf(e: CSRFError):
        log.warning("web: refused %s %s from %s: %s", request.method, request.path, client(), e.description)
        return jsonify(error=_("forged or expired request: %(why)s", why=i18n.csrf_words(e.description))), 400

    @app.errorhandler(HTTPException)
    def _http(e: HTTPException):  # 404, 405, 413, a body that is not a form...: a sentence, as JSON
        return jsonify(error=i18n.http_sentence(e.code, e.name, e.description)), e.code

    @app.errorhandler(Exception)
    def _bug(e: Exception):  # never a traceback to the client; the journal has it
        log.exception("web: %s %s from %s failed", request.method, request.path, client())
        return jsonify(error=_("internal error of gestor web (logged in its journal)")), 500

    def too_many(wait_s: int, why: str, code: int = 429):
        log.warning("web: refused login from %s: %s (try again in %d s)", client(), why, wait_s)
        words = {"too many wrong passwords from this address":
                 _("Too many wrong passwords from this address: try again in %(wait)s."),
                 "another login is being checked": _("Another login is being checked: try again in %(wait)s.")}
        text = words[why] % {"wait": i18n.wait_words(wait_s)}
        return render_template("login.html", error=text, site=site_name), code, {"Retry-After": str(wait_s)}

    @app.route("/login", methods=["GET", "POST"])
    def login():
        if request.method == "GET":
            return render_template("login.html", error=None, site=site_name)
        wait = guard.wait_s(client())
        if wait:  # refused before the form is even read: no hashing
            return too_many(wait, "too many wrong passwords from this address")
        try:
            ok = guard.check(client(), password_hash, request.form.get("password", ""))
        except auth.Busy:
            return too_many(round(guard.queue_s), "another login is being checked", 503)
        if ok is None:
            return too_many(guard.wait_s(client()) or 1, "too many wrong passwords from this address")
        if not ok:
            log.warning("web: wrong password from %s", client())
            return render_template("login.html", error=_("Wrong password."), site=site_name), 401
        sessions.close(session.get("sid"))
        session.clear()
        try:
            sid = sessions.open(clock.now())
        except OSError as e:
            log.error("web: cannot keep the session in %s: %s", sessions.path, e)
            return render_template("login.html", error=_("Cannot keep the session under %(dir)s: %(why)s.",
                                                         dir=s.paths.state_dir, why=e.strerror or e), site=site_name), 503
        session.permanent = True
        session["user"] = "admin"
        session["pw"] = pw_tag
        session["sid"] = sid
        log.info("web: login from %s", client())
        return redirect(url_for("index"), code=303)

    @app.post("/logout")
    def logout():
        try:
            sessions.close(session.get("sid"))
        except OSError as e:  # ended in memory; the file keeps it until this process restarts
            log.error("web: cannot write %s: %s", sessions.path, e)
        session.clear()
        return redirect(url_for("login"), code=303)

    @app.get("/")
    def index():
        return render_template("index.html", site=site_name, site_id=s.site, poll_s=s.web.poll_s, csrf=generate_csrf(),
                               loads=[(ld.name, ld.display_name or ld.name) for ld in s.loads],
                               genders={ld.name: ld.display_gender for ld in s.loads},
                               devices=", ".join(d.name for d in s.setpoints),
                               timezone=s.timezone, period_s=s.billing.period_s)

    @app.get("/manifest.webmanifest")
    def manifest():
        body = {"name": f"gestor {site_name}", "short_name": "gestor", "lang": i18n.lang(),
                "description": _("Your solar energy, hour by hour"), "start_url": "/", "scope": "/",
                "display": "standalone", "background_color": "#10233f", "theme_color": "#10233f",
                "icons": [{"src": url_for("static", filename=f"icons/icon-{n}.png"), "sizes": f"{n}x{n}",
                           "type": "image/png", "purpose": "any"} for n in (192, 512)]
                + [{"src": url_for("static", filename="icons/maskable-512.png"), "sizes": "512x512",
                    "type": "image/png", "purpose": "maskable"}]}
        return Response(json.dumps(body, ensure_ascii=False), mimetype="application/manifest+json")

    @app.get("/favicon.ico")
    def favicon():
        return send_from_directory(Path(app.static_folder) / "icons", "icon-32.png", mimetype="image/png",
                                   max_age=86400)

    @app.get("/api/status")
    def status():
        now = clock.now()
        store = ping()
        d = live(s, now, history, store)
        d["banners"] = i18n.banners(d, s, now, store)  # in the request's language
        names = {ld.name: ld.display_name or ld.name for ld in s.loads}
        genders = {ld.name: ld.display_gender for ld in s.loads}
        for ld in d["loads"]:
            ld["display_name"] = names.get(ld["name"], ld["name"])
            i18n.reason_fields(ld, genders.get(ld["name"], "m"))  # reason_text, reason_data, override_text
        d["site_display_name"] = site_name
        return jsonify(d)

    def _day() -> date | Response:
        text = request.args.get("date", "")
        try:
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
                raise ValueError
            d = date.fromisoformat(text)
        except ValueError:
            return jsonify(error=_("date %(date)s must be YYYY-MM-DD", date=repr(text[:20]))), 400
        last = clock.now().astimezone(s.tz).date() + timedelta(days=1)
        if not FIRST_DAY <= d <= last:
            return jsonify(error=_("date %(date)s must be from %(first)s to %(last)s", date=d, first=FIRST_DAY,
                                   last=last)), 400
        return d

    def _body(keys: tuple[str, ...]) -> dict | None:
        """The request's JSON object, with only ``keys`` (None: not JSON, not an object, other keys)."""
        if not request.is_json:
            return None
        try:
            body = json.loads(request.get_data(cache=False))
        except (ValueError, RecursionError):
            return None
        return body if isinstance(body, dict) and set(body) <= set(keys) else None

    @app.get("/api/day")
    def day():
        d = _day()
        if not isinstance(d, date):
            return d
        today = clock.now().astimezone(s.tz).date()
        try:
            return jsonify(date=d.isoformat(), periods=history.periods(d, today), curves=history.curves(d, today))
        except HistoryError as e:
            return jsonify(error=i18n.history_sentence(str(e))), 503

    def _csv_lang() -> Any:
        """The request's ``lang`` (else its Accept-Language) for a CSV, or the 400 answer."""
        try:
            return ranges.pick_lang(request.args.get("lang"), request.accept_languages)
        except ValueError:
            return jsonify(error=_("lang %(value)s must be one of %(allowed)s", value=repr(request.args["lang"][:10]),
                                   allowed=", ".join(i18n.LANGS))), 400

    @app.get("/day.csv")
    def day_csv():
        d = _day()
        if not isinstance(d, date):
            return d
        lang = _csv_lang()
        if not isinstance(lang, str):
            return lang
        try:
            text = periods_csv(history.periods(d, clock.now().astimezone(s.tz).date()), s, lang,
                               lambda m: ranges.header_text(m, lang))
        except HistoryError as e:
            return Response(f"{e}\n", 503, mimetype="text/plain")
        return Response(text, mimetype="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="gestor-{s.site}-{d}.csv"',
                                 "Content-Language": lang})

    # -- issue 27's data: periods beyond a day, prices, decisions (gestor.web.ranges) ---------
    from gestor.web import ranges

    def _view_day() -> tuple[str, date, None] | tuple[None, None, Any]:
        """(view, day, None) of the request, or (None, None, the 400 answer)."""
        view = request.args.get("view", "")
        if view not in ranges.VIEWS:
            return None, None, (jsonify(error=_("view %(value)s must be one of %(allowed)s", value=repr(view[:20]),
                                                allowed=", ".join(ranges.VIEWS))), 400)
        d = _day()
        return (view, d, None) if isinstance(d, date) else (None, None, d)

    @app.get("/api/range")
    def range_json():
        view, d, bad = _view_day()
        if view is None or d is None:
            return bad
        try:
            return jsonify(ranges.range_of(history, view, d, clock.now().astimezone(s.tz).date()))
        except HistoryError as e:
            return jsonify(error=i18n.history_sentence(str(e))), 503

    @app.get("/api/range.csv")
    def range_csv():
        view, d, bad = _view_day()
        if view is None or d is None:
            return bad
        lang = _csv_lang()
        if not isinstance(lang, str):
            return lang
        try:
            body = ranges.range_of(history, view, d, clock.now().astimezone(s.tz).date())
        except HistoryError as e:
            return jsonify(error=i18n.history_sentence(str(e))), 503
        return Response(ranges.range_csv(body, s, lang), mimetype="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{ranges.csv_name(view, d)}"',
                                 "Content-Language": lang})

    @app.get("/api/prices")
    def prices_json():
        d = _day()
        if not isinstance(d, date):
            return d
        return jsonify(ranges.prices_of(s, d, clock.now(), ranges.min_run_published(s)))

    @app.get("/api/decisions")
    def decisions_json():
        d = _day()
        if not isinstance(d, date):
            return d
        load = request.args.get("load") or None
        names = [ld.name for ld in s.loads]
        if load is not None and load not in names:
            return jsonify(error=_("no load named %(name)s: the loads are %(names)s", name=repr(load[:40]),
                                   names=", ".join(names))), 400
        try:
            rows = ranges.decisions_of(history, d, clock.now().astimezone(s.tz).date(), load)
        except HistoryError as e:
            return jsonify(error=i18n.history_sentence(str(e))), 503
        genders = {ld.name: ld.display_gender for ld in s.loads}
        # copies of the cached rows, with the reason in the request's language
        return jsonify([i18n.reason_fields(dict(row), genders.get(row.get("load"), "m")) for row in rows])

    @app.post("/api/load/<name>")
    def load_mode(name: str):
        if name not in {ld.name for ld in s.loads}:
            names = ", ".join(ld.name for ld in s.loads) or "[]"
            return jsonify(error=_("no load named %(name)s: the loads are %(names)s", name=repr(name[:40]),
                                   names=names)), 400
        body = _body(("mode", "for"))
        mode, for_text = (body or {}).get("mode"), (body or {}).get("for") or None
        if body is None or not isinstance(mode, str) or not (for_text is None or isinstance(for_text, str)):
            return jsonify(error=_('send JSON {"mode": "auto"|"on"|"off", "for": "2h"} (for: optional)')), 400
        if mode not in ("on", "off", "auto"):
            return jsonify(error=_("mode %(value)s must be on, off or auto", value=repr(mode[:20]))), 400
        if mode == "auto" and for_text:
            return jsonify(error=_("a duration goes with on or off, not auto")), 400
        if for_text is not None:
            try:
                if len(for_text) > 20:
                    raise ValueError
                duration = parse_duration(for_text)
            except (ValueError, OverflowError):
                return jsonify(error=_("for %(value)s must be a duration like 30m, 2h or 1h30m",
                                       value=repr(for_text[:20]))), 400
            if duration > MAX_OVERRIDE:
                return jsonify(error=_("for %(value)s is longer than the longest override, 7 days",
                                       value=repr(for_text))), 400
        try:
            text = apply_override(s, name, mode, for_text, clock.now(), by=f"web page from {client()}")
        except ValueError as e:
            return jsonify(error=str(e)), 400
        except OSError as e:
            log.error("web: cannot write the override: %s", e)
            return jsonify(error=_("cannot write the override under %(dir)s: %(why)s", dir=s.paths.state_dir,
                                   why=e.strerror or e)), 500
        log.warning("override from the web page (%s): %s", client(), text)
        load = next(ld for ld in s.loads if ld.name == name)
        text = i18n.override_sentence(load.display_name or name, load.display_gender, read_overrides(
            s.paths.state_dir, clock.now(), move_aside=False).get(name), s.tz)
        if is_latched(s.paths.state_dir):
            text += " " + _("The stop latch is set: the load stays off until it is released on the Pi")
        return jsonify(ok=True, message=text)

    @app.post("/api/stop")
    def emergency():
        body = _body(("confirm",))
        if body is None or body.get("confirm") != "STOP":
            return jsonify(error=_('confirm with {"confirm": "STOP"}')), 400
        log.warning("EMERGENCY STOP from the web page (%s)", client())
        outcome = stop(f"web page from {client()}")
        rows = [{"load": r.load, "driver": r.driver, "confirmed": r.confirmed, "error": r.error}
                for r in outcome.results]
        for r in outcome.results:
            if not r.confirmed:
                log.error("EMERGENCY STOP from the web page: load %s NOT CONFIRMED OFF: %s", r.load, r.error)
        latch_text = i18n.latch_sentence(outcome.latch)
        if outcome.ok:
            return jsonify(ok=True, latch=outcome.latch, latch_text=latch_text, loads=rows)
        # done, but not every load confirmed off (or no latch): the table says which; not a 2xx, so
        # that the page (which reads a 2xx as "Stopped") shows the error line instead
        bad = [f"{r.load} ({r.error or 'unknown state'})" for r in outcome.results if not r.confirmed]
        error = (_("not confirmed off: %(loads)s", loads="; ".join(bad)) if bad
                 else _("stop latch %(latch)s", latch=outcome.latch))
        return jsonify(ok=False, latch=outcome.latch, latch_text=latch_text, loads=rows, error=error), 502

    from gestor.web.bill_page import blueprint as bill_blueprint  # the bill's month view (issue 35)
    app.register_blueprint(bill_blueprint(s, clock, history, site_name))

    app.extensions["gestor"] = {"csrf": csrf, "guard": guard, "sessions": sessions, "history": history}
    return app


def _stop_from(s: Settings) -> Callable[[str], Any]:
    def stop(by: str):
        import stop_loads
        from gestor.settings import SettingsError
        try:
            plan = stop_loads.plan_from_file(str(s.source)) if s.source else stop_loads.Plan.of(s)
        except SettingsError as e:  # the file broke since the page started: its loads as it read them
            log.error("emergency stop: %s: %s; using the settings read at start", s.source, e)
            plan = stop_loads.Plan.of(s)
        extra = plan.add_saved()  # what managing runs may be an older file: its relays too
        if extra:
            log.warning("emergency stop: the stop plan managing saved also has %s: switched off too", ", ".join(extra))
        return stop_loads.emergency_stop(plan, by=by)
    return stop
