#!/bin/sh
# Creates the Python environment for tools/train (PyTorch + transformers on CPU,
# tokenizers for the BPE, matplotlib for the loss curve). Training tooling
# only: the product is C and never imports Python.
# Usage: tools/train/venv.sh [DIR]   (default ~/.cache/dsa-train-venv)
set -eu
dir=${1:-${DSA_TRAIN_VENV:-$HOME/.cache/dsa-train-venv}}
if [ ! -x "$dir/bin/python" ]; then
    python3 -m venv "$dir"
fi
"$dir/bin/pip" install --quiet --upgrade pip
"$dir/bin/pip" install --quiet \
    torch==2.15.0 transformers==5.23.0 safetensors==0.8.0 numpy==2.4.6 \
    accelerate==1.15.0 tokenizers matplotlib
"$dir/bin/python" -c 'import torch, transformers, tokenizers, matplotlib; print("torch", torch.__version__, "transformers", transformers.__version__, "tokenizers", tokenizers.__version__)'
echo "$dir"
