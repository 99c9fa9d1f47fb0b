"""A real MRML scene from PyPI slicer-core, set up the way the Slicer application would.

Import this before ``slicer``: it puts the stand-in folder on sys.path so
``slicer.ScriptedLoadableModule`` & co. resolve, then builds the application
logic (colors, volumes, segmentations) that module code reaches through
``slicer.mrmlScene`` and ``slicer.modules``.
"""

import sys
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for path in (HERE / "slicer_shims", ROOT / "BrainAge", ROOT / "BrainAgeTraining"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import slicer  # noqa: E402  (slicer-core; extends its path over slicer_shims/slicer)


def new_scene():
    """Fresh scene with Colors, Volumes and Segmentations logic registered; sets slicer.mrmlScene."""
    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    app_logic.GetColorLogic().SetMRMLScene(scene)
    app_logic.GetColorLogic().AddDefaultColorNodes()
    logics = {}
    for name, cls in (("Volumes", slicer.vtkSlicerVolumesLogic), ("Segmentations", slicer.vtkSlicerSegmentationsModuleLogic)):
        logic = cls()
        logic.SetMRMLApplicationLogic(app_logic)
        logic.SetMRMLScene(scene)
        app_logic.SetModuleLogic(name, logic)
        logics[name] = logic
    slicer.mrmlScene = scene
    slicer.modules = types.SimpleNamespace(
        segmentations=types.SimpleNamespace(logic=lambda: logics["Segmentations"]),
        volumes=types.SimpleNamespace(logic=lambda: logics["Volumes"]),
    )
    slicer._test_app_logic = app_logic  # keep alive
    return scene


def load_volume_node(path, name="input"):
    """Load a NIfTI file through Slicer's own storage node (ITK reader, LPS->RAS handled by Slicer)."""
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    storage = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        raise OSError(f"Slicer could not read {path}")
    node.SetAndObserveStorageNodeID(storage.GetID())
    return node
