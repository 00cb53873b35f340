"""Secure by default (issue 10, security): InfluxDB on loopback, files written through sudo
readable by the gestor group only, no command built from a path, a pinned and hashed dependency
set, and stop-loads (root) never signalling a process that is not managing."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import tomllib
from datetime import datetime, timezone
from pathlib import Path

import pytest

from gestor.runtime.influxconf import bind_http_to_loopback
from tests.conftest import REPO, free_port

DEBIAN_CONF = Path("/etc/influxdb/influxdb.conf")


def test_install_renders_the_influxd_config_without_running_anything_from_the_path(tmp_path):
    evil = tmp_path / "co#;e touch PWNED & $(touch PWNED2) `touch PWNED3`"
    evil.mkdir()
    p = subprocess.run(["bash", "-c", f'GESTOR_INSTALL_LIB=1 source "{REPO}/install.sh"; '
                                      'render_influxd_conf "$1" "$2" 18086 18088', "_",
                        str(REPO / "config" / "influxd-local.conf.in"), str(evil)],
                       capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert f'dir = "{evil}/meta"' in p.stdout and 'bind-address = "127.0.0.1:18086"' in p.stdout
    assert not list(tmp_path.glob("PWNED*")) and not list(REPO.glob("PWNED*"))


@pytest.mark.skipif(not DEBIAN_CONF.exists(), reason="Debian's influxdb package not installed")
def test_debians_influxdb_is_bound_to_loopback_by_the_installer(tmp_path):
    """Debian's own influxdb.conf, as `sudo ./install.sh` edits it, started for real: it listens on
    127.0.0.1 only. A bind-address the user set is left alone."""
    # the package's own file: as the installer left it before binding it (./install.sh --test binds it on a
    # machine where it installs the package), else as it is
    shipped = DEBIAN_CONF.with_name(DEBIAN_CONF.name + ".before-gestor")
    text, changed = bind_http_to_loopback((shipped if shipped.exists() else DEBIAN_CONF).read_text())
    assert changed and tomllib.loads(text)["http"]["bind-address"] == "127.0.0.1:8086"
    again, changed2 = bind_http_to_loopback(text)
    assert not changed2 and again == text
    opened, _ = bind_http_to_loopback(text.replace('bind-address = "127.0.0.1:8086"', 'bind-address = ":8086"'))
    assert tomllib.loads(opened)["http"]["bind-address"] == ":8086"
    # start it, with its directories and ports moved into tmp_path
    port = free_port()
    conf = tomllib.loads(text)
    assert conf["http"]["bind-address"].startswith("127.0.0.1:")
    body = text.replace("127.0.0.1:8086", f"127.0.0.1:{port}").replace("/var/lib/influxdb", str(tmp_path))
    body = re.sub(r'^# bind-address = "127.0.0.1:8088"', f'bind-address = "127.0.0.1:{free_port()}"', body,
                  flags=re.M)
    (tmp_path / "influxdb.conf").write_text(body)
    proc = subprocess.Popen(["influxd", "-config", str(tmp_path / "influxdb.conf")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        listening = []
        while time.monotonic() < deadline and not listening:
            time.sleep(0.2)
            listening = [a for a in _listening() if a[1] == port]
        assert listening, "influxd did not listen"
        assert all(host == "127.0.0.1" for host, _ in listening), listening
    finally:
        proc.terminate()
        proc.wait(10)


def _listening() -> list[tuple[str, int]]:
    out = []
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(f).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state != "0A":  # LISTEN
                continue
            addr, port = local.split(":")
            if len(addr) == 8:
                host = ".".join(str(int(addr[i:i + 2], 16)) for i in (6, 4, 2, 0))
            else:
                host = "::" if set(addr) == {"0"} else addr
            out.append((host, int(port, 16)))
    return out


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, as sudo gestor override is")
def test_files_written_through_sudo_are_group_only_with_the_state_dirs_group(tmp_path):
    from gestor.runtime.livestate import set_latch
    from gestor.runtime.overrides import set_override
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, -1, 65534)  # the daemons' group (nogroup stands in for gestor)
    old = os.umask(0o022)       # sudo's usual umask
    try:
        now = datetime(2026, 1, 1, tzinfo=timezone.utc)
        set_override(state, "water_heater", "on", now)
        set_latch(state, now, "test")
    finally:
        os.umask(old)
    for name in ("overrides.json", "stop.latch"):
        st = (state / name).stat()
        assert oct(st.st_mode & 0o777) == "0o640" and st.st_gid == 65534, name


def _pins_with_hashes(lock: str) -> dict[str, str]:
    """A pip-compile lock's pins (name → version), each checked to carry a hash and no index."""
    pinned = {m[1].lower(): m[2] for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", lock, re.M)}
    blocks = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", lock.split("\n\n", 1)[-1])
    for b in blocks:
        if "==" in b.splitlines()[0]:
            assert "--hash=sha256:" in b, b.splitlines()[0]
    assert "file://" not in lock and "--index-url" not in lock
    return pinned


def test_the_compile_lock_pins_what_the_compiled_core_is_built_with():
    """install.sh --compile installs requirements-compile.lock with --require-hashes: mypy as
    requirements-compile.in asks, every dependency pinned with its hashes."""
    pinned = _pins_with_hashes((REPO / "requirements-compile.lock").read_text())
    wanted = re.search(r"^mypy==(\S+)$", (REPO / "requirements-compile.in").read_text(), re.M)[1]
    assert pinned.get("mypy") == wanted
    assert {"mypy-extensions", "typing-extensions", "setuptools", "wheel"} <= set(pinned)


def test_the_docs_lock_pins_the_site_builder_the_tests_build_with():
    """sudo ./install.sh builds the documentation site from requirements-docs.lock with
    --require-hashes: mkdocs-material as requirements-docs.in asks, the version the docs extra put
    in this venv (tests/test_docs_site.py builds with it), every dependency pinned with its hashes."""
    from importlib.metadata import version
    pinned = _pins_with_hashes((REPO / "requirements-docs.lock").read_text())
    wanted = re.search(r"^mkdocs-material==(\S+)$", (REPO / "requirements-docs.in").read_text(), re.M)[1]
    assert pinned.get("mkdocs-material") == wanted == version("mkdocs-material")
    assert {"mkdocs", "pymdown-extensions", "markdown", "jinja2", "pyyaml"} <= set(pinned)


def test_the_lock_pins_every_dependency_with_hashes():
    lock = (REPO / "requirements.lock").read_text()
    pinned = _pins_with_hashes(lock)
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for d in deps:
        name = re.match(r"[A-Za-z0-9_.-]+", d)[0].lower()
        assert name in pinned, f"{name} is not in requirements.lock: run pip-compile (README, Development)"


def test_stop_loads_never_signals_a_pid_that_is_not_managing(tmp_path, capsys):
    """managing.json (writable by the gestor user) names an unrelated process: stop-loads, run as
    root, reports the relays not confirmed and leaves that process alone."""
    import json

    import yaml

    import stop_loads
    from tests.conftest import settings_file
    f = settings_file(tmp_path)
    raw = yaml.safe_load(f.read_text())
    for ld in raw["loads"]:
        ld["relay"] = {"driver": "simulated", "fault": "no_answer"}
    f.write_text(yaml.safe_dump(raw))
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        run = tmp_path / "run"
        run.mkdir(exist_ok=True)
        from drivers.relays.simulated import SimulatedRelaySettings
        rid = stop_loads.relay_id(SimulatedRelaySettings(fault="no_answer"))  # as if it drove these relays
        (run / "managing.json").write_text(json.dumps({"pid": victim.pid, "at": "2020-01-01T00:00:00+00:00",
                                                       "interval_s": 0.1, "loads": {
                                                           ld["name"]: {"on": True, "relay_id": rid}
                                                           for ld in raw["loads"]}}))
        assert stop_loads.main(["--config", str(f), "--timeout-s", "0.5"]) == 1
        err = capsys.readouterr().err
        assert f"pid {victim.pid}" in err and "is not gestor's managing daemon: not signalled" in err
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait(10)
