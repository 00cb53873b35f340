"""Reading settings.yaml from disk: the size- and depth-limited YAML reader, ``!secret`` references
resolved from secrets.yaml, :func:`load_settings`, the files the settings name
(:func:`check_files`), clear-text secrets (:func:`clear_text_secrets`) and
:func:`dump_settings` (secrets masked)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gestor.files import UnsafeFileError, read_small_file
from gestor.settings.checks import parse_settings
from gestor.settings.messages import SecretValue, key_path, short_repr
from gestor.settings.models import (MAX_DEPTH, MAX_PEM_BYTES, MAX_PRICES_BYTES, MAX_SETTINGS_BYTES, SECRETS_FILE,
                                   SUDO_HINT, Settings, SettingsError)


class SecretRef(str):
    """``!secret NAME`` in settings.yaml: the value of NAME in secrets.yaml (Home Assistant's
    convention), resolved by :func:`load_settings`."""


class _Loader(yaml.SafeLoader):
    """YAML's safe loader, refusing duplicate keys (YAML would silently keep the last one) and
    aliases (``*name``: settings never need them, and a "billion laughs" of nested aliases expands
    a 2 kB file past any memory), knowing ``!secret NAME``; a value YAML cannot build (a date
    2022-13-45, an int of 5000 digits) is an error at its line, not a traceback."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"an alias (*{short_repr(event.anchor, 30)[1:-1]}) is not allowed in settings: "
                "write the value out", event.start_mark)
        return super().compose_node(parent, index)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError, TypeError) as e:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value ({short_repr(str(e), 80)[1:-1]})", node.start_mark) from None

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(None, None, "a key must be a plain value",
                                                        key_node.start_mark) from None
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {short_repr(key)} (first on line {seen[key].line + 1})",
                    key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


_Loader.add_constructor("!secret", lambda loader, node: SecretRef(loader.construct_scalar(node)))


def read_file(path: Path, prefix: str, max_bytes: int, hint: str = SUDO_HINT) -> bytes:
    """The bytes of a file the settings are or name: a regular file only (never blocks on a FIFO,
    never reads /dev/zero), at most ``max_bytes``. Raises SettingsError (one line, starting with
    ``prefix``); a permission denied says how to get it (``hint``)."""
    try:
        return read_small_file(path, max_bytes)
    except UnsafeFileError as e:
        raise SettingsError([f"{prefix}: {e.strerror}"]) from None
    except PermissionError as e:
        raise SettingsError([f"{prefix}: cannot read: {e.strerror} ({hint})"]) from None
    except OSError as e:
        raise SettingsError([f"{prefix}: cannot read: {e.strerror or e}"]) from None


def read_yaml(path: Path, prefix: str, max_bytes: int = MAX_SETTINGS_BYTES, hint: str = SUDO_HINT) -> Any:
    """Parse one YAML file into plain data. Raises SettingsError (one line, starting with
    ``prefix``) for anything wrong with the file itself: unreadable (:func:`read_file`), too
    large, not UTF-8, not YAML, duplicate keys, aliases, too deep."""
    data = read_file(path, prefix, max_bytes, hint)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise SettingsError([f"{prefix}: line {line}: not UTF-8 text (byte 0x{data[e.start]:02x}); "
                             "save it as UTF-8"]) from None
    try:
        raw = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise SettingsError([f"{prefix}: {where}not valid YAML: {' '.join(problem.split())}"]) from None
    except RecursionError:
        raise SettingsError([f"{prefix}: nested too deeply to be settings"]) from None
    if _depth(raw) > MAX_DEPTH:
        raise SettingsError([f"{prefix}: nested more than {MAX_DEPTH} levels deep: not settings"])
    return raw


def _read_yaml(path: Path, name: str, errors_prefix: str | None = None) -> Any:
    """:func:`read_yaml` of a settings file (the name older callers use)."""
    return read_yaml(path, errors_prefix or name)


def _depth(v: Any, d: int = 0) -> int:
    if d > MAX_DEPTH:
        return d
    if isinstance(v, dict):
        return max((_depth(x, d + 1) for x in v.values()), default=d + 1)
    if isinstance(v, list):
        return max((_depth(x, d + 1) for x in v), default=d + 1)
    return d


def secrets_path(settings_path: Path) -> Path:
    """secrets.yaml beside the settings file (``/etc/gestor/secrets.yaml`` when installed)."""
    return settings_path.parent / SECRETS_FILE


def _resolve_secrets(raw: Any, name: str, path: Path, optional: bool) -> Any:
    """Replace every ``!secret NAME`` by its value in secrets.yaml. With ``optional`` (``gestor
    status``, which needs no secret and may not be allowed to read them) an unreadable secrets
    file leaves a placeholder."""
    refs: list[tuple[tuple[Any, ...], SecretRef]] = []

    def walk(v: Any, loc: tuple[Any, ...]) -> None:
        if isinstance(v, SecretRef):
            refs.append((loc, v))
        elif isinstance(v, dict):
            for k, x in v.items():
                walk(x, loc + (k,))
        elif isinstance(v, list):
            for i, x in enumerate(v):
                walk(x, loc + (i,))

    walk(raw, ())
    if not refs:
        return raw
    spath = secrets_path(path)
    try:
        secrets = read_yaml(spath, str(spath), hint="run it with sudo")
        if not isinstance(secrets, dict):
            raise SettingsError([f"{spath}: must be a mapping NAME: value"])
    except SettingsError as e:
        if optional:
            secrets = {}
        else:
            loc, ref = refs[0]
            raise SettingsError([f"{name}: {key_path(loc)}: !secret {ref}: {e.errors[0]}"]) from None
    errors = []

    def get(loc: tuple[Any, ...], ref: SecretRef) -> Any:
        if ref in secrets and isinstance(secrets[ref], (str, int)) and not isinstance(secrets[ref], bool):
            return SecretValue(secrets[ref])
        if optional:
            return "<secret not readable>"
        errors.append(f"{name}: {key_path(loc)}: !secret {ref}: no such name in {spath} "
                      f"(it must be a string there)")
        return None

    def replace(v: Any, loc: tuple[Any, ...]) -> Any:
        if isinstance(v, SecretRef):
            return get(loc, v)
        if isinstance(v, dict):
            return {k: replace(x, loc + (k,)) for k, x in v.items()}
        if isinstance(v, list):
            return [replace(x, loc + (i,)) for i, x in enumerate(v)]
        return v

    out = replace(raw, ())
    if errors:
        raise SettingsError(errors)
    return out


def read_raw(path: Path | str, secrets_optional: bool = False) -> Any:
    """The settings file as plain data, secrets resolved. Raises SettingsError."""
    path = Path(path)
    raw = _read_yaml(path, str(path))
    return _resolve_secrets(raw, str(path), path, secrets_optional)


def load_settings(path: Path | str, secrets_optional: bool = False, as_path: Path | str | None = None) -> Settings:
    """Read and validate a settings file.

    ``!secret NAME`` values come from ``secrets.yaml`` beside it (root-only on an installed system);
    ``secrets_optional`` lets commands that need no secret (``gestor status``) work without them.
    ``as_path``: validate ``path`` as if it were there (its name in errors, relative paths from
    its folder): ``gestor setup`` checks a candidate file before it replaces the real one.

    Raises:
        SettingsError: the file is missing, not YAML, or not valid; one line per problem.
    """
    path = Path(path)
    shown = Path(as_path) if as_path is not None else path
    s = parse_settings(read_raw(path, secrets_optional), str(shown), shown.resolve())
    if not secrets_optional:
        errors = check_files(s, str(shown))
        if errors:
            raise SettingsError(errors)
    return s


def check_files(s: Settings, name: str) -> list[str]:
    """Every file the settings name and a daemon will open (besides the meter's, checked with its
    section): readable, a regular file, not over its size cap; one error line for each that is
    not. MQTT's certificates when MQTT is enabled with TLS, the page's TLS pair, prices.file when
    prices come from it."""
    files: list[tuple[str, Path, int]] = []
    if s.mqtt.enabled and s.mqtt.tls:
        files += [(f"mqtt.{k}", getattr(s.mqtt, k), MAX_PEM_BYTES) for k in ("ca_file", "cert_file", "key_file")]
    files += [(f"web.{k}", getattr(s.web, k), MAX_PEM_BYTES) for k in ("tls_cert_file", "tls_key_file")]
    if s.prices.source == "file":
        files.append(("prices.file", s.prices.file, MAX_PRICES_BYTES))  # type: ignore[arg-type]
    errors = []
    for key, f, cap in files:
        if f is None:
            continue
        try:
            read_file(f, f"{name}: {key}: {f}", cap)
        except SettingsError as e:
            errors.extend(e.errors)
    return errors


SECRET_KEYS = ("password", "token", "esios_token", "password_hash", "nif")


def clear_text_secrets(path: Path | str) -> list[str]:
    """Keys of ``path`` holding a password or token in clear (not ``!secret NAME``)."""
    return plain_secrets(_read_yaml(Path(path), str(path)))


def plain_secrets(raw: Any, loc: tuple[Any, ...] = ()) -> list[str]:
    """Places in a settings document where a password or token is written in clear (``gestor
    check`` warns: they belong in secrets.yaml)."""
    out = []
    if isinstance(raw, dict):
        for k, v in raw.items():
            if k in SECRET_KEYS and isinstance(v, str) and not isinstance(v, SecretRef) and v:
                out.append(key_path(loc + (k,)))
            else:
                out.extend(plain_secrets(v, loc + (k,)))
    elif isinstance(raw, list):
        for i, v in enumerate(raw):
            out.extend(plain_secrets(v, loc + (i,)))
    return out


def dump_settings(s: Settings) -> str:
    """The resolved settings as YAML (defaults filled in), secrets shown as ``**********``."""
    data = s.model_dump(mode="json", exclude={"source"})
    return yaml.safe_dump(data, sort_keys=False)
