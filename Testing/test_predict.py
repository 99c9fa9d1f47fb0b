"""Prediction: single, array, batch, ensemble statistics, calibration, precision."""

import json
import math

import numpy as np
import torch
import pytest

from BrainAgeLib.calibration import Calibration
from BrainAgeLib.errors import OrientationError
from BrainAgeLib.io import Volume, load_volume, save_nifti
from BrainAgeLib.predict import Predictor


@pytest.fixture(scope="module")
def predictor(two_fold_package):
    return Predictor(two_fold_package, device="cpu", skull_strip="none")


def test_single_scan_result_is_consistent(predictor, colin_brain_path):
    r = predictor.predict_path(colin_brain_path, age=40.0)
    assert r.error is None and r.passed_qc
    assert len(r.fold_ages) == 2 and all(math.isfinite(a) for a in r.fold_ages)
    assert r.predicted_age == pytest.approx(np.mean(r.fold_ages))
    assert r.predicted_age_sd == pytest.approx(np.std(r.fold_ages, ddof=1))
    assert r.raw_gap == pytest.approx(r.predicted_age - 40.0)
    assert r.corrected_age is None and r.brain_age_gap is None  # no calibration in the card
    assert {"read", "skull_strip", "preprocess", "forward"} <= set(r.timings)
    again = predictor.predict_path(colin_brain_path, age=40.0)
    assert again.fold_ages == r.fold_ages  # deterministic


def test_array_input_equals_file_input(predictor, colin_brain_path):
    volume = load_volume(colin_brain_path)
    a = predictor.predict_array(volume.data, volume.affine)
    b = predictor.predict_path(colin_brain_path)
    assert a.fold_ages == pytest.approx(b.fold_ages, abs=1e-6)


def test_calibration_is_applied(two_fold_package, colin_brain_path):
    cal = Calibration(slope=0.6, intercept=20.0, method="all", n_controls=10, age_min=20, age_max=80)
    p = Predictor(two_fold_package, skull_strip="none", calibration=cal)
    r = p.predict_path(colin_brain_path, age=70.0)
    assert r.corrected_age == pytest.approx(r.predicted_age + 70.0 - (0.6 * 70.0 + 20.0))
    assert r.brain_age_gap == pytest.approx(r.corrected_age - 70.0)


def test_batch_equals_single_and_bad_cases_are_recorded(predictor, colin_brain_path, mni_brain_path, tmp_path):
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(b"\x1f\x8b garbage")
    colin = load_volume(colin_brain_path)
    affine = colin.affine.copy()
    affine[:3, 0] *= 6
    sagittal = tmp_path / "sagittal.nii.gz"
    save_nifti(Volume(colin.data[::6], affine), sagittal)
    results = predictor.predict_many(
        [colin_brain_path, corrupt, mni_brain_path, sagittal], [30.0, 40.0, None, 50.0], batch_size=2
    )
    assert [r.source for r in results] == [str(colin_brain_path), str(corrupt), str(mni_brain_path), str(sagittal)]
    assert results[1].error.startswith("CorruptFileError") and math.isnan(results[1].predicted_age)
    assert results[3].error.startswith("OrientationError")
    single = predictor.predict_path(mni_brain_path)
    assert results[2].fold_ages == pytest.approx(single.fold_ages, abs=1e-3)
    assert results[0].chronological_age == 30.0 and results[2].chronological_age is None
    with pytest.raises(OrientationError):
        predictor.predict_path(sagittal)


def test_channels_last_matches_fp32(two_fold_package, colin_brain_path):
    fp32 = Predictor(two_fold_package, skull_strip="none").predict_path(colin_brain_path)
    cl = Predictor(two_fold_package, skull_strip="none", channels_last=True).predict_path(colin_brain_path)
    assert np.max(np.abs(np.subtract(cl.fold_ages, fp32.fold_ages))) < 0.01
    with pytest.raises(ValueError, match="CUDA"):
        Predictor(two_fold_package, skull_strip="none", precision="amp", device="cpu")


def test_model_trained_with_other_skull_strip_is_flagged(two_fold_package, colin_brain_path):
    import json
    import shutil

    from BrainAgeLib.package import CARD_NAME

    copy = shutil.copytree(two_fold_package, two_fold_package.parent / "hdbet_trained")
    card = json.loads((copy / CARD_NAME).read_text())
    (copy / CARD_NAME).write_text(json.dumps({**card, "skull_strip": {"backend": "hd-bet"}}))
    r = Predictor(copy, skull_strip="none").predict_path(colin_brain_path)
    assert any("skull stripped with 'hd-bet'" in f for f in r.qc_flags)


@pytest.mark.slow  # bf16 is emulated on CPUs without AVX512-BF16/AMX: minutes on 2 cores
def test_bf16_stays_close_to_fp32(two_fold_package, colin_brain_path):
    fp32 = Predictor(two_fold_package, skull_strip="none").predict_path(colin_brain_path)
    bf16 = Predictor(two_fold_package, skull_strip="none", precision="bf16").predict_path(colin_brain_path)
    assert np.max(np.abs(np.subtract(bf16.fold_ages, fp32.fold_ages))) < 0.5


# --- precision 'auto' (issue 12) ----------------------------------------------------------------------


def test_auto_is_fp32_without_native_bf16(small_package, user_cache, monkeypatch, colin_brain_path):
    from BrainAgeLib import predict

    monkeypatch.setattr(predict, "native_bf16", lambda: False)
    auto = Predictor(small_package, skull_strip="none", precision="auto", device="cpu")
    assert auto.precision == "fp32" and not auto.channels_last
    fp32 = Predictor(small_package, skull_strip="none", precision="fp32", device="cpu")
    assert auto.predict_path(colin_brain_path).fold_ages == fp32.predict_path(colin_brain_path).fold_ages
    assert not (user_cache / "cpu_precision.json").exists()  # nothing to check or remember


def test_auto_checks_bf16_once_and_remembers(small_package, user_cache, monkeypatch, colin_brain_path):
    from BrainAgeLib import predict

    monkeypatch.setattr(predict, "native_bf16", lambda: True)
    fp32 = Predictor(small_package, skull_strip="none", precision="fp32").predict_path(colin_brain_path)
    first = Predictor(small_package, skull_strip="none", precision="auto")
    assert first.precision == "bf16" and first._precision_check is not None
    ages = first.predict_path(colin_brain_path).fold_ages
    record = json.loads((user_cache / "cpu_precision.json").read_text())
    (decision,) = record.values()
    difference = float(np.max(np.abs(np.subtract(ages, fp32.fold_ages))))
    assert decision["max_difference_y"] == pytest.approx(difference, abs=1e-4)
    assert decision["precision"] == ("bf16" if difference <= 0.1 else "fp32") == first.precision
    assert difference <= 0.1 or ages == fp32.fold_ages  # bf16 kept only within 0.1 y, else the fp32 ages
    second = Predictor(small_package, skull_strip="none", precision="auto")
    assert second.precision == first.precision and second._precision_check is None  # remembered, no new check
    assert second.predict_path(colin_brain_path).fold_ages == pytest.approx(ages, abs=1e-6)  # same input, same output


def test_auto_falls_back_to_fp32_when_ages_move_too_much(small_package, user_cache, monkeypatch, colin_brain_path):
    from BrainAgeLib import predict

    monkeypatch.setattr(predict, "native_bf16", lambda: True)
    monkeypatch.setattr(predict, "TOLERANCE_Y", -1.0)  # no difference is small enough
    auto = Predictor(small_package, skull_strip="none", precision="auto")
    ages = auto.predict_path(colin_brain_path).fold_ages
    assert auto.precision == "fp32" and not auto.channels_last
    fp32 = Predictor(small_package, skull_strip="none", precision="fp32")
    assert ages == fp32.predict_path(colin_brain_path).fold_ages
    case = auto.prepare_volume(load_volume(colin_brain_path))  # the models converted back still serve autograd
    np.testing.assert_allclose(auto.saliency(case).model_grid, fp32.saliency(case).model_grid, atol=1e-5)
    (decision,) = json.loads((user_cache / "cpu_precision.json").read_text()).values()
    assert decision["precision"] == "fp32"


def test_auto_on_this_cpu_keeps_the_paper_networks_ages_within_0_1_y(two_fold_package, user_cache, colin_brain_path, mni_brain_path):
    from BrainAgeLib.cpu_precision import native_bf16

    if not native_bf16():
        pytest.skip("this CPU has no native bf16: 'auto' is fp32 here")
    fp32 = Predictor(two_fold_package, skull_strip="none", precision="fp32")
    auto = Predictor(two_fold_package, skull_strip="none", precision="auto")
    for path in (colin_brain_path, mni_brain_path):
        a, b = auto.predict_path(path).fold_ages, fp32.predict_path(path).fold_ages
        assert np.max(np.abs(np.subtract(a, b))) <= 0.1
    assert auto.precision in ("bf16", "fp32")


# --- warm batch: preparation overlaps the network, bounded, in order ---------------------------------


def test_batch_prepares_ahead_in_a_worker_thread_within_the_bound(two_fold_package, colin_brain_path, mni_brain_path, monkeypatch):
    import threading

    predictor = Predictor(two_fold_package, skull_strip="none", precision="fp32")
    log = {"prepared": 0, "threads": set(), "ahead": []}
    prepare, forward = predictor._read_and_prepare, predictor.forward

    def counting_prepare(source, keep):
        log["threads"].add(threading.current_thread().name)
        out = prepare(source, keep)
        log["prepared"] += 1
        return out

    def counting_forward(arrays):
        log["ahead"].append(log["prepared"] - sum(log.get("forwarded", [0])) - len(arrays))
        log.setdefault("forwarded", []).append(len(arrays))
        return forward(arrays)

    monkeypatch.setattr(predictor, "_read_and_prepare", counting_prepare)
    monkeypatch.setattr(predictor, "forward", counting_forward)
    sources = [colin_brain_path, mni_brain_path] * 3
    results = predictor.predict_many(sources, batch_size=2, prefetch=2)
    assert [r.source for r in results] == [str(s) for s in sources]
    assert log["forwarded"] == [2, 2, 2]
    assert all(n.startswith("brainage-prepare") for n in log["threads"])
    assert max(log["ahead"]) <= 2  # never more cases waiting than `prefetch`
    single = predictor.predict_path(mni_brain_path)
    assert results[3].fold_ages == pytest.approx(single.fold_ages, abs=1e-3)


def test_batch_keeps_the_scan_for_on_result_and_frees_it_otherwise(predictor, colin_brain_path):
    kept = []
    predictor.predict_many([colin_brain_path], on_result=lambda case, result: kept.append(case.volume.shape))
    assert kept == [(181, 217, 181)]
    seen = []
    original = predictor._read_and_prepare
    predictor._read_and_prepare = lambda source, keep: seen.append(original(source, keep)[0].volume.data.size) or original(source, keep)
    try:
        predictor.predict_many([colin_brain_path])
    finally:
        del predictor._read_and_prepare
    assert seen == [0]


def test_cpu_batch_runs_each_pass_as_soon_as_it_is_ready(predictor, colin_brain_path, mni_brain_path, monkeypatch):
    sizes, forward = [], predictor.forward
    monkeypatch.setattr(predictor, "forward", lambda arrays: sizes.append(len(arrays)) or forward(arrays))
    predictor.micro_batch = 2  # the paper-sized network's CPU pass (cpu_kernels.cpu_micro_batch)
    sources = [colin_brain_path, mni_brain_path, colin_brain_path]
    results = predictor.predict_many(sources, batch_size=8)
    assert sizes == [2, 1]  # not one call of 3 after all were prepared
    assert [r.source for r in results] == [str(s) for s in sources]
    assert results[2].fold_ages == pytest.approx(results[0].fold_ages, abs=1e-3)


def test_mirror_average_is_the_mean_of_the_scan_and_its_mirror_image(small_package, colin_brain_path, tmp_path):
    """mirror_average: each fold's age is the mean of the model input's and its right-left mirror image's ages;
    the model card's test_time setting is the default, an explicit argument wins."""
    import shutil

    from BrainAgeLib.package import read_card, write_card

    plain = Predictor(small_package, skull_strip="none")
    assert plain.mirror_average is False  # a card without test_time
    case = plain.prepare_volume(load_volume(colin_brain_path))
    data = case.prepared.data
    mirrored_data = np.ascontiguousarray(data[::-1])
    expected = (plain.forward([data]) + plain.forward([mirrored_data])) / 2
    assert not np.allclose(plain.forward([data]), expected, atol=1e-3)  # the real head is not symmetric
    mirror = Predictor(small_package, skull_strip="none", mirror_average=True)
    np.testing.assert_allclose(mirror.forward([data]), expected, atol=1e-4)
    np.testing.assert_allclose(mirror.forward([data, mirrored_data])[1], expected[0], atol=1e-4)  # symmetric by construction
    result = mirror.predict_case(case)
    assert math.isclose(result.predicted_age, float(expected[0].mean()), abs_tol=1e-3)
    assert result.to_row()["model"].endswith("(2 folds, mirror-averaged)") and plain.model_label.endswith("(2 folds)")

    package = tmp_path / "mirrored"
    shutil.copytree(small_package, package)
    card = read_card(package)
    card.test_time = {"mirror_average": True}
    write_card(package, card)
    assert Predictor(package, skull_strip="none").mirror_average is True
    assert Predictor(package, skull_strip="none", mirror_average=False).mirror_average is False


def test_several_networks_per_fold_count_once_in_the_label_and_saliency_explains_one_per_fold(tmp_path, colin_brain_path):
    """A package of 2 folds x 2 networks: the age is the mean of all 4, the label says so, and the default
    saliency and region occlusion are those of the first network of each fold (all_networks: of all 4)."""
    from BrainAgeLib.model import ARCHITECTURE, DEFAULT_CONFIG
    from BrainAgeLib.package import ModelCard, save_package
    from BrainAgeLib.saliency import compute_saliency
    from conftest import SMALL_CONFIG, scaled_model

    config = {**DEFAULT_CONFIG, **SMALL_CONFIG}
    entries = [{"file": f"fold{f}-{n}.safetensors", "metrics": {"cv_fold": f}} for f in (0, 1) for n in ("a", "b")]
    card = ModelCard(name="ens", version="1", skull_strip={"backend": "none"}, folds=entries,
                     architecture={"name": ARCHITECTURE, "config": config})
    package = save_package(tmp_path / "ens", [scaled_model(seed, config=SMALL_CONFIG) for seed in range(4)], card)
    predictor = Predictor(package, skull_strip="none")
    assert predictor.model_label == "ens 1 (2 folds x 2 networks)"
    assert predictor.saliency_models == [predictor.models[0], predictor.models[2]]
    case = predictor.prepare_volume(load_volume(colin_brain_path))
    result = predictor.predict_case(case)
    assert len(result.fold_ages) == 4 and math.isclose(result.predicted_age, float(np.mean(result.fold_ages)), abs_tol=1e-4)
    x = torch.as_tensor(case.prepared.data[None, None])
    default = predictor.saliency(case, "guided-backprop").model_grid
    np.testing.assert_allclose(default, compute_saliency(predictor.saliency_models, x, "guided-backprop"), rtol=1e-5, atol=1e-9)
    every = predictor.saliency(case, "guided-backprop", all_networks=True).model_grid
    np.testing.assert_allclose(every, compute_saliency(predictor.models, x, "guided-backprop"), rtol=1e-5, atol=1e-9)
    assert not np.allclose(default, every)
    from BrainAgeLib.saliency.occlusion import occlusion_effects

    regions = predictor.region_effects(case)
    assert regions == occlusion_effects(lambda a: predictor.forward(a)[:, [0, 2]], case.prepared.data)
    assert predictor.region_effects(case, all_networks=True) == occlusion_effects(predictor.forward, case.prepared.data)
