#!/usr/bin/env python
"""Train (once) and print the cached synthetic demo model: ``PythonSlicer train_demo_model.py [CACHE_DIR]``.

The model is trained on SYNTHETIC data and is not for clinical use. Works from an installed
extension and from a source tree, like ``train.py``.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for folder in (HERE.parent, HERE.parent.parent / "BrainAgeTraining", HERE.parent.parent / "BrainAge"):
    if any((folder / lib).is_dir() for lib in ("BrainAgeLib", "BrainAgeTrainingLib")) and str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

if __name__ == "__main__":
    from BrainAgeTrainingLib.demo_model import ensure_demo_model

    print(ensure_demo_model(sys.argv[1] if len(sys.argv) > 1 else None))
