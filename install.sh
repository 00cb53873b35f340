#!/usr/bin/env bash
# gestor installer.
#   ./install.sh --demo [demo options]   run the demo on the bundled real data (installs what is missing)
#   ./install.sh --test [pytest options] install test needs and run the test suite (without options,
#                                        then the control core's tests again on its compiled build)
#   ./install.sh --test-compiled [pytest options]  those tests (or the ones given) on the compiled core
#   sudo ./install.sh [--compile]        system install: gestor user, /opt/gestor, /etc/gestor/settings.yaml
#                                        (kept if edited), /var/lib/gestor, the systemd units (enabled),
#                                        the InfluxDB database with its retention policy; --compile builds
#                                        the control core with mypyc (gcc; gestor simulate ~2x faster)
#   ./install.sh --build-compiled        the compiled core in .build/compiled/src (tests, benchmarks)
#   sudo ./install.sh --uninstall [--purge]  remove it; --purge also removes settings, state and history
# Needs Debian 12 / Raspberry Pi OS 12 (bookworm) or newer: python3 >= 3.11, apt.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VENV="$HERE/.venv"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root to run: $* (run as root or install sudo)"; fi
}

# need_apt PKG...: install the Debian packages that are not installed yet.
need_apt() {
  local missing=() p
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "apt: installing ${missing[*]}"
  as_root apt-get update -q >/dev/null
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

check_python() {
  command -v python3 >/dev/null 2>&1 || need_apt python3
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "python3 >= 3.11 needed (found $(python3 --version 2>&1)); Debian 12 / Raspberry Pi OS 12 have it"
  python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt python3-venv
  # pyarrow (recordings for the replay meter, simulate, the demo) is built for 64-bit systems only
  case "$(python3 -c 'import platform; print(platform.machine())')" in
    armv6l|armv7l|armhf|i386|i686)
      die "a 64-bit system is needed (found $(python3 -c 'import platform; print(platform.machine())')): on a Raspberry Pi (Zero 2 W, 3, 4, 5) install Raspberry Pi OS Lite (64-bit)";;
  esac
}

# make_venv DIR EXTRAS: a virtualenv with gestor installed (editable), redone when pyproject changes.
make_venv() {
  local dir=$1 extras=$2 stamp
  stamp="$dir/.gestor-stamp"
  local want; want="$(sha256sum "$HERE/pyproject.toml" | cut -d' ' -f1) $extras"
  if [ -x "$dir/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  say "python: creating $dir"
  [ -x "$dir/bin/python" ] || python3 -m venv "$dir"
  "$dir/bin/pip" install -q --disable-pip-version-check --upgrade pip >/dev/null
  "$dir/bin/pip" install -q --disable-pip-version-check -e "$HERE$extras"
  echo "$want" > "$stamp"
}

# compiler_ready VENV: what building the compiled core needs: gcc, the headers of VENV's python, and
# in VENV mypy with its few dependencies, exactly as requirements-compile.lock pins them (hashes).
compiler_ready() {
  need_apt gcc libc6-dev   # libc6-dev: only recommended by gcc, and apt here installs no recommends
  "$1/bin/python" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || need_apt python3-dev
  "$1/bin/pip" install -q --disable-pip-version-check --require-hashes -r "$HERE/requirements-compile.lock"
}

# source_copy DIR: the files gestor is built from, copied to DIR without byproducts of earlier
# builds (pip and setup.py build in the source tree: a build/, .so or egg-info left there would
# slip stale files into the package).
source_copy() {
  cp -r "$HERE/src" "$HERE/setup.py" "$HERE/pyproject.toml" "$HERE/README.md" "$1/"
  find "$1/src" \( -name __pycache__ -o -name '*.egg-info' -o -name '*.so' \) -prune -exec rm -rf {} +
}

# build_compiled: the control core compiled with mypyc (setup.py, GESTOR_COMPILE=1) in
# .build/compiled/src, a copy of src/ with the C extensions beside the sources; put first on
# PYTHONPATH, it is what runs. Rebuilt only when the sources, setup.py or pyproject.toml change.
build_compiled() {
  local out="$HERE/.build/compiled" want
  compiler_ready "$VENV"
  want=$(cd "$HERE" && find src -name '*.py' -print0 | sort -z | xargs -0 sha256sum | cat - setup.py pyproject.toml requirements-compile.lock | sha256sum | cut -d' ' -f1)
  if [ -f "$out/.stamp" ] && [ "$(cat "$out/.stamp")" = "$want" ]; then return 0; fi
  say "compiling the control core with mypyc into $out (a minute or two; on a Pi Zero 2 W much longer)"
  rm -rf "$out" && mkdir -p "$out"
  source_copy "$out"
  (cd "$out" && GESTOR_COMPILE=1 "$VENV/bin/python" setup.py -q build_ext --inplace) > "$out.log" 2>&1 \
    || { tail -40 "$out.log" >&2; die "the compiled core did not build (log: $out.log)"; }
  echo "$want" > "$out/.stamp"
}

# The tests that run a second time on the compiled core: everything the control core decides
# (balance, policies, guards, the simulator, the daemon against the simulator, managing's faults).
COMPILED_TESTS=(tests/test_balance.py tests/test_policies.py tests/test_guards.py tests/test_simulate.py
                tests/test_foresight.py tests/test_tune.py tests/integration/test_simulator_is_the_daemon.py
                tests/integration/test_day.py tests/integration/test_faults.py tests/integration/test_safety.py
                tests/integration/test_restart.py)

influx_answers() { # influx_answers HOST PORT
  "$VENV/bin/python" - "$1" "$2" <<'PY' 2>/dev/null
import sys, urllib.request
urllib.request.urlopen(f"http://{sys.argv[1]}:{sys.argv[2]}/ping", timeout=2)
PY
}

# render_influxd_conf TEMPLATE DIR HTTP_PORT RPC_PORT: the template with its placeholders filled in
# by bash's own substitution (the replacement quoted: no character of the path is special).
render_influxd_conf() {
  case "$2" in *'"'*|*$'\n'*) die "the data directory $2 contains a quote or a newline: move the checkout";; esac
  local t
  t=$(<"$1")
  t=${t//@DIR@/"$2"}
  t=${t//@HTTP_PORT@/"$3"}
  t=${t//@RPC_PORT@/"$4"}
  printf '%s\n' "$t"
}

# A throwaway influxd for the demo, data under .demo/, on 127.0.0.1:$1. Left running afterwards so
# the stored history can be looked at with the influx CLI; the demo prints how to stop it.
start_demo_influxd() {
  local port=$1 dir="$HERE/.demo/influxdb"
  mkdir -p "$dir"
  render_influxd_conf "$HERE/config/influxd-local.conf.in" "$dir" "$port" "$((port + 2))" > "$dir/influxdb.conf"
  say "influxdb: starting a throwaway influxd on 127.0.0.1:$port (data in $dir)"
  setsid influxd -config "$dir/influxdb.conf" >"$dir/influxd.log" 2>&1 < /dev/null &
  echo $! > "$dir/influxd.pid"
  for _ in $(seq 50); do influx_answers 127.0.0.1 "$port" && return 0; sleep 0.2; done
  die "influxd did not start; see $dir/influxd.log"
}

cmd_demo() {
  check_python
  need_apt influxdb influxdb-client
  make_venv "$VENV" "[plot]"
  local port=8086
  if ! influx_answers 127.0.0.1 $port; then
    # something else may hold 8086 without being InfluxDB: then use 18086
    if "$VENV/bin/python" -c 'import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(("127.0.0.1",8086))!=0)'; then port=18086; fi
    influx_answers 127.0.0.1 $port || start_demo_influxd $port
  fi
  "$VENV/bin/gestor" demo --influx-port "$port" "$@"
  if [ -f "$HERE/.demo/influxdb/influxd.pid" ] && kill -0 "$(cat "$HERE/.demo/influxdb/influxd.pid")" 2>/dev/null; then
    echo "The demo's throwaway influxd keeps running for those queries; stop it with:"
    echo "  kill $(cat "$HERE/.demo/influxdb/influxd.pid")"
  fi
}

cmd_test() {
  check_python
  need_apt influxdb socat systemd openssl util-linux mosquitto chromium chromium-driver
  make_venv "$VENV" "[test]"
  cd "$HERE"
  "$VENV/bin/python" -m pytest "$@"
  # with no pytest options (CI, the README), the control core's tests again on its compiled build
  if [ $# -eq 0 ]; then cmd_test_compiled; fi
}

cmd_test_compiled() {
  check_python
  make_venv "$VENV" "[test]"
  build_compiled
  cd "$HERE"
  say "the control core's tests on the compiled core (.build/compiled/src)"
  if [ $# -eq 0 ]; then set -- "${COMPILED_TESTS[@]}"; fi
  PYTHONPATH="$HERE/.build/compiled/src" GESTOR_EXPECT_COMPILED=1 "$VENV/bin/python" -m pytest -q "$@"
}

PREFIX=/opt/gestor
UNITS=(gestor-monitoring.service gestor-managing.service)
WEB_UNIT=gestor-web.service
systemd_running() { [ -d /run/systemd/system ]; }

cmd_install() {
  local compile=""
  [ "${1:-}" = "--compile" ] && compile=1
  [ "$(id -u)" -eq 0 ] || die "the system install needs root: sudo ./install.sh"
  check_python
  need_apt influxdb influxdb-client
  say "user: gestor (system user, groups gpio and dialout for relays and RS-485 adapters)"
  getent group gpio >/dev/null || groupadd --system gpio
  getent group dialout >/dev/null || groupadd --system dialout
  id gestor >/dev/null 2>&1 || useradd --system --home-dir /var/lib/gestor --no-create-home \
    --shell /usr/sbin/nologin --comment "gestor energy manager" gestor
  usermod -a -G gpio,dialout gestor
  say "installing to $PREFIX"
  mkdir -p "$PREFIX"
  # The daemons run as user gestor with ProtectHome=yes: the venv must use the system's python
  # (/usr/bin/python3), not one under /root or /home (pyenv, conda).
  local py=/usr/bin/python3
  [ -x "$py" ] || py=$(command -v python3)
  case "$(readlink -f "$py")" in /root/*|/home/*) die "python3 ($py) lives under a home directory; the gestor user cannot run it: apt-get install python3 python3-venv";; esac
  "$py" -c 'import venv, ensurepip' 2>/dev/null || need_apt python3-venv
  if [ -x "$PREFIX/venv/bin/python" ] && [ "$(readlink -f "$PREFIX/venv/bin/python")" != "$(readlink -f "$py")" ]; then
    rm -rf "$PREFIX/venv"
  fi
  if [ ! -x "$PREFIX/venv/bin/python" ]; then "$py" -m venv "$PREFIX/venv"; fi
  "$PREFIX/venv/bin/pip" install -q --disable-pip-version-check --upgrade pip >/dev/null
  # exactly the reviewed versions, each checked against its hash (requirements.lock), then gestor itself
  "$PREFIX/venv/bin/pip" install -q --disable-pip-version-check --require-hashes -r "$HERE/requirements.lock"
  local srccopy; srccopy=$(mktemp -d)
  source_copy "$srccopy"
  if [ -n "$compile" ]; then
    # the control core built with mypyc: same source, compiled
    compiler_ready "$PREFIX/venv"
    say "compiling the control core with mypyc (a few minutes; on a Pi Zero 2 W about 15)"
    GESTOR_COMPILE=1 "$PREFIX/venv/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation \
      --upgrade "$srccopy"
  else
    "$PREFIX/venv/bin/pip" install -q --disable-pip-version-check --no-deps --upgrade "$srccopy"
  fi
  rm -rf "$srccopy"
  cp "$HERE/README.md" "$PREFIX/README.md"
  ln -sf "$PREFIX/venv/bin/gestor" /usr/local/bin/gestor
  ln -sf "$PREFIX/venv/bin/stop-loads" /usr/local/bin/stop-loads
  mkdir -p /etc/gestor/meters /var/lib/gestor
  chown gestor:gestor /var/lib/gestor
  if [ -d "$HERE/../shared/data" ]; then
    mkdir -p "$PREFIX/data" && cp -u "$HERE"/../shared/data/*.csv "$PREFIX/data/"
  fi
  if [ -e /etc/gestor/settings.yaml ]; then
    say "/etc/gestor/settings.yaml exists: left as it is (the example is $PREFIX/settings.example.yaml)"
  else
    sed "s#path: ../../shared/data/#path: $PREFIX/data/#" "$HERE/config/settings.yaml" > /etc/gestor/settings.yaml
    say "wrote /etc/gestor/settings.yaml (replay meter, simulated relays: edit it for your hardware)"
  fi
  # settings: readable by the daemons and the gestor group (gestor status); no secret belongs there
  chown root:gestor /etc/gestor/settings.yaml && chmod 640 /etc/gestor/settings.yaml
  # secrets (passwords, tokens, referenced as "password: !secret NAME"): the daemons' user and root only
  if [ ! -e /etc/gestor/secrets.yaml ]; then
    printf '%s\n' "# gestor secrets: NAME: value, used in settings.yaml as  password: !secret NAME" \
      "# readable by the gestor daemons and root only (mode 600)" > /etc/gestor/secrets.yaml
  fi
  chown gestor:root /etc/gestor/secrets.yaml && chmod 600 /etc/gestor/secrets.yaml
  cp "$HERE/config/settings.yaml" "$PREFIX/settings.example.yaml"
  cp -n "$HERE"/config/meters/*.yaml /etc/gestor/meters/   # register maps; edited ones are kept
  "$PREFIX/venv/bin/gestor" check --config /etc/gestor/settings.yaml >/dev/null
  install -m 644 "${UNITS[@]/#/$HERE/daemons/}" "$HERE/daemons/$WEB_UNIT" /etc/systemd/system/
  # Debian's InfluxDB listens on every interface without authentication: keep it on this machine
  local influx_changed=""
  if [ -f /etc/influxdb/influxdb.conf ]; then
    "$PREFIX/venv/bin/python" -m gestor.influxconf /etc/influxdb/influxdb.conf | grep -q "bound to" && influx_changed=1
  fi
  if systemd_running; then
    systemctl daemon-reload
    systemctl enable --now influxdb >/dev/null 2>&1 || true
    [ -n "$influx_changed" ] && systemctl restart influxdb
  else
    say "systemd is not running here (container?): units installed, not started"
    pgrep -x influxd >/dev/null || (setsid influxd -config /etc/influxdb/influxdb.conf >/var/log/gestor-influxd.log 2>&1 < /dev/null &)
  fi
  say "influxdb: database, retention policy (raw data), hourly summaries kept forever"
  local ok=""
  for _ in $(seq 30); do
    if "$PREFIX/venv/bin/gestor" db-init --config /etc/gestor/settings.yaml >/dev/null 2>&1; then ok=1; break; fi
    sleep 1
  done
  [ -n "$ok" ] || say "WARNING: InfluxDB did not answer; run later: gestor db-init --config /etc/gestor/settings.yaml"
  # the web page: refuses to start until it has a password (asked here when someone is at the terminal)
  if ! grep -q '^web_password_hash:' /etc/gestor/secrets.yaml && [ -t 0 ]; then
    say "the web page needs a password (at least 10 characters; change it later with: sudo gestor web --set-password)"
    "$PREFIX/venv/bin/gestor" web --set-password --config /etc/gestor/settings.yaml || true
  fi
  if systemd_running; then
    systemctl enable --now "${UNITS[@]}"
    systemctl enable "$WEB_UNIT"
    say "done: gestor-monitoring and gestor-managing are running (journalctl -u gestor-managing -f)"
    if grep -q '^web_password_hash:' /etc/gestor/secrets.yaml; then
      systemctl restart "$WEB_UNIT" || say "WARNING: gestor-web did not start: journalctl -u gestor-web"
      say "web page: http://$(hostname -I 2>/dev/null | cut -d' ' -f1 || hostname):8080 (web.listen in settings.yaml)"
    else
      say "web page: enabled, not started: set its password with 'sudo gestor web --set-password', then 'sudo systemctl start gestor-web'"
    fi
  else
    say "done (start the daemons with systemd on the target machine)"
  fi
  say "edit /etc/gestor/settings.yaml, check it with 'gestor check', then: sudo systemctl restart ${UNITS[*]}"
}

cmd_uninstall() {
  local purge=${1:-}
  [ "$(id -u)" -eq 0 ] || die "uninstall needs root: sudo ./install.sh --uninstall"
  if systemd_running; then
    # managing's ExecStopPost switches every load off as it stops
    systemctl disable --now "$WEB_UNIT" "${UNITS[@]}" 2>/dev/null || true
  elif [ -x /usr/local/bin/stop-loads ]; then
    /usr/local/bin/stop-loads --no-latch --config /etc/gestor/settings.yaml || true
  fi
  rm -f "${UNITS[@]/#//etc/systemd/system/}" "/etc/systemd/system/$WEB_UNIT"
  systemd_running && systemctl daemon-reload
  rm -f /usr/local/bin/gestor /usr/local/bin/stop-loads
  if [ "$purge" = "--purge" ]; then
    if [ -x "$PREFIX/venv/bin/python" ] && [ -e /etc/gestor/settings.yaml ]; then
      "$PREFIX/venv/bin/python" - <<'PY' || say "WARNING: could not drop the InfluxDB database"
from drivers import secret
from influxdb import InfluxDBClient
from gestor.settings import load_settings
s = load_settings("/etc/gestor/settings.yaml").store
if s.kind != "none":
    InfluxDBClient(s.host, s.port, s.username, secret(s.password)).drop_database(s.database)
    print(f"dropped InfluxDB database {s.database}")
PY
    fi
    rm -rf "$PREFIX" /etc/gestor /var/lib/gestor /run/gestor
    id gestor >/dev/null 2>&1 && userdel gestor
    say "purged: program, settings, state, history and the gestor user are gone"
  else
    rm -rf "$PREFIX"
    say "uninstalled; kept /etc/gestor, /var/lib/gestor, the InfluxDB history and the gestor user (--purge removes them)"
  fi
}

# sourced by the tests with GESTOR_INSTALL_LIB=1: the functions only
[ -n "${GESTOR_INSTALL_LIB:-}" ] && return 0

case "${1:-}" in
  --demo) shift; cmd_demo "$@" ;;
  --test) shift; cmd_test "$@" ;;
  --test-compiled) shift; cmd_test_compiled "$@" ;;
  --build-compiled) check_python; make_venv "$VENV" "[test]"; build_compiled; say "built: GESTOR_SRC=$HERE/.build/compiled/src" ;;
  ""|--install) cmd_install ;;
  --compile) cmd_install --compile ;;
  --uninstall) shift; cmd_uninstall "${1:-}" ;;
  -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) die "unknown option $1 (use --demo, --test, or no option for the system install)" ;;
esac
