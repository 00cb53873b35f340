"""Generated settings faults (issue 23, invariant 4): settings documents built from the shipped
example with numeric fields pushed at and beyond their bounds, given the wrong type, or replaced by
YAML garbage. Whatever the document, parsing returns Settings or raises SettingsError whose every
line is one line, starts with the file's name and names a key; never another exception, never a
hang. Deterministic (derandomized) and bounded: the file runs in well under a minute.

A failure hypothesis finds is shrunk and kept below as an ordinary regression test."""
from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
import tempfile
import typing
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st
from pydantic import BaseModel

import drivers.meters as meters
import drivers.relays as relays
from gestor.settings import (DriverSection, Settings, SettingsError, field_model, is_numeric_field, load_settings,
                             parse_settings)
from tests.conftest import DATA, EXAMPLE, REPO, example_raw

GESTOR = [sys.executable, "-m", "gestor.cli"]
NAME = "settings.yaml"
# CI: 150 derandomized examples per property (a few seconds). Longer, random runs:
#   GESTOR_FUZZ_EXAMPLES=5000 .venv/bin/python -m pytest -q tests/test_settings_generated.py
EXAMPLES = int(os.environ.get("GESTOR_FUZZ_EXAMPLES", "150"))
FAST = settings(deadline=None, max_examples=EXAMPLES, derandomize="GESTOR_FUZZ_EXAMPLES" not in os.environ,
                database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# driver sections swapped in, so that every driver's numbers are generated too
METERS = [None,  # the example's replay meter
          {"driver": "shelly_em", "host": "192.0.2.1"},
          {"driver": "eastron", "host": "192.0.2.1"},
          {"driver": "envoy", "host": "192.0.2.1"},
          {"driver": "huawei", "host": "192.0.2.1"},
          {"driver": "sunspec", "host": "192.0.2.1", "unit_id": 240},
          {"driver": "goodwe", "host": "192.0.2.1"},
          {"driver": "sma_em"},
          {"driver": "fronius", "host": "192.0.2.1"},
          {"driver": "wibeee", "host": "192.0.2.1"},
          {"driver": "modbus_map", "host": "192.0.2.1", "map": str(REPO / "config" / "meters" / "huawei_dtsu666.yaml")}]
RELAYS = [None, {"driver": "shelly", "host": "192.0.2.1"}, {"driver": "modbus_coil", "host": "192.0.2.1", "coil": 0},
          {"driver": "gpio", "pin": 17}]
# numbers the settings' own models do not own (drivers/modbus.py's link): bounded there or not, still typed
NOT_OURS = {"baudrate"}


def base(meter: dict | None, relay: dict | None) -> dict:
    raw = example_raw()
    raw["meter"]["path"] = str(DATA / "house-2022-06-11_13.csv")
    if meter is not None:
        raw["meter"] = copy.deepcopy(meter)
    if relay is not None:
        raw["loads"][0]["relay"] = copy.deepcopy(relay)
    return raw


class Num(typing.NamedTuple):
    path: tuple[Any, ...]
    ann: Any
    lo: float | None
    lo_open: bool
    hi: float | None
    hi_open: bool


def _bounds(f: Any) -> tuple[float | None, bool, float | None, bool]:
    lo = hi = None
    lo_open = hi_open = False
    for m in f.metadata:
        for attr, is_lo, is_open in (("ge", True, False), ("gt", True, True), ("le", False, False), ("lt", False, True)):
            v = getattr(m, attr, None)
            if v is not None:
                if is_lo:
                    lo, lo_open = v, is_open
                else:
                    hi, hi_open = v, is_open
    return lo, lo_open, hi, hi_open


def numeric_fields(model: type[BaseModel], raw: dict, path: tuple[Any, ...] = ()) -> list[Num]:
    """Every numeric field of ``model`` (and its sections, loads and drivers) with its bounds."""
    out = []
    for name, f in model.model_fields.items():
        key = f.alias or name
        if name == "source" and model is Settings:
            continue
        if is_numeric_field(f.annotation):
            out.append(Num(path + (key,), f.annotation, *_bounds(f)))
            continue
        sub = field_model(f.annotation)
        v = raw.get(key)
        if typing.get_origin(f.annotation) is list and isinstance(v, list):
            sub = field_model(typing.get_args(f.annotation)[0])
            for i, x in enumerate(v):
                if sub is not None and isinstance(x, dict):
                    out += numeric_fields(sub, x, path + (key, i))
        elif sub is not None:
            if sub is DriverSection and isinstance(v, dict):
                sub = (meters.METERS if key == "meter" else relays.RELAYS)[v["driver"]][0]
            out += numeric_fields(sub, v if isinstance(v, dict) else {}, path + (key,))
    return out


def put(raw: dict, path: tuple[Any, ...], value: Any) -> None:
    node = raw
    for k in path[:-1]:
        if k not in node if isinstance(node, dict) else False:
            node[k] = {}
        node = node[k]
    node[path[-1]] = value


def key_of(path: tuple[Any, ...]) -> str:
    return "".join(f"[{k}]" if isinstance(k, int) else ("." if i else "") + k for i, k in enumerate(path))


def check_lines(errors: list[str], name: str = NAME) -> None:
    """The invariant: one line each, starting with the file's name, naming a key or the file."""
    assert errors
    for line in errors:
        assert "\n" not in line and "\r" not in line, line
        assert line.startswith(f"{name}: ") and len(line.split(": ")) >= 3, line
        assert len(line) < 600, line


def outcome(raw: Any, name: str = NAME) -> list[str]:
    """[] when ``raw`` is valid settings, else its error lines (checked). Any other exception fails."""
    try:
        parse_settings(raw, name)
    except SettingsError as e:
        check_lines(e.errors, name)
        return e.errors
    return []


@pytest.mark.parametrize("meter", range(len(METERS)))
@pytest.mark.parametrize("relay", range(len(RELAYS)))
def test_every_number_of_every_model_has_a_lower_and_an_upper_bound(meter, relay):
    raw = base(METERS[meter], RELAYS[relay])
    assert outcome(raw) == []
    nums = numeric_fields(Settings, raw)
    assert len(nums) > 40
    unbounded = [key_of(n.path) for n in nums if typing.get_origin(n.ann) is not Literal
                 and (n.lo is None or n.hi is None) and n.path[-1] not in NOT_OURS]
    assert unbounded == []


ALL_NUMS = {(m, r): numeric_fields(Settings, base(METERS[m], RELAYS[r]))
            for m in range(len(METERS)) for r in range(len(RELAYS))}
WRONG_TYPES = [True, False, "5", "", "1e3", [], [1], {}, {"a": 1}, "**********"]


def _edge(n: Num) -> st.SearchStrategy[tuple[Any, bool]]:
    """(value, whether it is beyond the field's bounds) for one numeric field."""
    if typing.get_origin(n.ann) is Literal:
        allowed = [a for a in typing.get_args(n.ann)]
        return st.one_of(st.sampled_from([(a, False) for a in allowed]),
                         st.integers(-10**6, 10**6).filter(lambda v: v not in allowed).map(lambda v: (v, True)))
    cands: list[tuple[Any, bool]] = []
    for b, is_open, sign in ((n.lo, n.lo_open, -1), (n.hi, n.hi_open, 1)):
        if b is None:
            continue
        cands += [(b, is_open), (b + sign * 1e-9 * max(1, abs(b)), True), (b + sign, True),
                  (math.nextafter(b, sign * math.inf), True), (sign * 1e308, True), (sign * 10**400, True)]
    cands += [(-0.0, n.lo is not None and (n.lo > 0 or (n.lo == 0 and n.lo_open)))]
    inside = st.floats(n.lo if n.lo is not None else -1e6, n.hi if n.hi is not None else 1e6,
                       exclude_min=n.lo_open, exclude_max=n.hi_open, allow_nan=False)
    return st.one_of(st.sampled_from(cands), inside.map(lambda v: (v, False)))


@st.composite
def mutated(draw: st.DrawFn) -> tuple[dict, list[tuple[str, Any, bool | None]]]:
    m, r = draw(st.sampled_from(sorted(ALL_NUMS)))
    raw = base(METERS[m], RELAYS[r])
    nums = ALL_NUMS[(m, r)]
    done = []
    for n in draw(st.lists(st.sampled_from(nums), min_size=1, max_size=3, unique_by=lambda n: n.path)):
        if draw(st.integers(0, 3)) == 0:
            value, beyond = draw(st.sampled_from(WRONG_TYPES + [None])), None
            beyond = None if value is None else True
        else:
            value, beyond = draw(_edge(n))
        if isinstance(n.ann, type) and n.ann is int and isinstance(value, float) and not value.is_integer():
            beyond = True  # 2.5 for an int
        put(raw, n.path, value)
        done.append((key_of(n.path), value, beyond))
    return raw, done


@FAST
@given(mutated())
def test_numbers_at_and_beyond_their_bounds_are_one_line_naming_the_key(case):
    raw, done = case
    errors = outcome(raw)
    for key, value, beyond in done:
        named = any(line.startswith(f"{NAME}: {key}:") or line.startswith(f"{NAME}: {key} ") for line in errors)
        if beyond:
            assert named, (key, value, errors)


YAML_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
                         st.sampled_from(["*a", "&a x", "!secret x", "!!binary x", "2022-13-45", "9" * 5000, "1e999",
                                          ".nan", "-.inf", "0x1F", "0o17", "1_000", "~", "? x", "[", "{", "'", "\t"]))


@st.composite
def garbled(draw: st.DrawFn) -> str:
    """The example's text with a few lines replaced, inserted or cut, and random bytes sprinkled."""
    lines = EXAMPLE.read_text().replace("../../shared/data/", str(DATA) + "/").splitlines()
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["value", "insert", "cut", "text"]))
        if kind == "value" and ":" in lines[i]:
            k = lines[i].split(":")[0]
            lines[i] = f"{k}: {draw(YAML_SCALARS)}"
        elif kind == "insert":
            lines.insert(i, draw(st.text(max_size=30)))
        elif kind == "cut":
            del lines[i]
        else:
            at = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:at] + draw(st.text(max_size=5)) + lines[i][at:]
    return "\n".join(lines) + "\n"


TMP = Path(tempfile.mkdtemp(prefix="gestor-generated-"))


@FAST
@given(st.one_of(garbled(), st.text(max_size=200)))
def test_yaml_garbage_is_one_line_per_problem_never_a_traceback(text):
    f = TMP / "settings.yaml"
    try:
        f.write_text(text, encoding="utf-8", errors="surrogatepass")
    except UnicodeEncodeError:
        return
    try:
        load_settings(f)
    except SettingsError as e:
        check_lines(e.errors, str(f))


@pytest.mark.parametrize("path,value", [
    (("managing", "interval_s"), 0.001), (("policy", "margin_wh"), -1e12), (("monitoring", "interval_s"), True),
    (("loads", 0, "power_w"), 10**400), (("store", "port"), [80]),
])
def test_gestor_check_on_generated_bad_files_exits_2_without_traceback(tmp_path, path, value):
    raw = base(None, None)
    put(raw, path, value)
    f = tmp_path / "settings.yaml"
    f.write_text(yaml.safe_dump(raw))
    p = subprocess.run(GESTOR + ["check", "--config", str(f)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-2000:]
    check_lines(p.stderr.splitlines(), str(f))
    assert any(key_of(path) in line for line in p.stderr.splitlines())


# --- regressions found by the generator -----------------------------------------------------------
# (found while building the generator, before it ran: each was a traceback or a multi-line error)


@pytest.mark.parametrize("key,value", [("a\nb", 1), (None, 1), (3, "x"), ("power_w", 10**5000), ("site", 10**5000)],
                         ids=["newline", "none", "int", "power_w_huge", "site_huge"])
def test_odd_keys_and_huge_ints_are_one_line(key, value):
    raw = base(None, None)
    raw[key] = value
    check_lines(outcome(raw))
    raw = base(None, None)
    raw["loads"][0][key] = value
    check_lines(outcome(raw))


@pytest.mark.parametrize("text", ["site: home\nwhen: 2022-13-45\n", "site: " + "9" * 5000 + "\n",
                                  '"a\\nb": 1\n', "a: &x 1\nb: *x\n"])
def test_yaml_values_python_cannot_build_are_one_line(text):
    f = TMP / "settings.yaml"
    f.write_text(text)
    with pytest.raises(SettingsError) as e:
        load_settings(f)
    check_lines(e.value.errors, str(f))
