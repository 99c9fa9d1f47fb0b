"""Stand-in for Slicer's ``slicer.ScriptedLoadableModule`` (tests only).

Imitates Base/Python/slicer/ScriptedLoadableModule.py at Slicer 5.10.0 (read, not copied):
- the Widget gets ``parent`` and ``self.layout = parent.layout()``; given none, it makes a
  qMRMLWidget with a QVBoxLayout and calls ``setup()`` itself, as upstream (Slicer's module
  panel passes a parent and calls ``setup()`` later); ``resourcePath`` is ``<module dir>/Resources/<file>``;
- the Logic's ``getParameterNode`` returns the scene's singleton vtkMRMLScriptedModuleNode
  tagged with the module name (vtkMRMLScriptedModuleNode / qSlicerScriptedLoadableModule);
- the Test is a ``unittest.TestCase`` whose ``delayDisplay`` only prints (no GUI).
The Qt parts load only when a Widget is made, so Logic tests need no Qt.
"""

import os
import sys
import unittest

import slicer


class ScriptedLoadableModule:
    def __init__(self, parent):
        self.parent = parent
        self.moduleName = type(self).__name__

    def resourcePath(self, filename):
        return os.path.join(os.path.dirname(sys.modules[type(self).__module__].__file__), "Resources", filename)


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None):
        super().__init__()  # cooperative, as upstream (VTKObservationMixin is next in a module widget's MRO)
        self.moduleName = type(self).__name__.removesuffix("Widget")
        self.parent = parent
        if parent is None:  # a top-level panel: upstream makes one and calls setup() right away
            import qt

            self.parent = slicer.qMRMLWidget()
            self.parent.setLayout(qt.QVBoxLayout())
            self.parent.setMRMLScene(slicer.mrmlScene)
        self.layout = self.parent.layout()
        if parent is None:
            self.setup()
            self.parent.show()

    def resourcePath(self, filename):
        return os.path.join(os.path.dirname(sys.modules[type(self).__module__].__file__), "Resources", filename)

    def setup(self):
        pass

    def cleanup(self):
        pass


class ScriptedLoadableModuleLogic:
    def __init__(self, parent=None):
        self.moduleName = type(self).__name__.removesuffix("Logic")

    def getParameterNode(self):
        node = slicer.mrmlScene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
        if node is None:
            node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
            node.SetSingletonTag(self.moduleName)
        return node


class ScriptedLoadableModuleTest(unittest.TestCase):
    def delayDisplay(self, message, msec=0):
        print(message)
