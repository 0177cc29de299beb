#!/usr/bin/env bash
# pyenv-lmeval.sh - creates (or reuses) the Python virtual environment that
# runs lm-evaluation-harness (PyPI lm_eval, pinned) against the server in
# tests/integration/test_lm_eval.py.  Prints the venv's python path.
# lm_eval is installed without its declared dependencies: only what its
# `local-completions` model, the task loader, the acc/exact_match metrics
# and the results table import are added (no torch: transformers is used
# for the checkpoint's tokenizer only; ~720 MB instead of several GB).
# Location: $DSA_LMEVAL_PYENV, else ${XDG_CACHE_HOME:-~/.cache}/dsa-lmeval-pyenv.
# Exits 1 when the venv cannot be made (e.g. PyPI unreachable).
set -euo pipefail
LM_EVAL_VERSION=0.4.13
DEPS=(
  datasets==5.2.0 transformers==5.25.0 sacrebleu==2.6.0 pytablewriter==1.2.1
  aiohttp==3.14.5 tenacity==9.2.1 requests==2.34.2 tqdm==4.70.1 Jinja2==3.1.6
  more-itertools==11.2.1 sqlitedict==2.1.0 PyYAML==6.0.4 dill==0.4.1
)
VENV="${DSA_LMEVAL_PYENV:-${XDG_CACHE_HOME:-$HOME/.cache}/dsa-lmeval-pyenv}"
STAMP="$VENV/.dsa-lm_eval-$LM_EVAL_VERSION"
if [ ! -f "$STAMP" ]; then
  exec 9>"${VENV%/}.lock" 2>/dev/null || true
  flock 9 2>/dev/null || true
  if [ ! -f "$STAMP" ]; then
    python3 -m venv "$VENV" >&2
    PIP=("$VENV/bin/pip" install -q --disable-pip-version-check)
    "${PIP[@]}" --no-deps "lm_eval==$LM_EVAL_VERSION" >&2
    "${PIP[@]}" "${DEPS[@]}" >&2
    touch "$STAMP"
  fi
fi
echo "$VENV/bin/python"
