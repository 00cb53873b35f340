"""The line-protocol encoder the daemons use instead of influxdb-client (which pulls numpy into a
Pi Zero's 512 MB): the same bytes as influxdb-client's Point on ordinary and odd inputs."""
from __future__ import annotations

import math
import random
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from influxdb_client import Point, WritePrecision

from drivers.store.influx import point

UTC = timezone.utc
AT = datetime(2022, 6, 11, 10, 0, 0, 123000, tzinfo=UTC)
ODD = ["plain", "with space", "com,ma", "eq=ual", 'quo"te', "back\\slash", "tail\\", "new\nline", "tab\t",
       "ñandú €", ""]


def reference(measurement, tags, fields, at):
    p = Point(measurement)
    for k, v in tags.items():
        p = p.tag(k, v)
    for k, v in fields.items():
        if v is None:
            continue
        p = p.field(k, v if isinstance(v, (bool, str)) else float(v))
    ms = (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    return p.time(ms, WritePrecision.MS).to_line_protocol()


def test_same_line_protocol_as_influxdb_client():
    rng = random.Random(7)
    numbers = [0, 1, -1, 0.1 + 0.2, 1e20, 1e-7, 123456789.125, -0.0, 3, 2 ** 53, float("nan"), float("inf")]
    for i in range(2000):
        tags = {rng.choice(ODD) or "t": rng.choice(ODD) for _ in range(rng.randint(0, 3))}
        fields = {}
        for _ in range(rng.randint(1, 4)):
            kind = rng.random()
            v = rng.choice(numbers) if kind < 0.5 else (rng.random() < 0.5 if kind < 0.7 else rng.choice(ODD))
            fields[rng.choice(ODD) or "f"] = v
        if all(v is None or (isinstance(v, float) and not math.isfinite(v)) for v in fields.values()):
            continue
        at = AT + timedelta(milliseconds=rng.randint(-10 ** 9, 10 ** 9))
        m = rng.choice(["meter", "de cision", "a,b"])
        assert point(m, tags, fields, at) == reference(m, tags, fields, at), (m, tags, fields)


def test_a_point_without_fields_is_refused():
    with pytest.raises(ValueError, match="no field"):
        point("meter", {"site": "x"}, {"net_w": None}, AT)


def test_the_daemons_do_not_import_influxdb_client_nor_numpy():
    code = ("import sys, monitoring, managing, stop_loads, gestor.cli, drivers.store.influx; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('influxdb_client', 'numpy', 'influxdb', "
            "'matplotlib')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
