# tools/vm-check-measure.sh: the measurements of tools/vm-check.sh (issue 36), sourced by it after
# the install and the "readings arriving" check, before the checks that stop, kill and reboot.
# Uses vm-check.sh's vm, vmq, row, jv, active and WORK, LOGS, WEB_PW, SOAK_MIN, INSTALL_S. The guest
# side is tools/vm_measure.py (copied to /root beside vm_check.py). Writes MEASURES (WORK/measure.tsv:
# quantity, value: one line each), shown by `vm_check.py measures` beside other runs' files.

UNITS_MEASURED="influxdb gestor-monitoring gestor-managing gestor-web"

# measure QUANTITY VALUE: one line of WORK/measure.tsv, echoed to the log
measure() {
  printf '%s\t%s\n' "$1" "$2" >> "$MEASURES"
  printf '  MEAS %s: %s\n' "$1" "$2" >&2
}

# web_url: the page's address inside the VM, from /etc/gestor/settings.yaml's web.listen
web_url() {
  vmq "python3 -c \"import re; t=open('/etc/gestor/settings.yaml').read(); m=re.search(r'^\\s*listen:\\s*([^\\s#]+)', t, re.M); h,p=(m.group(1) if m else '0.0.0.0:8080').rsplit(':',1); h=h.strip('[]'); print('http://' + ('127.0.0.1' if h in ('0.0.0.0','','::') else h) + ':' + p)\""
}

measure_all() {
  local M="python3 /root/vm_measure.py" R url day iv
  : > "$MEASURES"
  vm 'cat > /root/vm_measure.py' < "$HERE/vm_measure.py"
  measure "machine" "$ARCH, $VM_CPUS vCPUs, $VM_MEM MB, ${ACCEL[*]}"
  measure "install (sudo ./install.sh, first run)" "${INSTALL_S} s"

  # managing's cycle: CPU per cycle over 2 minutes of the running example
  iv=$(vmq "/opt/gestor/venv/bin/python -c \"import yaml; print(yaml.safe_load(open('/etc/gestor/settings.yaml'))['managing']['interval_s'])\"" 2>/dev/null)
  R=$(vmq "$M cpu gestor-managing.service 120 ${iv:-10}"); echo "$R" > "$LOGS/measure-managing-cpu.json"
  measure "managing: CPU per cycle (every ${iv:-10} s)" "$(jv "$R" cpu_ms_per_cycle) ms ($(jv "$R" cpu_share_pct) % of a core, $(jv "$R" cycles) cycles)$(jv "$R" error)"
  R=$(vmq "$M cpu gestor-monitoring.service 120 5"); echo "$R" > "$LOGS/measure-monitoring-cpu.json"
  measure "monitoring: CPU per read (every 5 s)" "$(jv "$R" cpu_ms_per_cycle) ms ($(jv "$R" cpu_share_pct) % of a core)$(jv "$R" error)"

  # a reading's path: its time -> queryable in InfluxDB (monitoring's batches: store.flush_s)
  R=$(vmq "$M path 6 240"); echo "$R" > "$LOGS/measure-path.json"
  measure "reading: meter -> InfluxDB (queryable)" "median $(jv "$R" median_ms) ms, max $(jv "$R" max_ms) ms over $(jv "$R" points) points$(jv "$R" error)"

  # stop-loads with the loads on, then released
  loads_on
  R=$(vmq "$M stop-time"); echo "$R" > "$LOGS/measure-stop.json"
  measure "stop-loads: first relay command" "$(jv "$R" first_cmd_ms) ms"
  measure "stop-loads: done (process exit)" "$(jv "$R" done_ms) ms (exit $(jv "$R" exit); after: $(jv "$R" loads_after))"
  vmq 'sudo stop-loads --release' >/dev/null 2>&1
  loads_auto

  # gestor simulate of one recorded day
  R=$(vmq "$M simulate /root/work/shared/data/house-2022-06-11_13.csv 2022-06-12"); echo "$R" > "$LOGS/measure-simulate.json"
  measure "gestor simulate, one day (house-2022-06-11_13.csv, 2022-06-12)" "$(jv "$R" wall_s) s, peak RSS $(jv "$R" peak_rss_mb) MB (exit $(jv "$R" exit))"

  # the page: a password, gestor-web restarted (cache empty), the year view cold then warm
  echo "$WEB_PW" | vm 'sudo gestor web --set-password --config /etc/gestor/settings.yaml' >/dev/null 2>&1
  vmq 'systemctl restart gestor-web'
  for _ in $(seq 30); do [ "$(active gestor-web)" = active ] && break; sleep 2; done
  url=$(web_url); url=${url:-http://127.0.0.1:8080}
  for _ in $(seq 60); do vmq "curl -s -o /dev/null $url/login" && break; sleep 2; done
  day=$(vmq 'date +%F')
  R=$(vmq "$M range $url '$WEB_PW' $day"); echo "$R" > "$LOGS/measure-range.json"
  measure "page: year view (/api/range?view=year), cold" "$(jv "$R" cold_ms) ms (HTTP $(jv "$R" status), $(jv "$R" bytes) bytes; data: since the install)$(jv "$R" error)"
  measure "page: year view, warm (3 requests)" "$(jv "$R" warm_ms) ms"

  # the installed example with the page open for SOAK_MIN minutes, then the memory
  log "the example running with the page open for $SOAK_MIN min, then its memory"
  R=$(vmq "$M page $url '$WEB_PW' $((SOAK_MIN * 60))"); echo "$R" > "$LOGS/measure-page.json"
  R=$(vmq "$M memory $UNITS_MEASURED"); echo "$R" > "$LOGS/measure-memory.json"
  local u used oom swap
  for u in $UNITS_MEASURED; do
    measure "RSS after $SOAK_MIN min: $u" "$(jv "$R" "units.$u.rss_mb") MB (cgroup $(jv "$R" "units.$u.cgroup_mb") MB)"
  done
  used=$(jv "$R" used_mb); oom=$(jv "$R" oom_count); swap=$(jv "$R" swap_used_mb)
  measure "system memory used after $SOAK_MIN min (MemTotal - MemAvailable)" "$used MB of $(jv "$R" mem_total_mb) MB; page open: $(vm_check_page "$LOGS/measure-page.json")"
  measure "swap" "$(jv "$R" swap_total_mb) MB configured, $swap MB used"
  measure "OOM-killer lines in the kernel journal" "$oom"
  row "memory after $SOAK_MIN min with the page open" "system < 400 MB used, no OOM kill" \
    "$used MB used of $(jv "$R" mem_total_mb) MB; swap used $swap MB; OOM lines: $oom $(jv "$R" oom_lines | cut -c1-200)" \
    "$( { [ -n "$used" ] && [ "$used" -lt 400 ] && [ "$oom" = 0 ]; } >/dev/null 2>&1 && echo PASS || echo FAIL)"
}

# vm_check_page FILE: "N requests, M not 200" from the page poller's JSON
vm_check_page() {
  local r; r=$(cat "$1" 2>/dev/null)
  echo "$(jv "$r" requests) requests, $(jv "$r" not_200) not 200$(jv "$r" error)"
}
