"""Keep the household's InfluxDB on the Pi itself: ``sudo ./install.sh`` runs
``python -m gestor.runtime.influxconf /etc/influxdb/influxdb.conf``, which binds InfluxDB 1.x's HTTP API
to 127.0.0.1 (Debian's package listens on every interface, without authentication).

A ``bind-address`` the user set in the ``[http]`` section (uncommented) is left as it is: that is
how it is opened on purpose (docs/site/en/safety.md, "InfluxDB on the network"). The RPC service
(``bind-address`` at the top) is loopback already by default in 1.x.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

LOOPBACK = "127.0.0.1:8086"
MARK = "# gestor: InfluxDB answers on this machine only (see gestor's README to open it)"


def bind_http_to_loopback(text: str, address: str = LOOPBACK) -> tuple[str, bool]:
    """``text`` of an influxdb.conf with ``[http] bind-address`` set to ``address`` unless the
    user set one. Returns (new text, changed)."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.strip() == "[http]"), None)
    if start is None:
        return text.rstrip("\n") + f"\n\n[http]\n  {MARK}\n  bind-address = \"{address}\"\n", True
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"\s*\[[^\]]+\]\s*$", lines[i])), len(lines))
    for i in range(start + 1, end):
        if re.match(r"\s*bind-address\s*=", lines[i]):
            return text, False  # set by somebody on purpose
    lines.insert(start + 1, f"  {MARK}\n  bind-address = \"{address}\"\n")
    return "".join(lines), True


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m gestor.runtime.influxconf /etc/influxdb/influxdb.conf", file=sys.stderr)
        return 2
    path = Path(argv[0])
    try:
        text = path.read_text()
    except OSError as e:
        print(f"{path}: cannot read: {e.strerror}", file=sys.stderr)
        return 1
    new, changed = bind_http_to_loopback(text)
    if changed:
        path.with_name(path.name + ".before-gestor").write_text(text)
        path.write_text(new)
        print(f"{path}: InfluxDB's HTTP API bound to {LOOPBACK} (was: every interface)")
    else:
        print(f"{path}: [http] bind-address set already: left as it is")
    return 0


if __name__ == "__main__":
    sys.exit(main())
