"""Reasons in the reader's language: :func:`render` writes a reason code and its parameters
(:data:`gestor.core.reasons.JOURNAL`, the one registry) as a sentence in Spanish, Catalan or
English from the gettext catalogs, with plurals (``ngettext``: "1 vez", "3 veces"; durations
"1 minuto", "5 minutos") and the load's grammatical gender (``pgettext`` contexts
``masculine``/``feminine``: "encendido a mano" for el termo, "encendida a mano" for la bomba).

:func:`render_text` does the same for a journal text (what managing and InfluxDB's
``decision.reason`` hold), through :func:`gestor.core.reasons.parse`; a text no code matches (an
older wording, a relay's own error) is returned as it is. The sentences' English is the reader's,
not the journal's: the journal keeps the settings' words (``on_above``, ``stale_after``) for the
one who tunes them."""
from __future__ import annotations

import math
from typing import Callable

from gestor.core.reasons import JOURNAL, Param, parse
from gestor.i18n import DEFAULT, GENDERS, catalog, number

Sentence = Callable[["Words"], str]


class Words:
    """What a sentence needs: the catalog's functions, the parameters as ``lang`` writes them
    and the load's gender."""

    def __init__(self, lang: str, params: dict[str, Param], gender: str) -> None:
        self.lang, self.p = lang, params
        self.t = catalog(lang)
        self.ctx = "feminine" if gender == "f" else "masculine"

    def g(self, masculine: str, feminine: str) -> str:
        """The sentence for the load's gender (both are looked up: the extractor needs each
        ``pgettext`` call with its context written out)."""
        return feminine if self.ctx == "feminine" else masculine

    def f(self, key: str) -> float:
        v = self.p.get(key, math.nan)
        return float(v) if not isinstance(v, str) else math.nan

    def s(self, key: str) -> str:
        return str(self.p.get(key, "?"))

    def w(self, key: str) -> str:
        """A power, W."""
        return f"{number(self.f(key), self.lang)} W"

    def wh(self, key: str, signed: bool = True) -> str:
        """An energy, Wh (signed: a balance)."""
        return f"{number(self.f(key), self.lang, signed=signed)} Wh"

    def h(self, key: str) -> str:
        """Hours with two decimals ("1,50 h")."""
        return f"{number(self.f(key), self.lang, 2)} h"

    def dur(self, key: str) -> str:
        """A duration in words, with its plural: under 2 minutes in seconds, else in minutes."""
        return duration(self.f(key), self.lang)


def duration(seconds: float, lang: str) -> str:
    """``seconds`` in words in ``lang``: "45 segundos", "1 minuto", "12 minutes" (rounded; from
    120 s in minutes). The catalog's plural forms (the page's login waits use the same words)."""
    t = catalog(lang)
    if not math.isfinite(seconds):
        return "?"
    if seconds >= 120:
        n = int(round(seconds / 60))
        return t.ngettext("%(num)d minute", "%(num)d minutes", n) % {"num": n}
    n = int(round(seconds))
    return t.ngettext("%(num)d second", "%(num)d seconds", n) % {"num": n}


def _max_switches(x: Words) -> str:
    n = int(x.f("max_switches")) if math.isfinite(x.f("max_switches")) else 0
    return x.t.ngettext("it already switched %(num)d time this period, the most allowed: off until the period ends",
                        "it already switched %(num)d times this period, the most allowed: off until the period ends",
                        n) % {"num": n}


def _setpoint(x: Words) -> str:
    """A setpoint device's command, with its affixes (gestor.core.reasons.PREFIXES/SUFFIXES):
    the reversal and the dwell that holds one back. The household's controls as written."""
    out = x.t.gettext("the period has %(balance)s banked (target %(target)s), %(surplus)s of surplus left by the "
                      "loads, %(left)s left (range %(lo)s to %(hi)s)") % {
        "balance": x.wh("balance_wh"), "target": x.wh("target_wh"), "surplus": f"{number(x.f('surplus_w'), x.lang, signed=True)} W",
        "left": x.dur("remaining_s"), "lo": f"{number(x.f('lo_w'), x.lang, signed=True)} W",
        "hi": f"{number(x.f('hi_w'), x.lang, signed=True)} W"}
    if "control" in x.p:
        out = x.t.gettext("%(reason)s; set by the household: %(control)s") % {"reason": out, "control": x.s("control")}
    if "reversal" in x.p:
        out = x.t.gettext("it turns direction: %(reason)s") % {"reason": out}
    if "wait_s" in x.p:
        out = x.t.gettext("%(reason)s; no turn of direction for %(wait)s more (at least %(least)s between turns)") % {
            "reason": out, "wait": x.dur("wait_s"), "least": x.dur("min_reversal_s")}
    return out


def _why(x: Words, key: str) -> str:
    """A nested reason (a lying relay's ``why``, ``before``) in ``x``'s language; a text of no
    code as it is."""
    return render_text(x.s(key), x.lang)


SENTENCES: dict[str, Sentence] = {
    "ttc_on": lambda x: x.t.gettext("the projected surplus, %(projected)s, runs its %(power)s for the %(left)s "
                                    "left in the period") % {
        "projected": x.wh("projected_wh"), "power": x.w("load_w"), "left": x.dur("remaining_s")},
    "ttc_off": lambda x: x.t.gettext("without it the period would end at %(end)s, at or below %(limit)s") % {
        "end": x.wh("end_wh"), "limit": x.wh("end_at_wh")},
    "hysteresis_on": lambda x: x.t.gettext("the balance, %(balance)s, reached %(limit)s") % {
        "balance": x.wh("balance_wh"), "limit": x.wh("on_above_wh")},
    "hysteresis_off": lambda x: x.t.gettext("the balance, %(balance)s, fell to %(limit)s") % {
        "balance": x.wh("balance_wh"), "limit": x.wh("off_below_wh")},
    "min_on_time_on": lambda x: x.t.gettext("the balance, %(balance)s, runs its %(power)s for %(run)s, at least "
                                            "%(least)s") % {
        "balance": x.wh("balance_wh"), "power": x.w("load_w"), "run": x.dur("run_s"), "least": x.dur("min_on_s")},
    "min_on_time_off": lambda x: x.t.gettext("it ran %(ran)s and the balance, %(balance)s, is short of the %(need)s "
                                             "another run needs") % {
        "ran": x.dur("ran_s"), "balance": x.wh("balance_wh"), "need": x.wh("need_wh", signed=False)},
    "steady_on": lambda x: x.t.gettext("a steady surplus of %(surplus)s runs its %(power)s to the end of the "
                                       "period, which ends at %(end)s") % {
        "surplus": x.w("surplus_w"), "power": x.w("load_w"), "end": x.wh("end_wh")},
    "steady_off": lambda x: x.t.gettext("a steady surplus of %(surplus)s (%(doubtful)s, counting its doubt): even "
                                        "without it the period would end at %(end)s") % {
        "surplus": x.w("surplus_w"), "doubtful": x.w("doubtful_w"), "end": x.wh("end_wh")},
    "latch": lambda x: x.t.gettext("the stop latch is set (release it on the Pi: sudo stop-loads --release)"),
    "stale_none": lambda x: x.t.gettext("no meter reading: every load is kept off"),
    "stale_future": lambda x: x.t.gettext("the last meter reading is dated %(ahead)s in the future (did the clock "
                                          "step?): every load is kept off") % {"ahead": x.dur("ahead_s")},
    "stale_old": lambda x: x.t.gettext("the last meter reading is %(age)s old, over the %(limit)s allowed: every "
                                       "load is kept off") % {"age": x.dur("age_s"), "limit": x.dur("stale_after_s")},
    "override_on": lambda x: x.g(x.t.pgettext("masculine", "switched on by hand until set back to auto"),
          x.t.pgettext("feminine", "switched on by hand until set back to auto")),
    "override_off": lambda x: x.g(x.t.pgettext("masculine", "switched off by hand until set back to auto"),
          x.t.pgettext("feminine", "switched off by hand until set back to auto")),
    "override_on_until": lambda x: x.g(x.t.pgettext("masculine", "switched on by hand until %(until)s"),
          x.t.pgettext("feminine", "switched on by hand until %(until)s")) % {"until": x.s("until")},
    "override_off_until": lambda x: x.g(x.t.pgettext("masculine", "switched off by hand until %(until)s"),
          x.t.pgettext("feminine", "switched off by hand until %(until)s")) % {
        "until": x.s("until")},
    "override_ended": lambda x: x.t.gettext("the manual override ended: back to auto"),
    "windows": lambda x: x.t.gettext("outside its hours (%(windows)s)") % {"windows": x.s("windows")},
    "max_switches": _max_switches,
    "min_on_hold": lambda x: x.g(x.t.pgettext("masculine", "kept on: on for %(held)s, at least %(least)s"),
          x.t.pgettext("feminine", "kept on: on for %(held)s, at least %(least)s")) % {
        "held": x.dur("held_s"), "least": x.dur("min_on_s")},
    "min_off_hold": lambda x: x.g(x.t.pgettext("masculine", "kept off: off for %(held)s, at least %(least)s"),
          x.t.pgettext("feminine", "kept off: off for %(held)s, at least %(least)s")) % {
        "held": x.dur("held_s"), "least": x.dur("min_off_s")},
    "min_run": lambda x: x.t.gettext("daily minimum: %(done)s of %(need)s run, %(left)s (%(energy)s) still needed "
                                     "by %(by)s; now (%(price)s) is among the cheapest periods left") % {
        "done": x.h("done_h"), "need": x.h("need_h"), "left": x.h("left_h"), "energy": x.wh("left_wh", signed=False),
        "by": x.s("by"), "price": x.s("price")},
    "held": lambda x: x.g(x.t.pgettext("masculine", "held by a rule (its hours, or switched off outside gestor)"),
          x.t.pgettext("feminine", "held by a rule (its hours, or switched off outside gestor)")),
    "start": lambda x: x.t.gettext("gestor started: every load off until the policy decides"),
    "exit": lambda x: x.t.gettext("gestor stopped: every load off"),
    "stop_button": lambda x: x.t.gettext("the stop button was pressed"),
    "stop_mqtt": lambda x: x.t.gettext("emergency stop from Home Assistant (MQTT)"),
    "latch_off": lambda x: x.t.gettext("the stop latch is set: every load off until sudo stop-loads --release"),
    "latch_found_off": lambda x: x.g(x.t.pgettext("masculine", "found off under the stop latch: off until sudo stop-loads --release"),
          x.t.pgettext("feminine", "found off under the stop latch: off until sudo stop-loads --release")),
    "latch_released": lambda x: x.t.gettext("the stop latch is released: the policy decides"),
    "relay_unknown": lambda x: x.t.gettext("the relay's state is unknown after an error: off until it confirms"),
    "found_off": lambda x: x.g(x.t.pgettext("masculine", "found off at %(at)s (its own button or app, or a relay that lies): left off until %(until)s; the meter is to see its %(power)s go"),
          x.t.pgettext("feminine", "found off at %(at)s (its own button or app, or a relay that lies): left off until %(until)s; the meter is to see its %(power)s go")) % {
        "at": x.s("at"), "until": x.s("until"), "power": x.w("load_w")},
    "off_outside": lambda x: x.g(x.t.pgettext("masculine", "switched off outside gestor at %(at)s (stop-loads, its own button or app): left off until %(until)s"),
          x.t.pgettext("feminine", "switched off outside gestor at %(at)s (stop-loads, its own button or app): left off until %(until)s")) % {
        "at": x.s("at"), "until": x.s("until")},
    "managing_down": lambda x: x.t.gettext("unknown: managing (pid %(pid)s) is not running and did not say it "
                                           "switched it off; run stop-loads if in doubt") % {"pid": x.s("pid")},
    "start_idle": lambda x: x.t.gettext("gestor started: idle until the law decides"),
    "exit_idle": lambda x: x.t.gettext("gestor stopped: every device idle"),
    "latch_idle": lambda x: x.t.gettext("the stop latch is set: idle until sudo stop-loads --release"),
    "stale_idle_none": lambda x: x.t.gettext("no meter reading: idle until the meter answers"),
    "stale_idle": lambda x: x.t.gettext("no meter reading for %(age)s (the limit is %(limit)s): idle") % {
        "age": x.dur("age_s"), "limit": x.dur("stale_after_s")},
    "device_failed": lambda x: x.t.gettext("it failed: idle until it answers"),
    "device_disagrees": lambda x: x.t.gettext("it reads back another setpoint: idle until it agrees"),
    "device_mode_idle": lambda x: x.t.gettext("mode idle (set by the household): idle until auto"),
    "managing_down_device": lambda x: x.t.gettext("unknown: managing (pid %(pid)s) is not running; a device with a "
                                                  "timeout of its own goes idle by itself, run stop-loads for the "
                                                  "others") % {"pid": x.s("pid")},
    "lying_period": lambda x: x.t.gettext("RELAY THAT LIES: %(why)s: switched off every cycle, its auto-off timer "
                                          "never renewed, until the period ends at %(until)s; check the relay and "
                                          "its contactor") % {"why": _why(x, "why"), "until": x.s("until")},
    "lying_dead_man": lambda x: x.t.gettext("RELAY THAT LIES: %(why)s: switched off every cycle, its auto-off timer "
                                            "never renewed, until its own timer runs out at %(until)s; check the "
                                            "relay and its contactor") % {"why": _why(x, "why"), "until": x.s("until")},
    "lying_grid": lambda x: x.t.gettext("it said off, but the meter did not see its %(power)s go (the net power rose "
                                        "%(rise)s)") % {"power": x.w("load_w"),
                                                        "rise": f"{number(x.f('rise_w'), x.lang, signed=True)} W"},
    "lying_own_meter": lambda x: x.t.gettext("it reads off, but its own meter shows %(power)s drawn") % {
        "power": x.w("drawn_w")},
    "lying_again": lambda x: x.t.gettext("it reads off after being switched on, and was found lying before "
                                         "(%(before)s)") % {"before": _why(x, "before")},
    "setpoint": _setpoint,
    "setpoint_control": _setpoint,
}


def render(code: str, params: dict[str, Param] | None, lang: str = DEFAULT, gender: str = "m") -> str:
    """The reason ``code`` with ``params`` as a sentence in ``lang`` (es, ca, en) for a load of
    ``gender`` (m, f). ValueError for another language, gender or an unknown code."""
    if gender not in GENDERS:
        raise ValueError(f"gender: must be one of {', '.join(GENDERS)} (got {gender!r})")
    sentence = SENTENCES.get(code)
    if sentence is None or code not in JOURNAL:
        raise ValueError(f"reason code {code!r} is not in gestor.core.reasons.JOURNAL")
    return sentence(Words(lang, params or {}, gender))


def render_text(text: str | None, lang: str = DEFAULT, gender: str = "m") -> str:
    """A journal text (:func:`gestor.core.reasons.say`'s) in ``lang``; another text as it is."""
    if not text:
        return text or ""
    got = parse(text)
    if got is None:
        return text
    return render(got[0], got[1], lang, gender)
