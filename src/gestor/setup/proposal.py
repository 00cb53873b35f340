"""``gestor setup`` from the web page, with the privileges separated (docs/site/en/setup.md,
"From the page"): the page (user ``gestor``, read-only /etc) writes what the user settled as a
*proposal* in the state dir; a root-run unit (daemons/gestor-setup-apply.path + .service) runs
``gestor setup --apply-proposal FILE``, which checks it again, writes the settings and restarts
the units, and leaves a *result* file beside it that the page shows.

The proposal (YAML, at most MAX_PROPOSAL_BYTES) carries only what the page asks, nothing else::

    meter: {driver: shelly_em, host: 192.168.1.60, generation: 2, sign: import_positive}
    loads:                                          # at most answers.MAX_LOADS
      - {name: water_heater, power_w: 1500, relay: {driver: shelly, host: 192.168.1.61, generation: 2, channel: 0}}
    tariff: pvpc                                    # pvpc | fixed
    prices: {p1: 0.22, p2: 0.15, p3: 0.10, surplus: 0.06}   # EUR/kWh, with fixed

Every other key, a meter or relay driver that a finder does not propose (``replay`` reads a file,
``modbus_map`` a register map, ``simulated`` a state dir), a key of theirs that is not a device's
address (a path, a password, a store) is refused with a sentence: the web user must not gain
root's write through it. The rest of the settings (store, paths, web, the replay's path...) is
kept from the current file (:func:`gestor.setup.command.build`).

The state dir belongs to ``gestor``, so root touches it only through a directory descriptor
opened without following a symlink, the proposal read only if it is a regular file with one link,
and the result written to a fresh name (O_EXCL|O_NOFOLLOW) then renamed over ``result.json``.
"""
from __future__ import annotations

import errno
import json
import os
import re
import secrets
import stat
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from drivers.extras import extra_for, missing
from gestor.clock import Clock
from gestor.files import atomic_write_text
from gestor.setup import writing
from gestor.setup.answers import MAX_LOADS, SetupError, parse_name, parse_power_w, parse_price, parse_tariff
from gestor.setup.command import build, tariff_sections

MAX_PROPOSAL_BYTES = 16 * 1024
PROPOSAL_FILE = "proposal.yaml"
RESULT_FILE = "result.json"
SETUP_DIR = "setup"            # under the state dir: /var/lib/gestor/setup
KEYS = ("meter", "loads", "tariff", "prices")
# the meter drivers the finders propose (gestor.setup.mdns, modbus, udp, shelly) and the keys a
# finder or the page sets: a device's address, its Modbus unit, the SMA serial, the sign flipped
METER_DRIVERS = ("shelly_em", "envoy", "sunspec", "huawei", "goodwe", "sma_em", "fronius", "wibeee")
METER_KEYS = ("driver", "host", "port", "unit_id", "serial", "timeout_s", "generation", "sign")
RELAY_DRIVERS = ("shelly",)
RELAY_KEYS = ("driver", "host", "generation", "channel")
HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-]{0,252}(:\d{1,5})?")


def _refuse(where: str, value: Any, allowed: str) -> SetupError:
    shown = repr(value[:60]) if isinstance(value, str) else str(value)[:60]
    return SetupError(f"proposal: {where}: {shown} is not allowed (allowed: {allowed}); nothing was written", 2)


def _section(where: str, raw: Any, drivers: tuple[str, ...], keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _refuse(where, raw, f"a mapping of {', '.join(keys)}")
    for k, v in raw.items():
        if k not in keys:
            raise _refuse(f"{where}.{k}", v, f"the keys {', '.join(keys)}")
        if not isinstance(v, (str, int, float)) or isinstance(v, str) and len(v) > 253:
            raise _refuse(f"{where}.{k}", v, "a number or a short text")
    if raw.get("driver") not in drivers:
        raise _refuse(f"{where}.driver", raw.get("driver"), ", ".join(drivers))
    if "host" in raw and not HOST.fullmatch(str(raw["host"])):
        raise _refuse(f"{where}.host", raw["host"], "an IP address or a name, optionally :port")
    return dict(raw)


def check_proposal(raw: Any) -> dict[str, Any]:
    """The proposal ``raw`` (its YAML, parsed) checked: only KEYS, the meter and relays by the
    finders' drivers and address keys, the loads' names and powers and the tariff as the
    questions of ``gestor setup`` allow them. Returns it normalised; raises SetupError (code 2)
    with a sentence naming the key, the value and what is allowed."""
    if not isinstance(raw, dict):
        raise _refuse("(top)", raw, f"a mapping of {', '.join(KEYS)}")
    for k in raw:
        if k not in KEYS:
            raise _refuse(str(k), raw[k], f"the keys {', '.join(KEYS)}: the rest is kept from the current settings")
    meter = _section("meter", raw.get("meter"), METER_DRIVERS, METER_KEYS)
    given = raw.get("loads") or []
    if not isinstance(given, list) or len(given) > MAX_LOADS:
        raise _refuse("loads", given, f"a list of at most {MAX_LOADS} loads")
    loads = []
    for i, ld in enumerate(given):
        where = f"loads[{i}]"
        if not isinstance(ld, dict) or set(ld) != {"name", "power_w", "relay"}:
            raise _refuse(where, ld, "a mapping of name, power_w and relay")
        try:
            name, power_w = parse_name(ld["name"]), parse_power_w(ld["power_w"])
        except ValueError as e:
            raise SetupError(f"proposal: {where}: {e}; nothing was written", 2) from None
        loads.append({"name": name, "power_w": power_w,
                      "relay": _section(f"{where}.relay", ld["relay"], RELAY_DRIVERS, RELAY_KEYS)})
    try:
        kind = parse_tariff(raw.get("tariff", "pvpc"))
        prices = raw.get("prices") or {}
        if kind == "fixed" and (not isinstance(prices, dict) or set(prices) != {"p1", "p2", "p3", "surplus"}):
            raise ValueError(f"prices must be p1, p2, p3 and surplus in EUR/kWh with a fixed tariff (got {str(prices)[:60]!r})")
        prices = {k: parse_price(v) for k, v in prices.items()} if kind == "fixed" else {}
    except ValueError as e:
        raise SetupError(f"proposal: tariff: {e}; nothing was written", 2) from None
    out: dict[str, Any] = {"meter": meter, "loads": loads, "tariff": kind}
    if prices:
        out["prices"] = prices
    return out


def new_settings(proposal: dict[str, Any], path: Path, when: datetime) -> tuple[str, str]:
    """(the current file's text, the new one's) for a checked ``proposal``: the current
    settings with ``meter``, ``loads`` and the tariff's sections replaced (the rest kept)."""
    old_text, old = writing.read_old(path)
    p = proposal.get("prices", {})
    data = build(old, proposal["meter"], proposal["loads"],
                 tariff_sections(proposal["tariff"], p.get("p1"), p.get("p2"), p.get("p3"), p.get("surplus")), None)
    return old_text, writing.settings_text(data, path, when)


def write_proposal(state_dir: Path, proposal: dict[str, Any]) -> Path:
    """The page's side: ``proposal`` (checked) as STATE_DIR/setup/proposal.yaml, mode 0640 (the
    page runs as ``gestor``); an older result file is removed. Raises OSError."""
    d = state_dir / SETUP_DIR
    d.mkdir(mode=0o750, exist_ok=True)
    (d / RESULT_FILE).unlink(missing_ok=True)
    path = d / PROPOSAL_FILE
    atomic_write_text(path, yaml.safe_dump(proposal, sort_keys=False, allow_unicode=True), fsync=True, mode=0o640)
    return path


def read_result(state_dir: Path) -> dict[str, Any] | None:
    """The page's side: the last result (None: none yet); ``{"pending": true}`` while a proposal
    waits. At most MAX_PROPOSAL_BYTES are read."""
    d = state_dir / SETUP_DIR
    try:
        with open(d / RESULT_FILE, "rb") as f:
            got = json.loads(f.read(MAX_PROPOSAL_BYTES))
        return got if isinstance(got, dict) else None
    except FileNotFoundError:
        return {"pending": True} if (d / PROPOSAL_FILE).exists() else None
    except (OSError, ValueError):
        return None


def _take(dfd: int, name: str) -> bytes:
    """Read and remove ``name`` in the directory ``dfd`` (a regular file with one link, not a
    symlink, at most MAX_PROPOSAL_BYTES). Raises SetupError."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dfd)
    except OSError as e:
        if e.errno == errno.ELOOP:
            os.unlink(name, dir_fd=dfd)   # a link planted: removed (the link only), never followed
        raise SetupError(f"proposal {name}: cannot open it ({e.strerror}): a regular file, not a link, is needed") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            raise SetupError(f"proposal {name}: not a regular file with one link: refused")
        data = os.read(fd, MAX_PROPOSAL_BYTES + 1)
    finally:
        os.close(fd)
        os.unlink(name, dir_fd=dfd)   # taken: the path unit does not start again for it
    if len(data) > MAX_PROPOSAL_BYTES:
        raise SetupError(f"proposal {name}: more than {MAX_PROPOSAL_BYTES} bytes: refused", 2)
    return data


def _put(dfd: int, name: str, text: str) -> None:
    """Write ``name`` in the directory ``dfd`` under a fresh name (never through a link an
    other user planted), mode 0644, then rename it over ``name``."""
    tmp = f".{name}.{secrets.token_hex(8)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=dfd)
    with open(fd, "w", encoding="utf-8") as f:
        os.fchmod(fd, 0o644)
        f.write(text)
        f.flush()
        os.fsync(fd)
    os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)


def apply_proposal(file: Path, path: Path, clock: Clock, say: Callable[[str], None], restart: bool = True,
                   install: Callable[[str], None] | None = None) -> int:
    """``gestor setup --apply-proposal FILE``: take ``file`` (removed once read), check it
    (:func:`check_proposal`), install its meter driver's extra if missing (``install(extra)``,
    default install.sh --extra), validate the new settings as ``gestor check`` does, keep a dated
    copy of ``path`` and write it, restart the units (``restart``), and write the result
    (``{"ok", "at", "message", "copy", "diff"}``) as result.json beside ``file``. Returns 0
    written, 2 refused or invalid, 1 a step failed."""
    try:
        dfd = os.open(file.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as e:
        say(f"gestor setup: {file.parent}: cannot open the proposal's folder ({e.strerror}): it must be a folder, not a link")
        return 1
    now = clock.now()
    result: dict[str, Any] = {"ok": False, "at": now.isoformat(timespec="seconds"), "copy": None, "diff": ""}
    try:
        raw = _take(dfd, file.name)
        try:
            loaded = yaml.safe_load(raw.decode("utf-8"))
        except (UnicodeDecodeError, yaml.YAMLError) as e:
            raise SetupError(f"proposal: not YAML ({str(e).splitlines()[0][:80]}); nothing was written", 2) from None
        proposal = check_proposal(loaded)
        extra = extra_for(proposal["meter"]["driver"])
        if extra is not None and missing(extra):
            if install is None:
                writing.install_extra(extra.name, say, writing.install_script())
            else:
                install(extra.name)
        old_text, text = new_settings(proposal, path, now)
        result["diff"] = writing.diff(old_text, text, path)
        writing.validate(path, text, None)
        copy = writing.write(path, text, None, now)
        result.update(ok=True, copy=str(copy) if copy else None,
                      message=f"written: {path}" + (f" (the old one kept as {copy})" if copy else ""))
        say(result["message"])
        if restart:
            writing.restart_units(say)
        code = 0
    except SetupError as e:
        result["message"], code = str(e), e.code
        say(f"gestor setup: {e}")
    try:
        _put(dfd, RESULT_FILE, json.dumps(result, ensure_ascii=False))
    finally:
        os.close(dfd)
    return code
