"""tools/vm-check.sh's host-side logic, without a VM and without the network (issue 32, small
items): the Debian mirror comes from the host's own apt sources (one-line and deb822 files, read
from a sample root: no mirror is contacted), and QEMU with KVM that does not start (a host whose
/dev/kvm is writable but KVM aborts at once: "failed to set MSR 0x10a", an assertion) or exits at
once falls back to TCG. QEMU here is a fake executable on PATH (a small shell script)."""
from __future__ import annotations

import os
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
