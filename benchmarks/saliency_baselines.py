"""Integrated gradients from different baselines, against the synthetic ageing maps.

The default baseline is an all-background (zero) input, so a dark voxel (CSF, the tissue that
ageing enlarges) has next to no attribution by construction. A blurred copy of the brain is the
usual alternative (Sturmfels et al. 2020, "Visualizing the impact of feature attribution
baselines"): the attribution then goes to the structure that blurring removes, dark or bright.
For each subject of a ``brainage synth`` cohort (true brain mask as skull strip, as in
benchmarks/saliency_truth.py): AUC against the ageing map, share inside the brain, seconds, for
the zero baseline and the brain blurred with a Gaussian of SD 1, 2 and 4 model voxels (2 mm each);
with ``--ixi``, on real scans, the share of saliency in CSF + ventricles.

    .venv/bin/python benchmarks/saliency_baselines.py --synth RUNS/synth_saliency \\
        --model shipped=BrainAge/Resources/Models/ixi-hh-densenet-ensemble-1.0.0 --model synthetic=RUNS/synth_xxs/model \\
        --out docs/results/saliency/ig_baselines
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
for sub in ("BrainAge", "BrainAgeTraining", "benchmarks"):
    sys.path.insert(0, str(ROOT / sub))

from BrainAgeLib.io import load_volume  # noqa: E402
from BrainAgeLib.predict import Predictor  # noqa: E402
from BrainAgeTrainingLib.saliency_truth import AGED_FROM, score_methods  # noqa: E402
from cpu_info import machine_line  # noqa: E402
from result_files import write_summary  # noqa: E402
from saliency_subjects import cohort_arguments, csf_shares, ixi_brains, named_predictors, true_brain  # noqa: E402

METHOD = "integrated-gradients"
STEPS = 8  # as benchmarks/saliency_truth.py
BLUR_SD_VOXELS = (1, 2, 4)


def blurred_brain(x: np.ndarray, sd_voxels: float) -> np.ndarray:
    """The brain blurred inside its own mask (normalised convolution: the background does not darken its edge)."""
    inside = x != 0
    num = ndimage.gaussian_filter(x, sd_voxels)
    den = ndimage.gaussian_filter(inside.astype(np.float32), sd_voxels)
    return np.where(inside, num / np.maximum(den, 1e-3), 0).astype(np.float32)


def baselines(x: np.ndarray) -> dict[str, np.ndarray | None]:
    return {"zero": None, **{f"blur SD {2 * s} mm": blurred_brain(x, s) for s in BLUR_SD_VOXELS}}


def subject_rows(name: str, predictor: Predictor, folder: Path, limit: int | None = None) -> list[dict]:
    participants = pd.read_csv(folder / "participants.tsv", sep="\t").set_index("participant_id")
    rows = []
    for sub, info in participants.iloc[:limit].iterrows():
        brain, mask = true_brain(folder, sub)
        truth = load_volume(folder / sub / "anat" / f"{sub}_ageingmap.nii.gz")
        case = predictor.prepare_volume(brain)
        scores = {label: score_methods(predictor, case, truth, mask.data > 0, [METHOD],
                                       **{METHOD: {"steps": STEPS, "baseline": baseline}})[0]
                  for label, baseline in baselines(case.prepared.data).items()}
        rows += [{"model": name, "subject": sub, "cohort": info["cohort"], "acquisition": info["acquisition"],
                  "baseline": label, **{k: v for k, v in vars(score).items() if k != "method"}} for label, score in scores.items()]
        print(f"{name} {sub} {info['cohort']} {info['acquisition']}: " + ", ".join(
            f"{label} {score.auc_display:.3f}" for label, score in scores.items()), flush=True)
    return rows


def ixi_rows(name: str, predictor: Predictor, folder: Path, limit: int) -> list[dict]:
    """Real scans, no ground truth: each baseline's share of saliency in CSF + ventricles (model grid)."""
    rows = []
    for sub, brain in ixi_brains(folder, limit):
        case = predictor.prepare_volume(brain)
        for label, baseline in baselines(case.prepared.data).items():
            sal = predictor.saliency(case, METHOD, steps=STEPS, baseline=baseline).model_grid
            rows.append({"model": name, "subject": sub, "baseline": label, **csf_shares(case.prepared.data, sal)})
    return rows


def paired(frame: pd.DataFrame) -> pd.DataFrame:
    """Each blurred baseline against zero on the same scans: median AUC difference and scans where it is higher."""
    wide = frame.pivot_table(index=["model", "subject"], columns="baseline", values="auc_display")
    out = []
    for model, group in wide.groupby(level="model"):
        for label in group.columns.drop("zero"):
            diff = (group[label] - group["zero"]).dropna()
            out.append({"model": model, "baseline": label, "median AUC difference": round(float(diff.median()), 3),
                        "scans higher": f"{int((diff > 0).sum())} of {len(diff)}"})
    return pd.DataFrame(out).set_index(["model", "baseline"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cohort_arguments(parser, "a brainage synth cohort with ageing maps")
    parser.add_argument("--limit", type=int, help="only the first N subjects")
    parser.add_argument("--ixi", type=Path, help="also the real IXI scans (share of saliency in CSF + ventricles)")
    parser.add_argument("--ixi-scans", type=int, default=6)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows, labels, ixi = [], [], []
    for name, predictor in named_predictors(args.model):
        labels.append(f"{name}: {predictor.model_label} (saliency of the first network of each fold)")
        rows += subject_rows(name, predictor, args.synth, args.limit)
        if args.ixi:
            ixi += ixi_rows(name, predictor, args.ixi, args.ixi_scans)
    frame = pd.DataFrame(rows)
    frame.to_csv(args.out / "baselines_per_scan.csv", index=False)
    summary = frame.groupby(["model", "baseline"], sort=False).agg(
        scans=("subject", "size"), auc_raw=("auc_raw", "median"), auc_display=("auc_display", "median"),
        inside_brain=("inside_brain", "median"), seconds=("seconds", "median"))
    by_group = frame.groupby(["model", "baseline", "acquisition"], sort=False)["auc_display"].median().unstack("acquisition")
    lines = [machine_line(), *labels, f"{frame.subject.nunique()} subjects of {args.synth.name}; integrated gradients, "
             f"{STEPS} steps; AUC of voxel saliency for aged voxels (ageing map >= {AGED_FROM}) vs the rest of the brain", "",
             "Median over scans:", summary.round(3).to_markdown(), "", "Display AUC by acquisition:",
             by_group.round(3).to_markdown(), "", "Paired against the zero baseline (display AUC, scans with an AUC):",
             paired(frame).to_markdown(), ""]
    if ixi:
        shares = pd.DataFrame(ixi)
        shares.to_csv(args.out / "ixi_csf_share.csv", index=False)
        lines += [f"Real IXI scans (n={shares.subject.nunique()}), median share of saliency in CSF + ventricles vs their share of the brain:",
                  shares.groupby(["model", "baseline"], sort=False)[["csf_share_of_saliency", "csf_share_of_brain"]]
                  .median().round(3).to_markdown(), ""]
    lines.append("reproduce: .venv/bin/python benchmarks/saliency_baselines.py " + " ".join(sys.argv[1:]))
    write_summary(args.out, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
