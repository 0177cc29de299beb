#!/usr/bin/env bash
# xgr-venv.sh - creates (or reuses) the virtual environment that holds the
# structured-output oracle: PyPI xgrammar (the engine vLLM and SGLang use),
# with the torch and transformers it imports, and jsonschema to validate
# generations.  Pinned.  Prints the venv's python path on stdout.
# Location: $DSA_XGR_VENV, else ${XDG_CACHE_HOME:-~/.cache}/dsa-xgr-venv.
# Exits 1 when the venv cannot be made (e.g. PyPI unreachable).
set -euo pipefail
XGRAMMAR_VERSION=0.1.25
TORCH_VERSION=2.8.0
TRANSFORMERS_VERSION=4.56.1
JSONSCHEMA_VERSION=4.25.1
VENV="${DSA_XGR_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/dsa-xgr-venv}"
STAMP="$VENV/.dsa-xgrammar-$XGRAMMAR_VERSION-torch-$TORCH_VERSION"
if [ ! -f "$STAMP" ]; then
  exec 9>"${VENV%/}.lock" 2>/dev/null || true
  flock 9 2>/dev/null || true
  if [ ! -f "$STAMP" ]; then
    python3 -m venv "$VENV" >&2
    "$VENV/bin/pip" install -q --disable-pip-version-check "xgrammar==$XGRAMMAR_VERSION" \
      "torch==$TORCH_VERSION" "transformers==$TRANSFORMERS_VERSION" \
      "jsonschema==$JSONSCHEMA_VERSION" >&2
    touch "$STAMP"
  fi
fi
echo "$VENV/bin/python"
