"""The page's languages: Spanish, Catalan and English, with Flask-Babel and gettext catalogs
(``translations/{es,ca}/LC_MESSAGES/messages.po``, compiled to ``.mo`` and committed beside them;
docs/site/en/web.md, "Languages", says how a translator updates them with ``pybabel``).

The language of a request: ``?lang=es|ca|en`` (the switch on the page, also on the login page;
kept a year in the ``gestor_lang`` cookie), else the cookie, else the browser's
``Accept-Language``, else English. The JSON errors and the banners of ``/api/status`` are in the
request's language; the page's script gets its strings from the template (``I18N`` block) and
formats numbers, dates and euros with the browser's ``Intl`` in :data:`BROWSER_LOCALES`.

Words that come from the daemons (a load's reason, a decision's reason, an override's text) are
managing's English journal texts; :func:`reason_fields` adds each one's sentence in the request's
language (:mod:`gestor.i18n.reasons`: the reason codes of :mod:`gestor.core.reasons`, with the
load's ``display_gender``), and the text stays beside it for the journal.
"""
from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Any

from flask import Flask, Response, request
from flask_babel import Babel, get_locale, gettext as _, ngettext

from gestor.core.guards import Override
from gestor.core.reasons import as_data
from gestor.i18n.reasons import render_text

LANGS = ("es", "ca", "en")                           # the catalogs (English is the source)
BROWSER_LOCALES = {"es": "es-ES", "ca": "ca-ES", "en": "en-GB"}  # Intl's locale per language
NAMES = {"es": "Español", "ca": "Català", "en": "English"}  # each in its own language (the switch)
COOKIE = "gestor_lang"
DEFAULT = "en"


def choose() -> str:
    """The request's language (see the module)."""
    asked = request.args.get("lang")
    if asked in LANGS:
        return asked
    kept = request.cookies.get(COOKIE)
    if kept in LANGS:
        return kept
    return request.accept_languages.best_match(LANGS) or DEFAULT


def lang() -> str:
    """The language of this request, as one of :data:`LANGS`."""
    loc = get_locale()
    return loc.language if loc is not None and loc.language in LANGS else DEFAULT


def init(app: Flask) -> None:
    """Flask-Babel on ``app`` (catalogs under ``translations/`` beside the application) and the
    switch's cookie."""
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT)
    Babel(app, locale_selector=choose)

    @app.after_request
    def _keep(resp: Response) -> Response:
        asked = request.args.get("lang")
        if asked in LANGS and request.cookies.get(COOKIE) != asked:
            resp.set_cookie(COOKIE, asked, max_age=365 * 86400, samesite="Lax", httponly=True,
                            secure=bool(app.config.get("SESSION_COOKIE_SECURE")))
        resp.vary.add("Accept-Language")
        resp.vary.add("Cookie")
        return resp

    @app.context_processor
    def _langs() -> dict[str, Any]:
        return {"lang": lang(), "langs": [(code, NAMES[code]) for code in LANGS],
                "browser_locale": BROWSER_LOCALES[lang()]}


def wait_words(seconds: int) -> str:
    """A wait as the login page says it: "45 segundos", "12 minutes" (rounded up from 120 s)."""
    if seconds >= 120:
        n = math.ceil(seconds / 60)
        return ngettext("%(num)d minute", "%(num)d minutes", n)
    return ngettext("%(num)d second", "%(num)d seconds", seconds)


def latch_words(detail: str, now: datetime, tz) -> str:
    """The stop latch file's ``{"at", "by"}`` in words, local time (the date too when not today):
    " at 11:25 by web page from 192.168.1.20"; the file's text, shortened, when it is not that."""
    try:
        raw = json.loads(detail)
        at = datetime.fromisoformat(raw["at"]).astimezone(tz)
        by = str(raw.get("by") or "")[:80]
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return f" ({detail[:120]})" if detail else ""
    when = f"{at:%H:%M}" if at.date() == now.astimezone(tz).date() else f"{at:%Y-%m-%d %H:%M}"
    text = " " + _("at %(when)s", when=when)
    return text + (" " + _("by %(who)s", who=origin_words(by)) if by else "")


def origin_words(by: str) -> str:
    """Who set the stop latch, in the request's language: the origins gestor writes (the web
    page's ``web page from ADDRESS``, managing's ``stop button on GPIO N`` and ``MQTT``);
    another (stop-loads' user and host) as it is."""
    if by.startswith("web page from "):
        return _("the web page from %(address)s", address=by[len("web page from "):])
    if by.startswith("stop button on GPIO "):
        return _("the stop button (GPIO %(pin)s)", pin=by[len("stop button on GPIO "):])
    if by == "MQTT":
        return _("Home Assistant (MQTT)")
    return by


def banners(d: dict, s, now: datetime, store_ping: dict) -> list[str]:
    """The banners of :func:`gestor.web.data.live`'s state ``d``, in the request's language: the
    stop latch, a daemon down, the meter, InfluxDB, a relay failing."""
    out = []
    latch = d.get("latch") or {}
    if latch.get("set"):
        out.append(_("STOP LATCH SET%(when)s: every load is kept off. Release it on the Pi: "
                     "sudo stop-loads --release", when=latch_words(latch.get("detail") or "", now, s.tz)))
    for name, running in (d.get("daemons") or {}).items():
        if not running:
            out.append(_("gestor %(daemon)s is not running (sudo systemctl status gestor-%(daemon)s)", daemon=name))
    m = d["meter"]
    if m.get("age_s") is None and m.get("net_w") is None:
        out.append(_("No meter reading has been published"))
    elif m.get("stale"):
        out.append(_("The meter is stale: last reading %(age)s s ago; loads are kept off",
                     age=f"{m['age_s']:.0f}" if m.get("age_s") is not None else "?"))
    if s.store.kind != "none" and not store_ping.get("reachable", True):
        error = str(store_ping.get("error") or "?")
        technical = error.split(" unreachable: ", 1)[1] if " unreachable: " in error else error  # the OS's words
        out.append(_("InfluxDB at %(url)s does not answer (%(error)s): the readings wait in the spool",
                     url=store_ping.get("url") or s.store.url, error=technical[:200]))
    names = {ld.name: ld.display_name or ld.name for ld in s.loads}
    for ld in d.get("loads") or []:
        if ld.get("failures"):
            out.append(_("Relay of %(load)s failing (%(n)d in a row): it is retried",
                         load=names.get(ld["name"], ld["name"]), n=ld["failures"]))
    return out


def http_sentence(code: int | None, name: str, description: str | None) -> str:
    """An HTTP error as one sentence in the request's language (werkzeug's English for the rare
    ones)."""
    known = {
        400: _("Bad request: gestor web did not understand what was sent."),
        404: _("Not found: there is nothing at this address."),
        405: _("This address does not answer that method."),
        413: _("The request is too large."),
        429: _("Too many requests: wait a moment and try again."),
    }
    return known.get(code or 0, f"{name}: {description}")


UNIT = re.compile(r"(\d) (W|Wh|kWh|h)\b")  # a number and its unit: a no-break space between them, as the page's


def reason_fields(row: dict, gender: str = "m") -> dict:
    """``row`` (a load of ``/api/status`` or a decision) with ``reason_text`` (its ``reason`` in
    the request's language), ``reason_data`` (code and parameters, None for a text of no code)
    and, for a load with an override, ``override_text``; returned for convenience."""
    reason = row.get("reason") or ""
    row["reason_text"] = UNIT.sub("\\1\u00a0\\2", render_text(reason, lang(), gender))  # "1.250 W" never parts
    row["reason_data"] = as_data(reason)
    if row.get("override"):
        row["override_text"] = render_text(row["override"], lang(), gender)
    return row


def override_sentence(shown: str, gender: str, ov: Override | None, tz) -> str:
    """What the page says after a mode is applied, in the request's language: the load, then its
    override (:meth:`gestor.core.guards.Override.describe`, rendered) or back to auto."""
    if ov is None:
        return _("%(load)s: back to auto (the policy decides) from managing's next cycle", load=shown)
    return _("%(load)s: %(what)s, from managing's next cycle (the stop latch and a stale meter still switch it "
             "off)", load=shown, what=render_text(ov.describe(tz), lang(), gender))


def latch_sentence(latch: str | None) -> str:
    """The stop's latch (:func:`gestor.runtime.stopping`'s ``"SET (path): ..."``, ``"NOT SET"`` or
    None) in the request's language."""
    if latch and latch.startswith("SET"):
        return _("set: managing keeps every load off until sudo stop-loads --release")
    if latch is None:
        return _("not set (as asked)")
    return _("NOT SET: %(detail)s", detail=latch)


def csrf_words(description: str | None) -> str:
    """Flask-WTF's reason for refusing a form (flask_wtf/csrf.py 1.x: ``validate_csrf`` and
    ``protect``) in the request's language; another text as it is."""
    known = {
        "The CSRF token is missing.": _("the form's token is missing (reload the page)"),
        "The CSRF session token is missing.": _("the session's token is missing (log in again)"),
        "The CSRF token has expired.": _("the form's token has expired (reload the page)"),
        "The CSRF token is invalid.": _("the form's token is not valid (reload the page)"),
        "The CSRF tokens do not match.": _("the form's token does not match the session (reload the page)"),
        "The referrer header is missing.": _("the browser sent no Referer header"),
        "The referrer does not match the host.": _("the request came from another site"),
    }
    return known.get(description or "", description or "")


def history_sentence(error: str) -> str:
    """The history's failure (:class:`gestor.web.data.HistoryError`: InfluxDB's own words) as a
    sentence in the request's language, the technical part kept."""
    return _("The history is not available now: %(error)s", error=error[:300])
