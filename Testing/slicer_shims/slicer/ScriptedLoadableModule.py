"""Minimal base classes standing in for Slicer's ScriptedLoadableModule (tests only)."""

import unittest

import slicer


class ScriptedLoadableModule:
    def __init__(self, parent):
        self.parent = parent


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None):
        self.parent = parent

    def setup(self):
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
