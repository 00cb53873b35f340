"""The documentation site, served by the page at ``/docs/`` (issue 37): static, read-only and
public like the page's icons (a household reads it before it has a password), so it works on the
Pi's LAN without internet.

``sudo ./install.sh`` builds it with MkDocs (``mkdocs.yml``: English, ``mkdocs.es.yml``: Spanish)
into ``<install prefix>/site/en`` and ``/site/es``: :data:`DEFAULT_DIR`, beside the venv the page
runs from (``/opt/gestor/venv`` -> ``/opt/gestor/site``).

| GET | answers |
|---|---|
| /docs, /docs/ | a redirect to ``/docs/es/index.html`` for a Spanish or Catalan reader (the page's language, :func:`gestor.web.i18n.lang`), else ``/docs/en/index.html`` |
| /docs/PATH | the built file (``PATH/`` is ``PATH/index.html``); 404 with a sentence when it is not there |

Material's pages carry three small inline scripts; each answer's Content-Security-Policy allows
exactly those (their SHA-256, CSP Level 2), and scripts from this origin, nothing else.
"""
from __future__ import annotations

import base64
import hashlib
import re
import sys
from pathlib import Path

from flask import Flask, Response, abort, redirect, send_from_directory
from werkzeug.security import safe_join

from gestor.web import i18n

DEFAULT_DIR = Path(sys.prefix).parent / "site"    # /opt/gestor/site for /opt/gestor/venv
SITE_LANGS = {"es": "es", "ca": "es", "en": "en"}  # the page's language -> the site's (no Catalan site)
MAX_HTML_BYTES = 4 * 1024 * 1024                   # a built page is < 200 kB; a bigger one is not hashed
INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.S)
ENDPOINTS = ("docs_root", "docs")                  # public: no session needed (gestor.web.app)


def csp_for(html: bytes) -> str:
    """The Content-Security-Policy of one built page: its inline scripts by hash, else 'self'."""
    hashes = " ".join("'sha256-%s'" % base64.b64encode(hashlib.sha256(body).digest()).decode()
                      for body in INLINE_SCRIPT.findall(html))
    return ("default-src 'self'; img-src 'self' data:; style-src 'self'; "
            f"script-src 'self' {hashes}; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


def register(app: Flask, docs_dir: Path) -> None:
    """Add the ``/docs`` routes to ``app``, serving the site built into ``docs_dir``."""

    @app.route("/docs", endpoint="docs_root")
    @app.route("/docs/", endpoint="docs_root")
    def _root():
        return redirect(f"/docs/{SITE_LANGS.get(i18n.lang(), 'en')}/index.html")

    @app.route("/docs/<path:path>", endpoint="docs")
    def _page(path: str):
        if path.endswith("/"):
            path += "index.html"
        full = safe_join(str(docs_dir), path)
        if full is None or not Path(full).is_file():
            abort(404, description=f"no page {path!r} in the documentation at {docs_dir} "
                                   "(sudo ./install.sh builds it)")
        resp: Response = send_from_directory(docs_dir, path, max_age=300)
        if path.endswith(".html") and Path(full).stat().st_size <= MAX_HTML_BYTES:
            resp.headers["Content-Security-Policy"] = csp_for(Path(full).read_bytes())
        resp.headers["Cache-Control"] = "public, max-age=300"
        return resp
