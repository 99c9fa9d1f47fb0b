"""BrainAge: brain age from a clinical axial T1 volume (3D Slicer scripted module).

Thin glue between MRML nodes / the panel and the Slicer-free BrainAgeLib core.
"""

import logging
import os
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

SKULL_STRIP_BACKENDS = ["hd-bet", "deepbet", "none"]
SALIENCY_METHODS = ["guided-backprop", "integrated-gradients", "none"]
DEVICES = ["auto", "cpu", "cuda"]


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
        self.parent.contributors = ["SlicerBrainAge team"]
        self.parent.helpText = _(
            "Predicts brain age from a routine clinical axial T1-weighted MRI (thick slices allowed): "
            "skull stripping (HD-BET), interpolation to 2 mm, a 3D DenseNet-169, optional age-bias correction "
            "with a site calibration, and a saliency map over the slice views.<br>"
            "<b>Research use only; not a medical device.</b> Validated (in the paper) on axial T1 of adults; "
            "calibrate on your site's cognitively unimpaired controls before reading brain age gaps. "
            'See <a href="https://github.com/SlicerBrainAge/SlicerBrainAge">the documentation</a>.'
        )
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
    """Panel state, saved with the scene."""

    inputVolume: vtkMRMLScalarVolumeNode
    chronologicalAge: Annotated[float, WithinRange(0.0, 120.0)] = 0.0  # 0 = unknown
    modelPath: str = ""
    calibrationPath: str = ""
    skullStrip: Annotated[str, Choice(SKULL_STRIP_BACKENDS)] = "hd-bet"
    saliencyMethod: Annotated[str, Choice(SALIENCY_METHODS)] = "guided-backprop"
    device: Annotated[str, Choice(DEVICES)] = "auto"
    saliencyOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.4
    saliencyTopPercent: Annotated[float, WithinRange(0.0, 100.0)] = 0.0  # > 0: also a label map of the top k %


#
# Widget
#


class BrainAgeWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: gathers parameters, calls the logic, shows the results."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/BrainAge.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = BrainAgeLogic()
        self.logic.progressCallback = self.onProgress
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.importModelButton.connect("clicked(bool)", self.onImportModel)
        self.ui.opacitySlider.connect("valueChanged(double)", self.onOpacityChanged)
        self.ui.inputSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onInputChanged)
        self.refreshModelList()
        self.ui.modelSelector.connect("currentIndexChanged(int)", self.onModelSelected)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
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

    def setParameterNode(self, inputParameterNode: Optional[BrainAgeParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    def _checkCanApply(self, caller=None, event=None) -> None:
        ready = bool(self._parameterNode and self._parameterNode.inputVolume and self._parameterNode.modelPath)
        self.ui.applyButton.enabled = ready and not self.logic.running
        self.ui.applyButton.toolTip = _("Predict brain age") if ready else _("Select an input volume and a model")

    def refreshModelList(self) -> None:
        """Fill the model list from the registry and the per-user cache; demo models are labelled."""
        self.ui.modelSelector.clear()
        for label, path in self.logic.availableModels():
            self.ui.modelSelector.addItem(label, path)

    def onModelSelected(self, index: int) -> None:
        if self._parameterNode and index >= 0:
            self._parameterNode.modelPath = self.ui.modelSelector.itemData(index) or ""

    def onImportModel(self) -> None:
        import qt

        folder = qt.QFileDialog.getExistingDirectory(None, _("Select a BrainAge model package folder"))
        if not folder:
            return
        with slicer.util.tryWithErrorDisplay(_("Could not import the model package."), waitCursor=True):
            path = self.logic.importModel(folder)
            self.refreshModelList()
            self._parameterNode.modelPath = str(path)

    def onInputChanged(self, node) -> None:
        age = self.logic.ageFromDicom(node) if node else None
        if age is not None and self._parameterNode:
            self._parameterNode.chronologicalAge = round(age, 1)

    def onProgress(self, fraction: float, message: str) -> None:
        self.ui.progressBar.value = int(100 * fraction)
        self.ui.statusLabel.text = message
        slicer.app.processEvents()  # keeps the panel responsive and Cancel clickable

    def onCancelButton(self) -> None:
        self.logic.cancelRequested = True

    def onOpacityChanged(self, value: float) -> None:
        slicer.util.setSliceViewerLayers(foregroundOpacity=value)

    def onApplyButton(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Brain age prediction failed."), waitCursor=True):
            if not self.logic.setupPythonRequirements(askConfirmation=True):
                return
            self.ui.cancelButton.enabled = True
            try:
                outputs = self.logic.process(
                    p.inputVolume,
                    p.modelPath,
                    chronologicalAge=p.chronologicalAge or None,
                    calibrationPath=p.calibrationPath or None,
                    skullStrip=p.skullStrip,
                    saliencyMethod=None if p.saliencyMethod == "none" else p.saliencyMethod,
                    device=None if p.device == "auto" else p.device,
                    saliencyTopPercent=p.saliencyTopPercent,
                )
            finally:
                self.ui.cancelButton.enabled = False
            self.ui.resultLabel.text = outputs.summary
            self.ui.resultTableView.setMRMLTableNode(outputs.table)
            if outputs.saliency:
                slicer.util.setSliceViewerLayers(
                    background=p.inputVolume, foreground=outputs.saliency, foregroundOpacity=p.saliencyOpacity, fit=True
                )


#
# Logic
#


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
    """Runs the BrainAgeLib pipeline on MRML nodes. Never touches the GUI; usable from scripts."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.progressCallback = None
        self.cancelRequested = False
        self.running = False
        self._predictors = {}

    def getParameterNode(self):
        return BrainAgeParameterNode(super().getParameterNode())

    # -- dependencies ------------------------------------------------------------------------------
    def setupPythonRequirements(self, askConfirmation: bool = False) -> bool:
        """Install torch (through the PyTorch extension) and the Lib requirements if missing."""
        from BrainAgeLib.requirements import PIP_REQUIREMENTS, TORCH_REQUIREMENT, missing_requirements

        try:
            import torch  # noqa: F401
        except ImportError:
            try:
                import PyTorchUtils
            except ImportError as exc:
                raise RuntimeError(_("BrainAge needs the PyTorch extension: install it from the Extensions Manager and restart Slicer.")) from exc
            torchLogic = PyTorchUtils.PyTorchUtilsLogic()
            if torchLogic.installTorch(askConfirmation=askConfirmation, torchVersionRequirement=TORCH_REQUIREMENT) is None:
                raise RuntimeError(_("PyTorch is required. Install it from the PyTorch Utils module, then try again."))
        missing = missing_requirements()
        if missing:
            if askConfirmation and not slicer.app.commandOptions().testingEnabled:
                if not slicer.util.confirmOkCancelDisplay(
                    _("BrainAge will download and install these Python packages (one time):\n") + "\n".join(PIP_REQUIREMENTS)
                ):
                    return False
            slicer.util.pip_install(PIP_REQUIREMENTS)
            if missing_requirements():
                if slicer.util.confirmYesNoDisplay(_("Packages were installed but need a restart of Slicer. Restart now?")):
                    slicer.util.restart()
                return False
        return True

    # -- models ------------------------------------------------------------------------------------
    def registryPath(self) -> str:
        return os.path.join(os.path.dirname(__file__), "Resources", "Models.json")

    def availableModels(self) -> list:
        """(label, package folder or registry key) for the cached packages; demo models are labelled as such."""
        from BrainAgeLib.model_registry import installed_models
        from BrainAgeLib.package import read_card

        models = []
        for path in installed_models():
            card = read_card(path)
            label = f"{card.name} {card.version}" + (" (SYNTHETIC DEMO, not for clinical use)" if card.synthetic_demo else "")
            models.append((label, str(path)))
        return models

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
    def _progress(self, fraction: float, message: str) -> None:
        logging.info(message)
        if self.progressCallback:
            self.progressCallback(fraction, message)
        if self.cancelRequested:
            self.cancelRequested = False
            raise RuntimeError(_("Cancelled by the user."))

    def predictor(self, modelPath: str, calibrationPath=None, skullStrip="hd-bet", device=None):
        """A cached BrainAgeLib Predictor for these settings (the model loads once per session)."""
        from BrainAgeLib.calibration import load_calibration
        from BrainAgeLib.predict import Predictor

        key = (modelPath, calibrationPath, skullStrip, device)
        if key not in self._predictors:
            calibration = load_calibration(calibrationPath) if calibrationPath else None
            self._predictors[key] = Predictor(modelPath, device=device, calibration=calibration, skull_strip=skullStrip)
        return self._predictors[key]

    def process(
        self,
        inputVolume,
        modelPath: str,
        chronologicalAge: Optional[float] = None,
        calibrationPath: Optional[str] = None,
        skullStrip: str = "hd-bet",
        saliencyMethod: Optional[str] = "guided-backprop",
        device: Optional[str] = None,
        saliencyTopPercent: float = 0.0,
    ) -> BrainAgeOutputs:
        """Predict brain age for a volume node and add the result nodes to the scene.

        :param inputVolume: axial T1 scalar volume node (with skull unless skullStrip is "none")
        :param modelPath: model package folder
        :param chronologicalAge: years, or None when unknown (then no gap is computed)
        :param calibrationPath: site calibration JSON; default: the model card's, if any
        :param skullStrip: "hd-bet", "deepbet" or "none"
        :param saliencyMethod: "guided-backprop", "integrated-gradients" or None
        :param device: "cpu", "cuda" or None (CUDA when available)
        :param saliencyTopPercent: > 0 also makes a label map of the top k % saliency
        """
        from BrainAgeLib.io import volume_from_kji
        from BrainAgeLib.summary import summary_rows, summary_text

        if not inputVolume or inputVolume.GetImageData() is None:
            raise ValueError(_("Select an input volume that holds image data."))
        if not modelPath:
            raise ValueError(_("Select or import a model package."))
        self.running, self.cancelRequested = True, False
        start = time.time()
        try:
            self._progress(0.05, _("Loading model"))
            predictor = self.predictor(modelPath, calibrationPath, skullStrip, device)
            ijkToRas = vtk.vtkMatrix4x4()
            inputVolume.GetIJKToRASMatrix(ijkToRas)
            volume = volume_from_kji(slicer.util.arrayFromVolume(inputVolume), slicer.util.arrayFromVTKMatrix(ijkToRas), inputVolume.GetName())
            self._progress(0.15, _("Skull stripping and preprocessing"))
            case = predictor.prepare_volume(volume)
            self._progress(0.6, _("Predicting age"))
            result = predictor.predict_case(case, chronologicalAge)
            segmentation = self._maskToSegmentation(case.brain_mask, inputVolume)
            saliencyNode = saliencyLabel = None
            if saliencyMethod:
                self._progress(0.75, _("Computing saliency"))
                sal = predictor.saliency(case, saliencyMethod)
                saliencyNode = self._addVolume(sal.on_input, inputVolume, f"{inputVolume.GetName()} saliency")
                saliencyNode.CreateDefaultDisplayNodes()
                saliencyNode.GetDisplayNode().SetAndObserveColorNodeID("vtkMRMLColorTableNodeFileColdToHotRainbow.txt")
                result.qc_flags.append(f"saliency ({sal.method}) inside brain: {sal.inside_brain:.0%}")
                if saliencyTopPercent > 0:
                    saliencyLabel = self._topPercentLabel(sal.on_input, saliencyTopPercent, inputVolume)
            table = self._resultTable(summary_rows(result), inputVolume.GetName())
            self._progress(1.0, _("Done in {seconds:.1f} s").format(seconds=time.time() - start))
            return BrainAgeOutputs(result, table, segmentation, saliencyNode, saliencyLabel, summary_text(result))
        finally:
            self.running = False

    # -- MRML output helpers -----------------------------------------------------------------------
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
        slicer.mrmlScene.Clear()

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
