"""The prices managing works with: the cached real prices, fetched once a day, or the fixed 2.0TD ones.

:class:`PriceFeed` holds the price :class:`gestor.tariff.prices.Book` (with ``prices.source``
other than ``fixed``: the daily minimum runs in the cheapest real-price slots, and each closed
period is priced at its real prices), fetches today's and (after 20:30 local) tomorrow's prices
from ESIOS or REE's public PVPC file in a thread of its own, once a day (the cycle never waits on
the network), and answers :meth:`PriceFeed.prices_of` in EUR/kWh. Its failure mode: a fetch that
fails is logged once for the day, and that day keeps its cache or the fixed 2.0TD prices;
nothing here raises.
"""
from __future__ import annotations

import logging
import threading
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Callable

from drivers.store.influx import Store
from gestor.settings import FETCHED_SOURCES

if TYPE_CHECKING:
    from gestor.settings import Settings

log = logging.getLogger("gestor.managing")


class PriceFeed:
    """The prices of settings ``settings`` (fetched prices are also stored in ``store``).
    ``book``: the cached real prices (None with ``prices.source: fixed``); ``thread``: the last
    fetch's, while it runs and after."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.s, self.store = settings, store
        self.book = None
        self.thread: threading.Thread | None = None
        self._tried: set[date] = set()   # days asked once already (one try, one log line a day)
        if settings.prices.source != "fixed":
            from gestor.tariff.prices import Book
            self.book = Book(settings.paths.state_dir, settings.tz,
                             settings.prices.file if settings.prices.source == "file" else None)

    def refresh(self, now: datetime, bounds_s: Callable[[float], tuple[float, float]]) -> None:
        """At each cycle: the book reads its cache again when needed (``bounds_s``: the settlement
        period's (start, end) at an epoch s, asked only with real prices), and the daily fetch
        starts when due."""
        if self.book is None:
            return
        self.book.refresh(now, bounds_s(now.timestamp())[0])
        if self.s.prices.source in FETCHED_SOURCES:
            self._fetch_daily(now)

    def prices_of(self, t0: float, t1: float) -> tuple[float, float, str]:
        """Import and surplus EUR/kWh over [t0, t1) epoch s and their source: the real prices when
        the cache has them (``"esios"``), else the fixed 2.0TD ones (``"fixed"``)."""
        from gestor.tariff.calendar import period_2_0td
        t = self.s.tariff
        real = self.book.period_prices(t0, t1) if self.book is not None else None
        if real is not None:
            return real[0], real[1], "esios"
        start = datetime.fromtimestamp(t0, self.s.tz)
        return t.import_eur_per_kwh(period_2_0td(start, self.s.tz)), t.surplus_eur_per_kwh, "fixed"

    def _fetch_daily(self, now: datetime) -> None:
        """After 20:30 local, once a day, fetch tomorrow's prices from ESIOS in a thread of its
        own (the cycle never waits on the network); today's too when the cache lacks them.
        Failures are logged once per day and the day keeps its cache or the fixed prices."""
        from gestor.tariff import prices
        local = now.astimezone(self.s.tz)
        wanted = [local.date()] + ([local.date() + timedelta(days=1)] if (local.hour, local.minute) >= (20, 30) else [])
        wanted = [d for d in wanted if d not in self._tried]  # each day looked at once: no file read a cycle
        if not wanted or (self.thread is not None and self.thread.is_alive()):
            return
        self._tried = {d for d in self._tried if d >= local.date()} | set(wanted)
        days = [d for d in wanted if prices.cached(self.s.paths.state_dir, d) is None]
        if not days:
            return

        def work() -> None:
            for d in days:
                try:
                    p = prices.fetch(self.s, d)
                    prices.save(self.s.paths.state_dir, p)
                    self.store.write(prices.points(p, self.s.site))
                    log.info("prices for %s fetched from %s: %d slots of %d min", d,
                             {"esios": "ESIOS", "pvpc_public": "REE's public PVPC file"}.get(p.source, p.source),
                             len(p.import_), p.slot_s // 60)
                except (prices.PriceError, OSError) as e:
                    log.warning("prices for %s: %s; the fixed 2.0TD prices are used for that day", d, e)
            self.book._loaded_for = None  # read the cache again at the next cycle
        self.thread = threading.Thread(target=work, name="prices", daemon=True)
        self.thread.start()
