"""Datadis' private API on loopback, answering in the documented shapes.

Shapes: Datadis' API documentation as extracted in TacoronteRiveroCristian/ctr-datadis ("Datadis
API Reference Documentation", from Datadis' doc-api: ``POST /nikola-auth/tokens/login`` with form
``username``/``password`` answering the token as text; ``get-supplies`` a list of ``address, cups,
postalCode, province, municipality, distributor, validDateFrom, validDateTo, pointType,
distributorCode``; ``get-consumption-data`` a list of ``cups, date (aaaa/MM/dd), time (hh:mm),
consumptionKWh, obtainMethod (Real/Estimada), surplusEnergyKWh, generationEnergyKWh,
selfConsumptionEnergyKWh``; months as ``AAAA/MM``) and the ``datadis`` 1.0.1 library's
``datadis/types.py`` (``Supplie``, ``ConsumptionData``: the same keys). The hours it serves are
``tests/data/distributor/datadis-api-2022-03.json`` (built from a real recording, see build.py
there). Errors: 401 with a JSON ``message`` for a bad login or a missing token (the library reads
``r.json()["message"]``).
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

HOURS = Path(__file__).resolve().parents[1] / "data" / "distributor" / "datadis-api-2022-03.json"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.test.token"


class DatadisEmulator:
    """``url``: the base URL; ``nif``/``password``: the one login it accepts; ``requests``: the
    paths and queries it was asked, in order; ``drop_last_hours``: the last day still coming in."""

    def __init__(self, nif: str = "12345678Z", password: str = "secreto", cups: str = "ES0031405678901234AB0F",
                 hours: list[dict] | None = None) -> None:
        self.nif, self.password, self.cups = nif, password, cups
        self.hours = hours if hours is not None else json.loads(HOURS.read_text())
        self.requests: list[tuple[str, dict]] = []
        emu = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a) -> None:  # quiet
                pass

            def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                u = urlparse(self.path)
                form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode())
                emu.requests.append((u.path, {k: v[0] for k, v in form.items() if k != "password"}))
                if u.path != "/nikola-auth/tokens/login":
                    return self._send(404, b'{"message": "not found"}')
                if form.get("username", [""])[0] != emu.nif or form.get("password", [""])[0] != emu.password:
                    return self._send(401, b'{"message": "Credenciales incorrectas"}')
                self._send(200, TOKEN.encode(), "text/plain")

            def do_GET(self) -> None:
                u = urlparse(self.path)
                q = {k: v[0] for k, v in parse_qs(u.query).items()}
                emu.requests.append((u.path, q))
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._send(401, b'{"message": "Unauthorized"}')
                if u.path == "/api-private/api/get-supplies":
                    return self._send(200, json.dumps([{
                        "address": "CALLE FALSA 123", "cups": emu.cups, "postalCode": "08240", "province": "Barcelona",
                        "municipality": "MANRESA", "distributor": "E-DISTRIBUCIÓN REDES DIGITALES, S.L.",
                        "validDateFrom": "2021/06/01", "validDateTo": "", "pointType": 5,
                        "distributorCode": "2"}]).encode())
                if u.path == "/api-private/api/get-consumption-data":
                    if q.get("cups") != emu.cups or q.get("distributorCode") != "2" or q.get("pointType") != "5" \
                            or q.get("measurementType") != "0":
                        return self._send(400, b'{"message": "bad parameters"}')
                    a, b = q.get("startDate", ""), q.get("endDate", "")
                    items = [h for h in emu.hours if a <= h["date"][:7] <= b]
                    return self._send(200, json.dumps(items).encode())
                self._send(404, b'{"message": "not found"}')

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
