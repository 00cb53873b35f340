# tools/vm-check-measure.sh: the measurements of tools/vm-check.sh (issue 36), sourced by it after
# the install and the "readings arriving" check, before the checks that stop, kill and reboot.
# Uses vm-check.sh's vm, vmq, row, jv, active and WORK, LOGS, WEB_PW, SOAK_MIN, INSTALL_S. The guest
# side is tools/vm_measure.py (copied to /root beside vm_check.py). Writes MEASURES (WORK/measure.tsv:
# quantity, value: one line each), shown by `vm_check.py measures` beside other runs' files.

UNITS_MEASURED="influxdb gestor-monitoring gestor-managing gestor-web"

# measure_rows KEY JSON [NAME=VALUE...]: the lines of WORK/measure.tsv for one measurement (their
# names and formats: vm_measure.py's rows, the one place; host_measure.py writes the same), echoed
measure_rows() {
  local line
  while IFS= read -r line; do
    printf '%s\n' "$line" >> "$MEASURES"
    printf '  MEAS %s\n' "${line/$'\t'/: }" >&2
  done < <(python3 "$HERE/vm_measure.py" rows "$@")
}

# web_url: the page's address inside the VM, from /etc/gestor/settings.yaml's web.listen
web_url() {
  vmq "python3 -c \"import re; t=open('/etc/gestor/settings.yaml').read(); m=re.search(r'^\\s*listen:\\s*([^\\s#]+)', t, re.M); h,p=(m.group(1) if m else '0.0.0.0:8080').rsplit(':',1); h=h.strip('[]'); print('http://' + ('127.0.0.1' if h in ('0.0.0.0','','::') else h) + ':' + p)\""
}

measure_all() {
  local M="python3 /root/vm_measure.py" R url day iv
  : > "$MEASURES"
  vm 'cat > /root/vm_measure.py' < "$HERE/vm_measure.py"
  measure_rows machine '{}' "machine=$ARCH, $VM_CPUS vCPUs, $VM_MEM MB, ${ACCEL[*]}"
  measure_rows install '{}' "install_s=$INSTALL_S"

  # managing's cycle: CPU per cycle over 2 minutes of the running example
  iv=$(vmq "/opt/gestor/venv/bin/python -c \"import yaml; print(yaml.safe_load(open('/etc/gestor/settings.yaml'))['managing']['interval_s'])\"" 2>/dev/null)
  R=$(vmq "$M cpu gestor-managing.service 120 ${iv:-10}"); echo "$R" > "$LOGS/measure-managing-cpu.json"
  measure_rows managing_cpu "$R" "interval_s=${iv:-10}"
  R=$(vmq "$M cpu gestor-monitoring.service 120 5"); echo "$R" > "$LOGS/measure-monitoring-cpu.json"
  measure_rows monitoring_cpu "$R" interval_s=5

  # a reading's path: its time -> queryable in InfluxDB (monitoring's batches: store.flush_s)
  R=$(vmq "$M path 6 240"); echo "$R" > "$LOGS/measure-path.json"
  measure_rows path "$R"

  # stop-loads with the loads on, then released
  loads_on
  R=$(vmq "$M stop-time"); echo "$R" > "$LOGS/measure-stop.json"
  measure_rows stop "$R"
  vmq 'sudo stop-loads --release' >/dev/null 2>&1
  loads_auto

  # gestor simulate of one recorded day
  R=$(vmq "$M simulate /root/work/shared/data/house-2022-06-11_13.csv 2022-06-12"); echo "$R" > "$LOGS/measure-simulate.json"
  measure_rows simulate "$R" csv=house-2022-06-11_13.csv day=2022-06-12

  # the page: a password, gestor-web restarted (cache empty), the year view cold then warm
  echo "$WEB_PW" | vm 'sudo gestor web --set-password --config /etc/gestor/settings.yaml' >/dev/null 2>&1
  vmq 'systemctl restart gestor-web'
  for _ in $(seq 30); do [ "$(active gestor-web)" = active ] && break; sleep 2; done
  url=$(web_url); url=${url:-http://127.0.0.1:8080}
  for _ in $(seq 60); do vmq "curl -s -o /dev/null $url/login" && break; sleep 2; done
  day=$(vmq 'date +%F')
  R=$(vmq "$M range $url '$WEB_PW' $day"); echo "$R" > "$LOGS/measure-range.json"
  measure_rows range "$R" "data=since the install"

  # the installed example with the page open for SOAK_MIN minutes, then the memory
  log "the example running with the page open for $SOAK_MIN min, then its memory"
  R=$(vmq "$M page $url '$WEB_PW' $((SOAK_MIN * 60))"); echo "$R" > "$LOGS/measure-page.json"
  R=$(vmq "$M memory $UNITS_MEASURED"); echo "$R" > "$LOGS/measure-memory.json"
  measure_rows memory "$R" "soak_min=$SOAK_MIN" "page=$(cat "$LOGS/measure-page.json" 2>/dev/null)"
  local used oom swap
  used=$(jv "$R" used_mb); oom=$(jv "$R" oom_count); swap=$(jv "$R" swap_used_mb)
  row "memory after $SOAK_MIN min with the page open" "system < 400 MB used, no OOM kill" \
    "$used MB used of $(jv "$R" mem_total_mb) MB; swap used $swap MB; OOM lines: $oom $(jv "$R" oom_lines | cut -c1-200)" \
    "$( { [ -n "$used" ] && [ "$used" -lt 400 ] && [ "$oom" = 0 ]; } >/dev/null 2>&1 && echo PASS || echo FAIL)"
}
