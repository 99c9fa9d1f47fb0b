"""Open the BrainAge panel headless: PySide6 offscreen, the Qt stand-ins and a real MRML scene.

``slicer.app`` and the modal dialogs of ``slicer.util`` are replaced by recorders, so a test
can assert that no dialog opened (or which one did) and answer them. Import after slicer_env.
"""

import os
import types

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import slicer  # noqa: E402

DIALOGS = ("confirmOkCancelDisplay", "confirmYesNoDisplay", "errorDisplay", "warningDisplay", "infoDisplay", "messageBox")


class Dialogs:
    """Records every modal dialog the code asks for; ``answers[name]`` is what the user clicks."""

    def __init__(self):
        self.shown, self.answers = [], {}

    def install(self, monkeypatch):
        for name in DIALOGS:
            monkeypatch.setattr(slicer.util, name, self._recorder(name))
        monkeypatch.setattr(slicer.util, "restart", lambda: self.shown.append(("restart", "")))

    def _recorder(self, name):
        def show(text="", *args, **kwargs):
            self.shown.append((name, str(text)))
            return self.answers.get(name, False)

        return show

    def names(self):
        return [name for name, _ in self.shown]


def qapp():
    from PySide6.QtWidgets import QApplication

    return QApplication.instance() or QApplication([])


def app_standin(app, processEvents=None):
    """The parts of ``slicer.app`` the module and slicer.util use (qSlicerApplication)."""
    return types.SimpleNamespace(
        processEvents=processEvents or app.processEvents,
        setOverrideCursor=lambda cursor: None,
        restoreOverrideCursor=lambda: None,
        testingEnabled=lambda: False,
        translate=lambda context, text: text,
        moduleManager=lambda: types.SimpleNamespace(connect=lambda *a: True, disconnect=lambda *a: True),
    )


def open_panel(monkeypatch, dialogs=None, processEvents=None):
    """A set-up BrainAgeWidget on the current slicer.mrmlScene, shown offscreen; returns (widget, dialogs)."""
    app = qapp()
    import ctk  # noqa: F401  (stand-ins the loader creates)
    import qmrml  # noqa: F401

    dialogs = dialogs or Dialogs()
    dialogs.install(monkeypatch)
    monkeypatch.setattr(slicer, "app", app_standin(app, processEvents), raising=False)
    monkeypatch.setattr(slicer.util, "setSliceViewerLayers", lambda **kwargs: None)
    import BrainAge
    import qt

    widget = mount_widget(BrainAge, slicer, qt)
    app.processEvents()
    return widget, dialogs


def mount_widget(BrainAge, slicer, qt):
    """The module widget as Slicer's module panel makes it: a parent first, then setup(), then shown."""
    panel = slicer.qMRMLWidget()
    panel.setLayout(qt.QVBoxLayout())
    panel.setMRMLScene(slicer.mrmlScene)
    panel.isEntered = True
    widget = BrainAge.BrainAgeWidget(panel)
    widget.setup()
    panel.show()
    return widget
