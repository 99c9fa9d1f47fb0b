"""The BrainAgeTraining module's Logic (Slicer stand-in base classes, real subprocess): its own test, cancel."""

import os
import time
from pathlib import Path

import pytest

pytest.importorskip("slicer_core", reason="slicer-core is installed by `make test` (scripts/setup.sh)")

import slicer_env  # noqa: E402  (must come before `import slicer`)

from BrainAgeTrainingLib.training_process import child_env, library_paths  # noqa: E402


@pytest.fixture()
def module():
    slicer_env.new_scene()
    import BrainAgeTraining

    return BrainAgeTraining


def test_the_modules_own_test_trains_and_exports_through_the_logic(module):
    """BrainAgeTrainingTest.runTest (what `Slicer --testing` runs): a tiny 2-fold run through the Logic."""
    test = module.BrainAgeTrainingTest("test_BrainAgeTraining_tiny_run")
    test.runTest()


def test_logic_streams_the_log_and_cancels(module, tmp_path):
    from BrainAgeLib.io import Volume, save_nifti
    import numpy as np

    rows = ["participant_id\tage"]
    for index in range(4):
        data = np.zeros((75, 90, 65), np.float32)
        data[8:67, 10:80, 6:60] = 80.0 + index
        save_nifti(Volume(data, np.diag([2.0, 2.0, 2.0, 1.0])), tmp_path / f"sub-{index}" / "anat" / f"sub-{index}_T1w.nii.gz")
        rows.append(f"sub-{index}\t{30 + 10 * index}")
    (tmp_path / "participants.tsv").write_text("\n".join(rows) + "\n")
    logic = module.BrainAgeTrainingLogic()
    lines = []
    logic.logCallback = lines.append
    config = tmp_path / "config.json"
    config.write_text('{"epochs": 50, "n_folds": 2, "skull_strip": "none", "max_offsets": 1}')  # the paper's network: long on CPU
    logic.train([tmp_path], tmp_path / "run", configPath=config)
    with pytest.raises(RuntimeError, match="already in progress"):
        logic.train([tmp_path], tmp_path / "run2")
    deadline = time.monotonic() + 240
    while logic.isRunning() and not any("fold 0:" in line for line in lines) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert logic.isRunning(), "\n".join(lines)
    logic.cancel()
    assert not logic.isRunning()
    assert any("cancelled" in line for line in lines)
    assert (tmp_path / "run" / "config.json").is_file() and not (tmp_path / "run" / "model").exists()


def test_child_gets_the_library_folders_on_pythonpath(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    paths = child_env()["PYTHONPATH"].split(os.pathsep)
    assert paths[: len(library_paths())] == library_paths() and paths[-1] == "/elsewhere"
    assert {os.path.basename(p) for p in library_paths()} == {"BrainAge", "BrainAgeTraining"}


def test_cancel_stops_the_whole_process_tree(tmp_path):
    """What the child starts (DataLoader workers; on Windows the Python behind the PythonSlicer launcher) stops too."""
    import sys

    from BrainAgeTrainingLib.training_process import TrainingProcess

    code = ("import subprocess, sys, time\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
            "print('grandchild', child.pid, flush=True)\n"
            "time.sleep(600)\n")
    process = TrainingProcess([sys.executable, "-u", "-c", code]).start()
    deadline = time.monotonic() + 60
    while not any(line.startswith("grandchild") for line in process.lines) and time.monotonic() < deadline:
        assert process.running
        time.sleep(0.05)
    grandchild = int(next(line for line in process.lines if line.startswith("grandchild")).split()[1])
    process.cancel(grace_seconds=5)
    assert process.cancelled and not process.running
    deadline = time.monotonic() + 10
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for init to reap it counts as stopped)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_windows_cancel_kills_the_launcher_and_its_children():
    """PythonSlicer.exe is a launcher: Popen.kill would stop only it (SlicerMONAIAuto3DSeg process.py); taskkill /T stops the tree."""
    from BrainAgeTrainingLib.training_process import kill_tree

    commands = []
    kill_tree(4242, system="nt", run=lambda command, **kwargs: commands.append(command))
    assert commands == [["taskkill", "/PID", "4242", "/T", "/F"]]


def test_callbacks_run_on_the_main_thread_delivered_by_a_qt_timer(module, monkeypatch, tmp_path):
    """Qt widgets may only be touched on the main thread: the reader thread queues, a QTimer delivers."""
    import sys
    import threading

    pytest.importorskip("PySide6")
    import slicer
    import slicer_panel
    import BrainAgeTrainingLib.training_process as training_process

    app = slicer_panel.qapp()
    monkeypatch.setattr(slicer, "app", slicer_panel.app_standin(app), raising=False)
    code = "import time\nfor i in range(3):\n    print(f'[progress] {(i + 1) / 3:.4f}', flush=True)\n    time.sleep(0.05)\n"
    monkeypatch.setattr(training_process, "train_command", lambda *a, **k: [sys.executable, "-u", "-c", code])
    logic = module.BrainAgeTrainingLogic()
    threads, lines, progress = set(), [], []
    logic.logCallback = lambda line: (threads.add(threading.get_ident()), lines.append(line))
    logic.progressCallback = lambda fraction: (threads.add(threading.get_ident()), progress.append(fraction))
    logic.train([tmp_path], tmp_path / "run", installRequirements=False)
    assert logic._timer is not None and progress == []  # nothing is delivered from the reader thread
    deadline = time.monotonic() + 60
    while logic._timer is not None and time.monotonic() < deadline:
        app.processEvents()  # the Slicer event loop: only the timer delivers the output here
        time.sleep(0.02)
    assert progress == pytest.approx([1 / 3, 2 / 3, 1.0], abs=1e-4)
    assert threads == {threading.get_ident()}
    assert any("finished with exit status 0" in line for line in lines)


def test_training_installs_pyyaml_first_and_a_missing_pyyaml_is_named(module, monkeypatch, tmp_path):
    import sys

    import slicer
    from BrainAgeTrainingLib.config import ConfigError, read_config_file

    config = tmp_path / "cfg.yaml"
    config.write_text("epochs: 1\n")
    monkeypatch.setitem(sys.modules, "yaml", None)  # Slicer does not bundle PyYAML
    installed = []
    monkeypatch.setattr(slicer.util, "pip_install", installed.append)
    logic = module.BrainAgeTrainingLogic()
    with pytest.raises(RuntimeError, match="restart Slicer"):  # still missing after the (recorded) install
        logic.train([tmp_path], tmp_path / "run", configPath=config)
    assert installed == [["pyyaml>=6.0"]] and logic.process is None
    with pytest.raises(ConfigError, match="need PyYAML, which is not installed"):
        read_config_file(config)


def test_training_scripts_run_from_a_source_tree_without_installing(tmp_path):
    """The Scripts/ entry points find BrainAgeLib and BrainAgeTrainingLib in a source tree, the package not installed."""
    import subprocess
    import sys
    import sysconfig

    root = Path(__file__).resolve().parents[1]
    scripts = root / "BrainAgeTraining" / "Scripts"
    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]}  # site-packages, but -S skips its .pth (editable) finders
    proc = subprocess.run([sys.executable, "-S", str(scripts / "train.py"), "--help"], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0 and "--data" in proc.stdout, proc.stderr[-2000:]
    code = (f"import runpy; runpy.run_path({str(scripts / 'train_demo_model.py')!r}, run_name='probe'); "
            "import BrainAgeLib, BrainAgeTrainingLib; print(BrainAgeLib.__file__); print(BrainAgeTrainingLib.__file__)")
    proc = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == [str(root / "BrainAge" / "BrainAgeLib" / "__init__.py"),
                                   str(root / "BrainAgeTraining" / "BrainAgeTrainingLib" / "__init__.py")]
