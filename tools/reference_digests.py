"""The sha256 digests of the reference runs: every decision the control core takes, to the bit.

Each reference run is ``gestor simulate`` of the example settings (``config/settings.yaml``) on
three real recordings (two sunny/cloudy summer files and a winter one, 12 days), one policy at a
time, both

* **plain**: the example's loads as shipped (no minimum times, no windows, no daily minimum), and
* **guarded**: the same with every guard at work (``min_on_s``/``min_off_s``, a switch cap per
  period, a time window on the second load, a daily minimum run by 21:00 on the first),

plus the perfect-foresight benchmark of each file. A digest covers every switch (time, load,
on/off) and every settlement period's figures (balance with and without gestor, each load's
energy, on-time and switches, prices), serialised with ``repr`` floats (exact), so any change in
any decision or any figure changes it.

    .venv/bin/python tools/reference_digests.py [--jobs 1] [--write FILE] [--check FILE]

The code measured is the repository's ``src``, or the tree in ``GESTOR_SRC`` (the compiled core:
``.build/compiled/src``). ``tests/test_reference_digests.py`` checks them against
``tests/data/reference-digests.json`` (pure and compiled, ``--jobs`` 1 and 2); a change of
behaviour that is meant regenerates that file with ``--write`` and says so in its commit.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import sys
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = Path(os.environ.get("GESTOR_SRC") or ROOT / "src").resolve()  # when run as a script

FILES = ["house-2022-06-11_13.csv", "house-2022-05-08_12.csv", "winter-2022-02-01_08.csv"]
POLICIES = ["time_to_consume", "hysteresis", "min_on_time", "steady_surplus"]
DATA = ROOT.parent / "shared" / "data"


def guarded(raw: dict) -> dict:
    """The example settings with every guard at work."""
    raw = copy.deepcopy(raw)
    first, second = raw["loads"][0], raw["loads"][1]
    first.update(min_on_s=120, min_off_s=180, max_switches_per_period=4, min_run_s=7200, min_run_by="21:00")
    second.update(min_on_s=300, min_off_s=60, max_switches_per_period=3, windows=["10:00-18:30"])
    return raw


def _canon(o: object) -> object:
    if isinstance(o, datetime):
        return o.isoformat()
    if isinstance(o, dict):
        return {str(k): _canon(v) for k, v in sorted(o.items(), key=lambda kv: str(kv[0]))}
    if isinstance(o, (list, tuple)):
        return [_canon(v) for v in o]
    return o


def digest(result) -> str:  # noqa: ANN001 -- a gestor.sim.simulate.SimResult (imported late: GESTOR_SRC)
    """sha256 of a run's switches and periods (floats as ``repr``: exact)."""
    body = {"switches": [(t.isoformat(), name, on) for t, name, on in result.switches],
            "periods": [_canon(asdict(p)) for p in result.periods]}
    return hashlib.sha256(json.dumps(body, sort_keys=True, allow_nan=True).encode()).hexdigest()


def reference_digests(jobs: int = 1) -> dict[str, str]:
    """{"<file> <policy> plain|guarded" or "<file> foresight": sha256 hex}."""
    import yaml

    from drivers.meters.replay import ReplayData
    from gestor.settings import parse_settings
    from gestor.sim.simulate import Prices, foresight, replay_settings_for, simulate
    example = ROOT / "config" / "settings.yaml"
    raw = yaml.safe_load(example.read_text())
    out: dict[str, str] = {}
    for f in FILES:
        data = ReplayData.load(replay_settings_for(DATA / f))
        for variant, base in (("plain", raw), ("guarded", guarded(raw))):
            for name in POLICIES:
                r = copy.deepcopy(base)
                r["policy"]["name"] = name
                s = parse_settings(r, str(example), example)
                out[f"{f} {name} {variant}"] = digest(simulate(data, s, Prices(s), jobs=jobs))
        s = parse_settings(copy.deepcopy(raw), str(example), example)
        out[f"{f} foresight"] = digest(foresight(data, s, Prices(s), jobs=jobs)[0])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--write", type=Path, help="write the digests to this JSON file")
    ap.add_argument("--check", type=Path, help="compare with this JSON file; exit 1 on any difference")
    a = ap.parse_args()
    got = reference_digests(a.jobs)
    for k, v in got.items():
        print(f"{v[:16]}  {k}")
    if a.write:
        a.write.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    if a.check:
        want = json.loads(a.check.read_text())
        bad = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
        for k in bad:
            print(f"DIFFERS: {k}", file=sys.stderr)
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.path[:0] = [str(SRC)]
    sys.exit(main())
