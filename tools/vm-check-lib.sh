# tools/vm-check-lib.sh: the parts of tools/vm-check.sh that tests/test_vm_check.py runs on their
# own (sourced; defines functions only): where the host's Debian mirror is, and starting QEMU with
# KVM, falling back to TCG when KVM does not work. Nothing here contacts a mirror.

log() { printf '\033[1m[vm-check %s] %s\033[0m\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# apt_entries FILE: "URI SUITE" per enabled "deb" entry of an apt sources file, one-line style
# (sources.list, *.list: "deb [opts] URI SUITE COMPONENTS...") or deb822 (*.sources: stanzas with
# Types, URIs, Suites, Enabled), as apt reads them (sources.list(5)).
apt_entries() {
  case "$1" in
    *.sources)
      awk 'function flush(   n, m, i, j, U, S) {
             if (types ~ /(^|[ \t])deb([ \t]|$)/ && enabled != "no") {
               n = split(uris, U, /[ \t]+/); m = split(suites, S, /[ \t]+/)
               for (i = 1; i <= n; i++) for (j = 1; j <= m; j++) if (U[i] != "" && S[j] != "") print U[i], S[j]
             }
             types = uris = suites = ""; enabled = "yes"
           }
           BEGIN { enabled = "yes" }
           /^[ \t]*#/ { next }
           /^[ \t]*$/ { flush(); next }
           /^[A-Za-z][A-Za-z0-9-]*:/ {
             k = tolower(substr($0, 1, index($0, ":") - 1)); v = substr($0, index($0, ":") + 1)
             gsub(/^[ \t]+|[ \t]+$/, "", v)
             if (k == "types") types = v; else if (k == "uris") uris = v
             else if (k == "suites") suites = v; else if (k == "enabled") enabled = tolower(v)
           }
           END { flush() }' "$1" ;;
    *)
      awk '{ sub(/#.*/, ""); gsub(/\[[^]]*\]/, " ") }
           $1 == "deb" && NF >= 3 { print $2, $3 }' "$1" ;;
  esac
}

# apt_mirror [ROOT] [SUITE]: the host's own Debian archive for SUITE (default bookworm): the
# first enabled "deb" entry of ROOT/etc/apt/sources.list, then sources.list.d/*.list and *.sources
# (apt's order) that serves SUITE itself (not -updates or -security), over http(s) or file:.
# Prints nothing when there is none.
apt_mirror() {
  local root=${1:-} suite=${2:-bookworm} f
  for f in "$root/etc/apt/sources.list" "$root"/etc/apt/sources.list.d/*.list "$root"/etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && apt_entries "$f"
  done | awk -v want="$suite" '$2 == want && $1 ~ /^(https?|file):/ { sub(/\/+$/, "", $1); print $1; exit }'
}

# start_vm: QEMU daemonized with ACCEL on DISK (kernel and initrd in WORK), console to SERIAL, ssh
# forwarded from 127.0.0.1:PORT; returns QEMU's exit status (non-zero: it did not start).
# ARCH arm64: qemu-system-aarch64's "virt" board (no firmware: the kernel is loaded directly), its
# PL011 serial console ttyAMA0, and a virtio RNG (sshd's keys do not wait for entropy under TCG).
start_vm() {
  local qemu=(qemu-system-x86_64 -machine q35) console=ttyS0
  if [ "${ARCH:-amd64}" = arm64 ]; then
    qemu=(qemu-system-aarch64 -machine virt -device virtio-rng-pci); console=ttyAMA0
  fi
  "${qemu[@]}" "${ACCEL[@]}" -smp "$VM_CPUS" -m "$VM_MEM" \
    -kernel "$WORK/vmlinuz" -initrd "$WORK/initrd.img" \
    -append "root=/dev/vda rw console=$console net.ifnames=0 systemd.journald.forward_to_console=0" \
    -drive "file=$DISK,if=virtio,format=qcow2,cache=unsafe" \
    -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$PORT-:22" -device virtio-net-pci,netdev=n0 \
    -display none -chardev "file,id=s0,path=$SERIAL,append=on" -serial chardev:s0 -monitor none -no-reboot \
    -daemonize -pidfile "$PIDFILE" 2>> "$LOGS/qemu.log"
}

# start_vm_probed: start_vm; with KVM, QEMU must start (a host whose /dev/kvm is writable may still
# abort it at once: "failed to set MSR 0x10a", an assertion), keep running, and the kernel must print
# within PROBE_S seconds (a nested KVM can start the guest and then hang it before its first line);
# else TCG from then on, with a warning saying why. Dies when QEMU does not start with TCG either.
start_vm_probed() {
  local why="" t0
  if start_vm; then
    [ "${ACCEL[0]}" = -enable-kvm ] || return 0
    t0=$SECONDS
    while :; do
      grep -q "Linux version" "$SERIAL" 2>/dev/null && return 0
      if ! kill -0 "$(cat "$PIDFILE" 2>/dev/null)" 2>/dev/null; then
        why="QEMU with KVM exited at once ($(tail -1 "$LOGS/qemu.log" 2>/dev/null | cut -c1-160))"; break
      fi
      [ $((SECONDS - t0)) -lt "${PROBE_S:-60}" ] || { why="KVM starts the VM but its kernel printed nothing in ${PROBE_S:-60} s (nested KVM?)"; break; }
      sleep 2
    done
    kill "$(cat "$PIDFILE" 2>/dev/null)" 2>/dev/null && sleep 2
  else
    local rc=$?
    [ "${ACCEL[0]}" = -enable-kvm ] || die "qemu did not start (exit $rc; $LOGS/qemu.log: $(tail -1 "$LOGS/qemu.log" 2>/dev/null | cut -c1-160))"
    why="QEMU with KVM did not start (exit $rc: $(tail -1 "$LOGS/qemu.log" 2>/dev/null | cut -c1-160))"
  fi
  log "WARNING: $why: TCG emulation instead, several times slower"
  ACCEL=("${TCG[@]}")
  : > "$SERIAL"
  start_vm || die "qemu did not start with TCG either (exit $?; $LOGS/qemu.log)"
}

# binfmt_aarch64: true when this kernel runs arm64 ELF binaries through QEMU by itself, also inside
# a chroot: binfmt_misc's qemu-aarch64 entry enabled with the F flag (the interpreter opened when
# registered, so the chroot needs no copy of it; binfmt_misc.rst in the kernel's documentation).
binfmt_aarch64() {
  local f=${BINFMT_DIR:-/proc/sys/fs/binfmt_misc}/qemu-aarch64
  [ -r "$f" ] && grep -qx enabled "$f" && grep -q '^flags:.*F' "$f"
}
