"""install.sh and the optional extras: the system install asks drivers/extras.py which extra the
settings' meter.driver needs (settings_extra) and installs it from requirements/<extra>.lock with
--require-hashes (install_extra, also ``sudo ./install.sh --extra NAME``). The functions are run
from install.sh itself (GESTOR_INSTALL_LIB=1), with this test run's python."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

VENV = Path(sys.executable).parent.parent


def install_sh(tmp_path: Path, call: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}   # gestor's source; the venv has the rest
    return subprocess.run(["bash", "-c", f'GESTOR_INSTALL_LIB=1 source "{REPO}/install.sh"; {call}', "_", *args],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)


@pytest.mark.parametrize("driver, extra", [("huawei", "huawei"), ("sunspec", "sunspec"), ("sma_em", "sma"),
                                           ("eastron", ""), ("replay", "")])
def test_the_install_finds_the_extra_of_the_settings_meter_driver(tmp_path, driver, extra):
    f = tmp_path / "settings.yaml"
    f.write_text(f"meter:\n  driver: {driver}\n  host: 192.0.2.1\n")
    p = install_sh(tmp_path, 'settings_extra "$1" "$2"', str(VENV), str(f))
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == extra


def test_settings_that_do_not_parse_name_no_extra(tmp_path):
    f = tmp_path / "settings.yaml"
    f.write_text("meter: [unclosed\n")
    p = install_sh(tmp_path, 'settings_extra "$1" "$2"', str(VENV), str(f))
    assert p.returncode == 0 and p.stdout.strip() == ""


@pytest.mark.parametrize("name", ["nonsense", "../requirements", ""])
def test_an_unknown_extra_is_refused_with_the_allowed_names(tmp_path, name):
    p = install_sh(tmp_path, 'install_extra "$1" "$2"', str(VENV), name)
    assert p.returncode != 0
    assert "allowed: fronius goodwe huawei setup sma sunspec" in p.stderr


def test_an_extra_installs_from_its_lock_with_hashes(tmp_path):
    """The sunspec extra (pysunspec2, pyserial: two wheels) into a fresh venv from the package index,
    every file checked against its hash."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    p = install_sh(tmp_path, 'install_extra "$1" sunspec', str(venv))
    assert p.returncode == 0, p.stderr
    got = subprocess.run([str(venv / "bin" / "python"), "-c", "import sunspec2, importlib.metadata as m; "
                          "print(m.version('pysunspec2'))"], capture_output=True, text=True, timeout=60)
    assert got.stdout.strip() == "1.3.7", got.stderr
