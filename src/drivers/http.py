"""HTTP glue shared by the Shelly and Enphase drivers (requests): one session per device, a
timeout on every request, and one exception type whose message says what went wrong in terms a
user can act on (unreachable, timeout, HTTP status, not JSON)."""
from __future__ import annotations

import json
from typing import Any

import requests


class HttpError(Exception):
    """A request to a device failed; the message names the URL and the reason."""


def device_session(username: str | None, password: str | None, digest: bool) -> requests.Session:
    """A session for one device; with a password, digest auth (Shelly Gen2) or basic auth
    (Shelly Gen1), user ``admin`` unless given."""
    session = requests.Session()
    if password is not None:
        auth = requests.auth.HTTPDigestAuth if digest else requests.auth.HTTPBasicAuth
        session.auth = auth(username or "admin", password)
    return session


def get_json(session: requests.Session, url: str, timeout_s: float, **kw: Any) -> Any:
    """GET ``url`` and parse its JSON body.

    Raises:
        HttpError: unreachable, no answer within ``timeout_s``, a non-2xx status, or a body that is
            not complete JSON (a device restarting mid-answer sends truncated bodies).
    """
    try:
        r = session.get(url, timeout=timeout_s, **kw)
    except requests.Timeout:
        raise HttpError(f"{url}: no answer within {timeout_s:g} s") from None
    except requests.ConnectionError as e:
        reason = "connection refused" if "refused" in str(e).lower() else "unreachable"
        raise HttpError(f"{url}: {reason}") from None
    except requests.RequestException as e:
        raise HttpError(f"{url}: {type(e).__name__}: {e}") from None
    if r.status_code == 401:
        raise HttpError(f"{url}: HTTP 401, authentication failed (check username/password/token)")
    if not r.ok:
        raise HttpError(f"{url}: HTTP {r.status_code} {r.reason}")
    try:
        return json.loads(r.content)
    except ValueError as e:
        raise HttpError(f"{url}: answer is not valid JSON ({e}); {len(r.content)} bytes") from None


def number(obj: Any, *path: str | int, where: str) -> float:
    """``obj[path...]`` as a float, or HttpError naming the missing key or bad value."""
    cur = obj
    for p in path:
        try:
            cur = cur[p]
        except (KeyError, IndexError, TypeError):
            raise HttpError(f"{where}: answer lacks {'.'.join(str(x) for x in path)}") from None
    if isinstance(cur, bool) or not isinstance(cur, (int, float)):
        raise HttpError(f"{where}: {'.'.join(str(x) for x in path)} is {cur!r}, not a number")
    return float(cur)
