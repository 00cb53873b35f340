"""One asyncio event loop for the drivers built on asyncio libraries (huawei-solar, goodwe,
pyfronius, pysma-plus, pywibeee), called from gestor's synchronous daemons.

The loop runs in one daemon thread, started on first use and shared by every driver of the
process: a library's client (its connection, its session) lives on that loop between reads, which
is what those libraries expect (huawei-solar keeps one Modbus TCP connection; the SDongle accepts
one client at a time). :func:`run` waits at most ``timeout_s`` for a coroutine; on time-out the
coroutine is cancelled and :class:`TimeoutError` raised, so a device that never answers costs one
bounded wait, never a hung daemon.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def loop() -> asyncio.AbstractEventLoop:
    """The drivers' event loop (started on first call, in a daemon thread named ``drivers-aio``)."""
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            new = asyncio.new_event_loop()
            threading.Thread(target=new.run_forever, name="drivers-aio", daemon=True).start()
            _loop = new
        return _loop


def run(coro: Coroutine[Any, Any, T], timeout_s: float) -> T:
    """Run ``coro`` on the drivers' loop and return its result.

    Raises whatever the coroutine raises, or :class:`TimeoutError` after ``timeout_s`` seconds
    (the coroutine is then cancelled). Must not be called from the loop's own thread."""
    fut = asyncio.run_coroutine_threadsafe(coro, loop())
    try:
        return fut.result(timeout_s)
    except concurrent.futures.TimeoutError:
        fut.cancel()
        raise TimeoutError(f"no answer within {timeout_s:g} s") from None
