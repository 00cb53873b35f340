"""The setup page's "find" step run in this process through Flask's test client (a real login,
the page's CSRF token): ``python -m tests.web_setup_client SETTINGS JSON_BODY`` prints the answer
as one JSON line. Run by tests/integration/test_setup_page_lan.py on a test LAN's "pi" host
(tests/netns.py), where the page's finders see the emulated devices."""
from __future__ import annotations

import json
import sys
from datetime import datetime, timezone

from gestor.clock import SimClock
from gestor.settings import load_settings
from gestor.web import auth
from gestor.web.app import create_app

PASSWORD = "correct horse battery staple"


def main(settings: str, body: str) -> int:
    s = load_settings(settings)
    app = create_app(s, SimClock(datetime(2026, 6, 11, 12, tzinfo=timezone.utc)), auth.hasher().hash(PASSWORD),
                     b"k" * 32)
    c = app.test_client()
    page = c.get("/login").get_data(as_text=True)
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    assert c.post("/login", data={"csrf_token": token, "password": PASSWORD}).status_code == 303
    page = c.get("/setup").get_data(as_text=True)
    token = page.split('name="csrf-token" content="')[1].split('"')[0]
    r = c.post("/setup/api/find", json=json.loads(body), headers={"X-CSRFToken": token})
    print(json.dumps({"status": r.status_code, **r.get_json()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
