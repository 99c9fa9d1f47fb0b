"""Shared by the saliency benchmarks: the models to compare, a ``brainage synth`` subject's true brain,
and real IXI brains.

Synthetic scans are skull stripped with their true brain masks (skull strip 'none' on the masked
head), so the benchmarks judge the maps and regions, not the skull stripper; IXI scans with the
data set's HD-BET masks (``derivatives/hd-bet``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from BrainAgeLib.io import Volume, load_volume
from BrainAgeLib.predict import Predictor
from BrainAgeLib.saliency.regions import brain_regions
from BrainAgeTrainingLib.datasets import load_datasets


def cohort_arguments(parser: argparse.ArgumentParser, synth_help: str) -> None:
    """The options every such benchmark takes: --synth COHORT, --model NAME=PACKAGE (repeatable), --out DIR."""
    parser.add_argument("--synth", type=Path, required=True, help=synth_help)
    parser.add_argument("--model", action="append", required=True, metavar="NAME=PACKAGE")
    parser.add_argument("--out", type=Path, required=True)


def named_predictors(entries: list[str]):
    """``NAME=PACKAGE`` entries -> (name, float32 Predictor without skull stripping), one at a time."""
    for entry in entries:
        name, package = entry.split("=", 1)
        yield name, Predictor(package, skull_strip="none", precision="fp32")


def true_brain(folder: Path, sub: str) -> tuple[Volume, Volume]:
    """A synthetic subject's head masked with its true brain mask, and that mask."""
    anat = folder / sub / "anat"
    head, mask = load_volume(anat / f"{sub}_T1w.nii.gz"), load_volume(anat / f"{sub}_brainmask.nii.gz")
    return head.with_data(np.where(mask.data > 0, head.data, 0).astype(np.float32)), mask


def ixi_brains(folder: Path, limit: int):
    """(subject, head masked with its brain mask) for the first ``limit`` scans, by subject, whose data set ships a
    mask (IXI: its HD-BET derivative masks, found as ``brainage train`` finds them)."""
    records = sorted((r for r in load_datasets([folder]).records if r.mask), key=lambda r: r.subject)[:limit]
    for record in records:
        head, mask = load_volume(record.path), load_volume(record.mask)
        yield record.subject.split("/")[-1], head.with_data(np.where(mask.data > 0, head.data, 0).astype(np.float32))


def csf_shares(x: np.ndarray, saliency: np.ndarray) -> dict[str, float]:
    """Share of a model-grid saliency map in CSF + ventricles, and those tissues' share of the brain's voxels."""
    regions, brain = brain_regions(x), x != 0
    csf = regions["csf"] | regions["ventricles"]
    return {"csf_share_of_saliency": float(saliency[csf].sum() / saliency[brain].sum()),
            "csf_share_of_brain": float(csf.sum() / brain.sum())}
