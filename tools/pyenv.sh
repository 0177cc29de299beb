#!/usr/bin/env bash
# pyenv.sh - creates (or reuses) the Python virtual environment the
# integration tests drive the server with: the official `openai` client and
# prometheus_client (its /metrics parser), pinned.  Prints the venv's
# python path on stdout.
# Location: $DSA_PYENV, else ${XDG_CACHE_HOME:-~/.cache}/dsa-pyenv.
# Exits 1 when the venv cannot be made (e.g. PyPI unreachable).
set -euo pipefail
OPENAI_VERSION=3.63.0
PROMETHEUS_CLIENT_VERSION=0.26.0   # its text parser reads /metrics in head_compat
JSONSCHEMA_VERSION=4.25.1          # validates structured outputs in head_structured
VENV="${DSA_PYENV:-${XDG_CACHE_HOME:-$HOME/.cache}/dsa-pyenv}"
STAMP="$VENV/.dsa-openai-$OPENAI_VERSION-prometheus-$PROMETHEUS_CLIENT_VERSION-jsonschema-$JSONSCHEMA_VERSION"
if [ ! -f "$STAMP" ]; then
  exec 9>"${VENV%/}.lock" 2>/dev/null || true
  flock 9 2>/dev/null || true
  if [ ! -f "$STAMP" ]; then
    python3 -m venv "$VENV" >&2
    "$VENV/bin/pip" install -q --disable-pip-version-check "openai==$OPENAI_VERSION" \
      "prometheus_client==$PROMETHEUS_CLIENT_VERSION" "jsonschema==$JSONSCHEMA_VERSION" >&2
    touch "$STAMP"
  fi
fi
echo "$VENV/bin/python"
