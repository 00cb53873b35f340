"""Writing what ``gestor setup`` settled: the settings (the old file's other sections kept),
the Shelly password to secrets.yaml as ``!secret``, the diff shown first, the same validation as
``gestor check`` on the candidate before anything is replaced, a dated copy of the old file, the
driver's optional extra, and the units restarted.

Modes: settings.yaml 0640, secrets.yaml 0600, each given the group of its folder when written as
root (:func:`gestor.files.atomic_write_text`), as install.sh leaves them.
"""
from __future__ import annotations

import difflib
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from gestor.files import atomic_write_text
from drivers.extras import EXTRAS, INSTALL_HINT, missing
from gestor.settings import SECRETS_FILE, SecretRef, SettingsError, load_settings, read_yaml
from gestor.setup.answers import SetupError

REPO = Path(__file__).resolve().parents[3]
UNITS = ("gestor-monitoring.service", "gestor-managing.service")
ALSO_UNITS = ("gestor-web.service", "gestor-virtual-meter.service")   # read the settings too
SYSTEM_INSTALL_SH = Path("/opt/gestor/install.sh")   # kept there by sudo ./install.sh
HEADER = ("# gestor settings, written by `gestor setup` on {when}. Check them with\n"
          "#   gestor check --config {path}\n"
          "# Units are in the key names (_w watts, _wh watt-hours, _s seconds); net power is\n"
          "# export-positive. The settings reference: docs/site/en/ (setup.md for these questions).\n")


class _Dumper(yaml.SafeDumper):
    """YAML out, ``!secret NAME`` kept as such."""


_Dumper.add_representer(SecretRef, lambda d, v: d.represent_scalar("!secret", str(v)))


def settings_text(data: dict[str, Any], path: Path, when: datetime) -> str:
    """The settings file's text: a header and ``data`` in the order given."""
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False)
    # a tagged scalar comes out quoted (!secret 'name'); a plain name reads as the docs write it
    body = re.sub(r"!secret '([A-Za-z0-9_]+)'", r"!secret \1", body)
    return HEADER.format(when=when.isoformat(timespec="seconds"), path=path) + body


def read_old(path: Path) -> tuple[str, dict[str, Any]]:
    """The current file's text and data ("" and {} when there is none). Raises SetupError when
    it exists but is not a YAML mapping (it is then left as it is)."""
    if not path.exists():
        return "", {}
    try:
        data = read_yaml(path, str(path))
        text = path.read_text(encoding="utf-8")
    except SettingsError as e:
        raise SetupError(f"the current {path} cannot be read ({e.errors[0]}): move it away and run gestor setup again") from None
    if data is None:
        return text, {}
    if not isinstance(data, dict):
        raise SetupError(f"the current {path} is not a mapping of settings: move it away and run gestor setup again")
    return text, data


def diff(old: str, new: str, path: Path) -> str:
    """A unified diff of ``old`` → ``new`` text (what will be written)."""
    return "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                        fromfile=f"{path} (now)", tofile=f"{path} (new)"))


def secrets_text(path: Path, secrets: dict[str, str]) -> str | None:
    """secrets.yaml's new text with ``secrets`` set (its other names kept), or None if none."""
    if not secrets:
        return None
    old: dict[str, Any] = {}
    spath = path.parent / SECRETS_FILE
    if spath.exists():
        try:
            loaded = read_yaml(spath, str(spath))
        except SettingsError as e:
            raise SetupError(f"{spath}: {e.errors[0]}") from None
        old = loaded if isinstance(loaded, dict) else {}
    return yaml.safe_dump({**old, **secrets}, sort_keys=False, allow_unicode=True)


def validate(path: Path, text: str, new_secrets: str | None) -> None:
    """The same validation as ``gestor check`` (:func:`gestor.settings.load_settings`), on the
    candidate files in a private temporary folder, as if they were at ``path``. Raises
    SetupError with every problem, one per line; nothing is written."""
    with tempfile.TemporaryDirectory(prefix="gestor-setup-") as d:
        cand = Path(d) / path.name
        cand.write_text(text, encoding="utf-8")
        spath = path.parent / SECRETS_FILE
        if new_secrets is not None:
            (Path(d) / SECRETS_FILE).write_text(new_secrets, encoding="utf-8")
        elif spath.exists():
            shutil.copyfile(spath, Path(d) / SECRETS_FILE)
        try:
            load_settings(cand, as_path=path)
        except SettingsError as e:
            raise SetupError("the settings would not be valid; nothing was written:\n" + "\n".join(e.errors), 2) from None


def write(path: Path, text: str, new_secrets: str | None, when: datetime) -> Path | None:
    """Replace ``path`` with ``text`` (0640) and secrets.yaml with ``new_secrets`` (0600),
    keeping the old file as ``NAME.YYYYMMDD-HHMMSS.bak`` beside it; returns that copy's path
    (None when there was no old file). Raises SetupError naming the file on a write failure."""
    copy = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            copy = path.with_name(f"{path.name}.{when:%Y%m%d-%H%M%S}.bak")
            shutil.copy2(path, copy)
        if new_secrets is not None:
            atomic_write_text(path.parent / SECRETS_FILE, new_secrets, fsync=True, mode=0o600)
        atomic_write_text(path, text, fsync=True, mode=0o640)
    except OSError as e:
        raise SetupError(f"cannot write {e.filename or path}: {e.strerror or e} (run it with sudo?)") from None
    return copy


def extra_missing(extra: str | None) -> bool:
    """True when the optional extra ``extra`` is named and its library is not importable
    (:mod:`drivers.extras`, the one map of the extras)."""
    if extra is None:
        return False
    known = EXTRAS.get(extra)
    return missing(known) if known is not None else True


def install_script() -> Path | None:
    """The install.sh that can add an extra: the source tree's (a checkout: src/ beside it), else
    the system install's copy (``sudo ./install.sh`` keeps it in /opt/gestor with the locks)."""
    for script in (REPO / "install.sh", SYSTEM_INSTALL_SH):
        if script.exists() and "--extra" in script.read_text(encoding="utf-8", errors="replace"):
            return script
    return None


def install_extra(extra: str, say: Callable[[str], None], script: Path | None,
                  run: Callable[..., Any] = subprocess.run) -> None:
    """Install the extra with ``script --extra NAME`` (``script``: :func:`install_script`'s
    answer), or with no such script say the command to run (the driver's settings then fail with
    that sentence)."""
    if script is None:
        say(f"the {extra} driver needs its library: {INSTALL_HINT.format(extra=extra)} in gestor's source folder")
        return
    say(f"installing the {extra} extra: {script} --extra {extra}")
    done = run([str(script), "--extra", extra], check=False)
    if getattr(done, "returncode", 1) != 0:
        raise SetupError(f"{script} --extra {extra} failed (exit {getattr(done, 'returncode', '?')}): "
                         "nothing was written; install the extra and run gestor setup again")


def restart_units(say: Callable[[str], None], systemd_dir: Path = Path("/run/systemd/system"),
                  run: Callable[..., Any] = subprocess.run) -> bool:
    """Restart monitoring and managing with systemctl when systemd runs this machine (its
    ``/run/systemd/system``, sd_booted(3)), and the page and the virtual meter where they run
    (``try-restart``: a unit that is not running stays so); otherwise say so. True when restarted."""
    if not systemd_dir.is_dir():
        say("systemd is not running here: start monitoring and managing yourself "
            f"(gestor monitoring / gestor managing), or restart {' and '.join(UNITS)} where they run")
        return False
    for verb, units in (("restart", UNITS), ("try-restart", ALSO_UNITS)):
        done = run(["systemctl", verb, *units], check=False, timeout=60)
        if getattr(done, "returncode", 1) != 0:
            raise SetupError(f"systemctl {verb} {' '.join(units)} failed: see journalctl -u {units[0]}")
    say(f"restarted {' and '.join(UNITS)} (and {' and '.join(ALSO_UNITS)} where they run)")
    return True
