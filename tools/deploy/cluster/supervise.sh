#!/bin/bash
# supervise.sh - what systemd does with the rendered unit, for nodes that have
# no systemd (the rehearsal's namespaces, containers):
#   supervise.sh UNIT_FILE LOG STOP_FILE
# Runs the unit's ExecStart as its User/Group in its WorkingDirectory with
# its Environment= lines and LimitNOFILE/LimitMEMLOCK, and emulates
#   Restart=always / on-failure  with  RestartSec, RestartSteps, RestartMaxDelaySec:
# after the n-th consecutive restart it waits
#   RestartSec * (RestartMaxDelaySec / RestartSec) ^ (min(n, RestartSteps) / RestartSteps)
# (systemd's exponential interpolation); a run that lasted longer than 60 s
# resets n.  StartLimitIntervalSec=0 (no start limit) is assumed; a unit with
# a start limit is refused rather than emulated wrongly.  The existence of
# STOP_FILE is `systemctl stop`: the current run is left to end (the caller
# sends the SIGTERM) and nothing is restarted.  Each line it adds to LOG
# starts with "supervisor:".
# "A && B || { ...; exit; }" is meant: exit when either test fails.
# shellcheck disable=SC2015
set -uo pipefail
unit=$1 log=$2 stop=$3
key() { sed -n "s/^$1=//p" "$unit" | tail -n 1; }
exec_start=$(key ExecStart) user=$(key User) group=$(key Group)
workdir=$(key WorkingDirectory) restart=$(key Restart)
sec=$(key RestartSec) steps=$(key RestartSteps) max=$(key RestartMaxDelaySec)
limit=$(key StartLimitIntervalSec) nofile=$(key LimitNOFILE) memlock=$(key LimitMEMLOCK)
[ -n "$exec_start" ] && [ -n "$user" ] || { echo "supervisor: $unit has no ExecStart/User" >>"$log"; exit 2; }
[ "${limit:-10}" = 0 ] || { echo "supervisor: StartLimitIntervalSec=${limit:-unset} is not emulated" >>"$log"; exit 2; }
sec=${sec:-0.1} steps=${steps:-0} max=${max:-$sec}
env_args=()
while IFS= read -r line; do env_args+=("$line"); done < <(sed -n 's/^Environment=//p' "$unit")
home=$(getent passwd "$user" | cut -d: -f6)

n=0
while :; do
  began=$SECONDS
  echo "supervisor: starting $exec_start as $user" >>"$log"
  (
    cd "${workdir:-/}" || exit 1
    [ "$memlock" = infinity ] && ulimit -l unlimited 2>/dev/null
    [ -n "$nofile" ] && ulimit -n "$nofile" 2>/dev/null
    # shellcheck disable=SC2086
    exec runuser -u "$user" -g "${group:-$user}" -- env -i HOME="$home" USER="$user" \
      LOGNAME="$user" SHELL=/bin/bash PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      "${env_args[@]}" $exec_start  # split into words, as systemd does (no quotes in ours)
  ) >>"$log" 2>&1 &
  child=$!
  echo "$child" >"$log.pid"
  wait "$child"
  rc=$?
  [ -e "$stop" ] && { echo "supervisor: stopped (exit $rc)" >>"$log"; exit 0; }
  if [ "$restart" = on-failure ] && [ "$rc" = 0 ]; then
    echo "supervisor: exit 0, not restarted (Restart=on-failure)" >>"$log"; exit 0
  fi
  [ $((SECONDS - began)) -gt 60 ] && n=0
  n=$((n + 1))
  delay=$(awk -v s="${sec%s}" -v m="${max%s}" -v k="$steps" -v n="$n" 'BEGIN {
    if (k <= 0 || m <= s) { print s; exit }
    e = (n < k ? n : k) / k; printf "%.1f", s * exp(e * log(m / s)) }')
  echo "supervisor: exit $rc, restart $n in ${delay}s" >>"$log"
  end=$(awk -v d="$delay" 'BEGIN { printf "%d", d * 10 }')
  for _ in $(seq 1 "$end"); do
    [ -e "$stop" ] && { echo "supervisor: stopped while waiting" >>"$log"; exit 0; }
    sleep 0.1
  done
done
