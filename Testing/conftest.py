"""Shared fixtures: the real sample heads and small model packages."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
import torch

from BrainAgeLib.io import Volume, load_nifti
from BrainAgeLib.model import build_model
from BrainAgeLib.package import ModelCard, save_package
from BrainAgeLib.sample_data import sample_path

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

#: The real IXI HH data set (181 adults with ages) beside the repository, where this machine has it.
IXI = Path(__file__).resolve().parents[2] / "shared" / "data" / "ixi-hh-2mm"
needs_ixi = pytest.mark.skipif(not (IXI / "participants.tsv").is_file(), reason="the real IXI HH data set is not on this machine")


@pytest.fixture(scope="session")
def colin_head_path():
    return sample_path("colin27_head")


@pytest.fixture(scope="session")
def colin_brain_path():
    return sample_path("colin27_brain")


@pytest.fixture(scope="session")
def mni_head_path():
    return sample_path("mni152_head")


@pytest.fixture(scope="session")
def robex_head_path():
    return sample_path("robex_atlas_head")


@pytest.fixture(scope="session")
def colin_brain(colin_brain_path) -> Volume:
    return load_nifti(colin_brain_path)


@pytest.fixture(scope="session")
def mni_brain_path(tmp_path_factory, mni_head_path):
    """The MNI152 head multiplied by its reference mask: a real, LAS-ordered, brain-only scan."""
    from BrainAgeLib.io import save_nifti

    head = load_nifti(mni_head_path)
    mask = load_nifti(sample_path("mni152_mask"))
    path = tmp_path_factory.mktemp("mni") / "mni152_brain.nii.gz"
    save_nifti(head.with_data(head.data * (mask.data > 0.5)), path)
    return path


#: A tiny network of the same family (8 initial features, one layer per dense block): fast forward passes.
SMALL_CONFIG = {"init_features": 8, "growth_rate": 4, "block_config": [1, 1, 1, 1]}


def scaled_model(seed: int, center: float = 50.0, scale: float = 10.0, config: dict | None = None):
    """An untrained network whose output is moved to an age-like range (for precision checks)."""
    model = build_model(config, seed=seed)
    with torch.no_grad():
        model.class_layers.out.weight.mul_(scale)
        model.class_layers.out.bias.fill_(center)
    return model.eval()


@pytest.fixture(scope="session")
def two_fold_package(tmp_path_factory):
    """A 2-fold package of untrained (age-range) networks; ages are not meaningful, numbers are reproducible."""
    card = ModelCard(name="untrained-test", version="0.0", skull_strip={"backend": "none"})
    path = tmp_path_factory.mktemp("pkg") / "model"
    return save_package(path, [scaled_model(0), scaled_model(1)], card)


@pytest.fixture(scope="session")
def small_package(tmp_path_factory):
    """A 2-fold package of tiny untrained (age-range) networks, for tests that run many scans."""
    from BrainAgeLib.model import ARCHITECTURE, DEFAULT_CONFIG

    card = ModelCard(name="small", version="1", skull_strip={"backend": "none"},
                     architecture={"name": ARCHITECTURE, "config": {**DEFAULT_CONFIG, **SMALL_CONFIG}})
    path = tmp_path_factory.mktemp("small") / "small"
    return save_package(path, [scaled_model(seed, config=SMALL_CONFIG) for seed in (0, 1)], card)


@pytest.fixture()
def user_cache(tmp_path, monkeypatch):
    """BRAINAGE_CACHE in the test's own folder."""
    monkeypatch.setenv("BRAINAGE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def make_volume(shape=(60, 70, 50), spacing=(2.0, 2.0, 2.0), value=None, seed=0) -> Volume:
    """A synthetic 'head': a noisy ellipsoid of brain intensities inside a zero background."""
    rng = np.random.default_rng(seed)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -np.asarray(shape) * np.asarray(spacing) / 2
    grid = np.indices(shape).astype(float)
    center = (np.asarray(shape) - 1) / 2
    r = sum(((grid[i] - center[i]) / (0.4 * shape[i])) ** 2 for i in range(3))
    data = np.where(r < 1, 100 + 20 * rng.standard_normal(shape), 0).astype(np.float32)
    if value is not None:
        data[:] = value
    return Volume(data=data, affine=affine, source="synthetic")
