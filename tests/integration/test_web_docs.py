"""The documentation site served by gestor web at /docs/ (issue 37): the real site, built by MkDocs
from this tree (tests/test_docs_site.py's build), behind the real application on cheroot on a free
loopback port; public like the page's icons, in the reader's language (Catalan readers get the
Spanish site), nothing outside the site's folder, and the page's Help links point into it. In
Debian's headless chromium: Material's scripts run under the answer's Content-Security-Policy
(its inline scripts allowed by hash, no 'unsafe-inline') and the console reports no violation."""
from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest
import requests

from gestor.clock import SimClock
from gestor.web import auth
from tests.conftest import make_settings
from tests.integration.test_web import CHROMEDRIVER, CHROMIUM, PASSWORD, form_token
from tests.test_docs_site import build

LANG = {"es": "es-ES,es;q=0.9", "ca": "ca-ES,ca;q=0.9", "en": "en-GB,en;q=0.9"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("docs")
    for config, lang in (("mkdocs.yml", "en"), ("mkdocs.es.yml", "es")):
        p = build(config, out / "site" / lang)
        assert p.returncode == 0, p.stdout + p.stderr
    (out / "secret.txt").write_text("not part of the site")
    return out


@pytest.fixture
def url(tmp_path, built):
    from cheroot import wsgi

    from gestor.web.app import create_app
    s = make_settings(tmp_path)
    app = create_app(s, SimClock(datetime(2022, 6, 11, 9, tzinfo=timezone.utc)), auth.hasher().hash(PASSWORD),
                     b"k" * 32, docs_dir=built / "site")
    server = wsgi.Server(("127.0.0.1", 0), app, numthreads=4)
    server.prepare()
    threading.Thread(target=server.serve, daemon=True).start()
    yield f"http://127.0.0.1:{server.bind_addr[1]}"
    server.stop()


def test_the_site_is_public_in_the_readers_language_and_nothing_else_is_served(url):
    for lang, site in (("es", "es"), ("ca", "es"), ("en", "en")):
        r = requests.get(f"{url}/docs/", headers={"Accept-Language": LANG[lang]}, allow_redirects=False, timeout=10)
        assert r.status_code == 302 and r.headers["Location"].endswith(f"/docs/{site}/index.html"), (lang, r.headers)
    assert requests.get(f"{url}/docs?lang=en", allow_redirects=False, timeout=10).headers["Location"].endswith("/docs/en/index.html")
    es = requests.get(f"{url}/docs/es/index.html", timeout=10)
    assert es.status_code == 200 and es.headers["Content-Type"].startswith("text/html")
    assert "Primeros pasos" in es.text and 'lang="es"' in es.text
    csp = es.headers["Content-Security-Policy"]
    assert "'sha256-" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    en = requests.get(f"{url}/docs/en/troubleshooting.html", timeout=10)
    assert en.status_code == 200 and "LYING RELAY" in en.text
    assert requests.get(f"{url}/docs/en/meters/", timeout=10).status_code == 200  # a folder: its index.html
    css = [h for h in en.text.split('"') if h.endswith(".css") and "assets/stylesheets" in h][0]
    assert requests.get(f"{url}/docs/en/{css.removeprefix('../') if css.startswith('../') else css}", timeout=10).status_code == 200
    assert requests.get(f"{url}/docs/en/img/web-phone.png", timeout=10).headers["Content-Type"] == "image/png"
    for bad in ("/docs/en/nowhere.html", "/docs/..%2fsecret.txt", "/docs/en/..%2f..%2fsecret.txt", "/docs/%2e%2e/secret.txt"):
        r = requests.get(url + bad, timeout=10)
        assert r.status_code == 404 and "not part of the site" not in r.text, bad
    # the rest of the page still needs a session
    assert requests.get(f"{url}/api/status", timeout=10).status_code == 401


def test_the_pages_help_links_open_the_site(url):
    c = requests.Session()
    login = c.get(f"{url}/login", headers={"Accept-Language": LANG["es"]}, timeout=10).text
    assert 'href="/docs/"' in login and ">Ayuda</a>" in login
    token = form_token(login)
    r = c.post(f"{url}/login", data={"csrf_token": token, "password": PASSWORD}, allow_redirects=False, timeout=30)
    assert r.status_code == 303, r.text[:300]
    page = c.get(f"{url}/?lang=ca", timeout=10).text
    assert 'href="/docs/"' in page and ">Ajuda</a>" in page
    r = c.get(f"{url}/docs/", allow_redirects=False, timeout=10)  # the cookie the switch set: Catalan
    assert r.headers["Location"].endswith("/docs/es/index.html")
    assert ">Help</a>" in c.get(f"{url}/?lang=en", timeout=10).text


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="chromium and chromium-driver: ./install.sh --test")
def test_materials_scripts_run_under_the_sites_csp_in_chromium(url):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--lang=es"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    b = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        for page in ("/docs/es/index.html", "/docs/en/meters/eastron.html"):
            b.get(url + page)
            # the inline scripts (__md_get) and the bundle (its document$ observable) both ran
            assert b.execute_script("return typeof __md_get === 'function' && typeof document$ === 'object'"), page
            logs = [e["message"] for e in b.get_log("browser")]
            assert not [m for m in logs if "Content Security Policy" in m or "Refused" in m], logs
    finally:
        b.quit()
