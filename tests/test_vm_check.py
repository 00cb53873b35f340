"""tools/vm-check.sh's host-side logic, without a VM and without the network (issue 32, small
items): the Debian mirror comes from the host's own apt sources (one-line and deb822 files, read
from a sample root: no mirror is contacted), and QEMU with KVM that does not start (a host whose
/dev/kvm is writable but KVM aborts at once: "failed to set MSR 0x10a", an assertion) or exits at
once falls back to TCG. QEMU here is a fake executable on PATH (a small shell script)."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO

LIB = REPO / "tools" / "vm-check-lib.sh"
BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="needs bash")


def bash(script: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([BASH, "-c", f". {LIB}\n{script}"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def mirror(root: Path, files: dict[str, str], suite: str = "bookworm") -> str:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    p = bash(f'apt_mirror "{root}" {suite}')
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


DEB822 = """\
    Types: deb
    # http://snapshot.debian.org/archive/debian/20250520T000000Z
    URIs: http://mirror.example.org/debian/
    Suites: bookworm bookworm-updates
    Components: main
    Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

    Types: deb
    URIs: http://mirror.example.org/debian-security
    Suites: bookworm-security
    Components: main
    """


def test_the_mirror_of_a_deb822_sources_file(tmp_path):
    assert mirror(tmp_path, {"etc/apt/sources.list.d/debian.sources": DEB822}) == "http://mirror.example.org/debian"


def test_a_disabled_stanza_a_source_only_stanza_and_a_disabled_file_are_skipped(tmp_path):
    files = {
        "etc/apt/sources.list.d/debian.sources": """\
            Types: deb-src
            URIs: http://src.example.org/debian
            Suites: bookworm

            Types: deb
            URIs: http://off.example.org/debian
            Suites: bookworm
            Enabled: no

            Types: deb deb-src
            URIs: https://on.example.org/debian
            Suites: bookworm
            """,
        "etc/apt/sources.list.d/cloud.list.disabled-by-farm": "deb https://disabled.example.org/apt bookworm main\n",
    }
    assert mirror(tmp_path, files) == "https://on.example.org/debian"


def test_the_mirror_of_a_one_line_sources_list_with_options_and_security_first(tmp_path):
    files = {"etc/apt/sources.list": """\
        # the installer's
        deb http://security.example.org/debian-security bookworm-security main
        deb-src http://src.example.org/debian bookworm main
        deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://192.0.2.10/debian/ bookworm main contrib
        deb http://later.example.org/debian bookworm main
        """}
    assert mirror(tmp_path, files) == "http://192.0.2.10/debian"


def test_sources_list_comes_before_sources_list_d_as_apt_reads_them(tmp_path):
    files = {"etc/apt/sources.list": "deb http://first.example.org/debian bookworm main\n",
             "etc/apt/sources.list.d/debian.sources": DEB822}
    assert mirror(tmp_path, files) == "http://first.example.org/debian"


def test_no_source_for_the_suite_gives_nothing_and_vm_check_says_what_to_set(tmp_path):
    assert mirror(tmp_path, {"etc/apt/sources.list.d/debian.sources": DEB822}, suite="trixie") == ""
    assert mirror(tmp_path / "empty", {}) == ""
    text = (REPO / "tools" / "vm-check.sh").read_text()
    assert "deb.debian.org" not in text and "set GESTOR_VM_MIRROR" in text


FAKE_QEMU = r"""#!/bin/sh
# a fake qemu-system-x86_64: FAKE_KVM=abort (KVM aborts at once, as on a host whose /dev/kvm is
# writable but KVM cannot set an MSR), dies (daemonizes, then is gone), ok; TCG always boots
echo "$*" >> "$FAKE_LOG"
pidfile=""; serial=""; prev=""
for a in "$@"; do
  [ "$prev" = -pidfile ] && pidfile=$a
  case "$a" in file,id=s0,path=*) serial=$(echo "$a" | sed 's/^file,id=s0,path=//; s/,append=on$//') ;; esac
  prev=$a
done
case " $* " in *" -enable-kvm "*)
  case "$FAKE_KVM" in
    abort)
      echo "error: failed to set MSR 0x10a to 0x0" >&2
      echo "qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3209: kvm_buf_set_msrs: Assertion \`ret == cpu->kvm_msr_buf->nmsrs' failed." >&2
      exit 134 ;;
    dies)
      sh -c 'exit 0' & gone=$!; wait $gone
      echo "$gone" > "$pidfile"; exit 0 ;;
  esac
esac
[ "$FAKE_TCG" = fail ] && { echo "qemu: tcg refused" >&2; exit 1; }
sleep 300 > /dev/null 2>&1 &
echo $! > "$pidfile"
echo "Linux version 6.1.0-fake" >> "$serial"
exit 0
"""


@pytest.fixture
def fake_qemu(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    q = bin_dir / "qemu-system-x86_64"
    q.write_text(FAKE_QEMU)
    q.chmod(0o755)
    work = tmp_path / "work"
    (work / "logs").mkdir(parents=True)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LOG": str(tmp_path / "qemu-calls.txt"),
           "WORK": str(work), "LOGS": str(work / "logs"), "DISK": str(work / "run.qcow2"), "PORT": "2222",
           "SERIAL": str(work / "logs" / "console.log"), "PIDFILE": str(work / "qemu.pid"),
           "VM_CPUS": "2", "VM_MEM": "2048"}
    yield env
    pid = work / "qemu.pid"
    if pid.exists():  # the fake's "VM" (a sleep it started)
        try:
            os.kill(int(pid.read_text()), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            pass


START = """ACCEL=(-enable-kvm -cpu host)
TCG=(-accel tcg,thread=multi -cpu max)
PROBE_S=60
start_vm_probed
echo "ACCEL=${ACCEL[*]}"
"""


@pytest.mark.parametrize("kvm,why", [("abort", "QEMU with KVM did not start (exit 134"),
                                      ("dies", "QEMU with KVM exited at once")])
def test_kvm_that_does_not_start_falls_back_to_tcg(fake_qemu, kvm, why):
    p = bash(START, {**fake_qemu, "FAKE_KVM": kvm})
    assert p.returncode == 0, p.stderr
    assert "ACCEL=-accel tcg,thread=multi -cpu max" in p.stdout
    assert why in p.stderr and "TCG emulation instead" in p.stderr, p.stderr
    if kvm == "abort":
        assert "kvm_buf_set_msrs: Assertion" in p.stderr  # QEMU's own last line, from logs/qemu.log
    calls = Path(fake_qemu["FAKE_LOG"]).read_text().splitlines()
    assert len(calls) == 2 and "-enable-kvm" in calls[0] and "-accel tcg,thread=multi" in calls[1]


def test_working_kvm_is_kept(fake_qemu):
    p = bash(START, {**fake_qemu, "FAKE_KVM": "ok"})
    assert p.returncode == 0 and "ACCEL=-enable-kvm -cpu host" in p.stdout, p.stderr
    assert len(Path(fake_qemu["FAKE_LOG"]).read_text().splitlines()) == 1


def test_tcg_that_does_not_start_either_is_an_error(fake_qemu):
    p = bash(START, {**fake_qemu, "FAKE_KVM": "abort", "FAKE_TCG": "fail"})
    assert p.returncode == 1 and "qemu did not start with TCG either" in p.stderr, p.stderr


# --- issue 36: --arch arm64 -------------------------------------------------------------------

SCRIPT = REPO / "tools" / "vm-check.sh"


def test_arm64_boots_the_virt_board_with_a_cortex_a53_and_its_serial_console(fake_qemu, tmp_path):
    arm = tmp_path / "bin" / "qemu-system-aarch64"
    arm.write_text(FAKE_QEMU)
    arm.chmod(0o755)
    env = {**fake_qemu, "ARCH": "arm64", "VM_CPUS": "4", "VM_MEM": "512"}
    p = bash('ACCEL=(-accel tcg,thread=multi -cpu cortex-a53)\nstart_vm_probed\necho "ACCEL=${ACCEL[*]}"', env)
    assert p.returncode == 0, p.stderr
    calls = Path(fake_qemu["FAKE_LOG"]).read_text().splitlines()
    assert len(calls) == 1, calls   # no KVM probe: one start, with TCG
    c = calls[0]
    for part in ("-machine virt", "-cpu cortex-a53", "-accel tcg,thread=multi", "-smp 4", "-m 512",
                 "console=ttyAMA0", "virtio-rng-pci"):
        assert part in c, (part, c)
    assert "q35" not in c and "ttyS0" not in c


def test_amd64_still_boots_q35_with_ttys0(fake_qemu):
    p = bash(START, {**fake_qemu, "FAKE_KVM": "ok"})
    assert p.returncode == 0, p.stderr
    c = Path(fake_qemu["FAKE_LOG"]).read_text().splitlines()[0]
    assert "-machine q35" in c and "console=ttyS0" in c and "-m 2048" in c


@pytest.mark.parametrize("text,ok", [
    ("enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\noffset 0\n", True),
    ("enabled\ninterpreter /usr/bin/qemu-aarch64\nflags: OC\noffset 0\n", False),       # no F: not in a chroot
    ("disabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: F\noffset 0\n", False),
    (None, False),                                                                       # not registered
])
def test_binfmt_aarch64_needs_an_enabled_entry_with_the_f_flag(tmp_path, text, ok):
    if text is not None:
        (tmp_path / "qemu-aarch64").write_text(text)
    p = bash("binfmt_aarch64 && echo yes || echo no", {"BINFMT_DIR": str(tmp_path)})
    assert p.stdout.strip() == ("yes" if ok else "no"), p.stderr


@pytest.mark.parametrize("args,words", [
    (["--arch", "riscv64"], ["--arch riscv64", "amd64", "arm64"]),
    (["--mem", "lots"], ["--mem lots", "whole number of MB"]),
    (["--mem", "128"], ["--mem 128", "at least 256 MB"]),
    (["--soak-min", "x"], ["--soak-min x", "whole number of minutes"]),
    (["--arch"], ["--arch needs a value"]),
])
def test_bad_options_are_refused_naming_the_value_and_what_is_allowed(tmp_path, args, words):
    p = subprocess.run([BASH, str(SCRIPT), str(tmp_path / "w"), *args], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, (p.stdout, p.stderr)
    for w in words:
        assert w in p.stderr, (w, p.stderr)
    assert not (tmp_path / "w").exists()   # refused before anything is made


def test_measures_of_two_runs_side_by_side(tmp_path):
    a, b = tmp_path / "a.tsv", tmp_path / "b.tsv"
    a.write_text("machine\tarm64, 4 vCPUs, 512 MB\ninstall\t900 s\nswap\t0 MB\n")
    b.write_text("machine\tamd64, 2 vCPUs, 2048 MB\ninstall\t120 s\nstop-loads: done\t300 ms\n")
    p = subprocess.run([sys.executable, str(REPO / "tools" / "vm_check.py"), "measures", str(a), str(b)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert "arm64, 4 vCPUs, 512 MB" in lines[0] and "amd64, 2 vCPUs, 2048 MB" in lines[0]
    assert [ln.split("|")[0].strip() for ln in lines[2:]] == ["install", "swap", "stop-loads: done"]
    assert "900 s" in lines[2] and "120 s" in lines[2]
    assert lines[3].split("|")[2].strip() == "-" and lines[4].split("|")[1].strip() == "-"


# --- issue 36: the "this machine" column (tools/host_measure.py) ------------------------------

TOOLS = REPO / "tools"
sys.path.insert(0, str(TOOLS))
import host_measure  # noqa: E402
import vm_measure  # noqa: E402


def test_cpu_and_memory_take_a_pid_with_a_label_and_a_missing_kernel_log_is_said(tmp_path):
    p = subprocess.Popen(["sleep", "60"])
    try:
        r = vm_measure.cpu(str(p.pid), 0.05, 0.05)
        assert r["pid"] == p.pid and "cpu_ms_per_cycle" in r and "error" not in r, r
        m = vm_measure.memory([f"sleeper={p.pid}"], kernel_log="true")
        assert m["units"]["sleeper"]["rss_mb"] > 0 and m["units"]["sleeper"]["cgroup_mb"] is None
        assert m["oom_count"] == 0 and "error" not in m
        m = vm_measure.memory([str(p.pid)], kernel_log=str(tmp_path / "no-such-log"))
        assert str(p.pid) in m["units"] and m["oom_count"] is None and "kernel log unreadable" in m["error"]
    finally:
        p.kill()
        p.wait()
    assert "has no running process" in vm_measure.cpu(str(p.pid), 0.05, 0.05)["error"]


def fake(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_stop_time_and_simulate_run_the_given_programs_on_the_given_files(tmp_path):
    sim = tmp_path / "sim"
    sim.mkdir()
    (sim / "water_heater.json").write_text('{"on": true, "since_s": 1}')
    stop = fake(tmp_path / "stop-loads", f'echo "$@" > {tmp_path}/stop-args\n'
                f'python3 -c "import json,time; json.dump({{\'on\': False, \'since_s\': time.time()}}, open(\'{sim}/water_heater.json\', \'w\'))"\n')
    r = vm_measure.stop_time(stop, str(tmp_path / "s.yaml"), str(sim))
    assert (tmp_path / "stop-args").read_text().split() == ["--config", str(tmp_path / "s.yaml")]
    assert r["exit"] == 0 and r["first_cmd_ms"] is not None and r["done_ms"] >= 0
    assert r["loads_before"] == "water_heater=on" and r["loads_after"] == "water_heater=off"
    gestor = fake(tmp_path / "gestor", 'echo "$@"\n')
    r = vm_measure.simulate("day.csv", "2022-06-12", gestor, "s.yaml")
    assert r["exit"] == 0
    assert r["last_line"] == "simulate day.csv --config s.yaml --from 2022-06-12 --to 2022-06-13"


def test_the_reading_path_asks_the_given_influxdb(tmp_path):
    import http.server
    import threading

    class Influx(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"results": [{"series": [{"values": [[1765000000000, -250.0]]}]}]}).encode()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Influx)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        assert vm_measure.influx_last_ms(f"http://127.0.0.1:{srv.server_port}") == 1765000000000
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.parametrize("tool,args,words", [
    ("vm_measure.py", ["cpu", "gestor-managing.service"], ["required", "seconds"]),
    ("vm_measure.py", ["cpu", "123", "0", "10"], ["SECONDS and INTERVAL_S must be above 0"]),
    ("vm_measure.py", ["simulate", "a.csv", "2022-13-01"], ["invalid", "2022-13-01"]),
    ("vm_measure.py", ["rows", "speed", "{}"], ["invalid choice: 'speed'"]),
    ("vm_measure.py", ["rows", "path", "not json"], ["rows path: the result is not JSON"]),
    ("vm_measure.py", ["rows", "path", "{}", "points"], ["'points' is not NAME=VALUE"]),
    ("vm_measure.py", ["fly"], ["invalid choice: 'fly'"]),
    ("host_measure.py", ["--soak-min", "0"], ["--soak-min 0", "at least 1"]),
    ("host_measure.py", ["--soak-min", "half"], ["--soak-min", "invalid int value"]),
    ("host_measure.py", ["--out", "/no/such/dir/m.tsv"], ["--out /no/such/dir/m.tsv", "does not exist"]),
])
def test_bad_arguments_are_one_sentence_and_exit_2(tool, args, words):
    p = subprocess.run([sys.executable, str(TOOLS / tool), *args], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, (p.stdout, p.stderr)
    for w in words:
        assert w in p.stderr, (w, p.stderr)
    assert "Traceback" not in p.stderr


CANNED = {
    "cpu": {"pid": 7, "seconds": 120.0, "cycles": 12.0, "cpu_ms_per_cycle": 35.2, "cpu_share_pct": 0.35},
    "path": {"points": 6, "median_ms": 5400, "max_ms": 9800, "min_ms": 700},
    "stop-time": {"exit": 0, "loads_after": "water_heater=off pool_pump=off", "first_cmd_ms": 310, "done_ms": 900},
    "simulate": {"exit": 0, "wall_s": 14.2, "peak_rss_mb": 160.5},
    "range": {"status": 200, "bytes": 4000, "cold_ms": 800, "warm_ms": [40, 38, 41]},
    "page": {"requests": 380, "not_200": 0},
    "memory": {"units": {u: {"rss_mb": 50.0, "cgroup_mb": 60.0} for u in host_measure.LABELS},
               "mem_total_mb": 470, "used_mb": 300, "swap_total_mb": 0, "swap_used_mb": 0, "oom_count": 0},
}


def test_the_host_and_the_vm_write_the_same_quantities_in_the_same_order(tmp_path):
    """vm-check-measure.sh's measure_all, its VM calls answered by canned results, and
    host_measure's measure.tsv from the same results: the same quantity names, line by line."""
    canned = tmp_path / "canned"
    canned.mkdir()
    for k, v in CANNED.items():
        (canned / f"{k}.json").write_text(json.dumps(v))
    (tmp_path / "logs").mkdir()
    vm_tsv, host_tsv = tmp_path / "vm.tsv", tmp_path / "host.tsv"
    jv = re.search(r"^jv\(\) \{.*?2>/dev/null; \}$", (TOOLS / "vm-check.sh").read_text(), re.S | re.M)[0]
    script = f"""
HERE={TOOLS}; MEASURES={vm_tsv}; LOGS={tmp_path}/logs; WEB_PW=pw; SOAK_MIN=30; INSTALL_S=600
ARCH=arm64; VM_CPUS=4; VM_MEM=512; ACCEL=(-accel tcg,thread=multi -cpu cortex-a53)
{jv}
log() {{ :; }}; row() {{ printf '%s\\n' "$1" >> {tmp_path}/rows; }}; loads_on() {{ :; }}; loads_auto() {{ :; }}
vm() {{ cat > /dev/null; }}; active() {{ echo active; }}
vmq() {{
  local w; for w in cpu path stop-time simulate range page memory; do
    case " $1 " in *"vm_measure.py $w "*) cat "{canned}/$w.json"; return 0 ;; esac
  done
  case "$1" in *interval_s*) echo 10 ;; *"date +%F"*) echo 2026-12-07 ;; esac
}}
. {TOOLS}/vm-check-measure.sh
measure_all
"""
    p = subprocess.run([BASH, "-c", script], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "rows").read_text().startswith("memory after 30 min with the page open")
    mem_ctx = {"soak_min": "30", "page": json.dumps(CANNED["page"]), "system_note": host_measure.SYSTEM_NOTE}
    host_measure.write_tsv(host_tsv, {
        "machine": ({}, {"machine": "this machine"}), "install": ({}, {}),
        "managing_cpu": (CANNED["cpu"], {"interval_s": "10"}), "monitoring_cpu": (CANNED["cpu"], {"interval_s": "5"}),
        "path": (CANNED["path"], {}), "stop": (CANNED["stop-time"], {}),
        "simulate": (CANNED["simulate"], {"csv": host_measure.CSV, "day": host_measure.DAY}),
        "range": (CANNED["range"], {"data": "since this run's start"}), "memory": (CANNED["memory"], mem_ctx)})
    vm_rows = [ln.split("\t") for ln in vm_tsv.read_text().splitlines()]
    host_rows = [ln.split("\t") for ln in host_tsv.read_text().splitlines()]
    assert [r[0] for r in vm_rows] == [r[0] for r in host_rows]
    vm_d, host_d = dict(vm_rows), dict(host_rows)
    assert vm_d["machine"] == "arm64, 4 vCPUs, 512 MB, -accel tcg,thread=multi -cpu cortex-a53"
    assert vm_d["install (sudo ./install.sh, first run)"] == "600 s" and host_d["install (sudo ./install.sh, first run)"] == "-"
    assert vm_d["managing: CPU per cycle (every 10 s)"] == "35.2 ms (0.35 % of a core, 12.0 cycles)"
    assert vm_d["RSS after 30 min: gestor-web"] == "50.0 MB (cgroup 60.0 MB)"
    assert vm_d["RSS after 30 min: these 4 together"] == "200.0 MB"
    used = "system memory used after 30 min (MemTotal - MemAvailable)"
    assert vm_d[used] == "300 MB of 470 MB; page open: 380 requests, 0 not 200"
    assert host_d[used].startswith(host_measure.SYSTEM_NOTE)


def test_the_example_settings_are_the_installed_ones_on_loopback_under_the_run_s_folder(tmp_path):
    from gestor.settings import parse_settings
    raw = host_measure.example_settings(tmp_path, 18086, 18080)
    s = parse_settings(raw, "settings.yaml", tmp_path / "settings.yaml")
    assert raw["web"]["listen"] == "127.0.0.1:18080"
    assert (raw["store"]["kind"], raw["store"]["host"], raw["store"]["port"]) == ("influxdb1", "127.0.0.1", 18086)
    assert raw["paths"] == {"state_dir": str(tmp_path / "state"), "run_dir": str(tmp_path / "run")}
    assert raw["meter"]["driver"] == "replay" and raw["meter"]["same_time_of_day"] is True   # as install.sh writes it
    assert Path(raw["meter"]["path"]) == host_measure.DATA / host_measure.CSV
    assert {ld.name for ld in s.loads} == {"water_heater", "pool_pump"}


def test_the_stack_stops_every_process_it_started(tmp_path):
    stack = host_measure.Stack(tmp_path, dict(os.environ))
    procs = [stack.start("a", ["sleep", "60"])]
    # b is deaf to SIGTERM from its first instruction: an ignored signal stays ignored across
    # fork and exec, so nothing has to wait for b to install a handler
    term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        procs.append(stack.start("b", ["sleep", "60"]))
    finally:
        signal.signal(signal.SIGTERM, term)
    stack.stop(grace_s=0.5)   # b is killed after its grace
    assert procs[0].poll() is not None and procs[1].poll() == -signal.SIGKILL
