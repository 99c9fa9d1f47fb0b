"""Saliency methods against ground truth: AUC vs the synthetic ageing maps, share inside the brain, seconds per
scan, and the years each region moves the age (occlusion); plus, on real IXI scans, the share of saliency in CSF.

    .venv/bin/brainage synth --out RUNS/synth_saliency --subjects 24 --seed 15 --cohorts CU,CU,AD,AD \
        --style research3d,clinical2d
    .venv/bin/python benchmarks/saliency_truth.py --synth RUNS/synth_saliency --ixi ../shared/data/ixi-hh-2mm \
        --out docs/results/saliency

The model is the bundled default (``--model`` for another). Synthetic scans are skull stripped with their
true brain masks (skull strip 'none' on the masked head), so the maps are judged, not the skull stripper.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
for sub in ("BrainAge", "BrainAgeTraining", "benchmarks"):
    sys.path.insert(0, str(ROOT / sub))

from BrainAgeLib.bundled_models import default_model_path  # noqa: E402
from BrainAgeLib.io import load_volume  # noqa: E402
from BrainAgeLib.predict import Predictor  # noqa: E402
from BrainAgeLib.saliency import METHODS, smooth_for_display, top_percent  # noqa: E402
from BrainAgeTrainingLib.saliency_truth import AGED_FROM, score_methods  # noqa: E402
from cpu_info import machine_line  # noqa: E402
from result_files import write_summary  # noqa: E402
from saliency_subjects import csf_shares, ixi_brains, true_brain  # noqa: E402

KWARGS = {"integrated-gradients": {"steps": 8}, "smoothgrad": {"samples": 8}}  # 2 CPU cores: 24 subjects in < 1 h


def synthetic_rows(predictor, folder: Path, limit: int | None):
    participants = pd.read_csv(folder / "participants.tsv", sep="\t").set_index("participant_id")
    rows, regions, examples = [], [], {}
    for sub in list(participants.index)[:limit]:
        brain, mask = true_brain(folder, sub)
        truth = load_volume(folder / sub / "anat" / f"{sub}_ageingmap.nii.gz")
        case = predictor.prepare_volume(brain)
        info = participants.loc[sub]
        for score in score_methods(predictor, case, truth, mask.data > 0, METHODS, **KWARGS):
            rows.append({"subject": sub, "cohort": info["cohort"], "acquisition": info["acquisition"], **vars(score)})
        t0 = time.perf_counter()
        effects = predictor.region_effects(case)
        regions.append({"subject": sub, "cohort": info["cohort"], "acquisition": info["acquisition"],
                        "seconds": time.perf_counter() - t0, **effects})
        key = (info["cohort"], info["acquisition"])
        if info["cohort"] == "AD" and key not in examples:
            examples[key] = (sub, case, truth)
        print(f"{sub} {info['cohort']} {info['acquisition']}: " + ", ".join(
            f"{r['method']} AUC {r['auc_display']:.3f}" for r in rows[-len(METHODS):]), flush=True)
    return pd.DataFrame(rows), pd.DataFrame(regions), examples


def ixi_rows(predictor, folder: Path, limit: int):
    """Real scans: share of saliency in CSF + ventricles vs the share of those voxels in the brain (model grid)."""
    rows = []
    for sub, brain in ixi_brains(folder, limit):
        case = predictor.prepare_volume(brain)
        for method in METHODS:
            sal = predictor.saliency(case, method, **KWARGS.get(method, {})).model_grid
            rows.append({"subject": sub, "method": method, **csf_shares(case.prepared.data, sal)})
    return pd.DataFrame(rows)


def figure(examples, predictor, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted(examples)
    fig, axes = plt.subplots(len(keys), len(METHODS) + 1, figsize=(3.2 * (len(METHODS) + 1), 3.4 * len(keys)), squeeze=False)
    for row, key in enumerate(keys):
        sub, case, truth = examples[key]
        volume = case.volume
        aged = (truth.data >= AGED_FROM) & (volume.data != 0)
        k = int(np.argmax(aged.sum(axis=(0, 1))))  # the axial slice with most aged brain voxels
        base = volume.data[:, :, k].T
        panels = [(f"ground truth: aged voxels (map >= {AGED_FROM})", np.where(aged, truth.data, 0))]
        for method in METHODS:
            shown = smooth_for_display(predictor.saliency(case, method, **KWARGS.get(method, {})).on_input).data
            panels.append((method, np.where(top_percent(shown, 10.0, volume.data != 0), shown, 0)))
        for col, (title, data) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(base, cmap="gray", origin="lower")
            layer = np.ma.masked_less_equal(data[:, :, k].T, 0)
            im = ax.imshow(layer, cmap="hot", origin="lower", alpha=0.75)
            ax.set_title(f"{title}\n{sub} {key[0]} {key[1]}" if col == 0 else f"{title} (top 10 %)", fontsize=8)
            ax.axis("off")
            fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--synth", type=Path, required=True)
    parser.add_argument("--ixi", type=Path)
    parser.add_argument("--ixi-scans", type=int, default=10)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--model")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    predictor = Predictor(args.model or default_model_path(), skull_strip="none")
    methods, regions, examples = synthetic_rows(predictor, args.synth, args.limit)
    methods.to_csv(args.out / "methods_per_scan.csv", index=False)
    regions.to_csv(args.out / "regions_per_scan.csv", index=False)
    summary = methods.groupby(["method"]).agg(scans=("subject", "size"), auc_raw=("auc_raw", "median"),
                                               auc_display=("auc_display", "median"), inside_brain=("inside_brain", "median"),
                                               seconds=("seconds", "median"))
    by_group = methods.groupby(["method", "cohort", "acquisition"])["auc_display"].median().unstack(["cohort", "acquisition"])
    region_means = regions.drop(columns=["subject", "seconds"]).groupby(["cohort", "acquisition"]).mean().round(2)
    lines = [f"Model: {predictor.model_label}", machine_line(), "",
             f"Median over scans (AUC of voxel saliency for aged voxels, ageing map >= {AGED_FROM}, vs the rest of the brain):",
             summary.round(3).to_markdown(), "", "Display AUC by cohort and acquisition:", by_group.round(3).to_markdown(), "",
             "Years each region moves the age (occlusion; mean over scans):", region_means.to_markdown()]
    if args.ixi:
        ixi = ixi_rows(predictor, args.ixi, args.ixi_scans)
        ixi.to_csv(args.out / "ixi_csf_share.csv", index=False)
        lines += ["", f"Real IXI scans (n={ixi.subject.nunique()}): share of saliency in CSF + ventricles vs their share of brain voxels:",
                  ixi.groupby("method")[["csf_share_of_saliency", "csf_share_of_brain"]].median().round(3).to_markdown()]
    figure(examples, predictor, args.out / "methods_vs_truth.png")
    write_summary(args.out, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
