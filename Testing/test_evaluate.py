"""brainage evaluate: every number against scipy / statsmodels / a hand computation on a fixed table."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.oneway import anova_oneway

from BrainAgeLib.calibration import load_calibration
from BrainAgeLib.cli import main
from BrainAgeTrainingLib.crossval.metrics import bootstrap_ci
from BrainAgeTrainingLib.evaluate import Columns, EvaluationError, Options, evaluate, join_participants
from BrainAgeTrainingLib.evaluate.bootstrap import bootstrap_cis
from BrainAgeTrainingLib.evaluate.crossfit import control_folds
from report_tools import chromium_screenshot, tiny_package as make_tiny_package

GAPS = {"CU": 0.0, "MCI": 2.5, "AD": 5.0}


def cohort(seed: int = 0, n=(40, 15, 15)) -> pd.DataFrame:
    """Predictions that regress to the mean (slope 0.7) with known group gaps, MMSE falling with the gap."""
    rng = np.random.default_rng(seed)
    rows = []
    for (group, gap), k in zip(GAPS.items(), n):
        for i in range(k):
            age = rng.uniform(20, 88) if group == "CU" else rng.uniform(58, 88)
            true_gap = gap + rng.normal(0, 1.5)
            rows.append({"participant_id": f"sub-{group}{i:02d}", "age": round(age, 2), "cohort": group,
                         "site": "AB"[i % 2], "sex": "FM"[(i // 2) % 2], "mmse": round(30 - 0.8 * true_gap + rng.normal(0, 0.7), 1),
                         "predicted_age": 0.7 * (age + true_gap) + 16 + rng.normal(0, 1.5)})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def tiny_package(tmp_path_factory):
    return make_tiny_package(tmp_path_factory.mktemp("pkg") / "model")


@pytest.fixture(scope="module")
def table():
    return cohort()


@pytest.fixture(scope="module")
def result(table):
    return evaluate(table, Columns(), Options(n_resamples=300))


def test_accuracy_of_controls_matches_direct_computations(table, result):
    cu = table[table["cohort"] == "CU"]
    err = cu["predicted_age"] - cu["age"]
    raw = result.numbers["accuracy"]["controls"]["raw"]
    assert raw["n"] == raw["subjects"] == 40
    assert raw["mae"] == pytest.approx(np.mean(np.abs(err)))
    assert raw["rmse"] == pytest.approx(np.sqrt(np.mean(err ** 2)))
    assert raw["mean_error"] == pytest.approx(err.mean())
    assert raw["r"] == pytest.approx(stats.pearsonr(cu["predicted_age"], cu["age"])[0])
    assert raw["r2"] == pytest.approx(1 - np.sum(err ** 2) / np.sum((cu["age"] - cu["age"].mean()) ** 2))
    assert raw["bias_slope"] == pytest.approx(stats.linregress(cu["age"], err).slope)
    assert raw["bias_slope"] < -0.2  # regression to the mean, and the correction removes it
    corrected = result.numbers["accuracy"]["controls"]["corrected (extremes)"]
    assert abs(corrected["bias_slope"]) < 0.1 and corrected["mae"] < raw["mae"]
    lo, hi = raw["mae_ci"]
    assert lo < raw["mae"] < hi
    decades = {r["decade"]: r["n"] for r in result.numbers["accuracy"]["by_decade"]}
    expected = (np.floor(cu["age"] / 10) * 10).astype(int).value_counts()
    assert decades == {f"{d}-{d + 9}": int(n) for d, n in expected.items()}
    by_site = {r["site"]: r["raw"]["mae"] for r in result.numbers["accuracy"]["by_site"]}
    assert by_site["A"] == pytest.approx(np.mean(np.abs(err[cu["site"] == "A"])))


def test_bootstrap_cis_equal_the_crossval_bootstrap_with_the_same_draws():
    rng = np.random.default_rng(5)
    subjects = np.repeat(np.arange(30), 3)  # three scans per subject move together
    age = np.repeat(rng.uniform(20, 80, 30), 3)
    frame = pd.DataFrame({"subject": subjects, "age": age, "predicted_age": 0.8 * age + 10 + rng.normal(0, 4, 90)})
    fast = bootstrap_cis(frame, "predicted_age", ("mae", "rmse", "mean_error", "r", "r2", "bias_slope"), n_resamples=400)
    for metric, ci in fast.items():
        assert ci == pytest.approx(bootstrap_ci(frame, metric, n_resamples=400), abs=1e-9), metric


def test_no_control_is_corrected_with_a_line_fitted_on_itself(table, result):
    scans = result.scans
    folds = control_folds(scans)
    assert sorted(folds.value_counts()) == [8] * 5  # 40 controls, age-stratified into 5 folds
    cu = scans[scans["is_control"]]
    for k in range(5):  # the 'all' line of fold k is scipy's fit on the other folds' controls
        rest = cu[cu["subject"].map(folds) != k]
        fit = stats.linregress(rest["age"], rest["predicted_age"])
        rows = cu[cu["calibration_fold"] == k]
        expected = rows["predicted_age"] + rows["age"] - (fit.slope * rows["age"] + fit.intercept)
        assert np.allclose(rows["corrected_all"], expected)
    # moving one control's prediction moves its corrected age by exactly as much: its own line ignores it
    moved = table.copy()
    moved.loc[0, "predicted_age"] += 30
    again = evaluate(moved, Columns(), Options(n_resamples=0))
    for method in ("extremes", "all"):
        delta = again.scans[f"corrected_{method}"] - scans[f"corrected_{method}"]
        assert delta[0] == pytest.approx(30)
    # patients get the line fitted on every control, which is the saved calibration
    saved = result.numbers["calibration"]["saved"]
    ad = scans[scans["group"] == "AD"]
    assert np.allclose(ad["corrected_age"], ad["predicted_age"] + ad["age"] - (saved["slope"] * ad["age"] + saved["intercept"]))
    assert (ad["calibration_fold"] == -1).all()
    oldest_youngest = np.sort(cu["age"])[[0, 1, -2, -1]]
    fit = stats.linregress(oldest_youngest, cu.set_index("age").loc[oldest_youngest, "predicted_age"])
    assert saved["method"] == "extremes" and saved["n_controls"] == 4  # ceil(5 % of 40) = 2 at each end
    assert saved["slope"] == pytest.approx(fit.slope) and saved["intercept"] == pytest.approx(fit.intercept)


def test_group_tests_match_hand_and_library_computations(result):
    subjects = result.subjects
    groups = result.numbers["groups"]
    gap = {g: subjects.loc[subjects["group"] == g, "gap"].to_numpy() for g in GAPS}
    ad, cu, mci = gap["AD"], gap["CU"], gap["MCI"]
    row = next(r for r in groups["versus_controls"] if r["cohort"] == "AD")
    z = (ad.mean() - cu.mean()) / math.sqrt(ad.var(ddof=1) / len(ad) + cu.var(ddof=1) / len(cu))
    assert row["z"] == pytest.approx(z) and row["p_z"] == pytest.approx(2 * stats.norm.sf(abs(z)))
    assert row["p_welch"] == pytest.approx(stats.ttest_ind(ad, cu, equal_var=False).pvalue)
    pooled = math.sqrt(((len(ad) - 1) * ad.var(ddof=1) + (len(cu) - 1) * cu.var(ddof=1)) / (len(ad) + len(cu) - 2))
    hedges = (ad.mean() - cu.mean()) / pooled * (1 - 3 / (4 * (len(ad) + len(cu)) - 9))
    assert row["hedges_g"] == pytest.approx(hedges, rel=1e-3)
    assert row["mean_gap"] > 2.0 and row["p_z"] < 1e-6  # the AD-like gap is found
    welch = anova_oneway([cu, mci, ad], use_var="unequal")
    assert groups["welch_anova"]["F"] == pytest.approx(welch.statistic)
    assert groups["welch_anova"]["p"] == pytest.approx(welch.pvalue)
    pair = next(p for p in groups["games_howell"] if {p["a"], p["b"]} == {"AD", "MCI"})
    a, b = (ad, mci) if pair["a"] == "AD" else (mci, ad)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    assert pair["t"] == pytest.approx(t) and pair["df"] == pytest.approx(df)
    assert pair["p"] == pytest.approx(stats.studentized_range.sf(abs(t) * math.sqrt(2), 3, df), rel=1e-3)
    scored = subjects.dropna(subset=["score"])
    r, p = stats.pearsonr(scored["gap"], scored["score"])
    assert groups["gap_vs_score"]["r"] == pytest.approx(r) and groups["gap_vs_score"]["p"] == pytest.approx(p)
    assert r < -0.5


def test_one_gap_per_subject_in_group_tests():
    table = cohort(seed=2)
    twice = pd.concat([table, table.assign(predicted_age=table["predicted_age"] + 0.2)], ignore_index=True)
    result = evaluate(twice, Columns(), Options(n_resamples=0))
    counts = {g["group"]: g["n"] for g in result.numbers["groups"]["groups"]}
    assert counts == {"AD": 15, "CU": 40, "MCI": 15}
    assert result.numbers["accuracy"]["controls"]["raw"]["n"] == 80


def test_missing_or_renamed_columns_say_what_to_do(table):
    with pytest.raises(EvaluationError, match=r"--group-column 'diagnosis': no such column.*cohort"):
        evaluate(table, Columns(group="diagnosis"))
    with pytest.raises(EvaluationError, match=r"no age column.*--age-column"):
        evaluate(table.rename(columns={"age": "Age_years"}), Columns())
    renamed = table.rename(columns={"age": "Age_years", "cohort": "dx_group"})
    ok = evaluate(renamed, Columns(age="Age_years", group="dx_group"), Options(n_resamples=0))
    assert ok.numbers["inputs"]["columns"]["age"] == "Age_years"
    with pytest.raises(EvaluationError, match=r"control group 'HC'.*--controls"):
        evaluate(table, Columns(), Options(controls="HC"))


def test_tiny_groups_and_few_controls(table):
    tiny = pd.concat([table[table["cohort"] != "AD"], table[table["cohort"] == "AD"].head(2)])
    with pytest.raises(EvaluationError, match=r"'AD' \(2\).*fewer than 3.*--drop-small-groups"):
        evaluate(tiny, Columns(), Options(n_resamples=0))
    dropped = evaluate(tiny, Columns(), Options(n_resamples=0, drop_small_groups=True))
    assert {r["cohort"] for r in dropped.numbers["groups"]["versus_controls"]} == {"MCI"}
    assert any("'AD' (2)" in w for w in dropped.numbers["warnings"])
    few = pd.concat([table[table["cohort"] == "CU"].sort_values("age").iloc[10:30], table[table["cohort"] == "AD"]])
    warned = evaluate(few, Columns(), Options(n_resamples=0))
    text = " ".join(warned.numbers["warnings"])
    assert "only 20 control subjects" in text and "older than every control" in text
    with pytest.raises(EvaluationError, match="at least 6"):
        evaluate(pd.concat([table[table["cohort"] == "CU"].head(4), table[table["cohort"] == "AD"]]), Columns())


def test_predictions_join_the_participants_by_path(table):
    participants = table.drop(columns=["predicted_age"])
    predictions = pd.DataFrame({"source": [f"/data/{s}/anat/{s}_T1w.nii.gz" for s in table["participant_id"]] + ["/x/other.nii.gz"],
                                "predicted_age": list(table["predicted_age"]) + [50.0], "chronological_age": None})
    joined, notes = join_participants(predictions, participants)
    assert len(joined) == len(table) and notes == ["1 of 71 predictions match no participant and are left out"]
    assert (joined.set_index("participant_id").loc[table["participant_id"], "age"].to_numpy() == table["age"].to_numpy()).all()
    prefixed = pd.DataFrame({"subject": "dataset/" + table["participant_id"], "predicted_age": table["predicted_age"]})
    joined, notes = join_participants(prefixed, participants)  # ids inside a data set prefix, as in the OOF table
    assert notes == [] and list(joined["participant_id"]) == list(table["participant_id"])
    with pytest.raises(EvaluationError, match="no prediction matches"):
        join_participants(predictions.assign(source="/x/y.nii.gz"), participants)
    with pytest.raises(EvaluationError, match="--id-column 'record'"):
        join_participants(predictions, participants, "record")


def test_cli_writes_the_report_and_a_calibration_brainage_predict_reads(tmp_path, table, capsys):
    predictions = tmp_path / "predictions.csv"
    table[["participant_id", "predicted_age"]].to_csv(predictions, index=False)
    participants = tmp_path / "participants.tsv"
    table.drop(columns=["predicted_age"]).to_csv(participants, sep="\t", index=False)
    out = tmp_path / "report"
    args = ["evaluate", str(predictions), "--participants", str(participants), "--out", str(out), "--bootstrap", "200",
            "--site", "test site"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "controls raw: MAE" in printed and "AD vs CU: Z" in printed
    numbers = json.loads((out / "report.json").read_text())
    calibration = load_calibration(out / "calibration.json")
    assert calibration.to_dict() == {**numbers["calibration"]["saved"], "created": calibration.created}
    assert calibration.site == "test site" and calibration.method == "extremes"
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "http" not in html.replace("http-equiv", "")
    assert all((out / "figures" / f"{n}.png").stat().st_size > 10_000 for n in ("accuracy", "calibration", "groups"))
    assert main(args) == 2 and "already holds" in capsys.readouterr().err  # nothing overwritten silently
    assert main(["evaluate", str(predictions), "--out", str(tmp_path / "x")]) == 2
    assert "no age column" in capsys.readouterr().err


def test_calibration_round_trip_into_brainage_predict(tmp_path, table, tiny_package, colin_brain_path, capsys):
    out = tmp_path / "report"
    table.to_csv(tmp_path / "p.csv", index=False)
    assert main(["evaluate", str(tmp_path / "p.csv"), "--out", str(out), "--method", "all", "--bootstrap", "0"]) == 0
    saved = json.loads((out / "report.json").read_text())["calibration"]["saved"]
    cu = table[table["cohort"] == "CU"]
    fit = stats.linregress(cu["age"], cu["predicted_age"])
    assert saved["slope"] == pytest.approx(fit.slope) and saved["n_controls"] == 40
    csv = tmp_path / "pred.csv"
    assert main(["predict", str(colin_brain_path), "--model", str(tiny_package), "--skull-strip", "none", "--age", "70",
                 "--calibration", str(out / "calibration.json"), "--out", str(csv)]) == 0
    row = pd.read_csv(csv).iloc[0]
    expected = row["predicted_age"] + 70 - (fit.slope * 70 + fit.intercept)
    assert row["corrected_age"] == pytest.approx(expected, abs=1e-6)
    assert row["brain_age_gap"] == pytest.approx(expected - 70, abs=1e-6)
    assert row["calibration"].startswith("all n=40")


def test_html_report_renders_its_figures_in_headless_chromium(tmp_path, table):
    from BrainAgeTrainingLib.evaluate import write_outputs

    paths = write_outputs(evaluate(table, Columns(), Options(n_resamples=100)), tmp_path / "r")
    shot = chromium_screenshot(paths["report.html"], tmp_path / "shot.png", height=1800)
    import matplotlib.image as mpimg

    pixels = (mpimg.imread(shot)[..., :3] * 255).round()
    assert pixels.std() > 20  # not a blank page
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    blue = ((b > 150) & (b - r > 60) & (b - g > 20)).sum()  # the controls' markers: only the figures are blue
    assert blue > 300
