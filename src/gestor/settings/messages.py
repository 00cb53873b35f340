"""The settings' error messages: a pydantic error as one line naming the file, the key, what is
allowed and the value found (secrets masked), e.g.
``settings.yaml: loads[1].power_w: must be > 0 (got -700)``; and the check that a number is not
a YAML boolean (:func:`numbers_not_bools`)."""
from __future__ import annotations

import re
import types
import typing
from typing import Any, Literal, Union

from pydantic import BaseModel, ValidationError

import drivers.meters as meters
import drivers.relays as relays
import drivers.setpoints as setpoints
from gestor.settings.models import DriverSection


def key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            plain = isinstance(part, str) and re.fullmatch(r"[\w.\-\[\]]{1,64}", part)
            out += ("." if out else "") + (part if plain else short_repr(part, 40))
    return out or "(top level)"


MASK = "**********"


class SecretValue(str):
    """A value that came from secrets.yaml (``!secret NAME``): every error shows it as ``**********``."""


def shown_value(v: Any) -> str:
    """A value for an error line: short, one line, a secret masked."""
    return MASK if isinstance(v, SecretValue) else short_repr(v)


def _message(err: dict[str, Any]) -> str:
    t, ctx = err["type"], err.get("ctx") or {}
    bounds = {"greater_than": (">", "gt"), "greater_than_equal": (">=", "ge"),
              "less_than": ("<", "lt"), "less_than_equal": ("<=", "le")}
    if t in bounds:
        op, key = bounds[t]
        msg = f"must be {op} {ctx[key]:g}"
    elif t == "extra_forbidden":
        return "unknown key"
    elif t == "missing":
        return "required, missing"
    elif t == "literal_error":
        msg = f"must be one of {ctx['expected']}"
    elif t in ("too_short", "too_long"):
        msg = err["msg"].replace("List should have", "must have")
    elif t == "value_error":
        msg = str(err["msg"]).removeprefix("Value error, ")
    else:
        msg = err["msg"][0].lower() + err["msg"][1:]
    v = err.get("input")
    if isinstance(v, SecretValue):  # a validator may have quoted it in its message
        msg = msg.replace(repr(str(v)), MASK).replace(str(v), MASK) if v else msg
    if "input" in err and not isinstance(v, (dict, list)):
        msg += f" (got {shown_value(v)})"
    return msg


def short_repr(v: Any, limit: int = 60) -> str:
    """``repr(v)``, cut to ``limit`` characters: an error line stays one readable line."""
    try:
        r = repr(v)
    except ValueError:  # an int of more than 4300 digits
        return f"an {type(v).__name__} too long to show"
    return r if len(r) <= limit else r[:limit] + f"... ({len(r)} characters)"


def error_lines(prefix: str, exc: ValidationError, base: tuple[Any, ...] = (),
            skip: frozenset[str] = frozenset()) -> list[str]:
    """One line per pydantic error; none for the keys in ``skip`` (already reported)."""
    out = []
    for e in exc.errors():
        key = key_path(base + tuple(e["loc"]))
        if not any(key == k or key.startswith(k + ".") for k in skip):
            out.append(f"{prefix}: {key}: {_message(e)}")
    return out


def is_numeric_field(ann: Any) -> bool:
    """Whether a field of this annotation takes numbers only (int, float, a Literal of ints, or
    one of those or None)."""
    origin = typing.get_origin(ann)
    if origin is typing.Annotated:
        return is_numeric_field(typing.get_args(ann)[0])
    if origin in (Union, types.UnionType):
        parts = [a for a in typing.get_args(ann) if a is not type(None)]
        return bool(parts) and all(is_numeric_field(a) for a in parts)
    if origin is Literal:
        return all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in typing.get_args(ann))
    return ann in (int, float)


def field_model(ann: Any) -> type[BaseModel] | None:
    """The model class a field of this annotation holds (also when optional), else None."""
    origin = typing.get_origin(ann)
    if origin is typing.Annotated:
        return field_model(typing.get_args(ann)[0])
    if origin in (Union, types.UnionType):
        found = [m for m in map(field_model, typing.get_args(ann)) if m is not None]
        return found[0] if len(found) == 1 else None
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def numbers_not_bools(model: type[BaseModel], raw: dict[Any, Any], loc: tuple[Any, ...] = ()
                      ) -> list[tuple[str, str]]:
    """Types strict for numbers, in every model (and every driver's, selected by ``driver:``): a
    number field given ``true``/``false`` or text is refused, where pydantic would take True as 1
    and "5" as 5. Ints stay valid for floats. Returns (key, message) pairs."""
    out: list[tuple[str, str]] = []

    def check(ann: Any, v: Any, at: tuple[Any, ...]) -> None:
        if is_numeric_field(ann):
            if isinstance(v, bool):
                out.append((key_path(at), f"must be a number, not true or false (got {shown_value(v)})"))
            elif isinstance(v, str):
                out.append((key_path(at), f"must be a number, not text (got {shown_value(v)})"))
            return
        origin, args = typing.get_origin(ann), typing.get_args(ann)
        if origin in (Union, types.UnionType):
            inner = [a for a in args if a is not type(None)]
            if len(inner) == 1:
                check(inner[0], v, at)
            return
        if origin is typing.Annotated:
            check(args[0], v, at)
            return
        if origin is list and args and isinstance(v, list):
            for i, x in enumerate(v):
                check(args[0], x, at + (i,))
            return
        if origin is dict and len(args) == 2 and isinstance(v, dict):
            for k, x in v.items():
                check(args[1], x, at + (k,))
            return
        sub = field_model(ann)
        if sub is not None and isinstance(v, dict):
            out.extend(numbers_not_bools(_driver_model(sub, at, v), v, at))

    for field_name, f in model.model_fields.items():
        key = f.alias or field_name
        if key in raw:
            check(f.annotation, raw[key], loc + (key,))
    return out


def _driver_model(model: type[BaseModel], loc: tuple[Any, ...], raw: dict[Any, Any]) -> type[BaseModel]:
    """For a ``meter`` or ``relay`` section, the model its ``driver:`` registered (when known)."""
    if model is not DriverSection:
        return model
    registry = (meters.METERS if loc[-1:] == ("meter",) else setpoints.SETPOINTS if loc[-1:] == ("device",)
                else relays.RELAYS)
    driver = raw.get("driver")
    return registry[driver][0] if driver in registry else model
