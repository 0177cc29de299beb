#!/bin/bash
# cluster-test.sh - the production path rehearsed on one machine
# (docs/deploy-rehearsal.md):
#   * two "nodes" (node0: head + stage 0, node1: stage 1), each a network
#     namespace on a private bridge with its own sshd, host keys, hostname
#     (UTS namespace) and filesystem view (overlays of /etc /opt /usr /var
#     /home /root /srv: tools/deploy/cluster/node-init.sh);
#   * a control namespace that runs the real ansible/site.yml over SSH
#     against them, with only the GPU/AWS parts switched off by their own
#     variables (dsa_gpu_stack, dsa_awscli_install, dsa_data_disk_mode,
#     dsa_api_keys_source, dsa_weights_mode), TP=2 x PP=2 on the CPU and
#     the tiny model from dsa-mkmodel;
#   * the rendered unit's ExecStart run as its User by
#     tools/deploy/cluster/supervise.sh (Restart= emulated, bounded);
#   * HAProxy as the load balancer with Terraform's health check
#     (path, interval, timeout, thresholds read from terraform/), TLS on
#     the public frontend, /metrics refused there, plain HTTP with a key
#     refused;
#   * through the LB: the documented curl with the key, 401 without it,
#     dsa-bench with a key, and the drills: kill -9 a worker on node1 with
#     streams in flight, node1 down for DSA_CLUSTER_DOWN_S then back,
#     SIGTERM during streams (drain), the playbook run twice (changed=0).
# Prints a table of each check and its time; exits 0 when all pass.
# Needs root, iproute2, util-linux; installs haproxy, openssh-server and the
# packages the playbook expects on a node image (docs/deploy-rehearsal.md).
# Every wait is bounded; a trap removes the namespaces, the bridge, the
# processes and the state tmpfs on any exit.  All traffic stays on the
# private bridge (10.77.0.0/24) inside the namespaces.
#   tools/deploy/cluster-test.sh [BUILD_DIR]   (dsa-bench, dsa-mkmodel; default build)
#   DSA_CLUSTER_DOWN_S (180): how long node1 stays down
#   DSA_CLUSTER_KEEP=1: leave everything up on success (debugging; then
#                       run the script with --cleanup)
# record never fails, so "cond && record PASS || record FAIL" is an if-then-else.
# shellcheck disable=SC2015
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/tools/deploy/cluster
cd "$ROOT" || exit 1
P=dsact                      # prefix of every namespace and the state dir
NET=10.77.0 CTL=10.77.0.2 N0=10.77.0.10 N1=10.77.0.11
STATE=/mnt/$P-state
KEY=sk-dsa-rehearsal-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
MODEL=deepseek-ai/DeepSeek-V3          # group_vars/all.yml dsa_served_model_name
DOWN_S=${DSA_CLUSTER_DOWN_S:-180}
T_START=$SECONDS
say() { echo "cluster-test: $*"; }

# ---- cleanup: only what this script made (its namespaces, mounts, processes)
cleanup() {
  local ns pid
  for ns in $P-n0 $P-n1 $P-ctl $P-lan; do
    [ -e "/run/netns/$ns" ] || continue
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
  done
  sleep 0.5
  for ns in $P-n0 $P-n1 $P-ctl $P-lan; do
    [ -e "/run/netns/$ns" ] && ip netns del "$ns" 2>/dev/null
  done
  if mountpoint -q "$STATE" 2>/dev/null; then
    umount "$STATE" 2>/dev/null || umount -l "$STATE" 2>/dev/null
  fi
  rmdir "$STATE" 2>/dev/null
  # the playbook's archive on the control machine
  rm -f "/tmp/deepseek-alpha-src-$(git -C "$ROOT" rev-parse --verify HEAD 2>/dev/null).tar.gz"
  return 0
}
if [ "${1:-}" = --cleanup ]; then cleanup; exit 0; fi
BUILD=$(cd "${1:-$ROOT/build}" 2>/dev/null && pwd) || { say "no build dir ${1:-build}"; exit 2; }
[ "$(id -u)" = 0 ] || { say "must run as root"; exit 2; }
for f in tools/dsa-bench tools/dsa-mkmodel; do
  [ -x "$BUILD/$f" ] || { say "missing $BUILD/$f (build first)"; exit 2; }
done
git -C "$ROOT" rev-parse --verify HEAD >/dev/null 2>&1 ||
  { say "$ROOT is not a git checkout: the playbook ships a git archive of HEAD"; exit 2; }

on_exit() {
  local rc=$?
  if [ "${DSA_CLUSTER_KEEP:-0}" = 1 ] && [ "$rc" = 0 ]; then
    say "kept: namespaces $P-*, state $STATE (tools/deploy/cluster-test.sh --cleanup)"
    return
  fi
  cleanup
}
cleanup   # a previous run killed before its trap
trap on_exit EXIT
trap 'exit 130' INT TERM

# ---- the table of checks
RESULTS=() FAILED=0
record() { # name seconds PASS|FAIL detail
  RESULTS+=("$1|$2|$3|$4")
  [ "$3" = PASS ] || FAILED=$((FAILED + 1))
  say "$3 $1 (${2}s): $4"
}
table() {
  echo
  printf '%-46s %8s  %-4s  %s\n' "check" "time (s)" "" "detail"
  printf '%-46s %8s  %-4s  %s\n' "-----" "--------" "" "------"
  local r name secs res detail
  for r in "${RESULTS[@]}"; do
    IFS='|' read -r name secs res detail <<<"$r"
    printf '%-46s %8s  %-4s  %s\n' "$name" "$secs" "$res" "$detail"
  done
  echo "total wall time: $((SECONDS - T_START)) s; $((${#RESULTS[@]} - FAILED)) passed, $FAILED failed"
}
die() { record "$1" "${2:-0}" FAIL "$3"; table; exit 1; }

ctl() { ip netns exec $P-ctl "$@"; }
# waits until the command succeeds, at most $1 seconds
wait_for() {
  local limit=$1 t0=$SECONDS
  shift
  while ! "$@" >/dev/null 2>&1; do
    [ $((SECONDS - t0)) -ge "$limit" ] && return 1
    sleep 1
  done
}

# ---- 0. what a node image has (the host's packages are the nodes' lower layer)
t0=$SECONDS
NEED=(haproxy openssh-server openssl iproute2 python3 python3-venv curl jq acl git tar
      build-essential pkg-config meson ninja-build libcjson-dev libpcre2-dev libuv1-dev
      node-llhttp libopenblas-dev libopenmpi-dev openmpi-bin ca-certificates util-linux
      prometheus)
missing=()
for p in "${NEED[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
lists_age=$(( $(date +%s) - $(stat -c %Y /var/lib/apt/lists 2>/dev/null || echo 0) ))
if ((${#missing[@]})) || [ "$lists_age" -gt 3000 ]; then
  # the playbook's apt tasks accept a cache younger than an hour; the nodes
  # have no route out, so the image's cache must be fresh
  say "host: apt-get update${missing[*]:+; installing ${missing[*]}}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || die "node image (apt)" 0 "apt-get update failed"
  touch /var/lib/apt/lists
  if ((${#missing[@]})); then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
      >/dev/null || die "node image (apt)" 0 "apt-get install ${missing[*]} failed"
  fi
fi
# shellcheck source=tools/deploy/venv.sh
. tools/deploy/venv.sh
dsa_venv || die "ansible venv" 0 "could not set up the pinned Ansible venv"
record "node image: packages, ansible venv" $((SECONDS - t0)) PASS "${#NEED[@]} packages present"

# ---- 1. network: a bridge in its own namespace, one veth per host
t0=$SECONDS
mkdir -p "$STATE" && mount -t tmpfs -o mode=0700 $P-state "$STATE" || die "namespaces" 0 "tmpfs $STATE"
for ns in lan ctl n0 n1; do ip netns add "$P-$ns" || die "namespaces" 0 "ip netns add $P-$ns"; done
ip -n $P-lan link add br0 type bridge && ip -n $P-lan link set br0 up && ip -n $P-lan link set lo up ||
  die "namespaces" 0 "bridge"
for h in ctl:$CTL n0:$N0 n1:$N1; do
  ns=${h%%:*} ip=${h#*:}
  ip -n $P-lan link add "v-$ns" type veth peer name eth0 netns "$P-$ns" &&
    ip -n $P-lan link set "v-$ns" master br0 up &&
    ip -n "$P-$ns" addr add "$ip/24" dev eth0 && ip -n "$P-$ns" link set eth0 up &&
    ip -n "$P-$ns" link set lo up || die "namespaces" 0 "veth for $ns"
done

# ---- 2. keys of this run, the nodes' sshd, and the nodes themselves
ssh-keygen -q -t ed25519 -N "" -C dsa-control -f "$STATE/control_key" || die "keys" 0 ssh-keygen
printf '127.0.0.1 localhost\n%s control\n%s node0\n%s node1\n' "$CTL" "$N0" "$N1" >"$STATE/hosts"
: >"$STATE/known_hosts"
for i in 0 1; do
  d=$STATE/node$i ip=$NET.1$i
  mkdir -p "$d"
  ssh-keygen -q -t ed25519 -N "" -C "node$i" -f "$d/ssh_host_ed25519_key" || die "keys" 0 ssh-keygen
  echo "$ip $(cut -d' ' -f1-2 "$d/ssh_host_ed25519_key.pub")" >>"$STATE/known_hosts"
  cat >"$d/sshd_config" <<EOF
ListenAddress $ip
HostKey $d/ssh_host_ed25519_key
PidFile /run/sshd.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM yes
AuthorizedKeysFile .ssh/authorized_keys
Subsystem sftp /usr/lib/openssh/sftp-server
MaxStartups 100:30:200
EOF
done
start_node() { # index
  ip netns exec "$P-n$1" unshare --mount --uts --propagation private \
    setsid "$HERE/node-init.sh" "node$1" "$STATE/node$1" >>"$STATE/node$1.log" 2>&1 </dev/null &
  disown   # killed on purpose (drills, cleanup): no job report
}
node_up() { ctl bash -c "exec 3<>/dev/tcp/$1/22" 2>/dev/null; }
start_node 0
start_node 1
wait_for 30 node_up $N0 && wait_for 30 node_up $N1 ||
  { cat "$STATE"/node*.log; die "nodes: sshd up" $((SECONDS - t0)) "sshd did not listen"; }
SSH=(ssh -i "$STATE/control_key" -o UserKnownHostsFile="$STATE/known_hosts" -o BatchMode=yes
     -o ConnectTimeout=5)
on_node() { local ip=$1; shift; ctl "${SSH[@]}" "root@$ip" "$@"; }
h0=$(on_node $N0 hostname) h1=$(on_node $N1 hostname)
[ "$h0" = node0 ] && [ "$h1" = node1 ] || die "nodes: sshd up" $((SECONDS - t0)) "hostnames '$h0' '$h1'"
on_node $N0 touch /opt/only-on-node0 && ! on_node $N1 test -e /opt/only-on-node0 &&
  [ ! -e /opt/only-on-node0 ] || die "nodes: sshd up" $((SECONDS - t0)) "filesystem views are not separate"
record "nodes: netns + bridge, sshd, hostnames, own /opt" $((SECONDS - t0)) PASS "node0 $N0, node1 $N1"
on_node $N0 rm -f /opt/only-on-node0

# ---- 3. Terraform's load-balancer settings (health check, idle timeout)
tf=terraform/modules/load_balancers
hc() { sed -n "/health_check = {/,/}/s/^ *$1 *= *\"*\([^\"]*\)\"*$/\1/p" "$tf/main.tf" | head -n 1; }
HC_INTERVAL=$(hc interval) HC_TIMEOUT=$(hc timeout) HC_RISE=$(hc healthy_threshold)
HC_FALL=$(hc unhealthy_threshold)
HC_PATH=$(sed -n '/variable "health_check_path"/,/^}/s/^ *default *= *"\(.*\)"$/\1/p' "$tf/variables.tf")
IDLE=$(sed -n '/variable "idle_timeout_seconds"/,/^}/s/^ *default *= *\([0-9]*\)$/\1/p' terraform/example/variables.tf)
for v in HC_INTERVAL HC_TIMEOUT HC_RISE HC_FALL HC_PATH IDLE; do
  [ -n "${!v}" ] || die "load balancer config" 0 "could not read $v from terraform/"
done

# ---- 3b. the playbook, twice
cat >"$STATE/inventory.ini" <<EOF
[dsa_head]
node0 ansible_host=$N0 dsa_private_ip=$N0 dsa_node_index=0
[dsa_workers]
node1 ansible_host=$N1 dsa_private_ip=$N1 dsa_node_index=1
[dsa_nodes:children]
dsa_head
dsa_workers
[dsa_nodes:vars]
ansible_user=root
ansible_ssh_private_key_file=$STATE/control_key
ansible_ssh_common_args='-o UserKnownHostsFile=$STATE/known_hosts'
ansible_python_interpreter=/usr/bin/python3
EOF
cat >"$STATE/rehearsal.yml" <<EOF
# Off: the GPU and AWS parts, each by its own variable.
dsa_gpu_stack: false
dsa_awscli_install: false
dsa_data_disk_mode: none
dsa_data_dir: /srv/dsa-data
dsa_weights_mode: tiny
dsa_mkmodel_args: "--seed 7"
dsa_api_keys_source: inline
dsa_api_keys: ["$KEY"]
dsa_openmpi_source: distro
dsa_service_manager: none
dsa_build_options: "-Dcuda=disabled -Dmarch="
# The layout: TP=2 x PP=2 on the CPU, over TCP on the bridge.
dsa_tp: 2
dsa_pp: 2
dsa_mpirun_args: >-
  --bind-to none --map-by slot --mca btl tcp,self,vader
  --mca btl_tcp_if_include $NET.0/24 --mca oob_tcp_if_include $NET.0/24
  --mca btl_vader_single_copy_mechanism none
dsa_service_env:
  OMPI_MCA_mpi_yield_when_idle: "1"
dsa_worker_extra_args: "--threads 1"
# Shorter back-off ceiling than production (120 s) to bound the run time.
dsa_service_restart_max_sec: 30
dsa_service_wait_nodes_s: 60
# What the inventory carries from Terraform.
dsa_lb_idle_timeout: $IDLE
EOF
playbook() {
  ctl env ANSIBLE_CONFIG="$ROOT/ansible/ansible.cfg" ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 \
    PATH="$PATH" timeout 1500 ansible-playbook -i "$STATE/inventory.ini" \
    -e "@$STATE/rehearsal.yml" "$ROOT/ansible/site.yml"
}
t0=$SECONDS
playbook >"$STATE/playbook1.log" 2>&1 || { tail -40 "$STATE/playbook1.log";
  die "playbook site.yml: first run" $((SECONDS - t0)) "failed (log above)"; }
record "playbook site.yml: first run" $((SECONDS - t0)) PASS \
  "$(grep -E '^node0 ' "$STATE/playbook1.log" | tr -s ' ' | cut -d' ' -f3-5)"
t0=$SECONDS
playbook >"$STATE/playbook2.log" 2>&1 || { tail -40 "$STATE/playbook2.log";
  die "playbook site.yml: second run, changed=0" $((SECONDS - t0)) "failed"; }
recap=$(grep -E '^node[01] +:' "$STATE/playbook2.log")
if [ "$(echo "$recap" | grep -c 'changed=0 ')" = 2 ]; then
  record "playbook site.yml: second run, changed=0" $((SECONDS - t0)) PASS "both nodes changed=0"
else
  grep -E '^changed:' "$STATE/playbook2.log"
  record "playbook site.yml: second run, changed=0" $((SECONDS - t0)) FAIL "$(echo "$recap" | tr -s ' ')"
fi
UNIT=/etc/systemd/system/deepseek-alpha.service
on_node $N0 cat "$UNIT" >"$STATE/unit" || die "unit rendered" 0 "no $UNIT on node0"
on_node $N0 cat /opt/deepseek-alpha/bin/dsa-serve >"$STATE/dsa-serve"
grep -q -- "--tensor-parallel-size 2 --pipeline-parallel-size 2" "$STATE/dsa-serve" &&
  grep -q -- "--tp 2 --device cpu" "$STATE/dsa-serve" &&
  grep -q -- "--timeout-keep-alive $((IDLE + 60)) " "$STATE/dsa-serve" ||
  die "unit rendered" 0 "dsa-serve lacks the layout or keep-alive options"
record "unit + launcher rendered (layout, keep-alive)" 0 PASS "ExecStart=$(sed -n 's/^ExecStart=//p' "$STATE/unit")"

# ---- 4. the load balancer: TLS, /metrics refused, the health check
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=dsa-lb \
  -addext "subjectAltName=IP:$CTL" -keyout "$STATE/lb.key" -out "$STATE/lb.crt" 2>/dev/null &&
  cat "$STATE/lb.crt" "$STATE/lb.key" >"$STATE/lb.pem" || die "load balancer config" 0 "openssl"
cat >"$STATE/haproxy.cfg" <<EOF
# The rehearsal's stand-in for the ALB (public, TLS) and the internal NLB.
global
  stats socket $STATE/haproxy.sock mode 600 level admin
  log stdout format raw local0
defaults
  mode http
  log global
  option httplog
  timeout connect 5s
  # the LBs' idle timeout (terraform idle_timeout_seconds); the head's
  # keep-alive is 60 s longer (ansible dsa_lb_idle_timeout)
  timeout client ${IDLE}s
  timeout server ${IDLE}s
  timeout http-keep-alive ${IDLE}s
  timeout check ${HC_TIMEOUT}s
# public: HTTPS only; /metrics is scraped from inside, never through here
frontend public_https
  bind $CTL:443 ssl crt $STATE/lb.pem
  http-request return status 403 content-type text/plain string "metrics are not public" if { path_beg /metrics }
  default_backend head
# public port 80: a request carrying a key is refused (the key was already
# sent in clear; the client must be fixed), others are redirected
frontend public_http
  bind $CTL:80
  http-request return status 403 content-type text/plain string "plain HTTP with an API key is refused: use https" if { req.hdr(authorization) -m found }
  http-request redirect scheme https code 301
# internal (inside the VPC): load tests and the metrics scrape
frontend internal
  bind $CTL:8000
  default_backend head
backend head
  option httpchk GET $HC_PATH
  http-check expect status 200
  default-server inter ${HC_INTERVAL}s fall $HC_FALL rise $HC_RISE
  server node0 $N0:8000 check
EOF
ctl haproxy -c -f "$STATE/haproxy.cfg" >"$STATE/haproxy-check.log" 2>&1 ||
  { cat "$STATE/haproxy-check.log"; die "load balancer config" 0 "haproxy -c failed"; }
ctl setsid haproxy -db -f "$STATE/haproxy.cfg" >"$STATE/haproxy.log" 2>&1 </dev/null &
record "HAProxy: health check from terraform/" 0 PASS \
  "GET $HC_PATH every ${HC_INTERVAL}s, timeout ${HC_TIMEOUT}s, rise $HC_RISE, fall $HC_FALL; idle ${IDLE}s"

lb_status() { # UP / DOWN / ... of the head in HAProxy
  python3 - "$STATE/haproxy.sock" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"show stat\n")
data = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    data += b
for line in data.decode().splitlines():
    f = line.split(",")
    if len(f) > 17 and f[0] == "head" and f[1] == "node0":
        print(f[17])
PY
}
lb_up() { [ "$(lb_status)" = UP ]; }
lb_down() { case $(lb_status) in DOWN*) return 0 ;; esac; return 1; }
direct_health() { [ "$(ctl curl -s -o /dev/null -w '%{http_code}' --max-time 3 "http://$N0:8000/health")" = 200 ]; }

# ---- 5. start the service the way systemd would
SUP_LOG=/var/log/dsa-service.log STOP=/run/dsa-service.stop
node0_ns() { # runs a command in node0's namespaces (net, mount, UTS), as root
  nsenter -t "$(cat "$STATE/node0/init.pid")" -n -m -u -- "$@"
}
start_service() {
  node0_ns rm -f "$STOP"
  node0_ns setsid bash "$HERE/supervise.sh" "$UNIT" "$SUP_LOG" "$STOP" </dev/null >/dev/null 2>&1 &
}
t0=$SECONDS
start_service
if ! wait_for 180 direct_health; then
  node0_ns tail -40 "$SUP_LOG"
  die "service: /health 200 on node0" $((SECONDS - t0)) "not ready in 180 s"
fi
record "service: /health 200 on node0" $((SECONDS - t0)) PASS "TP=2 x PP=2 over both nodes"
node0_ns grep -q "TP=2 x PP=2" "$SUP_LOG" ||
  record "service: workers form TP=2 x PP=2" 0 FAIL "no 'TP=2 x PP=2' in the head's log"
t1=$SECONDS
wait_for $((HC_INTERVAL * (HC_RISE + 2))) lb_up &&
  record "LB: head marked UP" $((SECONDS - t1)) PASS "after $HC_RISE checks" ||
  die "LB: head marked UP" $((SECONDS - t1)) "status $(lb_status)"

# ---- 5b. monitoring: Prometheus with the shipped scrape config and alert
# rules (tools/deploy/observability), its target the internal frontend as
# the VPC's internal load balancer would be; checked after the load test
PROM=$STATE/prometheus
mkdir -p "$PROM/data"
cp "$ROOT/tools/deploy/observability/dsa-alerts.yml" "$PROM/"
sed -e "s/dsa-nlb\.internal\.example:8000/$CTL:8000/" \
    -e 's/evaluation_interval: 15s/evaluation_interval: 5s/' \
  "$ROOT/tools/deploy/observability/prometheus.yml" >"$PROM/prometheus.yml"
grep -q "\"$CTL:8000\"" "$PROM/prometheus.yml" ||
  record "monitoring: Prometheus config" 0 FAIL "the shipped target placeholder changed"
ctl prometheus --config.file="$PROM/prometheus.yml" --storage.tsdb.path="$PROM/data" \
  --web.listen-address=127.0.0.1:9090 >"$STATE/prometheus.log" 2>&1 &
disown   # ended with the namespace by cleanup

# ---- 6. through the LB: the documented curl, 401, metrics, plain HTTP
t0=$SECONDS
LB=https://$CTL
CURL=(curl -sS --max-time 60 --cacert "$STATE/lb.crt")
code=$(ctl "${CURL[@]}" -o "$STATE/first.json" -w '%{http_code}' "$LB/v1/chat/completions" \
  -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  -d "{\"model\": \"$MODEL\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}], \"max_tokens\": 32}")
if [ "$code" = 200 ] && grep -q '"chat.completion"' "$STATE/first.json"; then
  record "LB https: documented curl with the key" $((SECONDS - t0)) PASS "200, model $MODEL"
else
  record "LB https: documented curl with the key" $((SECONDS - t0)) FAIL "$code $(head -c 200 "$STATE/first.json")"
fi
t0=$SECONDS
code=$(ctl "${CURL[@]}" -o /dev/null -w '%{http_code}' "$LB/v1/models")
[ "$code" = 401 ] && record "LB https: no key -> 401" $((SECONDS - t0)) PASS 401 ||
  record "LB https: no key -> 401" $((SECONDS - t0)) FAIL "$code"
pub=$(ctl "${CURL[@]}" -o /dev/null -w '%{http_code}' "$LB/metrics")
int=$(ctl curl -sS --max-time 10 -o "$STATE/metrics.txt" -w '%{http_code}' "http://$CTL:8000/metrics")
[ "$pub" = 403 ] && [ "$int" = 200 ] && grep -q 'num_requests_running' "$STATE/metrics.txt" &&
  record "LB: /metrics refused publicly, served inside" 0 PASS "public $pub, internal $int" ||
  record "LB: /metrics refused publicly, served inside" 0 FAIL "public $pub, internal $int"
withkey=$(ctl curl -sS --max-time 10 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" "http://$CTL/v1/models")
nokey=$(ctl curl -sS --max-time 10 -o /dev/null -w '%{http_code} %{redirect_url}' "http://$CTL/v1/models")
[ "$withkey" = 403 ] && [ "$nokey" = "301 https://$CTL/v1/models" ] &&
  record "LB http: key refused, others redirected" 0 PASS "with key $withkey; without: $nokey" ||
  record "LB http: key refused, others redirected" 0 FAIL "with key $withkey; without: $nokey"

# ---- 7. dsa-bench with a key through the public HTTPS frontend (the
# certificate verified against the LB's CA)
t0=$SECONDS
"$BUILD/tools/dsa-mkmodel" --out "$STATE/tok" --seed 7 >/dev/null 2>&1
ctl timeout 180 "$BUILD/tools/dsa-bench" --base-url "$LB" --ca-cert "$STATE/lb.crt" \
  --api-key "$KEY" \
  --model "$STATE/tok" --served-model-name "$MODEL" --num-prompts 16 --max-concurrency 4 \
  --random-input-len 32 --random-output-len 16 --ignore-eos --disable-tqdm \
  --ready-check-timeout-sec 30 --request-timeout 60 >"$STATE/bench.log" 2>&1
brc=$?
ok=$(sed -n 's/^Successful requests: *\([0-9]*\).*/\1/p' "$STATE/bench.log")
tput=$(sed -n 's/^Output token throughput (tok\/s): *\([0-9.]*\).*/\1/p' "$STATE/bench.log")
[ "$brc" = 0 ] && [ "$ok" = 16 ] &&
  record "dsa-bench https through the LB (16 req, conc 4)" $((SECONDS - t0)) PASS "16/16 ok, ${tput:-?} output tok/s" ||
  { tail -20 "$STATE/bench.log"; record "dsa-bench https through the LB (16 req, conc 4)" $((SECONDS - t0)) FAIL "rc $brc, ok ${ok:-0}/16"; }

# ---- 7b. the Grafana dashboard's queries and the alert rules on the live
# Prometheus (every query accepted; gauges and rates return series)
t0=$SECONDS
if ctl python3 "$HERE/promcheck.py" http://127.0.0.1:9090 \
    "$ROOT/tools/deploy/observability/grafana-dashboard.json" >"$STATE/promcheck.log" 2>&1; then
  record "monitoring: dashboard queries + alert rules" $((SECONDS - t0)) PASS "$(tail -1 "$STATE/promcheck.log")"
else
  grep -v '^ok' "$STATE/promcheck.log" | tail -15
  tail -5 "$STATE/prometheus.log"
  record "monitoring: dashboard queries + alert rules" $((SECONDS - t0)) FAIL "$(tail -1 "$STATE/promcheck.log")"
fi

# ---- 8. drill: kill -9 a worker on node1 with streams in flight
streams() { # n max_tokens limit -> $STATE/streams.json (background; pid in SPID)
  rm -f "$STATE/ready"
  ctl python3 "$HERE/streams.py" "$LB" "$STATE/lb.crt" "$KEY" "$MODEL" "$1" "$2" \
    "$STATE/ready" "$3" >"$STATE/streams.json" 2>"$STATE/streams.err" &
  SPID=$!
}
ends() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(" ".join(s["end"] if s else "none" for s in d["streams"]))' "$STATE/streams.json" 2>/dev/null; }
worker_on_n1() { for p in $(ip netns pids $P-n1); do [ "$(cat "/proc/$p/comm" 2>/dev/null)" = dsa-worker ] && echo "$p"; done | head -1; }
t0=$SECONDS
streams 4 3000 90
if ! wait_for 60 test -e "$STATE/ready"; then die "drill kill -9 worker: streams" 60 "no first tokens"; fi
victim=$(worker_on_n1)
[ -n "$victim" ] || die "drill kill -9 worker" 0 "no dsa-worker in node1"
kill -9 "$victim"
tk=$SECONDS
wait "$SPID"
e=$(ends)
# Open MPI ends the whole job about 1 s after a rank dies: mpirun sends the
# head SIGTERM first, and the head, seeing its workers gone (a step late
# during the drain), ends every request with an SSE error event then
# [DONE] before it exits (docs/server.md).  Required: every stream ends
# with an error event, promptly; none pretends to have completed.
n_err=$(echo "$e" | tr ' ' '\n' | grep -c '^error$')
n_ok=$n_err
if [ "$n_ok" = 4 ] && [ $((SECONDS - tk)) -le 20 ]; then
  record "kill -9 worker: every in-flight stream ends" $((SECONDS - tk)) PASS "ends: $e ($n_err SSE error events)"
else
  record "kill -9 worker: every in-flight stream ends" $((SECONDS - tk)) FAIL "ends: $e"
fi
if wait_for 150 direct_health; then
  record "kill -9 worker: service back (/health 200)" $((SECONDS - tk)) PASS "restarted by the unit's Restart="
else
  node0_ns tail -30 "$SUP_LOG"
  die "kill -9 worker: service back (/health 200)" $((SECONDS - tk)) "not back in 150 s"
fi
wait_for $((HC_INTERVAL * (HC_RISE + HC_FALL + 2))) lb_up &&
  record "kill -9 worker: LB marks it UP again" $((SECONDS - tk)) PASS "bound $((150 + HC_INTERVAL * (HC_RISE + HC_FALL + 2)))s" ||
  record "kill -9 worker: LB marks it UP again" $((SECONDS - tk)) FAIL "status $(lb_status)"

# ---- 9. drill: node1 down for DOWN_S, then back; no operator
t0=$SECONDS
# a reboot: every process of node1 killed (its sockets close), then no
# network and no sshd until it is started again
for p in $(ip netns pids $P-n1); do kill -9 "$p" 2>/dev/null; done
ip -n $P-lan link set v-n1 down
if wait_for $((HC_INTERVAL * (HC_FALL + 2))) lb_down; then
  record "node1 down: LB marks the head DOWN" $((SECONDS - t0)) PASS "after $HC_FALL failed checks"
else
  record "node1 down: LB marks the head DOWN" $((SECONDS - t0)) FAIL "status $(lb_status)"
fi
left=$((DOWN_S - (SECONDS - t0)))
[ "$left" -gt 0 ] && sleep "$left"
restarts=$(node0_ns grep -c '^supervisor: exit' "$SUP_LOG")
ip -n $P-lan link set v-n1 up
start_node 1
tb=$SECONDS
if wait_for 240 direct_health; then
  record "node1 back after ${DOWN_S}s: service recovers" $((SECONDS - tb)) PASS "$restarts failed starts meanwhile, no operator"
else
  node0_ns tail -30 "$SUP_LOG"
  die "node1 back after ${DOWN_S}s: service recovers" $((SECONDS - tb)) "not back in 240 s"
fi
wait_for $((HC_INTERVAL * (HC_RISE + 2))) lb_up &&
  record "node1 back: LB marks it UP" $((SECONDS - tb)) PASS "" ||
  record "node1 back: LB marks it UP" $((SECONDS - tb)) FAIL "status $(lb_status)"

# ---- 10. drill: SIGTERM during streams (drain)
serve_pid() { for p in $(ip netns pids $P-n0); do
  case $(ps -o args= -p "$p" 2>/dev/null) in */bin/bash\ /opt/deepseek-alpha/bin/dsa-serve*) echo "$p" ;; esac
done | head -1; }
# streams long enough (3000 tokens: well over the 0.5 s before the new
# request, well under the 30 s drain timeout) that the head is still
# draining when the new request reaches it; with 600 tokens a fast runner
# finished them, the head exited, and HAProxy answered "no server" itself
streams 4 3000 90
wait_for 60 test -e "$STATE/ready" || die "SIGTERM drill: streams" 60 "no first tokens"
node0_ns touch "$STOP"          # systemctl stop: no restart
sp=$(serve_pid)
[ -n "$sp" ] || die "SIGTERM drill" 0 "no dsa-serve process on node0"
kill -TERM "$sp"
ts=$SECONDS
sleep 0.5
new=$(ctl "${CURL[@]}" -o "$STATE/new.json" -w '%{http_code}' "$LB/v1/completions" \
  -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  -d "{\"model\": \"$MODEL\", \"prompt\": \"Hi\", \"max_tokens\": 4}")
wait "$SPID"
e=$(ends)
bad=$(echo "$e" | tr ' ' '\n' | grep -cv '^done$\|^error$')
# the head's own answer (not the LB's "no server"): it is draining
[ "$new" = 503 ] && grep -q 'shutting down' "$STATE/new.json" &&
  record "SIGTERM: new request during the drain -> 503" $((SECONDS - ts)) PASS "503 from the draining head" ||
  record "SIGTERM: new request during the drain -> 503" $((SECONDS - ts)) FAIL "$new $(head -c 150 "$STATE/new.json"); streams ended (s after ready): $(python3 -c 'import json,sys; print(" ".join(str(s and s.get("after_ready_s")) for s in json.load(open(sys.argv[1]))["streams"]))' "$STATE/streams.json" 2>/dev/null)"
[ "$bad" = 0 ] && record "SIGTERM: streams finish or get an error" $((SECONDS - ts)) PASS "ends: $e" ||
  record "SIGTERM: streams finish or get an error" $((SECONDS - ts)) FAIL "ends: $e"
dsa_left() { for ns in n0 n1; do for p in $(ip netns pids $P-$ns); do
  case $(cat "/proc/$p/comm" 2>/dev/null) in dsa-head|dsa-worker|mpirun|orted|prted) echo "$p" ;; esac; done; done; }
# evaluated afresh on every poll (a "$(dsa_left)" argument would be computed once)
none_left() { [ -z "$(dsa_left)" ]; }
if wait_for 60 none_left; then
  record "SIGTERM: every rank exited on both nodes" $((SECONDS - ts)) PASS "$(node0_ns tail -n 3 "$SUP_LOG" | grep -o 'exit [0-9]*' | tail -1)"
else
  record "SIGTERM: every rank exited on both nodes" $((SECONDS - ts)) FAIL "left: $(dsa_left | tr '\n' ' ')"
fi

table
[ "$FAILED" = 0 ]
