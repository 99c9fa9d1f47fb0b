"""BrainAgeTraining: train brain-age models from folders of 3D T1 scans (headless 3D Slicer module).

Thin glue: the Logic installs what training needs (PyTorch extension, pip packages incl.
PyYAML), starts ``brainage train`` (``PythonSlicer -m BrainAgeLib.cli train``, with the
extension's module folders on PYTHONPATH) as a subprocess, streams its log, reports progress
and can cancel it. Log and progress callbacks run on the main thread: in the Slicer
application a qt.QTimer drains the output; scripts get it from ``wait()`` / ``isRunning()``.
Supported: 3D Slicer 5.10 and later.
Usable from ``Slicer --no-main-window --python-script``::

    from BrainAgeTraining import BrainAgeTrainingLogic
    logic = BrainAgeTrainingLogic()
    logic.train(["/data/bids"], "/runs/r1", configPath="cfg.yaml", waitForCompletion=True)
"""

import logging
import os
import time

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
)


#
# BrainAgeTraining
#


class BrainAgeTraining(ScriptedLoadableModule):
    """Module metadata (no panel: training is started from scripts or the Python console)."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Brain Age Training")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Neuroimaging")]
        self.parent.dependencies = ["BrainAge"]  # its Logic installs the Python packages
        self.parent.contributors = ["SlicerBrainAge maintainers (SlicerBrainAge project)"]
        self.parent.hidden = True
        self.parent.helpText = _(
            "Trains and cross-validates the brain-age DenseNet of Kim et al. 2025 from BIDS folders or CSV "
            "manifests of 3D T1 scans with known ages, and exports a model package for the Brain Age module. "
            "Runs as a separate process (cancellable); the same run can be started with `brainage train` "
            "on a GPU server or with torchrun on many GPUs. Requires 3D Slicer 5.10 or later."
        )
        self.parent.acknowledgementText = _(
            "Method: Kim et al., npj Aging (2025), doi:10.1038/s41514-025-00260-x. Built on MONAI and PyTorch."
        )


#
# BrainAgeTrainingLogic
#


class BrainAgeTrainingLogic(ScriptedLoadableModuleLogic):
    """Starts, streams and cancels a training subprocess. Never touches the GUI."""

    POLL_MS = 200

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.logCallback = None  # function(str), called on the main thread
        self.progressCallback = None  # function(float 0..1), called on the main thread
        self.process = None
        self._timer = None
        self._startTime = time.time()

    def log(self, text: str) -> None:
        logging.info(text)
        if self.logCallback:
            self.logCallback(text)

    def setupPythonRequirements(self) -> bool:
        """Install what training needs, without asking (see BrainAgeLogic.setupPythonRequirements).

        :return: True when ready now, False when Slicer must restart first
        """
        from BrainAge import BrainAgeLogic

        return BrainAgeLogic().setupPythonRequirements(training=True)

    def train(self, dataPaths, runDir, configPath=None, resume=False, extraArgs=None, waitForCompletion=False,
              installRequirements=True):
        """Start training ``dataPaths`` (BIDS roots / CSV manifests / FOLDER=AGES.csv) into ``runDir``.

        :param configPath: YAML/JSON overrides of the paper's settings (saved with the run)
        :param resume: continue a stopped run in ``runDir``
        :param waitForCompletion: block until the end (scripts); otherwise poll ``isRunning()``
        :param installRequirements: install missing packages first (PyTorch, MONAI, PyYAML, ...)
        :return: the exit status when waiting, else None
        :raises RuntimeError: when a run is in progress, or packages were installed and Slicer must restart
        """
        if self.process is not None and self.process.running:
            raise RuntimeError(_("A training run is already in progress; cancel it or wait for it to finish."))
        if not dataPaths:
            raise ValueError(_("Give at least one data folder or CSV manifest."))
        if installRequirements and not self.setupPythonRequirements():
            raise RuntimeError(_("The Python packages for training were installed; restart Slicer, then start the training again."))
        from BrainAgeTrainingLib.training_process import TrainingProcess, python_executable, train_command

        command = train_command([str(p) for p in dataPaths], str(runDir), configPath, resume, extraArgs,
                                python=python_executable())
        self.log(_("Starting: ") + " ".join(command))
        self.process = TrainingProcess(command, on_line=self.log, on_progress=self._onProgress).start()
        self._startTime = time.time()
        if waitForCompletion:
            return self.wait()
        self._startPolling()
        return None

    def _startPolling(self) -> None:
        """In the Slicer application, deliver the output from a main-thread timer (Qt widgets are main-thread only)."""
        if not hasattr(slicer, "app"):
            return
        import qt

        self._timer = qt.QTimer()
        self._timer.setInterval(self.POLL_MS)
        self._timer.timeout.connect(self.processOutput)
        self._timer.start()

    def processOutput(self) -> None:
        """Deliver queued log lines and progress on this (the main) thread; stop polling at the end."""
        if self.process is None:
            return
        if not self.process.running and self._timer is not None:
            self._timer.stop()
            self._timer = None
            self._logFinished(self.process.wait())

    def _onProgress(self, fraction: float) -> None:
        if self.progressCallback:
            self.progressCallback(fraction)

    def _logFinished(self, code: int) -> None:
        self.log(_("Training finished with exit status {code} after {seconds:.0f} s").format(
            code=code, seconds=time.time() - self._startTime))

    def isRunning(self) -> bool:
        return self.process is not None and self.process.running

    def wait(self, timeout=None) -> int:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        code = self.process.wait(timeout)
        self._logFinished(code)
        return code

    def cancel(self) -> None:
        """Stop the run and every process it started (the last finished epoch is kept; resume later with resume=True)."""
        if self.isRunning():
            self.process.cancel()
            self.log(_("Training cancelled; resume it later with resume=True."))
        self.processOutput()

    def packagePath(self, runDir) -> str:
        return os.path.join(str(runDir), "model")


#
# BrainAgeTrainingTest
#


class BrainAgeTrainingTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (Slicer --testing); pytest runs the same subprocess class outside Slicer."""

    def setUp(self):
        """A clean scene, and the Python packages the test and the training need (a fresh Slicer has none)."""
        slicer.mrmlScene.Clear()
        if not BrainAgeTrainingLogic().setupPythonRequirements():
            self.fail("BrainAgeTraining installed its Python packages; restart Slicer and run the test again.")

    def runTest(self):
        self.setUp()
        self.test_BrainAgeTraining_tiny_run()

    def test_BrainAgeTraining_tiny_run(self):
        import json
        import tempfile

        import numpy as np
        from BrainAgeLib.io import Volume, save_nifti
        from BrainAgeLib.package import load_package

        self.delayDisplay("Starting the test")
        root = tempfile.mkdtemp()
        rows = ["participant_id\tage"]
        for index in range(4):
            k, j, i = np.indices((75, 90, 65))
            inside = ((i - 32) / 27.0) ** 2 + ((j - 45) / 38.0) ** 2 + ((k - 37) / 31.0) ** 2 < 1 - 0.05 * index
            data = np.where(inside.transpose(2, 1, 0), 80.0 + 5 * index, 0.0).astype(np.float32)
            save_nifti(Volume(data, np.diag([2.0, 2.0, 2.0, 1.0])), os.path.join(root, f"sub-{index}", "anat", f"sub-{index}_T1w.nii.gz"))
            rows.append(f"sub-{index}\t{30 + 10 * index}")
        with open(os.path.join(root, "participants.tsv"), "w") as handle:
            handle.write("\n".join(rows) + "\n")
        config = os.path.join(root, "config.json")
        with open(config, "w") as handle:
            json.dump({"epochs": 1, "batch_size": 2, "n_folds": 2, "max_offsets": 1, "skull_strip": "none",
                       "model": {"init_features": 8, "growth_rate": 4, "block_config": [1, 1, 1, 1]}}, handle)
        logic = BrainAgeTrainingLogic()
        seen = []
        logic.progressCallback = seen.append
        code = logic.train([root], os.path.join(root, "run"), configPath=config, waitForCompletion=True)
        self.assertEqual(code, 0)
        self.assertEqual(seen[-1], 1.0)
        self.assertEqual(len(load_package(logic.packagePath(os.path.join(root, "run"))).models), 2)
        self.delayDisplay("Test passed")
