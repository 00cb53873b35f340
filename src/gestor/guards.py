"""Guards: what every policy is held to, applied to its wishes in this order:

1. the stop latch (``stop-loads``): every load off;
2. a stale meter (no reading newer than ``stale_after_s``): every load off;
3. ``min_on_s`` / ``min_off_s`` per load: a load that switched less than that long ago keeps its
   state (the latch and a stale meter override this: safety before equipment wear).

A guard that changes a wish replaces its reason, so the log says why the policy was overruled.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gestor.policies import LoadView, Wish


@dataclass(frozen=True)
class GuardState:
    """Facts the guards need beyond the loads. ``reading_age_s`` None: no reading at all."""

    now: datetime
    latched: bool
    reading_age_s: float | None
    stale_after_s: float


@dataclass(frozen=True)
class LoadLimits:
    min_on_s: float = 0.0
    min_off_s: float = 0.0


def apply_guards(wishes: list[Wish], loads: tuple[LoadView, ...], limits: dict[str, LoadLimits],
                 g: GuardState) -> list[Wish]:
    """Return the wishes every load will actually be commanded to (same order)."""
    by_name = {ld.name: ld for ld in loads}
    out: list[Wish] = []
    stale = g.reading_age_s is None or g.reading_age_s > g.stale_after_s
    for w in wishes:
        ld = by_name[w.load]
        if g.latched:
            out.append(Wish(w.load, False, "stop latch set (stop-loads; release with stop-loads --release)"))
            continue
        if stale:
            age = "no reading" if g.reading_age_s is None else f"last reading {g.reading_age_s:.0f} s old"
            out.append(Wish(w.load, False, f"meter stale: {age} > stale_after {g.stale_after_s:.0f} s"))
            continue
        lim = limits.get(w.load, LoadLimits())
        if w.on != ld.on and ld.since is not None:
            held_s = (g.now - ld.since).total_seconds()
            if ld.on and held_s < lim.min_on_s:
                out.append(Wish(w.load, True, f"min_on {lim.min_on_s:.0f} s not reached (on {held_s:.0f} s)"))
                continue
            if not ld.on and held_s < lim.min_off_s:
                out.append(Wish(w.load, False, f"min_off {lim.min_off_s:.0f} s not reached (off {held_s:.0f} s)"))
                continue
        out.append(w)
    return out
