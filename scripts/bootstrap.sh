#!/usr/bin/env bash
# Set up .venv on a fresh machine: CPU-only torch, then gluebox with its test extras, at
# the versions pinned in requirements/ (the same ones the Docker image uses). Idempotent.
#
#   bash scripts/bootstrap.sh
#   TORCH_INDEX_URL=... PYTHON=python3.11 bash scripts/bootstrap.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check)
"${pip[@]}" install --quiet --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  # CPU-only torch from the PyTorch index (PyPI's default torch is a multi-GB CUDA build).
  "${pip[@]}" install --quiet --index-url "$TORCH_INDEX_URL" -r requirements/torch.txt
fi
"${pip[@]}" install --quiet -c requirements/lock.txt -e ".[test]"
echo "ready: $(.venv/bin/gluebox --version 2>/dev/null || echo gluebox) in .venv" >&2
