"""Synthetic subjects and cohorts: who they are, and writing them as a BIDS-style folder.

Each subject has a chronological age, a **biological age** = chronological age +
an individual deviation (the true brain-age gap), and anatomy aged to the
biological age (see :mod:`.ageing`). Cohorts:

========  ================  ===============  ==============  ====================
cohort    age (y)           gap mean +- SD   MTL severity     MMSE-like
========  ================  ===============  ==============  ====================
CU        uniform 18-90     0 +- 3           0                about 29
MCI       N(73, 7) 55-90    2.5 +- 3         U(0.1, 0.4)      about 27
AD        N(75, 7) 55-92    5 +- 3           U(0.5, 1.0)      about 21
PD        N(66, 8) 45-85    2 +- 3           0                about 28
========  ================  ===============  ==============  ====================

Gaps follow the ordering reported by Kim et al. 2025 (CU 0.1-1.0, MCI 2.2,
AD 2.5-3.1, PD 2.2 y) and are somewhat larger so the signal is clear in small
synthetic cohorts. The MMSE-like score falls with atrophy:
``29.5 - 0.45 max(gap, 0) - 6 severity - 0.04 max(age - 65, 0) + N(0, 0.8)``,
rounded and clipped to 0-30.

Output: ``sub-XXX/anat/sub-XXX_T1w.nii.gz`` (int16, with skull),
``sub-XXX_T1w.json`` (protocol and ground truth), ``sub-XXX_brainmask.nii.gz``,
``sub-XXX_dseg.nii.gz`` (labels, see ``dseg.tsv``), ``sub-XXX_ageingmap.nii.gz``
(0..1, where ageing changed anatomy), and ``participants.tsv`` (+ ``.json``).
"""

from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from BrainAgeLib.io import Volume, atomic_path, save_nifti

from .ageing import LABELS, AgeingBands, AgeingRates, age_anatomy
from .anatomy import HEAD_SOURCES, HeadTemplate, load_template
from .scanner import SITES, STYLES, Acquisition, acquire, draw_acquisition, draw_pose

PARTICIPANT_COLUMNS = ("participant_id", "age", "sex", "cohort", "site", "acquisition", "biological_age", "mmse",
                       "head", "severity")


@dataclass(frozen=True)
class Cohort:
    """Age distribution, brain-age gap and medial temporal severity of a cohort."""

    name: str
    age_mean: float | None  # None: uniform over age_range
    age_sd: float
    age_range: tuple[float, float]
    gap_mean: float
    gap_sd: float
    severity: tuple[float, float]


COHORTS = {
    "CU": Cohort("CU", None, 0.0, (18.0, 90.0), 0.0, 3.0, (0.0, 0.0)),
    "MCI": Cohort("MCI", 73.0, 7.0, (55.0, 90.0), 2.5, 3.0, (0.1, 0.4)),
    "AD": Cohort("AD", 75.0, 7.0, (55.0, 92.0), 5.0, 3.0, (0.5, 1.0)),
    "PD": Cohort("PD", 66.0, 8.0, (45.0, 85.0), 2.0, 3.0, (0.0, 0.0)),
}


@dataclass(frozen=True)
class CohortSpec:
    """What to generate."""

    subjects: int
    seed: int = 0
    cohorts: tuple[str, ...] = ("CU",)
    styles: tuple[str, ...] = STYLES
    heads: tuple[str, ...] = tuple(HEAD_SOURCES)
    wmh: bool = True
    individual_warp_mm: float = 1.5
    thickness_mm: tuple[float, float] = (5.0, 7.0)  # clinical slice thickness range
    gap_probability: float = 0.5  # clinical: chance of a gap between slices
    age_range: tuple[float, float] | None = None  # overrides every cohort's age range (uniform)
    sites: tuple[str, ...] = tuple(s.name for s in SITES)


@dataclass(frozen=True)
class SubjectSpec:
    """One synthetic subject (everything random is drawn here, from (seed, index))."""

    participant_id: str
    index: int
    age: float
    sex: str
    cohort: str
    site: str
    acquisition: str
    biological_age: float
    mmse: int
    head: str
    severity: float
    seed: int


def mmse_like(gap: float, severity: float, age: float, rng: np.random.Generator) -> int:
    """MMSE-like score (0-30) falling with atrophy (gap, MTL severity) and age."""
    score = 29.5 - 0.45 * max(gap, 0.0) - 6.0 * severity - 0.04 * max(age - 65.0, 0.0) + rng.normal(0, 0.8)
    return int(np.clip(np.round(score), 0, 30))


def draw_subject(spec: CohortSpec, index: int) -> SubjectSpec:
    """Draw subject ``index`` of the cohort; depends only on (seed, index)."""
    rng = np.random.default_rng([spec.seed, index, 0])
    cohort = COHORTS[spec.cohorts[index % len(spec.cohorts)]]
    style = spec.styles[(index // len(spec.cohorts)) % len(spec.styles)]
    lo, hi = spec.age_range or cohort.age_range
    if cohort.age_mean is None or spec.age_range is not None:
        age = rng.uniform(lo, hi)
    else:
        age = float(np.clip(rng.normal(cohort.age_mean, cohort.age_sd), lo, hi))
    gap = rng.normal(cohort.gap_mean, cohort.gap_sd)
    severity = float(rng.uniform(*cohort.severity))
    sex = "M" if rng.random() < 0.5 else "F"
    return SubjectSpec(
        participant_id=f"sub-{index + 1:04d}", index=index, age=round(float(age), 1), sex=sex, cohort=cohort.name,
        site=spec.sites[int(rng.integers(len(spec.sites)))], acquisition=style,
        biological_age=round(float(age + gap), 1), mmse=mmse_like(gap, severity, age, rng),
        head=spec.heads[int(rng.integers(len(spec.heads)))], severity=round(severity, 3),
        seed=int(rng.integers(2**31)),
    )


class TemplateBank:
    """Prepared heads and their ageing bands, loaded once per process."""

    def __init__(self, data_dir: Path | None = None) -> None:
        self.data_dir = data_dir
        self._items: dict[str, tuple[HeadTemplate, AgeingBands]] = {}

    def get(self, name: str) -> tuple[HeadTemplate, AgeingBands]:
        if name not in self._items:
            tpl = load_template(name, self.data_dir)
            self._items[name] = (tpl, AgeingBands.from_template(tpl))
        return self._items[name]


def generate_subject(
    subject: SubjectSpec, spec: CohortSpec, bank: TemplateBank, *, style: str | None = None,
    acquisition: Acquisition | None = None, biological_age: float | None = None,
):
    """Age and image one subject; returns the :class:`~.scanner.Scan` and the sidecar dict.

    ``style``, ``acquisition`` and ``biological_age`` override the drawn values (for
    montages and tests).
    """
    tpl, bands = bank.get(subject.head)
    rng = np.random.default_rng([subject.seed, 1])
    age = subject.biological_age if biological_age is None else biological_age
    aged = age_anatomy(tpl, bands, age, severity=subject.severity, wmh=spec.wmh, rng=rng)
    pose = draw_pose(rng, subject.sex, warp_mm=spec.individual_warp_mm)
    site = next(s for s in SITES if s.name == subject.site)
    acq = acquisition or draw_acquisition(rng, style or subject.acquisition, site, thickness=spec.thickness_mm,
                                          gap_probability=spec.gap_probability)
    scan = acquire(tpl, aged, pose, acq)
    sidecar = {
        "Manufacturer": "SlicerBrainAge synthetic", "MRAcquisitionType": "3D" if acq.style == "research3d" else "2D",
        "AcquisitionStyle": acq.style, "SliceThickness": acq.slice_thickness_mm,
        "SpacingBetweenSlices": acq.slice_spacing_mm, "PixelSpacing": acq.spacing_mm, "Site": subject.site,
        "GroundTruth": {"age": subject.age, "biological_age": age, "cohort": subject.cohort,
                        "severity": subject.severity, "head": subject.head, "ageing": aged.amounts,
                        "pose": asdict(pose), "contrast": {"gm": acq.gm, "csf": acq.csf, "bias": acq.bias,
                                                           "noise": acq.noise}},
    }
    return scan, sidecar


def write_subject(subject: SubjectSpec, spec: CohortSpec, out_dir: Path, bank: TemplateBank) -> dict:
    """Generate one subject and write its files; returns its participants.tsv row."""
    scan, sidecar = generate_subject(subject, spec, bank)
    anat = Path(out_dir) / subject.participant_id / "anat"
    stem = anat / subject.participant_id
    aff = scan.grid.affine
    save_nifti(Volume(np.clip(np.round(scan.image), 0, 32767), aff), f"{stem}_T1w.nii.gz", dtype=np.int16)
    save_nifti(Volume((scan.labels > 0).astype(np.uint8), aff), f"{stem}_brainmask.nii.gz", dtype=np.uint8)
    save_nifti(Volume(scan.labels, aff), f"{stem}_dseg.nii.gz", dtype=np.uint8)
    save_nifti(Volume(scan.ageing_map, aff), f"{stem}_ageingmap.nii.gz", dtype=np.float32)
    _write_text(f"{stem}_T1w.json", json.dumps(sidecar, indent=1))
    return {k: getattr(subject, k) for k in PARTICIPANT_COLUMNS}


def _write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


_BANK: TemplateBank | None = None  # one per worker process


def _init_worker(data_dir: Path | None) -> None:
    global _BANK
    import torch

    torch.set_num_threads(1)
    _BANK = TemplateBank(data_dir)


def _work(args: tuple[SubjectSpec, CohortSpec, str]) -> dict:
    subject, spec, out_dir = args
    assert _BANK is not None
    return write_subject(subject, spec, Path(out_dir), _BANK)


def write_cohort(
    spec: CohortSpec, out_dir: str | os.PathLike, *, jobs: int = 2, data_dir: Path | None = None,
    overwrite: bool = False, progress: bool = True,
) -> pd.DataFrame:
    """Generate ``spec.subjects`` subjects into ``out_dir`` (BIDS-style), ``jobs`` processes in parallel."""
    out = Path(out_dir)
    if (out / "participants.tsv").exists() and not overwrite:
        raise FileExistsError(f"{out} already holds a cohort (participants.tsv); choose another folder or overwrite.")
    for c in spec.cohorts:
        if c not in COHORTS:
            raise ValueError(f"unknown cohort {c!r}; choose from {sorted(COHORTS)}")
    out.mkdir(parents=True, exist_ok=True)
    for name in spec.heads:  # prepare (and cache) the heads once, before the workers start
        load_template(name, data_dir)
    subjects = [draw_subject(spec, i) for i in range(spec.subjects)]
    tasks = [(s, spec, str(out)) for s in subjects]
    bar = tqdm(total=len(tasks), desc="synth", unit="subject", disable=not progress)
    rows = []
    if jobs <= 1:
        _init_worker(data_dir)
        for t in tasks:
            rows.append(_work(t))
            bar.update()
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                                 initargs=(data_dir,)) as pool:
            for row in pool.map(_work, tasks, chunksize=1):
                rows.append(row)
                bar.update()
    bar.close()
    table = pd.DataFrame(rows, columns=list(PARTICIPANT_COLUMNS))
    _write_text(out / "participants.tsv", table.to_csv(sep="\t", index=False))
    _write_text(out / "participants.json", json.dumps(PARTICIPANTS_JSON, indent=1))
    _write_text(out / "dseg.tsv", "index\tname\n" + "".join(f"{k}\t{v}\n" for k, v in LABELS.items()))
    _write_text(out / "dataset_description.json", json.dumps({
        "Name": "SlicerBrainAge synthetic ageing cohort", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "brainage synth", "Description": f"seed {spec.seed}"}],
        "SynthSpec": _spec_json(spec),
        "AgeingRates": asdict(AgeingRates()),
    }, indent=1))
    return table


def _spec_json(spec: CohortSpec) -> dict:
    return json.loads(json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in asdict(spec).items()}))


def ensure_cohort(spec: CohortSpec, out_dir: str | os.PathLike, *, jobs: int = 2, progress: bool = True) -> Path:
    """The cohort ``spec`` in ``out_dir``: generated once, then reused (refused if the folder holds other settings)."""
    out = Path(out_dir)
    description = out / "dataset_description.json"
    if (out / "participants.tsv").is_file() and description.is_file():
        saved = json.loads(description.read_text()).get("SynthSpec")
        if saved != _spec_json(spec):
            raise FileExistsError(f"{out} holds a synthetic cohort made with other settings; choose another folder "
                                  "or delete it")
        return out
    write_cohort(spec, out, jobs=jobs, overwrite=True, progress=progress)
    return out


PARTICIPANTS_JSON = {
    "age": {"Description": "chronological age", "Units": "year"},
    "sex": {"Levels": {"M": "male", "F": "female"}},
    "cohort": {"Levels": {"CU": "cognitively unimpaired", "MCI": "MCI-like", "AD": "AD-like", "PD": "PD-like"}},
    "site": {"Description": "synthetic scanner site (contrast, bias, noise)"},
    "acquisition": {"Levels": {"research3d": "3D T1, ~1 mm isotropic", "clinical2d": "2D axial T1, thick slices"}},
    "biological_age": {"Description": "age the anatomy was aged to (true brain age)", "Units": "year"},
    "mmse": {"Description": "MMSE-like score (0-30), falls with atrophy"},
    "head": {"Description": "real head the subject was built from"},
    "severity": {"Description": "medial temporal (AD-like) atrophy severity, 0..1"},
}
