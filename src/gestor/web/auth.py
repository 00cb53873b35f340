"""The web page's password and session key.

* The password is kept as an argon2id hash (argon2-cffi's ``PasswordHasher``, RFC 9106 defaults:
  t=3, m=64 MiB, p=4) in ``secrets.yaml`` beside the settings file, under ``web_password_hash``
  (mode 600, owner kept), unless ``web.password_hash`` in settings.yaml names another secret.
  ``gestor web --set-password`` writes it; it is never printed.
* The session cookies are signed with a random 32-byte key kept in ``state_dir/web/session.key``
  (hex, mode 600), made on the first start: logins survive a restart of the unit; deleting the file
  logs everybody out.
* Each login opens a session kept server-side (:class:`Sessions`, ``state_dir/web/sessions.json``,
  mode 600: a digest of its random id and when it ends, ``web.session_hours`` after the login, not
  moved by later requests); the cookie carries the id. Logout removes it: a copied cookie is
  then worth nothing. At most :data:`MAX_SESSIONS` are kept (a new login drops the oldest).
* Failed logins are counted per client address before the password is checked
  (:class:`LoginGuard`: :data:`LOGIN_LIMITS`, a moving window of the ``limits`` library that
  Flask-Limiter is built on; a right password clears its address); an address with no attempt
  left is refused (429) before any hashing. At most :data:`HASHES_AT_ONCE` argon2 check runs at a
  time (64 MiB each), and at most :data:`HASH_WAITING` logins wait for it, the address with the
  fewest attempts in the last hour first (:data:`TRIES`, counted whatever their answer; then the
  earliest): a better-placed login takes the place of the
  worst waiting one, which is refused with 503 at once, as is a login that would be worst in a
  full queue, or one that waited :data:`HASH_QUEUE_S`. So a password flood from many addresses
  holds at most ``HASHES_AT_ONCE + HASH_WAITING`` of the server's threads, and the owner's first
  attempt waits for the check being run, not behind the flood (issue 37: 4-12 s
  before). There is no limit over all addresses: one address's failures never lock out another.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
import secrets
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

from gestor.files import atomic_write_text, read_small_text
from gestor.settings import SECRETS_FILE, SettingsError, Settings, read_yaml

SECRET_NAME = "web_password_hash"
MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 1024
MAX_SESSIONS = 32
LOGIN_LIMITS = "5 per minute;20 per hour"  # failures per client address
HASHES_AT_ONCE = 1
HASH_WAITING = 3
TRIES = "1000000 per hour"  # attempts per address that reached the hasher (a fixed window): the place in its queue
HASH_QUEUE_S = 2.0


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
                data = read_yaml(path, str(path))
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
    if len(password) > MAX_PASSWORD_CHARS:
        raise ValueError(f"the password must have at most {MAX_PASSWORD_CHARS} characters")
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


def wait_words(seconds: int) -> str:
    """``seconds`` as the page says a wait: "45 seconds", "1 second", "12 minutes" (rounded up,
    from 120 s on)."""
    if seconds >= 120:
        return f"{math.ceil(seconds / 60)} minutes"
    return f"{seconds} second{'' if seconds == 1 else 's'}"


class LoginGuard:
    """Who may have a password checked now (see the module): :meth:`wait_s` before anything,
    then :meth:`check` (counts the attempt, then checks, one argon2 at a time)."""

    def __init__(self, limits: str = LOGIN_LIMITS, hashes: int = HASHES_AT_ONCE, queue_s: float = HASH_QUEUE_S,
                 waiting: int = HASH_WAITING):
        from limits import parse_many
        from limits.storage import MemoryStorage
        from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter
        self.limits = parse_many(limits)
        storage = MemoryStorage()
        self._rl = MovingWindowRateLimiter(storage)
        self._counter = FixedWindowRateLimiter(storage)  # a count per address, not a list of times
        self._hashing = HashQueue(hashes, waiting, queue_s)
        self.queue_s = queue_s
        self._tries = parse_many(TRIES)[0]

    def tries(self, addr: str) -> int:
        """Count one attempt of ``addr`` and return how many it made in :data:`TRIES`'s window
        before this one (its place in the hash queue: fewer goes first)."""
        self._counter.hit(self._tries, addr)
        return self._tries.amount - self._counter.get_window_stats(self._tries, addr).remaining - 1

    def wait_s(self, addr: str) -> int:
        """Seconds until ``addr`` may try again (0: now); the real wait, for the page and
        ``Retry-After``."""
        wait = 0.0
        for limit in self.limits:
            st = self._rl.get_window_stats(limit, addr)
            if st.remaining <= 0:
                wait = max(wait, st.reset_time - time.time())
        return math.ceil(wait) if wait > 0 else 0

    def check(self, addr: str, hash_: str, password: str) -> bool | None:
        """Count one attempt of ``addr``, then check ``password``: True (its count is cleared),
        False (wrong), or None: not checked, ``addr`` has no attempt left (:meth:`wait_s`).
        Raises :class:`Busy` when other checks kept the hasher for ``queue_s``."""
        self._hashing.enter(self.tries(addr))
        try:
            # counted before the check: parallel attempts cannot pass the limit
            if not all(self._rl.hit(limit, addr) for limit in self.limits):
                return None
            ok = len(password) <= MAX_PASSWORD_CHARS and check_password(hash_, password)
        finally:
            self._hashing.leave()
        if ok:
            for limit in self.limits:
                self._rl.clear(limit, addr)
        return ok


class Busy(Exception):
    """Another password check holds the hasher (argon2 takes 64 MiB a check)."""


class HashQueue:
    """At most ``running`` holders at a time, and at most ``waiting`` waiters, served by their
    ``rank`` (lower first; then by arrival): see the module. :meth:`enter` raises :class:`Busy`
    when refused (a full queue of better-ranked waiters, pushed out by a better one, or
    ``queue_s`` seconds of waiting); each :meth:`enter` that returns is paired with :meth:`leave`."""

    def __init__(self, running: int, waiting: int, queue_s: float) -> None:
        self.running, self.waiting, self.queue_s = running, waiting, queue_s
        self._cond = threading.Condition()
        self._held = 0
        self._queue: list[list] = []  # [(rank, arrival), pushed out?]
        self._arrivals = itertools.count()

    def enter(self, rank: int) -> None:
        with self._cond:
            if self._held < self.running and not self._queue:
                self._held += 1
                return
            me = [(rank, next(self._arrivals)), False]
            if len(self._queue) >= self.waiting:
                worst = max(self._queue, key=lambda w: w[0])
                if worst[0] < me[0] or self.waiting == 0:
                    raise Busy()
                worst[1] = True
                self._queue.remove(worst)
                self._cond.notify_all()
            self._queue.append(me)
            end = time.monotonic() + self.queue_s
            while True:
                if me[1]:
                    raise Busy()
                if self._held < self.running and min(self._queue, key=lambda w: w[0]) is me:
                    self._queue.remove(me)
                    self._held += 1
                    return
                left = end - time.monotonic()
                if left <= 0:
                    self._queue.remove(me)
                    self._cond.notify_all()
                    raise Busy()
                self._cond.wait(left)

    def __len__(self) -> int:
        """How many wait now."""
        with self._cond:
            return len(self._queue)

    def leave(self) -> None:
        with self._cond:
            self._held -= 1
            self._cond.notify_all()


class Sessions:
    """The open sessions of the page, server-side (see the module): ``open`` at a login gives the
    id the cookie carries; ``valid`` on every request; ``close`` at logout. Times come from the
    page's clock (``now``, aware)."""

    def __init__(self, state_dir: Path, hours: float) -> None:
        self.path = Path(state_dir) / "web" / "sessions.json"
        self.life = timedelta(hours=hours)
        self._lock = threading.Lock()
        self._open: dict[str, float] = {}  # sha256(id) -> end, epoch s
        try:
            raw = json.loads(read_small_text(self.path, 64 * 1024))
            self._open = {str(k): float(v) for k, v in raw.items() if math.isfinite(float(v))}
        except (OSError, ValueError, TypeError, AttributeError, RecursionError):
            self._open = {}  # none yet, or damaged: everybody logs in again

    @staticmethod
    def _digest(sid: str) -> str:
        return hashlib.sha256(sid.encode()).hexdigest()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write_text(self.path, json.dumps(self._open), fsync=True, mode=0o600)

    def open(self, now: datetime) -> str:
        sid = secrets.token_urlsafe(24)
        with self._lock:
            t = now.timestamp()
            self._open = {k: v for k, v in self._open.items() if v > t}
            self._open[self._digest(sid)] = (now + self.life).timestamp()
            while len(self._open) > MAX_SESSIONS:
                self._open.pop(min(self._open, key=self._open.__getitem__))
            self._save()
        return sid

    def valid(self, sid: object, now: datetime) -> bool:
        if not isinstance(sid, str):
            return False
        end = self._open.get(self._digest(sid))
        return end is not None and now.timestamp() < end

    def close(self, sid: object) -> None:
        if not isinstance(sid, str):
            return
        with self._lock:
            if self._open.pop(self._digest(sid), None) is not None:
                self._save()
