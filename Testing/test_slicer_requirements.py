"""What the Slicer modules install: import names, Python and torch ranges, version checks (issue 11, tests 3-5).

The metadata read here is that of the distributions installed in this environment at the
pinned versions (``make test`` installs them), i.e. what pip would install inside Slicer.
"""

import importlib.metadata
import sys

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement as PipRequirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from BrainAgeLib import requirements as req

ALL = req.PIP_REQUIREMENTS + req.TRAINING_REQUIREMENTS + tuple(r for rs in req.BACKEND_REQUIREMENTS.values() for r in rs)
#: numpy bundled with each supported Slicer (Slicer SuperBuild/External_python-numpy.cmake at v5.10.0).
SLICER_NUMPY = {"3.12": "2.0.2"}


def _metadata(requirement):
    try:
        return importlib.metadata.metadata(requirement.distribution)
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"{requirement.spec} is not installed here; run scripts/setup.sh")


def _requires(meta, name, python):
    """The Requires-Dist specifiers on ``name`` that apply on ``python`` without extras."""
    out = []
    for line in meta.get_all("Requires-Dist") or []:
        dep = PipRequirement(line)
        env = {"python_version": python, "python_full_version": python + ".0", "extra": ""}
        if canonicalize_name(dep.name) == name and (dep.marker is None or dep.marker.evaluate(env)):
            out.append(dep.specifier)
    return out


@pytest.mark.parametrize("requirement", ALL, ids=lambda r: r.spec)
def test_each_import_name_belongs_to_the_distribution_it_installs(requirement):
    providers = importlib.metadata.packages_distributions().get(requirement.import_name, [])
    assert canonicalize_name(requirement.distribution) in {canonicalize_name(p) for p in providers}, (
        f"{requirement.import_name!r} is provided by {providers}, not by {requirement.distribution}")
    assert req.is_satisfied(requirement)


@pytest.mark.parametrize("requirement", ALL, ids=lambda r: r.spec)
def test_each_requirement_installs_on_every_supported_slicer_python(requirement):
    meta = _metadata(requirement)
    assert requirement.specifier.contains(meta["Version"], prereleases=True), "metadata of the pinned version"
    requires_python = SpecifierSet(meta.get("Requires-Python") or "")
    for python in req.SUPPORTED_PYTHONS:
        assert requires_python.contains(python + ".0"), f"{requirement.spec}: Requires-Python {requires_python} refuses {python}"
        for numpy in _requires(meta, "numpy", python):
            assert numpy.contains(SLICER_NUMPY[python]), f"{requirement.spec} would replace Slicer's numpy ({numpy})"


@pytest.mark.parametrize("requirement", ALL, ids=lambda r: r.spec)
def test_declared_torch_range_satisfies_every_requirement(requirement):
    ours = SpecifierSet(req.TORCH_REQUIREMENT)
    lower = min(Version(s.version) for s in ours if s.operator in (">=", "=="))
    candidates = [lower, Version(importlib.metadata.version("torch").split("+")[0])]
    assert all(ours.contains(v) for v in candidates)
    for python in req.SUPPORTED_PYTHONS:
        for theirs in _requires(_metadata(requirement), "torch", python):
            for version in candidates:
                assert theirs.contains(version), f"{requirement.spec} needs torch{theirs}; torch{ours} admits {version}"


def test_supported_slicer_pythons_and_the_5_8_message():
    assert all(req.python_supported((int(p.split(".")[0]), int(p.split(".")[1]))) for p in req.SUPPORTED_PYTHONS)
    assert not req.python_supported((3, 9))  # Slicer 5.8 ships Python 3.9.10
    assert "5.10" in req.unsupported_python_message((3, 9)) and req.unsupported_python_message((3, 12)) is None
    assert Marker("python_version >= '3.10'").evaluate({"python_version": "3.12"})


def test_torch_version_is_checked_not_only_its_presence(monkeypatch):
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "2.2.2" if name == "torch" else real(name))
    assert "needs torch>=2.8" in req.torch_problem()
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "2.8.0+cu128" if name == "torch" else real(name))
    assert req.torch_problem() is None
    monkeypatch.setitem(sys.modules, "torch", None)
    assert req.torch_problem() == "PyTorch is not installed"


def test_a_package_installed_a_moment_ago_is_seen(tmp_path, monkeypatch):
    """pip installing into a folder already on sys.path: found without a restart (caches invalidated)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    fake = req.Requirement("brainage-fake-dist>=1.0", "brainage_fake_mod")
    assert req.missing_requirements([fake]) == [fake]
    (tmp_path / "brainage_fake_mod").mkdir()
    (tmp_path / "brainage_fake_mod" / "__init__.py").write_text("")
    info = tmp_path / "brainage_fake_dist-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: brainage-fake-dist\nVersion: 1.2\n")
    assert req.missing_requirements([fake]) == []
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: brainage-fake-dist\nVersion: 0.9\n")
    assert req.missing_requirements([fake]) == [fake]  # too old counts as missing


def test_requirements_for_backends_and_training():
    names = lambda rs: [r.distribution for r in rs]  # noqa: E731
    assert "deepbet" not in names(req.requirements_for("hd-bet")) and "deepbet" in names(req.requirements_for("deepbet"))
    assert {"pyyaml", "tqdm"} <= set(names(req.requirements_for("none", training=True)))
