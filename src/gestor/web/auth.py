"""The web page's password and session key.

* The password is kept as an argon2id hash (argon2-cffi's ``PasswordHasher``, RFC 9106 defaults:
  t=3, m=64 MiB, p=4) in ``secrets.yaml`` beside the settings file, under ``web_password_hash``
  (mode 600, owner kept), unless ``web.password_hash`` in settings.yaml names another secret.
  ``gestor web --set-password`` writes it; it is never printed.
* The session cookies are signed with a random 32-byte key kept in ``state_dir/web/session.key``
  (hex, mode 600), made on the first start: logins survive a restart of the unit; deleting the file
  logs everybody out.
"""
from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from gestor.files import atomic_write_text, read_small_text
from gestor.settings import SECRETS_FILE, SettingsError, Settings, _read_yaml

SECRET_NAME = "web_password_hash"
MIN_PASSWORD_CHARS = 10


class NoPassword(Exception):
    """No web password has been set (the message says how to set one)."""


def hasher():
    from argon2 import PasswordHasher
    return PasswordHasher()


def password_hash(s: Settings) -> str:
    """The argon2 hash the page's login checks: ``web.password_hash`` (``!secret NAME``), else
    ``web_password_hash`` in secrets.yaml. Raises NoPassword when neither is set."""
    if s.web.password_hash is not None:
        value = s.web.password_hash.get_secret_value()
    else:
        value = None
        path = secrets_file(s)
        if path.exists():
            try:
                data = _read_yaml(path, str(path))
            except SettingsError as e:
                raise NoPassword(f"{e.errors[0]}") from None
            if isinstance(data, dict) and isinstance(data.get(SECRET_NAME), str):
                value = data[SECRET_NAME]
    if not value:
        raise NoPassword(f"no web password is set: run 'sudo gestor web --set-password' "
                         f"(it keeps an argon2 hash in {secrets_file(s)}), then start gestor web again")
    if not value.startswith("$argon2"):
        raise NoPassword("web.password_hash is not an argon2 hash: set it with 'sudo gestor web --set-password'")
    return value


def secrets_file(s: Settings) -> Path:
    return (s.source.parent if s.source else Path.cwd()) / SECRETS_FILE


def check_password(hash_: str, password: str) -> bool:
    """Whether ``password`` matches ``hash_`` (constant-time, in argon2)."""
    from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
    try:
        return hasher().verify(hash_, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def set_password(s: Settings, password: str) -> Path:
    """Hash ``password`` and keep it in secrets.yaml as ``web_password_hash`` (the file's other
    lines, mode and owner are kept; made with mode 600 if missing). Returns the file. Raises
    ValueError for a password shorter than :data:`MIN_PASSWORD_CHARS`, OSError when the file
    cannot be written (run with sudo)."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValueError(f"the password must have at least {MIN_PASSWORD_CHARS} characters")
    hash_ = hasher().hash(password)
    path = secrets_file(s)
    try:
        st = path.stat()
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        st, lines = None, ["# gestor secrets: NAME: value, used in settings.yaml as  password: !secret NAME"]
    lines = [x for x in lines if not re.match(rf"\s*{SECRET_NAME}\s*:", x)]
    lines.append(f"{SECRET_NAME}: '{hash_}'")  # argon2's alphabet has no quote
    # not files.atomic_write_text: that gives the file the directory's group; this one keeps the
    # file's owner (gestor:root), or the daemons could no longer read their secrets after sudo
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if st is not None:
            os.chmod(tmp, st.st_mode & 0o7777 & ~0o077)  # never group- or world-readable
            if os.geteuid() == 0:
                os.chown(tmp, st.st_uid, st.st_gid)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def session_key(state_dir: Path) -> bytes:
    """The key that signs the session cookies: ``state_dir/web/session.key`` (64 hex digits),
    made (mode 600) on first use. Raises OSError when it can be neither read nor made."""
    path = Path(state_dir) / "web" / "session.key"
    try:
        key = bytes.fromhex(read_small_text(path, 4096).strip())
        if len(key) >= 32:
            return key
    except (FileNotFoundError, ValueError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write_text(path, secrets.token_hex(32), fsync=True, mode=0o600)
    return bytes.fromhex(read_small_text(path, 4096))
