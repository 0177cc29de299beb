#!/bin/bash
# Builds the CPU variant of the image from the repository's Dockerfile and
# starts it as an operator would: a Debian 12 base made here (mmdebstrap from
# the Debian mirror, imported into podman: no container registry is
# reachable), `podman build` with the CPU build arguments, a tiny model made
# by the image's own dsa-mkmodel mounted at /model, an API-key file mounted
# at /run/secrets/api-keys, DSA_TP=2 x DSA_PP=2 through the entry point.
# Checks /health 200, the TP x PP layout, the image's HEALTHCHECK, a chat completion with the key
# (200, a chat.completion object) and without it (401), then `podman stop`
# (SIGTERM): the container exits 0 before the stop timeout.  Needs root.
#   tools/deploy/image-test.sh   (installs podman, runc, mmdebstrap when missing)
# The base tarball is cached per day under /var/cache/dsa-image/; podman's
# storage (vfs), the containers and images made here are removed on exit.
# This sandbox: crun refuses its hybrid cgroup v1/v2 mounts, so runc with the
# cgroupfs manager; runc cannot set RLIMIT_NPROC to the inherited hard limit,
# so the containers get explicit (lower) ulimits; host network.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
say() { echo "image-test: $*"; }
skip() { say "$*"; [ "${CI:-}" = true ] && exit 1; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root"
# podman, runc and mmdebstrap from Debian, installed when missing.
missing=()
for p in podman runc mmdebstrap; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
    >/dev/null || skip "apt-get install ${missing[*]} failed"
fi
for c in podman runc mmdebstrap git curl python3; do
  command -v "$c" >/dev/null || skip "$c not found"
done
t0=$SECONDS

CACHE=/var/cache/dsa-image
BASE_TAR=$CACHE/debian12-minbase-$(date -u +%Y%m%d).tar
TMP=$(mktemp -d /var/tmp/dsa-image.XXXXXX)
NAME=dsa-image-test-$$
IMAGE=localhost/deepseek-alpha:cpu-test-$$
BASE=localhost/dsa-debian12:test-$$
P=(podman --root "$TMP/storage" --runroot "$TMP/run" --storage-driver vfs
  --cgroup-manager cgroupfs --runtime runc)
LIMITS=(--ulimit nofile=4096:4096 --ulimit nproc=16384:16384)
cleanup() {
  "${P[@]}" rm -f -t 0 "$NAME" >/dev/null 2>&1
  "${P[@]}" rmi -af >/dev/null 2>&1
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# 1. The base image: a minimal Debian 12 from the mirror, cached for the day.
mkdir -p "$CACHE"
if [ ! -s "$BASE_TAR" ]; then
  say "making $BASE_TAR (mmdebstrap, Debian mirror)"
  if ! timeout 900 mmdebstrap --variant=minbase --mode=root --format=tar bookworm "$BASE_TAR.part" \
      "deb http://deb.debian.org/debian bookworm main" \
      "deb http://deb.debian.org/debian bookworm-updates main" \
      "deb http://deb.debian.org/debian-security bookworm-security main" >"$TMP/mmdebstrap.log" 2>&1; then
    tail -20 "$TMP/mmdebstrap.log"; rm -rf "$BASE_TAR.part"; say "FAIL: mmdebstrap"; exit 1
  fi
  mv "$BASE_TAR.part" "$BASE_TAR"
  find "$CACHE" -name 'debian12-minbase-*.tar' ! -path "$BASE_TAR" -delete
fi
timeout 300 "${P[@]}" import "$BASE_TAR" "$BASE" >"$TMP/import.log" 2>&1 \
  || { cat "$TMP/import.log"; say "FAIL: podman import"; exit 1; }
t_base=$((SECONDS - t0))

# 2. The image: the repository's Dockerfile, CPU arguments, Debian 12 names.
# The context is the tracked and unignored files (no build dirs or venvs).
mkdir "$TMP/ctx"
(cd "$ROOT" && git ls-files -z -co --exclude-standard | tar -c --null -T -) | tar -x -C "$TMP/ctx" \
  || { say "FAIL: build context"; exit 1; }
t1=$SECONDS
if ! timeout 2400 "${P[@]}" build --format docker --network host "${LIMITS[@]}" -t "$IMAGE" \
    --build-arg DEVICE=cpu --build-arg BUILD_BASE="$BASE" --build-arg RUNTIME_BASE="$BASE" \
    --build-arg BUILD_EXTRA= --build-arg "RUNTIME_LIBS=libuv1 libopenmpi3 libssl3" \
    -f "$TMP/ctx/Dockerfile" "$TMP/ctx" >"$TMP/build.log" 2>&1; then
  tail -40 "$TMP/build.log"; say "FAIL: podman build"; exit 1
fi
t_build=$((SECONDS - t1))
say "image built in ${t_build} s"

# 3. The tiny model, made by the image's dsa-mkmodel; an API-key file.
mkdir -p "$TMP/models"
if ! timeout 120 "${P[@]}" run --rm --network none "${LIMITS[@]}" --user root \
    -v "$TMP/models:/models" --entrypoint dsa-mkmodel "$IMAGE" --out /models/tiny \
    --heads 4 --inter 128 --moe-inter 32 --vocab 512 --layers 2 --hidden 64 --seed 11 \
    >"$TMP/mk.log" 2>&1; then
  cat "$TMP/mk.log"; say "FAIL: dsa-mkmodel in the image"; exit 1
fi
chmod -R a+rX "$TMP/models"
echo sk-image-test >"$TMP/api-keys"
chmod 644 "$TMP/api-keys"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

# 4. Start it as documented (docs/deploy.md), the CPU layout TP=2 x PP=2.
t2=$SECONDS
if ! "${P[@]}" run -d --name "$NAME" --network host --shm-size 256m "${LIMITS[@]}" \
    -v "$TMP/models/tiny:/model:ro" -v "$TMP/api-keys:/run/secrets/api-keys:ro" \
    -e DSA_PORT="$port" -e DSA_TP=2 -e DSA_PP=2 -e DSA_SERVED_MODEL_NAME=tiny \
    "$IMAGE" --log-format text --max-model-len 256 >"$TMP/run.log" 2>&1; then
  cat "$TMP/run.log"; say "FAIL: podman run"; exit 1
fi
logs() { "${P[@]}" logs "$NAME" 2>&1 | tail -"${1:-30}"; }
running() { [ "$("${P[@]}" inspect -f '{{.State.Running}}' "$NAME" 2>/dev/null)" = true ]; }
code=000
for _ in $(seq 1 180); do
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/health")
  [ "$code" = 200 ] && break
  running || break
  sleep 1
done
[ "$code" = 200 ] || { logs; say "FAIL: /health answered $code"; exit 1; }
t_health=$((SECONDS - t2))
# read the logs whole first: `podman logs | grep -q` fails under pipefail
# when grep exits at the match and podman then writes into the closed pipe
head_log=$("${P[@]}" logs "$NAME" 2>&1)
case $head_log in *"TP=2 x PP=2"*) ;; *) logs 60; say "FAIL: not TP=2 x PP=2"; exit 1 ;; esac
# The image's own HEALTHCHECK (curl inside the container).
timeout 30 "${P[@]}" healthcheck run "$NAME" >"$TMP/hc.log" 2>&1 \
  || { cat "$TMP/hc.log"; say "FAIL: the image's HEALTHCHECK"; exit 1; }

body='{"model":"tiny","messages":[{"role":"user","content":"Hello"}],"max_tokens":4}'
ok=$(curl -s -o "$TMP/chat.json" -w '%{http_code}' --max-time 60 -H "Authorization: Bearer sk-image-test" \
  -H 'Content-Type: application/json' -d "$body" "http://127.0.0.1:$port/v1/chat/completions")
if [ "$ok" != 200 ] || ! python3 - "$TMP/chat.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
m = r["choices"][0]["message"]
assert r["object"] == "chat.completion" and r["model"] == "tiny", r
assert m["role"] == "assistant" and isinstance(m["content"], str), m
assert r["usage"]["completion_tokens"] >= 1, r["usage"]
PY
then
  cat "$TMP/chat.json"; echo; logs; say "FAIL: chat completion with the key answered $ok"; exit 1
fi
noauth=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -H 'Content-Type: application/json' \
  -d "$body" "http://127.0.0.1:$port/v1/chat/completions")
[ "$noauth" = 401 ] || { say "FAIL: without a key: $noauth (want 401)"; exit 1; }

# 5. podman stop: SIGTERM to the entry point, SIGKILL only after 60 s.
t3=$SECONDS
timeout 90 "${P[@]}" stop -t 60 "$NAME" >/dev/null 2>&1
t_stop=$((SECONDS - t3))
running && { logs; say "FAIL: still running after podman stop"; exit 1; }
rc=$("${P[@]}" inspect -f '{{.State.ExitCode}}' "$NAME" 2>/dev/null)
[ "$rc" = 0 ] || { logs; say "FAIL: exit code $rc after SIGTERM (137: killed at the stop timeout)"; exit 1; }
[ "$t_stop" -lt 60 ] || { logs; say "FAIL: stop took ${t_stop} s"; exit 1; }

say "PASS: CPU image from the Dockerfile (Debian 12 base), TP=2 x PP=2 via the entry point: /health 200," \
  "chat.completion 200, no key 401, podman stop exit 0"
say "times: base ${t_base} s, build ${t_build} s, start to /health ${t_health} s, stop ${t_stop} s," \
  "total $((SECONDS - t0)) s"
