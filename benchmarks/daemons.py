"""The real daemons as a Pi runs them, measured: RSS and PSS of each after ``--seconds`` (default
600, the issue's "after 10 minutes"), CPU per cycle, and writes per minute to disk (write
syscalls and bytes, from /proc/PID/io) and to InfluxDB (HTTP /write requests and points, counted
by a small local stand-in that answers 204 like InfluxDB 1.x).

    .venv/bin/python benchmarks/daemons.py [--seconds 600]

Meter (``--meter``): ``shelly`` (default), a Shelly Pro 3EM emulator on loopback
(tests/emulators) serving house-2022-06-11_13.csv at real speed, as a Pi in a house reads its
meter; or ``replay``, the replay meter on the same file (the demo's meter: a helper process
parses the recording with pyarrow and exits; monitoring keeps the columns). Relays: simulated;
settings: the shipped example (monitoring every 5 s, managing every 10 s, store.flush_s 10 s).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


class Counter(BaseHTTPRequestHandler):
    writes = 0
    points = 0

    def log_message(self, *a: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path.startswith("/write"):
            Counter.writes += 1
            Counter.points += body.count(b"\n") + 1
        self.send_response(204)
        self.send_header("X-Influxdb-Version", "1.6.7")
        self.end_headers()

    do_GET = do_POST


def proc_stats(pid: int) -> dict:
    st = Path(f"/proc/{pid}/status").read_text()
    rss = int(next(x for x in st.splitlines() if x.startswith("VmRSS")).split()[1])
    pss = int(next(x for x in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
                   if x.startswith("Pss:")).split()[1])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return {"rss_kb": rss, "pss_kb": pss, "cpu_s": cpu_s, "syscw": int(io["syscw"]),
            "write_bytes": int(io["write_bytes"])}


def shelly_playing(path: Path):
    """A Shelly Pro 3EM emulator whose phases follow the recording's net power, one sample every
    10 s from 10:00 of its first day (the sunny hours, when loads switch)."""
    import csv
    sys.path.insert(0, str(ROOT))
    from tests.emulators.http_devices import ShellyPro3EM
    from tests.influxd import free_port
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    net = [float(r["powerP"]) - max(float(r["powerC"]) - float(r["powerL1"]) - float(r["powerL2"]), 0.0)
           for r in rows]
    dev = ShellyPro3EM(free_port()).start()
    first = next(i for i, r in enumerate(rows) if r["timestamp"][11:13] == "10")

    def play() -> None:
        i = first
        while True:
            dev.phases_w = [-net[i % len(net)], 0.0, 0.0]  # import-positive, one phase
            i += 1
            time.sleep(10)
    threading.Thread(target=play, daemon=True).start()
    return dev


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--meter", choices=("shelly", "replay"), default="shelly")
    a = ap.parse_args()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Counter)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    data = ROOT.parent / "shared" / "data" / "house-2022-06-11_13.csv"
    dev = shelly_playing(data) if a.meter == "shelly" else None
    with tempfile.TemporaryDirectory() as d:
        raw = yaml.safe_load((ROOT / "config" / "settings.yaml").read_text())
        if dev is not None:
            raw["meter"] = {"driver": "shelly_em", "host": f"127.0.0.1:{dev.port}"}
        else:
            raw["meter"]["path"] = str(data)
        raw["paths"] = {"state_dir": f"{d}/state", "run_dir": f"{d}/run"}
        raw["store"].update(host="127.0.0.1", port=httpd.server_address[1])
        cfg = Path(d) / "settings.yaml"
        cfg.write_text(yaml.safe_dump(raw))
        exe = str(Path(sys.executable).parent / "gestor")
        procs = {w: subprocess.Popen([exe, w, "--config", str(cfg)], stderr=subprocess.DEVNULL)
                 for w in ("monitoring", "managing")}
        time.sleep(5)
        first = {w: proc_stats(p.pid) for w, p in procs.items()}
        w0, p0 = Counter.writes, Counter.points
        time.sleep(a.seconds)
        last = {w: proc_stats(p.pid) for w, p in procs.items()}
        cycles = {"managing": json.loads((Path(d) / "run" / "managing.json").read_text())["cycle"]}
        minutes = a.seconds / 60
        for w, p in procs.items():
            p.terminate()
            p.wait(30)
    interval = {"monitoring": raw["monitoring"]["interval_s"], "managing": raw["managing"]["interval_s"]}
    if dev is not None:
        dev.stop()
    print(f"meter {a.meter}; after {a.seconds:.0f} s (measured over the last {a.seconds:.0f} s):")
    for w in procs:
        f, l = first[w], last[w]
        n = a.seconds / interval[w]
        print(f"  {w:10s} RSS {l['rss_kb'] / 1024:5.1f} MB  PSS {l['pss_kb'] / 1024:5.1f} MB  "
              f"CPU {1000 * (l['cpu_s'] - f['cpu_s']) / n:6.2f} ms/cycle  "
              f"{(l['syscw'] - f['syscw']) / minutes:6.1f} write syscalls/min (files, sockets), "
              f"{(l['write_bytes'] - f['write_bytes']) / minutes / 1024:6.1f} kB/min to the block device")
    print(f"  managing cycles: {cycles['managing']}")
    print(f"  InfluxDB: {(Counter.writes - w0) / minutes:.1f} write requests/min, "
          f"{(Counter.points - p0) / minutes:.0f} points/min (both daemons)")


if __name__ == "__main__":
    main()
