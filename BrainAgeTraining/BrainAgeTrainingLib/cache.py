"""The preparation cache: skull strip + synthetic clinical slicing + preprocessing, once, on disk.

Layout::

    CACHE/cache.json                  what the arrays were made with (PreprocessSpec, skull strip, offsets)
    CACHE/scans/<key>/offset<k>.npy   one model-ready 80x120x40 array per synthetic scan
    CACHE/scans/<key>/entry.json      written last (atomically): marks the scan done, or records why it failed

``<key>`` hashes the scan's path, size, modification time and mask, so a changed
file is prepared again. Preparation is resumable (finished scans are skipped),
runs in parallel processes with a progress bar, and the whole cache is emptied
when ``cache.json`` no longer matches (PreprocessSpec, skull strip or offsets changed).

A 3D research scan gives one synthetic thick-slice axial scan per slicing offset
(the method's step 3). A scan that is already thick-sliced (through-plane spacing
>= 1.5 x in-plane) is used as it is, once, without further slicing.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from BrainAgeLib.cpu_runtime import flush_denormals
from BrainAgeLib.io import Volume, atomic_path, load_nifti, thick_axis, to_canonical, validate_volume
from BrainAgeLib.preprocess import prepare
from BrainAgeLib.slicing import synthetic_clinical_scans
from BrainAgeLib.spec import PreprocessSpec

from .datasets import DatasetReport, Problem, ScanRecord

CACHE_FORMAT = 1


@dataclass(frozen=True)
class CachedSample:
    """One model-ready synthetic scan on disk."""

    array: str  # .npy path
    age: float
    subject: str
    scan: str  # source scan path
    offset: int  # slicing offset (-1: scan used as acquired)
    source: str = ""
    cohort: str = ""
    acquisition: str = ""


def scan_key(record: ScanRecord) -> str:
    """Stable id of a scan file version (+ mask)."""
    parts = []
    for path in (record.path, record.mask):
        if path:
            st = os.stat(path)
            parts.append(f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}")
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:20]


def choose_offsets(n: int, max_offsets: int | None) -> list[int]:
    """All offsets, or ``max_offsets`` of them evenly spread (deterministic)."""
    if max_offsets is None or max_offsets >= n:
        return list(range(n))
    return sorted({int(round(i * (n - 1) / max(1, max_offsets - 1))) for i in range(max_offsets)}) if max_offsets > 1 else [n // 2]


def resolve_skull_strip(record: ScanRecord, backend: str) -> str:
    if backend == "auto":
        return "mask" if record.mask else "hd-bet"
    return backend


def skull_strip_label(record: ScanRecord, backend: str) -> str:
    """What made the brain a model saw: the mask's tool when the data set names it (e.g. "hd-bet"), else the method."""
    method = resolve_skull_strip(record, backend)
    return record.mask_backend if method == "mask" and record.mask_backend else method


def skull_strip_record(volume: Volume, record: ScanRecord, backend: str) -> Volume:
    """The brain only (background 0): the data set's mask, or a skull-strip backend."""
    method = resolve_skull_strip(record, backend)
    if method == "mask":
        if not record.mask:
            raise ValueError("skull_strip 'mask' needs a brain mask per scan (BIDS *_brainmask or a manifest 'mask' column)")
        mask = load_nifti(record.mask)
        if mask.shape != volume.shape or not np.allclose(mask.affine, volume.affine, atol=1e-3):
            raise ValueError(f"brain mask {record.mask} does not match the scan's grid")
        return volume.with_data(np.where(mask.data > 0.5, volume.data, 0).astype(np.float32))
    from BrainAgeLib.predict import strip_skull

    brain, _, _, _ = strip_skull(volume, method)
    return brain


def prepare_record(record: ScanRecord, spec: PreprocessSpec, backend: str, max_offsets: int | None,
                   out_dir: Path, dtype: str = "float32") -> dict:
    """Prepare every synthetic scan of one record into ``out_dir``; return its entry (written by the caller)."""
    entry: dict = {"record": record.to_dict(), "samples": [], "error": None, "qc_failed": []}
    try:
        volume = load_nifti(record.path)
        validate_volume(volume)
        brain = skull_strip_record(volume, record, backend)
        if thick_axis(brain.affine).is_thick:
            scans, offsets = [to_canonical(brain)], [-1]
        else:
            scans = synthetic_clinical_scans(brain, spec.slice_gap_mm)
            offsets = choose_offsets(len(scans), max_offsets)
            scans = [scans[i] for i in offsets]
        out_dir.mkdir(parents=True, exist_ok=True)
        for offset, scan in zip(offsets, scans):
            prepared = prepare(scan, spec)
            if not prepared.passed_qc:
                entry["qc_failed"].append({"offset": offset, "reason": "; ".join(prepared.qc_messages)})
                continue
            name = f"offset{offset}.npy" if offset >= 0 else "acquired.npy"
            with atomic_path(out_dir / name) as tmp:
                with open(tmp, "wb") as handle:
                    np.save(handle, prepared.data.astype(dtype))
            entry["samples"].append({"file": name, "offset": offset, "background_fraction": prepared.background_fraction})
    except Exception as exc:  # recorded per scan; the run goes on
        entry["error"] = f"{type(exc).__name__}: {exc}"
    return entry


@flush_denormals()  # this worker process runs skull-strip networks
def _worker(args) -> tuple[str, dict]:
    record, spec_dict, backend, max_offsets, out_dir, dtype = args
    import torch

    torch.set_num_threads(1)
    entry = prepare_record(record, PreprocessSpec.from_dict(spec_dict), backend, max_offsets, Path(out_dir), dtype)
    _write_entry(Path(out_dir), entry)
    return out_dir, entry


def _write_entry(out_dir: Path, entry: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "entry.json") as tmp:
        tmp.write_text(json.dumps(entry, indent=1))


class PreparationCache:
    """Model-ready arrays of every synthetic scan of a set of records."""

    def __init__(self, directory: str | os.PathLike, spec: PreprocessSpec, skull_strip: str = "auto",
                 max_offsets: int | None = None, dtype: str = "float32") -> None:
        self.directory = Path(directory)
        self.spec = spec
        self.skull_strip = skull_strip
        self.max_offsets = max_offsets
        self.dtype = dtype
        self.invalidated = False

    @property
    def identity(self) -> dict:
        return {"format": CACHE_FORMAT, "preprocess": self.spec.to_dict(), "skull_strip": self.skull_strip,
                "max_offsets": self.max_offsets, "dtype": self.dtype}

    def open(self) -> None:
        """Create the cache, or empty it when it was made with other settings."""
        meta = self.directory / "cache.json"
        if meta.is_file():
            try:
                stored = json.loads(meta.read_text())
            except json.JSONDecodeError:
                stored = None
            if stored != json.loads(json.dumps(self.identity)):
                shutil.rmtree(self.directory / "scans", ignore_errors=True)
                self.invalidated = True
        self.directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(meta) as tmp:
            tmp.write_text(json.dumps(self.identity, indent=1))

    def entry_dir(self, record: ScanRecord) -> Path:
        return self.directory / "scans" / scan_key(record)

    def build(self, report: DatasetReport, jobs: int = 1, progress: bool = True) -> tuple[list[CachedSample], DatasetReport]:
        """Prepare what is missing; return the samples and the report with preparation problems added."""
        self.open()
        todo = [r for r in report.records if not (self.entry_dir(r) / "entry.json").is_file()]
        bar = tqdm(total=len(report.records), initial=len(report.records) - len(todo), desc="prepare", unit="scan",
                   disable=not progress, dynamic_ncols=True)
        tasks = [(r, self.spec.to_dict(), self.skull_strip, self.max_offsets, str(self.entry_dir(r)), self.dtype) for r in todo]
        if jobs <= 1 or len(tasks) <= 1:
            for task in tasks:
                entry = prepare_record(task[0], self.spec, self.skull_strip, self.max_offsets, Path(task[4]), self.dtype)
                _write_entry(Path(task[4]), entry)
                bar.update()
        else:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
                for _ in pool.map(_worker, tasks, chunksize=1):
                    bar.update()
        bar.close()
        return self.collect(report)

    def collect(self, report: DatasetReport) -> tuple[list[CachedSample], DatasetReport]:
        samples: list[CachedSample] = []
        out = DatasetReport(problems=list(report.problems))
        for record in report.records:
            folder = self.entry_dir(record)
            entry = json.loads((folder / "entry.json").read_text())
            if entry["error"]:
                out.problems.append(Problem(record.source, record.path, record.subject, entry["error"], "preparation"))
                continue
            for failed in entry["qc_failed"]:
                out.problems.append(Problem(record.source, record.path, record.subject,
                                            f"offset {failed['offset']}: {failed['reason']}", "preparation"))
            if not entry["samples"]:
                if not entry["qc_failed"]:
                    out.problems.append(Problem(record.source, record.path, record.subject, "no synthetic scan produced", "preparation"))
                continue
            out.records.append(record)
            for s in entry["samples"]:
                samples.append(CachedSample(str(folder / s["file"]), record.age, record.subject, record.path, s["offset"],
                                            record.source, record.cohort, record.acquisition))
        return samples, out


def samples_to_rows(samples: list[CachedSample]) -> list[dict]:
    return [asdict(s) for s in samples]
