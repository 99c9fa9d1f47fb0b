"""Stand-ins for slicer.parameterNodeWrapper's decorator and annotations (tests only).

The decorated class keeps its declared defaults as plain attributes; GUI binding
(connectGui) exists only in the real Slicer.
"""


class WithinRange:
    def __init__(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum


class Choice:
    def __init__(self, choices):
        self.choices = list(choices)


def parameterNodeWrapper(cls):
    defaults = {k: getattr(cls, k) for k in getattr(cls, "__annotations__", {}) if hasattr(cls, k)}

    def __init__(self, node=None):
        self.parameterNode = node
        for key, value in defaults.items():
            setattr(self, key, value)

    cls.__init__ = __init__
    return cls
