"""Reasons as data (issue 37): every reason code of the registry (gestor.core.reasons) reads back
from its journal text, and renders as a sentence in es, ca and en from the gettext catalogs, with
plurals and the load's gender; the English journal texts stay those the reference digests hash."""
from __future__ import annotations

import math
import re
import subprocess
import sys

import pytest

from gestor.core.reasons import JOURNAL, as_data, parse, say
from gestor.i18n import LANGS, check_lang, from_environment, number
from gestor.i18n.reasons import SENTENCES, duration, render, render_text
from tests.conftest import REPO, settings_file

# a parameter's value by its name's kind: numbers for numbers, words for the rest
WORDS = {"projection": "instant", "windows": "10:00-19:00", "until": "2026-12-07 21:00", "by": "21:00",
         "price": "P3", "at": "11:05:09", "pid": "4242", "control": "mode charge_only, min SoC 20 %",
         "why": "reads off, but its own meter shows 900 W drawn", "before": "relay timeout"}


def params_of(code: str) -> dict:
    names = re.findall(r"%\((\w+)\)", JOURNAL[code])
    return {n: WORDS.get(n, 1250.0 + 7 * i) for i, n in enumerate(names)}


@pytest.mark.parametrize("code", sorted(JOURNAL))
def test_every_code_reads_back_from_its_journal_text_and_renders_in_each_language(code):
    p = params_of(code)
    text = say(code, p)
    got = parse(text)
    assert got is not None and got[0] == code, text
    for k, v in got[1].items():  # numbers back as the text rounds them
        assert v == p[k] if isinstance(v, str) else math.isclose(v, float(p[k]), abs_tol=0.51), (k, v, p[k])
    assert as_data(text) == {"code": code, **got[1]}
    seen = {}
    for lang in LANGS:
        for gender in ("m", "f"):
            out = render(code, got[1], lang, gender)
            assert out and "%(" not in out and "nan" not in out and not re.search(r"(^|[ (])\?([ ,)]|$)", out), \
                (lang, out)  # every parameter filled: none missing ("?") nor unreadable ("nan")
            seen[lang] = out
    assert seen["es"] != seen["en"] and seen["ca"] != seen["en"] and seen["es"] != seen["ca"], seen


def test_a_setpoint_command_with_its_reversal_and_dwell_is_the_old_text_and_reads_back():
    """Gap 1: a battery's/EV's command ("period ... banked", "reversal: " before it, the dwell's
    "; no reversal for ..." after it) has codes; its English is byte for byte the text
    gestor.runtime.setpoints wrote before (the f-string below is that one, copied)."""
    balance_wh, target_wh, surplus_w, remaining_s, lo, hi, wait_s, min_rev = 12.4, 0.0, -350.6, 1805.2, -2500, 3000, \
        95.3, 300.0
    for control in (None, "mode charge_only, min SoC 20 %"):
        for reversal in (False, True):
            for waiting in (False, True):
                old = (f"period {balance_wh:+.0f} Wh banked (target {target_wh:+.0f}), "
                       f"surplus {surplus_w:+.0f} W left by the loads, {remaining_s:.0f} s left "
                       f"(range {lo:+.0f}..{hi:+.0f} W{'' if control is None else '; ' + control})")
                if waiting:
                    old += f"; no reversal for {wait_s:.0f} s more (min_reversal_s {min_rev:g})"
                if reversal:
                    old = "reversal: " + old
                p = {"balance_wh": balance_wh, "target_wh": target_wh, "surplus_w": surplus_w,
                     "remaining_s": remaining_s, "lo_w": lo, "hi_w": hi}
                code = "setpoint" if control is None else "setpoint_control"
                if control is not None:
                    p["control"] = control
                if waiting:
                    p.update(wait_s=wait_s, min_reversal_s=min_rev)
                if reversal:
                    p["reversal"] = 1
                assert say(code, p) == old
                got = parse(old)
                assert got is not None and got[0] == code, old
                assert set(got[1]) == set(p), (old, got)
                out = {lang: render(code, got[1], lang) for lang in LANGS}
                assert out["es"].startswith("cambia de sentido: " if reversal else "el periodo lleva +12 Wh "), out
                assert out["ca"].startswith("canvia de sentit: " if reversal else "el període porta +12 Wh "), out
                assert ("no cambia de sentido durante 95 segundos más" in out["es"]) == waiting
                assert ("no canvia de sentit durant 95 segons més" in out["ca"]) == waiting
                assert ("puesto en casa: mode charge_only" in out["es"]) == (control is not None)
                assert "−351 W" in out["es"] or "-351 W" in out["es"], out["es"]
                assert "30 minutos" in out["es"] and "30 minuts" in out["ca"] and "30 minutes" in out["en"]
    # an affix is read only on a setpoint command: another reason with "reversal: " stays text
    assert parse("reversal: " + say("start")) is None


def test_a_lying_relay_has_codes_its_why_nested_and_the_old_english():
    """Gap 2: "LYING RELAY: ..." (gestor.runtime.relays) as codes: the bound (the period's end or
    the dead-man bound) picks the code, the why is a reason of its own, rendered in turn; the
    English is byte for byte what relays.py wrote before (the f-strings below, copied)."""
    power_w, rise_w, drawn = 2000.0, 150.4, 1830.2
    grid = f"reported off, but the meter did not see its {power_w:.0f} W go (net power rose {rise_w:+.0f} W)"
    own = f"reads off, but its own meter shows {drawn:.0f} W drawn"
    again = f"reads off after commanding on, and was judged lying before ({grid})"
    assert say("lying_grid", {"load_w": power_w, "rise_w": rise_w}) == grid
    assert say("lying_own_meter", {"drawn_w": drawn}) == own
    assert say("lying_again", {"before": grid}) == again
    for code, bound in (("lying_period", "the period's end"), ("lying_dead_man", "its dead-man bound")):
        for why in (grid, own, again):
            old = (f"LYING RELAY: {why}: commanded off every cycle, its auto-off timer never renewed, until "
                   f"{bound} 14:00:00; check the relay and its contactor")
            assert say(code, {"why": why, "until": "14:00:00"}) == old
            assert parse(old) == (code, {"why": why, "until": "14:00:00"})
            es, ca = render_text(old, "es"), render_text(old, "ca")
            assert es.startswith("RELÉ QUE MIENTE: ") and ca.startswith("RELÉ QUE MENT: "), (es, ca)
            assert "LYING" not in es + ca and "reads off" not in es + ca and "reported off" not in es + ca, (es, ca)
    es = render_text(say("lying_period", {"why": again, "until": "14:00:00"}), "es")
    assert ("indica apagado tras encenderlo, y ya se vio antes que mentía (dijo apagado, pero el contador no vio "
            "bajar sus 2.000 W (la potencia neta subió +150 W))") in es and "a las 14:00:00" in es, es
    assert render_text(say("managing_down_device", {"pid": "42"}), "ca").startswith(
        "desconegut: managing (pid 42) no està en marxa")
    # a relay's own error inside stays as it is (no code of it)
    assert "(relay timeout)" in render("lying_again", {"before": "relay timeout"}, "es")


def test_the_issue_example_in_three_languages():
    text = "steady surplus 1250 W runs 1000 W to the period's end at +109 Wh (steady_surplus)"
    assert as_data(text) == {"code": "steady_on", "surplus_w": 1250.0, "load_w": 1000.0, "end_wh": 109.0}
    assert render_text(text, "es") == ("un excedente estable de 1.250 W cubre sus 1.000 W hasta el final del "
                                       "periodo, que acaba en +109 Wh")
    assert render_text(text, "ca") == ("un excedent estable de 1.250 W cobreix els seus 1.000 W fins al final del "
                                       "període, que acaba en +109 Wh")
    assert render_text(text, "en") == "a steady surplus of 1,250 W runs its 1,000 W to the end of the period, " \
                                       "which ends at +109 Wh"


def test_plurals():
    assert render("max_switches", {"max_switches": 1}, "es").startswith("ya ha conmutado 1 vez ")
    assert render("max_switches", {"max_switches": 20}, "es").startswith("ya ha conmutado 20 veces ")
    assert render("max_switches", {"max_switches": 1}, "ca").startswith("ja ha commutat 1 vegada ")
    assert render("max_switches", {"max_switches": 3}, "en").startswith("it already switched 3 times ")
    assert duration(1, "es") == "1 segundo" and duration(45, "es") == "45 segundos"
    assert duration(60, "ca") == "60 segons" and duration(120, "ca") == "2 minuts" and duration(90.4 * 60, "en") == \
        "90 minutes"
    assert render("min_off_hold", {"min_off_s": 60, "held_s": 1}, "es", "f") == \
        "sigue apagada: lleva 1 segundo, al menos 60 segundos"


def test_gender():
    assert render("override_off", {}, "es", "m") == "apagado a mano hasta volver a automático"   # el termo
    assert render("override_off", {}, "es", "f") == "apagada a mano hasta volver a automático"   # la bomba
    assert render("override_on", {}, "ca", "m") == "encès a mà fins que torni a automàtic"
    assert render("override_on", {}, "ca", "f") == "encesa a mà fins que torni a automàtic"
    assert render("override_on", {}, "en", "f") == render("override_on", {}, "en", "m")
    with pytest.raises(ValueError, match=r"gender: must be one of m, f \(got 'x'\)"):
        render("override_on", {}, "es", "x")


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"language: must be one of es, ca, en \(got 'fr'\)"):
        render("start", {}, "fr")
    with pytest.raises(ValueError, match="reason code 'nope' is not in"):
        render("nope", {}, "es")
    with pytest.raises(KeyError, match="reason code 'nope' is not in"):
        say("nope")
    assert check_lang("ca") == "ca"
    # a text of no code (a relay's own words, an older wording) stays as it is; a huge one is not read
    assert render_text("relay timeout", "es") == "relay timeout"
    assert parse("x" * 501) is None and render_text("", "es") == ""


def test_numbers_are_written_as_the_language_does_and_never_minus_zero():
    assert number(1250.4, "es") == "1.250" and number(1250.4, "en") == "1,250"
    assert number(-0.3, "es", signed=True) == "0" and number(109, "ca", signed=True) == "+109"
    assert number(1.5, "es", 2) == "1,50"


def test_the_locale_picks_the_language():
    assert from_environment({"LANG": "es_ES.UTF-8"}) == "es"
    assert from_environment({"LC_MESSAGES": "ca_ES.UTF-8", "LANG": "es_ES.UTF-8"}) == "ca"
    assert from_environment({"LC_ALL": "C.UTF-8"}) == "en" and from_environment({}) == "en"
    assert from_environment({"LANGUAGE": "fr:es", "LANG": "fr_FR"}) == "en"


def test_the_registry_is_one_place():
    assert set(SENTENCES) == set(JOURNAL)
    # no producer writes a reason's words itself: each journal text appears once, in the registry
    import ast
    strings: dict[str, list[str]] = {}  # the string literals of src/, docstrings left out (examples)
    for path in (REPO / "src").rglob("*.py"):
        if path.name == "reasons.py":
            continue
        tree = ast.parse(path.read_text())
        docs = {id(n.body[0].value) for n in ast.walk(tree)
                if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) and n.body
                and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        strings[str(path)] = [n.value for n in ast.walk(tree)
                              if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]
    for code, template in JOURNAL.items():
        head = max(re.split(r"%\(\w+\)[+]?(?:\.\d+)?[fgds]", template), key=len)  # its longest literal part
        if len(head) < 20:
            continue
        holders = [p for p, values in strings.items() if any(head in v for v in values)]
        assert holders == [], (code, head, holders)


def test_gestor_status_in_spanish(tmp_path):
    """``gestor status --lang es`` (and LANG=es_ES): the reasons in Spanish, with the load's gender."""
    import json
    import os
    from gestor.runtime.status import render as status_render
    from gestor.settings import load_settings
    cfg = settings_file(tmp_path, site="casa")  # the shipped example: la Depuradora is display_gender f
    s = load_settings(cfg, secrets_optional=True)
    d = {"at": "2026-12-07T10:00:00+00:00", "site": "casa", "monitoring": {"running": False, "pid": None},
         "managing": {"running": True, "pid": 1, "policy": "steady_surplus"}, "reading": None, "period": None,
         "loads": {"water_heater": {"on": True, "reason": say("steady_on", {"surplus_w": 1250, "load_w": 1000,
                                                                                "end_wh": 109}),
                                    "switches_in_period": 1},
                   "pool_pump": {"on": False, "reason": "manual override off (until 'auto')", "switches_in_period": 0}},
         "stop_latch": {"set": False}, "overrides": {"pool_pump": "manual override off (until 'auto')"},
         "spool_bytes": {}, "store": {"kind": "none"}, "mqtt": {"enabled": False}}
    out = status_render(d, s, "es")
    assert "por qué: un excedente estable de 1.250 W cubre sus 1.000 W" in out
    assert "por qué: apagada a mano hasta volver a automático" in out
    assert "pool_pump: apagada a mano hasta volver a automático" in out
    assert "pool_pump      apagada  " in out and "water_heater   ENCENDIDO" in out  # la depuradora, el termo
    assert "why: a steady surplus of 1,250 W" in status_render(d, s, "en")
    # the command: --lang, else the locale
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}:{REPO}", "LANG": "es_ES.UTF-8", "LC_ALL": "", "LANGUAGE": ""}
    run = subprocess.run([sys.executable, "-m", "gestor.cli", "status", "--config", str(cfg), "--lang", "ca"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("estat de gestor ") and "\nserveis     monitoring: ATURAT" in run.stdout, run.stdout
    by_locale = subprocess.run([sys.executable, "-m", "gestor.cli", "status", "--config", str(cfg)],
                               capture_output=True, text=True, env=env, timeout=60)
    assert by_locale.stdout.startswith("estado de gestor ") and "\nbloqueo     no puesto" in by_locale.stdout, \
        by_locale.stdout
    bad = subprocess.run([sys.executable, "-m", "gestor.cli", "status", "--config", str(cfg), "--lang", "fr"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2 and "invalid choice: 'fr'" in bad.stderr
    assert json.loads(subprocess.run([sys.executable, "-m", "gestor.cli", "status", "--config", str(cfg), "--json"],
                                     capture_output=True, text=True, env=env, timeout=60).stdout)["site"] == "casa"


def test_gestor_status_labels_in_spanish_and_catalan(tmp_path):
    """Gap 3: ``gestor status``'s own words (labels, states, units' numbers) by the language, not
    only its reasons; English as the screen always wrote it."""
    from gestor.runtime.status import render as status_render
    from gestor.settings import load_settings
    s = load_settings(settings_file(tmp_path, site="casa"), secrets_optional=True)
    d = {"at": "2026-12-07T10:00:00+00:00", "site": "casa",
         "monitoring": {"running": True, "pid": 7, "last_error": "timeout", "failed_reads": 2,
                        "last_error_at": "2026-12-07T09:59:00+00:00"},
         "managing": {"running": False, "pid": 1, "policy": "steady_surplus", "age_s": 75, "eur_saved_today": 1.234},
         "reading": {"net_w": -1234.5, "production_w": 3000.2, "consumption_w": 4234.7, "age_s": 3, "stale": True},
         "period": {"start": "2026-12-07T10:00:00+00:00", "end": "2026-12-07T11:00:00+00:00", "balance_wh": -12.3,
                    "projected_wh": 1500, "remaining_s": 1800},
         "loads": {"water_heater": {"on": True, "since": "2026-12-07T09:30:00+00:00", "failures": 1,
                                    "reason": say("start"), "switches_in_period": 3}},
         "setpoints": {"bat": {"setpoint_w": -1500.4, "idle": False, "soc_pct": 55.2, "min_w": -2500, "max_w": 3000,
                               "failures": 2, "reason": say("setpoint", {"balance_wh": 12, "target_wh": 0,
                               "surplus_w": -350, "remaining_s": 1800, "lo_w": -2500, "hi_w": 3000, "reversal": 1})}},
         "stop_latch": {"set": False}, "overrides": {}, "spool_bytes": {"decision": 1234},
         "store": {"kind": "influxdb", "reachable": False, "error": "boom", "url": "http://127.0.0.1:8086"},
         "mqtt": {"enabled": True, "connected": False, "broker": "127.0.0.1:1883"}}
    en, es, ca = (status_render(d, s, lang) for lang in ("en", "es", "ca"))
    assert en.splitlines()[1:4] == [
        "daemons     monitoring: running (pid 7)   managing: NOT RUNNING",
        "meter       net -1,234 W (importing), production 3,000 W, consumption 4,235 W; read 3 s ago  STALE: loads "
        "are kept off",
        "            last failed read (10:59:00): timeout"]
    assert "water_heater   ON       since 10:30 (30 min 00 s), switches this period: 3  RELAY FAILED 1x" in en
    assert "bat            -1,500 W, state of charge 55 %, range -2,500..+3,000 W  DEVICE FAILED 2x" in en
    assert "store       InfluxDB NOT REACHABLE: boom; spool decision 1.2 kB (replayed when it is back)" in en
    assert es.splitlines()[0].startswith("estado de gestor  2026-12-07 11:00:00 CET  (instalación casa)")
    assert "servicios   monitoring: en marcha (pid 7)   managing: PARADO" in es
    assert "contador    neto -1.234 W (importando), producción 3.000 W, consumo 4.235 W; leído hace 3 s" in es
    assert "periodo     11:00-12:00: balance -12 Wh, previsto +1.500 Wh, quedan 30 min 00 s" in es
    assert "RELÉ FALLIDO 1 vez" in es and "EQUIPO FALLIDO 2 veces" in es and "carga 55 %" in es
    assert "por qué: " + render("start", {}, "es") in es
    assert "cambia de sentido: el periodo lleva +12 Wh" in es
    assert "dinero      1,23 € ahorrados hoy" in es and "cola decision 1,2 kB" in es
    assert "bloqueo     no puesto" in es and "forzados    ninguno" in es
    assert "serveis     monitoring: en marxa (pid 7)   managing: ATURAT" in ca
    assert "càrregues   water_heater   ENCÈS" in ca and "RELÉ FALLAT 1 vegada" in ca and "EQUIP FALLAT 2 vegades" in ca
    assert "canvia de sentit: el període porta +12 Wh" in ca and "NO CONNECTAT a 127.0.0.1:1883" in ca
    # no English word of the screen left in es/ca (identifiers, settings' keys and errors aside)
    for out in (es, ca):
        for word in ("running", "RUNNING", "reading", "balance ", "projected", "switches", "why:", "spool", "STALE",
                     "FAILED", "saved", "not set", "REACHABLE", "CONNECTED", "state of charge", "range"):
            assert word not in out.replace("balance -12", ""), (word, out)


def test_display_gender_is_m_or_f(tmp_path):
    from gestor.settings import SettingsError, load_settings
    from tests.conftest import example_raw
    raw = example_raw()
    raw["loads"][1]["display_gender"] = "x"
    with pytest.raises(SettingsError, match=r"loads\[1\]\.display_gender: must be one of 'm' or 'f' \(got 'x'\)"):
        load_settings(settings_file(tmp_path, loads=raw["loads"]), secrets_optional=True)
    s = load_settings(settings_file(tmp_path), secrets_optional=True)
    assert [ld.display_gender for ld in s.loads] == ["m", "f"] and s.mqtt.language == "en"
