"""Reasons as data: every reason a load or a setpoint device is switched, held or idled for, as a
code and its parameters (W, Wh, s, h; local "HH:MM" times and setting words as strings).

:data:`JOURNAL` is the one registry of the codes. Each code's value is its English journal text,
a ``%``-format over the parameters (``%(balance_wh)+.0f``: the very text the log, InfluxDB's
``decision.reason`` and the reference digests have always carried). :func:`say` writes it;
:func:`parse` reads a text back into its code and parameters, so the decision log in InfluxDB
(years of English texts) renders in the reader's language too. The reader's sentences, per
language, are :mod:`gestor.i18n.reasons` (gettext catalogs, plurals and gender); a test holds
every code here to a sentence there.

Pure: no I/O. Codes are lower_snake; a parameter's unit is in its name (``load_w``, ``end_wh``,
``remaining_s``, ``done_h``), as everywhere in gestor."""
from __future__ import annotations

import re
from typing import Union

Param = Union[float, str]

JOURNAL: dict[str, str] = {
    # policies (gestor.core.policies)
    "ttc_on": "projected %(projected_wh)+.0f Wh covers %(load_w).0f W for %(remaining_s).0f s left "
              "(time_to_consume, %(projection)s)",
    "ttc_off": "without it the period would end at %(end_wh)+.0f Wh <= end_at %(end_at_wh)+.0f Wh (time_to_consume)",
    "hysteresis_on": "balance %(balance_wh)+.0f Wh >= on_above %(on_above_wh)+.0f Wh (hysteresis)",
    "hysteresis_off": "balance %(balance_wh)+.0f Wh <= off_below %(off_below_wh)+.0f Wh (hysteresis)",
    "min_on_time_on": "balance %(balance_wh)+.0f Wh runs %(load_w).0f W for %(run_s).0f s >= min_on "
                      "%(min_on_s).0f s (min_on_time)",
    "min_on_time_off": "ran %(ran_s).0f s >= min_on %(min_on_s).0f s and balance %(balance_wh)+.0f Wh < "
                       "%(need_wh).0f Wh for another run (min_on_time)",
    "steady_on": "steady surplus %(surplus_w).0f W runs %(load_w).0f W to the period's end at %(end_wh)+.0f Wh "
                 "(steady_surplus)",
    "steady_off": "steady surplus %(surplus_w).0f W (doubtful %(doubtful_w).0f W): even without it the period "
                  "would end at %(end_wh)+.0f Wh (steady_surplus)",
    # guards (gestor.core.guards, gestor.core.control)
    "latch": "stop latch set (stop-loads; release with stop-loads --release)",
    "stale_none": "meter stale: no reading > stale_after %(stale_after_s).0f s",
    "stale_future": "meter stale: last reading dated %(ahead_s).0f s in the future (clock step?) > stale_after "
                    "%(stale_after_s).0f s",
    "stale_old": "meter stale: last reading %(age_s).0f s old > stale_after %(stale_after_s).0f s",
    "override_on": "manual override on (until 'auto')",
    "override_off": "manual override off (until 'auto')",
    "override_on_until": "manual override on until %(until)s",
    "override_off_until": "manual override off until %(until)s",
    "override_ended": "manual override ended: back to auto",
    "windows": "outside its windows %(windows)s",
    "max_switches": "max_switches_per_period %(max_switches)d reached: stays off until the period ends",
    "min_on_hold": "min_on %(min_on_s).0f s not reached (on %(held_s).0f s)",
    "min_off_hold": "min_off %(min_off_s).0f s not reached (off %(held_s).0f s)",
    "min_run": "daily minimum: %(done_h).2f h of %(need_h).2f h run, %(left_h).2f h (%(left_wh).0f Wh) still "
               "needed by %(by)s; now (%(price)s) is among the cheapest periods left",
    "held": "held by a guard",
    # managing and its relays (managing, gestor.runtime.relays)
    "start": "start: every load off until the policy decides",
    "exit": "exit: every load off",
    "stop_button": "stop button pressed",
    "stop_mqtt": "emergency stop from MQTT",
    "latch_off": "stop latch set: every load off until 'stop-loads --release'",
    "latch_found_off": "stop latch set: found off (switched off by the stop); off until 'stop-loads --release'",
    "latch_released": "the stop latch is released: the policy decides",
    "relay_unknown": "relay state unknown after an error: off until it confirms",
    "found_off": "found off at %(at)s (its own button or app, or a relay that lies): left off until %(until)s; "
                 "the grid meter is to see its %(load_w).0f W go",
    "off_outside": "switched off outside gestor at %(at)s (stop-loads, its own button or app): left off until "
                   "%(until)s",
    "managing_down": "unknown: managing (pid %(pid)s) is not running and did not say it switched it off; run "
                     "stop-loads if in doubt",
    "managing_down_device": "unknown: managing (pid %(pid)s) is not running; a device with a timeout of its own "
                            "goes idle by itself, run stop-loads for the others",
    # a lying relay (gestor.runtime.relays): why it is judged lying (``why``: the text of one of
    # the lying_* codes below, rendered in turn), held off until its dead-man bound or the period's
    # end (``until``, local HH:MM:SS)
    "lying_period": "LYING RELAY: %(why)s: commanded off every cycle, its auto-off timer never renewed, until the "
                    "period's end %(until)s; check the relay and its contactor",
    "lying_dead_man": "LYING RELAY: %(why)s: commanded off every cycle, its auto-off timer never renewed, until its "
                      "dead-man bound %(until)s; check the relay and its contactor",
    "lying_grid": "reported off, but the meter did not see its %(load_w).0f W go (net power rose %(rise_w)+.0f W)",
    "lying_own_meter": "reads off, but its own meter shows %(drawn_w).0f W drawn",
    "lying_again": "reads off after commanding on, and was judged lying before (%(before)s)",
    # setpoint devices (gestor.runtime.setpoints, managing)
    "start_idle": "start: idle until the law decides",
    "exit_idle": "exit: every device idle",
    "latch_idle": "stop latch set: idle until stop-loads --release",
    "stale_idle_none": "meter stale (no reading, or the meter frozen): idle until the meter answers",
    "stale_idle": "meter stale (%(age_s).0f s without a reading, limit %(stale_after_s)g s): idle",
    "device_failed": "failed: idle until it answers",
    "device_disagrees": "read back another setpoint: idle until it agrees",
    "device_mode_idle": "mode idle (set by the household): idle until auto",
    # a setpoint device's command (gestor.runtime.setpoints): its balance, target, the surplus the
    # loads left, the time left and its range; with the household's controls (``control``, as
    # gestor.runtime.devicecontrols.DeviceControl.describe writes them) or without
    "setpoint": "period %(balance_wh)+.0f Wh banked (target %(target_wh)+.0f), surplus %(surplus_w)+.0f W left by "
                "the loads, %(remaining_s).0f s left (range %(lo_w)+.0f..%(hi_w)+.0f W)",
    "setpoint_control": "period %(balance_wh)+.0f Wh banked (target %(target_wh)+.0f), surplus %(surplus_w)+.0f W "
                        "left by the loads, %(remaining_s).0f s left (range %(lo_w)+.0f..%(hi_w)+.0f W; "
                        "%(control)s)",
}

# Affixes a setpoint command's text takes (the codes in AFFIXED only): a prefix when its parameter
# is in the parameters (``reversal``: 1, the device turned direction), a suffix likewise
# (``wait_s``: s the dwell still holds a reversal back, with ``min_reversal_s``; Dwell in
# gestor.core.setpoint). The English is the journal's, byte for byte as before.
AFFIXED = ("setpoint", "setpoint_control")
PREFIXES: dict[str, str] = {"reversal": "reversal: "}
SUFFIXES: dict[str, str] = {"wait_s": "; no reversal for %(wait_s).0f s more (min_reversal_s %(min_reversal_s)g)"}

HELD = JOURNAL["held"]  # a load a guard holds (matched by managing's relays: one text, one place)


def say(code: str, params: dict[str, Param] | None = None) -> str:
    """The English journal text of ``code`` with ``params`` (KeyError naming the code when it is
    not in :data:`JOURNAL` or a parameter is missing)."""
    try:
        template = JOURNAL[code]
    except KeyError:
        raise KeyError(f"reason code {code!r} is not in gestor.core.reasons.JOURNAL") from None
    if not params:
        return template
    text = template % params
    if code in AFFIXED:
        text = "".join(pre for key, pre in PREFIXES.items() if key in params) + text
        text += "".join(suf % params for key, suf in SUFFIXES.items() if key in params)
    return text


_FIELD = re.compile(r"%\((\w+)\)([+]?)(\.\d+)?([fgds])")
_PATTERNS: list[tuple[str, re.Pattern[str], dict[str, str]]] = []


def _regex(template: str) -> tuple[str, dict[str, str]]:
    """A journal template as a regular expression (unanchored) and its parameters' kinds."""
    kinds: dict[str, str] = {}
    out, pos = [], 0
    for m in _FIELD.finditer(template):
        out.append(re.escape(template[pos:m.start()]))
        name, kind = m.group(1), m.group(4)
        kinds[name] = kind
        out.append(f"(?P<{name}>.+?)" if kind == "s" else f"(?P<{name}>[-+]?(?:inf|nan|[0-9.e+-]+))")
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return "".join(out), kinds


def _compile() -> list[tuple[str, re.Pattern[str], dict[str, str]]]:
    """Each code's journal text as a regular expression (numbers back as floats)."""
    if not _PATTERNS:
        for code, template in JOURNAL.items():
            rx, kinds = _regex(template)
            _PATTERNS.append((code, re.compile(rx + r"\Z"), kinds))
    return _PATTERNS


def _values(m: re.Match[str], kinds: dict[str, str]) -> dict[str, Param]:
    """A match's parameters (ValueError for a number that does not read)."""
    return {name: m.group(name) if kind == "s" else float(m.group(name)) for name, kind in kinds.items()}


def _affixes(text: str) -> tuple[str, dict[str, Param]]:
    """``text`` without the affixes it carries (:data:`PREFIXES`, :data:`SUFFIXES`), and their
    parameters."""
    params: dict[str, Param] = {}
    for key, pre in PREFIXES.items():
        if text.startswith(pre):
            text, params[key] = text[len(pre):], 1.0
    for suf in SUFFIXES.values():
        rx, kinds = _regex(suf)
        m = re.search(rx + r"\Z", text)
        if m is not None:
            try:
                params.update(_values(m, kinds))
            except ValueError:
                continue
            text = text[:m.start()]
    return text, params


def parse(text: str) -> tuple[str, dict[str, Param]] | None:
    """The code and parameters of a journal text :func:`say` wrote (numbers as floats, rounded as
    the text has them); None for another text (an older wording, a relay's own error). Bounded:
    texts over 500 characters are not read."""
    if not text or len(text) > 500:
        return None
    bare, extra = _affixes(text)
    for code, pattern, kinds in _compile():
        m = (pattern.match(bare) if extra and code in AFFIXED else None) or pattern.match(text)
        if m is None:
            continue
        try:
            params = _values(m, kinds)
        except ValueError:
            continue
        if m.string is bare:
            params.update(extra)
        return code, params
    return None


def as_data(text: str) -> dict[str, Param] | None:
    """``{"code": ..., **params}`` for a journal text (what managing publishes beside the text;
    the shape of the issue: ``{"code": "steady_on", "surplus_w": 1250.0, ...}``), else None."""
    got = parse(text)
    if got is None:
        return None
    code, params = got
    return {"code": code, **params}
