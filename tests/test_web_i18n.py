"""The page's catalogs (src/gestor/web/translations): every word the page, the login and the
errors say is in the template (messages.pot) and translated in Spanish and Catalan, each
translation keeps its placeholders, and the committed .mo are the .po compiled."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

REPO = Path(__file__).resolve().parents[1]
T = REPO / "src" / "gestor" / "web" / "translations"
LANGS = ("es", "ca")
HOLES = re.compile(r"%\(\w+\)[sd]|\{\w+\}")


def catalog(lang: str):
    with open(T / lang / "LC_MESSAGES" / "messages.po", "rb") as f:
        return read_po(f, locale=lang)


def test_the_template_holds_every_word_of_the_sources(tmp_path):
    pot = tmp_path / "messages.pot"
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", "extract", "-F", str(REPO / "babel.cfg"),
                    "-k", "_", "-k", "gettext", "-k", "ngettext:1,2", "-o", str(pot), str(REPO)],
                   check=True, capture_output=True, cwd=REPO)
    with open(pot, "rb") as f:
        fresh = {m.id for m in read_po(f) if m.id}
    with open(T / "messages.pot", "rb") as f:
        kept = {m.id for m in read_po(f) if m.id}
    assert fresh - kept == set(), "new words: run pybabel extract and update (docs/site/en/web.md, 'Translating')"
    for lang in LANGS:
        ids = {m.id for m in catalog(lang) if m.id}  # (obsolete ones are kept apart: catalog.obsolete)
        assert fresh - ids == set(), f"{lang}: not in the catalog (pybabel update)"


@pytest.mark.parametrize("lang", LANGS)
def test_every_word_is_translated_keeping_its_placeholders(lang):
    cat = catalog(lang)
    for m in cat:
        if not m.id:
            continue
        ids = m.id if isinstance(m.id, tuple) else (m.id,)
        strings = m.string if isinstance(m.string, tuple) else (m.string,)
        assert all(strings) and not m.fuzzy, f"{lang}: {m.id!r} is not translated"
        for s in strings:
            assert sorted(set(HOLES.findall(s))) == sorted(set(HOLES.findall(ids[-1]))), (lang, m.id, s)


@pytest.mark.parametrize("lang", LANGS)
def test_the_committed_mo_is_the_po_compiled(lang):
    def key(v):
        return tuple(v) if isinstance(v, (list, tuple)) else v
    with open(T / lang / "LC_MESSAGES" / "messages.mo", "rb") as f:
        mo = {(m.context, key(m.id)): key(m.string) for m in read_mo(f) if m.id}
    po = {(m.context, key(m.id)): key(m.string) for m in catalog(lang) if m.id}
    assert mo == po, "run: pybabel compile -d src/gestor/web/translations"


def test_the_daemons_do_not_import_flask_or_babel():
    code = ("import sys, managing, monitoring, stop_loads; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'flask_babel', 'babel')); "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                       env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stdout + r.stderr
