"""Render the 128 px extension icon from a real brain (Colin27 axial slice with a warm CSF highlight)."""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BrainAge"))
from BrainAgeLib.io import load_volume, to_canonical  # noqa: E402
from BrainAgeLib.sample_data import sample_path  # noqa: E402

brain = to_canonical(load_volume(sample_path("colin27_brain"))).data[:, :, 95].T
inside = brain > 0
csf = inside & (brain < np.percentile(brain[inside], 12))
fig = plt.figure(figsize=(1.28, 1.28), dpi=100)
ax = fig.add_axes([0, 0, 1, 1])
ax.imshow(brain, cmap="gray", origin="lower")
ax.imshow(np.ma.masked_where(~csf, np.ones_like(brain)), cmap="autumn", origin="lower", alpha=0.9)
ax.set_axis_off()
fig.patch.set_facecolor("black")
for target in (ROOT / "BrainAge.png", ROOT / "BrainAge" / "Resources" / "Icons" / "BrainAge.png"):
    fig.savefig(target, dpi=100, facecolor="black")
print("icon written")
