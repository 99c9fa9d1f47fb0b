"""Region occlusion: how many years each region moves the predicted age.

A region is set to the background value (0 on the normalised model input) and the ensemble
predicts again; the effect is ``age(scan) - age(scan without the region)``: positive when the
region made the brain look older. Unlike gradient maps this is in years and needs no reading.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .regions import brain_regions


def occlusion_effects(forward: Callable[[Sequence[np.ndarray]], np.ndarray], x: np.ndarray,
                      regions: dict[str, np.ndarray] | None = None) -> dict[str, float]:
    """Years each region moves the ensemble age; ``forward`` maps model inputs to (n, folds) ages."""
    regions = brain_regions(x) if regions is None else regions
    names = list(regions)
    occluded = [np.where(regions[name], np.float32(0.0), x).astype(np.float32) for name in names]
    ages = np.asarray(forward([x, *occluded]), dtype=float).mean(axis=1)
    return {name: float(ages[0] - ages[i + 1]) for i, name in enumerate(names)}


def effects_text(effects: dict[str, float]) -> str:
    """'ventricles +3.1 y, grey matter +1.2 y, ...', largest effect first."""
    ordered = sorted(effects.items(), key=lambda item: -abs(item[1]))
    return ", ".join(f"{name.replace('_', ' ')} {value:+.1f} y" for name, value in ordered)
