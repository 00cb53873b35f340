"""Build hook for the optional compiled control core.

``GESTOR_COMPILE=1 pip install --no-build-isolation .`` (what ``install.sh --compile`` runs, with
``requirements-compile.lock`` installed) compiles the modules of the control core with mypyc
(https://mypyc.readthedocs.io): the same source, type-checked by mypy under ``[tool.mypy]`` in
pyproject.toml, built into C extensions, about twice as fast. Without it the package is pure Python
and behaves the same; CI runs the core's tests on both.
"""
import os
import tomllib
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
# The hot path of `gestor simulate` and of managing's cycle ([tool.gestor] compiled in
# pyproject.toml). Nothing there may be subclassed by interpreted code (mypyc classes take no
# interpreted subclasses: managing holds a LoadState).
COMPILED = tomllib.loads((HERE / "pyproject.toml").read_text())["tool"]["gestor"]["compiled"]

ext_modules = []
if os.environ.get("GESTOR_COMPILE") == "1":
    from mypyc.build import mypycify
    ext_modules = mypycify(["src/" + m.replace(".", "/") + ".py" for m in COMPILED], opt_level="3")

setup(ext_modules=ext_modules)
