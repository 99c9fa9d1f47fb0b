"""Training augmentation with MONAI transforms (the paper's training augmentation).

Each epoch, each sample: shift by up to 10 voxels sagittally/coronally and 2
axially (``RandAffine`` translation, zero padding), mirror across the
mid-sagittal plane with p = 0.5 (``RandFlip`` on voxel axis 0, R-L after the
canonical re-orientation), gamma ~ U(0.7, 1.3) (``RandAdjustContrast``) and
intensity x U(0.7, 1.3) (``RandScaleIntensity``).

The random state of every sample is derived from (seed, fold, epoch, sample
index) alone, so results do not depend on DataLoader workers and a resumed
run draws exactly the augmentations of an uninterrupted one.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import Compose, RandAdjustContrast, RandAffine, RandFlip, RandScaleIntensity

from .config import AugmentConfig


def build_augmentation(config: AugmentConfig) -> Compose | None:
    """The MONAI pipeline for one (1, X, Y, Z) sample; None when augmentation is off."""
    if not config.enabled:
        return None
    lo_i, hi_i = config.intensity_range
    transforms = []
    if any(config.shift_voxels):
        transforms.append(RandAffine(prob=1.0, translate_range=[float(s) for s in config.shift_voxels],
                                     mode="bilinear", padding_mode="zeros"))
    if config.mirror_probability > 0:
        transforms.append(RandFlip(prob=config.mirror_probability, spatial_axis=0))
    if config.gamma_range != (1.0, 1.0):
        transforms.append(RandAdjustContrast(prob=1.0, gamma=tuple(config.gamma_range)))
    if config.intensity_range != (1.0, 1.0):
        transforms.append(RandScaleIntensity(factors=(lo_i - 1.0, hi_i - 1.0), prob=1.0))
    return Compose(transforms)


def sample_seed(seed: int, fold: int, epoch: int, index: int) -> int:
    """A 32-bit seed for one sample in one epoch (negative ``index``: other streams, e.g. -1 shuffling)."""
    return int(np.random.SeedSequence([seed, fold, epoch, index + 16]).generate_state(1)[0])


def augment(pipeline: Compose | None, data: torch.Tensor, seed: int) -> torch.Tensor:
    """Apply ``pipeline`` to a (1, X, Y, Z) tensor with a fixed random state."""
    if pipeline is None:
        return data
    pipeline.set_random_state(seed=seed)
    out = pipeline(data)
    out = out.as_tensor() if hasattr(out, "as_tensor") else torch.as_tensor(out)
    return out.to(torch.float32).contiguous()
