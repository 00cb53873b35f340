"""``gestor setup``: the steps in order (docs/site/en/setup.md).

1. find: mDNS (Shelly, Envoy), the Fronius Solar API on HTTP 80, Modbus TCP 502/6607 on the local
   /24 (SunSpec, Huawei), GoodWe's UDP search, SMA's multicast; each finder bounded, a missing
   library skips it with a sentence; a Fronius found by both the Solar API and SunSpec is listed
   with ``driver: fronius`` first (:func:`gestor.setup.solar_api.prefer_solar_api`);
2. check: the chosen meter read for ``--check-seconds``, its power and sign in words, the sign
   confirmed (or ``sign`` flipped where the driver has it); each chosen relay on then off, each
   confirmed;
3. ask: the loads (name, relay, power_w) and the tariff (PVPC or fixed prices);
4. write: the diff shown, the same validation as ``gestor check``, a dated copy of the old file,
   secrets to secrets.yaml, the driver's extra, the units restarted.

Exit codes: 0 written; 1 a step failed; 2 a bad answer, or settings that would not be valid
(nothing written); 3 no meter found.
"""
from __future__ import annotations

import argparse
import getpass
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from gestor.clock import Clock, WallClock
from gestor.settings import SecretRef
from gestor.setup import writing
from gestor.setup.answers import (MAX_LOADS, Asker, SetupError, parse_choice, parse_count, parse_name, parse_power_w,
                                  parse_price, parse_tariff, read_answers)
from gestor.setup.found import Found, dedupe, local_networks, parse_network
from gestor.setup.live import flipped_sign, in_words, read_meter, switch_relay
from gestor.setup.options import FINDERS

SECRET_NAME = "shelly_password"


def _finders(text: str) -> list[str]:
    chosen = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in chosen if x not in FINDERS]
    if bad or not chosen:
        raise SetupError(f"--find: {bad[0] if bad else text!r} is not a finder (allowed: {', '.join(FINDERS)})", 2)
    return chosen


def find(args: argparse.Namespace, say: Callable[[str], None]) -> list[Found]:
    """Run the chosen finders; a missing library skips its finder with a sentence."""
    from gestor.setup import mdns, modbus, solar_api, udp
    try:
        nets = [parse_network(n) for n in args.network]
    except ValueError as e:
        raise SetupError(str(e), 2) from None
    chosen = _finders(args.find)
    found: list[Found] = []
    steps: list[tuple[str, Callable[[], list[Found]]]] = []
    if "mdns" in chosen:
        steps.append(("mDNS (Shelly, Enphase)", lambda: mdns.browse(args.mdns_seconds, say)))
    if "fronius" in chosen:
        def solar() -> list[Found]:
            return [f for n in (nets or local_networks()) for f in solar_api.scan(n)]
        steps.append(("Fronius Solar API on HTTP 80", solar))
    if "modbus" in chosen:
        def scan() -> list[Found]:
            networks = nets or local_networks()
            if not networks:
                say("  no private IPv4 network on this machine: give --network")
            return [f for n in networks for f in modbus.scan(n)]
        steps.append(("Modbus TCP 502/6607 (SunSpec, Huawei)", scan))
    if "goodwe" in chosen:
        steps.append(("GoodWe UDP search", lambda: udp.goodwe(nets or local_networks())))
    if "sma" in chosen:
        steps.append(("SMA speedwire multicast", udp.sma))
    for what, step in steps:
        say(f"looking for devices: {what} ...")
        try:
            found += step()
        except ImportError as e:
            say(f"  skipped: {e}")
    return solar_api.prefer_solar_api(dedupe(found))


def _describe(found: list[Found], say: Callable[[str], None]) -> None:
    for role, title in (("meter", "meters"), ("relay", "relays")):
        these = [f for f in found if f.role == role]
        say(f"{title} found: {len(these)}")
        for i, f in enumerate(these, 1):
            channels = f", {f.channels} channels" if f.channels > 1 else ""
            say(f"  {i}. {f.label}{channels} (found by {f.how})")
            say("     proposes: " + yaml.safe_dump(f.section, default_flow_style=True, sort_keys=False).strip())
            for n in f.notes:
                say(f"     note: {n}")


def _choose_meter(meters: list[Found], ask: Asker) -> Found:
    def parse(v: Any) -> int:
        drivers = [m.section["driver"] for m in meters]
        if isinstance(v, str) and v.strip() in drivers:
            return drivers.index(v.strip())
        return parse_choice(len(meters))(v)
    return meters[ask.value("meter", f"which meter is the grid meter (1-{len(meters)})", 0, parse, show="1")]


def _password(ask: Asker, secrets: dict[str, str]) -> str:
    if SECRET_NAME not in secrets:
        if ask.answers is not None:
            secrets[SECRET_NAME] = ask.value(SECRET_NAME, "the Shelly's password", None, lambda v: str(v)[:128])
        else:
            secrets[SECRET_NAME] = getpass.getpass("the Shelly's password (not shown): ")[:128]
    return secrets[SECRET_NAME]


def _loads(relays: list[Found], ask: Asker) -> list[dict[str, Any]]:
    """The loads asked: name, relay (a found one and its channel) and power_w."""
    if not relays:
        ask.say("no relay found: no load can be switched (add relays later in the settings or run setup again)")
        return []
    if ask.answers is not None:
        given = ask.answers.get("loads", [])
        if not isinstance(given, list) or len(given) > MAX_LOADS:
            raise SetupError(f"answers: loads: must be a list of at most {MAX_LOADS} loads "
                             f"(name, relay, channel, power_w) (got {str(given)[:60]!r})", 2)
    else:
        most = min(MAX_LOADS, sum(r.channels for r in relays))
        n = ask.value("loads", f"how many loads to switch (0-{most})", 1, parse_count(most))
        given = [None] * n
    out: list[dict[str, Any]] = []
    for i, g in enumerate(given):
        where = f"loads[{i}]"
        if g is not None and not isinstance(g, dict):
            raise SetupError(f"answers: {where}: must be a mapping name, relay, channel, power_w (got {str(g)[:60]!r})", 2)
        name = ask.value("name", f"load {i + 1}: its name (e.g. water_heater)", None if g is not None else f"load{i + 1}",
                         parse_name, g, f"{where}.name")
        r = relays[ask.value("relay", f"{name}: which relay (1-{len(relays)})", 0, parse_choice(len(relays)), g,
                             f"{where}.relay", show="1")]
        channel = ask.value("channel", f"{name}: which channel of {r.label} (0-{r.channels - 1})", 0,
                            parse_count(r.channels - 1), g, f"{where}.channel")
        power_w = ask.value("power_w", f"{name}: its power in W", None, parse_power_w, g, f"{where}.power_w")
        out.append({"name": name, "power_w": power_w, "relay": {**r.section, "channel": channel}, "_found": r})
    return out


def _tariff(ask: Asker) -> dict[str, Any]:
    kind = ask.value("tariff", "tariff: pvpc (regulated PVPC, prices from REE) or fixed (your retailer's prices)",
                     "pvpc", parse_tariff)
    if kind == "pvpc":
        return tariff_sections(kind)
    given = ask.answers.get("prices", {}) if ask.answers is not None else None
    if given is not None and not isinstance(given, dict):
        raise SetupError(f"answers: prices: must be a mapping p1, p2, p3, surplus in EUR/kWh (got {str(given)[:60]!r})", 2)
    p = {k: ask.value(k, f"price {k} in EUR/kWh", d, parse_price, given, f"prices.{k}")
         for k, d in (("p1", 0.22), ("p2", 0.15), ("p3", 0.10), ("surplus", 0.06))}
    return tariff_sections("fixed", p["p1"], p["p2"], p["p3"], p["surplus"])


def tariff_sections(kind: str, p1: float | None = None, p2: float | None = None, p3: float | None = None,
                    surplus: float | None = None) -> dict[str, Any]:
    """The settings' ``prices`` (and, with ``fixed``, ``tariff``) for the tariff answered:
    ``pvpc`` (REE's public file) or ``fixed`` with the import prices p1-p3 and the surplus, EUR/kWh."""
    if kind == "pvpc":
        return {"prices": {"source": "pvpc_public"}}
    return {"prices": {"source": "fixed"},
            "tariff": {"import_p1_eur_per_kwh": p1, "import_p2_eur_per_kwh": p2,
                       "import_p3_eur_per_kwh": p3, "surplus_eur_per_kwh": surplus}}


def _paths(ask: Asker) -> dict[str, Any] | None:
    given = ask.answers.get("paths") if ask.answers is not None else None
    if given is None:
        return None
    if not isinstance(given, dict) or set(given) - {"state_dir", "run_dir"}:
        raise SetupError(f"answers: paths: must be a mapping with state_dir and/or run_dir (got {str(given)[:60]!r})", 2)
    return {k: str(v) for k, v in given.items()}


def _with_secret(section: dict[str, Any], found: Found, ask: Asker, secrets: dict[str, str]) -> tuple[dict, dict]:
    """(the section as written, the section used live): a Shelly asking a password gets
    ``password: !secret shelly_password`` written and the password itself used live."""
    if not found.needs_password:
        return section, section
    pw = _password(ask, secrets)
    return {**section, "password": SecretRef(SECRET_NAME)}, {**section, "password": pw}


def build(old: dict[str, Any], meter: dict[str, Any], loads: list[dict[str, Any]], tariff: dict[str, Any],
          paths: dict[str, Any] | None) -> dict[str, Any]:
    """The new settings: the old file's sections kept, ``meter``, ``loads``, the tariff's and
    ``paths`` replaced; a new file starts with ``site`` and ``timezone``."""
    data: dict[str, Any] = {"site": old.get("site", "home"), "timezone": old.get("timezone", "Europe/Madrid")}
    data.update(old)
    data["meter"] = meter
    data["loads"] = loads
    data["prices"] = {**(old.get("prices") or {}), **tariff["prices"]}
    if "tariff" in tariff:
        data["tariff"] = {**(old.get("tariff") or {}), **tariff["tariff"]}
    if paths:
        data["paths"] = {**(old.get("paths") or {}), **paths}
    return data


def run_setup(args: argparse.Namespace, clock: Clock | None = None, ask_fn: Callable[[str], str] = input,
              say: Callable[[str], None] = print) -> int:
    """``gestor setup`` (see the module doc). Raises SetupError; the CLI prints it."""
    clock = clock or WallClock()
    answers = read_answers(args.answers) if args.answers else None
    ask = Asker(answers, args.yes, ask_fn, say)
    path = Path(args.settings)
    old_text, old = writing.read_old(path)
    found = find(args, say)
    _describe(found, say)
    meters = [f for f in found if f.role == "meter"]
    if not meters:
        nets = ", ".join(args.network) or "this machine's networks"
        raise SetupError(f"no meter was found on {nets} (looked by: {args.find}): check that it is powered and on "
                         "this network (Modbus TCP enabled on an inverter), or write meter: by hand "
                         "(docs/site/en/setup.md)", 3)
    chosen = _choose_meter(meters, ask)
    if writing.extra_missing(chosen.extra):   # its driver's library, before the driver reads it
        writing.install_extra(chosen.extra, say, writing.install_script())
    with tempfile.TemporaryDirectory(prefix="gestor-setup-run-") as run_dir:   # the drivers' run dir meanwhile
        return _check_ask_write(args, ask, clock, say, path, old_text, old, found, chosen, Path(run_dir))


def _check_ask_write(args: argparse.Namespace, ask: Asker, clock: Clock, say: Callable[[str], None], path: Path,
                     old_text: str, old: dict[str, Any], found: list[Found], chosen: Found, run_dir: Path) -> int:
    """Steps 2 to 4 once the meter is chosen (see the module doc)."""
    secrets: dict[str, str] = {}
    meter, meter_live = _with_secret(chosen.section, chosen, ask, secrets)
    say(f"\nchecking the meter ({chosen.label}) for {args.check_seconds:g} s:")
    readings = read_meter(meter_live, clock, args.check_seconds, args.check_interval, say, run_dir, path.parent)
    if not readings:
        raise SetupError(f"the meter {chosen.label} gave no reading: see the errors above; nothing was written")
    last = readings[-1].net_w
    if not ask.confirm("sign_ok", f"is the house {in_words(last)} now? (sun on the panels and little use: exporting)"):
        flipped = flipped_sign(meter)
        if flipped is None:
            raise SetupError(f"the {meter['driver']} driver has no sign setting: the meter or its clamps are wired "
                             "the other way round; fix that and run gestor setup again")
        meter = flipped
        meter_live = {**meter_live, "sign": flipped["sign"]}
        say(f"  sign set to {flipped['sign']}: the house is {in_words(-last)}")
    relays = [f for f in found if f.role == "relay"]
    loads = []
    for ld in _loads(relays, ask):
        r: Found = ld.pop("_found")
        ld["relay"], live = _with_secret(ld["relay"], r, ask, secrets)
        say(f"\nswitching {ld['name']} ({r.label}, channel {ld['relay'].get('channel', 0)}) on, then off:")
        try:
            on = switch_relay(live, ld["name"], ld["power_w"], True, clock, run_dir, path.parent)
            seen = on and ask.confirm("relays_ok", f"did {ld['name']} switch ON (the relay clicked, the load runs)?")
            off = not switch_relay(live, ld["name"], ld["power_w"], False, clock, run_dir, path.parent)
        except SetupError as e:
            say(f"  {ld['name']}: {e}: left out")
            continue
        why = ("the relay read back off after the on" if not on else "not confirmed" if not seen else
               "the relay read back on after the off" if not off else "")
        if why:
            say(f"  {ld['name']}: {why}: left out")
            continue
        say(f"  {ld['name']}: on and off, confirmed")
        loads.append(ld)
    data = build(old, meter, loads, _tariff(ask), _paths(ask))
    text = writing.settings_text(data, path, clock.now())
    secrets_text = writing.secrets_text(path, secrets) if secrets else None
    say("\nwhat will be written:\n" + (writing.diff(old_text, text, path) or "(no change)"))
    writing.validate(path, text, secrets_text)
    if not ask.confirm("write", f"write {path}?"):
        say("nothing written")
        return 1
    copy = writing.write(path, text, secrets_text, clock.now())
    say(f"written: {path}" + (f" (the old one kept as {copy})" if copy else "")
        + (f" and {path.parent / 'secrets.yaml'}" if secrets_text else ""))
    if args.no_restart:
        say("--no-restart: the units were not restarted")
    else:
        writing.restart_units(say)
    say(f"done: check it any time with  gestor check --config {path}")
    return 0
