"""State files that block or crash a daemon (issue 23, class 4): every reader of a state or runtime
file goes through :func:`gestor.files.read_small_file`, so a FIFO, a directory, a symlink to
``/dev/zero``, a file over its cap, truncated JSON, binary garbage, non-UTF-8 bytes and values out
of physical bounds are each a damaged file (logged, ignored, moved aside where that is the
reader's way), never a blocked cycle, a MemoryError or a traceback. Each reader is called in a
thread joined with a timeout, so a reader that blocks fails the test instead of hanging it."""
from __future__ import annotations

import json
import logging
import os
import resource
import tempfile
import threading
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from gestor.files import UnsafeFileError, read_small_file
from gestor.runtime.livestate import clear_latch, is_latched, read_live, read_managing
from gestor.runtime.overrides import read_overrides
from gestor.runtime.statefiles import ManagingFile, MonitoringFile, read_state

UTC = timezone.utc
NOW = datetime(2022, 6, 11, 10, 0, tzinfo=UTC)
PROMPT_S = 5.0   # a reader that has not returned by then is blocked


def cap_memory(headroom_bytes: int = 1 << 30) -> Callable[[], None]:
    """Cap the process's address space at its size now plus ``headroom_bytes``, so that a reader
    that reads ``/dev/zero`` until MemoryError (the bug) fails its test instead of making the
    kernel's OOM killer pick a process on the machine. Returns what lifts the cap."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        size = int(f.read().split()[0]) * resource.getpagesize()
    cap = size + headroom_bytes
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def promptly(fn: Callable[[], Any], timeout_s: float = PROMPT_S) -> Any:
    """``fn()``'s value, or its exception re-raised; fails the test if it has not returned within
    ``timeout_s`` (it is left blocked in a daemon thread: :func:`unblock` frees it). It runs under
    :func:`cap_memory`, kept while it runs."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 -- handed to the caller
            out["error"] = e

    lift = cap_memory()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout_s)
    assert not t.is_alive(), f"{getattr(fn, '__name__', fn)} did not return within {timeout_s} s (blocked)"
    lift()
    if "error" in out:
        raise out["error"]
    return out["value"]


def unblock(fifo: Path) -> None:
    """Free a reader blocked opening ``fifo`` (when a test fails without the fix)."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass


def reading(at: datetime, net_w: Any = 3500.0, **kw: Any) -> dict:
    return {"at": at.isoformat(), "net_w": net_w, "production_w": 4000.0, "consumption_w": 500.0,
            "import_wh_total": None, "export_wh_total": None, "mono_s": 1000.0, **kw}


def live_text(n: int = 3, bad: dict[int, Any] | None = None) -> str:
    rs = [reading(NOW + timedelta(seconds=5 * i)) for i in range(n)]
    for i, net_w in (bad or {}).items():
        rs[i]["net_w"] = net_w
    return json.dumps({"pid": 1, "readings": rs, "errors": 0, "last_error": None, "last_error_at": None})


def prices_text(day: date = date(2022, 6, 11), naive_from: int | None = None, value: float = 0.12) -> str:
    from gestor.tariff.prices import DayPrices, day_bounds
    from zoneinfo import ZoneInfo
    a, _ = day_bounds(day, ZoneInfo("Europe/Madrid"))
    times = [a + timedelta(hours=h) for h in range(24)]
    p = DayPrices(day, 3600, [(t, value) for t in times], [(t, 0.05) for t in times])
    d = json.loads(p.to_json())
    if naive_from is not None:  # a cache mixing aware and naive times
        for row in d["import"][naive_from:]:
            row[0] = row[0][:19]
    return json.dumps(d)


# -- the readers: (file under tmp, call(tmp), a valid text, what a damaged file gives) ----------
def _live(tmp: Path) -> Any:
    return read_live(tmp / "run")


def _managing_state(tmp: Path) -> Any:
    return read_state(tmp / "state" / "managing.json", ManagingFile)


def _monitoring_state(tmp: Path) -> Any:
    return read_state(tmp / "state" / "monitoring.json", MonitoringFile)


def _overrides(tmp: Path) -> Any:
    return read_overrides(tmp / "state", NOW)


def _published(tmp: Path) -> Any:
    return read_managing(tmp / "run")


def _prices(tmp: Path) -> Any:
    from gestor.tariff import prices
    return prices.cached(tmp / "state", date(2022, 6, 11))


def _sim_power(tmp: Path) -> Any:
    from drivers.relays.simulated import simulated_loads_power_w
    return simulated_loads_power_w(tmp / "run", NOW.timestamp())


def _spool(tmp: Path) -> Any:
    from drivers.store.spool import Spool
    sp = Spool(tmp / "spool", max_bytes=10_000_000)
    return sp.read(100)[0]


READERS: dict[str, tuple[str, Callable[[Path], Any], str, Any]] = {
    "reading.json": ("run/reading.json", _live, live_text(), []),
    "managing.json (state)": ("state/managing.json", _managing_state,
                              json.dumps({"balance": {}, "loads": {"water_heater": {"on": False}}}), None),
    "monitoring.json": ("state/monitoring.json", _monitoring_state, json.dumps({"last": reading(NOW)}), None),
    "overrides.json": ("state/overrides.json", _overrides,
                       json.dumps({"water_heater": {"on": True, "until": None, "by": "test"}}), {}),
    "managing.json (published)": ("run/managing.json", _published, json.dumps({"pid": 1, "loads": {}}), None),
    "prices cache": ("state/prices/2022-06-11.json", _prices, prices_text(), None),
    "simulated relay": ("run/sim-relays/water_heater.json", _sim_power,
                        json.dumps({"on": True, "power_w": 1000.0}), 0.0),
    "spool position": ("spool/position", _spool, "1 0\n", None),
}


def _prepare(tmp: Path, rel: str) -> Path:
    path = tmp / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if rel.startswith("spool/"):  # a segment with points, which a bad position must not lose
        (path.parent / "000001.lp").write_text("".join(f"m,site=t v={i} {i}\n" for i in range(75)))
    return path


def _make(path: Path, kind: str, valid: str) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
        (path / "inside").write_text("x")
    elif kind == "dev_zero":
        path.symlink_to("/dev/zero")
    elif kind == "over_cap":
        with open(path, "wb") as f:
            f.truncate(5 * 1024 * 1024)   # sparse: over every reader's cap, costs no disk
    elif kind == "truncated":
        path.write_text(valid[:len(valid) // 2])
    elif kind == "binary":
        path.write_bytes(bytes(range(256)) * 4)
    elif kind == "deep":   # JSON nested past any parser's recursion limit
        path.write_text("[" * 100_000)
    elif kind == "not_utf8":
        path.write_bytes(valid.encode()[:5] + b"\xff\xfe\xc0" + valid.encode()[5:])
    else:
        raise AssertionError(kind)


KINDS = ["fifo", "directory", "dev_zero", "over_cap", "truncated", "binary", "not_utf8", "deep"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reader", list(READERS))
def test_every_reader_returns_promptly_on_a_damaged_file(tmp_path, reader, kind, caplog):
    rel, call, valid, damaged = READERS[reader]
    path = _prepare(tmp_path, rel)
    _make(path, kind, valid)
    try:
        with caplog.at_level(logging.WARNING):
            got = promptly(lambda: call(tmp_path))
    finally:
        if kind == "fifo":
            unblock(path)
    if reader == "spool position":
        # nothing lost: every point is replayed from the segment's start, and it says so
        assert got == [f"m,site=t v={i} {i}" for i in range(75)]
        assert "spool position file is unreadable" in caplog.text
    else:
        assert got == damaged
    if reader in ("managing.json (state)", "monitoring.json", "overrides.json", "prices cache"):
        # moved aside, so the next read starts clean (a person can look at NAME.bad)
        assert not os.path.lexists(path) and os.path.lexists(path.with_name(path.name + ".bad"))
        assert "damaged" in caplog.text


@pytest.mark.parametrize("reader", list(READERS))
def test_every_reader_reads_its_valid_file(tmp_path, reader):
    rel, call, valid, damaged = READERS[reader]
    path = _prepare(tmp_path, rel)
    path.write_text(valid)
    got = promptly(lambda: call(tmp_path))
    assert got != damaged or reader == "spool position"
    if reader == "spool position":
        assert len(got) == 75


# -- the reader itself ------------------------------------------------------------------------
@pytest.mark.parametrize("kind, words", [("fifo", "is a FIFO"), ("directory", "is a directory"),
                                         ("dev_zero", "is a character device"), ("over_cap", "over the")])
def test_read_small_file_refuses_with_one_line(tmp_path, kind, words):
    path = tmp_path / "f"
    _make(path, kind, "")
    try:
        with pytest.raises(UnsafeFileError) as e:
            promptly(lambda: read_small_file(path, 1024))
    finally:
        if kind == "fifo":
            unblock(path)
    assert words in e.value.strerror and "\n" not in str(e.value) and str(path) in str(e.value)
    assert isinstance(e.value, OSError)


def test_read_small_file_reads_a_file_at_its_cap_and_keeps_file_not_found(tmp_path):
    (tmp_path / "f").write_bytes(b"x" * 1024)
    assert read_small_file(tmp_path / "f", 1024) == b"x" * 1024
    (tmp_path / "link").symlink_to(tmp_path / "f")
    assert read_small_file(tmp_path / "link", 1024) == b"x" * 1024     # a link to a file is fine
    with pytest.raises(FileNotFoundError):
        read_small_file(tmp_path / "missing", 1024)
    (tmp_path / "dangling").symlink_to(tmp_path / "missing")
    with pytest.raises(FileNotFoundError):
        read_small_file(tmp_path / "dangling", 1024)


# -- values out of physical bounds ------------------------------------------------------------
def test_one_reading_of_1e308_is_a_missing_reading_the_others_are_used(tmp_path, caplog):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "reading.json").write_text(live_text(4, bad={1: 1e308, 2: -2e6}))
    with caplog.at_level(logging.ERROR, "gestor"):
        got = read_live(tmp_path / "run")
        read_live(tmp_path / "run")
    assert [r.at for r, _ in got] == [NOW, NOW + timedelta(seconds=15)]
    assert caplog.text.count("a reading skipped") == 2          # once per reason, not per cycle
    assert "less than or equal to 1000000" in caplog.text


@pytest.mark.parametrize("field, value", [("production_w", 1e7), ("consumption_w", -1e300),
                                          ("import_wh_total", -1.0), ("export_wh_total", 1e13)])
def test_each_power_and_counter_is_bounded(tmp_path, field, value):
    (tmp_path / "run").mkdir()
    rs = [reading(NOW), reading(NOW + timedelta(seconds=5), **{field: value})]
    (tmp_path / "run" / "reading.json").write_text(json.dumps({"readings": rs}))
    assert [r.at for r, _ in read_live(tmp_path / "run")] == [NOW]


@pytest.mark.parametrize("naive_from", [0, 12])
def test_a_prices_cache_with_naive_times_is_damaged_and_managing_s_book_keeps_working(tmp_path, naive_from, caplog):
    from zoneinfo import ZoneInfo

    from gestor.tariff.prices import Book, cache_path
    path = cache_path(tmp_path, date(2022, 6, 11))
    path.parent.mkdir(parents=True)
    path.write_text(prices_text(naive_from=naive_from))
    book = Book(tmp_path, ZoneInfo("Europe/Madrid"))
    with caplog.at_level(logging.ERROR, "gestor"):
        book.refresh(NOW, NOW.timestamp())          # was: TypeError (naive minus aware) in managing
    assert book.import_price(NOW) is None
    assert "has no UTC offset" in caplog.text and path.with_name(path.name + ".bad").exists()


def test_a_prices_cache_of_1e308_is_damaged(tmp_path):
    from gestor.tariff import prices
    path = prices.cache_path(tmp_path, date(2022, 6, 11))
    path.parent.mkdir(parents=True)
    path.write_text(prices_text(value=1e308))
    assert prices.cached(tmp_path, date(2022, 6, 11)) is None
    path.write_text(prices_text())
    assert prices.cached(tmp_path, date(2022, 6, 11)) is not None


# -- the stop latch ---------------------------------------------------------------------------
def test_a_directory_latch_is_latched_and_release_removes_it(tmp_path):
    (tmp_path / "stop.latch").mkdir()
    assert is_latched(tmp_path)
    assert clear_latch(tmp_path) is True                       # empty: removed
    assert not is_latched(tmp_path) and clear_latch(tmp_path) is False
    (tmp_path / "stop.latch").mkdir()
    (tmp_path / "stop.latch" / "something").write_text("kept")
    assert is_latched(tmp_path)
    assert clear_latch(tmp_path) is True                       # not empty: moved aside, nothing deleted
    assert not is_latched(tmp_path)
    assert (tmp_path / "stop.latch.bad" / "something").read_text() == "kept"
    fifo = tmp_path / "stop.latch"
    os.mkfifo(fifo)
    assert is_latched(tmp_path) and promptly(lambda: clear_latch(tmp_path)) is True
    assert not os.path.lexists(fifo)


def test_a_latch_that_cannot_be_removed_is_one_clear_line(tmp_path):
    from gestor.runtime.livestate import LatchError
    (tmp_path / "stop.latch").mkdir()
    (tmp_path / "stop.latch" / "x").write_text("x")
    (tmp_path / "stop.latch.bad").mkdir()
    (tmp_path / "stop.latch.bad" / "y").write_text("y")        # the way aside is taken too
    with pytest.raises(LatchError) as e:
        clear_latch(tmp_path)
    assert isinstance(e.value, OSError) and "\n" not in str(e.value)
    assert str(e.value).startswith(f"cannot release the stop latch {tmp_path / 'stop.latch'}")
    assert is_latched(tmp_path)


# -- the other readers' own contracts ---------------------------------------------------------
def test_the_simulated_relay_reports_a_fifo_as_an_unreadable_state(tmp_path):
    from drivers import DriverContext
    from drivers.relays.base import RelayError
    from drivers.relays.simulated import SimulatedRelay, SimulatedRelaySettings
    from gestor.clock import SimClock
    relay = SimulatedRelay(SimulatedRelaySettings(), DriverContext(SimClock(NOW), tmp_path, tmp_path), "wh", 1000)
    relay.path.parent.mkdir(parents=True)
    os.mkfifo(relay.path)
    try:
        with pytest.raises(RelayError, match="FIFO"):
            promptly(relay.state)
    finally:
        unblock(relay.path)
    relay.set(False)                   # the FIFO is replaced by the relay's own file
    assert relay.state() is False


def test_the_web_session_key_is_not_read_from_a_fifo(tmp_path):
    from gestor.web.auth import session_key
    path = tmp_path / "web" / "session.key"
    path.parent.mkdir()
    os.mkfifo(path)
    try:
        with pytest.raises(OSError, match="FIFO"):  # gestor web: "cannot keep the session key ...", exit 1
            promptly(lambda: session_key(tmp_path))
    finally:
        unblock(path)


def test_set_override_over_a_fifo_starts_a_clean_file(tmp_path):
    from gestor.runtime.overrides import set_override
    os.mkfifo(tmp_path / "overrides.json")
    try:
        promptly(lambda: set_override(tmp_path, "water_heater", "on", NOW))
    finally:
        unblock(tmp_path / "overrides.json")
    assert set(read_overrides(tmp_path, NOW)) == {"water_heater"}


# -- generated files --------------------------------------------------------------------------
_number = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**30, 10**30),
                    st.sampled_from([1e308, -1e308, 1e6, 1e6 + 1, 0, -0.0, True, False]))
_time = st.one_of(st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat),
                  st.datetimes().map(datetime.isoformat),          # naive
                  st.text(max_size=30))
_scalar = st.one_of(st.none(), st.booleans(), _number, st.text(max_size=20))
_json = st.recursive(_scalar, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                     max_leaves=12)
_reading = st.fixed_dictionaries({"at": _time, "net_w": _number},
                                 optional={k: st.one_of(_number, st.none(), _json) for k in
                                           ("production_w", "consumption_w", "import_wh_total", "export_wh_total",
                                            "mono_s")})
_live = st.fixed_dictionaries({"readings": st.lists(st.one_of(_reading, _json), max_size=5)},
                              optional={"pid": _scalar, "errors": _scalar, "last_error": _scalar,
                                        "last_error_at": _time})
_override = st.dictionaries(st.text(max_size=70), st.one_of(
    st.fixed_dictionaries({"on": st.one_of(st.booleans(), _scalar)},
                          optional={"until": st.one_of(_time, st.none()), "by": _scalar, "set_at": _time}), _json),
    max_size=3)
_managing = st.fixed_dictionaries({"balance": st.one_of(st.dictionaries(st.text(max_size=8), _json, max_size=3), _json)},
                                  optional={"on_s": _json, "day_on_s": _json, "switches": _json,
                                            "loads": st.dictionaries(st.text(max_size=8), st.one_of(
                                                st.fixed_dictionaries({"on": _scalar, "since": _time}), _json),
                                                max_size=3)})


def _dumps(v: Any) -> bytes:
    return json.dumps(v, allow_nan=True).encode()


def _contents(shaped: st.SearchStrategy) -> st.SearchStrategy:
    """A file: ("file", bytes) made of near-valid JSON (whole or cut), any JSON, any bytes; or a
    kind of non-file."""
    text = shaped.map(_dumps)
    return st.one_of(
        text.map(lambda b: ("file", b)),
        st.tuples(text, st.integers(0, 200)).map(lambda t: ("file", t[0][:t[1]])),
        _json.map(lambda v: ("file", _dumps(v))),
        st.binary(max_size=200).map(lambda b: ("file", b)),
        st.sampled_from(["fifo", "directory", "dev_zero", "over_cap", "dangling", "missing"]).map(lambda k: (k, b"")),
    )


def _place(path: Path, kind: str, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "file":
        path.write_bytes(data)
    elif kind == "dangling":
        path.symlink_to(path.with_name("nowhere"))
    elif kind != "missing":
        _make(path, kind, "")


GEN = hsettings(max_examples=120, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def _read_placed(case, name: str, read):
    """``read(folder)`` of a fresh folder where the generated ``case`` (kind, data) stands at
    ``name``, promptly (a FIFO unblocked afterwards): what it returned."""
    kind, data = case
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d) / "dir"
        _place(folder / name, kind, data)
        try:
            return promptly(lambda: read(folder))
        finally:
            if kind == "fifo":
                unblock(folder / name)


@GEN
@given(_contents(_live))
def test_generated_reading_json_never_raises_or_blocks(case):
    got = _read_placed(case, "reading.json", read_live)
    assert isinstance(got, list)
    for r, mono in got:
        assert r.at.utcoffset() is not None and abs(r.net_w) <= 1e6
        assert mono is None or abs(mono) <= 1e12


@GEN
@given(_contents(_override))
def test_generated_overrides_json_never_raises_or_blocks(case):
    got = _read_placed(case, "overrides.json", lambda state: read_overrides(state, NOW))
    assert isinstance(got, dict) and all(isinstance(o.on, bool) for o in got.values())


@GEN
@given(_contents(_managing))
def test_generated_managing_json_never_raises_or_blocks(case):
    kind, data = case
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "state" / "managing.json"
        _place(path, kind, data)
        try:
            got = promptly(lambda: read_state(path, ManagingFile))
            published = promptly(lambda: read_managing(path.parent))
        finally:
            if kind == "fifo":
                unblock(path)
    assert got is None or isinstance(got, ManagingFile)
    assert published is None or isinstance(published, dict)


# -- managing, whole: a FIFO as overrides.json and reading.json --------------------------------
def test_managing_with_fifos_for_its_files_keeps_cycling_and_switches_the_loads_off(tmp_path, caplog):
    """The fault campaign's case: a named pipe as ``overrides.json`` and ``reading.json`` blocked
    managing's cycle forever (loads on, no watchdog ping). Now each cycle returns, the files are
    damaged ones, the readings go stale, and the loads go off within ``stale_after_s`` + a cycle."""
    from gestor.sim.lockstep import run_lockstep
    from tests.integration.test_faults import daemons
    from tests.integration.test_safety import T0, sunny_csv
    csv = sunny_csv(tmp_path / "sun.csv", 20)
    s, clock, mon, mgr = daemons(tmp_path, csv)
    fifos = [Path(s.paths.state_dir) / "overrides.json", Path(s.paths.run_dir) / "reading.json"]
    halt = threading.Event()
    try:
        run_lockstep(clock, [(5, mon.cycle), (10, mgr.cycle)], T0 + timedelta(minutes=5))
        assert all(ld.on for ld in mgr.loads)
        last_reading = clock.monotonic()
        for f in fifos:
            f.unlink(missing_ok=True)
            os.mkfifo(f)
        until = clock.now() + timedelta(seconds=s.managing.stale_after_s + 3 * s.managing.interval_s)
        off_at: list[float] = []

        def cycle() -> None:
            if halt.is_set():
                raise RuntimeError("test over")
            mgr.cycle()
            if not off_at and not any(ld.on for ld in mgr.loads):
                off_at.append(clock.monotonic())

        with caplog.at_level(logging.ERROR, "gestor"):
            # monitoring is not run: its write would replace the FIFO with a file
            promptly(lambda: run_lockstep(clock, [(s.managing.interval_s, cycle)], until), timeout_s=20)
        assert off_at, "the loads stayed on with FIFOs for reading.json and overrides.json"
        assert off_at[0] - last_reading <= s.managing.stale_after_s + s.managing.interval_s
        assert all("stale" in ld.reason for ld in mgr.loads)
        assert "is a FIFO (named pipe), not a regular file" in caplog.text
        assert caplog.text.count("reading.json is damaged") == 1          # once, not every cycle
    finally:
        halt.set()
        for _ in range(100):   # without the fix: free the cycle blocked on a FIFO, so stop() can run
            for f in fifos:
                unblock(f)
            if mgr._lock.acquire(timeout=0.05):
                mgr._lock.release()
                break
        mgr.stop()


def test_managing_survives_a_reading_of_1e308(tmp_path):
    """One reading of ``net_w: 1e308`` among good ones: managing integrates the good ones and its
    balance stays finite."""
    import math

    from gestor.sim.lockstep import run_lockstep
    from tests.integration.test_faults import daemons
    from tests.integration.test_safety import T0, sunny_csv
    csv = sunny_csv(tmp_path / "sun.csv", 20)
    s, clock, mon, mgr = daemons(tmp_path, csv)
    path = Path(s.paths.run_dir) / "reading.json"
    try:
        run_lockstep(clock, [(5, mon.cycle), (10, mgr.cycle)], T0 + timedelta(minutes=2))
        for _ in range(6):
            clock.advance(5)
            mon.cycle()
            live = json.loads(path.read_text())
            live["readings"][-1]["net_w"] = 1e308 if _ % 2 else -1e308
            path.write_text(json.dumps(live))
            clock.advance(5)
            promptly(mgr.cycle)
        assert math.isfinite(mgr.balance.balance_wh) and abs(mgr.balance.balance_wh) < 1e4
    finally:
        mgr.stop()
