"""The optional extras' lock files (requirements/<extra>.lock, tools/lock-extras.sh), offline: each
extra drivers/extras.py names is locked; its top-level packages (pyproject's extra) are pinned with
hashes, as is everything else in the lock (pip --require-hashes needs all); the packages it shares
with requirements.lock are at the same versions; its .in is pyproject's extra as it stands."""
from __future__ import annotations

import re
import tomllib

import pytest

from drivers import extras
from tests.conftest import REPO

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_lock(text: str) -> dict[str, tuple[str, list[str]]]:
    """{package: (version, [sha256 hashes])} of a pip-compile --generate-hashes file."""
    out: dict[str, tuple[str, list[str]]] = {}
    current = None
    for line in text.splitlines():
        m = PIN.match(line)
        if m:
            current = canonical(m.group(1))
            out[current] = (m.group(2), [])
        elif current and line.strip().startswith("--hash=sha256:"):
            out[current][1].append(line.strip().split(":", 1)[1].rstrip(" \\"))
        elif not line.startswith(" "):
            current = None
    return out


def pyproject_extra(name: str) -> list[str]:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["optional-dependencies"][name]


def requirement_name(req: str) -> str:
    return canonical(re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0])


@pytest.mark.parametrize("extra", sorted(extras.EXTRAS))
def test_each_extra_is_locked_with_hashes_at_the_base_lock_versions(extra):
    lock = parse_lock((REPO / "requirements" / f"{extra}.lock").read_text())
    base = parse_lock((REPO / "requirements.lock").read_text())
    tops = [requirement_name(r) for r in pyproject_extra(extra)]
    assert canonical(extras.EXTRAS[extra].package) in tops
    for name in tops:
        assert name in lock, f"{extra}.lock does not pin {name}"
    for name, (version, hashes) in lock.items():
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), f"{extra}.lock: {name} without hashes"
        if name in base:
            assert version == base[name][0], f"{extra}.lock pins {name}=={version}, requirements.lock {base[name][0]}"


@pytest.mark.parametrize("extra", sorted(extras.EXTRAS))
def test_each_extras_input_is_pyprojects_extra(extra):
    lines = [ln for ln in (REPO / "requirements" / f"{extra}.in").read_text().splitlines()
             if ln and not ln.startswith("#")]
    assert lines == ["-c ../requirements.lock", *pyproject_extra(extra)], \
        f"requirements/{extra}.in is out of date: run tools/lock-extras.sh {extra}"


def test_every_driver_extra_exists_in_pyproject():
    with open(REPO / "pyproject.toml", "rb") as f:
        declared = tomllib.load(f)["project"]["optional-dependencies"]
    assert set(extras.DRIVER_EXTRA.values()) <= set(extras.EXTRAS) <= set(declared)


def test_parse_lock_catches_a_pin_without_hash():
    text = "foo==1.0 \\\n    --hash=sha256:" + "a" * 64 + "\n    # via x\nbar==2.0\n    # via foo\n"
    assert parse_lock(text) == {"foo": ("1.0", ["a" * 64]), "bar": ("2.0", [])}
