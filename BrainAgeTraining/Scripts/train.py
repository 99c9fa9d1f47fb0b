#!/usr/bin/env python
"""Subprocess entry point of BrainAgeTraining: ``PythonSlicer train.py --data ... --out RUN_DIR [...]``.

Same arguments as ``brainage train`` (this just calls it), so a run started from
Slicer and one started on a cluster are the same code path. Works from an installed
extension (``Scripts/`` beside ``BrainAgeLib/``) and from a source tree
(``python BrainAgeTraining/Scripts/train.py``) without installing the package.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for folder in (HERE.parent, HERE.parent.parent / "BrainAgeTraining", HERE.parent.parent / "BrainAge"):
    if any((folder / lib).is_dir() for lib in ("BrainAgeLib", "BrainAgeTrainingLib")) and str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

if __name__ == "__main__":
    from BrainAgeLib.cli import main

    sys.exit(main(["train", *sys.argv[1:]]))
