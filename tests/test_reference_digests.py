"""Same decisions to the bit: the reference runs' digests (tools/reference_digests.py: four
policies, plain and guarded, and the perfect-foresight benchmark, on three real recordings) equal
the ones recorded in tests/data/reference-digests.json. Run on the pure core and, by
``install.sh --test-compiled``, on the compiled one; in one piece and split over two processes.
A change of behaviour that is meant regenerates the file (``--write``) in its own commit."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from reference_digests import reference_digests  # noqa: E402

WANT = json.loads((ROOT / "tests" / "data" / "reference-digests.json").read_text())


@pytest.mark.parametrize("jobs", [1, 2])
def test_every_decision_and_figure_is_unchanged(jobs: int) -> None:
    got = reference_digests(jobs)
    assert sorted(got) == sorted(WANT)
    differ = sorted(k for k in WANT if got[k] != WANT[k])
    assert not differ, f"decisions or figures changed in: {differ}"
