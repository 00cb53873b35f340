"""InfluxDB store.

InfluxDB 1.x is written through its HTTP ``/write`` endpoint with the ``influxdb`` client package
(Debian and Raspberry Pi OS ship server 1.6.7, which has no ``/api/v2`` endpoints, so
``influxdb-client`` cannot write to it). Points are built as line protocol with
``influxdb_client.Point``. Measurements and fields: DESIGN.md section 7 and README.

Writes never block the control cycle: :meth:`InfluxStore.write` appends to a bounded in-memory
queue that a writer thread sends in batches, in order. While the server does not answer, the batch
is retried with backoff; past ``queue_max_points`` the oldest points are dropped with a loud log.
A 4xx for a bad point (e.g. a field type conflict) is logged with the batch and not retried.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Protocol

import requests
from influxdb import InfluxDBClient
from influxdb.exceptions import InfluxDBClientError, InfluxDBServerError
from influxdb_client import Point, WritePrecision

log = logging.getLogger("gestor.store")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class StoreError(Exception):
    """The store cannot be used (unreachable at start, bad database name)."""


def point(measurement: str, tags: dict[str, str], fields: dict[str, Any], at: datetime) -> str:
    """One line of line protocol, ms precision. Numbers are written as floats (InfluxDB rejects a
    field that changes type), booleans as booleans, strings as strings; None fields are omitted."""
    p = Point(measurement)
    for k, v in tags.items():
        p = p.tag(k, v)
    n = 0
    for k, v in fields.items():
        if v is None:
            continue
        if isinstance(v, bool) or isinstance(v, str):
            p = p.field(k, v)
        else:
            p = p.field(k, float(v))
        n += 1
    if n == 0:
        raise ValueError(f"point {measurement} has no field")
    ms = (at - EPOCH) // timedelta(milliseconds=1)  # exact integer ms (the client goes via floats)
    return p.time(ms, WritePrecision.MS).to_line_protocol()


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


class InfluxStore:
    """InfluxDB 1.x store with a background writer.

    Args:
        host, port, database, username, password: the server and database (created if missing).
        timeout_s: HTTP timeout per request.
        batch_size: points per write request.
        queue_max_points: bound of the in-memory queue.
    Raises:
        StoreError: at :meth:`open` if the server does not answer or the database cannot be made.
    """

    def __init__(self, host: str, port: int, database: str, username: str | None = None,
                 password: str | None = None, timeout_s: float = 5.0, batch_size: int = 500,
                 queue_max_points: int = 200_000) -> None:
        self.url = f"http://{host}:{port}"
        self.database = database
        self.client = InfluxDBClient(host=host, port=port, username=username, password=password,
                                     database=database, timeout=timeout_s)
        self.batch_size = batch_size
        self.queue_max_points = queue_max_points
        self._q: deque[str] = deque()
        self._cv = threading.Condition()
        self._inflight = 0
        self._closing = False
        self.dropped = 0
        self.written = 0
        self.rejected = 0
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, s: Any) -> "InfluxStore":
        return cls(s.host, s.port, s.database, s.username, s.password, s.timeout_s,
                   s.batch_size, s.queue_max_points)

    def open(self) -> "InfluxStore":
        try:
            self.client.ping()
            self.client.create_database(self.database)  # idempotent
        except (requests.exceptions.RequestException, InfluxDBClientError, InfluxDBServerError) as e:
            raise StoreError(f"InfluxDB at {self.url} unreachable: {_short(e)}") from None
        self._thread = threading.Thread(target=self._run, name="influx-writer", daemon=True)
        self._thread.start()
        return self

    def write(self, lines: Iterable[str]) -> None:
        with self._cv:
            self._q.extend(lines)
            over = len(self._q) - self.queue_max_points
            if over > 0:
                for _ in range(over):
                    self._q.popleft()
                self.dropped += over
                log.error("store queue full (%d points, InfluxDB %s away): dropped the %d oldest "
                          "(%d dropped in all)", self.queue_max_points, self.url, over, self.dropped)
            self._cv.notify_all()

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every queued point was sent (or rejected); False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while self._q or self._inflight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 0.1))
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        if self._thread is not None and not self.flush(timeout_s):
            log.error("store closing with %d points not written to %s", len(self._q), self.url)
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self.client.close()

    def _run(self) -> None:
        backoff = 0.5
        down_since: float | None = None
        while True:
            with self._cv:
                while not self._q and not self._closing:
                    self._cv.wait()
                if self._closing and not self._q:
                    return
                n = min(len(self._q), self.batch_size)
                batch = [self._q[i] for i in range(n)]
                self._inflight = n
            try:
                self.client.write_points(batch, protocol="line", time_precision="ms")
                ok = True
            except InfluxDBClientError as e:
                if 400 <= (e.code or 0) < 500 and e.code not in (408, 429):
                    self.rejected += n
                    log.error("InfluxDB %s rejected %d points (not retried): %s; first: %s",
                              self.url, n, _short(e), batch[0][:200])
                    ok = True  # do not retry a bad point forever
                else:
                    ok = False
                    err = e
            except (requests.exceptions.RequestException, InfluxDBServerError) as e:
                ok = False
                err = e
            with self._cv:
                if ok:
                    for _ in range(n):
                        self._q.popleft()
                    self.written += n
                self._inflight = 0
                self._cv.notify_all()
            if ok:
                if down_since is not None:
                    log.warning("InfluxDB %s is back after %.0f s", self.url, time.monotonic() - down_since)
                    down_since = None
                backoff = 0.5
                continue
            if down_since is None:
                down_since = time.monotonic()
                log.error("InfluxDB %s not answering (%s); keeping %d points queued", self.url,
                          _short(err), len(self._q))
            with self._cv:
                if self._closing:
                    return
                self._cv.wait(backoff)
            backoff = min(backoff * 2, 30.0)


def _short(e: BaseException) -> str:
    s = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return s[:200]


def open_store(settings: Any) -> Store:
    """The store configured by ``settings.store``; raises StoreError if unreachable."""
    if settings.kind == "none":
        return NullStore()
    return InfluxStore.from_settings(settings).open()


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
    c = InfluxDBClient(host=s.host, port=s.port, username=s.username, password=s.password, timeout=s.timeout_s)
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
