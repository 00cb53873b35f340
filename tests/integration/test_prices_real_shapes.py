"""Prices from answers in Red Eléctrica's real shapes (tests/emulators/esios.py says which stored
real answer each builder copies), served over HTTP(S) on loopback and taken through the real
fetch path (drivers.http.Device): the autumn DST day whose ``datetime_utc`` repeats 00:00Z, the
spring one, hourly and quarter-hourly, all five geo ids in one answer, Canarias on its own
clock (and tomorrow's day complete at 20:30), a missing 1739, negative 1739 values, refusals
that say what is wrong, and the public PVPC day file without a token (issue 24)."""
from __future__ import annotations

import logging
import re
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from gestor.tariff import prices
from gestor.settings import PricesSettings, SettingsError, parse_settings
from tests.conftest import example_raw, make_settings
from tests.emulators.esios import EsiosServer, archive_answer, import_value, indicator_answer, slots, surplus_value

MAD = ZoneInfo("Europe/Madrid")
CANARY = ZoneInfo("Atlantic/Canary")
UTC = timezone.utc
TOKEN = "t0ken-for-tests"
AUTUMN, SPRING = date(2023, 10, 29), date(2024, 3, 31)


@pytest.fixture
def esios():
    e = EsiosServer(TOKEN)
    yield e
    e.close()


def ps(esios, **kw) -> PricesSettings:
    kw.setdefault("esios_token", TOKEN)
    return PricesSettings(**{"source": "esios", "esios_url": esios.url, "timeout_s": 2, **kw})


def test_the_fixture_has_the_real_answers_dst_quirk():
    """The served 25-hour day repeats datetime_utc 00:00Z, as ESIOS's real answer does."""
    rows = [v for v in indicator_answer(1001, [AUTUMN])["indicator"]["values"] if v["geo_id"] == 8741]
    assert len(rows) == 25
    assert [r["datetime_utc"] for r in rows[2:4]] == ["2023-10-29T00:00:00Z"] * 2
    assert [r["datetime"] for r in rows[2:4]] == ["2023-10-29T02:00:00.000+02:00", "2023-10-29T02:00:00.000+01:00"]
    assert [r["tz_time"] for r in rows[2:4]] == ["2023-10-29T00:00:00.000Z", "2023-10-29T01:00:00.000Z"]


@pytest.mark.parametrize("slot_s", [3600, 900])
def test_both_dst_days_are_accepted_with_every_slot(esios, slot_s):
    esios.slot_1001 = slot_s
    per_h = 3600 // slot_s
    for day, hours in ((AUTUMN, 25), (SPRING, 23), (date(2024, 6, 10), 24)):
        p = prices.fetch_esios(ps(esios), day, MAD)
        assert p.slot_s == slot_s and len(p.import_) == hours * per_h and len(p.surplus) == hours
        want = slots(day, slot_s)
        assert [t for t, _ in p.import_] == want                           # every slot, once, in order
        assert [v for _, v in p.import_] == [pytest.approx(import_value(k, 8741) / 1000) for k in range(len(want))]
    p = prices.fetch_esios(ps(esios), AUTUMN, MAD)
    second_two = datetime(2023, 10, 29, 1, 0, tzinfo=UTC)                  # 02:00 CET, the repeated hour
    assert prices.at(p.import_, second_two) == pytest.approx(import_value(3 * per_h, 8741) / 1000)
    assert prices.at(p.surplus, second_two) == pytest.approx(surplus_value(3, AUTUMN) / 1000)


@pytest.mark.parametrize("zone,geo", [("peninsula", 8741), ("baleares", 8743), ("ceuta", 8744), ("melilla", 8745)])
def test_each_zone_takes_its_own_values_from_the_five_in_one_answer(esios, zone, geo):
    p = prices.fetch_esios(ps(esios, zone=zone), date(2024, 1, 10), MAD)
    assert [v for _, v in p.import_] == [pytest.approx(import_value(k, geo) / 1000) for k in range(24)]


def test_canarias_pays_the_18h_price_at_18h_canary_time_and_tomorrow_is_complete(esios):
    """REE publishes the Canary prices on Madrid's clock; they apply by local clock hour. At 20:30
    Canary time only REE's tomorrow is published, and it is all of the Canary tomorrow."""
    day = date(2024, 1, 10)
    p = prices.fetch_esios(ps(esios, zone="canarias"), day, CANARY)        # every day published: no shift
    assert prices.at(p.import_, datetime(2024, 1, 10, 18, tzinfo=CANARY)) == pytest.approx(import_value(18, 8742) / 1000)
    for d in (day, day + timedelta(days=1), AUTUMN):
        esios.published_until = d
        p = prices.fetch_esios(ps(esios, zone="canarias"), d, CANARY)
        n = len(slots(d, 3600))
        assert len(p.import_) == n and len(p.surplus) == n
        a, _ = prices.day_bounds(d, CANARY)
        assert p.import_[0][0] == a                                         # 00:00 Canary time
        for k, (t, v) in enumerate(p.import_):
            assert v == pytest.approx(import_value(k, 8742) / 1000)
        at18 = datetime(d.year, d.month, d.day, 18, tzinfo=CANARY)
        assert prices.at(p.import_, at18) == pytest.approx(import_value(18 + (n - 24), 8742) / 1000)


def test_a_zone_on_another_clock_is_refused_naming_both_keys():
    for tz, zone, src in (("Atlantic/Canary", "peninsula", "esios"), ("Europe/Madrid", "canarias", "pvpc_public")):
        raw = example_raw()
        raw["timezone"], raw["prices"] = tz, {"source": src, "zone": zone}
        with pytest.raises(SettingsError) as e:
            parse_settings(raw, "settings.yaml")
        line = str(e.value)
        assert "prices.zone" in line and "timezone" in line and tz in line and "must agree" in line
    raw = example_raw()
    raw["timezone"], raw["prices"] = "Atlantic/Canary", {"source": "fixed"}    # no fetched prices: no rule
    parse_settings(raw, "settings.yaml")
    raw["prices"] = {"source": "esios", "zone": "canarias"}
    assert parse_settings(raw, "settings.yaml").prices.zone == "canarias"


@pytest.mark.parametrize("fault", ["404", "500", "empty"])
def test_a_missing_1739_keeps_the_import_day_with_the_fixed_surplus(tmp_path, esios, fault, caplog):
    esios.fail_1739 = fault
    s = make_settings(tmp_path, prices={"source": "esios", "esios_url": esios.url, "esios_token": TOKEN,
                                        "timeout_s": 2})
    with caplog.at_level(logging.WARNING, "gestor.tariff.prices"):
        p = prices.fetch(s, date(2024, 6, 10))
    assert len(p.import_) == 24 and p.source == "esios" and p.surplus_source == "fixed"
    assert [v for _, v in p.surplus] == [s.tariff.surplus_eur_per_kwh] * 24
    assert "1739" in caplog.text and "fixed surplus price" in caplog.text and "tariff.surplus_eur_per_kwh" in caplog.text
    tags = {tuple(re.search(r"kind=(\w+).*source=(\w+)", line).groups()) for line in prices.points(p, "home")}
    assert tags == {("import", "esios"), ("surplus", "fixed")}
    prices.save(s.paths.state_dir, p)
    back = prices.cached(s.paths.state_dir, date(2024, 6, 10))
    assert back is not None and back.surplus_source == "fixed"
    b = prices.Book(s.paths.state_dir, s.tz)
    t0 = datetime(2024, 6, 10, 10, tzinfo=UTC)
    b.refresh(t0, 0.0)
    assert b.period_prices(t0.timestamp(), t0.timestamp() + 3600) == (pytest.approx(import_value(12, 8741) / 1000),
                                                                       s.tariff.surplus_eur_per_kwh)


def test_negative_surplus_prices_are_kept_and_priced_as_the_bill_does(tmp_path, esios):
    """2024-03-09: 20 of 24 surplus hours negative. Kept as published (the bill values each
    hour's surplus at its price, RD 244/2019 art. 14.3): exporting then costs money; the import
    side and the policy (which reads import prices only) are untouched."""
    s = make_settings(tmp_path, prices={"source": "esios", "esios_url": esios.url, "esios_token": TOKEN})
    p = prices.fetch(s, date(2024, 3, 9))
    neg = [v for _, v in p.surplus if v < 0]
    assert len(neg) == 20 and p.surplus_source == "esios"
    prices.save(s.paths.state_dir, p)
    b = prices.Book(s.paths.state_dir, s.tz)
    t0 = datetime(2024, 3, 9, 11, tzinfo=UTC)                              # 12:00 CET: negative
    b.refresh(t0, 0.0)
    imp, sur = b.period_prices(t0.timestamp(), t0.timestamp() + 3600)
    assert sur == pytest.approx(surplus_value(12, date(2024, 3, 9)) / 1000) and sur < 0
    m = prices.period_money(1000.0, 0.0, imp, sur, 0.1)                    # 1 kWh exported at a negative price
    assert m["surplus_eur"] == pytest.approx(sur) and m["cost_eur"] == pytest.approx(-sur) and m["cost_eur"] > 0
    m = prices.period_money(0.0, 1000.0, imp, sur, 0.1)                    # the load took that kWh instead
    assert m["cost_eur"] == 0 and m["cost_without_eur"] == pytest.approx(-sur + 0.1)  # without gestor: exported


def test_a_bad_day_is_refused_saying_what_is_wrong(esios):
    esios.edit_1001 = lambda rows: [r for r in rows if not r["datetime"].startswith("2024-06-10T02:00")]
    with pytest.raises(prices.PriceError, match=r"slot 3 of 24 \(02:00 CEST, 2024-06-10T00:00Z\) missing"):
        prices.fetch_esios(ps(esios), date(2024, 6, 10), MAD)

    def dup(rows: list[dict]) -> list[dict]:       # the repeated 02:00 written with the first offset
        return [{**r, "datetime": r["datetime"].replace("02:00:00.000+01:00", "02:00:00.000+02:00")} for r in rows]
    esios.edit_1001 = dup
    with pytest.raises(prices.PriceError) as e:
        prices.fetch_esios(ps(esios), AUTUMN, MAD)
    msg = str(e.value)
    assert "two slots at the same time 2023-10-29T00:00Z" in msg and "slot 4 of 25" in msg and "missing" in msg


def test_the_public_pvpc_day_file_without_a_token(tmp_path, esios, monkeypatch):
    monkeypatch.delenv("ESIOS_TOKEN", raising=False)
    s = make_settings(tmp_path, prices={"source": "pvpc_public", "esios_url": esios.url, "timeout_s": 2})
    for day, hours in ((date(2024, 6, 10), 24), (AUTUMN, 25), (SPRING, 23)):
        p = prices.fetch(s, day)
        assert p.source == "pvpc_public" and p.surplus_source == "fixed" and p.slot_s == 3600
        assert [t for t, _ in p.import_] == slots(day, 3600)
        assert [v for _, v in p.import_] == [pytest.approx((150.37 + k) / 1000) for k in range(hours)]
        assert [v for _, v in p.surplus] == [s.tariff.surplus_eur_per_kwh] * hours
    assert not any(r.startswith("/indicators") for r in esios.requests)    # no token: the API is not asked
    ceuta = prices.fetch_pvpc_public(PricesSettings(source="pvpc_public", zone="ceuta", esios_url=esios.url),
                                     date(2024, 6, 10), MAD, 0.05)
    assert ceuta.import_[0][1] == pytest.approx(0.15537)                   # the CYM column
    canary = prices.fetch_pvpc_public(PricesSettings(source="pvpc_public", zone="canarias", esios_url=esios.url),
                                      date(2024, 6, 10), CANARY, 0.05)
    assert prices.at(canary.import_, datetime(2024, 6, 10, 18, tzinfo=CANARY)) == pytest.approx(0.16837)
    # with a token the surplus comes from 1739
    p = prices.fetch_pvpc_public(ps(esios, source="pvpc_public"), date(2024, 6, 10), MAD, 0.05)
    assert p.surplus_source == "esios" and p.surplus[5][1] == pytest.approx(surplus_value(5, date(2024, 6, 10)) / 1000)


def test_a_bad_pvpc_day_file_is_refused_in_one_line(esios):
    s = PricesSettings(source="pvpc_public", esios_url=esios.url, timeout_s=2)
    esios.edit_archive = lambda b: {"PVPC": [r for r in b["PVPC"] if r["Hora"] != "03-04"]}
    with pytest.raises(prices.PriceError, match=r"row 4 is hour '04-05', expected 03-04"):
        prices.fetch_pvpc_public(s, date(2024, 6, 10), MAD)
    esios.edit_archive = lambda b: {"PVPC": b["PVPC"][:-1]}
    with pytest.raises(prices.PriceError, match=r"23 hours, the day has 24"):
        prices.fetch_pvpc_public(s, date(2024, 6, 10), MAD)
    esios.edit_archive = lambda b: archive_answer(date(2024, 6, 9))
    with pytest.raises(prices.PriceError, match=r"row 1 is of '09/06/2024', not 10/06/2024"):
        prices.fetch_pvpc_public(s, date(2024, 6, 10), MAD)
    esios.edit_archive, esios.published_until = None, date(2024, 6, 9)
    with pytest.raises(prices.PriceError, match=r"no PVPC day in the answer for 2024-06-10 \(not published yet\?"):
        prices.fetch_pvpc_public(s, date(2024, 6, 10), MAD)


def test_tls_is_verified(tmp_path):
    """A server with a self-signed certificate is refused: the day file is fetched only from a
    server the system's CAs vouch for."""
    from tests.emulators.http_devices import self_signed_cert
    cert, key, _ = self_signed_cert(tmp_path, "esios")
    e = EsiosServer(TOKEN, tls=(cert, key))
    try:
        s = PricesSettings(source="pvpc_public", esios_url=e.url.replace("127.0.0.1", "localhost"), timeout_s=3)
        with pytest.raises(prices.PriceError, match=r"(?i)certificate|ssl|tls"):
            prices.fetch_pvpc_public(s, date(2024, 6, 10), MAD)
    finally:
        e.close()
