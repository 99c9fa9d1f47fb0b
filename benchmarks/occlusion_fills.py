"""Region occlusion with each way of replacing a region, on synthetic subjects whose atrophy is known.

For every subject of a ``brainage synth`` cohort (true brain mask as skull strip, as in
benchmarks/saliency_truth.py) and every model given, the years each region moves the age
with the region set to the background value and with the region filled with its surrounding
tissue, a half of the brain with the other half's mirror image (:mod:`BrainAgeLib.saliency.occlusion`),
the region's volume, and the effect per 10 mL.
The generator enlarges the ventricles and the medial temporal CSF most in its AD-like subjects.

    .venv/bin/python benchmarks/occlusion_fills.py --synth RUNS/synth_saliency \\
        --model shipped=BrainAge/Resources/Models/ixi-hh-densenet-ensemble-1.0.0 --model synthetic=RUNS/synth_xxs/model \\
        --out docs/results/saliency/occlusion_fills
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

from BrainAgeLib.predict import Predictor  # noqa: E402
from BrainAgeLib.saliency.occlusion import FILLS, HALVES, occlusion_effects  # noqa: E402
from BrainAgeLib.saliency.regions import brain_regions  # noqa: E402
from cpu_info import machine_line  # noqa: E402
from result_files import write_summary  # noqa: E402
from saliency_subjects import cohort_arguments, named_predictors, true_brain  # noqa: E402

#: One cell of the summary: the regions of a model, cohort, acquisition style and fill are compared within it.
CELL = ["model", "cohort", "acquisition", "fill"]


def largest_region(region_means: pd.Series) -> pd.Series:
    """The region with the largest absolute mean in each cell of ``region_means`` (indexed by CELL + region)."""
    return region_means.abs().groupby(level=CELL, sort=False).idxmax().map(lambda key: key[-1])


def subject_rows(name: str, predictor: Predictor, folder: Path, cohorts: set[str]) -> list[dict]:
    participants = pd.read_csv(folder / "participants.tsv", sep="\t").set_index("participant_id")
    rows = []
    for sub, info in participants.iterrows():
        if info["cohort"] not in cohorts:
            continue
        x = predictor.prepare_volume(true_brain(folder, sub)[0]).prepared.data
        regions = brain_regions(x)
        volume_ml = {region: float(voxels.sum() * 8 / 1000) for region, voxels in regions.items()}  # 2 mm model grid
        for fill in FILLS:
            for region, years in occlusion_effects(predictor.forward, x, regions, fill=fill).items():
                rows.append({"model": name, "subject": sub, "cohort": info["cohort"], "acquisition": info["acquisition"],
                             "fill": fill, "region": region, "volume_ml": volume_ml[region], "years": years,
                             "years_per_10ml": 10 * years / volume_ml[region] if volume_ml[region] else np.nan})
        print(f"{name} {sub} {info['cohort']} {info['acquisition']}", flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cohort_arguments(parser, "a brainage synth cohort with CU and AD-like subjects")
    parser.add_argument("--cohorts", default="CU,AD", help="comma-separated cohorts to score")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows, labels = [], []
    for name, predictor in named_predictors(args.model):
        labels.append(f"{name}: {predictor.model_label}")
        rows += subject_rows(name, predictor, args.synth, set(args.cohorts.split(",")))
    frame = pd.DataFrame(rows)
    frame.to_csv(args.out / "effects_per_scan.csv", index=False)
    means = frame.groupby([*CELL, "region"], sort=False)[["volume_ml", "years", "years_per_10ml"]].mean()
    tissue = means[~means.index.get_level_values("region").isin(HALVES)]
    largest = pd.concat([largest_region(means["years"]).rename("largest |years|"),
                         largest_region(tissue["years"]).rename("largest of the tissue regions"),
                         largest_region(means["years_per_10ml"]).rename("largest |years| per 10 mL")], axis=1)
    lines = [machine_line(), *labels, f"Cohorts: {args.cohorts}; {frame.subject.nunique()} subjects of {args.synth.name}", "",
             "Mean years each region moves the age (positive: the region made the brain look older):",
             means.round(2).to_markdown(), "", largest.to_markdown(), "",
             "reproduce: .venv/bin/python benchmarks/occlusion_fills.py " + " ".join(sys.argv[1:])]
    write_summary(args.out, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
