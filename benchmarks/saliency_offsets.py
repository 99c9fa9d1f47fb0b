"""Does a scan's saliency map depend on where the thick slices fall? Each research-3D synthetic subject is cut
into thick axial scans at every slicing offset (7 mm gap, the method's synthetic slicing); each offset's map,
brought back to the 3D grid and smoothed as displayed, is compared with the other offsets' maps (Pearson r
inside the brain, Dice of the top 10 %) and scored against the ground-truth ageing map (AUC).

    .venv/bin/brainage synth --out RUNS/synth_saliency --subjects 24 --seed 15 --cohorts CU,CU,AD,AD \
        --style research3d,clinical2d
    .venv/bin/python benchmarks/saliency_offsets.py --synth RUNS/synth_saliency --out docs/results/saliency

The model is the bundled default (``--model`` for another); true brain masks (skull strip 'none').
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
for sub in ("BrainAge", "BrainAgeTraining", "benchmarks"):
    sys.path.insert(0, str(ROOT / sub))

from BrainAgeLib.bundled_models import default_model_path  # noqa: E402
from BrainAgeLib.io import load_volume  # noqa: E402
from BrainAgeLib.predict import Predictor  # noqa: E402
from BrainAgeTrainingLib.saliency_truth import offset_consistency  # noqa: E402
from cpu_info import machine_line  # noqa: E402
from result_files import write_summary  # noqa: E402

METHODS = {"guided-backprop": {}, "integrated-gradients": {"steps": 8}}  # the paper's and the default


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--synth", type=Path, required=True)
    parser.add_argument("--model")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    predictor = Predictor(args.model or default_model_path(), skull_strip="none")
    participants = pd.read_csv(args.synth / "participants.tsv", sep="\t")
    chosen = participants[participants.acquisition == "research3d"].head(args.limit)
    rows = []
    for _, info in chosen.iterrows():
        sub, anat = info.participant_id, args.synth / info.participant_id / "anat"
        head = load_volume(anat / f"{sub}_T1w.nii.gz")
        mask = load_volume(anat / f"{sub}_brainmask.nii.gz").data > 0
        truth = load_volume(anat / f"{sub}_ageingmap.nii.gz")
        brain = head.with_data(np.where(mask, head.data, 0).astype(np.float32))
        for method, kwargs in METHODS.items():
            rows.append({"subject": sub, "cohort": info.cohort,
                         **offset_consistency(predictor, brain, truth, mask, method, **kwargs)})
            r = rows[-1]
            print(f"{sub} {info.cohort} {method}: {r['offsets']} offsets, r {r['pair_r_median']:.3f} "
                  f"(min {r['pair_r_min']:.3f}), top-10 % Dice {r['top_dice_median']:.3f}, "
                  f"AUC {r['auc_min']:.3f}-{r['auc_max']:.3f}", flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "offsets_per_scan.csv", index=False)
    summary = table.groupby("method").agg(scans=("subject", "size"), offsets=("offsets", "median"),
                                          pair_r_median=("pair_r_median", "median"), pair_r_min=("pair_r_min", "min"),
                                          top10_dice_median=("top_dice_median", "median"),
                                          top10_dice_min=("top_dice_min", "min"), auc_median=("auc_median", "median"),
                                          auc_range_median=("auc_max", "median"))
    summary["auc_range_median"] = (table.auc_max - table.auc_min).groupby(table.method).median()
    text = "\n".join([f"Model: {predictor.model_label}", machine_line(), "",
                      "Maps of one 3D scan's thick-slice versions (7 mm gap, every offset) against each other; medians over "
                      "scans of each scan's median pairwise value (min: the lowest pair of any scan); AUC range: max - min "
                      "over a scan's offsets:", summary.round(3).to_markdown()])
    write_summary(args.out, text, "offsets.md", "offsets_command.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
