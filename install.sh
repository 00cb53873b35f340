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
#   ./install.sh --build-docs [DIR]      the documentation site (English and Spanish) into DIR (default site/)
#   sudo ./install.sh --uninstall [--purge]  remove it; --purge also removes settings, state and history
#   sudo ./install.sh --extra NAME       add an optional extra to the system install (a meter family's
#                                        library: huawei, sunspec, goodwe, sma, fronius; setup),
#                                        as requirements/NAME.lock pins it (hashes); the system install
#                                        adds the one its settings' meter.driver needs by itself
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

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }

# need_apt PKG...: install the Debian packages that are not installed yet. Another apt or dpkg at
# work (a fresh Raspberry Pi OS runs its daily apt jobs at boot) is waited for, up to 10 minutes.
APT_LOCK_WAIT_S=600
need_apt() {
  local missing=() p
  for p in "$@"; do installed "$p" || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "apt: installing ${missing[*]} (if another apt or dpkg is running, e.g. the daily updates after boot, waits for it up to $((APT_LOCK_WAIT_S / 60)) min)"
  as_root apt-get -o DPkg::Lock::Timeout=$APT_LOCK_WAIT_S update -q >/dev/null
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=$APT_LOCK_WAIT_S \
    install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

# Debian's influxdb starts from its postinst listening on every interface without authentication.
# While it is installed here, services are kept from starting (a policy-rc.d that answers 101, the
# "action forbidden" code invoke-rc.d and deb-systemd-invoke obey), so that its HTTP API is bound
# to 127.0.0.1 (gestor.runtime.influxconf) before it first runs. A policy-rc.d that was there is put back.
POLICY_RC=/usr/sbin/policy-rc.d
POLICY_MARK="# gestor install.sh: no service starts while InfluxDB is installed (removed after it)"
hold_services() {
  if as_root test -e "$POLICY_RC" && ! as_root grep -qF "$POLICY_MARK" "$POLICY_RC"; then
    as_root mv "$POLICY_RC" "$POLICY_RC.before-gestor"
  fi
  printf '#!/bin/sh\n%s\nexit 101\n' "$POLICY_MARK" | as_root tee "$POLICY_RC" >/dev/null
  as_root chmod 755 "$POLICY_RC"
  trap release_services EXIT
  trap 'release_services; exit 130' INT TERM HUP
}
release_services() {
  trap - EXIT INT TERM HUP
  if as_root test -e "$POLICY_RC" && as_root grep -qF "$POLICY_MARK" "$POLICY_RC"; then as_root rm -f "$POLICY_RC"; fi
  if as_root test -e "$POLICY_RC.before-gestor"; then as_root mv "$POLICY_RC.before-gestor" "$POLICY_RC"; fi
}

# bind_influxdb: InfluxDB 1.x's HTTP API on 127.0.0.1 unless the user set [http] bind-address
# (gestor.runtime.influxconf, run from this checkout with the system's python3: it needs no venv). Sets
# INFLUX_REBOUND=1 when it changed the file (a running influxd then needs a restart).
INFLUX_CONF=/etc/influxdb/influxdb.conf
INFLUX_REBOUND=""
bind_influxdb() {
  local out
  if ! as_root test -f "$INFLUX_CONF"; then
    say "WARNING: $INFLUX_CONF is missing: InfluxDB's HTTP API not bound to 127.0.0.1 (see the documentation: Safety and wiring, InfluxDB on the network)"
    return 0
  fi
  local py=/usr/bin/python3
  [ -x "$py" ] || py=$(command -v python3)
  out=$(as_root env PYTHONPATH="$HERE/src" "$py" -m gestor.runtime.influxconf "$INFLUX_CONF") \
    || die "could not bind InfluxDB to 127.0.0.1 in $INFLUX_CONF (above)"
  say "influxdb: $out"
  case "$out" in *"bound to"*) INFLUX_REBOUND=1 ;; esac
}

# need_influxdb [--bind-installed]: Debian's influxdb (server) and influxdb-client (the influx CLI).
# A fresh install is bound to 127.0.0.1 before it first starts, then started as the package would
# have started it (systemd). One that was installed already is rebound only with --bind-installed
# (the system install; the demo and the tests leave a server they did not install as it is).
need_influxdb() {
  if installed influxdb; then
    need_apt influxdb-client
    if [ "${1:-}" = "--bind-installed" ]; then
      bind_influxdb
      # a server running on every interface until now: restarted bound, at once
      if [ -n "$INFLUX_REBOUND" ] && systemd_running; then as_root systemctl try-restart influxdb || true; fi
    fi
    return 0
  fi
  say "influxdb: installed with services held, bound to 127.0.0.1 before it first starts"
  hold_services
  need_apt influxdb influxdb-client
  release_services
  bind_influxdb
  if systemd_running; then as_root systemctl start influxdb || say "WARNING: influxdb did not start: journalctl -u influxdb"; fi
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

# install_extra VENV NAME: the optional extra NAME (a meter family's library, or setup's zeroconf),
# exactly as requirements/NAME.lock pins it, each file checked against its hash.
install_extra() {
  local venv=$1 name=$2
  case "$name" in ""|*[!a-z0-9_]*) die "--extra needs a name (allowed: $(extra_names))";; esac
  [ -f "$HERE/requirements/$name.lock" ] || die "unknown extra '$name' (allowed: $(extra_names))"
  say "installing the extra $name (requirements/$name.lock)"
  "$venv/bin/pip" install -q --disable-pip-version-check --require-hashes -r "$HERE/requirements/$name.lock"
}

extra_names() { (cd "$HERE/requirements" && ls -- *.lock 2>/dev/null | sed 's/\.lock$//' | tr '\n' ' ' | sed 's/ $//'); }

# settings_extra VENV FILE: the extra that FILE's meter.driver needs (drivers/extras.py, the one map),
# or nothing (a driver of the base install, or settings that do not parse: gestor check says why).
settings_extra() {
  "$1/bin/python" - "$2" <<'PY' 2>/dev/null || true
import sys
from drivers.extras import extra_for
from gestor.settings import read_raw
raw = read_raw(sys.argv[1], secrets_optional=True)
meter = raw.get("meter") if isinstance(raw, dict) else None
extra = extra_for(str(meter.get("driver"))) if isinstance(meter, dict) else None
print(extra.name if extra else "")
PY
}

cmd_extra() {
  [ "$(id -u)" -eq 0 ] || die "installing an extra needs root: sudo ./install.sh --extra ${1:-NAME}"
  [ -x "$PREFIX/venv/bin/pip" ] || die "gestor is not installed in $PREFIX: run sudo ./install.sh first"
  install_extra "$PREFIX/venv" "${1:-}"
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
COMPILED_TESTS=(tests/test_reference_digests.py tests/test_control_seam.py tests/test_setpoint_core.py tests/test_setpoint_sim.py tests/test_simulate_devices.py tests/test_balance.py tests/test_policies.py tests/test_guards.py tests/test_simulate.py
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
  need_influxdb
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
  need_influxdb
  need_apt socat systemd openssl util-linux mosquitto chromium chromium-driver iproute2   # iproute2: the test LANs (tests/netns.py)
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

# build_docs DIR: the documentation site, English and Spanish (mkdocs.yml, mkdocs.es.yml), built into
# DIR/en and DIR/es (gestor web serves DIR at /docs/) by MkDocs in a throwaway venv, exactly as
# requirements-docs.lock pins it (hashes). Not fatal: without the registry the page works, its
# Help link answers 404 until the next run.
build_docs() {
  local out=$1 tmp
  tmp=$(mktemp -d)
  say "documentation: building the site into $out"
  if python3 -m venv "$tmp/venv" \
     && "$tmp/venv/bin/pip" install -q --disable-pip-version-check --require-hashes -r "$HERE/requirements-docs.lock" \
     && (cd "$HERE" && NO_MKDOCS_2_WARNING=1 "$tmp/venv/bin/mkdocs" build -q -f mkdocs.yml -d "$tmp/site/en" \
         && NO_MKDOCS_2_WARNING=1 "$tmp/venv/bin/mkdocs" build -q -f mkdocs.es.yml -d "$tmp/site/es"); then
    rm -rf "$out" && mkdir -p "$(dirname "$out")" && cp -r "$tmp/site" "$out" && chmod -R a+rX "$out"
  else
    say "WARNING: the documentation site was not built (above); the page's Help link answers 404 until it is"
  fi
  rm -rf "$tmp"
}

PREFIX=/opt/gestor
UNITS=(gestor-monitoring.service gestor-managing.service)
WEB_UNIT=gestor-web.service
BILL_UNITS=(gestor-bill-fetch.service gestor-bill-fetch.timer)   # the distributor's curve, daily (docs: distributor)
SETUP_UNITS=(gestor-setup-apply.path gestor-setup-apply.service)   # the page's setup, applied as root (docs: setup)
systemd_running() { [ -d /run/systemd/system ]; }
# the settings fetch the distributor's curve from Datadis (a distributor: block with source datadis)
wants_bill_fetch() {
  "$PREFIX/venv/bin/python" -c 'import sys; from gestor.settings import load_settings
d = load_settings(sys.argv[1]).distributor; sys.exit(0 if d is not None and d.source == "datadis" else 1)' \
    /etc/gestor/settings.yaml 2>/dev/null
}

cmd_install() {
  local compile=""
  [ "${1:-}" = "--compile" ] && compile=1
  [ "$(id -u)" -eq 0 ] || die "the system install needs root: sudo ./install.sh"
  check_python
  # before anything else: InfluxDB answers on this machine only from its first start
  need_influxdb --bind-installed
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
  build_docs "$PREFIX/site"    # served by gestor web at /docs/ (gestor.web.docs: the venv's folder's site/)
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
    # the example replays the recording at the real time of day (its sun where the real one is)
    sed -e "s#path: ../../shared/data/#path: $PREFIX/data/#" \
        -e 's|^  loop: true\(.*\)|  loop: true\1\n  same_time_of_day: true      # begin at the real UTC time of day in the recording|' \
        "$HERE/config/settings.yaml" > /etc/gestor/settings.yaml
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
  # the meter family's library, when the settings name a driver that needs one (drivers/extras.py)
  local extra; extra=$(settings_extra "$PREFIX/venv" /etc/gestor/settings.yaml)
  [ -z "$extra" ] || install_extra "$PREFIX/venv" "$extra"
  # gestor setup's discovery (zeroconf; imported by gestor setup only), and what it needs to add a
  # meter family's extra later: this script and the locks, kept in $PREFIX (install.sh --extra there)
  install_extra "$PREFIX/venv" setup
  mkdir -p "$PREFIX/requirements"
  cp "$HERE"/requirements/*.lock "$PREFIX/requirements/" && cp "$HERE/install.sh" "$PREFIX/install.sh"
  "$PREFIX/venv/bin/gestor" check --config /etc/gestor/settings.yaml >/dev/null
  install -m 644 "${UNITS[@]/#/$HERE/daemons/}" "$HERE/daemons/$WEB_UNIT" "${BILL_UNITS[@]/#/$HERE/daemons/}" \
    "${SETUP_UNITS[@]/#/$HERE/daemons/}" /etc/systemd/system/
  # InfluxDB was bound to 127.0.0.1 at the start (need_influxdb)
  if systemd_running; then
    systemctl daemon-reload
    systemctl enable --now influxdb >/dev/null 2>&1 || true
  else
    say "systemd is not running here (container?): units installed, not started"
    # (an influxd of someone else's on other ports, a test's, is not this one)
    "$PREFIX/venv/bin/python" -c 'import urllib.request as u; u.urlopen("http://127.0.0.1:8086/ping", timeout=2)' 2>/dev/null \
      || (setsid influxd -config "$INFLUX_CONF" >/var/log/gestor-influxd.log 2>&1 < /dev/null &)
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
    # restart, not just start: on an upgrade (or --compile) the running daemons hold the old code
    systemctl enable "${UNITS[@]}" "$WEB_UNIT"
    # gestor setup from the page: the page writes a proposal, this path unit applies it as root
    systemctl enable --now gestor-setup-apply.path
    if wants_bill_fetch; then
      systemctl enable --now gestor-bill-fetch.timer && say "distributor: gestor bill fetch runs daily (gestor-bill-fetch.timer)"
    else
      systemctl disable --now gestor-bill-fetch.timer 2>/dev/null || true
    fi
    local was_running=""
    systemctl is-active --quiet "${UNITS[@]}" && was_running=1
    systemctl restart "${UNITS[@]}"
    if [ -n "$was_running" ]; then
      say "done: gestor-monitoring and gestor-managing restarted on the new code (journalctl -u gestor-managing -f)"
    else
      say "done: gestor-monitoring and gestor-managing are running (journalctl -u gestor-managing -f)"
    fi
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

# drop_history: the InfluxDB database (2.x: bucket) that /etc/gestor/settings.yaml names, with
# gestor's venv python when it is still there, else the system's python3 alone (the standard library:
# a plain --uninstall removed the venv). Says what it did; returns non-zero when it could not.
drop_history() {
  local py=/usr/bin/python3
  [ -x "$py" ] || py=$(command -v python3)
  [ -x "$PREFIX/venv/bin/python" ] && py="$PREFIX/venv/bin/python"
  if [ ! -e /etc/gestor/settings.yaml ]; then
    say "WARNING: /etc/gestor/settings.yaml is gone, so the InfluxDB database is unknown: nothing dropped (InfluxDB 1.x: influx -execute 'SHOW DATABASES', then DROP DATABASE gestor)"
    return 1
  fi
  "$py" - <<'PY'
import base64, json, re, sys, urllib.error, urllib.parse, urllib.request
from pathlib import Path


def load(path):
    """A YAML file as a dict, "!secret NAME" as ("!secret", NAME): PyYAML when it is there, else the
    "key: value" lines of the top-level blocks (the store block is flat)."""
    text = path.read_text()
    try:
        import yaml
    except ImportError:
        out, block, child = {}, None, None
        for line in text.splitlines():
            m = re.match(r"^( *)([A-Za-z_][\w-]*):(?:\s+(.*?))?\s*$", line)
            if not m or line.lstrip().startswith("#"):
                continue
            indent, key, value = len(m[1]), m[2], re.sub(r"(^|\s+)#.*$", "", m[3] or "")
            if value.startswith("!secret "):
                value = ("!secret", value.split(None, 1)[1].strip())
            elif len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            if indent == 0:
                block, child = (out.setdefault(key, {}), None) if value == "" else (None, None)
                if value != "":
                    out[key] = value
            elif block is not None and child in (None, indent):
                child = indent
                block[key] = value
        return out

    class Loader(yaml.SafeLoader):
        pass
    Loader.add_constructor("!secret", lambda loader, node: ("!secret", loader.construct_scalar(node)))
    return yaml.load(text, Loader=Loader) or {}


def value(v):
    if isinstance(v, tuple):
        return load(Path("/etc/gestor/secrets.yaml")).get(v[1])
    return v


def ask(method, url, headers, data=None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=10) as r:
        body = r.read()
        return r.headers, (json.loads(body) if body.strip() else None)


s = load(Path("/etc/gestor/settings.yaml")).get("store") or {}
kind = s.get("kind", "influxdb1")
host, port, db = s.get("host", "127.0.0.1"), int(s.get("port", 8086)), s.get("database", "gestor")
base = f"http://{host}:{port}"
if kind == "none":
    print("store kind none: gestor kept no InfluxDB history")
    sys.exit(0)
try:
    if kind == "auto":
        headers, _ = ask("GET", base + "/ping", {})
        kind = "influxdb1" if (headers.get("X-Influxdb-Version") or "").startswith("1.") else "influxdb2"
    if kind == "influxdb1":
        h = {}
        if s.get("username"):
            cred = f"{value(s['username'])}:{value(s.get('password')) or ''}".encode()
            h["Authorization"] = "Basic " + base64.b64encode(cred).decode()
        _, shown = ask("GET", base + "/query?" + urllib.parse.urlencode({"q": "SHOW DATABASES"}), h)
        names = [row[0] for r in shown.get("results", []) for x in r.get("series", []) for row in x.get("values", [])]
        if db not in names:
            print(f"InfluxDB at {host}:{port} has no database {db}: nothing to drop")
            sys.exit(0)
        q = 'DROP DATABASE "' + db.replace("\\", "\\\\").replace('"', '\\"') + '"'
        _, done = ask("POST", base + "/query", {**h, "Content-Type": "application/x-www-form-urlencoded"},
                      urllib.parse.urlencode({"q": q}).encode())
        errors = [r["error"] for r in (done or {}).get("results", []) if "error" in r]
        if errors:
            raise RuntimeError(errors[0])
        print(f"dropped InfluxDB database {db} ({host}:{port})")
    else:
        bucket = s.get("bucket") or db
        h = {"Authorization": f"Token {value(s.get('token')) or ''}"}
        query = {"name": bucket, **({"org": s["org"]} if s.get("org") else {})}
        _, found = ask("GET", base + "/api/v2/buckets?" + urllib.parse.urlencode(query), h)
        ids = [b["id"] for b in (found or {}).get("buckets", []) if b.get("name") == bucket]
        if not ids:
            print(f"InfluxDB at {host}:{port} has no bucket {bucket}: nothing to delete")
            sys.exit(0)
        for i in ids:
            ask("DELETE", f"{base}/api/v2/buckets/{i}", h)
        print(f"deleted InfluxDB bucket {bucket} ({host}:{port})")
except (OSError, ValueError, KeyError, RuntimeError, urllib.error.URLError) as e:
    if kind == "influxdb1":
        what, how = f"database {db}", f"influx -host {host} -port {port} -execute 'DROP DATABASE \"{db}\"'"
    else:
        what, how = f"bucket {s.get('bucket') or db}", f"influx bucket delete --name {s.get('bucket') or db}"
    print(f"could not drop the InfluxDB {what} at {host}:{port}: {getattr(e, 'reason', None) or e}; "
          f"when it answers: {how}", file=sys.stderr)
    sys.exit(1)
PY
}

cmd_uninstall() {
  local purge=${1:-}
  [ "$(id -u)" -eq 0 ] || die "uninstall needs root: sudo ./install.sh --uninstall"
  if systemd_running; then
    # managing's ExecStopPost switches every load off as it stops
    systemctl disable --now gestor-setup-apply.path gestor-bill-fetch.timer "$WEB_UNIT" "${UNITS[@]}" 2>/dev/null || true
  elif [ -x /usr/local/bin/stop-loads ]; then
    /usr/local/bin/stop-loads --no-latch --config /etc/gestor/settings.yaml || true
  fi
  rm -f "${UNITS[@]/#//etc/systemd/system/}" "/etc/systemd/system/$WEB_UNIT" "${BILL_UNITS[@]/#//etc/systemd/system/}" \
    "${SETUP_UNITS[@]/#//etc/systemd/system/}"
  systemd_running && systemctl daemon-reload
  rm -f /usr/local/bin/gestor /usr/local/bin/stop-loads
  if [ "$purge" = "--purge" ]; then
    local history="the InfluxDB history is gone"
    if ! drop_history; then
      history="the InfluxDB history was NOT removed (see above)"
      say "WARNING: $history"
    fi
    rm -rf "$PREFIX" /etc/gestor /var/lib/gestor /run/gestor
    if id gestor >/dev/null 2>&1; then userdel gestor; fi
    say "purged: program, settings, state and the gestor user are gone; $history"
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
  --build-docs) check_python; build_docs "$(realpath -m "${2:-$HERE/site}")" ;;
  --build-compiled) check_python; make_venv "$VENV" "[test]"; build_compiled; say "built: GESTOR_SRC=$HERE/.build/compiled/src" ;;
  ""|--install) cmd_install ;;
  --compile) cmd_install --compile ;;
  --uninstall) shift; cmd_uninstall "${1:-}" ;;
  --extra) shift; cmd_extra "${1:-}" ;;
  -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) die "unknown option $1 (use --demo, --test, --extra NAME, or no option for the system install)" ;;
esac
