"""Age-bias correction against hand-computed examples."""

import numpy as np
import pytest

from BrainAgeLib.calibration import Calibration, fit_calibration, load_calibration, save_calibration, select_controls
from BrainAgeLib.errors import CalibrationError


def test_hand_computed_fit_and_correction():
    # controls: predicted = 0.5 x + 25 exactly -> a = 0.5, b = 25
    ages = np.array([20.0, 40.0, 60.0, 80.0])
    predicted = 0.5 * ages + 25
    cal = fit_calibration(predicted, ages, method="all")
    assert (cal.slope, cal.intercept) == pytest.approx((0.5, 25.0))
    # a patient aged 70 predicted 65: y' = 65 + (70 - (0.5*70 + 25)) = 65 + 10 = 75, gap +5
    assert cal.correct(65.0, 70.0) == pytest.approx(75.0)
    # controls on the line are corrected to their own age (gap 0)
    np.testing.assert_allclose(cal.correct(predicted, ages), ages)


def test_extremes_uses_youngest_and_oldest_five_percent():
    ages = np.arange(20, 80, 0.5)  # 120 controls -> 6 youngest + 6 oldest
    chosen = select_controls(ages, "extremes")
    assert sorted(ages[chosen]) == [20, 20.5, 21, 21.5, 22, 22.5, 77, 77.5, 78, 78.5, 79, 79.5]
    rng = np.random.default_rng(0)
    predicted = 0.7 * ages + 15 + rng.normal(0, 3, ages.size)
    predicted[40:80] += 30  # middle-aged outliers must not move the extremes fit
    ext = fit_calibration(predicted, ages, method="extremes")
    x, y = ages[chosen], predicted[chosen]
    slope, intercept = np.polyfit(x, y, 1)
    assert (ext.slope, ext.intercept) == pytest.approx((slope, intercept))
    assert ext.n_controls == 12 and ext.method == "extremes"
    assert fit_calibration(predicted, ages, method="all").intercept > ext.intercept + 5


def test_save_load_and_errors(tmp_path):
    cal = Calibration(0.8, 9.0, "all", 10, 20, 80, site="A")
    path = save_calibration(cal, tmp_path / "site.json")
    assert load_calibration(path) == cal
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(CalibrationError, match="brainage calibrate"):
        load_calibration(tmp_path / "bad.json")
    with pytest.raises(CalibrationError, match="at least 4"):
        fit_calibration([1, 2, 3], [1, 2, 3])
    with pytest.raises(CalibrationError, match="span"):
        fit_calibration([50, 51, 52, 53], [60, 60, 60, 60])
    with pytest.raises(CalibrationError, match="unknown"):
        fit_calibration([1, 2, 3, 4], [10, 20, 30, 40], method="median")
