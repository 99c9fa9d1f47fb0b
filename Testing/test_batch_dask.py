"""Issue 16: `brainage predict --dask` on a LocalCluster gives the single-process table; a killed worker or a
killed driver (then --resume) loses no case and repeats none.

Four cases: three real brains (Colin27, the MNI152 brain, Colin27 again) and one corrupt file, skull strip
``none``, the small ``two_fold_package``. The reference table is the plain single-process run, in-process.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import distributed  # the cluster extra, which the test extra installs
import numpy as np
import pandas as pd
import pytest

from BrainAgeLib.batch_resume import journal_paths
from BrainAgeLib.cli import main
from BrainAgeLib.predict import Predictor


@pytest.fixture(scope="module")
def scans(tmp_path_factory, colin_brain_path, mni_brain_path):
    folder = tmp_path_factory.mktemp("cohort")
    shutil.copy(colin_brain_path, folder / "sub-01_T1w.nii.gz")
    (folder / "sub-02_T1w.nii.gz").write_bytes(b"\x1f\x8b\x08 truncated")
    shutil.copy(mni_brain_path, folder / "sub-03_T1w.nii.gz")
    shutil.copy(colin_brain_path, folder / "sub-04_T1w.nii.gz")
    return folder


def predict(scans, package, out, *extra) -> int:
    return main(["predict", str(scans), "--model", str(package), "--skull-strip", "none", "--out", str(out), *extra])


@pytest.fixture(scope="module")
def reference(scans, two_fold_package, tmp_path_factory):
    """The single-process run's table."""
    out = tmp_path_factory.mktemp("reference") / "results.csv"
    assert predict(scans, two_fold_package, out) == 1  # one case failed
    return pd.read_csv(out)


def assert_same_table(table: pd.DataFrame, reference: pd.DataFrame) -> None:
    """Same cases in input order, ages within 1e-4 y, same hashes and error rows."""
    assert table["source"].tolist() == reference["source"].tolist()
    assert table["source_sha256"].tolist() == reference["source_sha256"].tolist()
    assert table["error"].fillna("").tolist() == reference["error"].fillna("").tolist()
    np.testing.assert_allclose(table["predicted_age"], reference["predicted_age"], atol=1e-4)
    for mine, theirs in zip(table["fold_ages"].fillna(""), reference["fold_ages"].fillna("")):
        np.testing.assert_allclose([float(a) for a in mine.split(";") if a], [float(a) for a in theirs.split(";") if a], atol=1e-3)


def test_the_reference_run_hashes_each_input(reference, scans):
    assert len(reference) == 4 and reference["error"].notna().tolist() == [False, True, False, False]
    assert reference.loc[1, "error"].startswith("CorruptFileError")
    for source, sha in zip(reference["source"], reference["source_sha256"]):
        assert sha == hashlib.sha256(open(source, "rb").read()).hexdigest()


def test_a_local_cluster_of_two_workers_gives_the_single_process_table(scans, two_fold_package, reference, tmp_path):
    out = tmp_path / "results.csv"
    assert predict(scans, two_fold_package, out, "--dask", "local:2") == 1
    assert_same_table(pd.read_csv(out), reference)
    assert journal_paths(out) == []


def test_a_worker_killed_mid_batch_loses_no_case(scans, two_fold_package, reference, tmp_path):
    """SIGKILL to the process of a worker that holds a case: the scheduler runs its cases on the other worker."""
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = distributed.Client(cluster)
    killed: dict = {}
    finished = threading.Event()

    def kill_a_busy_worker() -> None:
        while not finished.is_set() and not killed:
            busy = {w: keys for w, keys in client.processing().items() if any("brainage-case" in str(k) for k in keys)}
            if busy:
                address, keys = next(iter(busy.items()))
                pid = client.run(os.getpid, workers=[address])[address]
                os.kill(pid, signal.SIGKILL)
                killed.update(pid=pid, keys=list(keys))
            time.sleep(0.05)

    try:
        watcher = threading.Thread(target=kill_a_busy_worker, daemon=True)
        watcher.start()
        out = tmp_path / "results.csv"
        code = predict(scans, two_fold_package, out, "--dask", cluster.scheduler_address)
    finally:
        finished.set()
        watcher.join(timeout=30)
        client.close()
        cluster.close()
    assert killed.get("keys"), "no worker was killed while it held a case"
    assert code == 1  # the corrupt file only
    table = pd.read_csv(out)
    assert not table["error"].fillna("").str.startswith("not run").any()
    assert_same_table(table, reference)


def test_resume_after_sigkill_of_the_driver_runs_each_case_once(scans, two_fold_package, reference, tmp_path, monkeypatch):
    out = tmp_path / "results.csv"
    command = [sys.executable, "-m", "BrainAgeLib.cli", "predict", str(scans), "--model", str(two_fold_package),
               "--skull-strip", "none", "--batch-size", "1", "--out", str(out)]
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while driver.poll() is None and not any(p.read_text().count("\n") for p in journal_paths(out)):
            time.sleep(0.02)
        driver.send_signal(signal.SIGKILL)  # no handler runs: only what was fsync'ed is left
    finally:
        driver.kill()
        stderr = driver.communicate()[1]
    assert driver.returncode == -signal.SIGKILL, stderr
    journals = journal_paths(out)
    assert len(journals) == 1
    done_before = journals[0].read_text().count("\n")
    assert 1 <= done_before < 4

    assert predict(scans, two_fold_package, out) == 2  # a plain rerun would lose those rows: refused

    ran, many = [], Predictor.predict_many

    def recording(self, sources, *args, **kwargs):
        ran.extend(map(str, sources))
        return many(self, sources, *args, **kwargs)

    monkeypatch.setattr(Predictor, "predict_many", recording)
    assert predict(scans, two_fold_package, out, "--resume") == 1
    table = pd.read_csv(out)
    assert len(ran) == 4 - done_before and not set(ran) & set(table["source"][:done_before])
    assert table["source"].is_unique
    assert_same_table(table, reference)
    assert journal_paths(out) == []


def test_without_dask_the_error_says_how_to_install_it(scans, two_fold_package, tmp_path, monkeypatch, capsys):
    import importlib

    import BrainAgeLib
    import BrainAgeLib.cli

    for name in ("dask", "distributed"):  # as if the cluster extra were not installed
        monkeypatch.setitem(sys.modules, name, None)
    for parent, name in ((BrainAgeLib, "batch_dask"), (BrainAgeLib.cli, "predict")):
        monkeypatch.delitem(sys.modules, f"{parent.__name__}.{name}", raising=False)
        monkeypatch.delattr(parent, name, raising=False)
    importlib.import_module("BrainAgeLib.cli.predict")  # single-machine use needs no Dask
    out = tmp_path / "results.csv"
    assert predict(scans, two_fold_package, out, "--dask", "local:2") == 2
    assert "pip install '.[cluster]'" in capsys.readouterr().err
    assert not out.exists() and journal_paths(out) == []
