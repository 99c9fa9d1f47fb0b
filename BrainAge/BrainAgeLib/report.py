"""QC pictures a person can check at a glance (matplotlib, no display needed)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .io import Volume, atomic_path, to_canonical  # noqa: E402


def _views(data: np.ndarray, center: np.ndarray) -> list[np.ndarray]:
    """Axial, coronal and sagittal slices through ``center`` of a RAS array, oriented for display."""
    i, j, k = (int(round(c)) for c in center)
    return [data[:, :, k].T, data[:, j, :].T, data[i, :, :].T]


def _aspects(spacing) -> list[float]:
    sx, sy, sz = spacing
    return [sy / sx, sz / sx, sz / sy]


def _brain_center(mask: np.ndarray) -> np.ndarray:
    idx = np.argwhere(mask > 0)
    return idx.mean(axis=0) if len(idx) else (np.asarray(mask.shape) - 1) / 2


def qc_figure(
    volume: Volume,
    mask: Volume,
    model_input: np.ndarray,
    path: str | os.PathLike,
    *,
    title: str = "",
    saliency: np.ndarray | None = None,
    saliency_affine: np.ndarray | None = None,
    top_percent_shown: float = 10.0,
    lines: list[str] | None = None,
) -> Path:
    """Input with brain-mask outline, the model-ready volume, and optionally saliency on it: smoothed at
    the display scale and thresholded to its top ``top_percent_shown`` % inside the brain, with a colour bar."""
    vol, msk = to_canonical(volume), to_canonical(mask)
    rows = 3 if saliency is not None else 2
    fig, axes = plt.subplots(rows, 3, figsize=(11, 3.6 * rows), constrained_layout=True)
    center = _brain_center(msk.data)
    lo, hi = np.percentile(vol.data[msk.data > 0], [1, 99]) if np.any(msk.data > 0) else (vol.data.min(), vol.data.max())
    for ax, img, m, aspect, name in zip(axes[0], _views(vol.data, center), _views(msk.data, center), _aspects(vol.spacing), ("axial", "coronal", "sagittal")):
        ax.imshow(img, cmap="gray", origin="lower", vmin=lo, vmax=hi, aspect=aspect)
        ax.contour(m, levels=[0.5], colors="lime", linewidths=0.8)
        ax.set_title(f"input {name} + brain mask", fontsize=9)
    mcenter = (np.asarray(model_input.shape) - 1) / 2
    brain = model_input[model_input != 0]
    vmin, vmax = (float(v) for v in np.percentile(brain, [1, 99.5])) if brain.size else (0.0, 1.0)
    for ax, img, name in zip(axes[1], _views(model_input, mcenter), ("axial", "coronal", "sagittal")):
        ax.imshow(img, cmap="gray", origin="lower", vmin=vmin, vmax=vmax)
        ax.set_title(f"model input {name} (2 mm, {'x'.join(map(str, model_input.shape))})", fontsize=9)
    if saliency is not None:
        from .saliency import smooth_for_display, top_percent

        affine = saliency_affine if saliency_affine is not None else np.diag([2.0, 2.0, 2.0, 1.0])
        shown = smooth_for_display(Volume(saliency, affine)).data
        shown = np.where(top_percent(shown, top_percent_shown, model_input != 0), shown / max(float(shown.max()), 1e-12), 0.0)
        for ax, img, sal, name in zip(axes[2], _views(model_input, mcenter), _views(shown, mcenter), ("axial", "coronal", "sagittal")):
            ax.imshow(img, cmap="gray", origin="lower", vmin=vmin, vmax=vmax)
            overlay = ax.imshow(np.ma.masked_less_equal(sal, 0), cmap="hot", origin="lower", vmin=0, vmax=1, alpha=0.7)
            ax.set_title(f"saliency {name} (top {top_percent_shown:g} %, smoothed)", fontsize=9)
        fig.colorbar(overlay, ax=axes[2].tolist(), fraction=0.02, label="saliency (share of maximum)")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    import textwrap

    fig.suptitle("\n".join(textwrap.fill(line, 130) for line in [title] + (lines or [])), fontsize=10)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path
