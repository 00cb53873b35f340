"""managing's price feed (gestor.runtime.pricefeed): the fixed 2.0TD prices by tariff period;
the real prices once the cache holds them; the fixed ones again where it does not."""
from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from drivers.store.influx import NullStore
from gestor.runtime.pricefeed import PriceFeed
from gestor.tariff import prices
from tests.conftest import make_settings

MAD = ZoneInfo("Europe/Madrid")
WED = datetime(2026, 6, 10, tzinfo=MAD)   # a Wednesday
SAT = datetime(2026, 6, 13, tzinfo=MAD)


def _hour(day: datetime, h: int) -> tuple[float, float]:
    t0 = day + timedelta(hours=h)
    return t0.timestamp(), (t0 + timedelta(hours=1)).timestamp()


def test_fixed_prices_follow_the_2_0td_periods(tmp_path):
    feed = PriceFeed(make_settings(tmp_path, prices={"source": "fixed"}), NullStore())
    assert feed.book is None
    assert feed.prices_of(*_hour(WED, 11)) == (0.22, 0.06, "fixed")   # P1 punta
    assert feed.prices_of(*_hour(WED, 9)) == (0.15, 0.06, "fixed")    # P2 llano
    assert feed.prices_of(*_hour(WED, 3)) == (0.10, 0.06, "fixed")    # P3 valle
    assert feed.prices_of(*_hour(SAT, 11)) == (0.10, 0.06, "fixed")   # weekends: P3


def test_without_a_cache_the_fixed_prices_apply_and_with_one_the_real_ones(tmp_path):
    # 00:10 local: only today's prices are wanted (tomorrow's after 20:30), so with today's cached
    # nothing is fetched from the network
    s = make_settings(tmp_path, prices={"source": "pvpc_public", "esios_url": "http://127.0.0.1:9"})
    feed = PriceFeed(s, NullStore())
    assert feed.prices_of(*_hour(WED, 11)) == (0.22, 0.06, "fixed")   # no cache yet: the tariff's

    a, _ = prices.day_bounds(WED.date(), MAD)
    prices.save(s.paths.state_dir, prices.DayPrices(WED.date(), 900,
                                                    [(a + timedelta(minutes=15 * k), 0.10 + 0.01 * (k % 4))
                                                     for k in range(96)],
                                                    [(a + timedelta(hours=h), 0.04) for h in range(24)]))
    now = WED + timedelta(minutes=10)
    feed.refresh(now, lambda t: (WED.timestamp(), WED.timestamp() + 3600))  # the period's bounds
    assert feed.thread is None   # today's prices are in the cache: nothing to fetch
    imp, sur, source = feed.prices_of(*_hour(WED, 11))
    assert source == "esios" and imp == pytest.approx(0.115) and sur == pytest.approx(0.04)   # the mean of 4 slots
    # tomorrow is not in the cache: its hours are priced at the fixed prices
    assert feed.prices_of(*_hour(WED + timedelta(days=1), 11)) == (0.22, 0.06, "fixed")
