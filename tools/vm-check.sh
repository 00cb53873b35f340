#!/usr/bin/env bash
# tools/vm-check.sh: the README's system install, proven on a real systemd in a throwaway VM.
#
# Builds a Debian 12 (bookworm) VM image from Debian packages (debootstrap: kernel, systemd,
# python3, openssh-server; the host's apt sources, CA certificates and pip's CA setting copied in),
# boots it with QEMU (KVM with -cpu host when /dev/kvm works, else TCG with a warning, also when
# QEMU with KVM does not start, exits at once or hangs the guest's kernel; 2 vCPUs,
# 2 GB RAM, user-mode network: only the VM's user-net and an ssh port forward on 127.0.0.1), copies
# the repository's COMMITTED state (git archive HEAD) to /root/work/main and ../shared/data beside it
# as the README expects, runs `sudo ./install.sh` there and checks the systemd units' behaviour:
# InfluxDB bound to 127.0.0.1 (also sampled during the install), the units active, readings
# arriving, `stop-loads` and `--release`, `kill -9` of managing (ExecStopPost: seconds to loads off,
# Restart=on-failure), the watchdog (kill -STOP: seconds to the kill and the restart), a reboot, an
# upgrade (re-run of install.sh: main pids change), the web page's emergency stop (login, CSRF),
# `gestor status` after managing stopped, `--uninstall` and `--uninstall --purge` (units, files and
# the InfluxDB database gone). Prints a table: check, expected, observed, PASS/FAIL. A failing
# check is reported and the run goes on. Not run in CI.
#
# Needs: root, Debian 12 host with apt (installs qemu-system-x86, qemu-utils, debootstrap,
# e2fsprogs, openssh-client if missing), the package registries reachable (the Debian mirror of the
# host's own apt sources serving bookworm, or $GESTOR_VM_MIRROR; PyPI),
# KVM (else it is TCG and several times slower), ~6 GB free disk under the work directory.
# Takes ~2-5 min to build the image the first time (cached afterwards), then ~25 min of checks
# under TCG (measured here: nested KVM hung the guest's kernel, so TCG); less with a working KVM.
#
# --arch arm64 (issue 36): the same on a Raspberry Pi's CPU, emulated: debootstrap --arch=arm64 (its
# second stage runs the arm64 binaries through qemu-user-static, binfmt_misc with the F flag; the
# kernel from Debian's linux-image-arm64), booted with qemu-system-aarch64 -M virt -cpu cortex-a53
# (a Zero 2 W's and a Pi 3's core), 4 vCPUs, 512 MB (a Zero 2 W; --mem 1024 for a Pi 3), TCG
# (no KVM for another architecture): expect hours rather than minutes on a small host.
# Both architectures then measure (tools/vm-check-measure.sh, WORKDIR/measure.tsv): the install's
# time, stop-loads (first relay command, done), managing's and monitoring's CPU per cycle, a
# reading's path meter -> InfluxDB, the page's year view cold and warm, `gestor simulate` of one
# day, and after --soak-min minutes of the example with the page open every unit's RSS, the
# system's memory, swap and the OOM killer's lines (one more check: < 400 MB used, no OOM kill).
#
# Run:   sudo tools/vm-check.sh [--arch amd64|arm64] [--mem MB] [--soak-min N] [--rebuild] [--build-only] [--keep] [WORKDIR]
#   WORKDIR      image, logs and results (default /tmp/gestor-vm, /tmp/gestor-vm-arm64; never inside the repo)
#   --arch       amd64 (default: 2 vCPUs, 2048 MB, KVM when it works) or arm64 (4 vCPUs, 512 MB, TCG)
#   --mem MB     the guest's memory (default 2048 for amd64, 512 for arm64)
#   --soak-min N minutes of the example with the page open before the memory is read (default 30)
#   --rebuild    build the base image again (else the cached WORKDIR/base.img is reused)
#   --build-only build (or keep) the base image and exit
#   --keep       leave the VM running at the end (ssh command printed) instead of powering it off
# Results: WORKDIR/results.tsv, WORKDIR/measure.tsv and WORKDIR/table.txt (both tables; compare runs
# with `python3 tools/vm_check.py measures A/measure.tsv B/measure.tsv`); logs in WORKDIR/logs/ (serial console,
# install output, journals).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=tools/vm-check-lib.sh
. "$HERE/vm-check-lib.sh"   # log, die, apt_mirror, start_vm, start_vm_probed, binfmt_aarch64
# shellcheck source=tools/vm-check-measure.sh
. "$HERE/vm-check-measure.sh"   # measure_all
WORK=""
REBUILD=""
KEEP=""
BUILD_ONLY=""
ARCH=amd64
VM_MEM=""
SOAK_MIN=30
while [ $# -gt 0 ]; do
  a=$1; shift
  case "$a" in
    --rebuild) REBUILD=1 ;;
    --keep) KEEP=1 ;;
    --build-only) BUILD_ONLY=1 ;;
    --arch|--mem|--soak-min)
      [ $# -gt 0 ] || { echo "vm-check: $a needs a value" >&2; exit 2; }
      v=$1; shift
      case "$a" in --arch) ARCH=$v ;; --mem) VM_MEM=$v ;; --soak-min) SOAK_MIN=$v ;; esac ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "vm-check: unknown option $a" >&2; exit 2 ;;
    *) WORK=$a ;;
  esac
done
case "$ARCH" in
  amd64) VM_CPUS=2; VM_MEM=${VM_MEM:-2048}; WORK=${WORK:-/tmp/gestor-vm} ;;
  arm64) VM_CPUS=4; VM_MEM=${VM_MEM:-512}; WORK=${WORK:-/tmp/gestor-vm-arm64} ;;
  *) echo "vm-check: --arch $ARCH: allowed are amd64 (the default) and arm64" >&2; exit 2 ;;
esac
case "$VM_MEM" in ''|*[!0-9]*) echo "vm-check: --mem $VM_MEM: a whole number of MB is allowed (512: a Zero 2 W, 1024: a Pi 3)" >&2; exit 2 ;; esac
[ "$VM_MEM" -ge 256 ] || { echo "vm-check: --mem $VM_MEM: at least 256 MB is allowed" >&2; exit 2; }
case "$SOAK_MIN" in ''|*[!0-9]*) echo "vm-check: --soak-min $SOAK_MIN: a whole number of minutes is allowed" >&2; exit 2 ;; esac
mkdir -p "$WORK" && WORK=$(cd "$WORK" && pwd)
case "$WORK/" in "$REPO"/*) echo "vm-check: the work directory must not be inside the repository" >&2; exit 2 ;; esac
[ "$(id -u)" -eq 0 ] || { echo "vm-check: run as root (debootstrap, mkfs)" >&2; exit 2; }

LOGS=$WORK/logs
RESULTS=$WORK/results.tsv
MEASURES=$WORK/measure.tsv   # vm-check-measure.sh
KEY=$WORK/id_ed25519
BASE=$WORK/base.img
DISK=$WORK/run.qcow2
PIDFILE=$WORK/qemu.pid
SHARED_DATA=${GESTOR_SHARED_DATA:-$REPO/../shared/data}
MIRROR=${GESTOR_VM_MIRROR:-}   # else the host's own (apt_mirror), when the image is built
WEB_PW="vm-check-password-1234"
mkdir -p "$LOGS"
: > "$RESULTS"

# row CHECK EXPECTED OBSERVED PASS|FAIL: one line of the results table
row() {
  local obs=${3//$'\t'/ }; obs=${obs//$'\n'/ }
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$obs" "$4" >> "$RESULTS"
  printf '  %-4s %s: %s\n' "$4" "$1" "$obs" >&2
}

# ---------------------------------------------------------------------------------------------
# host tools
need=()
if [ "$ARCH" = arm64 ]; then
  command -v qemu-system-aarch64 >/dev/null || need+=(qemu-system-arm)
  # debootstrap's second stage runs the arm64 binaries through qemu-user-static (binfmt_misc)
  [ -x /usr/bin/qemu-aarch64-static ] || need+=(qemu-user-static binfmt-support)
else
  command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
fi
command -v qemu-img >/dev/null || need+=(qemu-utils)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
command -v ssh >/dev/null || need+=(openssh-client)
if [ ${#need[@]} -gt 0 ]; then
  log "installing on the host: ${need[*]}"
  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null \
    || die "could not install ${need[*]}"
fi

# ---------------------------------------------------------------------------------------------
# the base image (cached): debootstrap into a directory, configured, then mkfs.ext4 -d
build_image() {
  local root=$WORK/rootfs
  MIRROR=${MIRROR:-$(apt_mirror "" bookworm)}
  [ -n "$MIRROR" ] || die "no Debian mirror for bookworm in the host's apt sources (/etc/apt/sources.list, sources.list.d/*.list, *.sources): set GESTOR_VM_MIRROR=URL"
  log "building the base image (debootstrap bookworm from $MIRROR; ~10 min)"
  rm -rf "$root" "$BASE" "$WORK/vmlinuz" "$WORK/initrd.img" "$KEY" "$KEY.pub"
  ssh-keygen -q -t ed25519 -N "" -C gestor-vm-check -f "$KEY"
  local dbarch=()
  if [ "$ARCH" = arm64 ] && [ "$(dpkg --print-architecture)" != arm64 ]; then
    binfmt_aarch64 || die "arm64 binaries do not run here through binfmt_misc (needed for debootstrap's second stage): /proc/sys/fs/binfmt_misc/qemu-aarch64 missing, disabled or without the F flag; install qemu-user-static and binfmt-support, or mount binfmt_misc"
    dbarch=(--arch=arm64)
  fi
  local pkgs=linux-image-$ARCH,systemd-sysv,udev,dbus,kmod,initramfs-tools,python3,python3-venv,sudo,ca-certificates,iproute2,openssh-server,curl,procps,netbase,less,e2fsprogs
  debootstrap "${dbarch[@]}" --variant=minbase --include="$pkgs" bookworm "$root" "$MIRROR" > "$LOGS/debootstrap.log" 2>&1 \
    || { tail -30 "$LOGS/debootstrap.log" >&2; die "debootstrap failed (log: $LOGS/debootstrap.log)"; }
  echo gestor-vm > "$root/etc/hostname"
  printf '127.0.0.1 localhost\n127.0.1.1 gestor-vm\n::1 localhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
  echo '/dev/vda / ext4 errors=remount-ro 0 1' > "$root/etc/fstab"
  # network: DHCP on the virtio NIC (QEMU user-net), its DNS forwarder
  mkdir -p "$root/etc/systemd/network"
  printf '[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n' > "$root/etc/systemd/network/20-wired.network"
  rm -f "$root/etc/resolv.conf"; echo 'nameserver 10.0.2.3' > "$root/etc/resolv.conf"
  chroot "$root" systemctl enable systemd-networkd.service >/dev/null 2>&1
  # the host's apt sources (same mirrors) and apt settings for them
  rm -f "$root/etc/apt/sources.list"
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    case "$f" in *disabled*) continue ;; esac
    grep -q 'debian' "$f" || continue   # Debian's own archives only (other vendors' keys are not in the image)
    mkdir -p "$root$(dirname "$f")"; cp "$f" "$root$f"
  done
  [ -f /etc/apt/apt.conf.d/99artifact-registry ] && cp /etc/apt/apt.conf.d/99artifact-registry "$root/etc/apt/apt.conf.d/"
  # the CAs the host trusts for its registries (a TLS-inspecting egress proxy), so apt and pip verify
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    mkdir -p "$root/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >/dev/null 2>&1
  fi
  # pip: the system CA bundle (as the host's pip config), generous timeout
  printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\ntimeout = 180\n' > "$root/etc/pip.conf"
  # root over ssh with the generated key only
  mkdir -p "$root/root/.ssh" && chmod 700 "$root/root/.ssh"
  cp "$KEY.pub" "$root/root/.ssh/authorized_keys" && chmod 600 "$root/root/.ssh/authorized_keys"
  printf 'PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n' > "$root/etc/ssh/sshd_config.d/vm-check.conf"
  # journald kept across the reboot step
  mkdir -p "$root/var/log/journal"
  chroot "$root" apt-get clean
  cp "$(ls "$root"/boot/vmlinuz-* | sort -V | tail -1)" "$WORK/vmlinuz"
  cp "$(ls "$root"/boot/initrd.img-* | sort -V | tail -1)" "$WORK/initrd.img"
  truncate -s 12G "$BASE.tmp"
  mkfs.ext4 -q -F -L gestor-root -d "$root" "$BASE.tmp" > "$LOGS/mkfs.log" 2>&1 || die "mkfs.ext4 -d failed ($LOGS/mkfs.log)"
  mv "$BASE.tmp" "$BASE"
  rm -rf "$root"
  log "base image ready: $BASE"
}
if [ -n "$REBUILD" ] || [ ! -f "$BASE" ] || [ ! -f "$WORK/vmlinuz" ] || [ ! -f "$KEY" ]; then
  T0=$SECONDS; build_image; BUILD_S="built in $((SECONDS - T0)) s"
  log "base image $BUILD_S"
else
  log "reusing the cached base image $BASE (--rebuild to build it again)"; BUILD_S=cached
fi
[ -z "$BUILD_ONLY" ] || exit 0

# ---------------------------------------------------------------------------------------------
# boot a throwaway copy (qcow2 overlay on the cached base)
if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  log "stopping the VM left from an earlier run (pid $(cat "$PIDFILE"))"; kill "$(cat "$PIDFILE")"; sleep 2
fi
rm -f "$DISK"
qemu-img create -q -f qcow2 -F raw -b "$BASE" "$DISK" || die "qemu-img create failed"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ACCEL=(-enable-kvm -cpu host)
TCG=(-accel tcg,thread=multi -cpu max)
if [ "$ARCH" = arm64 ]; then
  # a Zero 2 W's and a Pi 3's core (Cortex-A53), emulated: no KVM for another architecture
  ACCEL=(-accel tcg,thread=multi -cpu cortex-a53)
elif ! [ -w /dev/kvm ]; then
  log "WARNING: /dev/kvm is missing or not writable: TCG emulation, several times slower"
  ACCEL=("${TCG[@]}")
fi
SERIAL=$LOGS/console.log
PROBE_S=60   # seconds for the kernel's first line under KVM (start_vm_probed)
SSHO=(-i "$KEY" -p "$PORT" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
      -o ConnectTimeout=10 -o ServerAliveInterval=15 -o ServerAliveCountMax=8 -o BatchMode=yes)
vm() { ssh "${SSHO[@]}" root@127.0.0.1 "$@"; }        # vm CMD...: run in the VM (stdin passed)
vmq() { ssh -n "${SSHO[@]}" root@127.0.0.1 "$@"; }    # the same, no stdin
wait_ssh() { # wait_ssh TIMEOUT
  local t0=$SECONDS
  while [ $((SECONDS - t0)) -lt "$1" ]; do
    vmq true 2>/dev/null && return 0
    kill -0 "$(cat "$PIDFILE" 2>/dev/null)" 2>/dev/null || return 1
    sleep 3
  done
  return 1
}
poweroff_vm() {
  vmq 'systemctl poweroff' >/dev/null 2>&1
  for _ in $(seq 60); do kill -0 "$(cat "$PIDFILE" 2>/dev/null)" 2>/dev/null || return 0; sleep 1; done
  kill "$(cat "$PIDFILE")" 2>/dev/null
}
cleanup() {
  if [ -z "$KEEP" ] && [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then poweroff_vm; fi
}
trap cleanup EXIT

log "booting the VM (${ACCEL[*]}, $VM_CPUS vCPUs, $VM_MEM MB; ssh on 127.0.0.1:$PORT; console $SERIAL)"
: > "$SERIAL"
T0=$SECONDS
start_vm_probed
BOOT_MAX_S=900; [ "$ARCH" = arm64 ] && BOOT_MAX_S=1800   # an emulated Cortex-A53: several times slower
if wait_ssh $BOOT_MAX_S; then
  row "VM boots, ssh answers" "booted within $BOOT_MAX_S s" "$((SECONDS - T0)) s (${ACCEL[*]}; base image: $BUILD_S)" PASS
else
  row "VM boots, ssh answers" "booted within $BOOT_MAX_S s" "no ssh after $((SECONDS - T0)) s; console: $(tail -5 "$SERIAL" | tr -d '\r')" FAIL
  python3 "$HERE/vm_check.py" table "$RESULTS" | tee "$WORK/table.txt"; exit 1
fi

# ---------------------------------------------------------------------------------------------
# the committed state of the repository, the recordings beside it, the helper
COMMIT=$(git -C "$REPO" rev-parse HEAD)
log "copying commit ${COMMIT:0:12} (git archive HEAD) to /root/work/main, $SHARED_DATA to /root/work/shared/data"
vmq 'rm -rf /root/work && mkdir -p /root/work/main /root/work/shared'
git -C "$REPO" archive --format=tar HEAD | vm 'tar -x -C /root/work/main' || die "copying the repository failed"
if [ -d "$SHARED_DATA" ]; then
  tar -C "$(dirname "$SHARED_DATA")" -c "$(basename "$SHARED_DATA")" | vm 'tar -x -C /root/work/shared' || die "copying the data failed"
else
  log "WARNING: $SHARED_DATA missing: the install then has no recordings to replay"
fi
vm 'cat > /root/vm_check.py' < "$HERE/vm_check.py"
H="python3 /root/vm_check.py"
jv() { python3 -c 'import json,sys
d=json.loads(sys.argv[1] or "{}")
v=d
for k in sys.argv[2].split("."):
    v=v.get(k) if isinstance(v, dict) else None
print("" if v is None else v)' "$1" "$2" 2>/dev/null; }
journal() { # journal UNIT [N]: the unit's last lines of this boot, one line
  vmq "journalctl -b -u $1 -n ${2:-8} --no-pager -o short-monotonic 2>/dev/null" | cut -c1-220 | tr '\n' '|' | sed 's/|$//'
}
active() { vmq "systemctl is-active $1" 2>/dev/null; }
mainpid() { vmq "systemctl show -p MainPID --value $1" 2>/dev/null; }

# ---------------------------------------------------------------------------------------------
# 1. sudo ./install.sh, with a sampler of InfluxDB's listening sockets running beside it
log "sudo ./install.sh (apt: InfluxDB; pip: the locked dependencies; several minutes)"
vmq 'nohup bash -c "while :; do ss -ltnpH \"sport = :8086\" | sed \"s/^/\$(date +%s.%N) /\"; sleep 0.2; done" > /root/ss-8086.log 2>&1 & echo $! > /root/ss-sampler.pid'
T0=$SECONDS
vmq 'cd /root/work/main && sudo ./install.sh' > "$LOGS/install.log" 2>&1
RC=$?
INSTALL_S=$((SECONDS - T0))
vmq 'kill $(cat /root/ss-sampler.pid)'
row "sudo ./install.sh" "exit 0" "exit $RC after ${INSTALL_S} s; last line: $(grep -v '^\s*$' "$LOGS/install.log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-150)" "$( { [ "$RC" -eq 0 ]; } >/dev/null 2>&1 && echo PASS || echo FAIL)"
SS=$(vmq 'ss -ltnpH "sport = :8086"')
if [ -z "$SS" ]; then
  row "InfluxDB listening after the install" "127.0.0.1:8086 only" "nothing listens on 8086" FAIL
else
  ADDRS=$(awk '{print $4}' <<<"$SS" | sort -u | tr '\n' ' ')
  row "InfluxDB listening after the install" "127.0.0.1:8086 only" "$ADDRS" "$( { [ "$(awk '{print $4}' <<<"$SS" | grep -vc '^127\.0\.0\.1:8086$')" -eq 0 ]; } >/dev/null 2>&1 && echo PASS || echo FAIL)"
fi
vm 'cat /root/ss-8086.log' > "$LOGS/ss-8086-during-install.log"
N=$(wc -l < "$LOGS/ss-8086-during-install.log")
WIDE=$(awk '{print $5}' "$LOGS/ss-8086-during-install.log" | grep -v '^127\.0\.0\.1:8086$' | sort -u | tr '\n' ' ')
FIRST=$(head -1 "$LOGS/ss-8086-during-install.log" | awk '{print $5}')
row "InfluxDB listening during the install (ss every 0.2 s)" "never on 0.0.0.0/[::]/*" \
  "$N samples with a listener (first: ${FIRST:-none}); other addresses: ${WIDE:-none}" "$( { [ -z "$WIDE" ]; } >/dev/null 2>&1 && echo PASS || echo FAIL)"

for u in gestor-monitoring gestor-managing; do
  st=""; for _ in $(seq 30); do st=$(active $u); [ "$st" = active ] && break; sleep 2; done
  row "$u active after the install" "active" "$st (MainPID $(mainpid $u))$([ "$st" = active ] || echo "; journal: $(journal $u)")" "$( { [ "$st" = active ]; } >/dev/null 2>&1 && echo PASS || echo FAIL)"
done

# readings arriving: reading.json fresh and gestor status saying so
AGE=""; for _ in $(seq 24); do
  AGE=$(vmq 'f=/run/gestor/reading.json; [ -f $f ] && echo $(( $(date +%s) - $(stat -c %Y $f) ))')
  [ -n "$AGE" ] && [ "$AGE" -le 15 ] && break; sleep 5
done
ST=$(vmq 'sudo gestor status --json' 2>/dev/null)
RAGE=$(jv "$ST" reading.age_s); RSTALE=$(jv "$ST" reading.stale); NET=$(jv "$ST" reading.net_w)
row "readings arriving (reading.json, gestor status)" "reading.json < 15 s old, status not stale" \
  "reading.json ${AGE:-missing} s old; gestor status: net_w ${NET:-?} W, age ${RAGE:-?} s, stale ${RSTALE:-?}" \
  "$( { [ -n "$AGE" ] && [ "$AGE" -le 15 ] && [ "$RSTALE" = False ]; } >/dev/null 2>&1 && echo PASS || echo FAIL)"
vmq 'sudo gestor status' > "$LOGS/status-after-install.txt" 2>&1

# loads on for the following steps: an override (managing obeys it from its next cycle)
loads_on() {
  vmq 'for l in $(ls /run/gestor/sim-relays/ 2>/dev/null | sed "s/\.json$//"); do sudo gestor override $l on --for 2h >/dev/null; done; true'
  vmq "$H wait all-on 60" >/dev/null
}
loads_auto() {
  vmq 'for l in $(ls /run/gestor/sim-relays/ 2>/dev/null | sed "s/\.json$//"); do sudo gestor override $l auto >/dev/null; done; true'
}

# ---------------------------------------------------------------------------------------------
# the measurements (issue 36): timings, then the example with the page open SOAK_MIN minutes
measure_all

# ---------------------------------------------------------------------------------------------
# 2. stop-loads and --release
loads_on
BEFORE=$(vmq "$H loads")
OUT=$(vmq 'sudo stop-loads' 2>&1); RC=$?
echo "$OUT" > "$LOGS/stop-loads.txt"
AFTER=$(vmq "$H loads")
ST=$(vmq 'sudo gestor status --json' 2>/dev/null); LATCH=$(jv "$ST" stop_latch.set)
row "sudo stop-loads" "exit 0, every load off, latch set" "exit $RC; before: $BEFORE; after: $AFTER; latch set: ${LATCH:-?}" \
  "$( { [ "$RC" -eq 0 ] && vmq "$H wait off 1" >/dev/null && [ "$LATCH" = True ]; } >/dev/null 2>&1 && echo PASS || echo FAIL)"
sleep 12   # a managing cycle under the latch: the loads stay off although the override says on
HELD=$(vmq "$H loads")
row "loads stay off under the latch (override on, one managing cycle)" "every load off" "$HELD" "$( { vmq "$H wait off 1" >/dev/null; } >/dev/null 2>&1 && echo PASS || echo FAIL)"
OUT=$(vmq 'sudo stop-loads --release' 2>&1); RC=$?
ST=$(vmq 'sudo gestor status --json' 2>/dev/null); LATCH=$(jv "$ST" stop_latch.set)
row "sudo stop-loads --release" "exit 0, latch cleared" "exit $RC; latch set: ${LATCH:-?}; $(tail -1 <<<"$OUT" | cut -c1-120)" "$( { [ "$RC" -eq 0 ] && [ "$LATCH" = False ]; } >/dev/null 2>&1 && echo PASS || echo FAIL)"

# ---------------------------------------------------------------------------------------------
# 3. kill -9 of managing: ExecStopPost switches the loads off, Restart=on-failure brings it back
loads_on
KT=$(vmq 'date +%s')
R=$(vmq "$H kill9 gestor-managing.service 120")
echo "$R" > "$LOGS/kill9.json"
OFF=$(jv "$R" loads_off_s); RS=$(jv "$R" restarted_s)
row "kill -9 managing: loads off (ExecStopPost)" "every load off within 15 s" \
  "loads before: $(jv "$R" loads_before); off after ${OFF:-never (120 s)} s (last off command $(jv "$R" loads_off_cmd_s) s after the kill, the relays' record); journal: $(vmq "journalctl -u gestor-managing --since @$KT --no-pager -o cat | grep -viE 'water_heater ON|pool_pump ON' | head -6" | tr '\n' '|' | cut -c1-400)" \
  "$( { [ -n "$OFF" ] && python3 -c "import sys; sys.exit(not float('$OFF') <= 15)"; } >/dev/null 2>&1 && echo PASS || echo FAIL)"
row "kill -9 managing: restarted (Restart=on-failure)" "new main pid active within 30 s" \
  "pid $(jv "$R" old_pid) -> $(if [ -n "$RS" ]; then echo "$(jv "$R" new_pid) active after $RS s"; else echo "not restarted in 120 s"; fi); Result=$(jv "$R" result), NRestarts=$(jv "$R" n_restarts)" \
  "$( { [ -n "$RS" ] && python3 -c "import sys; sys.exit(not float('$RS') <= 30)"; } >/dev/null 2>&1 && echo PASS || echo FAIL)"

# ---------------------------------------------------------------------------------------------
# 4. the watchdog: a hung managing (SIGSTOP) is killed and restarted within WatchdogSec
WD=$(vmq 'systemctl show -p WatchdogUSec --value gestor-managing')
vmq "$H wait on 60" >/dev/null || loads_on
sleep 3
KT=$(vmq 'date +%s')
R=$(vmq "$H sigstop gestor-managing.service 200")
echo "$R" > "$LOGS/watchdog.json"
GONE=$(jv "$R" old_pid_gone_s); RS=$(jv "$R" restarted_s); OFF=$(jv "$R" loads_off_s)
row "kill -STOP managing: watchdog kills it" "killed within WatchdogSec ($WD) + 10 s" \
  "old pid gone after ${GONE:-never (200 s)} s; loads off after ${OFF:-never} s (off command at $(jv "$R" loads_off_cmd_s) s); journal: $(vmq "journalctl -u gestor-managing --since @$KT --no-pager -o cat | grep -iE 'watchdog|signal|killed|dump|stop' | head -4" | tr '\n' '|' | cut -c1-400)" \
  "$( { [ -n "$GONE" ] && python3 -c "import sys; sys.exit(not float('$GONE') <= 70)"; } >/dev/null 2>&1 && echo PASS || echo FAIL)"
row "kill -STOP managing: restarted" "new main pid active within WatchdogSec + 30 s" \
  "$(if [ -n "$RS" ]; then echo "new pid $(jv "$R" new_pid) active after $RS s"; else echo "not restarted in 200 s"; fi); Result=$(jv "$R" result), NRestarts=$(jv "$R" n_restarts)" \
  "$( { [ -n "$RS" ] && python3 -c "import sys; sys.exit(not float('$RS') <= 90)"; } >/dev/null 2>&1 && echo PASS || echo FAIL)"

# ---------------------------------------------------------------------------------------------
# 5. reboot: the units come back
log "rebooting the VM"
vmq 'journalctl -b --no-pager' > "$LOGS/journal-boot1.txt" 2>&1
vmq 'systemctl reboot' >/dev/null 2>&1
# -no-reboot: QEMU exits at the guest's reboot; start it again on the same disk
for _ in $(seq 120); do kill -0 "$(cat "$PIDFILE" 2>/dev/null)" 2>/dev/null || break; sleep 1; done
T0=$SECONDS
echo "----- reboot -----" >> "$SERIAL"
start_vm || die "qemu did not start again after the reboot ($LOGS/qemu.log)"
if wait_ssh $BOOT_MAX_S; then
  sleep 20
  for u in gestor-monitoring gestor-managing influxdb; do
    st=""; for _ in $(seq 30); do st=$(active $u); [ "$st" = active ] && break; sleep 2; done
    row "after reboot: $u" "active" "$st$([ "$st" = active ] || echo "; journal: $(journal $u)")" "$( { [ "$st" = active ]; } >/dev/null 2>&1 && echo PASS || echo FAIL)"
  done
  AGE=$(vmq 'f=/run/gestor/reading.json; [ -f $f ] && echo $(( $(date +%s) - $(stat -c %Y $f) ))')
  row "after reboot: readings arriving" "reading.json < 15 s old" "${AGE:-missing} s old (boot to ssh: $((SECONDS - T0)) s)" "$( { [ -n "$AGE" ] && [ "$AGE" -le 15 ]; } >/dev/null 2>&1 && echo PASS || echo FAIL)"
else
  row "after reboot: VM back" "ssh within $BOOT_MAX_S s" "no ssh; console: $(tail -5 "$SERIAL" | tr -d '\r')" FAIL
fi

# ---------------------------------------------------------------------------------------------
# 6. upgrade: sudo ./install.sh again restarts the units on the new code
P1=$(mainpid gestor-monitoring); P2=$(mainpid gestor-managing)
T0=$SECONDS
vmq 'cd /root/work/main && sudo ./install.sh' > "$LOGS/install-upgrade.log" 2>&1; RC=$?
sleep 5
Q1=$(mainpid gestor-monitoring); Q2=$(mainpid gestor-managing)
A1=$(active gestor-monitoring); A2=$(active gestor-managing)
row "upgrade: sudo ./install.sh again" "exit 0" "exit $RC after $((SECONDS - T0)) s; $(grep -i 'restarted\|running' "$LOGS/install-upgrade.log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-140)" "$( { [ "$RC" -eq 0 ]; } >/dev/null 2>&1 && echo PASS || echo FAIL)"
row "upgrade: units restarted and running" "both main pids changed, both active" \
  "monitoring $P1 -> $Q1 ($A1), managing $P2 -> $Q2 ($A2)" \
  "$( { [ "$P1" != "$Q1" ] && [ "$P2" != "$Q2" ] && [ "$Q1" != 0 ] && [ "$Q2" != 0 ] && [ "$A1" = active ] && [ "$A2" = active ]; } >/dev/null 2>&1 && echo PASS || echo FAIL)"

# ---------------------------------------------------------------------------------------------
# 7. the web page: password, unit, login and the emergency stop (managing running, then stopped)
OUT=$(echo "$WEB_PW" | vm 'sudo gestor web --set-password --config /etc/gestor/settings.yaml' 2>&1); RC=$?
vmq 'systemctl restart gestor-web'; sleep 5
st=""; for _ in $(seq 20); do st=$(active gestor-web); [ "$st" = active ] && break; sleep 2; done
row "gestor-web with a password set" "set-password exit 0, unit active" "set-password exit $RC; gestor-web $st$([ "$st" = active ] || echo "; journal: $(journal gestor-web)")" "$( { [ "$RC" -eq 0 ] && [ "$st" = active ]; } >/dev/null 2>&1 && echo PASS || echo FAIL)"
WEBURL=$(vmq "python3 -c \"import re; t=open('/etc/gestor/settings.yaml').read(); m=re.search(r'^\\s*listen:\\s*([^\\s#]+)', t, re.M); h,p=(m.group(1) if m else '0.0.0.0:8080').rsplit(':',1); h=h.strip('[]'); print('http://' + ('127.0.0.1' if h in ('0.0.0.0','','::') else h) + ':' + p)\"")
loads_on
R=$(vmq "$H web-stop ${WEBURL:-http://127.0.0.1:8080} '$WEB_PW'")
echo "$R" > "$LOGS/web-stop-running.json"
CODE=$(jv "$R" post_stop)
row "web emergency stop, managing running" "login 303, POST /api/stop 200, every load off" \
  "login $(jv "$R" post_login), stop ${CODE:-?} in $(jv "$R" stop_s) s: $(jv "$R" stop_answer | cut -c1-90); loads: $(jv "$R" loads_after)$(jv "$R" error)$([ "$CODE" = 500 ] && echo "; journal: $(journal gestor-web 4)")" \
  "$( { [ "$CODE" = 200 ] && [ "$(jv "$R" all_off)" = True ]; } >/dev/null 2>&1 && echo PASS || echo FAIL)"
vmq 'sudo stop-loads --release' >/dev/null 2>&1

# managing stopped: a relay state file forced on (as a relay left on), then the page's stop
vmq 'systemctl stop gestor-managing'; sleep 2
vmq 'for f in /run/gestor/sim-relays/*.json; do python3 - "$f" <<"PY"
import json, sys, time
p = sys.argv[1]
d = json.load(open(p)); d.update(on=True, before=False, since_s=time.time(), auto_off_at_s=None, auto_off_mono_s=None)
json.dump(d, open(p, "w"))
PY
done'
FORCED=$(vmq "$H loads")
R=$(vmq "$H web-stop ${WEBURL:-http://127.0.0.1:8080} '$WEB_PW'")
echo "$R" > "$LOGS/web-stop-managing-down.json"
CODE=$(jv "$R" post_stop)
row "web emergency stop, managing stopped (relay files forced on)" "POST /api/stop 200 (not 500), every load off" \
  "before: $FORCED; stop ${CODE:-?}: $(jv "$R" stop_answer | cut -c1-160); loads: $(jv "$R" loads_after)$(jv "$R" error)$([ "$CODE" = 200 ] || echo "; journal: $(vmq 'journalctl -b -u gestor-web --no-pager -o cat | grep -iE "error|stop|Traceback|OSError" | tail -3' | tr '\n' '|' | cut -c1-300)")" \
  "$( { [ "$CODE" = 200 ] && [ "$(jv "$R" all_off)" = True ]; } >/dev/null 2>&1 && echo PASS || echo FAIL)"
vmq 'sudo stop-loads --release' >/dev/null 2>&1
loads_auto

# ---------------------------------------------------------------------------------------------
# 8. gestor status after managing stopped (ExecStopPost switched the loads off)
vmq 'systemctl start gestor-managing'; sleep 3
loads_on
vmq 'systemctl stop gestor-managing'; sleep 2
OUT=$(vmq 'sudo gestor status' 2>&1)
echo "$OUT" > "$LOGS/status-managing-stopped.txt"
LL=$(awk '/^loads/{f=1} f && /^(money|stop latch)/{f=0} f && !/why:/' <<<"$OUT" | awk '{for(i=1;i<=NF;i++) if ($i=="ON"||$i=="off"||$i=="?UNKNOWN") {print prev"="$i; break} else prev=$i}' | tr '\n' ' ')
row "gestor status after managing stopped" "every load shown off (relays: off)" \
  "status: ${LL:-no load lines}; relays: $(vmq "$H loads"); $(grep '^daemons' <<<"$OUT" | cut -c1-90)" \
  "$( { [ -n "$LL" ] && ! grep -qE '=(ON|\?UNKNOWN)' <<<"$LL" && vmq "$H wait off 1" >/dev/null; } >/dev/null 2>&1 && echo PASS || echo FAIL)"
loads_auto

# ---------------------------------------------------------------------------------------------
# 9. uninstall, then purge
vmq 'systemctl start gestor-managing'; sleep 3
vmq 'journalctl -b --no-pager' > "$LOGS/journal-boot2.txt" 2>&1
OUT=$(vmq 'cd /root/work/main && sudo ./install.sh --uninstall' 2>&1); RC=$?
echo "$OUT" > "$LOGS/uninstall.log"
UNITS=$(vmq 'systemctl list-unit-files "gestor-*" --no-legend 2>/dev/null | awk "{print \$1}"; ls /etc/systemd/system/gestor-* 2>/dev/null' | tr '\n' ' ')
KEPT=$(vmq 'for d in /etc/gestor /var/lib/gestor /opt/gestor; do [ -e $d ] && echo -n "$d "; done; influx -execute "SHOW DATABASES" 2>/dev/null | grep -qx gestor && echo -n "db:gestor"')
row "sudo ./install.sh --uninstall" "exit 0; units gone; loads off; /etc/gestor, /var/lib/gestor, the database kept" \
  "exit $RC; units left: ${UNITS:-none}; loads: $(vmq "$H loads"); present: ${KEPT:-nothing}" \
  "$( { [ "$RC" -eq 0 ] && [ -z "${UNITS// /}" ] && [[ "$KEPT" == *"/etc/gestor"* ]] && [[ "$KEPT" == *"/var/lib/gestor"* ]] && [[ "$KEPT" != *"/opt/gestor"* ]]; } >/dev/null 2>&1 && echo PASS || echo FAIL)"
OUT=$(vmq 'cd /root/work/main && sudo ./install.sh --uninstall --purge' 2>&1); RC=$?
echo "$OUT" > "$LOGS/purge.log"
LEFT=$(vmq 'for d in /etc/gestor /var/lib/gestor /opt/gestor /run/gestor /usr/local/bin/gestor /usr/local/bin/stop-loads; do [ -e $d ] && echo -n "$d "; done; id gestor >/dev/null 2>&1 && echo -n "user:gestor "; true')
DBS=$(vmq 'influx -execute "SHOW DATABASES" 2>&1' | tail -n +4 | tr '\n' ' ')
row "sudo ./install.sh --uninstall --purge" "exit 0; /etc/gestor, /var/lib/gestor, user gone; database gestor dropped" \
  "exit $RC; left: ${LEFT:-nothing}; SHOW DATABASES: ${DBS:-?}; $(grep -iE 'dropped|history' <<<"$OUT" | tail -1 | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-120)" \
  "$( { [ "$RC" -eq 0 ] && [ -z "$LEFT" ] && ! grep -qw gestor <<<"$DBS" && [ -n "$DBS" ]; } >/dev/null 2>&1 && echo PASS || echo FAIL)"

vmq 'journalctl -b --no-pager' > "$LOGS/journal-boot2.txt" 2>&1
{
  echo "gestor vm-check: commit $COMMIT ($(git -C "$REPO" log -1 --format=%s "$COMMIT" | cut -c1-80))"
  echo "run $(date -u +%Y-%m-%dT%H:%MZ), ${ACCEL[*]}, $VM_CPUS vCPUs, $VM_MEM MB; logs in $LOGS"
  python3 "$HERE/vm_check.py" table "$RESULTS"
  echo
  python3 "$HERE/vm_check.py" measures "$MEASURES"
} | tee "$WORK/table.txt"
if [ -n "$KEEP" ]; then
  echo "VM left running: ssh ${SSHO[*]} root@127.0.0.1   (stop: kill \$(cat $PIDFILE))"
fi
! grep -q $'\tFAIL$' "$RESULTS"
