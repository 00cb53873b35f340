"""The replay meter on both recorded formats, its clock handling, and bad files."""
import csv
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from drivers import DriverContext
from drivers.meters.base import MeterError
from drivers.meters.replay import ReplayData, ReplayMeter, ReplaySettings
from drivers.relays.simulated import SimulatedRelay, SimulatedRelaySettings
from gestor.clock import SimClock
from tests.conftest import DATA, write_csv

UTC = timezone.utc
HOUSE_HEADER = "timestamp,energyB,energyP,on_offL1,on_offL2,powerC,powerP,powerL1,powerL2,powerA"
T0 = datetime(2022, 6, 11, 10, 0, 0, tzinfo=UTC)


def house_settings(path, **kw):
    return ReplaySettings(path=path, subtract_columns=["powerL1", "powerL2"], **kw)


def meter(tmp_path, settings, start=T0):
    clock = SimClock(start)
    ctx = DriverContext(clock=clock, run_dir=tmp_path / "run", config_dir=tmp_path)
    return ReplayMeter(settings, ctx), clock, ctx


@pytest.fixture
def house_csv(tmp_path):
    return write_csv(tmp_path / "house.csv", HOUSE_HEADER, [
        "2022-06-11 10:00:00.000000,0,,0,0,900,1000,700,0,100",   # base 200 W, net +800 W
        "2022-06-11 10:00:10.000000,0,,0,0,500,1000,700,0,500",   # base max(-200, 0) = 0, net +1000
        "2022-06-11 10:00:20.000000,0,,0,0,nan,1000,0,0,0",        # a missing value
        "2022-06-11 10:00:30.000000,0,,0,0,300,,0,0,0",            # an empty cell
        "2022-06-11 10:00:40.000000,0,,0,0,300,100,0,0,-200",
        "2022-06-11 10:05:00.000000,0,,0,0,300,100,0,0,-200",      # after a 260 s gap
    ])


def test_house_format_base_load_and_export_positive_net(tmp_path, house_csv):
    m, clock, _ = meter(tmp_path, house_settings(house_csv))
    r = m.read()
    assert r.at == T0 and r.at.tzinfo is not None
    assert (r.production_w, r.consumption_w, r.net_w) == (1000.0, 200.0, 800.0)
    clock.advance(10)
    r = m.read()
    assert (r.consumption_w, r.net_w) == (0.0, 1000.0)


def test_missing_values_are_missing_readings_never_zeros(tmp_path, house_csv):
    m, clock, _ = meter(tmp_path, house_settings(house_csv))
    clock.advance(20)
    with pytest.raises(MeterError, match="no value"):
        m.read()
    clock.advance(10)
    with pytest.raises(MeterError, match="no value"):
        m.read()
    clock.advance(10)
    assert m.read().net_w == -200.0  # and the next good sample reads fine


def test_a_gap_in_the_data_repeats_the_old_sample_so_it_goes_stale(tmp_path, house_csv):
    m, clock, _ = meter(tmp_path, house_settings(house_csv))
    clock.advance(200)
    assert m.read().at == T0 + timedelta(seconds=40)


def test_speed_maps_clock_time_to_data_time(tmp_path, house_csv):
    m, clock, _ = meter(tmp_path, house_settings(house_csv, speed=10.0))
    m.read()
    clock.advance(1.0)  # 10 s of data
    r = m.read()
    assert r.net_w == 1000.0
    assert r.at == T0 + timedelta(seconds=1)  # stamped in the clock's time


def test_end_of_file_is_an_error_unless_looping(tmp_path, house_csv):
    m, clock, _ = meter(tmp_path, house_settings(house_csv))
    m.read()
    clock.advance(3600)
    with pytest.raises(MeterError, match="ended"):
        m.read()
    m, clock, _ = meter(tmp_path, house_settings(house_csv, loop=True))
    m.read()
    clock.advance(310)  # a lap is the span, 300 s, plus one sample interval: back to the first sample
    r = m.read()
    assert r.net_w == 800.0 and r.at == T0 + timedelta(seconds=310)


def test_simulated_loads_are_added_to_consumption(tmp_path, house_csv):
    m, clock, ctx = meter(tmp_path, house_settings(house_csv))
    relay = SimulatedRelay(SimulatedRelaySettings(), ctx, "water_heater", 1000.0)
    relay.set(True)   # at T0: the sample of T0 was measured before it (as managing attributes it)
    r = m.read()
    assert (r.consumption_w, r.net_w) == (200.0, 800.0)
    clock.advance(10)
    r = m.read()      # the sample of T0+10 s, measured with the load on: base 0 W + 1000 W
    assert (r.consumption_w, r.net_w) == (1000.0, 0.0)
    relay.set(False)
    clock.advance(30)
    assert m.read().net_w == -200.0


def test_winter_format_import_positive_net_is_flipped(tmp_path):
    f = write_csv(tmp_path / "winter.csv", "id,timestamp,powerP,powerLB",
                  ["0,2022-02-01T15:57:50,500.0,200.0", "1,2022-02-01T15:58:00,800.0,-300.0"])
    s = ReplaySettings(path=f, consumption_column=None, net_column="powerLB", net_sign="import_positive")
    m, clock, _ = meter(tmp_path, s, datetime(2022, 2, 1, 15, 57, 50, tzinfo=UTC))
    r = m.read()
    assert (r.production_w, r.consumption_w, r.net_w) == (500.0, 700.0, -200.0)  # importing 200 W
    clock.advance(10)
    r = m.read()
    assert (r.production_w, r.consumption_w, r.net_w) == (800.0, 500.0, 300.0)  # exporting 300 W


def test_real_house_file_first_sample():
    path = DATA / "house-2022-06-11_13.csv"
    with open(path) as f:
        row = next(csv.DictReader(f))
    s = house_settings(path)
    clock = SimClock(datetime.fromisoformat(row["timestamp"]).replace(tzinfo=UTC))
    m = ReplayMeter(s, DriverContext(clock, Path("/nonexistent"), Path(".")))
    r = m.read()
    base = max(float(row["powerC"]) - float(row["powerL1"]) - float(row["powerL2"]), 0.0)
    assert r.consumption_w == pytest.approx(base)
    assert r.net_w == pytest.approx(float(row["powerP"]) - base)
    assert len(m.data.t) == 25901


def test_missing_file(tmp_path):
    with pytest.raises(MeterError) as e:
        meter(tmp_path, house_settings(tmp_path / "nope.csv"))
    assert str(e.value) == f"replay file {tmp_path / 'nope.csv'}: No such file or directory"


def test_missing_columns_are_named(tmp_path):
    f = write_csv(tmp_path / "x.csv", "timestamp,powerP", ["2022-06-11 10:00:00,1"])
    with pytest.raises(MeterError) as e:
        meter(tmp_path, house_settings(f))
    assert "no column powerC, powerL1, powerL2 (it has: timestamp, powerP)" in str(e.value)


def test_malformed_rows_name_the_line(tmp_path):
    f = write_csv(tmp_path / "x.csv", HOUSE_HEADER, ["2022-06-11 10:00:00,0,,0,0,1,1,0,0,0",
                                                     "yesterday,0,,0,0,1,1,0,0,0"])
    with pytest.raises(MeterError, match=r"line 3: bad timestamp 'yesterday'"):
        meter(tmp_path, house_settings(f))


def test_times_with_an_offset_or_in_a_local_zone_are_read_as_utc(tmp_path):
    f = write_csv(tmp_path / "off.csv", "timestamp,powerP,powerC",
                  ["2022-06-11T10:00:00+02:00,900,100", "2022-06-11T10:00:10.5+02:00,900,100"])
    d = ReplayData.load(ReplaySettings(path=f))
    assert list(d.t) == [datetime(2022, 6, 11, 8, 0, tzinfo=timezone.utc).timestamp(),
                         datetime(2022, 6, 11, 8, 0, 10, 500000, tzinfo=timezone.utc).timestamp()]
    assert list(d.net_w) == [800.0, 800.0]
    f = write_csv(tmp_path / "local.csv", "timestamp,powerP,powerC", ["2022-01-11 10:00:00,900,100"])
    d = ReplayData.load(ReplaySettings(path=f, timestamp_tz="Europe/Madrid"))  # CET: UTC+1
    assert d.first == datetime(2022, 1, 11, 9, 0, tzinfo=timezone.utc)


def test_an_unknown_timestamp_tz_is_refused_naming_the_key_and_the_value(tmp_path):
    with pytest.raises(ValueError, match=r"timestamp_tz\n.*not a known timezone .*input_value='Europe/Madird'"):
        ReplaySettings(path=tmp_path / "x.csv", timestamp_tz="Europe/Madird")


def test_relative_path_is_resolved_from_the_settings_folder(tmp_path, house_csv):
    m, _, _ = meter(tmp_path, house_settings(Path("house.csv")))
    assert m.read().net_w == 800.0


def test_a_recorded_load_column_empty_in_the_whole_file_counts_as_no_load(tmp_path):
    # powerL2 empty everywhere (house-2022-04-22_26.csv: that load was not recorded then): 0 W;
    # powerL1 empty in one row only: that sample is missing, never a zero
    rows = ["2022-04-22 10:00:00,0,,0,,1500,3000,500,,1500", "2022-04-22 10:00:10,0,,0,,1500,3000,,,1500",
            "2022-04-22 10:00:20,0,,0,,1500,3000,500,,1500"]
    f = write_csv(tmp_path / "x.csv", HOUSE_HEADER, rows)
    d = ReplayData.load(house_settings(f))
    assert d.consumption_w[0] == 1000.0 and d.net_w[0] == 2000.0 and d.net_w[2] == 2000.0
    assert d.net_w[1] != d.net_w[1]  # NaN: a missing reading
    with pytest.raises(MeterError, match="no value"):
        d.reading(1)


def test_rows_out_of_order_are_played_in_time_order(tmp_path):
    rows = ["2022-06-11 10:00:20,0,,0,0,300,1000,0,0,0", "2022-06-11 10:00:00,0,,0,0,100,1000,0,0,0",
            "2022-06-11 10:00:10,0,,0,0,200,1000,0,0,0"]
    d = ReplayData.load(house_settings(write_csv(tmp_path / "x.csv", HOUSE_HEADER, rows)))
    assert [d.t[i] - d.t[0] for i in range(3)] == [0.0, 10.0, 20.0]
    assert list(d.consumption_w) == [100.0, 200.0, 300.0] and list(d.net_w) == [900.0, 800.0, 700.0]


def test_a_recording_is_parsed_outside_the_process_that_plays_it():
    # pyarrow is ~90 MB resident once imported: the simulator, the demo and a replaying monitoring
    # keep only the columns
    code = ("import sys; from drivers.meters.replay import ReplayData, ReplaySettings; "
            f"d = ReplayData.load(ReplaySettings(path={str(DATA / 'house-2022-06-11_13.csv')!r}, "
            "subtract_columns=['powerL1', 'powerL2'])); "
            "print(len(d.t), sorted(m for m in sys.modules if m.split('.')[0] in ('pyarrow', 'numpy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["25901", "[]"]


class _ExitedBeforeItsInput(subprocess.Popen):
    """The helper process, waited for as soon as it is started: it is gone before its input is
    written, every time (the pipe's reader is closed: the write is EPIPE, whatever the machine's
    speed)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.wait()


def test_a_reader_that_dies_before_its_input_is_a_clear_error(tmp_path, house_csv, monkeypatch):
    monkeypatch.setattr(sys, "executable", "/bin/false")  # the helper process exits at once, saying nothing
    monkeypatch.setattr(subprocess, "Popen", _ExitedBeforeItsInput)
    with pytest.raises(MeterError, match=r"house.csv: the CSV reader failed \(exit 1\): no message$"):
        ReplayData.load(house_settings(house_csv))


@pytest.mark.parametrize("ending, said", [("exit 3", r"exit 3"), ("kill -9 $$", r"killed by signal 9")])
def test_a_reader_that_dies_after_its_input_is_a_clear_error(tmp_path, house_csv, monkeypatch, ending, said):
    fake = tmp_path / "python"  # reads all its input, says two lines on stderr, then ends
    fake.write_text("#!/bin/sh\ncat >/dev/null\necho 'Traceback (most recent call last):' >&2\n"
                    f"echo 'ModuleNotFoundError: No module named pyarrow' >&2\n{ending}\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    with pytest.raises(MeterError, match=rf"house.csv: the CSV reader failed \({said}\): "
                                         r"ModuleNotFoundError: No module named pyarrow$"):
        ReplayData.load(house_settings(house_csv))


def test_same_time_of_day_plays_the_recorded_sun_where_the_real_one_is(tmp_path):
    """The installed example (same_time_of_day: true) played from the recording's 00:00 UTC
    whatever the hour, so a fresh install switched nothing for hours (issue 23). Now a Pi whose
    clock says 12:30 UTC on any date plays the recording's first 12:30 UTC."""
    s = house_settings(DATA / "house-2022-06-11_13.csv", same_time_of_day=True, loop=True)
    m, clock, _ = meter(tmp_path, s, start=datetime(2026, 12, 2, 12, 30, 5, tzinfo=UTC))
    r = m.read()
    assert abs((clock.now() - r.at).total_seconds()) <= 10  # a sample of 2022-06-11 about 12:30 UTC
    assert r.production_w > 1000  # midday sun in June
    plain, _, _ = meter(tmp_path, house_settings(DATA / "house-2022-06-11_13.csv", loop=True),
                        start=datetime(2026, 12, 2, 12, 30, 5, tzinfo=UTC))
    assert plain.read().production_w == 0  # the recording's first sample: night
