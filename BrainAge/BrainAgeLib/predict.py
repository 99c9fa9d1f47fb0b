"""Brain-age prediction: file or array -> skull strip -> preprocess -> fold models -> ages.

One :class:`Predictor` holds a loaded model package and serves single scans,
arrays with an affine (the Slicer module) and batches of many scans (batch
runs), recording per-stage timings and QC flags in each result. Networks run
with denormals flushed (:mod:`.cpu_runtime`); ``precision="auto"`` picks bf16 on
CPUs that have it when ages stay within 0.1 y of fp32 (:mod:`.cpu_precision`).
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from .calibration import Calibration
from .cpu_kernels import cpu_micro_batch
from .cpu_precision import TOLERANCE_Y, decision_key, native_bf16, record_precision, recorded_precision
from .cpu_runtime import flush_denormals
from .io import Volume, load_volume, validate_volume
from .model import network_ages
from .package import ModelPackage, load_package
from .preprocess import PreparedScan, prepare
from .qc_policy import KEPT_MARK, failed_qc_error, hard_failures
from .spec import PreprocessSpec
from .saliency import DEFAULT_METHOD as SALIENCY_DEFAULT
from .saliency import compute_saliency, fraction_inside, to_reference_grid
from .skullstrip import skull_strip, skull_strip_mismatch

PRECISIONS = ("fp32", "bf16", "amp", "auto")
_NO_VOXELS = np.zeros((0, 0, 0), dtype=np.float32)


@dataclass
class PreparedCase:
    """One scan after skull stripping and preprocessing, ready for the network."""

    volume: Volume  # the scan as given (original grid)
    brain_mask: Volume  # brain mask on the original grid
    prepared: PreparedScan
    skull_strip: str  # backend and version that made the mask
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class SaliencyResult:
    """A saliency map on the model grid and resampled onto the input scan's grid."""

    method: str
    model_grid: np.ndarray
    on_input: Volume  # same shape and affine as the input scan
    inside_brain: float  # share of saliency inside the brain mask


@dataclass
class PredictionResult:
    """Ages and QC for one scan; ``error`` is set (and ages are NaN) when the case failed."""

    source: str
    fold_ages: list[float] = field(default_factory=list)
    predicted_age: float = math.nan  # ensemble mean (raw)
    predicted_age_sd: float = math.nan  # spread across fold models
    chronological_age: float | None = None
    corrected_age: float | None = None  # after age-bias correction
    brain_age_gap: float | None = None  # corrected_age - chronological_age
    raw_gap: float | None = None  # predicted_age - chronological_age (no correction)
    passed_qc: bool = False
    qc_flags: list[str] = field(default_factory=list)
    background_fraction: float = math.nan
    skull_strip: str = ""
    model: str = ""
    calibration: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    age_flag: str = ""  # set when the ages of a failed-QC scan were kept on request (qc_policy.KEPT_MARK)

    def to_row(self) -> dict:
        """Flat dict for CSV/table output."""
        row = asdict(self)
        row["fold_ages"] = ";".join(f"{a:.3f}" for a in self.fold_ages)
        row["qc_flags"] = " | ".join(self.qc_flags)
        timings = row.pop("timings")
        row.update({f"time_{k}_s": round(v, 4) for k, v in timings.items()})
        return row


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class Predictor:
    """A loaded model package plus the settings to run it."""

    def __init__(
        self,
        package: ModelPackage | str | os.PathLike,
        *,
        device: str | None = None,
        precision: str = "fp32",
        channels_last: bool = False,
        calibration: Calibration | None = None,
        skull_strip: str = "hd-bet",
        allow_non_axial: bool = False,
        keep_failed_qc: bool = False,
        mirror_average: bool | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
        self.device = torch.device(device or default_device())
        if precision == "amp" and self.device.type != "cuda":
            raise ValueError("precision 'amp' (float16 autocast) needs a CUDA device; use 'fp32' or 'bf16' on CPU")
        t0 = time.perf_counter()
        if isinstance(package, ModelPackage):
            self.package = package
            self.models = [m.to(self.device).eval() for m in package.models]
        else:  # loaded here: already on the device, in eval mode
            self.package = load_package(package, device=self.device)
            self.models = list(self.package.models)
        self.load_seconds = time.perf_counter() - t0
        self._precision_check: str | None = None  # decision key while an 'auto' bf16 choice is unverified
        if precision == "auto":
            precision, self._precision_check = self._auto_precision()
            channels_last = precision == "bf16"
        self.precision = precision
        self.channels_last = False
        self._set_channels_last(channels_last)
        card = self.package.card
        self.spec = card.preprocess_spec
        self.micro_batch = cpu_micro_batch(self.models[0], self.spec.roi_size) if self.device.type == "cpu" else 1 << 30
        self.calibration = calibration or (Calibration.from_dict(card.calibration) if card.calibration else None)
        self.skull_strip_backend = skull_strip
        self.allow_non_axial = allow_non_axial
        self.keep_failed_qc = keep_failed_qc  # give ages to scans with a hard QC failure (marked in age_flag)
        # each fold's age = mean of the scan's and its mirror image's (model.network_ages);
        # None: as the model card says (``test_time.mirror_average``), else off
        self.mirror_average = bool((card.test_time or {}).get("mirror_average", False)
                                   if mirror_average is None else mirror_average)
        folds = [f.get("metrics", {}).get("cv_fold", index) for index, f in enumerate(card.folds)]
        fold_ids = list(dict.fromkeys(folds))  # a package may hold several networks per fold
        # saliency by default explains the first network listed for each fold (see :meth:`saliency`)
        several = len(folds) == len(self.models) > len(fold_ids)
        self.saliency_models = [self.models[folds.index(k)] for k in fold_ids] if several else self.models
        per_fold = f" x {len(self.models) // len(fold_ids)} networks" if len(self.models) > len(fold_ids) else ""
        self.model_label = (f"{card.name} {card.version} ({len(fold_ids)} fold{'s' if len(fold_ids) > 1 else ''}{per_fold}"
                            f"{', mirror-averaged' if self.mirror_average else ''})")  # the output's model column

    def _auto_precision(self) -> tuple[str, str | None]:
        """('bf16' or 'fp32', key of a check still to make): bf16 only on CPUs with native bf16."""
        if self.device.type != "cpu" or not native_bf16():
            return "fp32", None
        key = decision_key([str(f.get("sha256", "")) for f in self.package.card.folds])
        recorded = recorded_precision(key)
        if recorded in ("fp32", "bf16"):
            return recorded, None
        return "bf16", key

    def _set_channels_last(self, enabled: bool) -> None:
        if enabled != self.channels_last:
            layout = torch.channels_last_3d if enabled else torch.contiguous_format
            self.models = [m.to(memory_format=layout) for m in self.models]
        self.channels_last = enabled

    # -- preparation -------------------------------------------------------------------------------
    def prepare_volume(self, volume: Volume, *, validated: bool = False) -> PreparedCase:
        """Check (unless ``validated``), skull strip and preprocess one scan (raises BrainAgeInputError on bad input)."""
        case = prepare_case(
            volume, self.spec, self.skull_strip_backend, device=str(self.device),
            allow_non_axial=self.allow_non_axial, validated=validated,
        )
        trained_with = (self.package.card.skull_strip or {}).get("backend")
        if skull_strip_mismatch(trained_with, self.skull_strip_backend):
            case.warnings.append(
                f"skull-strip-mismatch: the model's training scans were skull stripped with '{trained_with}' but this scan with "
                f"'{self.skull_strip_backend}'; ages may shift"
            )
        return case

    # -- network -----------------------------------------------------------------------------------
    def _input_tensor(self, arrays: Sequence[np.ndarray]) -> torch.Tensor:
        x = torch.as_tensor(np.stack(arrays)[:, None], dtype=torch.float32, device=self.device)
        return x.contiguous(memory_format=torch.channels_last_3d) if self.channels_last else x

    def _autocast(self, precision: str):
        if precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        if precision == "amp":
            return torch.autocast("cuda", dtype=torch.float16)
        return torch.autocast(self.device.type, enabled=False)

    def _ages(self, x: torch.Tensor, precision: str, models: Sequence[torch.nn.Module] | None = None) -> np.ndarray:
        parts = x.split(self.micro_batch)  # on CPU, passes small enough to stay in cache (cpu_kernels.cpu_micro_batch)
        with self._autocast(precision):
            outputs = [torch.cat([network_ages(m, part, self.mirror_average) for part in parts]) for m in models or self.models]
        return torch.stack(outputs, dim=1).cpu().numpy().astype(float)

    @torch.inference_mode()
    def forward(self, arrays: Sequence[np.ndarray], models: Sequence[torch.nn.Module] | None = None) -> np.ndarray:
        """Raw ages, shape (n_scans, n_networks), of every network or of ``models`` (some of them).

        Under ``precision="auto"`` the first call also runs fp32 and keeps bf16 only
        if no age moved by more than ``TOLERANCE_Y`` (the choice is remembered).
        """
        x = self._input_tensor(arrays)
        with flush_denormals():
            ages = self._ages(x, self.precision, models)
            if self._precision_check is not None and models is None:
                reference = self._ages(x, "fp32")
                difference = float(np.max(np.abs(ages - reference)))
                chosen = "bf16" if difference <= TOLERANCE_Y else "fp32"
                record_precision(self._precision_check, chosen, difference)
                self._precision_check = None
                if chosen == "fp32":
                    self.precision, ages = "fp32", reference
                    with torch.inference_mode(False):  # new weight tensors must stay usable by autograd (saliency)
                        self._set_channels_last(False)
        return ages

    # -- results -----------------------------------------------------------------------------------
    def _result(self, case: PreparedCase, fold_ages: np.ndarray, age: float | None, timings: dict) -> PredictionResult:
        flags = list(case.prepared.qc_messages) + list(case.warnings)
        failures = hard_failures(flags)
        result = PredictionResult(
            source=case.volume.source,
            chronological_age=age,
            passed_qc=not failures,
            qc_flags=flags,
            background_fraction=case.prepared.background_fraction,
            skull_strip=case.skull_strip,
            model=self.model_label,
            timings=timings,
        )
        if failures and not self.keep_failed_qc:  # no silent ages: the row says why there is none
            result.error = failed_qc_error(failures)
            return result
        result.age_flag = KEPT_MARK if failures else ""
        mean = float(np.mean(fold_ages))
        result.fold_ages = [float(a) for a in fold_ages]
        result.predicted_age = mean
        result.predicted_age_sd = float(np.std(fold_ages, ddof=1)) if len(fold_ages) > 1 else 0.0
        if age is not None and np.isfinite(age):
            result.raw_gap = mean - age
            if self.calibration is not None:
                result.corrected_age = float(self.calibration.correct(mean, age))
                result.brain_age_gap = result.corrected_age - age
                result.calibration = f"{self.calibration.method} n={self.calibration.n_controls} {self.calibration.site}".strip()
        return result

    def predict_volume(self, volume: Volume, age: float | None = None) -> PredictionResult:
        """Predict one scan given as a :class:`Volume` (original orientation)."""
        return self.predict_case(self.prepare_volume(volume), age)

    def refuses(self, case: PreparedCase) -> bool:
        """True when the case has a hard QC failure and will get no age (the network is not run)."""
        return not self.keep_failed_qc and bool(hard_failures(list(case.prepared.qc_messages) + list(case.warnings)))

    def predict_case(self, case: PreparedCase, age: float | None = None) -> PredictionResult:
        """Predict one already prepared scan (no age, and the error "failed QC: ...", on a hard QC failure)."""
        if self.refuses(case):
            return self._result(case, np.zeros(0), age, dict(case.timings))
        t0 = time.perf_counter()
        ages = self.forward([case.prepared.data])[0]
        timings = {**case.timings, "forward": time.perf_counter() - t0}
        return self._result(case, ages, age, timings)

    def predict_array(self, data: np.ndarray, affine: np.ndarray, age: float | None = None, source: str = "array") -> PredictionResult:
        """Predict a scan given as voxels plus a voxel-to-RAS affine (e.g. from a Slicer volume node)."""
        return self.predict_volume(Volume(np.asarray(data, dtype=np.float32), np.asarray(affine, dtype=float), source), age)

    def predict_path(self, path: str | os.PathLike, age: float | None = None) -> PredictionResult:
        """Predict a NIfTI file."""
        t0 = time.perf_counter()
        volume = load_volume(path, allow_non_axial=self.allow_non_axial)
        read = time.perf_counter() - t0
        result = self.predict_case(self.prepare_volume(volume, validated=True), age)
        result.timings = {"read": read, **result.timings}
        return result

    def _read_and_prepare(self, source: str | os.PathLike | Volume, keep_voxels: bool) -> tuple[PreparedCase, dict]:
        """One case of :meth:`predict_many` (runs in a worker thread): read, check, skull strip, preprocess."""
        t0 = time.perf_counter()
        volume = source if isinstance(source, Volume) else load_volume(source, allow_non_axial=self.allow_non_axial)
        read = time.perf_counter() - t0
        case = self.prepare_volume(volume, validated=not isinstance(source, Volume))
        if not keep_voxels:  # only the model input is needed from here on: free the scan-sized arrays
            case = replace(case, volume=case.volume.with_data(_NO_VOXELS), brain_mask=case.brain_mask.with_data(_NO_VOXELS))
        return case, {"read": read, **case.timings}

    def predict_many(
        self,
        sources: Iterable[str | os.PathLike | Volume],
        ages: Sequence[float | None] | None = None,
        *,
        batch_size: int = 8,
        progress: Callable[[int], None] | None = None,
        on_result: Callable[[PreparedCase, PredictionResult], None] | None = None,
        prefetch: int | None = None,
        on_finished: Callable[[int, PredictionResult], None] | None = None,
    ) -> list[PredictionResult]:
        """Predict many scans, batching the network; a failing case is recorded and the rest go on.

        Results come in the order of ``sources``. The next cases are read, skull stripped and
        preprocessed (``prefetch`` of them, default ``batch_size``) while the network runs on at
        most ``batch_size`` scans at a time (on CPU: on each ``micro_batch`` as soon as it is ready).
        ``progress`` is called with the number of cases finished since the last call;
        ``on_result`` with each successful case and its result (e.g. to write saliency);
        ``on_finished`` with the index in ``sources`` and the final result of every case, failed
        ones too, as soon as it is known (before ``progress``), so a caller can save it at once.
        Any exception while reading or preparing a case (a skull-strip backend failing, ...) is
        that case's error; an interruption (KeyboardInterrupt) leaves at once, without waiting
        for the case being prepared.
        """
        sources = list(sources)
        ages = list(ages) if ages is not None else [None] * len(sources)
        results: list[PredictionResult | None] = [None] * len(sources)
        pending: list[tuple[int, PreparedCase, dict]] = []

        def finish(index: int, result: PredictionResult) -> None:
            results[index] = result
            if on_finished:
                on_finished(index, result)

        def flush() -> None:
            if not pending:
                return
            t0 = time.perf_counter()
            try:
                batch_ages = self.forward([case.prepared.data for _, case, _ in pending])
            except RuntimeError as exc:  # e.g. out of memory: record, keep going
                for index, case, _ in pending:
                    finish(index, PredictionResult(source=case.volume.source, error=f"model failed: {exc}"))
            else:
                share = (time.perf_counter() - t0) / len(pending)
                for row, (index, case, timings) in enumerate(pending):
                    result = self._result(case, batch_ages[row], ages[index], {**timings, "forward": share})
                    if on_result:
                        on_result(case, result)
                    finish(index, result)
            if progress:
                progress(len(pending))
            pending.clear()

        # Reading, skull stripping and preprocessing run in a worker thread, up to `ahead` cases in
        # advance (a bounded queue), while this thread runs the network on the batch before. On CPU
        # a batch is run as soon as one pass's worth is ready (see cpu_kernels.cpu_micro_batch).
        ahead = max(1, prefetch if prefetch is not None else batch_size)
        per_call = max(1, min(batch_size, self.micro_batch))
        queued: deque = deque()
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="brainage-prepare")
        try:
            todo = iter(enumerate(sources))

            def submit_next() -> None:
                for index, source in todo:
                    queued.append((index, source, pool.submit(self._read_and_prepare, source, on_result is not None)))
                    return

            for _ in range(ahead):
                submit_next()
            while queued:
                index, source, future = queued.popleft()
                submit_next()
                try:
                    case, timings = future.result()
                except Exception as exc:  # noqa: BLE001 - one case's failure, whatever it is, is its row's error
                    name = source.source if isinstance(source, Volume) else str(source)
                    finish(index, PredictionResult(source=name, error=f"{type(exc).__name__}: {exc}"))
                    if progress:
                        progress(1)
                    continue
                if self.refuses(case):
                    finish(index, self._result(case, np.zeros(0), ages[index], timings))
                    if progress:
                        progress(1)
                    continue
                pending.append((index, case, timings))
                if len(pending) >= per_call:
                    flush()
            flush()
        except BaseException:  # e.g. SIGINT/SIGTERM: hand back at once so the caller saves what is done
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return [r for r in results if r is not None]

    # -- saliency ----------------------------------------------------------------------------------
    def region_effects(self, case: PreparedCase, fill: str | None = None, *, all_networks: bool = False) -> dict[str, float]:
        """Years each brain region moves the ensemble age (occlusion; ``fill``: how a region is replaced, see
        :mod:`.saliency.occlusion`). Like :meth:`saliency`, of the first network of each fold unless ``all_networks``."""
        from .saliency.occlusion import DEFAULT_FILL, occlusion_effects

        models = None if all_networks or self.saliency_models is self.models else self.saliency_models
        return occlusion_effects(lambda arrays: self.forward(arrays, models), case.prepared.data, fill=fill or DEFAULT_FILL)

    def saliency(self, case: PreparedCase, method: str = SALIENCY_DEFAULT, *, all_networks: bool = False,
                 **kwargs) -> SaliencyResult:
        """Saliency of the ensemble's age on the model grid and on the original scan's grid.

        A package with several networks per fold is explained by the first network of each fold unless
        ``all_networks`` (the time grows with the number of networks: 15 compact ones take ~3x as long as 5);
        the scan is not mirror-averaged here.
        """
        x = torch.as_tensor(case.prepared.data[None, None], dtype=torch.float32, device=self.device)
        models = self.models if all_networks else self.saliency_models
        on_model_grid = compute_saliency(models, x, method, **kwargs)  # fp32: autocast is not active here
        on_input = to_reference_grid(on_model_grid, case.prepared.affine, case.volume)
        return SaliencyResult(method, on_model_grid, on_input, fraction_inside(on_input.data, case.brain_mask.data))


def prepare_case(
    volume: Volume, spec: PreprocessSpec, skull_strip: str, *, device: str = "cpu", allow_non_axial: bool = False,
    validated: bool = False,
) -> PreparedCase:
    """Check (unless ``validated`` already), skull strip and preprocess one scan for the network."""
    if not validated:
        validate_volume(volume, allow_non_axial=allow_non_axial)
    t0 = time.perf_counter()
    brain, mask, label, warnings = strip_skull(volume, skull_strip, device=device, validate=False)
    t1 = time.perf_counter()
    prepared = prepare(brain, spec)
    t2 = time.perf_counter()
    return PreparedCase(
        volume=volume,
        brain_mask=mask,
        prepared=prepared,
        skull_strip=label,
        warnings=warnings,
        timings={"skull_strip": t1 - t0, "preprocess": t2 - t1},
    )


def strip_skull(
    volume: Volume, backend: str, *, device: str = "cpu", validate: bool = True
) -> tuple[Volume, Volume, str, list[str]]:
    """Run the chosen skull-strip backend: (brain, mask, 'backend version', warnings incl. mask QC), input grid."""
    result = skull_strip(volume, backend, device=device, validate=validate)
    return result.brain, result.mask, f"{result.backend} {result.backend_version}", list(result.warnings)
