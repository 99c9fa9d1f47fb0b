"""Montage of one synthetic head aged 20, 50, 80 and AD-like at 80, in both acquisition styles.

Run ``python -m BrainAgeTrainingLib.synth.montage [OUT.png] [--head colin27]``; it writes
``Resources/synthetic_ageing_montage.png`` by default.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .ageing import age_anatomy  # noqa: E402
from .cohort import TemplateBank  # noqa: E402
from .scanner import SITES, Acquisition, Pose, acquire  # noqa: E402

COLUMNS = (("CU, 20 y", 20.0, 0.0), ("CU, 50 y", 50.0, 0.0), ("CU, 80 y", 80.0, 0.0), ("AD-like, 80 y", 80.0, 1.0))


def _slice(image: np.ndarray, affine: np.ndarray, world: np.ndarray, axis: int) -> tuple[np.ndarray, float]:
    """2D slice through ``world`` perpendicular to voxel ``axis`` (1 coronal, 2 axial), display aspect."""
    idx = np.linalg.inv(affine) @ np.r_[world, 1.0]
    k = int(np.clip(round(idx[axis]), 0, image.shape[axis] - 1))
    plane = np.take(image, k, axis=axis)
    if affine[0, 0] < 0:  # LAS storage: flip to neurological display (patient right on the page's right)
        plane = plane[::-1]
    sp = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    other = [a for a in range(3) if a != axis]
    return plane.T, float(sp[other[1]] / sp[other[0]])


def make_montage(out: Path, head: str = "colin27") -> Path:
    tpl, bands = TemplateBank().get(head)
    site = SITES[0]
    styles = {
        "research 3D (1 mm)": Acquisition("research3d", 1.0, 1.0, 0.0, False, site.gm, site.csf, 0.1, 0.015,
                                          site.gain, seed=1),
        "clinical 2D (0.45 mm, 6 mm + 1 mm gap)": Acquisition("clinical2d", 0.45, 6.0, 1.0, False, site.gm,
                                                              site.csf, 0.1, 0.015, site.gain, seed=1),
    }
    vent = np.argwhere(tpl.vent > 0.5).mean(axis=0)
    centre = (tpl.affine @ np.r_[vent, 1.0])[:3]
    ax_world = centre + np.array([0.0, 0.0, 6.0])
    cor_world = centre + np.array([0.0, -12.0, 0.0])
    fig, axes = plt.subplots(4, len(COLUMNS), figsize=(3.2 * len(COLUMNS), 13.5), facecolor="black")
    for col, (title, age, severity) in enumerate(COLUMNS):
        aged = age_anatomy(tpl, bands, age, severity=severity, rng=np.random.default_rng(7))
        for s, (style, acq) in enumerate(styles.items()):
            scan = acquire(tpl, aged, Pose(), acq)
            vmax = np.percentile(scan.image, 99.5)
            for r, (axis, world, plane) in enumerate(((2, ax_world, "axial"), (1, cor_world, "coronal"))):
                img, aspect = _slice(scan.image, scan.grid.affine, world, axis)
                a = axes[2 * s + r, col]
                a.imshow(img, origin="lower", cmap="gray", vmin=0, vmax=vmax, aspect=aspect, interpolation="none")
                a.set_xticks([])
                a.set_yticks([])
                if col == 0:
                    a.set_ylabel(f"{style}\n{plane}", color="white", fontsize=9)
                if 2 * s + r == 0:
                    a.set_title(f"{title}\nventricles x{aged.amounts['ventricle_volume_ratio']:.1f}",
                                color="white", fontsize=10)
    fig.suptitle(f"Synthetic ageing of one real head ({head}); anatomy follows biological age",
                 color="white", fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80, facecolor="black")
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    root = Path(__file__).resolve().parents[2]
    p.add_argument("out", nargs="?", default=str(root / "Resources" / "synthetic_ageing_montage.png"))
    p.add_argument("--head", default="colin27")
    args = p.parse_args(argv)
    print(make_montage(Path(args.out), args.head))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
