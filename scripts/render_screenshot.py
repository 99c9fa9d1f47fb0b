"""Render Resources/Screenshot01.png from real outputs of the pipeline on a real head.

Slicer-like layout: axial, coronal and sagittal views of the input scan with the
brain-mask outline and the saliency heat map on the input's own grid, beside the
BrainAge panel's result table. The Slicer application cannot run here, so this
is a matplotlib rendering of the same data the module puts in the scene.

    .venv/bin/python scripts/render_screenshot.py --model PKG [--input scan.nii.gz] [--age 64] [--skull-strip hd-bet]
"""

import argparse
import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BrainAge"))
from BrainAgeLib.io import load_volume, to_canonical  # noqa: E402
from BrainAgeLib.predict import Predictor  # noqa: E402
from BrainAgeLib.report import _aspects, _brain_center, _views  # noqa: E402
from BrainAgeLib.sample_data import sample_path  # noqa: E402
from BrainAgeLib.slicing import synthetic_clinical_scans  # noqa: E402
from BrainAgeLib.summary import summary_rows  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--input", help="default: Colin27 head sliced to 7 mm axial")
    parser.add_argument("--age", type=float)
    parser.add_argument("--skull-strip", default="hd-bet")
    parser.add_argument("--out", default=str(ROOT / "Resources" / "Screenshot01.png"))
    args = parser.parse_args()
    if args.input:
        volume, name = load_volume(args.input), Path(args.input).name
    else:
        volume, name = synthetic_clinical_scans(load_volume(sample_path("colin27_head")))[0], "Colin27 head, sliced to 7 mm axial"
    predictor = Predictor(args.model, skull_strip=args.skull_strip)
    case = predictor.prepare_volume(volume)
    result = predictor.predict_case(case, args.age)
    sal = predictor.saliency(case)
    vol, mask, heat = (to_canonical(v) for v in (volume, case.brain_mask, sal.on_input))
    center = _brain_center(mask.data)
    lo, hi = np.percentile(vol.data[mask.data > 0], [1, 99])
    fig = plt.figure(figsize=(13, 6.2), facecolor="#2b2b2b")
    grid = fig.add_gridspec(2, 3, width_ratios=[1.25, 1, 1])
    panel = fig.add_subplot(grid[:, 0])
    views = [fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[0, 2]), fig.add_subplot(grid[1, 1])]
    colors = ("#c04040", "#40a040", "#c0c040")  # Slicer's red / green / yellow views
    for ax, img, m, h, aspect, title, color in zip(views, _views(vol.data, center), _views(mask.data, center), _views(heat.data, center), _aspects(vol.spacing), ("Red (axial)", "Green (coronal)", "Yellow (sagittal)"), colors):
        ax.imshow(img, cmap="gray", origin="lower", vmin=lo, vmax=hi, aspect=aspect)
        ax.imshow(np.ma.masked_less(h, 0.1), cmap="jet", origin="lower", vmin=0, vmax=1, alpha=0.45, aspect=aspect)
        ax.contour(m, levels=[0.5], colors="cyan", linewidths=0.6)
        ax.set_title(title, color="white", fontsize=9, backgroundcolor=color)
        ax.set_xticks([])
        ax.set_yticks([])
    legend = fig.add_subplot(grid[1, 2])
    legend.axis("off")
    legend.text(0, 0.9, "cyan: brain mask (segmentation 'Brain')\ncolour: saliency (" + sal.method + "),\n  foreground layer, opacity 0.45\n"
                f"saliency inside brain: {sal.inside_brain:.0%}", color="white", fontsize=9, va="top")
    panel.axis("off")
    lines = [(k, v) for k, v in summary_rows(result) if not k.startswith("  fold")]
    panel.text(0.0, 1.0, "Brain Age", color="white", fontsize=14, weight="bold", va="top")
    panel.text(0.0, 0.93, f"Input: {name}", color="#dddddd", fontsize=9, va="top")
    y = 0.85
    for key, value in lines:
        value = textwrap.fill(value, 40)  # long values (the model's label) wrap as in the panel's table
        panel.text(0.0, y, key, color="#bbbbbb", fontsize=9, va="top")
        panel.text(0.45, y, value, color="white", fontsize=9, va="top")
        y -= 0.055 + 0.035 * value.count("\n")
    fig.suptitle("Rendered from real BrainAge outputs (not a Slicer screen capture): " + result.model, color="#dddddd", fontsize=9, y=0.02)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90, facecolor=fig.get_facecolor())
    print(f"written {args.out}: predicted {result.predicted_age:.1f} y, saliency inside brain {sal.inside_brain:.0%}")


if __name__ == "__main__":
    main()
