"""InfluxDB store.

InfluxDB 1.x is written through its HTTP ``/write`` endpoint with ``requests`` (Debian and Raspberry
Pi OS ship server 1.6.7, which has no ``/api/v2`` endpoints, so ``influxdb-client`` cannot write to
it); answers are read up to 64 kB, so a misbehaving server cannot exhaust the Pi's memory. Points
are built as line protocol by :func:`point`. Measurements and fields: DESIGN.md section 7 and
docs/site/en/influxdb.md. ``influxdb-client`` (and numpy with it) is imported only for ``store.kind: influxdb2``.

InfluxDB 2.x is written through ``influxdb-client`` (``store.kind: influxdb2``: url, org, bucket,
token); ``store.kind: auto`` asks ``/ping`` for ``X-Influxdb-Version`` and picks the API.

Writes never block the control cycle: :meth:`InfluxStore.write` appends to an in-memory queue that
a writer thread sends in batches, in order. While the server does not answer, points go to the
on-disk spool (:mod:`drivers.store.spool`) and are replayed in order when it is back. A 4xx for a
bad point (e.g. a field type conflict) is logged with the point and not retried.

Writes are batched: the writer sends when ``batch_size`` points are queued or the oldest has
waited ``flush_s`` (10 s), so a Pi's SD card sees a few InfluxDB WAL syncs a minute, not one per
reading. How long a point is only in memory: up to ``flush_s`` before its batch is sent, then
until InfluxDB answers; while InfluxDB is down, or a write has hung for ``memory_max_s`` (5 s),
every point goes to the spool at once. So a SIGKILL loses at most the points of the last
``flush_s`` + ``memory_max_s`` (15 s as shipped); SIGTERM loses nothing. When the spool cannot be written
(disk full, read-only), points stay in memory (bounded by ``queue_max_points``, the oldest
dropped past it, loudly) and still go straight to InfluxDB; the spool is retried every minute.
"""
from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections import deque
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Protocol

import requests

from drivers import secret
from drivers.store.spool import Spool

log = logging.getLogger("gestor.store")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class StoreError(Exception):
    """The store cannot be used (unreachable at start, bad database name)."""


_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_ESCAPE_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_ESCAPE_STRING = str.maketrans({'"': r'\"', "\\": r"\\"})


def _key(k: str) -> str:
    return str(k).translate(_ESCAPE_KEY)


def point(measurement: str, tags: dict[str, str], fields: dict[str, Any], at: datetime) -> str:
    """One line of line protocol, ms precision (InfluxDB docs, "Line protocol" reference: escaping
    of measurements, tag and field keys, tag values and string fields). Numbers are written as
    floats (InfluxDB rejects a field that changes type; a whole float drops its ".0"), booleans as
    booleans, strings as strings; None and non-finite fields are omitted; tags and fields are
    sorted. Written here, not with influxdb-client, so the daemons do not import it (nor numpy):
    ``tests/test_store_unit.py`` checks it against influxdb-client's ``Point`` on odd inputs."""
    out = []
    for k, v in sorted(fields.items()):
        if v is None:
            continue
        if isinstance(v, bool):
            out.append(f"{_key(k)}={'true' if v else 'false'}")
        elif isinstance(v, str):
            out.append(f'{_key(k)}="{v.translate(_ESCAPE_STRING)}"')
        else:
            f = float(v)
            if not math.isfinite(f):
                continue
            text = str(f)
            out.append(f"{_key(k)}={text[:-2] if text.endswith('.0') else text}")
    if not out:
        raise ValueError(f"point {measurement} has no field")
    tag_text = ""
    for k, v in sorted(tags.items()):
        if v is None:
            continue
        tv = _key(v)
        if tv.endswith("\\"):
            tv += " "
        if _key(k) and tv:
            tag_text += f",{_key(k)}={tv}"
    ms = (at - EPOCH) // timedelta(milliseconds=1)  # exact integer ms
    return f"{measurement.translate(_ESCAPE_MEASUREMENT)}{tag_text} {','.join(out)} {ms}"


class Store(Protocol):
    def write(self, lines: Iterable[str]) -> None: ...
    def flush(self, timeout_s: float = 30.0) -> bool: ...
    def close(self) -> None: ...


class NullStore:
    """``store.kind: none``: keeps nothing (for a meter test or a dry run)."""

    def write(self, lines: Iterable[str]) -> None:
        pass

    def flush(self, timeout_s: float = 30.0) -> bool:
        return True

    def close(self) -> None:
        pass


class Rejected(Exception):
    """The server refused these points (4xx): retrying would not help."""


class ServerDown(Exception):
    """No answer, a timeout or a 5xx: retry later."""


MAX_ANSWER_BYTES = 64 * 1024


class V1Sender:
    """InfluxDB 1.x ``POST /write?db=...&precision=ms`` with requests. Creates the database when
    the server says it does not exist. Reads at most MAX_ANSWER_BYTES of any answer."""

    version = "1.x"

    def __init__(self, host: str, port: int, database: str, username: str | None, password: str | None,
                 timeout_s: float) -> None:
        self.url = f"http://{host}:{port}"
        self.database = database
        self.timeout_s = timeout_s
        self.session = requests.Session()
        self.session.headers["Accept-Encoding"] = "identity"
        self.auth = (username, password) if username else None

    def _post(self, path: str, params: dict[str, str], data: bytes | None = None) -> tuple[int, str]:
        try:
            with self.session.post(self.url + path, params=params, data=data, auth=self.auth,
                                   timeout=self.timeout_s, stream=True) as r:
                body = r.raw.read(MAX_ANSWER_BYTES, decode_content=False)
                return r.status_code, body.decode(errors="replace")
        except requests.exceptions.RequestException as e:
            raise ServerDown(_short(e)) from None
        except Exception as e:  # noqa: BLE001 -- urllib3 protocol errors while reading
            raise ServerDown(f"{type(e).__name__}: {_short(e)}") from None

    def ensure(self) -> None:
        code, body = self._post("/query", {"q": f'CREATE DATABASE "{self.database}"'})
        if code >= 500 or code in (408, 429):
            raise ServerDown(f"HTTP {code}: {body[:200]}")
        if code >= 400:
            raise Rejected(f"HTTP {code}: {body[:200]}")

    def send(self, lines: list[str]) -> None:
        code, body = self._post("/write", {"db": self.database, "precision": "ms"}, "\n".join(lines).encode())
        if code == 404 and "database not found" in body:
            self.ensure()
            return self.send(lines)
        if code < 300:
            return
        if 400 <= code < 500 and code not in (408, 429):
            raise Rejected(f"HTTP {code}: {body[:200]}")
        raise ServerDown(f"HTTP {code}: {body[:200]}")

    def close(self) -> None:
        self.session.close()


class V2Sender:
    """InfluxDB 2.x ``/api/v2/write`` through ``influxdb-client`` (url, org, bucket, token)."""

    version = "2.x"

    def __init__(self, url: str, org: str, bucket: str, token: str, timeout_s: float) -> None:
        from influxdb_client import InfluxDBClient as Client2
        from influxdb_client.client.write_api import SYNCHRONOUS
        self.url, self.org, self.bucket = url, org, bucket
        self.client = Client2(url=url, token=token, org=org, timeout=int(timeout_s * 1000))
        self.api = self.client.write_api(write_options=SYNCHRONOUS)

    def ensure(self) -> None:
        try:
            if not self.client.ping():
                raise ServerDown("no answer to /ping")
        except Exception as e:  # noqa: BLE001 (urllib3 and client errors)
            raise ServerDown(_short(e)) from None

    def send(self, lines: list[str]) -> None:
        from influxdb_client import WritePrecision
        from influxdb_client.rest import ApiException
        try:
            self.api.write(bucket=self.bucket, org=self.org, record=lines, write_precision=WritePrecision.MS)
        except ApiException as e:
            if 400 <= (e.status or 0) < 500 and e.status not in (408, 429):
                raise Rejected(f"HTTP {e.status}: {_short(e)}") from None
            raise ServerDown(f"HTTP {e.status}") from None
        except Exception as e:  # noqa: BLE001 (urllib3 connection errors)
            raise ServerDown(_short(e)) from None

    def close(self) -> None:
        self.client.close()


def server_version(url: str, timeout_s: float = 5.0) -> str:
    """``X-Influxdb-Version`` of ``url/ping`` ("1.6.7", "v2.7.4"...). Raises StoreError."""
    try:
        r = requests.get(url.rstrip("/") + "/ping", timeout=timeout_s)
    except requests.RequestException as e:
        raise StoreError(f"InfluxDB at {url} unreachable: {_short(e)}") from None
    v = r.headers.get("X-Influxdb-Version")
    if not v:
        raise StoreError(f"{url}/ping has no X-Influxdb-Version header: is it InfluxDB?")
    return v


class InfluxStore:
    """InfluxDB store (1.x or 2.x) with a background writer and the on-disk outage spool.

    :meth:`write` only appends to an in-memory queue, so the control cycle never waits for the
    network. The writer thread sends the queue in batches, in order. When the server does not
    answer (down, timeout, 5xx), it moves the queue to the spool (``spool_dir``, fsync'd) and from
    then on appends every new point there; it replays the spool from its head in batches,
    acknowledging each batch only after the server accepted it, until it is empty; then points go
    straight from memory again. At :meth:`close` whatever is still queued goes to the spool, so a
    restart loses nothing. Replays are idempotent: InfluxDB keeps one point per series and
    timestamp. A 4xx for bad points is logged with the first point and not retried.

    Args:
        sender: :class:`V1Sender` or :class:`V2Sender`.
        spool_dir: directory of the spool; None keeps points in memory only (bounded by
            ``queue_max_points``, the oldest dropped past it).
    """

    def __init__(self, sender: Any, batch_size: int = 500, queue_max_points: int = 200_000,
                 spool_dir: Path | None = None, spool_max_mb: float = 100.0, memory_max_s: float = 5.0,
                 flush_s: float = 0.0) -> None:
        self.sender = sender
        self.url = sender.url
        self.batch_size = batch_size
        self.queue_max_points = queue_max_points
        self.memory_max_s = memory_max_s
        self.flush_s = flush_s
        self._oldest_at: float | None = None   # when the oldest point in memory was queued
        self._flush_now = False
        self.spool_dir, self.spool_max_bytes = spool_dir, int(spool_max_mb * 1e6)
        self.spool: Spool | None = None
        self.spool_error: str | None = None
        self._spool_retry_at = 0.0
        self._open_spool()
        self._q: deque[str] = deque()
        self._gen = 0                 # bumped when the queue is moved to the spool under a batch in flight
        self._inflight_since: float | None = None
        self._cv = threading.Condition()
        self._inflight = 0
        self._closing = False
        self.dropped = 0
        self.written = 0
        self.rejected = 0
        self.replayed = 0
        self.down_since: float | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, s: Any, spool_dir: Path | None = None) -> "InfluxStore":
        kind = s.kind
        if kind == "auto":
            v = server_version(s.url, s.timeout_s)
            kind = "influxdb2" if v.lstrip("v").startswith("2") else "influxdb1"
            log.info("InfluxDB at %s is version %s: using the %s API", s.url, v, kind)
        if kind == "influxdb2":
            sender: Any = V2Sender(s.url, s.org or "", s.bucket or s.database, secret(s.token) or "", s.timeout_s)
        else:
            sender = V1Sender(s.host, s.port, s.database, s.username, secret(s.password), s.timeout_s)
        return cls(sender, s.batch_size, s.queue_max_points, spool_dir, s.spool_max_mb, s.memory_max_s, s.flush_s)

    # -- the spool, which a full or read-only disk may take away ----------------------------
    def _open_spool(self) -> None:
        if self.spool_dir is None or self.spool is not None or time.monotonic() < self._spool_retry_at:
            return
        try:
            self.spool = Spool(self.spool_dir, self.spool_max_bytes)
            if self.spool_error is not None:
                log.warning("spool %s usable again", self.spool_dir)
            self.spool_error = None
        except OSError as e:
            self._spool_failed(e)

    def _spool_failed(self, e: OSError) -> None:
        msg = e.strerror or str(e)
        if self.spool_error != msg:
            log.error("SPOOL UNAVAILABLE (%s: %s): points are kept in memory (at most %d) and sent straight to "
                      "InfluxDB %s when it answers; retrying the spool every minute", self.spool_dir, msg,
                      self.queue_max_points, self.url)
        self.spool_error = msg
        self.spool = None
        self._spool_retry_at = time.monotonic() + 60.0

    def _to_spool(self, lines: list[str]) -> bool:
        """Append to the spool; False (and the spool dropped until retried) when the disk refuses."""
        self._open_spool()
        if self.spool is None:
            return False
        try:
            self.spool.append(lines)
            return True
        except OSError as e:
            self._spool_failed(e)
            return False

    def _move_queue_to_spool(self) -> None:
        """Under the lock: every point in memory goes to the spool (if it takes them)."""
        if self._q and self._to_spool(list(self._q)):
            self._q.clear()
            self._gen += 1
        self._bound_queue()

    def _bound_queue(self) -> None:
        over = len(self._q) - self.queue_max_points
        if over > 0:
            for _ in range(over):
                self._q.popleft()
            self.dropped += over
            self._gen += 1
            log.error("store queue full (%d points in memory, InfluxDB %s away, no spool): dropped the %d oldest "
                      "(%d dropped in all)", self.queue_max_points, self.url, over, self.dropped)

    @property
    def spooling(self) -> bool:
        return self.spool is not None and not self.spool.empty()

    def open(self, require_server: bool = False) -> "InfluxStore":
        """Start the writer. The server is checked (and the 1.x database created); if it does not
        answer, points are spooled until it does, unless ``require_server`` (then StoreError)."""
        try:
            self.sender.ensure()
        except ServerDown as e:
            if require_server or self.spool_dir is None:
                raise StoreError(f"InfluxDB at {self.url} unreachable: {e}") from None
            log.error("InfluxDB %s not answering (%s): spooling to %s until it does", self.url, e, self.spool_dir)
            self.down_since = time.monotonic()
        except Rejected as e:
            raise StoreError(f"InfluxDB at {self.url}: {e}") from None
        if self.spooling:
            log.warning("spool holds %.1f kB from before: replaying it to %s", self.spool.size_bytes / 1e3, self.url)
        self._thread = threading.Thread(target=self._run, name="influx-writer", daemon=True)
        self._thread.start()
        return self

    def write(self, lines: Iterable[str]) -> None:
        """Queue points (never blocks on the network). While InfluxDB is away, or a write has hung
        for ``memory_max_s``, they go to the spool at once, so little is only in memory."""
        with self._cv:
            if not self._q:
                self._oldest_at = time.monotonic()
            self._q.extend(lines)
            hung = self._inflight_since is not None and time.monotonic() - self._inflight_since > self.memory_max_s
            if self.spool_dir is not None and (self.down_since is not None or hung):
                self._move_queue_to_spool()
            else:
                self._bound_queue()
            self._cv.notify_all()

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every point was sent (or rejected), spool included; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cv:
            self._flush_now = True
            while self._q or self._inflight or self.spooling:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._flush_now = False
                    return False
                self._cv.notify_all()
                self._cv.wait(min(left, 0.1))
            self._flush_now = False
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        """Send what can be sent within ``timeout_s``; spool the rest (nothing is lost)."""
        if self.down_since is not None and self.spool is not None:
            timeout_s = min(timeout_s, 1.0)  # the server is away: spool now rather than wait for it
        if self._thread is not None and not self.flush(timeout_s):
            left = len(self._q)
            where = "lost" if self.spool is None else f"kept in the spool {self.spool.dir}"
            log.error("store closing before InfluxDB %s has everything: %d points in memory %s%s", self.url, left,
                      where, "" if self.spool is None else f" ({self.spool.size_bytes / 1e3:.1f} kB waiting there)")
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
        with self._cv:
            self._move_queue_to_spool()
            if self._q:
                log.error("store closing: %d points could not be spooled (%s): lost", len(self._q), self.spool_error)
        self.sender.close()

    # -- the writer thread -------------------------------------------------------------------
    def _send(self, batch: list[str]) -> bool:
        """True when the batch is done with (accepted or rejected), False when the server is down."""
        try:
            self.sender.send(batch)
            self.written += len(batch)
        except Rejected as e:
            self.rejected += len(batch)
            log.error("InfluxDB %s rejected %d points (not retried): %s; first: %s", self.url, len(batch), e,
                      batch[0][:200])
        except ServerDown as e:
            if self.down_since is None:
                self.down_since = time.monotonic()
                log.error("InfluxDB %s not answering (%s): spooling to disk", self.url, e)
            return False
        self._back()
        return True

    def _run(self) -> None:
        backoff = 0.5
        while True:
            try:
                ok = self._step()
                if ok is None:
                    return  # closing
                if ok:
                    backoff = 0.5
                    continue
            except Exception:  # noqa: BLE001 -- the writer must never die (disk errors included)
                log.exception("store writer: unexpected error; going on")
            with self._cv:
                if self._closing:
                    return
                self._cv.wait(backoff)
            backoff = min(backoff * 2, 30.0)

    def _step(self) -> bool | None:
        """One batch. True when it went through, False to back off, None when closing."""
        with self._cv:
            self._open_spool()
            while not self._closing and not self.spooling and not self._due():
                self._cv.wait(self._wait_s())
                self._open_spool()
            if self._closing:
                return None
            use_spool = self.spool is not None and (self.spooling or self.down_since is not None)
            if use_spool and self._q:
                if self._to_spool(list(self._q)):  # the order: new points go behind the spool
                    self._q.clear()
                    self._gen += 1
                else:
                    use_spool = False  # the disk refused: from memory, straight to InfluxDB
            if use_spool and self.spool is not None:
                batch, pos = self.spool.read(self.batch_size)
                from_spool = True
                if not batch and pos == self.spool._pos and self.down_since is None:
                    return False  # nothing whole to send yet (a line being written): back off
            else:
                n = min(len(self._q), self.batch_size)
                batch, pos, from_spool = [self._q[i] for i in range(n)], None, False
                if n == len(self._q):
                    self._oldest_at = None
            gen = self._gen
            self._inflight = len(batch)
            self._inflight_since = time.monotonic()
        ok = self._send(batch) if batch else self._probe()
        with self._cv:
            self._inflight_since = None
            self._inflight = 0
            try:
                if ok and from_spool and pos is not None and self.spool is not None:
                    self.spool.ack(pos)
                    self.replayed += len(batch)
                elif ok and not from_spool and gen == self._gen:
                    for _ in range(len(batch)):
                        self._q.popleft()
                    if self._q and self._oldest_at is None:
                        self._oldest_at = time.monotonic()
                elif not ok and not from_spool:
                    self._move_queue_to_spool()
            finally:
                self._cv.notify_all()
        return ok

    def _due(self) -> bool:
        """Under the lock: whether the points in memory are to be sent now (a full batch, the
        oldest waited ``flush_s``, a flush, the server away, or points still spooled)."""
        if not self._q:
            return False
        if self._flush_now or self.down_since is not None or len(self._q) >= self.batch_size or self.flush_s <= 0:
            return True
        return self._oldest_at is None or time.monotonic() - self._oldest_at >= self.flush_s

    def _wait_s(self) -> float:
        if self._q and self._oldest_at is not None and self.flush_s > 0:
            return max(min(self.flush_s - (time.monotonic() - self._oldest_at), 1.0), 0.01)
        return 1.0

    def _back(self) -> None:
        if self.down_since is not None:
            log.warning("InfluxDB %s is back after %.0f s", self.url, time.monotonic() - self.down_since)
            self.down_since = None

    def _probe(self) -> bool:
        try:
            self.sender.ensure()
        except (ServerDown, Rejected):
            return False
        self._back()
        return True


def _short(e: BaseException) -> str:
    """One line of an error; for a refused or unresolvable connection, the system's reason
    ("[Errno 111] Connection refused") rather than requests' pool and retry wrapping."""
    if isinstance(e, requests.ConnectionError):
        m = re.search(r"\[Errno -?\d+\] [^'\")\]]+", str(e))
        if m:
            return m.group(0).strip()
    s = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return s[:200]


def open_store(settings: Any, spool_dir: Path | None = None) -> Store:
    """The store configured by ``settings`` (StoreSettings). With a ``spool_dir`` an unreachable
    server is not an error (points are spooled); without one it raises StoreError."""
    if settings.kind == "none":
        return NullStore()
    return InfluxStore.from_settings(settings, spool_dir).open()


RAW_RP = "raw"
FOREVER_RP = "forever"


def init_database(s: Any, period_s: int = 3600) -> list[str]:
    """Create (or update) the InfluxDB 1.x database of ``s`` (StoreSettings): the default retention
    policy ``raw`` (``raw_retention``) for every point, a ``forever`` policy, and continuous
    queries that keep one summary per settlement period forever:

    * ``period_summary``: the ``period`` measurement's fields, ``last()`` per period (prefixed
      ``last_`` by InfluxDB), e.g. ``last_balance_wh``, ``last_water_heater_wh``;
    * ``switches_summary``: ``sum(switched)`` of ``decision`` per period and load.

    They resample the last day every period, so points replayed late (after an outage) are counted.
    Idempotent. Returns the statements run. Raises StoreError when the server does not answer.
    """
    from influxdb import InfluxDBClient
    from influxdb.exceptions import InfluxDBClientError, InfluxDBServerError
    c = InfluxDBClient(host=s.host, port=s.port, username=s.username, password=secret(s.password), timeout=s.timeout_s)
    db = s.database
    every = f"{period_s // 60}m"
    stmts: list[str] = []
    try:
        c.create_database(db)
        rps = {rp["name"]: rp for rp in c.get_list_retention_policies(db)}
        dur = "INF" if s.raw_retention == "INF" else s.raw_retention
        verb = "ALTER" if RAW_RP in rps else "CREATE"
        stmts.append(f'{verb} RETENTION POLICY "{RAW_RP}" ON "{db}" DURATION {dur} REPLICATION 1 DEFAULT')
        if FOREVER_RP not in rps:
            stmts.append(f'CREATE RETENTION POLICY "{FOREVER_RP}" ON "{db}" DURATION INF REPLICATION 1')
        cqs = {cq["name"] for d in c.query("SHOW CONTINUOUS QUERIES").raw.get("series", [])
               if d.get("name") == db for cq in [dict(zip(d["columns"], v)) for v in d.get("values", [])]}
        for name in ("period_summary", "switches_summary"):
            if name in cqs:
                stmts.append(f'DROP CONTINUOUS QUERY "{name}" ON "{db}"')
        stmts.append(f'CREATE CONTINUOUS QUERY "period_summary" ON "{db}" RESAMPLE EVERY {every} FOR 1d BEGIN '
                     f'SELECT last(*) INTO "{db}"."{FOREVER_RP}"."period" FROM "{db}"."{RAW_RP}"."period" '
                     f'GROUP BY time({every}), * END')
        stmts.append(f'CREATE CONTINUOUS QUERY "switches_summary" ON "{db}" RESAMPLE EVERY {every} FOR 1d BEGIN '
                     f'SELECT sum("switched") AS switches INTO "{db}"."{FOREVER_RP}"."switches" '
                     f'FROM "{db}"."{RAW_RP}"."decision" GROUP BY time({every}), * END')
        for q in stmts:
            c.query(q)
    except (requests.exceptions.RequestException, InfluxDBClientError, InfluxDBServerError) as e:
        raise StoreError(f"InfluxDB at http://{s.host}:{s.port}: {_short(e)}") from None
    finally:
        c.close()
    return stmts
