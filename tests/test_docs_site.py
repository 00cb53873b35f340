"""The documentation site (issue 37): ``mkdocs build --strict`` of each language (mkdocs.yml:
English, docs/site/en; mkdocs.es.yml: Spanish, docs/site/es) with no warning at all (a broken link,
an anchor that does not exist, a page missing from the nav or a nav entry without a page fails it);
the Spanish pages' links into the English site (``/docs/en/PAGE.html``, which MkDocs leaves
unchecked as absolute links) name pages that exist; the README stays short and its relative links
resolve. Runs the real MkDocs and Material of the ``docs`` extra."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README_MAX_LINES = 150
LINK = re.compile(r"\]\(([^)\s]+)\)")


def build(config: str, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", config, "-d", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "NO_MKDOCS_2_WARNING": "1", "LC_ALL": "C.UTF-8"})


@pytest.mark.parametrize("config, lang", [("mkdocs.yml", "en"), ("mkdocs.es.yml", "es")])
def test_the_site_builds_with_no_warning(tmp_path, config, lang):
    p = build(config, tmp_path / lang)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert "WARNING" not in out, out
    assert (tmp_path / lang / "index.html").is_file()
    # offline on the Pi: no web fonts or scripts from another site
    page = (tmp_path / lang / "index.html").read_text()
    assert "fonts.googleapis" not in page and not re.search(r'<script[^>]+src="https?://', page)


def test_a_broken_link_fails_the_build(tmp_path):
    """The check itself: a page linking to a page that does not exist is a failed build."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# x\n\n[gone](nowhere.md)\n")
    (tmp_path / "mkdocs.yml").write_text(f"site_name: t\ndocs_dir: {docs}\ntheme: {{name: material, font: false}}\n")
    p = build(str(tmp_path / "mkdocs.yml"), tmp_path / "out")
    assert p.returncode != 0 and "nowhere.md" in p.stdout + p.stderr


def test_the_spanish_pages_links_into_the_english_site_exist(tmp_path):
    """Each ``/docs/en/PAGE.html#anchor`` of a Spanish page names a page and an anchor of the built
    English site."""
    assert build("mkdocs.yml", tmp_path).returncode == 0
    seen = 0
    for page in (REPO / "docs/site/es").rglob("*.md"):
        for target in LINK.findall(page.read_text()):
            if target.startswith("/docs/en/"):
                path, _, anchor = target.removeprefix("/docs/en/").partition("#")
                html = tmp_path / path
                assert path.endswith(".html") and html.is_file(), f"{page.name}: {target}"
                assert not anchor or f'id="{anchor}"' in html.read_text(), f"{page.name}: {target}"
                seen += 1
    assert seen >= 10


def test_the_readme_is_short_and_its_links_resolve():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    links = [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]
    assert len(links) >= 10
    for target in links:
        assert (REPO / target.split("#")[0]).exists(), target


def test_the_readme_keeps_the_two_commands_first():
    """The two commands come before anything else the README shows (.ci/run runs the second)."""
    text = (REPO / "README.md").read_text()
    first = re.search(r"```sh\n(.*?)```", text, re.S)[1]
    assert first.startswith("./install.sh --demo") and "./install.sh --test" in first
