#!/usr/bin/env bash
# One-time, idempotent set-up on a fresh machine: virtual environment, Python
# packages (CPU torch from this machine's disk), and the real sample heads.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.brainage-setup-$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  # torch first, pinned, so nothing else pulls a multi-GB CUDA build
  # (pip's notes about this machine's empty local index folders are filtered out; errors still fail the script)
  "$VENV/bin/pip" install -q --disable-pip-version-check torch==2.13.0 2> >(grep -v "is ignored" >&2)
  "$VENV/bin/pip" install -q --disable-pip-version-check -e ".[test,skullstrip,slicertest]" 2> >(grep -v "is ignored" >&2)
  "$VENV/bin/python" -c "import torch, monai, nibabel, safetensors, captum, pingouin; assert torch.__version__.startswith('2.13.0'), torch.__version__"
  touch "$stamp"
fi
bash scripts/fetch_sample_data.sh
