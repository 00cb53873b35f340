"""Pinned venvs for the tests that run other projects' code (Home Assistant, the virtual meter's
clients): created under ``.build/`` once per machine and pins, under a lock so that parallel runs
wait for one install, and marked done only when the install finished."""
from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable


def pinned_venv(venv: Path, pins: list[str], lock_name: str, install: Callable[[Path], None],
                create_venv: bool = True) -> Path:
    """``venv`` with ``pins`` installed: as it is when its marker names the same pins, else made
    anew (``python -m venv``, or a bare folder for ``pip install --target`` without
    ``create_venv``) and filled by ``install(venv)``, which skips or fails the test when it
    cannot install."""
    ok = venv / "gestor-installed"
    if ok.exists() and ok.read_text() == "\n".join(pins):
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / lock_name, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ok.exists() and ok.read_text() == "\n".join(pins):
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        if create_venv:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        else:
            venv.mkdir()
        install(venv)
        ok.write_text("\n".join(pins))
    return venv
