#!/usr/bin/env bash
# One-time, idempotent set-up on a fresh machine: virtual environment, Python
# packages, and the real sample heads (scripts/fetch_sample_data.sh).
#
# torch==2.13.0 is installed first, pinned, with plain pip: pip takes the wheel its
# index offers for this platform. From PyPI on Linux x86-64 that is the CUDA build,
# several GB with its nvidia-* packages (it runs on CPU-only machines too); on macOS
# and Windows it is a CPU build. For the CPU-only build on a machine without a GPU:
#   BRAINAGE_TORCH=cpu make setup      # from the PyTorch CPU index (must be reachable)
#   TORCH_INDEX_URL=URL make setup     # from any other index (a mirror, a local folder)
# Other settings: VENV (default .venv), PYTHON (the python that makes it, default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
case "${BRAINAGE_TORCH:-}" in
  "") ;;
  cpu) TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu} ;;
  *) echo "setup.sh: BRAINAGE_TORCH=${BRAINAGE_TORCH} is not understood; use BRAINAGE_TORCH=cpu or leave it unset." >&2
     exit 2 ;;
esac
TORCH_INDEX_URL=${TORCH_INDEX_URL:-}
torch=(torch==2.13.0)
[ -n "$TORCH_INDEX_URL" ] && torch+=(--index-url "$TORCH_INDEX_URL")
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.brainage-setup-$( { cat pyproject.toml scripts/setup.sh; echo "$TORCH_INDEX_URL"; } | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setup.sh: installing ${torch[*]} (see scripts/setup.sh for the CPU-only build), then the packages" >&2
  # torch first, pinned, so nothing else pulls another build
  # (pip's notes about this machine's empty local index folders are filtered out; errors still fail the script)
  "$VENV/bin/pip" install -q --disable-pip-version-check "${torch[@]}" 2> >(grep -v "is ignored" >&2)
  "$VENV/bin/pip" install -q --disable-pip-version-check -e ".[test,skullstrip,slicertest]" 2> >(grep -v "is ignored" >&2)
  "$VENV/bin/python" -c "import torch, monai, nibabel, safetensors, captum, pingouin; assert torch.__version__.startswith('2.13.0'), torch.__version__"
  touch "$stamp"
fi
bash scripts/fetch_sample_data.sh
bash scripts/install_report_tools.sh  # optional: Chromium and poppler for the report rendering tests
