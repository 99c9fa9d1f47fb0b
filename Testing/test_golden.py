"""Golden results of every shipped model (Testing/golden/<name>-<version>.csv, made by scripts/make_golden.py):
any change to preprocessing, weights or libraries that moves an age fails here with the size of the shift;
the same scan stored in another voxel order gives the same age."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from BrainAgeLib.bundled_models import bundled_entries
from BrainAgeLib.golden_inputs import golden_input, reoriented
from BrainAgeLib.predict import Predictor

GOLDEN = Path(__file__).parent / "golden"
#: Float kernels differ slightly between CPU models (AVX2 / AVX-512); anything larger is a real change.
TOLERANCE_Y = 0.01
FAST_BACKENDS = ("none",)


def _cases():
    for entry in bundled_entries():
        table = GOLDEN / f"{entry['name']}-{entry['version']}.csv"
        if not table.is_file():
            continue
        for row in csv.DictReader(open(table)):
            marks = [] if row["skull_strip"] in FAST_BACKENDS else [pytest.mark.slow]
            yield pytest.param(entry["package"], row, id=f"{entry['name']}:{row['input']}:{row['skull_strip']}", marks=marks)


CASES = list(_cases())


def test_every_bundled_model_has_a_golden_table():
    entries = bundled_entries()
    assert entries, "no bundled model found in BrainAge/Resources/Models.json"
    for entry in entries:
        assert (GOLDEN / f"{entry['name']}-{entry['version']}.csv").is_file(), f"run scripts/make_golden.py for {entry['name']}"


@pytest.fixture(scope="module")
def predictors():
    cache = {}

    def get(package, backend):
        if (package, backend) not in cache:
            cache[package, backend] = Predictor(package, skull_strip=backend, device="cpu", precision="fp32")
        return cache[package, backend]

    return get


@pytest.mark.parametrize("package,row", CASES)
def test_golden_ages(package, row, predictors):
    result = predictors(package, row["skull_strip"]).predict_volume(golden_input(row["input"]))
    expected = [float(a) for a in row["fold_ages"].split(";")]
    shifts = [round(a - e, 4) for a, e in zip(result.fold_ages, expected)]
    assert result.error is None and len(shifts) == len(expected)
    assert max(abs(s) for s in shifts) <= TOLERANCE_Y, f"{row['input']} ({row['skull_strip']}): fold ages moved by {shifts} y"
    assert result.predicted_age == pytest.approx(float(row["predicted_age"]), abs=TOLERANCE_Y)


@pytest.mark.parametrize("code", ["LPS", "PIR", "ILA"])
def test_voxel_order_does_not_change_the_age(code, predictors):
    fast = [c for c in CASES if c.values[1]["input"] == "colin27_brain_axial7mm" and c.values[1]["skull_strip"] == "none"]
    assert fast, "the golden table lacks colin27_brain_axial7mm / none"
    package, row = fast[0].values
    result = predictors(package, "none").predict_volume(reoriented(golden_input(row["input"]), code))
    assert result.error is None
    assert result.predicted_age == pytest.approx(float(row["predicted_age"]), abs=0.05)
