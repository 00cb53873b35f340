"""``gestor web``: the page on the LAN (daemons/gestor-web.service).

Flask (the application, :mod:`gestor.web.app`), served by cheroot (CherryPy's threaded WSGI
server; HTTPS with ``web.tls_cert_file``/``web.tls_key_file``), login with an argon2id hash
(argon2-cffi), CSRF tokens (Flask-WTF), rate-limited login (Flask-Limiter), charts with uPlot
(vendored under ``static/vendor``, no CDN). Imported only by this command, never by the daemons.
A top layer (programs): it may import the runtime (the published state, overrides, status), the
tariff, the settings, the drivers' store glue and ``stop_loads`` (the page's stop); nothing
imports it but :mod:`gestor.cli`.

``gestor web --set-password`` asks for the password twice (or reads one line from stdin when it
is not a terminal) and keeps its hash in secrets.yaml. Without a password ``gestor web`` exits 2
with one line saying how to set it (systemd does not restart it: RestartPreventExitStatus=2).
"""
from __future__ import annotations

import argparse
import getpass
import logging
import signal
import sys

from gestor.settings import listen_address, load_settings

log = logging.getLogger("gestor.web")


def set_password_main(args: argparse.Namespace) -> int:
    from gestor.web import auth
    s = load_settings(args.config, secrets_optional=True)
    if sys.stdin.isatty():
        pw = getpass.getpass("web password (at least %d characters): " % auth.MIN_PASSWORD_CHARS)
        if getpass.getpass("again: ") != pw:
            print("gestor web: the two passwords differ: nothing changed", file=sys.stderr)
            return 1
    else:
        pw = sys.stdin.readline().rstrip("\r\n")
    try:
        path = auth.set_password(s, pw)
    except ValueError as e:
        print(f"gestor web: {e}: nothing changed", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"gestor web: cannot write {auth.secrets_file(s)}: {e.strerror or e} (run with sudo)", file=sys.stderr)
        return 1
    print(f"web password set (argon2id hash in {path}, {auth.SECRET_NAME}); "
          "start or restart the page: sudo systemctl restart gestor-web")
    return 0


def serve_main(args: argparse.Namespace) -> int:
    from gestor.clock import WallClock
    from gestor.runtime.daemon import setup_logging
    from gestor.web import auth
    s = load_settings(args.config)
    setup_logging(s.log_level)
    try:
        hash_ = auth.password_hash(s)
    except auth.NoPassword as e:
        print(f"gestor web: {e}", file=sys.stderr)
        return 2
    for key in ("tls_cert_file", "tls_key_file"):
        p = getattr(s.web, key)
        if p is not None:
            try:
                p.read_bytes()
            except OSError as e:
                print(f"gestor web: web.{key}: cannot read {p}: {e.strerror or e}", file=sys.stderr)
                return 2
    try:
        key = auth.session_key(s.paths.state_dir)
    except OSError as e:
        print(f"gestor web: cannot keep the session key under {s.paths.state_dir}/web: {e.strerror or e}",
              file=sys.stderr)
        return 1
    server = make_server(s, WallClock(), hash_, key)
    try:
        server.prepare()
    except OSError as e:
        print(f"gestor web: web.listen {s.web.listen}: {e.strerror or e}", file=sys.stderr)
        return 1
    url = f"{'https' if s.web.tls_cert_file else 'http'}://{s.web.listen}"
    log.info("web page on %s (log in with the password set by gestor web --set-password)", url)
    def _term(*_):
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, _term)
    try:
        import sdnotify
        sdnotify.SystemdNotifier().notify("READY=1")
    except Exception:  # noqa: BLE001 -- outside systemd: nothing to tell
        pass
    try:
        server.serve()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.stop()
        log.info("web page stopped")
    return 0


def make_server(s, clock, password_hash: str, secret_key: bytes, stop=None):
    """A cheroot server for the page on ``web.listen`` (not yet bound: ``prepare()``/``serve()``,
    or ``start()`` in a thread); HTTPS when the settings give a certificate."""
    from cheroot import wsgi

    from gestor.web import serving
    from gestor.web.app import create_app
    https = s.web.tls_cert_file is not None
    app = create_app(s, clock, password_hash, secret_key, https=https, stop=stop)
    host, port = listen_address(s.web.listen)
    server = wsgi.Server((host, port), app, numthreads=serving.THREADS, server_name="gestor", shutdown_timeout=2)
    server.stats["Enabled"] = False
    serving.bound(server)  # request size and time limits (gestor.web.serving)
    if https:
        server.ssl_adapter = serving.ssl_adapter(str(s.web.tls_cert_file), str(s.web.tls_key_file))
    return server
